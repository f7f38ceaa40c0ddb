use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures_util::future::{BoxFuture, FutureExt};
use uuid::Uuid;

use super::index::Index;
use super::{OperationFilter, OperationStore, Page, StoreError};
use crate::record::{OperationRecord, StateListener};

/// The default store: lost when the process exits (as with Icarus). A concurrent map answers lookups by id; the
/// [`Index`] answers listings, counts and the expiry sweep.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    operations: DashMap<Uuid, Arc<OperationRecord>>,
    index: Arc<Index>,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.operations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// Adds a record, or replaces the one with its id.
    pub fn put(&self, record: Arc<OperationRecord>) {
        self.remove(&record.id());
        self.operations.insert(record.id(), Arc::clone(&record));
        self.index.add(&record);
        // From here on the record reports its state changes to the index itself, starting with its current state.
        let index: Arc<dyn StateListener> = self.index.clone();
        record.attach(Arc::downgrade(&index) as Weak<dyn StateListener>);
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
        self.put(record);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::OperationState;
    use crate::store::Page;
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
}
