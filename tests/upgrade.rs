//! Cassandra upgraded in place, 4.1 to 5.0 on the same data directory, with one sidecar running throughout: the
//! sidecar reports the new version, backups and restores work across the upgrade, and `upgradesstables` through the
//! API rewrites the 4.1 SSTables in 5.0's format.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::{Sidecar, cassandra, eventually_within, run};

/// Node 16: a one-node cluster of its own, started from an empty directory on 4.1.
const NODE: usize = 16;
const FROM: &str = "4.1.10";
const TO: &str = "5.0.8";
const KEYSPACE: &str = "upgraded";
const ROWS: usize = 200;

fn start(version: &str, compatibility: Option<&str>) {
    let mut env = vec![("CASSANDRA_VERSION", version)];
    if let Some(mode) = compatibility {
        env.push(("STORAGE_COMPATIBILITY_MODE", mode));
    }
    cassandra::solo_with(NODE, &env);
}

fn count() -> String {
    cassandra::cql(NODE, &format!("SELECT count(*) FROM {KEYSPACE}.t"))[0][0].clone()
}

/// `major.minor` as `/version/cassandra` says, once the sidecar reaches the node again.
fn reported_version(sidecar: &Sidecar) -> String {
    let client = sidecar.client();
    eventually_within(
        "the sidecar reaches the node again",
        Duration::from_secs(120),
        || {
            let response = client.get("/version/cassandra");
            (response.status == 200).then(|| {
                let version = response.json();
                format!("{}.{}", version["major"], version["minor"])
            })
        },
    )
}

fn data_files() -> BTreeSet<String> {
    cassandra::sstables(NODE, KEYSPACE, "t")
}

#[test]
fn an_upgrade_from_4_1_to_5_0_in_place_keeps_the_sidecar_working() {
    cassandra::stop(NODE);
    let _ = std::fs::remove_dir_all(cassandra::node_dir(NODE));
    start(FROM, None);
    cassandra::cql(
        NODE,
        &format!(
            "CREATE KEYSPACE {KEYSPACE} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
    );
    cassandra::cql(
        NODE,
        &format!("CREATE TABLE {KEYSPACE}.t (id int PRIMARY KEY, v text)"),
    );
    let inserts: String = (0..ROWS)
        .map(|id| format!("INSERT INTO {KEYSPACE}.t (id, v) VALUES ({id}, 'v{id}');"))
        .collect();
    cassandra::cql(NODE, &format!("BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"));

    let sidecar = Sidecar::start(&["--jmx-service", &cassandra::jmx_service(NODE)]);
    assert_eq!(reported_version(&sidecar), "4.1");
    run(
        &sidecar,
        json!({"type": "flush", "keyspace": KEYSPACE}),
        "COMPLETED",
    );
    let bucket = tempfile::tempdir().unwrap();
    let location = format!("file://{}/cluster/dc/node", bucket.path().display());
    run(
        &sidecar,
        json!({"type": "backup", "storageLocation": location, "snapshotTag": "on41", "entities": KEYSPACE}),
        "COMPLETED",
    );
    let written_by_41 = data_files();
    assert!(
        written_by_41.iter().all(|file| file.starts_with("nb-")),
        "{written_by_41:?}"
    );

    // The operator's first step: 5.0 in its default compatibility mode, still writing 4.x files.
    cassandra::stop(NODE);
    start(TO, Some("CASSANDRA_4"));
    assert_eq!(reported_version(&sidecar), "5.0");
    assert_eq!(count(), ROWS.to_string());
    run(
        &sidecar,
        json!({"type": "backup", "storageLocation": location, "snapshotTag": "on50", "entities": KEYSPACE}),
        "COMPLETED",
    );

    // The last step: 5.0's own storage format; upgradesstables rewrites what 4.1 wrote.
    cassandra::stop(NODE);
    start(TO, Some("NONE"));
    assert_eq!(reported_version(&sidecar), "5.0");
    assert_eq!(data_files(), written_by_41, "nothing rewritten yet");
    run(
        &sidecar,
        json!({"type": "upgradesstables", "keyspace": KEYSPACE}),
        "COMPLETED",
    );
    let rewritten = data_files();
    assert!(
        !rewritten.is_empty() && rewritten.iter().all(|file| !file.starts_with("nb-")),
        "every SSTable rewritten in 5.0's format: {written_by_41:?} became {rewritten:?}"
    );
    assert_eq!(count(), ROWS.to_string());

    // The backup taken on 4.1 restores into the upgraded node.
    cassandra::cql(NODE, &format!("TRUNCATE {KEYSPACE}.t"));
    assert_eq!(count(), "0");
    let staging = tempfile::tempdir().unwrap();
    run(
        &sidecar,
        json!({"type": "restore", "storageLocation": location, "snapshotTag": "on41",
               "entities": KEYSPACE, "restorationStrategyType": "IMPORT",
               "import": {"sourceDir": staging.path().join("downloads").display().to_string()}}),
        "COMPLETED",
    );
    assert_eq!(count(), ROWS.to_string());
    cassandra::stop(NODE);
    let _ = std::fs::remove_dir_all(cassandra::node_dir(NODE));
}
