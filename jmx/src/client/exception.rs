//! Turning the exception a remote call threw into a [`JmxError`] that says what went wrong in the caller's terms.

use crate::error::JmxError;
use crate::jrmp::RawReturn;
use crate::value::{JavaException, JavaValue, to_value};

pub(super) fn exception_of(raw: &RawReturn) -> JavaException {
    match to_value(&raw.handles, &raw.value) {
        Ok(JavaValue::Exception(exception)) => exception,
        Ok(other) => JavaException {
            class: "unknown".into(),
            message: Some(format!(
                "the server returned a non-exception as an error: {other:?}"
            )),
            cause: None,
        },
        Err(error) => JavaException {
            class: error.class,
            message: Some(error.message),
            cause: None,
        },
    }
}

/// Maps a remote exception to the error a caller can act on.
pub(super) fn classify(address: &str, mbean: Option<&str>, exception: JavaException) -> JmxError {
    let address = address.to_string();
    let mbean_name = mbean.unwrap_or_default().to_string();
    let has = |class: &str| exception.chain().any(|e| e.class == class);
    if has("javax.management.InstanceNotFoundException") {
        return JmxError::InstanceNotFound {
            address,
            mbean: mbean_name,
        };
    }
    if has("javax.management.AttributeNotFoundException") {
        return JmxError::AttributeNotFound {
            address,
            mbean: mbean_name,
            attribute: String::new(),
        };
    }
    if exception.class == "java.lang.SecurityException" {
        return JmxError::AccessDenied {
            address,
            mbean: mbean.map(str::to_string),
            message: exception.message.unwrap_or_default(),
        };
    }
    let mbean_failure = matches!(
        exception.class.as_str(),
        "javax.management.MBeanException"
            | "javax.management.RuntimeMBeanException"
            | "javax.management.ReflectionException"
            | "javax.management.RuntimeOperationsException"
            | "javax.management.RuntimeErrorException"
    );
    if mbean_failure && mbean.is_some() {
        return JmxError::MBean {
            address,
            mbean: mbean_name,
            exception,
        };
    }
    JmxError::Remote { address, exception }
}
