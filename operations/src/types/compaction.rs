//! `compact` (major compaction), `garbagecollect` and `set-throughput`: what operators of the peer sidecars
//! run beside the Icarus types.

use serde::{Deserialize, Deserializer, Serialize};

use super::target::{TableRequest, Target};
use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

pub type CompactRequest = TableRequest<CompactFields>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactFields {
    /// Write several SSTables (sized by tier) instead of one.
    #[serde(default, deserialize_with = "decode::bool")]
    pub split_output: bool,
}

impl Validate for CompactFields {
    fn validate(&self, _violations: &mut Violations) {}
}

pub struct Compact;

impl Operation for Compact {
    const TYPE: &'static str = "compact";
    type Request = CompactRequest;

    async fn run(
        &self,
        request: CompactRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let Target {
            cassandra,
            keyspace,
            tables,
        } = request.target.resolve(&context).await?;
        context
            .cancellable(cassandra.compact(request.fields.split_output, &keyspace, &tables))
            .await??;
        Ok(())
    }
}

pub type GarbageCollectRequest = TableRequest<GarbageCollectFields>;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GarbageCollectFields {
    /// `ROW` (default) drops deleted rows, `CELL` deleted cells too, `NONE` only rewrites.
    #[serde(default = "row", deserialize_with = "tombstone_option")]
    pub tombstone_option: String,
    #[serde(default, deserialize_with = "decode::i32")]
    pub jobs: i32,
}

fn row() -> String {
    "ROW".into()
}

fn tombstone_option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(decode::upper_case(deserializer)?.unwrap_or_else(row))
}

impl Validate for GarbageCollectFields {
    fn validate(&self, violations: &mut Violations) {
        validation::non_negative(violations, "jobs", self.jobs);
        if !matches!(self.tombstone_option.as_str(), "NONE" | "ROW" | "CELL") {
            violations.add(
                "tombstoneOption",
                format!("must be NONE, ROW or CELL, got '{}'", self.tombstone_option),
            );
        }
    }
}

pub struct GarbageCollect;

impl Operation for GarbageCollect {
    const TYPE: &'static str = "garbagecollect";
    type Request = GarbageCollectRequest;

    async fn run(
        &self,
        request: GarbageCollectRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let Target {
            cassandra,
            keyspace,
            tables,
        } = request.target.resolve(&context).await?;
        let fields = request.fields;
        let collect =
            cassandra.garbage_collect(&fields.tombstone_option, fields.jobs, &keyspace, &tables);
        let status = context.cancellable(collect).await??;
        super::sstables::outcome(status, "garbage collecting", &keyspace)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetThroughputRequest {
    /// Compaction throughput in MiB/s; 0 = unthrottled.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "decode::option_i32"
    )]
    pub compaction_throughput: Option<i32>,
    /// Streaming throughput in megabits/s; 0 = unthrottled.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "decode::option_i32"
    )]
    pub stream_throughput: Option<i32>,
}

impl Validate for SetThroughputRequest {
    fn validate(&self, violations: &mut Violations) {
        if self.compaction_throughput.is_none() && self.stream_throughput.is_none() {
            violations.add(
                "compactionThroughput",
                "give compactionThroughput, streamThroughput or both",
            );
        }
        if let Some(value) = self.compaction_throughput {
            validation::non_negative(violations, "compactionThroughput", value);
        }
        if let Some(value) = self.stream_throughput {
            validation::non_negative(violations, "streamThroughput", value);
        }
    }
}

pub struct SetThroughput;

impl Operation for SetThroughput {
    const TYPE: &'static str = "set-throughput";
    type Request = SetThroughputRequest;

    async fn run(
        &self,
        request: SetThroughputRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let cassandra = context.cassandra().await?;
        if let Some(value) = request.compaction_throughput {
            context
                .cancellable(cassandra.set_compaction_throughput(value))
                .await??;
        }
        if let Some(value) = request.stream_throughput {
            context
                .cancellable(cassandra.set_stream_throughput(value))
                .await??;
        }
        Ok(())
    }
}
