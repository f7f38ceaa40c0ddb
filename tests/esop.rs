//! Real Esop 3.0.1 (`com.instaclustr:esop:3.0.1` from Maven Central, run by `scripts/esop`) beside Daedalus on one
//! node: a backup Esop wrote is restored by Daedalus by each strategy (IMPORT, HARDLINKS, IN_PLACE), and a backup
//! Daedalus wrote is restored by Esop (IMPORT), the rows counted over CQL each time. The proof that the bucket layout
//! and manifests are Esop's own, not our reading of them.
//!
//! Node 21 alone, in Cassandra 5.0's `big` format with integer generations (`SSTABLE_FORMAT=big`): Esop 3.0.1 backs
//! up BTI files and UUID-named SSTables as nothing, an Esop limitation, not Daedalus's.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use serde_json::json;
use support::{Sidecar, cassandra, run};

const NODE: usize = 21;
const ROWS: i64 = 120;
const FORMAT: [(&str, &str); 1] = [("SSTABLE_FORMAT", "big")];

/// The node, started once; the tests take turns, as IN_PLACE stops it.
fn node() -> std::sync::MutexGuard<'static, ()> {
    static STARTED: OnceLock<()> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    STARTED.get_or_init(|| {
        cassandra::solo_with(NODE, &FORMAT);
        cassandra::cql(
            NODE,
            "CREATE KEYSPACE IF NOT EXISTS esop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        );
        cassandra::cql(
            NODE,
            "CREATE TABLE IF NOT EXISTS esop.t (id int PRIMARY KEY, v text)",
        );
    });
    turn
}

fn fill_table() {
    let inserts: String = (0..ROWS)
        .map(|id| format!("INSERT INTO esop.t (id, v) VALUES ({id}, 'value {id}');"))
        .collect();
    cassandra::cql(NODE, &format!("BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"));
}

fn rows() -> i64 {
    cassandra::cql(NODE, "SELECT count(*) FROM esop.t")[0][0]
        .parse()
        .expect("a count")
}

fn truncate() {
    cassandra::cql(NODE, "TRUNCATE esop.t");
    assert_eq!(rows(), 0);
}

