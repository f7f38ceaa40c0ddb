//! The node maintenance operations through the sidecar's API, against the real Cassandra cluster, each checked
//! outside Daedalus (files on disk, CQL).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use serde_json::json;
use support::Sidecar;
use support::cassandra;

fn sidecar() -> Sidecar {
    cassandra::cluster();
    Sidecar::start(&[
        "--jmx-service",
        &cassandra::jmx_service(1),
        "--enable-truncate",
    ])
}

use support::{run, run_within};

/// How long an operation that streams or repairs across nodes may take: minutes on two cores shared with other
/// nodes starting and loading.
const STREAMING: std::time::Duration = std::time::Duration::from_secs(180);

#[test]
fn flush_writes_sstables() {
    let sidecar = sidecar();
    cassandra::table_with_rows("ops_flush", "t", 20);
    let before = cassandra::sstables(1, "ops_flush", "t");
    let done = run(
        &sidecar,
        json!({"type": "flush", "keyspace": "ops_flush", "tables": ["t"]}),
        "COMPLETED",
    );
    assert_eq!(done["progress"], 1.0);
    let after = cassandra::sstables(1, "ops_flush", "t");
    assert!(
        after.difference(&before).next().is_some(),
        "flush wrote a new SSTable on node 1: {before:?} -> {after:?}"
    );
}

#[test]
fn sstable_rewrites_complete_and_keep_the_data() {
    let sidecar = sidecar();
    cassandra::table_with_rows("ops_rewrite", "t", 50);
    run(
        &sidecar,
        json!({"type": "flush", "keyspace": "ops_rewrite"}),
        "COMPLETED",
    );
    // The bodies the Instaclustr operator sends.
    for body in [
        json!({"type": "cleanup", "keyspace": "ops_rewrite", "tables": ["t"], "jobs": 1}),
        json!({"type": "scrub", "keyspace": "ops_rewrite", "tables": ["t"], "disableSnapshot": true,
            "skipCorrupted": false, "noValidate": false, "reinsertOverflowedTTL": false, "jobs": 0}),
        json!({"type": "upgradesstables", "keyspace": "ops_rewrite", "includeAllSSTables": true, "jobs": 0}),
    ] {
        run(&sidecar, body, "COMPLETED");
    }
    assert_eq!(cassandra::count("ops_rewrite", "t"), 50);
}

#[test]
fn truncate_removes_the_rows_and_keeps_a_snapshot() {
    let sidecar = sidecar();
    cassandra::table_with_rows("ops_truncate", "t", 10);
    run(
        &sidecar,
        json!({"type": "truncate", "keyspace": "ops_truncate", "table": "t"}),
        "COMPLETED",
    );
    assert_eq!(cassandra::count("ops_truncate", "t"), 0);
    let snapshots = cassandra::table_dir(1, "ops_truncate", "t")
        .unwrap()
        .join("snapshots");
    let truncated = std::fs::read_dir(&snapshots)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("truncated-"));
    assert!(
        truncated,
        "auto_snapshot kept a truncated-* snapshot under {}",
        snapshots.display()
    );
}

#[test]
fn refresh_loads_sstables_placed_in_the_table_directory() {
    let sidecar = sidecar();
    cassandra::table_with_rows("ops_refresh", "t", 30);
    cassandra::no_autocompaction("ops_refresh", "t");
    run(
        &sidecar,
        json!({"type": "flush", "keyspace": "ops_refresh", "tables": ["t"]}),
        "COMPLETED",
    );
    let table_dir = cassandra::table_dir(1, "ops_refresh", "t").unwrap();
    let saved = tempfile::tempdir().unwrap();
    assert!(cassandra::copy_sstables(&table_dir, saved.path()) > 0);
    // Empty the table on every node, put node 1's files back, and let Cassandra load them.
    cassandra::cql(1, "TRUNCATE ops_refresh.t");
    assert_eq!(cassandra::count_all("ops_refresh", "t"), 0);
    cassandra::copy_sstables(saved.path(), &table_dir);
    run(
        &sidecar,
        json!({"type": "refresh", "keyspace": "ops_refresh", "table": "t"}),
        "COMPLETED",
    );
    assert_eq!(cassandra::count_all("ops_refresh", "t"), 30);
}

