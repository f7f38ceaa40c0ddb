//! `repair`: anti-entropy repair through `repairAsync`, following Cassandra's "progress" notifications, with a
//! poll of the parent repair status beside them so a lost notification never leaves the operation hanging.

use std::time::Duration;

use jmx::{JavaValue, NotificationEvent, Subscription};
use serde::{Deserialize, Serialize};

use super::target::{TableRequest, Target};
use crate::cassandra::STORAGE_SERVICE;
use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{Validate, Violations};

/// How often the parent repair status is asked, in case notifications were lost.
const POLL: Duration = Duration::from_secs(5);

/// `ProgressEventType` ordinals in the notifications' user data.
const ERROR: i64 = 2;
const ABORT: i64 = 3;
const COMPLETE: i64 = 5;

pub type RepairRequest = TableRequest<RepairFields>;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepairFields {
    /// `parallel` (default, as `nodetool repair`), `sequential` or `dc_parallel`.
    #[serde(default = "parallel", deserialize_with = "parallelism")]
    pub parallelism: String,
    /// Repair only the ranges this node is primary for (run on every node to cover the ring once).
    #[serde(default, deserialize_with = "decode::bool")]
    pub primary_range: bool,
    /// Incremental instead of full repair.
    #[serde(default, deserialize_with = "decode::bool")]
    pub incremental: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_centers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Parallel repair jobs per node, 1 to 4.
    #[serde(default = "one", deserialize_with = "decode::i32_or::<_, 1>")]
    pub job_threads: i32,
}

fn parallel() -> String {
    "parallel".into()
}

fn one() -> i32 {
    1
}

fn parallelism<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(decode::upper_case(deserializer)?.map_or_else(parallel, |p| p.to_ascii_lowercase()))
}

impl Validate for RepairFields {
    fn validate(&self, violations: &mut Violations) {
        if !matches!(
            self.parallelism.as_str(),
            "sequential" | "parallel" | "dc_parallel"
        ) {
            violations.add(
                "parallelism",
                format!(
                    "must be sequential, parallel or dc_parallel, got '{}'",
                    self.parallelism
                ),
            );
        }
        if !(1..=4).contains(&self.job_threads) {
            violations.add(
                "jobThreads",
                format!("must be 1 to 4, got {}", self.job_threads),
            );
        }
    }
}

impl RepairFields {
    /// `RepairOption` keys and values as `repairAsync` takes them, `tables` being the target's.
    fn options(&self, tables: &Option<Vec<String>>) -> Vec<(String, String)> {
        let mut options = vec![
            ("parallelism".to_string(), self.parallelism.clone()),
            ("primaryRange".to_string(), self.primary_range.to_string()),
            ("incremental".to_string(), self.incremental.to_string()),
            ("jobThreads".to_string(), self.job_threads.to_string()),
        ];
        let lists = [
            ("columnFamilies", tables),
            ("dataCenters", &self.data_centers),
            ("hosts", &self.hosts),
        ];
        for (key, list) in lists {
            if let Some(list) = list.as_ref().filter(|l| !l.is_empty()) {
                options.push((key.to_string(), list.join(",")));
            }
        }
        options
    }
}

pub struct Repair;

impl Operation for Repair {
    const TYPE: &'static str = "repair";
    type Request = RepairRequest;

    async fn run(
        &self,
        request: RepairRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        // The tables travel in the repair options (columnFamilies); here they are only checked.
        let options = request.fields.options(&request.target.tables);
        let Target {
            cassandra,
            keyspace,
            ..
        } = request.target.resolve(&context).await?;
        // Listen before starting, so no notification of this repair can be missed.
        let subscription = context
            .cancellable(cassandra.jmx().subscribe(STORAGE_SERVICE))
            .await??;
        let command = context
            .cancellable(cassandra.repair_async(&keyspace, options))
            .await??;
        if command == 0 {
            tracing::info!(keyspace, "nothing to repair");
            let _ = subscription.close().await;
            return Ok(());
        }
        tracing::info!(keyspace, command, "repair started");
        let outcome = follow(&context, &cassandra, command, Some(subscription)).await;
        if matches!(outcome, Err(OperationFailure::Cancelled)) {
            // Cassandra has no way to stop one repair session: stop them all, as `nodetool repair` on Ctrl-C.
            if let Err(error) = cassandra.terminate_repairs().await {
                tracing::warn!(%error, "could not terminate the repair sessions");
            }
        }
        outcome
    }
}

