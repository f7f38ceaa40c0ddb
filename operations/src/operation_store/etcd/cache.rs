//! The local cache of every operation under the prefix: loaded whole at start and after the watch broke, then
//! kept in step by the watch, each copy replaced only by a newer revision of its key.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};
use uuid::Uuid;

use super::members::Members;
use super::{Document, EtcdSettings, Inner, RECONNECT_DELAY, WRITE_DEADLINE};
use crate::operation_store::OperationStore;

impl Inner {
    /// Replaces the cache with what etcd holds; returns the revision it reflects.
    pub(super) async fn load(&self) -> Result<i64, etcd_client::Error> {
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
    pub(super) fn apply(&self, kv: &KeyValue) -> Option<Uuid> {
        let document = match Document::from_bytes(kv.value()) {
            Ok(document) => document,
            Err(error) => {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), %error, "skipping an etcd key that is not an operation");
                return None;
            }
        };
        self.take(&document, kv.create_revision(), kv.mod_revision())
    }

    pub(super) fn take(&self, document: &Document, created: i64, revision: i64) -> Option<Uuid> {
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

    pub(super) fn forget(&self, id: &Uuid) {
        self.cache.remove(id);
        self.revisions.remove(id);
    }

    /// Drops the revision of a copy the cache evicted once no older event can arrive (else the key's deletion drops
    /// it), unless a newer copy came back meanwhile (the revision is then that copy's).
    pub(super) fn forget_revision(&self, id: &Uuid) {
        let watched = self.watched.load(Ordering::Relaxed);
        self.revisions.remove_if(id, |_, revision| {
            *revision <= watched && self.cache.get(id).is_none()
        });
    }

    /// Follows every change under the prefix from `revision` on; connects again (and reloads) when the watch breaks.
    pub(super) async fn follow(self: Arc<Self>, mut revision: i64) {
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

    pub(super) async fn watch_from(&self, revision: i64) -> Result<(), etcd_client::Error> {
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
}

/// Every key under the operations prefix, and the revision they were read at.
pub(super) async fn range(
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
