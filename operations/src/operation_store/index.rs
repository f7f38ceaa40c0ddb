//! The in-memory store's index: operations in creation order, by (type, state), and the finished ones by completion
//! time, so a filtered or paged listing, the expiry sweep and the eviction of the oldest finished operations cost
//! what they return, not what the store holds.
//!
//! Records tell the index of their state changes themselves (it is their [`StateListener`]), inside their own
//! status lock. Lock order is therefore always record, then index: the index never touches a record's status.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{OperationFilter, Page};
use crate::record::{OperationRecord, StateChange, StateListener};
use crate::state::OperationState;

type Key = (&'static str, OperationState);

#[derive(Debug, Default)]
struct Entries {
    /// Every operation by sequence number (creation order).
    all: BTreeMap<u64, Arc<OperationRecord>>,
    /// Sequence numbers by type and current state; a key with no operations is removed.
    by_key: HashMap<Key, BTreeSet<u64>>,
    /// Finished operations by completion time, for the expiry sweep and eviction.
    finished: BTreeMap<(DateTime<Utc>, u64), Key>,
}

#[derive(Debug, Default)]
pub(super) struct Index {
    entries: Mutex<Entries>,
}

impl Index {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Every update below either completes or panics before changing anything that others rely on together,
        // so the entries stay usable after a panic elsewhere.
        crate::sync::lock(&self.entries)
    }

    /// Adds a record to the creation order; its state arrives when it is attached (see `InMemoryStore::insert`).
    pub(super) fn add(&self, record: &Arc<OperationRecord>) {
        self.lock()
            .all
            .insert(record.sequence(), Arc::clone(record));
    }

    /// Drops a record from every part of the index. The record must not change state meanwhile (its store holds
    /// it no longer, so nothing changes it).
    pub(super) fn remove(&self, record: &OperationRecord) {
        // Read before the index lock: the lock order is record, then index.
        let state = record.state();
        let completed = record.completion_time();
        let mut entries = self.lock();
        let sequence = record.sequence();
        if entries.all.remove(&sequence).is_none() {
            return;
        }
        entries.remove_from((record.type_id(), state), sequence);
        if let Some(completed) = completed {
            entries.finished.remove(&(completed, sequence));
        }
    }

    pub(super) fn list(&self, filter: &OperationFilter, page: Page) -> Vec<Arc<OperationRecord>> {
        let entries = self.lock();
        let before = page.before.unwrap_or(u64::MAX);
        let limit = page.limit.unwrap_or(usize::MAX);
        if filter.is_empty() {
            return entries
                .all
                .range(..before)
                .rev()
                .take(limit)
                .map(|(_, record)| Arc::clone(record))
                .collect();
        }
        let mut sequences: Vec<u64> = entries
            .by_key
            .iter()
            .filter(|(key, _)| matches(filter, key))
            .flat_map(|(_, set)| set.range(..before).rev().take(limit).copied())
            .collect();
        sequences.sort_unstable_by(|a, b| b.cmp(a));
        sequences.truncate(limit);
        sequences
            .iter()
            .filter_map(|sequence| entries.all.get(sequence).map(Arc::clone))
            .collect()
    }

    pub(super) fn count(&self, filter: &OperationFilter) -> usize {
        let entries = self.lock();
        if filter.is_empty() {
            return entries.all.len();
        }
        entries
            .by_key
            .iter()
            .filter(|(key, _)| matches(filter, key))
            .map(|(_, set)| set.len())
            .sum()
    }

    /// Drops the operations finished before `cutoff`; returns their ids.
    pub(super) fn remove_finished_before(&self, cutoff: DateTime<Utc>) -> Vec<Uuid> {
        let mut entries = self.lock();
        let kept = entries.finished.split_off(&(cutoff, 0));
        let expired = std::mem::replace(&mut entries.finished, kept);
        expired
            .into_iter()
            .filter_map(|((_, sequence), key)| entries.take_finished(sequence, key))
            .map(|record| record.id())
            .collect()
    }

    /// Drops the finished operations that completed first until at most `limit` operations are left, or no finished
    /// one is; returns the records dropped. Pending and running operations are never dropped, so the index may
    /// still hold more than `limit`.
    pub(super) fn evict_over(&self, limit: usize) -> Vec<Arc<OperationRecord>> {
        let mut entries = self.lock();
        // Counted and dropped under one lock, so concurrent callers never drop more than the excess between them.
        let excess = entries.all.len().saturating_sub(limit);
        let mut evicted = Vec::with_capacity(excess.min(entries.finished.len()));
        while evicted.len() < excess {
            let Some(((_, sequence), key)) = entries.finished.pop_first() else {
                break;
            };
            if let Some(record) = entries.take_finished(sequence, key) {
                evicted.push(record);
            }
        }
        evicted
    }
}

fn matches(filter: &OperationFilter, (type_id, state): &Key) -> bool {
    (filter.types.is_empty() || filter.types.contains(*type_id))
        && (filter.states.is_empty() || filter.states.contains(state))
}

impl Entries {
    /// Drops the operation of an entry taken out of `finished`, if that entry is still how it is indexed. An entry
    /// can outlive its meaning: a copy from another store may change from one terminal state to another, which
    /// indexes it again under its new completion time.
    fn take_finished(&mut self, sequence: u64, key: Key) -> Option<Arc<OperationRecord>> {
        if !self
            .by_key
            .get(&key)
            .is_some_and(|set| set.contains(&sequence))
        {
            return None;
        }
        self.remove_from(key, sequence);
        self.all.remove(&sequence)
    }

    fn remove_from(&mut self, key: Key, sequence: u64) {
        if let Some(set) = self.by_key.get_mut(&key) {
            set.remove(&sequence);
            if set.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }
}

impl StateListener for Index {
    fn state_changed(&self, record: &OperationRecord, change: StateChange) {
        let mut entries = self.lock();
        let sequence = record.sequence();
        if !entries.all.contains_key(&sequence) {
            // Not (or no longer) in this store: nothing to index.
            return;
        }
        if let Some(from) = change.from {
            entries.remove_from((record.type_id(), from), sequence);
        }
        let key = (record.type_id(), change.to);
        entries.by_key.entry(key).or_default().insert(sequence);
        if change.to.is_terminal()
            && let Some(completed) = change.completion_time
        {
            entries.finished.insert((completed, sequence), key);
        }
    }
}