#[test]
fn import_loads_sstables_from_a_directory() {
    let sidecar = sidecar();
    cassandra::table_with_rows("ops_import", "src", 25);
    cassandra::no_autocompaction("ops_import", "src");
    cassandra::cql(
        1,
        "CREATE TABLE IF NOT EXISTS ops_import.dst (id int PRIMARY KEY, v text)",
    );
    run(
        &sidecar,
        json!({"type": "flush", "keyspace": "ops_import", "tables": ["src"]}),
        "COMPLETED",
    );
    // Cassandra wants the files in a directory named after the target keyspace and table.
    let staging = tempfile::tempdir().unwrap();
    let target = staging.path().join("ops_import/dst");
    let source = cassandra::table_dir(1, "ops_import", "src").unwrap();
    assert!(cassandra::copy_sstables(&source, &target) > 0);
    let path = target.to_str().unwrap();
    run(
        &sidecar,
        json!({"type": "import", "keyspace": "ops_import", "table": "dst", "tablePath": path}),
        "COMPLETED",
    );
    assert_eq!(cassandra::count_all("ops_import", "dst"), 25);
    // A directory that is not there is named.
    let failed = run(
        &sidecar,
        json!({"type": "import", "keyspace": "ops_import", "table": "dst", "tablePath": "/nonexistent/ops_import/dst"}),
        "FAILED",
    );
    assert!(
        failed["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/ops_import/dst"),
        "{failed}"
    );
    // A directory Cassandra would silently ignore is refused when the request comes in.
    let refused = sidecar.client().post_json(
        "/operations",
        &json!({"type": "import", "keyspace": "ops_import", "table": "dst", "tablePath": "/var/tmp/staging"}),
    );
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["details"][0]["field"], "tablePath");
}

