//! What can go wrong talking to a JMX agent. Every message names the agent's address, and the MBean when
//! there is one.

use std::time::Duration;

use crate::value::JavaException;

#[derive(Debug, thiserror::Error)]
pub enum JmxError {
    #[error(
        "cannot connect to JMX at {address}: {error} (is the Java process running and its JMX port right?)"
    )]
    Connect {
        address: String,
        error: std::io::Error,
    },

    #[error("JMX at {address} did not answer {what} within {timeout:?}")]
    Timeout {
        address: String,
        what: String,
        timeout: Duration,
    },

    #[error("JMX at {address} refused the credentials: {message}")]
    AuthenticationFailed { address: String, message: String },

    #[error("JMX at {address} denied access{}: {message}", mbean_suffix(mbean))]
    AccessDenied {
        address: String,
        mbean: Option<String>,
        message: String,
    },

    #[error("JMX at {address}: no MBean {mbean}")]
    InstanceNotFound { address: String, mbean: String },

    #[error("JMX at {address}: MBean {mbean} has no attribute {attribute}")]
    AttributeNotFound {
        address: String,
        mbean: String,
        attribute: String,
    },

    /// The MBean itself threw: `MBeanException`, `RuntimeMBeanException`, `ReflectionException` and the like,
    /// with the remote exception chain.
    #[error("JMX at {address}: {mbean} failed: {exception}")]
    MBean {
        address: String,
        mbean: String,
        exception: JavaException,
    },

    /// Any other exception the server returned.
    #[error("JMX at {address}: {exception}")]
    Remote {
        address: String,
        exception: JavaException,
    },

    /// The connection broke while a call was under way: the agent may or may not have carried it out.
    #[error(
        "JMX at {address}: the connection broke during {during}: {message} (did the Java process stop or restart? the call may or may not have taken effect)"
    )]
    ConnectionLost {
        address: String,
        during: String,
        message: String,
    },

    /// The agent has not answered for a while; the client asks its registry again at short intervals, and
    /// calls in between fail at once with this.
    #[error(
        "JMX at {address} has not answered for {}: {last_error}; trying again in {}",
        seconds(*down_for),
        seconds(*retry_in)
    )]
    Unavailable {
        address: String,
        down_for: Duration,
        retry_in: Duration,
        last_error: String,
    },

    #[error("JMX at {address}: {message}")]
    Protocol { address: String, message: String },

    #[error(
        "cannot use JMX service '{0}': use HOST:PORT or service:jmx:rmi:///jndi/rmi://HOST:PORT/jmxrmi"
    )]
    InvalidServiceUrl(String),

    #[error("TLS to JMX at {address}: {message}")]
    Tls { address: String, message: String },
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

fn mbean_suffix(mbean: &Option<String>) -> String {
    mbean
        .as_ref()
        .map(|m| format!(" to {m}"))
        .unwrap_or_default()
}

impl JmxError {
    /// Errors after which a new connection may succeed where the old one failed.
    pub fn is_connection_problem(&self) -> bool {
        matches!(
            self,
            JmxError::ConnectionLost { .. }
                | JmxError::Timeout { .. }
                | JmxError::Connect { .. }
                | JmxError::Unavailable { .. }
        )
    }
}
