//! The maintenance calls of the facade: flush, cleanup, scrub, upgradesstables, compaction, garbage collection,
//! drain, decommission, rebuild, refresh, import, truncate, repair and throughput settings, with the signature each
//! Cassandra version takes.

use std::time::Duration;

use jmx::{JavaArg, JavaValue};

use super::{Cassandra, CassandraError, STORAGE_SERVICE};

/// `CompactionManager.AllSSTableOpStatus`, what cleanup, scrub, upgradesstables and garbagecollect return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsTableOpStatus {
    Successful,
    /// "Aborted cleaning up at least one table in keyspace ..., check server logs for more information."
    Aborted,
    /// "Failed marking some sstables compacting in keyspace ..., check server logs for more information."
    UnableToCancel,
}

impl SsTableOpStatus {
    fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(SsTableOpStatus::Successful),
            1 => Some(SsTableOpStatus::Aborted),
            2 => Some(SsTableOpStatus::UnableToCancel),
            _ => None,
        }
    }
}

/// What a blocking maintenance call may take before the sidecar stops waiting (the call goes on in Cassandra).
pub const LONG_CALL: Duration = Duration::from_secs(24 * 3600);

const STRING: &str = "java.lang.String";
const STRINGS: &str = "[Ljava.lang.String;";

fn strings(items: &[String]) -> JavaArg {
    JavaArg::StringArray(items.to_vec())
}

impl Cassandra {
    async fn long_call(
        &self,
        operation: &str,
        params: &[JavaArg],
        signature: &[&str],
    ) -> Result<JavaValue, CassandraError> {
        Ok(self
            .jmx()
            .invoke_with_timeout(STORAGE_SERVICE, operation, params, signature, LONG_CALL)
            .await?)
    }

    async fn status_call(
        &self,
        operation: &'static str,
        params: &[JavaArg],
        signature: &[&str],
    ) -> Result<SsTableOpStatus, CassandraError> {
        let value = self.long_call(operation, params, signature).await?;
        value
            .as_i64()
            .and_then(SsTableOpStatus::from_code)
            .ok_or_else(|| self.unexpected(operation, &value))
    }

    /// The ObjectName of a table's MBean, or `None` when the node has no such table.
    pub async fn table_mbean(
        &self,
        keyspace: &str,
        table: &str,
    ) -> Result<Option<String>, CassandraError> {
        let name = format!("org.apache.cassandra.db:type=Tables,keyspace={keyspace},table={table}");
        Ok(self.jmx().is_registered(&name).await?.then_some(name))
    }

    /// Writes memtables to SSTables; no tables = all of the keyspace.
    pub async fn flush(&self, keyspace: &str, tables: &[String]) -> Result<(), CassandraError> {
        self.long_call(
            "forceKeyspaceFlush",
            &[JavaArg::String(keyspace.into()), strings(tables)],
            &[STRING, STRINGS],
        )
        .await?;
        Ok(())
    }

