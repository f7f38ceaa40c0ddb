//! The sidecar's one JMX client to its Cassandra node, connected on first use and shared by all operations.
//!
//! Callers that ask while a connection attempt is under way wait for that same attempt and all get its result, so a
//! hung agent costs every caller at most one connect timeout, not one each in turn. An attempt that failed is
//! forgotten: the next call tries again.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use jmx::{JmxClient, JmxError};

use crate::jmx_settings::JmxSettings;

/// One connection attempt, awaited by everyone who asked while it ran. The error is shared, so each caller gets a
/// copy of it (see [`copy_error`]).
type Attempt = Shared<BoxFuture<'static, Result<JmxClient, Arc<JmxError>>>>;

#[derive(Debug)]
enum Slot {
    Idle,
    Connecting(Attempt),
    Connected(JmxClient),
}

#[derive(Debug)]
pub struct JmxConnector {
    settings: JmxSettings,
    connect_timeout: Option<Duration>,
    slot: Mutex<Slot>,
    /// Where the client's connections and keep-alive task live. Whoever asks first (an HTTP worker, with its
    /// own single-threaded runtime that stops early at shutdown, or an operation), the client belongs here.
    runtime: tokio::runtime::Handle,
    /// Told of every JMX call (metrics).
    observer: Option<Arc<dyn jmx::CallObserver>>,
}

impl JmxConnector {
    pub fn new(settings: JmxSettings, runtime: tokio::runtime::Handle) -> Self {
        Self {
            settings,
            connect_timeout: None,
            slot: Mutex::new(Slot::Idle),
            runtime,
            observer: None,
        }
    }

    /// Tells `observer` of every call of the clients this connector makes.
    pub fn observed_by(mut self, observer: Arc<dyn jmx::CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Overrides the JMX client's connect timeout (tests use a short one).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    pub fn settings(&self) -> &JmxSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // Every update of the slot is a single assignment, so a poisoned lock still holds a consistent slot.
        crate::sync::lock(&self.slot)
    }

    /// The shared client, connecting if there is none yet. A connected client re-opens its JMX connection
    /// by itself when the agent drops it, so it is kept for the life of the sidecar.
    pub async fn client(&self) -> Result<JmxClient, JmxError> {
        let attempt = {
            let mut slot = self.lock();
            match &*slot {
                Slot::Connected(client) => return Ok(client.clone()),
                Slot::Connecting(attempt) => attempt.clone(),
                Slot::Idle => {
                    let attempt = self.start_attempt();
                    *slot = Slot::Connecting(attempt.clone());
                    attempt
                }
            }
        };
        let outcome = attempt.clone().await;
        {
            // The first caller back settles the slot; it may already hold a newer attempt or client.
            let mut slot = self.lock();
            if let Slot::Connecting(current) = &*slot
                && current.ptr_eq(&attempt)
            {
                *slot = match &outcome {
                    Ok(client) => Slot::Connected(client.clone()),
                    Err(_) => Slot::Idle,
                };
            }
        }
        outcome.map_err(|error| copy_error(&error))
    }

    /// Whether the shared client has a working connection, and how many times it reconnected; `None` before the
    /// first connection.
    pub fn connection(&self) -> Option<(bool, u64)> {
        match &*self.lock() {
            Slot::Connected(client) => Some((
                client.state() == jmx::ConnectionState::Connected,
                client.reconnects(),
            )),
            Slot::Idle | Slot::Connecting(_) => None,
        }
    }

    fn start_attempt(&self) -> Attempt {
        let mut config = self.settings.client_config();
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout = timeout;
        }
        let address = self.settings.service.to_string();
        tracing::debug!(%address, "connecting to JMX");
        // Spawned, so the attempt goes on (and its result is kept) even if every caller waiting for it gives up.
        let observer = self.observer.clone();
        let connecting = self.runtime.spawn(async move {
            let started = std::time::Instant::now();
            let connected = JmxClient::connect(config).await;
            if let Some(observer) = observer {
                match &connected {
                    Ok(client) => client.observe(observer),
                    // A connection that cannot be made is a failed JMX call too, for whoever counts them.
                    Err(error) => observer.observed(&jmx::ObservedCall {
                        mbean: None,
                        member: "connect",
                        elapsed: started.elapsed(),
                        error: Some(error),
                    }),
                }
            }
            connected
        });
        async move {
            match connecting.await {
                Ok(connected) => connected.map_err(Arc::new),
                Err(e) => Err(Arc::new(JmxError::Protocol {
                    address,
                    message: format!("the connection task failed: {e}"),
                })),
            }
        }
        .boxed()
        .shared()
    }
}

