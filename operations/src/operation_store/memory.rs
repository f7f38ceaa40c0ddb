//! The default store: operations in this process's memory, lost when it exits (as with Icarus), and bounded: past
//! its limit it drops the operations that finished first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures_util::future::{BoxFuture, FutureExt};
use uuid::Uuid;

use super::index::Index;
use super::{OperationFilter, OperationStore, Page, StoreError};
use crate::record::{OperationRecord, StateListener};

/// A concurrent map answers lookups by id; the [`Index`] answers listings, counts, the expiry sweep and eviction.
///
/// Expiry alone does not bound it: a client submitting quick operations in a loop stores them faster than they
/// expire. So the store holds at most `limit` operations: storing one more drops the operations that finished
/// first (by completion time). Pending and running ones are never dropped; `serve` refuses an admission limit
/// (`--max-unfinished-operations`) above the store's, so its store never holds more than its limit.
#[derive(Debug)]
pub struct InMemoryStore {
    operations: DashMap<Uuid, Arc<OperationRecord>>,
    index: Arc<Index>,
    limit: usize,
    evicted: AtomicU64,
    /// Whether eviction was logged: once, as it goes on for as long as the load does.
    eviction_logged: AtomicBool,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::with_limit(usize::MAX)
    }
}

impl InMemoryStore {
    /// A store without a limit (what expiry leaves is all it holds).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that holds at most `limit` operations, beyond those pending or running.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            operations: DashMap::new(),
            index: Arc::default(),
            limit,
            evicted: AtomicU64::new(0),
            eviction_logged: AtomicBool::new(false),
        }
    }

    pub fn len(&self) -> usize {
        self.operations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// Adds a record, or replaces the one with its id; then drops the oldest finished operations beyond the limit.
    /// Returns the ids dropped.
    pub fn put(&self, record: Arc<OperationRecord>) -> Vec<Uuid> {
        self.remove(&record.id());
        self.operations.insert(record.id(), Arc::clone(&record));
        self.index.add(&record);
        // From here on the record reports its state changes to the index itself, starting with its current state.
        let index: Arc<dyn StateListener> = self.index.clone();
        record.attach(Arc::downgrade(&index) as Weak<dyn StateListener>);
        // After attaching: a record stored finished (a copy from etcd) competes by its own completion time.
        self.evict_over_limit()
    }

    /// Drops the finished operations that completed first while the store holds more than its limit; returns their
    /// ids. Storing a record does this by itself; a caller whose records finish while the store is over its limit
    /// (copies of other sidecars' operations) calls it then.
    pub fn evict_over_limit(&self) -> Vec<Uuid> {
        let evicted = self.index.evict_over(self.limit);
        if evicted.is_empty() {
            return Vec::new();
        }
        let ids = evicted
            .iter()
            .map(|record| {
                // Only this very record: a copy that replaced it meanwhile (same id) stays.
                self.operations
                    .remove_if(&record.id(), |_, held| Arc::ptr_eq(held, record));
                record.id()
            })
            .collect();
        self.evicted.fetch_add(
            u64::try_from(evicted.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if !self.eviction_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = self.limit,
                "the operation store is full: the operations that finished first are dropped before they expire \
                 (see --max-stored-operations; daedalus_operations_evicted_total counts them)"
            );
        }
        ids
    }

    /// Drops a record; returns it if it was there.
    pub fn remove(&self, id: &Uuid) -> Option<Arc<OperationRecord>> {
        let (_, record) = self.operations.remove(id)?;
        self.index.remove(&record);
        Some(record)
    }

    /// Every id held.
    pub fn ids(&self) -> Vec<Uuid> {
        self.operations.iter().map(|entry| *entry.key()).collect()
    }
}

impl OperationStore for InMemoryStore {
    fn insert(&self, record: Arc<OperationRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        // What it dropped is counted in `evicted`.
        let _ = self.put(record);
        futures_util::future::ready(Ok(())).boxed()
    }

    fn save(&self, _: Arc<OperationRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        futures_util::future::ready(Ok(())).boxed()
    }

    fn get(&self, id: &Uuid) -> Option<Arc<OperationRecord>> {
        self.operations
            .get(id)
            .map(|entry| Arc::clone(entry.value()))
    }

    fn list_page(&self, filter: &OperationFilter, page: Page) -> Vec<Arc<OperationRecord>> {
        self.index.list(filter, page)
    }

    fn count(&self, filter: &OperationFilter) -> usize {
        self.index.count(filter)
    }

    fn remove_completed_before(&self, cutoff: DateTime<Utc>) -> usize {
        let expired = self.index.remove_finished_before(cutoff);
        for id in &expired {
            self.operations.remove(id);
        }
        expired.len()
    }

    fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation_store::Page;
    use crate::state::OperationState;
    use chrono::Duration;
    use serde_json::Map;
    use tokio_util::sync::CancellationToken;

    fn add(store: &InMemoryStore, type_id: &'static str) -> Arc<OperationRecord> {
        let record = Arc::new(OperationRecord::new(
            type_id,
            Map::new(),
            CancellationToken::new(),
        ));
        store.put(Arc::clone(&record));
        record
    }

    #[test]
    fn lists_newest_first_and_filters_by_type_and_state() {
        let store = InMemoryStore::new();
        let first = add(&store, "flush");
        let second = add(&store, "cleanup");
        let third = add(&store, "flush");
        third.start(Utc::now());

        let all: Vec<_> = store
            .list(&OperationFilter::default())
            .iter()
            .map(|r| r.id())
            .collect();
        assert_eq!(all, [third.id(), second.id(), first.id()]);

        let flushes = OperationFilter {
            types: ["flush".to_string()].into(),
            ..Default::default()
        };
        let ids: Vec<_> = store.list(&flushes).iter().map(|r| r.id()).collect();
        assert_eq!(ids, [third.id(), first.id()]);

        let running_flushes = OperationFilter {
            states: [OperationState::Running].into(),
            ..flushes
        };
        let ids: Vec<_> = store
            .list(&running_flushes)
            .iter()
            .map(|r| r.id())
            .collect();
        assert_eq!(ids, [third.id()]);
    }

    #[test]
    fn expiry_drops_only_operations_finished_before_the_cutoff() {
        let store = InMemoryStore::new();
        let now = Utc::now();
        let old = add(&store, "flush");
        old.finish(OperationState::Completed, now - Duration::hours(2));
        let recent = add(&store, "flush");
        recent.finish(OperationState::Failed, now);
        let running = add(&store, "flush");
        running.start(now - Duration::days(3));
        let pending = add(&store, "flush");

        assert_eq!(store.remove_completed_before(now - Duration::hours(1)), 1);
        assert!(store.get(&old.id()).is_none());
        for kept in [&recent, &running, &pending] {
            assert!(store.get(&kept.id()).is_some());
        }
    }

    fn ids(records: &[Arc<OperationRecord>]) -> Vec<Uuid> {
        records.iter().map(|r| r.id()).collect()
    }

    #[test]
    fn the_index_follows_state_changes_made_through_the_record() {
        let store = InMemoryStore::new();
        let now = Utc::now();
        let flush = add(&store, "flush");
        let cleanup = add(&store, "cleanup");
        let running = OperationFilter {
            states: [OperationState::Running].into(),
            ..Default::default()
        };
        assert_eq!(store.count(&OperationFilter::unfinished()), 2);
        assert!(store.list(&running).is_empty());

        flush.start(now);
        assert_eq!(ids(&store.list(&running)), [flush.id()]);
        assert_eq!(store.count(&OperationFilter::unfinished()), 2);

        cleanup.finish(OperationState::Cancelled, now);
        flush.finish(OperationState::Failed, now);
        assert!(store.list(&running).is_empty());
        assert_eq!(store.count(&OperationFilter::unfinished()), 0);
        let failed = OperationFilter {
            states: [OperationState::Failed, OperationState::Cancelled].into(),
            ..Default::default()
        };
        assert_eq!(ids(&store.list(&failed)), [cleanup.id(), flush.id()]);

        assert_eq!(store.remove_completed_before(now + Duration::seconds(1)), 2);
        assert!(store.list(&failed).is_empty());
        assert_eq!(store.count(&OperationFilter::default()), 0);
    }

    #[test]
    fn a_record_finished_before_it_is_stored_is_indexed_as_finished() {
        let store = InMemoryStore::new();
        let record = Arc::new(OperationRecord::new(
            "flush",
            Map::new(),
            CancellationToken::new(),
        ));
        let now = Utc::now();
        record.finish(OperationState::Completed, now);
        store.put(Arc::clone(&record));
        assert_eq!(store.count(&OperationFilter::unfinished()), 0);
        assert_eq!(store.remove_completed_before(now + Duration::seconds(1)), 1);
        assert!(store.get(&record.id()).is_none());
    }

