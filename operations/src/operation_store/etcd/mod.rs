//! The etcd store (`--store etcd`): operations outlive the sidecar, and every sidecar of a cluster (one key prefix)
//! sees them all, as in the ICE design where the service keeps no state of its own.
//!
//! - Each operation is one key, `<prefix>operations/<id>`, holding a [`Document`]. Only the sidecar that runs an
//!   operation writes it, each write a compare-and-swap on the key's revision, so two writers never interleave.
//! - Clients read a local cache (an [`InMemoryStore`] of copies) fed by a watch on the prefix, so reads cost what
//!   they cost in memory. A change becomes visible only once etcd has it: the cache takes a write after etcd
//!   acknowledged it, or from the watch.
//! - The cache holds at most `--max-stored-operations` copies beyond the unfinished ones: past it, it forgets the
//!   copies of the operations that finished first, as the in-memory store does. etcd keeps them (until their lease
//!   ends): other sidecars may still list them, this one answers 404. Unfinished operations, of any sidecar, are
//!   never forgotten, so a bounded cache never loses one that is running, nor one to take over.
//! - Finished operations are written with a lease that ends after the expiration period; etcd then deletes them
//!   and the watch drops them from every cache. Nothing sweeps.
//! - When etcd cannot be reached, reads answer from the cache ([`OperationStore::is_stale`]), new operations are
//!   refused ([`StoreError::Unavailable`]), and changes to running ones are kept and written once it is back.

mod cache;
mod document;
mod export;
mod keys;
mod leases;
mod members;
mod recovery;
mod settings;
mod takeover;
mod tend;
mod writer;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures_util::future::{BoxFuture, FutureExt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use document::{Document, DocumentError};
pub use keys::{Entry, EtcdKeys, KeysError};
pub use settings::EtcdSettings;
pub use takeover::LEASE_TTL_SECS;

use self::leases::ExpiryLeases;
use self::members::Members;
use self::takeover::Session;
use self::writer::{Owned, Written};
use super::{InMemoryStore, OperationFilter, OperationStore, Page, StoreError};
use crate::record::OperationRecord;
use crate::sync::lock;

/// How often changes that are not state transitions (progress, a cluster-wide operation's per-node view) are written.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a write or read keeps trying (other members, a new leader) before it reports etcd unreachable.
const WRITE_DEADLINE: Duration = Duration::from_secs(6);
/// How long the watch waits before connecting again after it broke.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd at {endpoints} did not answer: {source}")]
    Request {
        endpoints: String,
        source: etcd_client::Error,
    },
    #[error("cannot read {0}: {1}")]
    File(String, std::io::Error),
}

struct Inner {
    members: Arc<Members>,
    settings: EtcdSettings,
    /// Copies of the operations under the prefix, as etcd last told us: every unfinished one, and the finished ones
    /// that fit in the cache's limit.
    cache: InMemoryStore,
    /// The revision of each cached copy, so an older event never replaces a newer copy. Kept for a copy the cache
    /// evicted until the watch is past it (or etcd deletes the key), so a late event cannot bring an old state back.
    revisions: DashMap<Uuid, i64>,
    /// The revision up to which the watch (or the last load) delivered every change.
    watched: AtomicI64,
    owned: DashMap<Uuid, Arc<Owned>>,
    stale: AtomicBool,
    leases: ExpiryLeases,
    session: Session,
    /// Operations this sidecar claimed from a dead one, on their way to the executor (see [`EtcdStore::takeovers`]).
    takeovers: tokio::sync::mpsc::UnboundedSender<Arc<OperationRecord>>,
    /// Operations claimed from a dead sidecar and not yet adopted, and those this sidecar gave up (it could not run
    /// them): not claimed again here.
    adopting: std::sync::Mutex<HashSet<Uuid>>,
    /// Set once someone runs taken-over operations ([`EtcdStore::takeovers`]): `serve` does, a command such as
    /// `store export` (which may share the sidecar's id on its host) must not take anything over.
    taking_over: AtomicBool,
    stop: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("settings", &self.settings)
            .field("stale", &self.stale)
            .finish_non_exhaustive()
    }
}

type Takeovers = tokio::sync::mpsc::UnboundedReceiver<Arc<OperationRecord>>;

#[derive(Debug, Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
    takeovers: Arc<std::sync::Mutex<Option<Takeovers>>>,
}

