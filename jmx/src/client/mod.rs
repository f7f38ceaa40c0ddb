//! The JMX client: connect through the RMI registry, then call the `RMIConnection` of the agent.

mod calls;
mod config;
mod dial;
mod exception;
mod mbean;
mod transport;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::error::JmxError;
use crate::jrmp::hashes;
use crate::jrmp::{Connection, RemoteRef, ReturnKind};
use crate::outage::{FIRST_RETRY, Outage};
use crate::serial::Encoder;
use crate::sync::lock;
use crate::tls::Connector;
use crate::value::JavaArg;

pub use config::JmxConfig;
use dial::{Dialer, establish};
pub use mbean::{MBeanAttribute, MBeanInfo, MBeanOperation, MBeanParameter};

/// An authenticated `RMIConnection` and open TCP connections to its endpoint.
struct Session {
    target: RemoteRef,
    idle: Mutex<Vec<Pooled>>,
    /// Its endpoint stopped answering (or forgot it): the next call goes back to the registry.
    broken: AtomicBool,
}

impl Session {
    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
        lock(&self.idle).clear();
    }
}

/// A connection waiting for the next call, and since when.
struct Pooled {
    connection: Connection,
    since: Instant,
}

impl Pooled {
    fn new(connection: Connection) -> Self {
        Self {
            connection,
            since: Instant::now(),
        }
    }
}

/// A pooled connection used again within this long is not pinged first, as the JDK skips the ping for one used
/// within a round trip: a burst of calls costs no extra round trips.
const REUSE_WITHOUT_PING: Duration = Duration::from_millis(500);

/// Whether the client has a working JMX connection, as of its last call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connected,
    /// The last call found the agent gone; no new connection has been made since.
    Down {
        /// How long since the first call that found it gone.
        down_for: Duration,
    },
}

/// A connected JMX client. Cheap to share (`Arc` inside); calls may run concurrently, each on its own TCP
/// connection, since JRMP carries one call at a time per connection.
#[derive(Clone)]
pub struct JmxClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: JmxConfig,
    /// Told of every call once it ended (metrics).
    observer: std::sync::OnceLock<Arc<dyn CallObserver>>,
    address: String,
    dialer: Dialer,
    session: Mutex<Arc<Session>>,
    /// Serialises reconnection, so a burst of failures builds one new session, not many.
    reconnecting: tokio::sync::Mutex<()>,
    /// Set while the agent does not answer a new connection.
    outage: Mutex<Option<Outage>>,
    /// `true` while the client has a session that is not known to be broken; watched by those who act when the
    /// agent comes back.
    connected: tokio::sync::watch::Sender<bool>,
    reconnects: AtomicU64,
}

impl std::fmt::Debug for JmxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JmxClient")
            .field("address", &self.inner.address)
            .finish()
    }
}

impl<'a> Call<'a> {
    fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    fn named(mut self, member: &'a str) -> Self {
        self.member = Some(member);
        self
    }

    /// What an observer calls this call.
    fn member(&self) -> &'a str {
        if let Some(member) = self.member {
            return member;
        }
        match self.hash {
            hashes::GET_ATTRIBUTES => "getAttributes",
            hashes::QUERY_NAMES => "queryNames",
            hashes::GET_MBEAN_INFO => "getMBeanInfo",
            hashes::IS_REGISTERED => "isRegistered",
            hashes::GET_DEFAULT_DOMAIN => "getDefaultDomain",
            hashes::FETCH_NOTIFICATIONS => "fetchNotifications",
            hashes::ADD_NOTIFICATION_LISTENERS => "addNotificationListeners",
            hashes::REMOVE_NOTIFICATION_LISTENERS => "removeNotificationListeners",
            hashes::CLOSE => "close",
            _ => "call",
        }
    }
}

/// A call as an observer hears of it once it ended.
#[derive(Debug)]
pub struct ObservedCall<'a> {
    /// The MBean, for calls on one.
    pub mbean: Option<&'a str>,
    /// The attribute read or written, or the operation invoked; otherwise the remote method
    /// (`getAttributes`, `queryNames`, ...).
    pub member: &'a str,
    pub elapsed: Duration,
    pub error: Option<&'a JmxError>,
}