    #[test]
    fn a_removed_or_replaced_record_leaves_no_trace_in_the_index() {
        let store = InMemoryStore::new();
        let now = Utc::now();
        let first = add(&store, "flush");
        first.finish(OperationState::Completed, now);
        let second = add(&store, "flush");
        assert!(store.remove(&first.id()).is_some());
        assert_eq!(store.count(&OperationFilter::default()), 1);
        assert_eq!(store.remove_completed_before(now + Duration::seconds(1)), 0);

        // A copy of `second` replaces it, already finished.
        let copy = Arc::new(OperationRecord::restored(
            second.id(),
            "flush",
            Map::new(),
            second.creation_time(),
            second.sequence(),
            crate::record::StoredStatus {
                state: OperationState::Failed,
                progress: 1.0,
                errors: Vec::new(),
                start_time: Some(now),
                completion_time: Some(now),
                response: None,
                nodes: None,
            },
        ));
        store.put(Arc::clone(&copy));
        assert_eq!(store.count(&OperationFilter::unfinished()), 0);
        assert_eq!(ids(&store.list(&OperationFilter::default())), [copy.id()]);
        assert_eq!(store.remove_completed_before(now + Duration::seconds(1)), 1);
        assert_eq!(store.count(&OperationFilter::default()), 0);
    }

    #[test]
    fn pages_walk_the_list_newest_first_without_gaps_or_repeats() {
        let store = InMemoryStore::new();
        let records: Vec<_> = (0..7)
            .map(|i| add(&store, if i % 2 == 0 { "flush" } else { "cleanup" }))
            .collect();
        let newest_first: Vec<_> = records.iter().rev().map(|r| r.id()).collect();
        for filter in [
            OperationFilter::default(),
            OperationFilter::unfinished(),
            OperationFilter {
                types: ["flush".to_string(), "cleanup".to_string()].into(),
                ..Default::default()
            },
        ] {
            let mut seen = Vec::new();
            let mut before = None;
            loop {
                let page = store.list_page(
                    &filter,
                    Page {
                        before,
                        limit: Some(3),
                    },
                );
                assert!(page.len() <= 3);
                let Some(last) = page.last() else { break };
                before = Some(last.sequence());
                seen.extend(ids(&page));
            }
            assert_eq!(seen, newest_first, "{filter:?}");
        }
        let flushes = OperationFilter {
            types: ["flush".to_string()].into(),
            ..Default::default()
        };
        let page = store.list_page(
            &flushes,
            Page {
                before: Some(records[4].sequence()),
                limit: Some(10),
            },
        );
        assert_eq!(ids(&page), [records[2].id(), records[0].id()]);
    }

    /// Submits `count` records alternating flush and cleanup, as the executor would: each stored, then started
    /// or finished, the finished ones one second apart in creation order. Those at `running` are started and left
    /// running.
    fn run_through(
        store: &InMemoryStore,
        count: usize,
        running: &[usize],
        from: DateTime<Utc>,
    ) -> Vec<Arc<OperationRecord>> {
        (0..count)
            .map(|i| {
                let record = add(store, if i % 2 == 0 { "flush" } else { "cleanup" });
                let at = from + Duration::seconds(i64::try_from(i).unwrap());
                if running.contains(&i) {
                    record.start(at);
                } else {
                    record.finish(OperationState::Completed, at);
                }
                record
            })
            .collect()
    }

    #[test]
    fn past_its_limit_the_store_drops_the_operations_that_finished_first() {
        let store = InMemoryStore::with_limit(3);
        let now = Utc::now();
        let a = add(&store, "flush");
        let b = add(&store, "cleanup");
        let c = add(&store, "flush");
        // Finished in another order than they were created: c, then a, then b.
        c.finish(OperationState::Completed, now - Duration::seconds(3));
        a.finish(OperationState::Failed, now - Duration::seconds(2));
        b.finish(OperationState::Cancelled, now - Duration::seconds(1));
        assert_eq!(store.evicted(), 0);

        let d = add(&store, "flush");
        assert!(store.get(&c.id()).is_none());
        let e = add(&store, "flush");
        assert!(store.get(&a.id()).is_none());
        assert_eq!(
            ids(&store.list(&OperationFilter::default())),
            [e.id(), d.id(), b.id()]
        );
        assert_eq!(store.len(), 3);
        assert_eq!(store.evicted(), 2);
    }

    #[test]
    fn pending_and_running_operations_are_never_evicted() {
        let store = InMemoryStore::with_limit(2);
        let now = Utc::now();
        let running = add(&store, "flush");
        running.start(now);
        let pending = add(&store, "flush");
        let third = add(&store, "cleanup");
        // Nothing has finished: the store holds more than its limit rather than drop an unfinished operation.
        assert_eq!(store.count(&OperationFilter::default()), 3);
        assert_eq!(store.evicted(), 0);

        third.finish(OperationState::Completed, now);
        assert_eq!(store.evict_over_limit(), [third.id()]);
        assert_eq!(
            ids(&store.list(&OperationFilter::default())),
            [pending.id(), running.id()]
        );
        let fourth = add(&store, "cleanup");
        assert_eq!(store.count(&OperationFilter::unfinished()), 3);
        for kept in [&running, &pending, &fourth] {
            assert!(store.get(&kept.id()).is_some());
        }
        assert_eq!(store.evicted(), 1);
    }