/// Follows repair `command` to its end.
async fn follow(
    context: &OperationContext,
    cassandra: &crate::cassandra::Cassandra,
    command: i32,
    mut subscription: Option<Subscription>,
) -> Result<(), OperationFailure> {
    let source = format!("repair:{command}");
    let mut errors: Vec<String> = Vec::new();
    let mut poll = tokio::time::interval(POLL);
    poll.tick().await;
    // Whether Cassandra has reported this repair's status yet.
    let mut known = false;
    let result = loop {
        let event = async {
            match subscription.as_mut() {
                Some(subscription) => subscription.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = context.cancellation().cancelled() => break Err(OperationFailure::Cancelled),
            event = event => match event {
                Some(NotificationEvent::Notification(n)) if n.kind == "progress" && n.source.as_str() == Some(&source) => {
                    let number = |key: &str| n.user_data.get(key).and_then(JavaValue::as_i64);
                    if let (Some(done), Some(total)) = (number("progressCount"), number("total")) {
                        context.progress().units(done.max(0) as u64, total.max(0) as u64);
                    }
                    match number("type") {
                        Some(ERROR) | Some(ABORT) => errors.extend(n.message.clone()),
                        Some(COMPLETE) => break Ok(()),
                        _ => {}
                    }
                }
                Some(NotificationEvent::Notification(_)) => {}
                Some(NotificationEvent::Lost(lost)) => {
                    tracing::warn!(lost, "repair notifications were lost; relying on the status poll");
                }
                Some(NotificationEvent::Failed(error)) => {
                    tracing::warn!(%error, "repair notifications stopped; relying on the status poll");
                    subscription = None;
                }
                None => subscription = None,
            },
            _ = poll.tick() => {
                match cassandra.parent_repair_status(command).await {
                    Ok(Some(status)) if status.first().map(String::as_str) == Some("COMPLETED") => break Ok(()),
                    Ok(Some(status)) if status.first().map(String::as_str) == Some("FAILED") => {
                        errors.extend(status.into_iter().skip(1));
                        if errors.is_empty() {
                            errors.push("Cassandra reports the repair FAILED".into());
                        }
                        break Ok(());
                    }
                    Ok(Some(_)) => known = true,
                    // Cassandra keeps repair statuses in memory: one that knew this repair and no longer does
                    // has restarted, and no status or notification will ever come.
                    Ok(None) if known => break Err(OperationFailure::Failed(format!(
                        "Cassandra at {} no longer knows repair {command}: it restarted while the repair ran, so \
                         the repair's outcome is unknown; run it again",
                        cassandra.jmx().address()
                    ))),
                    Ok(None) => {}
                    Err(error) if error.is_connection_problem() => break Err(OperationFailure::context(format!(
                        "Cassandra stopped answering during repair {command}, so the repair's outcome is unknown"
                    ), error)),
                    Err(error) => tracing::warn!(%error, "cannot read the repair status"),
                }
            }
        }
    };
    if let Some(subscription) = subscription {
        let _ = subscription.close().await;
    }
    result?;
    if errors.is_empty() {
        context.progress().set(1.0);
        Ok(())
    } else {
        Err(OperationFailure::Failed(format!(
            "repair {command} of {} failed: {}",
            cassandra.jmx().address(),
            errors.join("; ")
        )))
    }
}
