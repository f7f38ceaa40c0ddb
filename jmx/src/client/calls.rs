//! The `MBeanServerConnection` calls a client offers: attributes, operations, queries, MBean info and the
//! notification listener calls [`crate::notify`] builds on.

use std::time::Duration;

use super::mbean::mbean_info;
use super::{Call, JmxClient, MBeanInfo, encode};
use crate::error::JmxError;
use crate::jrmp::ReturnKind;
use crate::jrmp::hashes;
use crate::notify::{Fetched, Subscription};
use crate::value::{JavaArg, JavaValue};

impl JmxClient {
    pub async fn get_attribute(&self, mbean: &str, attribute: &str) -> Result<JavaValue, JmxError> {
        let call = self
            .call(
                hashes::GET_ATTRIBUTE,
                &[
                    JavaArg::ObjectName(mbean.into()),
                    JavaArg::String(attribute.into()),
                    JavaArg::Null,
                ],
                ReturnKind::Object,
                Some(mbean),
            )
            .idempotent()
            .named(attribute);
        self.value(call).await.map_err(|e| match e {
            JmxError::AttributeNotFound { address, mbean, .. } => JmxError::AttributeNotFound {
                address,
                mbean,
                attribute: attribute.to_string(),
            },
            other => other,
        })
    }

    /// Several attributes at once; attributes the MBean does not have are left out, as JMX does.
    pub async fn get_attributes(
        &self,
        mbean: &str,
        attributes: &[&str],
    ) -> Result<Vec<(String, JavaValue)>, JmxError> {
        let call = self
            .call(
                hashes::GET_ATTRIBUTES,
                &[
                    JavaArg::ObjectName(mbean.into()),
                    JavaArg::StringArray(attributes.iter().map(|a| a.to_string()).collect()),
                    JavaArg::Null,
                ],
                ReturnKind::Object,
                Some(mbean),
            )
            .idempotent();
        let list = self.value(call).await?;
        Ok(list
            .as_slice()
            .unwrap_or_default()
            .iter()
            .filter_map(|attribute| {
                let name = attribute.get("name")?.as_str()?.to_string();
                let value = attribute.get("value").cloned().unwrap_or(JavaValue::Null);
                Some((name, value))
            })
            .collect())
    }

    pub async fn set_attribute(
        &self,
        mbean: &str,
        attribute: &str,
        value: JavaArg,
    ) -> Result<(), JmxError> {
        let call = self
            .call(
                hashes::SET_ATTRIBUTE,
                &[
                    JavaArg::ObjectName(mbean.into()),
                    JavaArg::Marshalled(Box::new(JavaArg::Attribute {
                        name: attribute.into(),
                        value: Box::new(value),
                    })),
                    JavaArg::Null,
                ],
                ReturnKind::Void,
                Some(mbean),
            )
            .named(attribute);
        self.run(call).await.map(|_| ())
    }

    /// Invokes an operation. `signature` holds the declared Java parameter types, e.g. `"java.lang.String"`,
    /// `"int"`, `"java.util.Map"`, `"[Ljava.lang.String;"`.
    pub async fn invoke(
        &self,
        mbean: &str,
        operation: &str,
        params: &[JavaArg],
        signature: &[&str],
    ) -> Result<JavaValue, JmxError> {
        self.invoke_with_timeout(
            mbean,
            operation,
            params,
            signature,
            self.inner.config.call_timeout,
        )
        .await
    }

    /// [`Self::invoke`] with a time limit of its own, for operations that run long (compactions, cleanups).
    pub async fn invoke_with_timeout(
        &self,
        mbean: &str,
        operation: &str,
        params: &[JavaArg],
        signature: &[&str],
        timeout: Duration,
    ) -> Result<JavaValue, JmxError> {
        let params = if params.is_empty() {
            JavaArg::Null
        } else {
            JavaArg::Marshalled(Box::new(JavaArg::ObjectArray(params.to_vec())))
        };
        let signature = if signature.is_empty() {
            JavaArg::Null
        } else {
            JavaArg::StringArray(signature.iter().map(|s| s.to_string()).collect())
        };
        let call = Call {
            member: Some(operation),
            hash: hashes::INVOKE,
            primitives: Vec::new(),
            args: encode(&[
                JavaArg::ObjectName(mbean.into()),
                JavaArg::String(operation.into()),
                params,
                signature,
                JavaArg::Null,
            ]),
            kind: ReturnKind::Object,
            mbean: Some(mbean),
            idempotent: false,
            timeout,
        };
        self.value(call).await
    }