/// A copy of a shared connection error for one caller. `JmxError` is not `Clone` (it holds an `io::Error`); the copy
/// keeps the variant, so callers classifying errors (`is_connection_problem`) see the same thing.
fn copy_error(error: &JmxError) -> JmxError {
    match error {
        JmxError::Connect { address, error } => JmxError::Connect {
            address: address.clone(),
            error: std::io::Error::new(error.kind(), error.to_string()),
        },
        JmxError::Timeout {
            address,
            what,
            timeout,
        } => JmxError::Timeout {
            address: address.clone(),
            what: what.clone(),
            timeout: *timeout,
        },
        JmxError::AuthenticationFailed { address, message } => JmxError::AuthenticationFailed {
            address: address.clone(),
            message: message.clone(),
        },
        JmxError::AccessDenied {
            address,
            mbean,
            message,
        } => JmxError::AccessDenied {
            address: address.clone(),
            mbean: mbean.clone(),
            message: message.clone(),
        },
        JmxError::InstanceNotFound { address, mbean } => JmxError::InstanceNotFound {
            address: address.clone(),
            mbean: mbean.clone(),
        },
        JmxError::AttributeNotFound {
            address,
            mbean,
            attribute,
        } => JmxError::AttributeNotFound {
            address: address.clone(),
            mbean: mbean.clone(),
            attribute: attribute.clone(),
        },
        JmxError::MBean {
            address,
            mbean,
            exception,
        } => JmxError::MBean {
            address: address.clone(),
            mbean: mbean.clone(),
            exception: exception.clone(),
        },
        JmxError::Remote { address, exception } => JmxError::Remote {
            address: address.clone(),
            exception: exception.clone(),
        },
        JmxError::ConnectionLost {
            address,
            during,
            message,
        } => JmxError::ConnectionLost {
            address: address.clone(),
            during: during.clone(),
            message: message.clone(),
        },
        JmxError::Unavailable {
            address,
            down_for,
            retry_in,
            last_error,
        } => JmxError::Unavailable {
            address: address.clone(),
            down_for: *down_for,
            retry_in: *retry_in,
            last_error: last_error.clone(),
        },
        JmxError::Protocol { address, message } => JmxError::Protocol {
            address: address.clone(),
            message: message.clone(),
        },
        JmxError::InvalidServiceUrl(url) => JmxError::InvalidServiceUrl(url.clone()),
        JmxError::Tls { address, message } => JmxError::Tls {
            address: address.clone(),
            message: message.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A JMX agent that accepts connections and never answers; counts the connections and keeps them open.
    async fn hung_agent() -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        (port, accepted)
    }

    fn connector(port: u16) -> JmxConnector {
        let settings = JmxSettings {
            service: format!("127.0.0.1:{port}").parse().unwrap(),
            ..Default::default()
        };
        JmxConnector::new(settings, tokio::runtime::Handle::current())
            .with_connect_timeout(Duration::from_millis(300))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_attempt_and_a_later_call_tries_again() {
        let (port, accepted) = hung_agent().await;
        let connector = Arc::new(connector(port));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let connector = Arc::clone(&connector);
                tokio::spawn(async move { connector.client().await })
            })
            .collect();
        for caller in callers {
            let error = caller.await.unwrap().unwrap_err();
            assert!(
                matches!(error, JmxError::Timeout { .. }),
                "every caller gets the attempt's timeout: {error}"
            );
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "eight callers, one connection attempt"
        );

        let error = connector.client().await.unwrap_err();
        assert!(error.is_connection_problem(), "{error}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "after a failure, the next call connects anew"
        );
    }
}
