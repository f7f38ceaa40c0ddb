//! Remote references: where a stub returned by the registry or by `newClient` lives, and how to call it.

use std::fmt;

use crate::serial::annotation::AnnotationReader;
use crate::serial::de::{Content, Entry, Handles};

/// An RMI object id: `ObjID.objNum` (i64) and its `UID` (i32, i64, i16), 22 bytes echoed verbatim in calls.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ObjId(pub [u8; 22]);

impl ObjId {
    /// The registry's well-known id (all zeros).
    pub const REGISTRY: ObjId = ObjId([0; 22]);
}

impl fmt::Debug for ObjId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A live reference to a remote object: its endpoint and object id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    pub host: String,
    pub port: u16,
    pub object: ObjId,
    /// The stub carries `javax.rmi.ssl.SslRMIClientSocketFactory`: connect with TLS.
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable remote reference: {0}")]
pub struct RemoteRefError(pub String);

const SSL_FACTORY: &str = "javax.rmi.ssl.SslRMIClientSocketFactory";

impl RemoteRef {
    /// Finds the reference inside a deserialized stub: the custom data `RemoteObject.writeObject` wrote,
    /// whether the stub is an `_Stub` class or a dynamic proxy whose handler carries it.
    pub fn from_stub(handles: &Handles, stub: &Content) -> Result<RemoteRef, RemoteRefError> {
        let Content::Ref(root) = stub else {
            return Err(RemoteRefError(
                "the server returned null instead of a stub (is the JMX service name right?)"
                    .into(),
            ));
        };
        let mut pending = vec![*root];
        let mut visited = 0;
        while let Some(index) = pending.pop() {
            visited += 1;
            if visited > 64 {
                break;
            }
            let Some(Entry::Object(object)) = handles.get(index) else {
                continue;
            };
            for data in &object.data {
                let is_remote_object = handles
                    .class_desc(data.class)
                    .is_some_and(|d| d.name == "java.rmi.server.RemoteObject");
                if is_remote_object {
                    return Self::parse(handles, &data.annotation);
                }
                // A proxy stub keeps the reference in its invocation handler, field `h`.
                for (_, value) in &data.fields {
                    if let crate::serial::de::FieldValue::Object(Content::Ref(inner)) = value {
                        pending.push(*inner);
                    }
                }
            }
        }
        Err(RemoteRefError(
            "no java.rmi.server.RemoteObject data in the returned stub".into(),
        ))
    }

    fn parse(handles: &Handles, annotation: &[Content]) -> Result<RemoteRef, RemoteRefError> {
        let truncated = || RemoteRefError("the reference data ends early".into());
        let mut data = AnnotationReader::new(annotation);
        let kind = data.utf().ok_or_else(truncated)?;
        let format = match kind.as_str() {
            "UnicastRef" => 0,
            "UnicastRef2" => data.u8().ok_or_else(truncated)?,
            other => {
                return Err(RemoteRefError(format!(
                    "reference type {other} is not supported"
                )));
            }
        };
        let host = data.utf().ok_or_else(truncated)?;
        let port = data.i32().ok_or_else(truncated)?;
        let mut tls = false;
        if format == 1 {
            let factory = data.object().ok_or_else(truncated)?;
            let class = match factory {
                Content::Ref(index) => match handles.get(*index) {
                    Some(Entry::Object(object)) => handles
                        .class_chain(object.class)
                        .first()
                        .map(|s| s.to_string()),
                    _ => None,
                },
                _ => None,
            };
            match class.as_deref() {
                Some(SSL_FACTORY) => tls = true,
                None => {}
                Some(other) => {
                    return Err(RemoteRefError(format!(
                        "the server uses the client socket factory {other}, which only Java can apply"
                    )));
                }
            }
        }
        let object = ObjId(data.bytes::<22>().ok_or_else(truncated)?);
        let port =
            u16::try_from(port).map_err(|_| RemoteRefError(format!("port {port} out of range")))?;
        Ok(RemoteRef {
            host,
            port,
            object,
            tls,
        })
    }
}
