//! Where operations live between submission and expiry.
//!
//! Handlers and routes only see the [`OperationStore`] trait: the in-memory default, or (with the `etcd` feature)
//! etcd, where operations outlive the sidecar and every sidecar of a cluster sees them all. Either keeps at most
//! `--max-stored-operations` in this process's memory, dropping the operations that finished first.

#[cfg(feature = "etcd")]
pub mod etcd;
mod index;
mod memory;
mod sweeper;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use uuid::Uuid;

pub use memory::InMemoryStore;
pub use sweeper::{release_freed_memory, releasing_memory, spawn_expiry_sweeper};

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

/// Why a store could not keep a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the operation store cannot be reached ({0}); nothing was accepted, try again once it is back"
    )]
    Unavailable(String),
    #[error("operation {0} is now kept by another sidecar ({1}); this one stops writing it")]
    TakenOver(Uuid, String),
}

pub trait OperationStore: Send + Sync + std::fmt::Debug + 'static {
    /// Keeps a new operation. Once this returns `Ok` the operation is kept for good (for a persistent store: written
    /// there) and listed; on `Err` nothing was kept.
    fn insert(&self, record: Arc<OperationRecord>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Makes the record's current status what clients see. A persistent store writes it first, so a client never
    /// sees a state that a crash could take back; the in-memory store has nothing to do, as clients read the
    /// record itself. On `Err` the store keeps trying in the background.
    fn save(&self, record: Arc<OperationRecord>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Keeps an operation this sidecar takes over from another (same id): from now on this one writes it.
    fn adopt(&self, record: Arc<OperationRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.insert(record)
    }

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

    /// How many finished operations were dropped before they expired, since start, to keep the store within its
    /// limit (`--max-stored-operations`).
    fn evicted(&self) -> u64 {
        0
    }

    /// Whether reads may be out of date: a persistent store that lost its connection answers from what it last saw.
    fn is_stale(&self) -> bool {
        false
    }
}
