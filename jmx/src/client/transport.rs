//! Running one call: on a pooled connection of the current session, with a new session through the registry when
//! the agent forgot the old one or stopped answering, and the rules for when a call may be sent again.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use super::dial::establish;
use super::exception::{classify, exception_of};
use super::{
    Call, CallObserver, JmxClient, ObservedCall, Pooled, REUSE_WITHOUT_PING, Session, encode,
};
use crate::error::JmxError;
use crate::jrmp::{Connection, JrmpError, RawReturn, ReturnKind};
use crate::outage::Outage;
use crate::sync::lock;
use crate::value::{JavaArg, JavaValue, to_value};

impl JmxClient {
    /// A call with the default time limit, not retried unless marked idempotent.
    pub(super) fn call<'a>(
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

    pub(super) fn session(&self) -> Arc<Session> {
        Arc::clone(&lock(&self.inner.session))
    }

    pub(super) fn outage(&self) -> MutexGuard<'_, Option<Outage>> {
        lock(&self.inner.outage)
    }

    pub(super) fn protocol(&self, message: impl Into<String>) -> JmxError {
        JmxError::Protocol {
            address: self.inner.address.clone(),
            message: message.into(),
        }
    }

    pub(super) async fn value(&self, call: Call<'_>) -> Result<JavaValue, JmxError> {
        let raw = self.run(call).await?;
        to_value(&raw.handles, &raw.value).map_err(|e| self.protocol(e.to_string()))
    }

    /// Tells the observer of every call from now on (the first observer set stays).
    pub fn observe(&self, observer: Arc<dyn CallObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// Runs a call, and tells the observer how it went.
    pub(super) async fn run(&self, call: Call<'_>) -> Result<RawReturn, JmxError> {
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
    pub(super) async fn run_unobserved(&self, call: &Call<'_>) -> Result<RawReturn, JmxError> {
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
    pub(super) fn lost(&self, session: &Session) {
        session.mark_broken();
        let _ = self.inner.connected.send_replace(false);
    }

    /// Replaces a broken session through the registry, unless another task already did. While the agent does not
    /// answer, one attempt is made per backoff interval and calls in between fail at once.
    pub(super) async fn reconnect(&self, failed: &Arc<Session>) -> Result<Arc<Session>, JmxError> {
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
                *lock(&self.inner.session) = Arc::clone(&fresh);
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
    pub(super) async fn connection(&self, session: &Session) -> Result<Connection, Attempt> {
        loop {
            let taken = lock(&session.idle).pop();
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

    pub(super) async fn attempt(
        &self,
        session: &Session,
        call: &Call<'_>,
    ) -> Result<RawReturn, Attempt> {
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
            let mut idle = lock(&session.idle);
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

    pub(super) fn transport_error(&self, error: JrmpError, call: &Call<'_>) -> JmxError {
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

/// A failed attempt, and whether a new session may help.
pub(super) struct Attempt {
    pub(super) reconnect: bool,
    /// The call certainly did not run, so even a non-idempotent call may be sent again.
    pub(super) unsent: bool,
    pub(super) error: JmxError,
}
