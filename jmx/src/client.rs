//! The JMX client: connect through the RMI registry, then call the `RMIConnection` of the agent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::error::JmxError;
use crate::jrmp::hashes;
use crate::jrmp::{Connection, JrmpError, ObjId, RawReturn, RemoteRef, ReturnKind};
use crate::notify::{Fetched, Subscription};
use crate::outage::{FIRST_RETRY, Outage};
use crate::serial::Encoder;
use crate::tls::{Connector, TlsConfig};
use crate::value::{JavaArg, JavaException, JavaValue, to_value};

/// Where the agent is and how to talk to it.
#[derive(Clone, PartialEq, Eq)]
pub struct JmxConfig {
    /// The RMI registry's host and port (Cassandra: 127.0.0.1:7199).
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// Default time limit for one call; long operations pass their own to [`JmxClient::invoke_with_timeout`].
    pub call_timeout: Duration,
    /// Connect here instead of the host named in the stubs the server returns (which may be an address
    /// unreachable from the client, e.g. inside a container).
    pub stub_host_override: Option<String>,
    /// Connections kept open for reuse.
    pub max_idle_connections: usize,
    /// TLS settings; needed when the agent's registry or connector uses TLS.
    pub tls: Option<TlsConfig>,
    /// How often to make a cheap call so the server does not close the connection as idle (it does after
    /// 2 minutes by default); `None` turns this off, and an expired connection is then re-opened on the
    /// next call.
    pub keepalive: Option<Duration>,
}

impl std::fmt::Debug for JmxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JmxConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("connect_timeout", &self.connect_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("stub_host_override", &self.stub_host_override)
            .field("tls", &self.tls)
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

impl JmxConfig {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
            stub_host_override: None,
            max_idle_connections: 4,
            tls: None,
            keepalive: Some(Duration::from_secs(60)),
        }
    }

    /// From `HOST:PORT`, `[V6]:PORT` or `service:jmx:rmi:///jndi/rmi://HOST:PORT/jmxrmi`.
    pub fn from_service(service: &str) -> Result<Self, JmxError> {
        let invalid = || JmxError::InvalidServiceUrl(service.to_string());
        let address = match service.strip_prefix("service:jmx:rmi:") {
            Some(rest) => rest
                .rsplit_once("rmi://")
                .and_then(|(_, a)| a.split('/').next())
                .ok_or_else(invalid)?,
            None => service,
        };
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port),
            None => return Err(invalid()),
        };
        let port = port.parse().map_err(|_| invalid())?;
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(Self::new(host, port))
    }

    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What `getMBeanInfo` says about an MBean.
#[derive(Debug, Clone, PartialEq)]
pub struct MBeanInfo {
    pub class_name: String,
    pub description: Option<String>,
    pub attributes: Vec<MBeanAttribute>,
    pub operations: Vec<MBeanOperation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MBeanAttribute {
    pub name: String,
    pub type_name: String,
    pub readable: bool,
    pub writable: bool,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MBeanOperation {
    pub name: String,
    pub return_type: String,
    pub parameters: Vec<MBeanParameter>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MBeanParameter {
    pub name: String,
    pub type_name: String,
}

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
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
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

    /// Closes the JMX connection on the server and drops the TCP connections.
    pub async fn close(&self) -> Result<(), JmxError> {
        let call = self.call(hashes::CLOSE, &[], ReturnKind::Void, None);
        let result = self.run(call).await.map(|_| ());
        let session = self.session();
        session
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        result
    }

    /// A call with the default time limit, not retried unless marked idempotent.
    fn call<'a>(
        &self,
        hash: i64,
        args: &[JavaArg],
        kind: ReturnKind,
        mbean: Option<&'a str>,
    ) -> Call<'a> {
        Call {
            member: None,
            hash,
            primitives: Vec::new(),
            args: encode(args),
            kind,
            mbean,
            idempotent: false,
            timeout: self.inner.config.call_timeout,
        }
    }

