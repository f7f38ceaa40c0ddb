//! Where schedules live: the [`ScheduleStore`] trait, and the in-memory store (lost on restart). The etcd store
//! (`--store etcd`, shared by every sidecar of a prefix) implements the trait in `schedule/etcd.rs`, on the
//! operation store's plain etcd keys.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};

use super::{LastRun, Schedule};
use crate::sync::lock;

/// Why a store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleStoreError {
    #[error(
        "this sidecar already keeps {limit} schedules, the most it admits (--max-schedules); delete one first"
    )]
    Full { limit: usize },
    #[error("a schedule with id {0} exists already")]
    Exists(String),
    #[error(
        "the schedule store cannot be reached ({0}); nothing was changed, try again once it is back"
    )]
    Unavailable(String),
}

pub trait ScheduleStore: Send + Sync + std::fmt::Debug + 'static {
    /// Every schedule, by id.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Schedule>, ScheduleStoreError>>;

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Schedule>, ScheduleStoreError>>;

    /// Keeps a new schedule, unless one of its id exists or the store holds its limit already.
    fn insert(&self, schedule: Schedule) -> BoxFuture<'_, Result<(), ScheduleStoreError>>;

    /// Removes a schedule; whether it existed.
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, ScheduleStoreError>>;

    /// Sets a schedule's `lastRun`: nothing when the schedule was deleted meanwhile, or when the stored one is of a
    /// later run ([`LastRun::replaces`]).
    fn record_run<'a>(
        &'a self,
        id: &'a str,
        run: LastRun,
    ) -> BoxFuture<'a, Result<(), ScheduleStoreError>>;

    /// Makes this sidecar the one that runs the tick `tick` (epoch seconds) of schedule `id`, unless another sidecar
    /// is; the claim is held for `hold`. Whether this sidecar runs it: also when the claim is already this sidecar's
    /// (a restart under the same sidecar id, catching up on the tick it claimed and never ran).
    fn claim<'a>(
        &'a self,
        id: &'a str,
        tick: i64,
        hold: Duration,
    ) -> BoxFuture<'a, Result<bool, ScheduleStoreError>>;

    /// Gives up this sidecar's claim on tick `tick` of schedule `id` (its run was abandoned before it was
    /// submitted), so that a sidecar catching up on missed ticks may claim it again. Nothing when the claim is not
    /// this sidecar's, or in a store only this sidecar runs.
    fn release<'a>(
        &'a self,
        _id: &'a str,
        _tick: i64,
    ) -> BoxFuture<'a, Result<(), ScheduleStoreError>> {
        async move { Ok(()) }.boxed()
    }

    /// This sidecar's name in a store several sidecars share (it runs the node-local schedules it accepted); `None`
    /// when the store is this sidecar's alone.
    fn sidecar(&self) -> Option<String> {
        None
    }
}

/// Schedules in this process's memory: this sidecar runs them all, and they are gone when it stops.
#[derive(Debug)]
pub struct InMemoryScheduleStore {
    schedules: std::sync::Mutex<BTreeMap<String, Schedule>>,
    limit: usize,
}

impl InMemoryScheduleStore {
    /// Keeps at most `limit` schedules.
    pub fn new(limit: usize) -> Self {
        InMemoryScheduleStore {
            schedules: Default::default(),
            limit: limit.max(1),
        }
    }
}

impl ScheduleStore for InMemoryScheduleStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Schedule>, ScheduleStoreError>> {
        let schedules = lock(&self.schedules).values().cloned().collect();
        async move { Ok(schedules) }.boxed()
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Schedule>, ScheduleStoreError>> {
        let schedule = lock(&self.schedules).get(id).cloned();
        async move { Ok(schedule) }.boxed()
    }

    fn insert(&self, schedule: Schedule) -> BoxFuture<'_, Result<(), ScheduleStoreError>> {
        let outcome = {
            let mut schedules = lock(&self.schedules);
            if schedules.contains_key(&schedule.id) {
                Err(ScheduleStoreError::Exists(schedule.id))
            } else if schedules.len() >= self.limit {
                Err(ScheduleStoreError::Full { limit: self.limit })
            } else {
                schedules.insert(schedule.id.clone(), schedule);
                Ok(())
            }
        };
        async move { outcome }.boxed()
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, ScheduleStoreError>> {
        let removed = lock(&self.schedules).remove(id).is_some();
        async move { Ok(removed) }.boxed()
    }

    fn record_run<'a>(
        &'a self,
        id: &'a str,
        run: LastRun,
    ) -> BoxFuture<'a, Result<(), ScheduleStoreError>> {
        if let Some(schedule) = lock(&self.schedules).get_mut(id)
            && run.replaces(schedule.last_run.as_ref())
        {
            schedule.last_run = Some(run);
        }
        async move { Ok(()) }.boxed()
    }

    /// Nobody else runs anything of this store.
    fn claim<'a>(
        &'a self,
        _id: &'a str,
        _tick: i64,
        _hold: Duration,
    ) -> BoxFuture<'a, Result<bool, ScheduleStoreError>> {
        async move { Ok(true) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn schedule(id: &str) -> Schedule {
        Schedule {
            id: id.into(),
            cron: "* * * * * *".into(),
            timezone: "UTC".into(),
            operation: serde_json::Map::new(),
            retention: None,
            jitter: None,
            created_at: Utc::now(),
            last_run: None,
            sidecar: None,
        }
    }

    #[tokio::test]
    async fn keeps_lists_records_and_removes_within_its_limit() {
        let store = InMemoryScheduleStore::new(2);
        store.insert(schedule("b")).await.unwrap();
        store.insert(schedule("a")).await.unwrap();
        assert_eq!(
            store.insert(schedule("a")).await,
            Err(ScheduleStoreError::Exists("a".into()))
        );
        assert_eq!(
            store.insert(schedule("c")).await,
            Err(ScheduleStoreError::Full { limit: 2 })
        );
        let ids: Vec<_> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        let run = LastRun::refused(Utc::now(), "refused".into());
        store.record_run("a", run.clone()).await.unwrap();
        store.record_run("gone", run.clone()).await.unwrap();
        assert_eq!(store.get("a").await.unwrap().unwrap().last_run, Some(run));
        assert!(store.claim("a", 1, Duration::from_secs(1)).await.unwrap());
        assert!(store.remove("a").await.unwrap());
        assert!(!store.remove("a").await.unwrap());
        assert_eq!(store.get("a").await.unwrap(), None);
        store.insert(schedule("c")).await.unwrap();
    }
}