#[test]
fn missing_keyspaces_and_tables_fail_naming_the_node() {
    let sidecar = sidecar();
    let service = cassandra::jmx_service(1);
    let failed = run(
        &sidecar,
        json!({"type": "flush", "keyspace": "no_such_ks"}),
        "FAILED",
    );
    let message = failed["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&service) && message.contains("no keyspace no_such_ks"),
        "{message}"
    );
    cassandra::table_with_rows("ops_missing", "t", 1);
    let failed = run(
        &sidecar,
        json!({"type": "cleanup", "keyspace": "ops_missing", "tables": ["nope"]}),
        "FAILED",
    );
    let message = failed["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("no table ops_missing.nope"), "{message}");
}

/// Drain on a node of its own (it stops taking writes for good): DRAINED, and writes are refused.
#[test]
fn drain_leaves_the_node_drained_and_refusing_writes() {
    const NODE: usize = 5;
    cassandra::solo(NODE);
    let sidecar = Sidecar::start(&["--jmx-service", &cassandra::jmx_service(NODE)]);
    let done = run(&sidecar, json!({"type": "drain"}), "COMPLETED");
    assert_eq!(done["progress"], 1.0);
    assert_eq!(
        sidecar.client().get("/status").json(),
        json!({"nodeState": "DRAINED"})
    );
    // Draining again is a success, as with Icarus.
    run(&sidecar, json!({"type": "drain"}), "COMPLETED");
    let write = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cassandra"))
        .args(["cql", &NODE.to_string(), "-e", "CREATE KEYSPACE after_drain WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"])
        .output()
        .unwrap();
    assert!(!write.status.success(), "a drained node refuses writes");
    cassandra::stop(NODE);
}

/// Rebuild, a cancelled repair and decommission on a three-node cluster of their own (nodes 6-8): they change or
/// disturb the ring.
#[test]
fn rebuild_cancelled_repair_and_decommission_on_a_cluster_of_their_own() {
    cassandra::fresh_group(6, 3);
    let node7 = Sidecar::start(&["--jmx-service", &cassandra::jmx_service(7)]);
    run_within(
        &node7,
        json!({"type": "rebuild", "sourceDC": "datacenter1", "keyspace": "system_distributed"}),
        "COMPLETED",
        STREAMING,
    );

    cancelled_repair_ends_the_repair_in_cassandra(&node7);

    // The Instaclustr operator's scale-down body: force defaults to true.
    let node8 = Sidecar::start(&["--jmx-service", &cassandra::jmx_service(8)]);
    let done = run_within(
        &node8,
        json!({"type": "decommission"}),
        "COMPLETED",
        STREAMING,
    );
    assert_eq!(done["force"], true);
    assert_eq!(
        node8.client().get("/status").json(),
        json!({"nodeState": "DECOMMISSIONED"})
    );
    let live = support::daedalus_command()
        .args([
            "jmx",
            "--json",
            "--jmx-service",
            &cassandra::jmx_service(6),
            "get",
        ])
        .args(["org.apache.cassandra.db:type=StorageService", "LiveNodes"])
        .output()
        .unwrap();
    let live: Vec<String> = serde_json::from_slice(&live.stdout).unwrap();
    assert!(
        !live.contains(&"127.0.0.8".to_string()),
        "node 8 left the ring: {live:?}"
    );
    for node in 6..9 {
        cassandra::stop(node);
    }
}

#[test]
fn snapshots_appear_are_listed_and_are_cleared() {
    let sidecar = sidecar();
    cassandra::table_with_rows("ops_snap", "t", 3);
    let tag = format!("ops-{}", std::process::id());
    run(
        &sidecar,
        json!({"type": "snapshot", "snapshotTag": tag, "entities": "ops_snap"}),
        "COMPLETED",
    );
    let snapshot = cassandra::table_dir(1, "ops_snap", "t")
        .unwrap()
        .join("snapshots")
        .join(&tag);
    assert!(snapshot.is_dir(), "{} exists", snapshot.display());

    let listed = run(&sidecar, json!({"type": "list-snapshots"}), "COMPLETED");
    let entry = listed["response"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["tag"] == tag.as_str())
        .cloned();
    assert_eq!(
        entry,
        Some(json!({"tag": tag, "tables": [{"keyspace": "ops_snap", "table": "t"}]}))
    );

    run(
        &sidecar,
        json!({"type": "clear-snapshot", "snapshotTag": tag, "keyspaces": ["ops_snap"]}),
        "COMPLETED",
    );
    assert!(!snapshot.exists(), "{} is gone", snapshot.display());
    let listed = run(&sidecar, json!({"type": "list-snapshots"}), "COMPLETED");
    assert!(
        !listed["response"]["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["tag"] == tag.as_str())
    );

    // Clearing needs a tag, or all: true said out loud.
    let refused = sidecar
        .client()
        .post_json("/operations", &json!({"type": "clear-snapshot"}));
    assert_eq!(refused.status, 400);
    // A default tag is fixed when the request is accepted, so the client knows it.
    let accepted = sidecar
        .client()
        .submit(json!({"type": "snapshot", "entities": "ops_snap", "ttl": "2m"}));
    assert!(
        accepted["snapshotTag"]
            .as_str()
            .unwrap()
            .starts_with("daedalus-")
    );
}

#[test]
fn compaction_garbage_collection_and_throughput() {
    let sidecar = sidecar();
    cassandra::table_with_rows("ops_compact", "t", 40);
    run(
        &sidecar,
        json!({"type": "flush", "keyspace": "ops_compact"}),
        "COMPLETED",
    );
    run(
        &sidecar,
        json!({"type": "compact", "keyspace": "ops_compact", "tables": ["t"]}),
        "COMPLETED",
    );
    run(
        &sidecar,
        json!({"type": "garbagecollect", "keyspace": "ops_compact", "tombstoneOption": "cell"}),
        "COMPLETED",
    );
    assert_eq!(cassandra::count("ops_compact", "t"), 40);

    run(
        &sidecar,
        json!({"type": "set-throughput", "compactionThroughput": 33, "streamThroughput": 200}),
        "COMPLETED",
    );
    let read = |attribute: &str| -> i64 {
        let output = support::daedalus_command()
            .args(["jmx", "--jmx-service", &cassandra::jmx_service(1), "get"])
            .args(["org.apache.cassandra.db:type=StorageService", attribute])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(read("CompactionThroughputMbPerSec"), 33);
    assert_eq!(read("StreamThroughputMbPerSec"), 200);
    run(
        &sidecar,
        json!({"type": "set-throughput", "compactionThroughput": 64, "streamThroughput": 24}),
        "COMPLETED",
    );
}

/// DELETE of a running repair terminates Cassandra's repair sessions. To hold the repair up long enough, node 8
/// misses ~17 MiB of rows that repair must stream to it at 1 MiB/s.
fn cancelled_repair_ends_the_repair_in_cassandra(coordinator: &Sidecar) {
    const STORAGE: &str = "org.apache.cassandra.db:type=StorageService";
    cassandra::cql(
        6,
        "CREATE KEYSPACE ops_cancel WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}",
    );
    cassandra::cql(6, "CREATE TABLE ops_cancel.t (id int PRIMARY KEY, v text)");
    for node in [6, 7] {
        cassandra::jmx(
            node,
            &[
                "set",
                "org.apache.cassandra.db:type=StorageProxy",
                "HintedHandoffEnabled",
                "boolean:false",
            ],
        );
    }
    cassandra::stop(8);
    let rows = std::env::temp_dir().join(format!("daedalus-cancel-{}.csv", std::process::id()));
    std::fs::write(&rows, cassandra::incompressible_rows(300, 60_000)).unwrap();
    cassandra::cql(
        6,
        &format!(
            "COPY ops_cancel.t (id, v) FROM '{}' WITH MAXBATCHSIZE = 1",
            rows.display()
        ),
    );
    std::fs::remove_file(&rows).unwrap();
    cassandra::group(6, 3);
    for node in 6..9 {
        for limit in stream_throughput_limits() {
            cassandra::jmx(node, &["set", STORAGE, limit, "int:1"]);
        }
    }

    let id = coordinator
        .client()
        .submit(json!({"type": "repair", "keyspace": "ops_cancel"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    support::eventually("the repair streams to node 8", || {
        cassandra::log(7)
            .contains("Performing streaming repair")
            .then_some(())
    });
    let deleted = coordinator.client().delete(&format!("/operations/{id}"));
    assert_eq!(deleted.status, 202);
    let done = support::wait_for_state(coordinator, &id, "CANCELLED");
    assert_eq!(done["errors"], json!([]));
    support::eventually("Cassandra ends the repair session", || {
        let log = cassandra::log(7);
        (log.contains("Terminate session is called") && log.contains("finished with error"))
            .then_some(())
    });

    for node in 6..9 {
        for limit in stream_throughput_limits() {
            cassandra::jmx(node, &["set", STORAGE, limit, "int:0"]);
        }
    }
}

/// Repair of a keyspace replicated to all three nodes: it runs, reports progress, and completes.
#[test]
fn repair_completes_with_progress() {
    let sidecar = sidecar();
    cassandra::table_with_rows("ops_repair", "t", 20);
    let done = run_within(
        &sidecar,
        json!({"type": "repair", "keyspace": "ops_repair", "parallelism": "SEQUENTIAL"}),
        "COMPLETED",
        STREAMING,
    );
    assert_eq!(done["progress"], 1.0);
    assert_eq!(done["parallelism"], "sequential");
    let refused = sidecar.client().post_json(
        "/operations",
        &json!({"type": "repair", "keyspace": "ops_repair", "jobThreads": 9}),
    );
    assert_eq!(refused.status, 400);
}

/// What flush wrote survives a crash that also loses the commit log: the rows come back from SSTables alone.
#[test]
fn flushed_data_survives_a_crash_without_the_commitlog() {
    const NODE: usize = 9;
    cassandra::solo(NODE);
    let sidecar = Sidecar::start(&["--jmx-service", &cassandra::jmx_service(NODE)]);
    cassandra::cql(
        NODE,
        "CREATE KEYSPACE IF NOT EXISTS ops_durable WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    );
    cassandra::cql(
        NODE,
        "CREATE TABLE IF NOT EXISTS ops_durable.t (id int PRIMARY KEY, v text)",
    );
    cassandra::cql(NODE, "TRUNCATE ops_durable.t");
    let inserts: String = (0..12)
        .map(|id| format!("INSERT INTO ops_durable.t (id, v) VALUES ({id}, 'v');"))
        .collect();
    cassandra::cql(NODE, &format!("BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"));
    run(
        &sidecar,
        json!({"type": "flush", "keyspace": "ops_durable", "tables": ["t"]}),
        "COMPLETED",
    );

    // The schema lives in memtables too; flush it as well, or the restart would not know the table.
    run(
        &sidecar,
        json!({"type": "flush", "keyspace": "system_schema"}),
        "COMPLETED",
    );

    cassandra::kill(NODE);
    let commitlog = cassandra::node_dir(NODE).join("commitlog");
    for entry in std::fs::read_dir(&commitlog)
        .unwrap()
        .filter_map(Result::ok)
    {
        std::fs::remove_file(entry.path()).unwrap();
    }
    cassandra::solo(NODE);
    let rows = cassandra::cql(NODE, "SELECT count(*) FROM ops_durable.t");
    assert_eq!(
        rows[0][0], "12",
        "the flushed rows are back after the restart"
    );
    cassandra::stop(NODE);
}

/// The StorageService attributes that limit streaming: 4.1 renamed 4.0's (in megabits) and added one for whole
/// SSTables, which 4.0's limit covers too.
fn stream_throughput_limits() -> &'static [&'static str] {
    if cassandra::version().starts_with("4.0") {
        &["StreamThroughputMbPerSec"]
    } else {
        &[
            "StreamThroughputMebibytesPerSec",
            "EntireSSTableStreamThroughputMebibytesPerSec",
        ]
    }
}
