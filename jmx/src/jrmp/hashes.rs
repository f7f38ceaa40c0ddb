//! Method hashes of the RMI interfaces a JMX client calls (JDK 1.2 stub protocol, `op = -1`).
//!
//! A hash is the first 8 bytes, little-endian, of SHA-1 over `writeUTF(name + descriptor)`; the unit test
//! recomputes every constant from its descriptor.

/// `java.rmi.registry.Registry` is served by a 1.1 skeleton: operation numbers plus this interface hash.
pub const REGISTRY_INTERFACE: i64 = 4905912898345647071;
pub const REGISTRY_LOOKUP_OP: i32 = 2;
/// `lookup` for registries that only take the 1.2 form (servers run with `java.rmi.server.ignoreStubClasses`).
pub const REGISTRY_LOOKUP: i64 = -7538657168040752697;

pub const NEW_CLIENT: i64 = -1089742558549201240;
pub const GET_ATTRIBUTE: i64 = -1089783104982388203;
pub const GET_ATTRIBUTES: i64 = 6285293806596348999;
pub const SET_ATTRIBUTE: i64 = 6738606893952597516;
pub const INVOKE: i64 = 1434350937885235744;
pub const QUERY_NAMES: i64 = 9152567528369059802;
pub const GET_MBEAN_INFO: i64 = -7404813916326233354;
pub const IS_REGISTERED: i64 = 8325683335228268564;
pub const GET_DEFAULT_DOMAIN: i64 = 6047668923998658472;
pub const GET_CONNECTION_ID: i64 = -67907180346059933;
pub const FETCH_NOTIFICATIONS: i64 = -5037523307973544478;
pub const ADD_NOTIFICATION_LISTENERS: i64 = -5321691879380783377;
pub const REMOVE_NOTIFICATION_LISTENERS: i64 = 2549120024456183446;
pub const CLOSE: i64 = -4742752445160157748;

#[cfg(test)]
mod tests {
    use sha1::{Digest, Sha1};

    fn method_hash(signature: &str) -> i64 {
        let mut utf = (signature.len() as u16).to_be_bytes().to_vec();
        utf.extend_from_slice(signature.as_bytes());
        let digest = Sha1::digest(&utf);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_le_bytes(first)
    }

    #[test]
    fn every_constant_matches_its_descriptor() {
        const ON: &str = "Ljavax/management/ObjectName;";
        const SUBJECT: &str = "Ljavax/security/auth/Subject;";
        const MO: &str = "Ljava/rmi/MarshalledObject;";
        const STRING: &str = "Ljava/lang/String;";
        let cases = [
            (
                super::NEW_CLIENT,
                "newClient(Ljava/lang/Object;)Ljavax/management/remote/rmi/RMIConnection;"
                    .to_string(),
            ),
            (
                super::GET_ATTRIBUTE,
                format!("getAttribute({ON}{STRING}{SUBJECT})Ljava/lang/Object;"),
            ),
            (
                super::GET_ATTRIBUTES,
                format!("getAttributes({ON}[{STRING}{SUBJECT})Ljavax/management/AttributeList;"),
            ),
            (
                super::SET_ATTRIBUTE,
                format!("setAttribute({ON}{MO}{SUBJECT})V"),
            ),
            (
                super::INVOKE,
                format!("invoke({ON}{STRING}{MO}[{STRING}{SUBJECT})Ljava/lang/Object;"),
            ),
            (
                super::QUERY_NAMES,
                format!("queryNames({ON}{MO}{SUBJECT})Ljava/util/Set;"),
            ),
            (
                super::GET_MBEAN_INFO,
                format!("getMBeanInfo({ON}{SUBJECT})Ljavax/management/MBeanInfo;"),
            ),
            (
                super::IS_REGISTERED,
                format!("isRegistered({ON}{SUBJECT})Z"),
            ),
            (
                super::GET_DEFAULT_DOMAIN,
                format!("getDefaultDomain({SUBJECT}){STRING}"),
            ),
            (
                super::GET_CONNECTION_ID,
                format!("getConnectionId(){STRING}"),
            ),
            (
                super::FETCH_NOTIFICATIONS,
                "fetchNotifications(JIJ)Ljavax/management/remote/NotificationResult;".to_string(),
            ),
            (
                super::ADD_NOTIFICATION_LISTENERS,
                format!("addNotificationListeners([{ON}[{MO}[{SUBJECT})[Ljava/lang/Integer;"),
            ),
            (
                super::REMOVE_NOTIFICATION_LISTENERS,
                format!("removeNotificationListeners({ON}[Ljava/lang/Integer;{SUBJECT})V"),
            ),
            (super::CLOSE, "close()V".to_string()),
            (
                super::REGISTRY_LOOKUP,
                "lookup(Ljava/lang/String;)Ljava/rmi/Remote;".to_string(),
            ),
        ];
        for (constant, signature) in cases {
            assert_eq!(constant, method_hash(&signature), "{signature}");
        }
    }
}
