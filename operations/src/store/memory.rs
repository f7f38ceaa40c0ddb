use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use uuid::Uuid;

use super::{OperationFilter, OperationStore};
use crate::record::OperationRecord;

/// The default store: a concurrent map, lost when the process exits (as with Icarus).
#[derive(Debug, Default)]
pub struct InMemoryStore {
    operations: DashMap<Uuid, Arc<OperationRecord>>,
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
}

impl OperationStore for InMemoryStore {
    fn insert(&self, record: Arc<OperationRecord>) {
        self.operations.insert(record.id(), record);
    }

    fn get(&self, id: &Uuid) -> Option<Arc<OperationRecord>> {
        self.operations
            .get(id)
            .map(|entry| Arc::clone(entry.value()))
    }

    fn list(&self, filter: &OperationFilter) -> Vec<Arc<OperationRecord>> {
        let mut found: Vec<_> = self
            .operations
            .iter()
            .filter(|entry| filter.matches(entry.value()))
            .map(|entry| Arc::clone(entry.value()))
            .collect();
        found.sort_unstable_by_key(|record| std::cmp::Reverse(record.sequence()));
        found
    }

    fn remove_completed_before(&self, cutoff: DateTime<Utc>) -> usize {
        let before = self.operations.len();
        self.operations.retain(|_, record| {
            record
                .completion_time()
                .is_none_or(|completed| completed >= cutoff)
        });
        before.saturating_sub(self.operations.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        store.insert(Arc::clone(&record));
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
}