    pub async fn cleanup(
        &self,
        jobs: i32,
        keyspace: &str,
        tables: &[String],
    ) -> Result<SsTableOpStatus, CassandraError> {
        self.status_call(
            "forceKeyspaceCleanup",
            &[
                JavaArg::Int(jobs),
                JavaArg::String(keyspace.into()),
                strings(tables),
            ],
            &["int", STRING, STRINGS],
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn scrub(
        &self,
        disable_snapshot: bool,
        skip_corrupted: bool,
        check_data: bool,
        reinsert_overflowed_ttl: bool,
        jobs: i32,
        keyspace: &str,
        tables: &[String],
    ) -> Result<SsTableOpStatus, CassandraError> {
        self.status_call(
            "scrub",
            &[
                JavaArg::Boolean(disable_snapshot),
                JavaArg::Boolean(skip_corrupted),
                JavaArg::Boolean(check_data),
                JavaArg::Boolean(reinsert_overflowed_ttl),
                JavaArg::Int(jobs),
                JavaArg::String(keyspace.into()),
                strings(tables),
            ],
            &[
                "boolean", "boolean", "boolean", "boolean", "int", STRING, STRINGS,
            ],
        )
        .await
    }

    /// Rewrites SSTables in the current format; `exclude_current_version` skips those already in it. 4.1 added a
    /// `maxSSTableTimestamp` argument (`Long.MAX_VALUE` = no limit) to the canonical form.
    pub async fn upgrade_sstables(
        &self,
        keyspace: &str,
        exclude_current_version: bool,
        jobs: i32,
        tables: &[String],
    ) -> Result<SsTableOpStatus, CassandraError> {
        if self.release_version().await?.at_least(4, 1) {
            self.status_call(
                "upgradeSSTables",
                &[
                    JavaArg::String(keyspace.into()),
                    JavaArg::Boolean(exclude_current_version),
                    JavaArg::Long(i64::MAX),
                    JavaArg::Int(jobs),
                    strings(tables),
                ],
                &[STRING, "boolean", "long", "int", STRINGS],
            )
            .await
        } else {
            self.status_call(
                "upgradeSSTables",
                &[
                    JavaArg::String(keyspace.into()),
                    JavaArg::Boolean(exclude_current_version),
                    JavaArg::Int(jobs),
                    strings(tables),
                ],
                &[STRING, "boolean", "int", STRINGS],
            )
            .await
        }
    }

    /// Major compaction; `split_output` writes several SSTables instead of one.
    pub async fn compact(
        &self,
        split_output: bool,
        keyspace: &str,
        tables: &[String],
    ) -> Result<(), CassandraError> {
        self.long_call(
            "forceKeyspaceCompaction",
            &[
                JavaArg::Boolean(split_output),
                JavaArg::String(keyspace.into()),
                strings(tables),
            ],
            &["boolean", STRING, STRINGS],
        )
        .await?;
        Ok(())
    }

    /// Drops deleted data; `tombstone_option` is `NONE`, `ROW` or `CELL`.
    pub async fn garbage_collect(
        &self,
        tombstone_option: &str,
        jobs: i32,
        keyspace: &str,
        tables: &[String],
    ) -> Result<SsTableOpStatus, CassandraError> {
        self.status_call(
            "garbageCollect",
            &[
                JavaArg::String(tombstone_option.into()),
                JavaArg::Int(jobs),
                JavaArg::String(keyspace.into()),
                strings(tables),
            ],
            &[STRING, "int", STRING, STRINGS],
        )
        .await
    }

    pub async fn drain(&self) -> Result<(), CassandraError> {
        self.long_call("drain", &[], &[]).await?;
        Ok(())
    }

    pub async fn decommission(&self, force: bool) -> Result<(), CassandraError> {
        self.long_call("decommission", &[JavaArg::Boolean(force)], &["boolean"])
            .await?;
        Ok(())
    }

    /// Streams data from `source_dc`; `tokens` as `(start,end],(start,end]`, sources comma-separated.
    pub async fn rebuild(
        &self,
        source_dc: Option<&str>,
        keyspace: Option<&str>,
        tokens: Option<&str>,
        sources: Option<&str>,
    ) -> Result<(), CassandraError> {
        let text = |value: Option<&str>| value.map_or(JavaArg::Null, |v| JavaArg::String(v.into()));
        self.long_call(
            "rebuild",
            &[text(source_dc), text(keyspace), text(tokens), text(sources)],
            &[STRING, STRING, STRING, STRING],
        )
        .await?;
        Ok(())
    }

    /// `nodetool refresh`: loads SSTables placed in the table's data directory.
    pub async fn refresh(&self, keyspace: &str, table: &str) -> Result<(), CassandraError> {
        self.long_call(
            "loadNewSSTables",
            &[
                JavaArg::String(keyspace.into()),
                JavaArg::String(table.into()),
            ],
            &[STRING, STRING],
        )
        .await?;
        Ok(())
    }

    /// Imports SSTables from `directories` into a table (4.0+); returns the directories that failed. The
    /// options are `importNewSSTables`'s booleans in order: resetLevel, clearRepaired, verifySSTables,
    /// verifyTokens, invalidateCaches, extendedVerify, copyData. 5.0 takes two more (index checks), passed as
    /// `nodetool import` does.
    pub async fn import(
        &self,
        keyspace: &str,
        table: &str,
        directories: &[String],
        options: [bool; 7],
    ) -> Result<Vec<String>, CassandraError> {
        let Some(mbean) = self.table_mbean(keyspace, table).await? else {
            return Err(CassandraError::NoSuchTable {
                address: self.jmx().address().to_string(),
                keyspace: keyspace.into(),
                table: table.into(),
            });
        };
        let mut params = vec![JavaArg::StringSet(directories.to_vec())];
        params.extend(options.iter().map(|b| JavaArg::Boolean(*b)));
        let mut signature = vec!["java.util.Set"];
        signature.extend(["boolean"; 7]);
        if self.release_version().await?.at_least(5, 0) {
            // failOnMissingIndex=false, validateIndexChecksum=true: nodetool import's defaults.
            params.extend([JavaArg::Boolean(false), JavaArg::Boolean(true)]);
            signature.extend(["boolean"; 2]);
        }
        let value = self
            .jmx()
            .invoke_with_timeout(&mbean, "importNewSSTables", &params, &signature, LONG_CALL)
            .await?;
        value
            .to_strings()
            .ok_or_else(|| self.unexpected("importNewSSTables", &value))
    }

    /// Deletes every row of a table (with `auto_snapshot`, Cassandra snapshots it first).
    pub async fn truncate(&self, keyspace: &str, table: &str) -> Result<(), CassandraError> {
        self.long_call(
            "truncate",
            &[
                JavaArg::String(keyspace.into()),
                JavaArg::String(table.into()),
            ],
            &[STRING, STRING],
        )
        .await?;
        Ok(())
    }

    /// Starts a repair; returns the command number (0: nothing to repair). Progress arrives as "progress"
    /// notifications from StorageService with source `repair:<command>`.
    pub async fn repair_async(
        &self,
        keyspace: &str,
        options: Vec<(String, String)>,
    ) -> Result<i32, CassandraError> {
        let value = self
            .jmx()
            .invoke(
                STORAGE_SERVICE,
                "repairAsync",
                &[
                    JavaArg::String(keyspace.into()),
                    JavaArg::StringMap(options),
                ],
                &[STRING, "java.util.Map"],
            )
            .await?;
        value
            .as_i64()
            .map(|n| n as i32)
            .ok_or_else(|| self.unexpected("repairAsync", &value))
    }

    /// `IN_PROGRESS`, `COMPLETED` or `FAILED` followed by messages; `None` for an unknown command.
    pub async fn parent_repair_status(
        &self,
        command: i32,
    ) -> Result<Option<Vec<String>>, CassandraError> {
        let value = self
            .jmx()
            .invoke(
                STORAGE_SERVICE,
                "getParentRepairStatus",
                &[JavaArg::Int(command)],
                &["int"],
            )
            .await?;
        match value {
            JavaValue::Null => Ok(None),
            other => other
                .to_strings()
                .map(Some)
                .ok_or_else(|| self.unexpected("getParentRepairStatus", &other)),
        }
    }

    pub async fn terminate_repairs(&self) -> Result<(), CassandraError> {
        self.jmx()
            .invoke(STORAGE_SERVICE, "forceTerminateAllRepairSessions", &[], &[])
            .await?;
        Ok(())
    }

    /// Compaction throughput in MiB/s (0 = unthrottled); the getter/setter pair makes it a JMX attribute.
    pub async fn set_compaction_throughput(
        &self,
        mib_per_second: i32,
    ) -> Result<(), CassandraError> {
        self.jmx()
            .set_attribute(
                STORAGE_SERVICE,
                "CompactionThroughputMbPerSec",
                JavaArg::Int(mib_per_second),
            )
            .await?;
        Ok(())
    }

    pub async fn compaction_throughput(&self) -> Result<i64, CassandraError> {
        let value = self
            .jmx()
            .get_attribute(STORAGE_SERVICE, "CompactionThroughputMbPerSec")
            .await?;
        value
            .as_i64()
            .ok_or_else(|| self.unexpected("CompactionThroughputMbPerSec", &value))
    }

    /// Stream throughput in megabits per second (0 = unthrottled), as every version's setter takes it.
    pub async fn set_stream_throughput(
        &self,
        megabits_per_second: i32,
    ) -> Result<(), CassandraError> {
        self.jmx()
            .set_attribute(
                STORAGE_SERVICE,
                "StreamThroughputMbPerSec",
                JavaArg::Int(megabits_per_second),
            )
            .await?;
        Ok(())
    }
}