/// Hears of every call a client makes (for metrics): set with [`JmxClient::observe`].
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    fn observed(&self, call: &ObservedCall<'_>);
}

/// One call: which remote method, its arguments, and what comes back.
struct Call<'a> {
    /// The attribute or operation, when the call names one.
    member: Option<&'a str>,
    hash: i64,
    primitives: Vec<u8>,
    args: Vec<u8>,
    kind: ReturnKind,
    /// Named in errors.
    mbean: Option<&'a str>,
    /// Safe to send again on a new connection if the first attempt was lost.
    idempotent: bool,
    timeout: Duration,
}

fn encode(args: &[JavaArg]) -> Vec<u8> {
    let mut encoder = Encoder::for_rmi_call();
    for arg in args {
        encoder.write(arg);
    }
    encoder.into_bytes()
}

impl JmxClient {
    /// Looks up the agent in the RMI registry and opens an (authenticated) JMX connection.
    pub async fn connect(config: JmxConfig) -> Result<JmxClient, JmxError> {
        let address = config.address();
        let tls = match &config.tls {
            Some(tls) => Some(Connector::new(tls).map_err(|error| JmxError::Tls {
                address: address.clone(),
                message: error.to_string(),
            })?),
            None => None,
        };
        let dialer = Dialer {
            address: address.clone(),
            connect_timeout: config.connect_timeout,
            stub_host_override: config.stub_host_override.clone(),
            tls,
        };
        let session = establish(&config, &dialer).await?;
        let client = JmxClient {
            inner: Arc::new(Inner {
                config,
                address,
                dialer,
                session: Mutex::new(Arc::new(session)),
                reconnecting: tokio::sync::Mutex::new(()),
                outage: Mutex::new(None),
                connected: tokio::sync::watch::Sender::new(true),
                reconnects: AtomicU64::new(0),
                observer: std::sync::OnceLock::new(),
            }),
        };
        if let Some(interval) = client.inner.config.keepalive {
            tokio::spawn(keep_alive(Arc::downgrade(&client.inner), interval));
        }
        Ok(client)
    }

    /// How many times the client had to open a new JMX connection after the first.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }

    /// Whether the last call found a working connection.
    pub fn state(&self) -> ConnectionState {
        if !self.session().is_broken() {
            return ConnectionState::Connected;
        }
        let since = self.outage().as_ref().map(|outage| outage.since);
        ConnectionState::Down {
            down_for: since.map_or(Duration::ZERO, |since| since.elapsed()),
        }
    }

    /// Changes of [`JmxClient::state`] between connected (`true`) and down: a receiver sees `true` again once a
    /// call found the agent back.
    pub fn watch_connected(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.connected.subscribe()
    }

    /// `host:port` of the registry this client connected to.
    pub fn address(&self) -> &str {
        &self.inner.address
    }
    /// Closes the JMX connection on the server and drops the TCP connections.
    pub async fn close(&self) -> Result<(), JmxError> {
        let call = self.call(hashes::CLOSE, &[], ReturnKind::Void, None);
        let result = self.run(call).await.map(|_| ());
        let session = self.session();
        lock(&session.idle).clear();
        result
    }
}

/// Pings the agent every `interval` while the client exists. Once a call found the agent gone, pings as often as
/// the backoff allows instead, so the client finds the agent again soon after it is back even when no one calls.
async fn keep_alive(client: Weak<Inner>, interval: Duration) {
    let Some(mut connected) = client.upgrade().map(|inner| inner.connected.subscribe()) else {
        return;
    };
    loop {
        let wait = {
            let Some(inner) = client.upgrade() else {
                return;
            };
            let client = JmxClient { inner };
            match client.state() {
                ConnectionState::Connected => interval,
                ConnectionState::Down { .. } => client
                    .outage()
                    .as_ref()
                    .map_or(FIRST_RETRY, |outage| outage.retry_in(Instant::now()))
                    .clamp(Duration::from_millis(10), interval),
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = connected.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        let Some(inner) = client.upgrade() else {
            return;
        };
        let client = JmxClient { inner };
        if let Err(error) = client.default_domain().await {
            tracing::debug!(address = %client.address(), %error, "JMX keep-alive call failed");
        }
    }
}
