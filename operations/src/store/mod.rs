//! Where operations live between submission and expiry.
//!
//! Handlers and routes only see the [`OperationStore`] trait, so a persistent store (etcd, planned) can replace the
//! in-memory default without touching them.

mod memory;
mod sweeper;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use memory::InMemoryStore;
pub use sweeper::spawn_expiry_sweeper;

use crate::record::OperationRecord;
use crate::state::OperationState;

/// Which operations a listing returns. An empty set means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationFilter {
    pub types: HashSet<String>,
    pub states: HashSet<OperationState>,
}

impl OperationFilter {
    pub fn matches(&self, record: &OperationRecord) -> bool {
        (self.types.is_empty() || self.types.contains(record.type_id()))
            && (self.states.is_empty() || self.states.contains(&record.state()))
    }

    /// Operations that are not finished yet.
    pub fn unfinished() -> Self {
        OperationFilter {
            types: HashSet::new(),
            states: [OperationState::Pending, OperationState::Running].into(),
        }
    }
}

pub trait OperationStore: Send + Sync + std::fmt::Debug + 'static {
    fn insert(&self, record: Arc<OperationRecord>);

    fn get(&self, id: &Uuid) -> Option<Arc<OperationRecord>>;

    /// Matching operations, newest first.
    fn list(&self, filter: &OperationFilter) -> Vec<Arc<OperationRecord>>;

    /// Drops terminal operations that completed before `cutoff`; returns how many were dropped.
    /// Pending and running operations are never dropped.
    fn remove_completed_before(&self, cutoff: DateTime<Utc>) -> usize;
}
