//! Schedules in etcd (`--store etcd`), shared by every sidecar of the prefix: each is the key
//! `<prefix>schedules/<id>` holding the [`Schedule`] as JSON (its `lastRun` written there by whoever ran it), and
//! each run of a tick is claimed by creating `<prefix>schedule-runs/<id>/<tick epoch seconds>` (value: the
//! sidecar) under a lease that outlives the tick, so exactly one sidecar runs it.

use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};

use super::store::{ScheduleStore, ScheduleStoreError};
use super::{LastRun, Schedule};
use crate::operation_store::etcd::{EtcdKeys, KeysError};

const SCHEDULES: &str = "schedules/";
const RUNS: &str = "schedule-runs/";
/// Attempts of a `lastRun` write that lost a race with another write of the same schedule.
const SWAP_ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub struct EtcdScheduleStore {
    keys: EtcdKeys,
    limit: usize,
}

impl EtcdScheduleStore {
    /// Keeps at most `limit` schedules under the prefix.
    pub fn new(keys: EtcdKeys, limit: usize) -> Self {
        EtcdScheduleStore {
            keys,
            limit: limit.max(1),
        }
    }

    async fn all(&self) -> Result<Vec<(Schedule, i64)>, ScheduleStoreError> {
        let entries = self.keys.list(SCHEDULES).await.map_err(unavailable)?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| match serde_json::from_slice::<Schedule>(&entry.value) {
                Ok(schedule) => Some((schedule, entry.revision)),
                Err(error) => {
                    tracing::warn!(key = %entry.key, %error, "a schedule in etcd cannot be read; skipped");
                    None
                }
            })
            .collect())
    }

    async fn read(&self, id: &str) -> Result<Option<(Schedule, i64)>, ScheduleStoreError> {
        let Some(entry) = self
            .keys
            .get(&format!("{SCHEDULES}{id}"))
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        match serde_json::from_slice::<Schedule>(&entry.value) {
            Ok(schedule) => Ok(Some((schedule, entry.revision))),
            Err(error) => {
                tracing::warn!(key = %entry.key, %error, "a schedule in etcd cannot be read");
                Ok(None)
            }
        }
    }
}

fn unavailable(error: KeysError) -> ScheduleStoreError {
    ScheduleStoreError::Unavailable(error.to_string())
}

fn encode(schedule: &Schedule) -> Result<Vec<u8>, ScheduleStoreError> {
    serde_json::to_vec(schedule).map_err(|error| {
        ScheduleStoreError::Unavailable(format!("cannot encode the schedule: {error}"))
    })
}

impl ScheduleStore for EtcdScheduleStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Schedule>, ScheduleStoreError>> {
        async move {
            let mut schedules: Vec<Schedule> =
                self.all().await?.into_iter().map(|(s, _)| s).collect();
            schedules.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(schedules)
        }
        .boxed()
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Schedule>, ScheduleStoreError>> {
        async move { Ok(self.read(id).await?.map(|(schedule, _)| schedule)) }.boxed()
    }

    /// The limit is checked against a read just before, so sidecars creating schedules at the same moment may
    /// pass it by a few; the id is created only if absent.
    fn insert(&self, schedule: Schedule) -> BoxFuture<'_, Result<(), ScheduleStoreError>> {
        async move {
            let present = self.keys.list(SCHEDULES).await.map_err(unavailable)?;
            let key = format!("{SCHEDULES}{}", schedule.id);
            if present.iter().any(|entry| entry.key == key) {
                return Err(ScheduleStoreError::Exists(schedule.id));
            }
            if present.len() >= self.limit {
                return Err(ScheduleStoreError::Full { limit: self.limit });
            }
            let value = encode(&schedule)?;
            if self
                .keys
                .create(&key, value, None)
                .await
                .map_err(unavailable)?
            {
                Ok(())
            } else {
                Err(ScheduleStoreError::Exists(schedule.id))
            }
        }
        .boxed()
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, ScheduleStoreError>> {
        async move {
            let removed = self
                .keys
                .delete(&format!("{SCHEDULES}{id}"))
                .await
                .map_err(unavailable)?;
            // The claims of its ticks would expire with their leases; they go now.
            if let Err(error) = self.keys.delete_prefix(&format!("{RUNS}{id}/")).await {
                tracing::debug!(schedule = id, %error, "the claims of a deleted schedule stay until their leases end");
            }
            Ok(removed)
        }
        .boxed()
    }

    fn record_run<'a>(
        &'a self,
        id: &'a str,
        run: LastRun,
    ) -> BoxFuture<'a, Result<(), ScheduleStoreError>> {
        async move {
            let key = format!("{SCHEDULES}{id}");
            for _ in 0..SWAP_ATTEMPTS {
                let Some((mut schedule, revision)) = self.read(id).await? else {
                    return Ok(());
                };
                if !run.replaces(schedule.last_run.as_ref()) {
                    return Ok(());
                }
                schedule.last_run = Some(run.clone());
                if self
                    .keys
                    .swap(&key, encode(&schedule)?, revision)
                    .await
                    .map_err(unavailable)?
                {
                    return Ok(());
                }
            }
            Err(ScheduleStoreError::Unavailable(format!(
                "schedule {id} kept changing while its last run was written"
            )))
        }
        .boxed()
    }

    fn claim<'a>(
        &'a self,
        id: &'a str,
        tick: i64,
        hold: Duration,
    ) -> BoxFuture<'a, Result<bool, ScheduleStoreError>> {
        async move {
            let key = format!("{RUNS}{id}/{tick}");
            let me = self.keys.sidecar().as_bytes().to_vec();
            if self
                .keys
                .create(&key, me.clone(), Some(hold))
                .await
                .map_err(unavailable)?
            {
                return Ok(true);
            }
            // This sidecar's own claim, from before a restart (or from an attempt whose answer was lost).
            let holder = self.keys.get(&key).await.map_err(unavailable)?;
            Ok(holder.is_some_and(|entry| entry.value == me))
        }
        .boxed()
    }

    fn release<'a>(
        &'a self,
        id: &'a str,
        tick: i64,
    ) -> BoxFuture<'a, Result<(), ScheduleStoreError>> {
        async move {
            let key = format!("{RUNS}{id}/{tick}");
            self.keys
                .delete_if_value(&key, self.keys.sidecar().as_bytes().to_vec())
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn sidecar(&self) -> Option<String> {
        Some(self.keys.sidecar().to_string())
    }
}
