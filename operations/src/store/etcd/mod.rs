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

mod document;
mod leases;
mod members;
mod settings;
mod takeover;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use futures_util::future::{BoxFuture, FutureExt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use document::{Document, DocumentError};
pub use settings::EtcdSettings;
pub use takeover::LEASE_TTL_SECS;

use self::leases::ExpiryLeases;
use self::members::Members;
use self::takeover::Session;
use super::{InMemoryStore, OperationFilter, OperationStore, Page, StoreError};
use crate::record::{OperationRecord, ReportedError};
use crate::state::OperationState;
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

/// A record this sidecar runs, with what was last written of it.
#[derive(Debug)]
struct Owned {
    record: Arc<OperationRecord>,
    /// Serializes writes of one record, so the revision each compares against is the one the previous wrote.
    written: tokio::sync::Mutex<Written>,
}

#[derive(Debug, Default)]
struct Written {
    /// The key's revision after our last write; 0 before the first (the key does not exist then).
    revision: i64,
    /// The record's change count that write reflected.
    changes: Option<u64>,
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

    /// Stops following etcd, after one last attempt to write what is not written yet.
    pub async fn close(&self) {
        self.inner.flush().await;
        self.inner.stop.cancel();
    }

    /// Every document under the prefix, as etcd holds them now (`daedalus store export`).
    pub async fn documents_in(settings: EtcdSettings) -> Result<Vec<Document>, EtcdError> {
        let endpoints = settings.endpoints.join(",");
        let members = settings.members()?;
        let (kvs, _) = range(&members, &settings)
            .await
            .map_err(|source| EtcdError::Request { endpoints, source })?;
        Ok(kvs
            .iter()
            .filter_map(|kv| Document::from_bytes(kv.value()).ok())
            .collect())
    }

    /// Writes each document whose operation is not under the prefix yet (`daedalus store import`); a finished one
    /// expires an expiration period after it finished. Returns how many were written and how many were there.
    pub async fn import_into(
        settings: EtcdSettings,
        documents: &[Document],
    ) -> Result<(usize, usize), EtcdError> {
        let endpoints = settings.endpoints.join(",");
        let request = |source| EtcdError::Request {
            endpoints: endpoints.clone(),
            source,
        };
        let members = Arc::new(settings.members()?);
        let leases = ExpiryLeases::new(Arc::clone(&members), settings.expiration);
        let (mut written, mut present) = (0, 0);
        for document in documents {
            let invalid =
                |e: DocumentError| request(etcd_client::Error::InvalidArgs(e.to_string()));
            let id = document.id().map_err(invalid)?;
            let status = document.status().map_err(invalid)?;
            let key = settings.key_of(&id);
            let options = match status.completion_time {
                Some(completed) if status.state.is_terminal() => Some(
                    PutOptions::new().with_lease(
                        leases
                            .lease_for(completed, WRITE_DEADLINE)
                            .await
                            .map_err(request)?,
                    ),
                ),
                _ => None,
            };
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, document.to_bytes(), options)]);
            let response = members
                .run(WRITE_DEADLINE, |mut client| {
                    let txn = txn.clone();
                    async move { client.txn(txn).await }
                })
                .await
                .map_err(request)?;
            if response.succeeded() {
                written += 1;
            } else {
                present += 1;
            }
        }
        Ok((written, present))
    }
}

impl Inner {
    fn endpoints(&self) -> String {
        self.members.endpoints()
    }

    /// Replaces the cache with what etcd holds; returns the revision it reflects.
    async fn load(&self) -> Result<i64, etcd_client::Error> {
        let (kvs, revision) = range(&self.members, &self.settings).await?;
        // The watch that follows starts after it: no change up to it can arrive late.
        self.watched.fetch_max(revision, Ordering::Relaxed);
        let mut present = HashSet::with_capacity(kvs.len());
        for kv in &kvs {
            if let Some(id) = self.apply(kv) {
                present.insert(id);
            }
        }
        for id in self.cache.ids() {
            if !present.contains(&id) {
                self.forget(&id);
            }
        }
        self.stale.store(false, Ordering::Relaxed);
        tracing::debug!(
            operations = present.len(),
            revision,
            "operations loaded from etcd"
        );
        Ok(revision)
    }

