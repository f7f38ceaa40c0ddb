//! Failing over between etcd members.
//!
//! `etcd-client` balances over the endpoints it is given but leaves failures to its user: a request sent to a member
//! that was killed waits out its timeout, and the next may go to the same member. This does what etcd's Go client
//! does instead: one connection per member, requests go to the current member, and a request that fails or does not
//! answer in time moves the current member to the next and is tried there, until its deadline.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::time::Instant;

/// How long one attempt on one member may take before the next member is tried.
const ATTEMPT: Duration = Duration::from_secs(2);

pub(super) struct Members {
    endpoints: Vec<String>,
    options: ConnectOptions,
    /// Each member's client, connected on first use (a member down at start is connected to once it is back).
    clients: Vec<tokio::sync::Mutex<Option<Client>>>,
    current: AtomicUsize,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field("endpoints", &self.endpoints)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Members {
    pub(super) fn new(endpoints: Vec<String>, options: ConnectOptions) -> Self {
        let clients = endpoints.iter().map(|_| Default::default()).collect();
        Self {
            endpoints,
            options,
            clients,
            current: AtomicUsize::new(0),
        }
    }

    pub(super) fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    /// The current member's client, connecting to it if needed; its index, for [`Members::failed`].
    pub(super) async fn client(&self) -> Result<(usize, Client), etcd_client::Error> {
        let index = self.current.load(Ordering::Relaxed) % self.clients.len().max(1);
        let mut slot = self.clients[index].lock().await;
        if let Some(client) = &*slot {
            return Ok((index, client.clone()));
        }
        let connect = Client::connect([&self.endpoints[index]], Some(self.options.clone()));
        let client = match tokio::time::timeout(ATTEMPT, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                drop(slot);
                self.failed(index);
                return Err(error);
            }
            Err(_) => {
                drop(slot);
                self.failed(index);
                return Err(etcd_client::Error::EndpointError(format!(
                    "{} did not answer within {}s",
                    self.endpoints[index],
                    ATTEMPT.as_secs()
                )));
            }
        };
        *slot = Some(client.clone());
        Ok((index, client))
    }

    /// Moves on from member `index` (unless another caller did already).
    pub(super) fn failed(&self, index: usize) {
        let next = (index + 1) % self.clients.len().max(1);
        let _ = self
            .current
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs `call` on the current member, and on the next ones while it fails, until `within` has passed. The call
    /// may therefore run more than once: it must be safe to repeat (a compare-and-swap is).
    pub(super) async fn run<T, F, Fut>(
        &self,
        within: Duration,
        mut call: F,
    ) -> Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let attempt = async {
                let (index, client) = self.client().await?;
                match tokio::time::timeout(ATTEMPT.min(left), call(client)).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(error)) => {
                        self.failed(index);
                        Err(error)
                    }
                    Err(_) => {
                        self.failed(index);
                        Err(etcd_client::Error::EndpointError(format!(
                            "{} did not answer within {}s",
                            self.endpoints[index],
                            ATTEMPT.min(left).as_secs_f32()
                        )))
                    }
                }
            };
            match attempt.await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    last = Some(error);
                    // Every member failed in a row: give them a moment before the next round.
                    if self.current.load(Ordering::Relaxed) == 0 {
                        tokio::time::sleep(Duration::from_millis(100).min(left)).await;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            etcd_client::Error::EndpointError(format!(
                "no etcd member of {} answered within {}s",
                self.endpoints(),
                within.as_secs()
            ))
        }))
    }
}