impl EtcdStore {
    /// Connects, loads every operation under the prefix and starts following it, keeping copies of at most
    /// `max_stored` of them beyond the unfinished ones. Operations this sidecar was running when it last stopped are
    /// marked FAILED; they are returned, so their leftovers can be cleaned up.
    pub async fn open(
        settings: EtcdSettings,
        max_stored: usize,
    ) -> Result<(EtcdStore, Vec<Arc<OperationRecord>>), EtcdError> {
        let members = Arc::new(settings.members()?);
        let (takeovers, receiver) = tokio::sync::mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            leases: ExpiryLeases::new(Arc::clone(&members), settings.expiration),
            session: Session::new(Arc::clone(&members), settings.clone()),
            takeovers,
            adopting: Default::default(),
            taking_over: AtomicBool::new(false),
            members,
            settings,
            cache: InMemoryStore::with_limit(max_stored),
            revisions: DashMap::new(),
            watched: AtomicI64::new(0),
            owned: DashMap::new(),
            stale: AtomicBool::new(true),
            stop: CancellationToken::new(),
        });
        let request = |source| EtcdError::Request {
            endpoints: inner.settings.endpoints.join(","),
            source,
        };
        inner.session.renew().await.map_err(request)?;
        let revision = inner.load().await.map_err(request)?;
        let interrupted = inner.fail_interrupted().await;
        tokio::spawn(Arc::clone(&inner).follow(revision));
        tokio::spawn(Arc::clone(&inner).flush_regularly());
        tokio::spawn(Arc::clone(&inner).tend());
        let store = EtcdStore {
            inner,
            takeovers: Arc::new(std::sync::Mutex::new(Some(receiver))),
        };
        Ok((store, interrupted))
    }

    /// Leaves an operation this sidecar claimed but cannot run to the other sidecars. It stays in `adopting`, so
    /// this sidecar does not claim it again at the next look.
    pub async fn give_up(&self, id: &Uuid) {
        if let Err(error) = self.inner.session.release(id).await {
            tracing::warn!(operation = %id, %error, "could not give up an operation taken over");
        }
    }

    /// The operations this sidecar takes over from sidecars that died, as copies to run on with
    /// `Executor::adopt`. There is one receiver: the first call gets it.
    pub fn takeovers(&self) -> Option<Takeovers> {
        let receiver = lock(&self.takeovers).take();
        self.inner.taking_over.store(true, Ordering::Relaxed);
        receiver
    }

    /// Keys beside the operations under the same prefix, for what else the sidecars share (schedules).
    pub fn keys(&self) -> EtcdKeys {
        EtcdKeys::new(
            Arc::clone(&self.inner.members),
            self.inner.settings.prefix.clone(),
            self.inner.settings.sidecar.clone(),
        )
    }

    /// Stops following etcd, after one last attempt to write what is not written yet.
    pub async fn close(&self) {
        self.inner.flush().await;
        self.inner.stop.cancel();
    }
}

impl Inner {
    fn endpoints(&self) -> String {
        self.members.endpoints()
    }
}

impl OperationStore for EtcdStore {
    fn insert(&self, record: Arc<OperationRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let id = record.id();
            let owned = Arc::new(Owned {
                record,
                written: Default::default(),
            });
            // Claimed before the operation is written, so no other sidecar sees it without a coordinator.
            if owned.record.resumable() {
                match self.inner.session.claim(&id).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(StoreError::Unavailable(format!(
                            "etcd at {}: this sidecar holds no lease there yet",
                            self.inner.endpoints()
                        )));
                    }
                    Err(error) => return Err(self.inner.unavailable(error)),
                }
            }
            self.inner.owned.insert(id, Arc::clone(&owned));
            let outcome = self.inner.write(&owned).await;
            if outcome.is_err() {
                self.inner.owned.remove(&id);
                if owned.record.resumable() {
                    let _ = self.inner.session.release(&id).await;
                }
            }
            outcome
        }
        .boxed()
    }

    fn save(&self, record: Arc<OperationRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { self.inner.save(&record.id()).await }.boxed()
    }

    /// The first write compares against the revision of the copy it was taken over from, so it fails if the
    /// operation changed meanwhile; it names this sidecar as the one running it.
    fn adopt(&self, record: Arc<OperationRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let id = record.id();
            let inner = &self.inner;
            inner.lock_adopting().remove(&id);
            let revision = inner.revisions.get(&id).map(|r| *r).unwrap_or(0);
            let owned = Arc::new(Owned {
                record,
                written: tokio::sync::Mutex::new(Written {
                    revision,
                    changes: None,
                }),
            });
            inner.owned.insert(id, Arc::clone(&owned));
            let outcome = inner.write(&owned).await;
            if outcome.is_err() {
                inner.owned.remove(&id);
                let _ = inner.session.release(&id).await;
            }
            outcome
        }
        .boxed()
    }

    fn get(&self, id: &Uuid) -> Option<Arc<OperationRecord>> {
        self.inner.cache.get(id)
    }

    fn list_page(&self, filter: &OperationFilter, page: Page) -> Vec<Arc<OperationRecord>> {
        self.inner.cache.list_page(filter, page)
    }

    fn count(&self, filter: &OperationFilter) -> usize {
        self.inner.cache.count(filter)
    }

    /// etcd's leases expire finished operations; nothing to sweep here.
    fn remove_completed_before(&self, _: DateTime<Utc>) -> usize {
        0
    }

    /// Copies the cache forgot to stay within its limit; etcd still holds them.
    fn evicted(&self) -> u64 {
        self.inner.cache.evicted()
    }

    fn is_stale(&self) -> bool {
        self.inner.stale.load(Ordering::Relaxed)
    }
}