    /// Takes one key's document into the cache, unless the cache has a newer one. Returns its operation's id.
    fn apply(&self, kv: &KeyValue) -> Option<Uuid> {
        let document = match Document::from_bytes(kv.value()) {
            Ok(document) => document,
            Err(error) => {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), %error, "skipping an etcd key that is not an operation");
                return None;
            }
        };
        self.take(&document, kv.create_revision(), kv.mod_revision())
    }

    fn take(&self, document: &Document, created: i64, revision: i64) -> Option<Uuid> {
        let id = match document.id() {
            Ok(id) => id,
            Err(error) => {
                tracing::warn!(%error, "skipping an operation document without an id");
                return None;
            }
        };
        // Held while the copy changes, so the watch and a write acknowledged at the same time apply in revision
        // order and never leave the older one in place.
        let mut known = self.revisions.entry(id).or_insert(0);
        if *known >= revision {
            return Some(id);
        }
        // A copy keeps its sidecar for good; a document naming another one (a takeover) replaces the copy, in the
        // same place of the listing.
        let result = match self.cache.get(&id) {
            Some(copy) if copy.sidecar() == Some(document.sidecar.as_str()) => {
                document.status().map(|status| {
                    copy.replace_status(status);
                    // Copies kept beyond the limit while they were unfinished may go once one finishes.
                    if copy.state().is_terminal() {
                        self.cache.evict_over_limit()
                    } else {
                        Vec::new()
                    }
                })
            }
            cached => {
                let sequence = cached
                    .map(|copy| copy.sequence())
                    .unwrap_or_else(|| u64::try_from(created).unwrap_or(0));
                document
                    .to_record(sequence)
                    .map(|record| self.cache.put(Arc::new(record)))
            }
        };
        let outcome = match result {
            Ok(evicted) => {
                *known = revision;
                Ok(evicted)
            }
            Err(error) => {
                tracing::warn!(operation = %id, %error, "skipping an operation document that cannot be read");
                Err(())
            }
        };
        // Not while `known` is held: an evicted id may share its shard of `revisions`.
        drop(known);
        // An evicted copy's revision goes with it (the copy just taken too, if it finished before every other).
        for gone in outcome.ok()? {
            self.forget_revision(&gone);
        }
        Some(id)
    }

    fn forget(&self, id: &Uuid) {
        self.cache.remove(id);
        self.revisions.remove(id);
    }

    /// Drops the revision of a copy the cache evicted once no older event can arrive (else the key's deletion drops
    /// it), unless a newer copy came back meanwhile (the revision is then that copy's).
    fn forget_revision(&self, id: &Uuid) {
        let watched = self.watched.load(Ordering::Relaxed);
        self.revisions.remove_if(id, |_, revision| {
            *revision <= watched && self.cache.get(id).is_none()
        });
    }

    /// Follows every change under the prefix from `revision` on; connects again (and reloads) when the watch breaks.
    async fn follow(self: Arc<Self>, mut revision: i64) {
        loop {
            let outcome = tokio::select! {
                _ = self.stop.cancelled() => return,
                outcome = self.watch_from(revision) => outcome,
            };
            if let Err(error) = outcome
                && !self.stale.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(endpoints = %self.endpoints(), %error, "lost etcd: answering reads from the cache until it is back");
            }
            // Reload rather than resume: events may have been compacted away meanwhile.
            loop {
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = tokio::time::sleep(RECONNECT_DELAY) => {}
                }
                match self.load().await {
                    Ok(loaded) => {
                        revision = loaded;
                        tracing::info!(endpoints = %self.endpoints(), "etcd reached again: the cache is in step");
                        break;
                    }
                    Err(error) => tracing::debug!(%error, "etcd still unreachable"),
                }
            }
            // Changes kept while etcd was away.
            self.flush().await;
        }
    }

    async fn watch_from(&self, revision: i64) -> Result<(), etcd_client::Error> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1)
            .with_progress_notify();
        let (member, mut client) = self.members.client().await?;
        let mut stream = match client
            .watch(self.settings.operations_prefix(), Some(options))
            .await
        {
            Ok(stream) => stream,
            Err(error) => {
                self.members.failed(member);
                return Err(error);
            }
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => break,
                Err(error) => {
                    self.members.failed(member);
                    return Err(error);
                }
            };
            if response.canceled() {
                return Err(etcd_client::Error::WatchError(format!(
                    "the watch was cancelled: {}",
                    response.cancel_reason()
                )));
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                // Events come in revision order: every change up to this one has arrived.
                self.watched.fetch_max(kv.mod_revision(), Ordering::Relaxed);
                match event.event_type() {
                    EventType::Put => {
                        self.apply(kv);
                    }
                    EventType::Delete => {
                        if let Some(id) = self.settings.id_of(kv.key()) {
                            self.forget(&id);
                        }
                    }
                }
            }
        }
        Err(etcd_client::Error::WatchError("the watch ended".into()))
    }

    /// Writes the record's current status if it changed since the last write (or was never written).
    async fn write(&self, owned: &Owned) -> Result<(), StoreError> {
        let mut written = owned.written.lock().await;
        let changes = owned.record.change_count();
        if written.changes == Some(changes) {
            return Ok(());
        }
        let document = Document::of(&owned.record, &self.settings.sidecar);
        let bytes = document.to_bytes();
        let key = self.settings.key_of(&owned.record.id());
        let lease = match owned.record.completion_time() {
            Some(completed) => Some(
                self.leases
                    .lease_for(completed, WRITE_DEADLINE)
                    .await
                    .map_err(|e| self.unavailable(e))?,
            ),
            None => None,
        };
        let deadline = tokio::time::Instant::now() + WRITE_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    written.revision,
                )])
                .and_then([TxnOp::put(
                    key.clone(),
                    bytes.clone(),
                    lease.map(|id| PutOptions::new().with_lease(id)),
                )])
                .or_else([TxnOp::get(key.clone(), None)]);
            let response = self
                .members
                .run(left, |mut client| {
                    let txn = txn.clone();
                    async move { client.txn(txn).await }
                })
                .await
                .map_err(|e| self.unavailable(e))?;
            let revision = response.header().map(|h| h.revision()).unwrap_or(0);
            if response.succeeded() {
                // A key this write created was created at this revision, which orders the listing.
                let created = if written.revision == 0 { revision } else { 0 };
                written.revision = revision;
                written.changes = Some(changes);
                self.take(&document, created, revision);
                self.stale.store(false, Ordering::Relaxed);
                return Ok(());
            }
            // Someone else wrote the key since our last write: a repeat of ours that etcd had applied after all,
            // or another sidecar that took the operation over.
            let current = response.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                _ => None,
            });
            match current {
                Some(kv) if kv.value() == bytes.as_slice() => {
                    written.revision = kv.mod_revision();
                    written.changes = Some(changes);
                    self.take(&document, kv.create_revision(), kv.mod_revision());
                    return Ok(());
                }
                Some(kv) => {
                    let holder = Document::from_bytes(kv.value())
                        .map(|d| d.sidecar)
                        .unwrap_or_else(|_| "unknown".into());
                    if holder != self.settings.sidecar {
                        return Err(StoreError::TakenOver(owned.record.id(), holder));
                    }
                    // Our own earlier write (a restart marking, an import): continue from it.
                    written.revision = kv.mod_revision();
                }
                // Deleted under us (someone removed the key by hand): write it anew.
                None => written.revision = 0,
            }
            if left.is_zero() {
                return Err(StoreError::Unavailable(format!(
                    "etcd at {} kept changing operation {} under this sidecar",
                    self.endpoints(),
                    owned.record.id()
                )));
            }
        }
    }

    fn unavailable(&self, error: etcd_client::Error) -> StoreError {
        StoreError::Unavailable(format!("etcd at {}: {error}", self.endpoints()))
    }

    async fn save(&self, id: &Uuid) -> Result<(), StoreError> {
        let Some(owned) = self.owned.get(id).map(|o| Arc::clone(o.value())) else {
            return Ok(());
        };
        let outcome = self.write(&owned).await;
        match &outcome {
            Ok(())
                if owned.record.state().is_terminal()
                    && owned.written.lock().await.changes == Some(owned.record.change_count()) =>
            {
                self.owned.remove(id);
                if owned.record.resumable()
                    && let Err(error) = self.session.release(id).await
                {
                    // The key goes with this sidecar's lease anyway; nobody takes a finished operation over.
                    tracing::debug!(operation = %id, %error, "could not give up coordinating a finished operation");
                }
            }
            Err(StoreError::TakenOver(_, by)) => {
                self.owned.remove(id);
                tracing::warn!(operation = %id, sidecar = %by, "another sidecar took this operation over: it stops here, leaving its parts to that one");
                owned.record.abandon();
            }
            _ => {}
        }
        if let Err(StoreError::Unavailable(_)) = &outcome {
            // Reads may miss changes etcd could not take; cleared by the next write or reload that succeeds.
            self.stale.store(true, Ordering::Relaxed);
        }
        outcome
    }

    /// Becomes the coordinator of a resumable operation this sidecar runs; if another sidecar already is (it took
    /// the operation over while this one was cut off from etcd), this one stops running it.
    async fn claim_or_abandon(&self, record: &Arc<OperationRecord>) {
        match self.session.claim(&record.id()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(operation = %record.id(), "another sidecar coordinates this operation now: it stops here");
                self.owned.remove(&record.id());
                record.abandon();
            }
            // Tried again at the next renewal of the lease.
            Err(error) => {
                tracing::warn!(operation = %record.id(), %error, "could not record this sidecar as the coordinator yet")
            }
        }
    }

    /// Once a second: keeps the sidecar's lease alive (claiming its operations again under a new one if it ran out),
    /// and takes over resumable operations whose coordinator died.
    async fn tend(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(takeover::TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.session.renew().await {
                Ok(true) => {
                    let mine: Vec<Arc<OperationRecord>> = self
                        .owned
                        .iter()
                        .map(|entry| Arc::clone(&entry.value().record))
                        .filter(|record| takeover::unattended_candidate(record))
                        .collect();
                    for record in mine {
                        self.claim_or_abandon(&record).await;
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(%error, "could not renew the sidecar's etcd lease");
                    continue;
                }
            }
            if self.taking_over.load(Ordering::Relaxed) {
                self.take_over_unattended().await;
            }
        }
    }

    async fn take_over_unattended(&self) {
        let candidates: Vec<Arc<OperationRecord>> = self
            .cache
            .list(&OperationFilter::unfinished())
            .into_iter()
            .filter(|copy| takeover::unattended_candidate(copy))
            .filter(|copy| !self.owned.contains_key(&copy.id()))
            .collect();
        for copy in candidates {
            let id = copy.id();
            if self.lock_adopting().contains(&id) {
                continue;
            }
            match self.session.claim(&id).await {
                Ok(true) => {
                    tracing::warn!(operation = %id, r#type = copy.type_id(), from = copy.sidecar().unwrap_or("unknown"), "taking over an operation whose coordinating sidecar stopped");
                    self.lock_adopting().insert(id);
                    if self.takeovers.send(copy).is_err() {
                        // The receiver is gone (shutting down): leave it to the others.
                        let _ = self.session.release(&id).await;
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(operation = %id, %error, "could not claim an unattended operation")
                }
            }
        }
    }

    fn lock_adopting(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        lock(&self.adopting)
    }

    /// Writes every owned record that changed since it was last written.
    async fn flush(&self) {
        let ids: Vec<Uuid> = self.owned.iter().map(|entry| *entry.key()).collect();
        for id in ids {
            if let Err(error) = self.save(&id).await {
                tracing::debug!(operation = %id, %error, "operation not written yet");
            }
        }
    }

    async fn flush_regularly(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = ticks.tick() => self.flush().await,
            }
        }
    }

    /// Operations this sidecar ran that are not finished in etcd: it stopped while they ran (a crash, a kill, a pod
    /// rescheduled). They cannot go on, so they end FAILED, saying why, rather than stay RUNNING for good.
    async fn fail_interrupted(&self) -> Vec<Arc<OperationRecord>> {
        let mine: Vec<Arc<OperationRecord>> = self
            .cache
            .list(&OperationFilter::unfinished())
            .into_iter()
            .filter(|record| record.sidecar() == Some(self.settings.sidecar.as_str()))
            // Those go on: this sidecar (or another) takes them over.
            .filter(|record| !record.resumable())
            .collect();
        let mut failed = Vec::with_capacity(mine.len());
        for copy in mine {
            let id = copy.id();
            let Some(revision) = self.revisions.get(&id).map(|r| *r) else {
                continue;
            };
            let was = copy.state();
            let (status, _) = copy.stored_status();
            let record = Arc::new(
                OperationRecord::restored(
                    id,
                    copy.type_id(),
                    copy.request().clone(),
                    copy.creation_time(),
                    copy.sequence(),
                    status,
                )
                .with_sidecar(copy.sidecar().map(str::to_string)),
            );
            record.add_error(ReportedError {
                source: self.settings.sidecar.clone(),
                message: format!(
                    "the sidecar restarted while this operation was {was}; it did not finish and was not resumed"
                ),
            });
            record.finish(OperationState::Failed, Utc::now());
            let owned = Owned {
                record: Arc::clone(&record),
                written: tokio::sync::Mutex::new(Written {
                    revision,
                    changes: None,
                }),
            };
            match self.write(&owned).await {
                Ok(()) => {
                    tracing::warn!(operation = %id, r#type = record.type_id(), state = %was, "marked FAILED: the sidecar restarted while it ran");
                    failed.push(record);
                }
                Err(error) => {
                    tracing::warn!(operation = %id, %error, "could not mark an operation interrupted by the restart");
                }
            }
        }
        failed
    }
}

/// Every key under the operations prefix, and the revision they were read at.
async fn range(
    members: &Members,
    settings: &EtcdSettings,
) -> Result<(Vec<KeyValue>, i64), etcd_client::Error> {
    let prefix = settings.operations_prefix();
    let mut response = members
        .run(WRITE_DEADLINE, |mut client| {
            let prefix = prefix.clone();
            async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            }
        })
        .await?;
    let revision = response.header().map(|h| h.revision()).unwrap_or(0);
    Ok((response.take_kvs(), revision))
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