    fn session(&self) -> Arc<Session> {
        Arc::clone(&self.inner.session.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn outage(&self) -> MutexGuard<'_, Option<Outage>> {
        self.inner.outage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn protocol(&self, message: impl Into<String>) -> JmxError {
        JmxError::Protocol {
            address: self.inner.address.clone(),
            message: message.into(),
        }
    }

    async fn value(&self, call: Call<'_>) -> Result<JavaValue, JmxError> {
        let raw = self.run(call).await?;
        to_value(&raw.handles, &raw.value).map_err(|e| self.protocol(e.to_string()))
    }

    /// Tells the observer of every call from now on (the first observer set stays).
    pub fn observe(&self, observer: Arc<dyn CallObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// Runs a call, and tells the observer how it went.
    async fn run(&self, call: Call<'_>) -> Result<RawReturn, JmxError> {
        let started = std::time::Instant::now();
        let outcome = self.run_unobserved(&call).await;
        if let Some(observer) = self.inner.observer.get() {
            observer.observed(&ObservedCall {
                mbean: call.mbean,
                member: call.member(),
                elapsed: started.elapsed(),
                error: outcome.as_ref().err(),
            });
        }
        outcome
    }

    /// Runs a call; on a lost or expired connection, reconnects and (if the call is idempotent or certainly
    /// unsent) tries again. A call that was under way when the connection broke is not sent again: the agent
    /// may have run it.
    async fn run_unobserved(&self, call: &Call<'_>) -> Result<RawReturn, JmxError> {
        let mut session = self.session();
        if session.is_broken() {
            session = self.reconnect(&session).await?;
        }
        match self.attempt(&session, call).await {
            Err(failed) if failed.reconnect => {
                self.lost(&session);
                if !call.idempotent && !failed.unsent {
                    return Err(failed.error);
                }
                tracing::debug!(address = %self.inner.address, error = %failed.error, "JMX connection lost; reconnecting");
                let fresh = self.reconnect(&session).await?;
                self.attempt(&fresh, call).await.map_err(|failed| {
                    if failed.reconnect {
                        self.lost(&fresh);
                    }
                    failed.error
                })
            }
            other => other.map_err(|failed| failed.error),
        }
    }

    /// Marks `session` broken, so the next call goes back to the registry, and tells the watchers of
    /// [`JmxClient::watch_connected`].
    fn lost(&self, session: &Session) {
        session.mark_broken();
        let _ = self.inner.connected.send_replace(false);
    }

    /// Replaces a broken session through the registry, unless another task already did. While the agent does not
    /// answer, one attempt is made per backoff interval and calls in between fail at once.
    async fn reconnect(&self, failed: &Arc<Session>) -> Result<Arc<Session>, JmxError> {
        let _guard = self.inner.reconnecting.lock().await;
        let current = self.session();
        if !Arc::ptr_eq(&current, failed) {
            return Ok(current);
        }
        self.lost(failed);
        let now = Instant::now();
        if let Some(outage) = self.outage().as_ref()
            && !outage.may_try(now)
        {
            return Err(JmxError::Unavailable {
                address: self.inner.address.clone(),
                down_for: now.duration_since(outage.since),
                retry_in: outage.retry_in(now),
                last_error: outage.last_error.clone(),
            });
        }
        match establish(&self.inner.config, &self.inner.dialer).await {
            Ok(session) => {
                let fresh = Arc::new(session);
                *self.inner.session.lock().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&fresh);
                self.inner.reconnects.fetch_add(1, Ordering::Relaxed);
                if let Some(outage) = self.outage().take() {
                    tracing::info!(address = %self.inner.address, down_for = ?outage.since.elapsed(), "JMX answers again");
                }
                let _ = self.inner.connected.send_replace(true);
                Ok(fresh)
            }
            Err(error) => {
                let now = Instant::now();
                let mut outage = self.outage();
                match outage.as_mut() {
                    Some(outage) => outage.failed_again(now, error.to_string()),
                    None => {
                        tracing::warn!(address = %self.inner.address, %error, "JMX does not answer; asking its registry again until it does");
                        *outage = Some(Outage::begin(now, error.to_string()));
                    }
                }
                Err(error)
            }
        }
    }

    /// A connection to the session's endpoint: a pooled one, else a new one. A pooled connection idle for a while
    /// is pinged first (as the JDK's own client does), which tells one the server closed meanwhile, after an idle
    /// timeout or a restart, before a call is sent on it; so a call that fails later reached the server, and one
    /// that is not idempotent is not sent again.
    async fn connection(&self, session: &Session) -> Result<Connection, Attempt> {
        loop {
            let taken = session.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(mut pooled) = taken else {
                break;
            };
            if pooled.since.elapsed() < REUSE_WITHOUT_PING {
                return Ok(pooled.connection);
            }
            match pooled
                .connection
                .ping(self.inner.config.connect_timeout)
                .await
            {
                Ok(()) => return Ok(pooled.connection),
                Err(error) => {
                    tracing::debug!(address = %self.inner.address, %error, "dropping a pooled JMX connection that no longer answers")
                }
            }
        }
        self.inner
            .dialer
            .open(&session.target)
            .await
            // The endpoint is gone (a restarted JVM serves its RMI connections elsewhere): the registry knows where
            // it is now.
            .map_err(|error| Attempt {
                reconnect: error.is_connection_problem(),
                unsent: true,
                error,
            })
    }

    async fn attempt(&self, session: &Session, call: &Call<'_>) -> Result<RawReturn, Attempt> {
        let mut connection = self.connection(session).await?;
        let result = connection
            .call(
                &session.target.object,
                -1,
                call.hash,
                &call.primitives,
                &call.args,
                call.kind,
                call.timeout,
            )
            .await;
        let raw = match result {
            Ok(raw) => raw,
            Err(error) => {
                // The call was sent on a connection that answered moments before: it may have run.
                return Err(Attempt {
                    reconnect: matches!(error, JrmpError::Closed | JrmpError::Io(_)),
                    unsent: false,
                    error: self.transport_error(error, call),
                });
            }
        };
        {
            let mut idle = session.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.inner.config.max_idle_connections {
                idle.push(Pooled::new(connection));
            }
        }
        if raw.exceptional {
            let exception = exception_of(&raw);
            // After an idle timeout the server forgets the connection object: get a new one.
            let expired = exception.class == "java.rmi.NoSuchObjectException";
            return Err(Attempt {
                reconnect: expired,
                unsent: expired,
                error: classify(&self.inner.address, call.mbean, exception),
            });
        }
        Ok(raw)
    }

    fn transport_error(&self, error: JrmpError, call: &Call<'_>) -> JmxError {
        let address = self.inner.address.clone();
        match error {
            JrmpError::Timeout(timeout) => JmxError::Timeout {
                address,
                what: call
                    .mbean
                    .map_or("a call".to_string(), |m| format!("a call on {m}")),
                timeout,
            },
            JrmpError::Closed | JrmpError::Io(_) | JrmpError::Tls(_) => JmxError::ConnectionLost {
                address,
                during: match call.mbean {
                    Some(mbean) => format!("{} on {mbean}", call.member()),
                    None => call.member().to_string(),
                },
                message: error.to_string(),
            },
            JrmpError::Protocol(_) | JrmpError::Decode(_) => JmxError::Protocol {
                address,
                message: error.to_string(),
            },
        }
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

/// A failed attempt, and whether a new session may help.
struct Attempt {
    reconnect: bool,
    /// The call certainly did not run, so even a non-idempotent call may be sent again.
    unsent: bool,
    error: JmxError,
}

/// Opens JRMP connections, with TLS where the server asks for it.
struct Dialer {
    /// The registry's address, for error messages.
    address: String,
    connect_timeout: Duration,
    stub_host_override: Option<String>,
    tls: Option<Connector>,
}

impl Dialer {
    /// A connection to a remote object's endpoint; TLS when its stub says so.
    async fn open(&self, target: &RemoteRef) -> Result<Connection, JmxError> {
        let host = self.stub_host_override.as_deref().unwrap_or(&target.host);
        self.dial(host, target.port, target.tls).await
    }

    /// A connection to the registry. With TLS configured we try TLS first (Cassandra puts its registry behind
    /// TLS too); a server that hangs up on the TLS greeting is a plain registry (the JDK agent's default), and
    /// we connect again without TLS. Certificate problems are reported, never retried in the clear.
    async fn registry(&self, host: &str, port: u16) -> Result<Connection, JmxError> {
        if self.tls.is_none() {
            return self.dial(host, port, false).await;
        }
        match self.dial(host, port, true).await {
            Err(JmxError::Tls { message, .. })
                if message.contains("peer closed")
                    || message.contains("reset")
                    || message.contains("eof") =>
            {
                tracing::debug!(address = %self.address, %message, "the registry does not speak TLS; using plain TCP");
                self.dial(host, port, false).await
            }
            other => other,
        }
    }

    async fn dial(&self, host: &str, port: u16, tls: bool) -> Result<Connection, JmxError> {
        let endpoint = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let result = match (tls, &self.tls) {
            (false, _) => Connection::connect_tcp(host, port, self.connect_timeout).await,
            (true, Some(connector)) => {
                Connection::connect_tls(host, port, self.connect_timeout, connector).await
            }
            (true, None) => {
                return Err(JmxError::Tls {
                    address: endpoint,
                    message: "the agent requires TLS: give the CA that signed its certificate"
                        .into(),
                });
            }
        };
        result.map_err(|error| match error {
            // With TLS 1.3 the server's verdict on our certificate arrives after our side of the handshake,
            // so it surfaces on the first read.
            JrmpError::Io(source) | JrmpError::Tls(source) if tls_alert(&source).is_some() => {
                JmxError::Tls {
                    address: endpoint,
                    message: tls_alert(&source).unwrap_or_default(),
                }
            }
            JrmpError::Io(source) => JmxError::Connect {
                address: endpoint,
                error: source,
            },
            JrmpError::Tls(source) if source.kind() == std::io::ErrorKind::ConnectionRefused => {
                JmxError::Connect {
                    address: endpoint,
                    error: source,
                }
            }
            JrmpError::Tls(source) => JmxError::Tls {
                address: endpoint,
                message: format!("handshake failed: {}", source.to_string().to_lowercase()),
            },
            JrmpError::Timeout(timeout) => JmxError::Timeout {
                address: endpoint,
                what: "the connection".into(),
                timeout,
            },
            other => JmxError::Protocol {
                address: endpoint,
                message: other.to_string(),
            },
        })
    }
}

/// A TLS alert from the server, explained.
fn tls_alert(error: &std::io::Error) -> Option<String> {
    let rustls_error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    let rustls::Error::AlertReceived(alert) = rustls_error else {
        return None;
    };
    let hint = match alert {
        rustls::AlertDescription::BadCertificate
        | rustls::AlertDescription::CertificateRequired
        | rustls::AlertDescription::UnknownCA => {
            " (the agent wants a client certificate it trusts: give one signed by a CA in its truststore)"
        }
        _ => "",
    };
    Some(format!(
        "the agent refused the TLS session: {alert:?}{hint}"
    ))
}

/// Registry lookup of `jmxrmi`, then `newClient` with the credentials.
async fn establish(config: &JmxConfig, dialer: &Dialer) -> Result<Session, JmxError> {
    let address = dialer.address.as_str();
    let protocol = |message: String| JmxError::Protocol {
        address: address.to_string(),
        message,
    };
    let mut registry = dialer.registry(&config.host, config.port).await?;
    let lookup_args = encode(&[JavaArg::String("jmxrmi".into())]);
    let mut raw = registry
        .call(
            &ObjId::REGISTRY,
            hashes::REGISTRY_LOOKUP_OP,
            hashes::REGISTRY_INTERFACE,
            &[],
            &lookup_args,
            ReturnKind::Object,
            config.call_timeout,
        )
        .await
        .map_err(|e| protocol(format!("registry lookup failed: {e}")))?;
    if raw.exceptional
        && exception_of(&raw)
            .to_string()
            .contains("skeleton class not found")
    {
        // Registries run with java.rmi.server.ignoreStubClasses only take the 1.2 form; the server closes the
        // connection after refusing the first, so ask again on a new one.
        registry = dialer.registry(&config.host, config.port).await?;
        raw = registry
            .call(
                &ObjId::REGISTRY,
                -1,
                hashes::REGISTRY_LOOKUP,
                &[],
                &lookup_args,
                ReturnKind::Object,
                config.call_timeout,
            )
            .await
            .map_err(|e| protocol(format!("registry lookup failed: {e}")))?;
    }
    if raw.exceptional {
        return Err(classify(address, None, exception_of(&raw)));
    }
    let server =
        RemoteRef::from_stub(&raw.handles, &raw.value).map_err(|e| protocol(e.to_string()))?;
    // Tells the registry it may drop its pin on the stub; failing to is harmless.
    let _ = registry.dgc_ack(&raw.ack_uid).await;

    let mut connection = dialer.open(&server).await?;
    let credentials = match (&config.username, &config.password) {
        (Some(user), password) => {
            JavaArg::StringArray(vec![user.clone(), password.clone().unwrap_or_default()])
        }
        (None, _) => JavaArg::Null,
    };
    let raw = connection
        .call(
            &server.object,
            -1,
            hashes::NEW_CLIENT,
            &[],
            &encode(&[credentials]),
            ReturnKind::Object,
            config.call_timeout,
        )
        .await
        .map_err(|e| protocol(format!("newClient failed: {e}")))?;
    if raw.exceptional {
        let exception = exception_of(&raw);
        if exception
            .chain()
            .any(|e| e.class == "java.lang.SecurityException")
        {
            return Err(JmxError::AuthenticationFailed {
                address: address.to_string(),
                message: exception
                    .root_cause()
                    .message
                    .clone()
                    .unwrap_or_else(|| exception.to_string()),
            });
        }
        return Err(classify(address, None, exception));
    }
    let target =
        RemoteRef::from_stub(&raw.handles, &raw.value).map_err(|e| protocol(e.to_string()))?;
    let _ = connection.dgc_ack(&raw.ack_uid).await;
    let mut idle = Vec::new();
    if target.host == server.host && target.port == server.port && target.tls == server.tls {
        idle.push(Pooled::new(connection));
    }
    Ok(Session {
        target,
        idle: Mutex::new(idle),
        broken: AtomicBool::new(false),
    })
}

fn exception_of(raw: &RawReturn) -> JavaException {
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
fn classify(address: &str, mbean: Option<&str>, exception: JavaException) -> JmxError {
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

/// Reads the parts of an `MBeanInfo` people look at.
fn mbean_info(info: &JavaValue) -> MBeanInfo {
    let text = |value: Option<&JavaValue>| value.and_then(JavaValue::as_str).map(str::to_string);
    let items = |field: &str| {
        info.get(field)
            .and_then(JavaValue::as_slice)
            .unwrap_or_default()
            .to_vec()
    };
    MBeanInfo {
        class_name: text(info.get("className")).unwrap_or_default(),
        description: text(info.get("description")),
        attributes: items("attributes")
            .iter()
            .map(|a| MBeanAttribute {
                name: text(a.get("name")).unwrap_or_default(),
                type_name: text(a.get("attributeType")).unwrap_or_default(),
                readable: a
                    .get("isRead")
                    .and_then(JavaValue::as_bool)
                    .unwrap_or(false),
                writable: a
                    .get("isWrite")
                    .and_then(JavaValue::as_bool)
                    .unwrap_or(false),
                description: text(a.get("description")),
            })
            .collect(),
        operations: items("operations")
            .iter()
            .map(|o| MBeanOperation {
                name: text(o.get("name")).unwrap_or_default(),
                return_type: text(o.get("type")).unwrap_or_default(),
                parameters: o
                    .get("signature")
                    .and_then(JavaValue::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| MBeanParameter {
                        name: text(p.get("name")).unwrap_or_default(),
                        type_name: text(p.get("type")).unwrap_or_default(),
                    })
                    .collect(),
                description: text(o.get("description")),
            })
            .collect(),
    }
}