fn esop(args: &[String]) -> Output {
    cassandra::hold_files_still(NODE);
    let output = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/esop"))
        .arg("run")
        .args(args)
        .output()
        .expect("scripts/esop runs");
    assert!(
        output.status.success(),
        "esop {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A node location in a fresh file:// bucket, with Esop's placeholders for cluster, DC and node.
fn location(bucket: &Path) -> String {
    format!("file://{}/esop/c/d/n", bucket.display())
}

/// The manifests of the location, by name.
fn manifests(bucket: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(bucket.join("esop/c/d/n/manifests"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .trim_end_matches(".json")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn sidecar() -> Sidecar {
    let dir = cassandra::node_dir(NODE).display().to_string();
    Sidecar::start(&[
        "--jmx-service",
        &cassandra::jmx_service(NODE),
        "--cassandra-dir",
        &dir,
    ])
}

fn common_esop_args(bucket: &Path) -> Vec<String> {
    let dir = cassandra::node_dir(NODE);
    vec![
        format!("--sl={}", location(bucket)),
        format!("--jmx-service={}", cassandra::jmx_service(NODE)),
        format!("--data-dir={}", dir.join("data").display()),
        "--entities=esop".into(),
    ]
}

/// IN_PLACE as an init container runs it: the node drained through `sidecar` and stopped, `daedalus restore ARGS`
/// run on its directories, and the node started again on the configuration the restore may have changed. Returns
/// what the restore logged.
fn restore_in_place(sidecar: &Sidecar, args: &[&str]) -> String {
    run(sidecar, json!({"type": "drain"}), "COMPLETED");
    cassandra::stop(NODE);
    let dir = cassandra::node_dir(NODE);
    let output = support::daedalus_command()
        .arg("restore")
        .args(args)
        .args(["--cassandra-dir", &dir.display().to_string()])
        .args([
            "--config-directory",
            &dir.join("conf").display().to_string(),
        ])
        .args(["--jmx-service", &cassandra::jmx_service(NODE)])
        .output()
        .expect("daedalus restore runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let mut env = FORMAT.to_vec();
    env.push(("KEEP_CONFIG", "1"));
    cassandra::solo_with(NODE, &env);
    stderr
}

#[test]
fn an_esop_backup_is_restored_by_daedalus_by_every_strategy() {
    let _node = node();
    fill_table();
    assert_eq!(rows(), ROWS);
    let bucket = tempfile::tempdir().unwrap();
    let mut args = vec!["backup".to_string()];
    args.extend(common_esop_args(bucket.path()));
    args.extend([
        "-s".into(),
        "byesop".into(),
        "--create-missing-bucket".into(),
    ]);
    esop(&args);
    let names = manifests(bucket.path());
    assert!(
        names.len() == 1 && names[0].starts_with("byesop-"),
        "{names:?}"
    );

    let sidecar = sidecar();
    for strategy in ["IMPORT", "HARDLINKS"] {
        truncate();
        let done = run(
            &sidecar,
            json!({"type": "restore", "storageLocation": location(bucket.path()), "snapshotTag": "byesop",
                "entities": "esop.t", "restorationStrategyType": strategy}),
            "COMPLETED",
        );
        assert_eq!(done["response"]["backup"], names[0].as_str(), "{done}");
        assert_eq!(rows(), ROWS, "{strategy} brought every row back");
    }

    // IN_PLACE, as an init container runs it: the node stopped, its files replaced, the node started again.
    truncate();
    restore_in_place(
        &sidecar,
        &[
            "--storage-location",
            &location(bucket.path()),
            "--snapshot-tag",
            "byesop",
            "--restoration-strategy-type",
            "IN_PLACE",
            "--entities",
            "esop",
        ],
    );
    assert_eq!(rows(), ROWS, "IN_PLACE brought every row back");
}

#[test]
fn a_daedalus_backup_is_restored_by_esop() {
    let _node = node();
    fill_table();
    let bucket = tempfile::tempdir().unwrap();
    let sidecar = sidecar();
    let done = run(
        &sidecar,
        json!({"type": "backup", "storageLocation": location(bucket.path()), "snapshotTag": "bydaedalus",
            "entities": "esop", "createMissingBucket": true}),
        "COMPLETED",
    );
    let name = done["response"]["snapshotTag"]
        .as_str()
        .unwrap_or_else(|| panic!("the backup's name: {done}"))
        .to_string();
    assert_eq!(manifests(bucket.path()), vec![name.clone()]);

    truncate();
    let downloads = cassandra::node_dir(NODE).join("esop-downloads");
    let dir = cassandra::node_dir(NODE);
    // Esop's IMPORT, one run per phase as Icarus drives it.
    for phase in ["DOWNLOAD", "TRUNCATE", "IMPORT", "CLEANUP"] {
        let mut args = vec!["restore".to_string()];
        args.extend(common_esop_args(bucket.path()));
        args.extend([
            format!("--dd={}", dir.display()),
            format!("--cd={}", dir.join("conf").display()),
            "-s".into(),
            name.clone(),
            "--restoration-strategy-type=IMPORT".into(),
            format!("--restoration-phase-type={phase}"),
            format!("--import-source-dir={}", downloads.display()),
        ]);
        esop(&args);
    }
    assert_eq!(rows(), ROWS, "Esop brought every row back");
}

/// The Instaclustr operator restores through an init container running Esop's command line
/// (`pkg/controller/cassandradatacenter/statefulset.go:318-383`, `docker/cassandra-sidecar/esop.sh`, instaclustr/
/// cassandra-operator b8906d8): these arguments, the pod's host name last in the location. Only what the container's
/// defaults would give differently here is added: the node's directories and JMX port.
#[test]
fn the_instaclustr_operators_restore_arguments_restore_the_stopped_node() {
    let _node = node();
    fill_table();
    let bucket = tempfile::tempdir().unwrap();
    let sidecar = sidecar();
    let topology = sidecar.client().get("/topology").json();
    let (cluster, dc, host_id) = (
        topology["clusterName"].as_str().unwrap().to_string(),
        topology["topology"][0]["dc"].as_str().unwrap().to_string(),
        topology["topology"][0]["nodeId"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let base = format!("file://{}/operator", bucket.path().display());
    run(
        &sidecar,
        json!({"type": "backup", "storageLocation": format!("{base}/{cluster}/{dc}/{host_id}"),
            "snapshotTag": "mySnapshotTag", "uploadClusterTopology": true, "createMissingBucket": true}),
        "COMPLETED",
    );
    truncate();
    let stderr = restore_in_place(
        &sidecar,
        &[
            "--snapshot-tag=mySnapshotTag",
            &format!("--storage-location={base}/{cluster}/{dc}/127.0.0.{NODE}"),
            "--k8s-namespace=default",
            "--k8s-secret-name=cloud-backup-secrets",
            "--resolve-host-id-from-topology",
            "--update-cassandra-yaml",
            "--restore-into-new-cluster",
        ],
    );
    assert!(
        stderr.contains("not from the Kubernetes secret"),
        "the log says where credentials come from: {stderr}"
    );
    assert_eq!(
        rows(),
        ROWS,
        "the operator's restore brought every row back"
    );
}