    #[test]
    fn after_eviction_lists_filters_counts_pages_and_expiry_agree() {
        let store = InMemoryStore::with_limit(5);
        let now = Utc::now();
        let r = run_through(&store, 10, &[1, 4], now);
        // Each store beyond five dropped the oldest finished one: r0, r2, r3, r5, r6.
        assert_eq!(store.evicted(), 5);
        for gone in [0, 2, 3, 5, 6] {
            assert!(store.get(&r[gone].id()).is_none(), "r{gone}");
        }
        let expect = |indices: &[usize]| indices.iter().map(|&i| r[i].id()).collect::<Vec<_>>();
        let by_type = |type_id: &str| OperationFilter {
            types: [type_id.to_string()].into(),
            ..Default::default()
        };
        let by_state = |state| OperationFilter {
            states: [state].into(),
            ..Default::default()
        };
        for (filter, wanted) in [
            (OperationFilter::default(), expect(&[9, 8, 7, 4, 1])),
            (by_type("flush"), expect(&[8, 4])),
            (by_type("cleanup"), expect(&[9, 7, 1])),
            (by_state(OperationState::Running), expect(&[4, 1])),
            (by_state(OperationState::Completed), expect(&[9, 8, 7])),
            (OperationFilter::unfinished(), expect(&[4, 1])),
        ] {
            assert_eq!(ids(&store.list(&filter)), wanted, "{filter:?}");
            assert_eq!(store.count(&filter), wanted.len(), "{filter:?}");
            // Paged two at a time, the pages add up to the whole list.
            let mut seen = Vec::new();
            let mut before = None;
            loop {
                let page = store.list_page(
                    &filter,
                    Page {
                        before,
                        limit: Some(2),
                    },
                );
                let Some(last) = page.last() else { break };
                before = Some(last.sequence());
                seen.extend(ids(&page));
            }
            assert_eq!(seen, wanted, "{filter:?}");
        }
        // A cursor a client got before its operation was evicted still continues after it.
        let page = store.list_page(
            &OperationFilter::default(),
            Page {
                before: Some(r[6].sequence()),
                limit: Some(10),
            },
        );
        assert_eq!(ids(&page), expect(&[4, 1]));
        // Expiry drops the finished operations that are left, and only those.
        assert_eq!(store.remove_completed_before(now + Duration::hours(1)), 3);
        assert_eq!(
            ids(&store.list(&OperationFilter::default())),
            expect(&[4, 1])
        );
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn an_evicted_operation_is_freed() {
        let store = InMemoryStore::with_limit(1);
        let first = {
            let record = add(&store, "flush");
            record.finish(OperationState::Completed, Utc::now());
            Arc::downgrade(&record)
        };
        assert!(first.upgrade().is_some(), "the store holds it");
        add(&store, "flush");
        assert!(first.upgrade().is_none(), "nothing holds an evicted record");
    }

    #[test]
    fn a_copy_stored_finished_competes_by_its_completion_time() {
        let store = InMemoryStore::with_limit(2);
        let now = Utc::now();
        for record in [add(&store, "flush"), add(&store, "flush")] {
            record.finish(OperationState::Completed, now);
        }
        let older = Arc::new(OperationRecord::new(
            "flush",
            Map::new(),
            CancellationToken::new(),
        ));
        older.finish(OperationState::Completed, now - Duration::hours(1));
        // Created last but finished first: it is the one to go.
        assert_eq!(store.put(Arc::clone(&older)), [older.id()]);
        assert!(store.get(&older.id()).is_none());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_copy_that_changes_from_one_final_state_to_another_is_evicted_once() {
        let store = InMemoryStore::with_limit(2);
        let now = Utc::now();
        let copy = add(&store, "flush");
        copy.finish(OperationState::Failed, now - Duration::seconds(2));
        // What etcd may send for a copy: another final state, completed at another time.
        let (mut status, _) = copy.stored_status();
        status.state = OperationState::Completed;
        status.completion_time = Some(now);
        copy.replace_status(status);
        let other = add(&store, "flush");
        other.finish(OperationState::Completed, now - Duration::seconds(1));

        add(&store, "flush");
        // The copy counts by its new completion time: `other` finished first.
        assert!(store.get(&other.id()).is_none());
        assert_eq!(store.count(&OperationFilter::default()), 2);
        add(&store, "flush");
        assert!(store.get(&copy.id()).is_none());
        assert_eq!(store.count(&OperationFilter::default()), 2);
        let completed = OperationFilter {
            states: [OperationState::Completed].into(),
            ..Default::default()
        };
        assert_eq!(store.count(&completed), 0);
        assert!(store.list(&completed).is_empty());
        assert_eq!(store.evicted(), 2);
    }
}