    /// Names of the registered MBeans matching `pattern` (e.g. `org.apache.cassandra.db:type=*,*`); `None`
    /// lists them all. Sorted.
    pub async fn query_names(&self, pattern: Option<&str>) -> Result<Vec<String>, JmxError> {
        let name = pattern.map_or(JavaArg::Null, |p| JavaArg::ObjectName(p.into()));
        let call = self
            .call(
                hashes::QUERY_NAMES,
                &[name, JavaArg::Null, JavaArg::Null],
                ReturnKind::Object,
                pattern,
            )
            .idempotent();
        let mut names: Vec<String> = self
            .value(call)
            .await?
            .as_slice()
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    pub async fn is_registered(&self, mbean: &str) -> Result<bool, JmxError> {
        let call = self
            .call(
                hashes::IS_REGISTERED,
                &[JavaArg::ObjectName(mbean.into()), JavaArg::Null],
                ReturnKind::Primitive,
                Some(mbean),
            )
            .idempotent();
        let raw = self.run(call).await?;
        match raw.primitive.first() {
            Some(byte) => Ok(*byte != 0),
            None => Err(self.protocol("isRegistered returned no boolean")),
        }
    }

    pub async fn mbean_info(&self, mbean: &str) -> Result<MBeanInfo, JmxError> {
        let call = self
            .call(
                hashes::GET_MBEAN_INFO,
                &[JavaArg::ObjectName(mbean.into()), JavaArg::Null],
                ReturnKind::Object,
                Some(mbean),
            )
            .idempotent();
        let info = self.value(call).await?;
        Ok(mbean_info(&info))
    }

    /// The agent's default domain: a cheap call that also keeps an idle connection from expiring.
    pub async fn default_domain(&self) -> Result<String, JmxError> {
        let call = self
            .call(
                hashes::GET_DEFAULT_DOMAIN,
                &[JavaArg::Null],
                ReturnKind::Object,
                None,
            )
            .idempotent();
        Ok(self
            .value(call)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Subscribes to the notifications of `mbean`. A background task fetches them over a connection of its
    /// own, so other calls go on meanwhile.
    pub async fn subscribe(&self, mbean: &str) -> Result<Subscription, JmxError> {
        Subscription::start(self.clone(), mbean).await
    }

    pub(crate) async fn add_notification_listener(
        &self,
        mbean: &str,
    ) -> Result<Vec<i32>, JmxError> {
        let call = self.call(
            hashes::ADD_NOTIFICATION_LISTENERS,
            &[
                JavaArg::ObjectNameArray(vec![mbean.to_string()]),
                JavaArg::MarshalledArray(vec![JavaArg::Null]),
                JavaArg::NullSubjects(1),
            ],
            ReturnKind::Object,
            Some(mbean),
        );
        let ids = self.value(call).await?;
        Ok(ids
            .as_slice()
            .unwrap_or_default()
            .iter()
            .filter_map(|id| id.as_i64().map(|id| id as i32))
            .collect())
    }

    pub(crate) async fn remove_notification_listeners(
        &self,
        mbean: &str,
        ids: &[i32],
    ) -> Result<(), JmxError> {
        let call = self.call(
            hashes::REMOVE_NOTIFICATION_LISTENERS,
            &[
                JavaArg::ObjectName(mbean.into()),
                JavaArg::IntegerArray(ids.to_vec()),
                JavaArg::Null,
            ],
            ReturnKind::Void,
            Some(mbean),
        );
        self.run(call).await.map(|_| ())
    }

    /// One `fetchNotifications(clientSequence, max, timeout)` long poll.
    pub(crate) async fn fetch_notifications(
        &self,
        sequence: i64,
        max: i32,
        wait: Duration,
    ) -> Result<Fetched, JmxError> {
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let mut primitives = Vec::with_capacity(20);
        primitives.extend_from_slice(&sequence.to_be_bytes());
        primitives.extend_from_slice(&max.to_be_bytes());
        primitives.extend_from_slice(&wait_ms.to_be_bytes());
        let call = Call {
            member: None,
            hash: hashes::FETCH_NOTIFICATIONS,
            primitives,
            args: Vec::new(),
            kind: ReturnKind::Object,
            mbean: None,
            idempotent: false,
            timeout: self.inner.config.call_timeout + wait,
        };
        let result = self.value(call).await?;
        Fetched::from_value(&result)
            .ok_or_else(|| self.protocol("fetchNotifications returned no NotificationResult"))
    }
}
