//! Where operations live between submission and expiry.
//!
//! Handlers and routes only see the [`OperationStore`] trait, so a persistent store (etcd, planned) can replace the
//! in-memory default without touching them.

mod index;
mod memory;
mod sweeper;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use memory::InMemoryStore;
pub use sweeper::{release_freed_memory, spawn_expiry_sweeper};

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

    /// Whether the filter lets every operation through.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty() && self.states.is_empty()
    }

    /// Operations that are not finished yet.
    pub fn unfinished() -> Self {
        OperationFilter {
            types: HashSet::new(),
            states: [OperationState::Pending, OperationState::Running].into(),
        }
    }
}

/// Which part of a listing to return, newest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    /// Only operations older than the one with this sequence number (see [`OperationRecord::sequence`]): where the
    /// previous page ended.
    pub before: Option<u64>,
    /// At most this many; all of them when `None`.
    pub limit: Option<usize>,
}

pub trait OperationStore: Send + Sync + std::fmt::Debug + 'static {
    fn insert(&self, record: Arc<OperationRecord>);

    fn get(&self, id: &Uuid) -> Option<Arc<OperationRecord>>;

    /// Matching operations, newest first.
    fn list(&self, filter: &OperationFilter) -> Vec<Arc<OperationRecord>> {
        self.list_page(filter, Page::default())
    }

    /// One page of the matching operations, newest first. A store should make this cost what it returns, not
    /// what it holds.
    fn list_page(&self, filter: &OperationFilter, page: Page) -> Vec<Arc<OperationRecord>>;

    /// How many operations match.
    fn count(&self, filter: &OperationFilter) -> usize;

    /// Drops terminal operations that completed before `cutoff`; returns how many were dropped.
    /// Pending and running operations are never dropped.
    fn remove_completed_before(&self, cutoff: DateTime<Utc>) -> usize;
}
