//! A fleet half-way through a migration from Icarus: one Cassandra 5.0 cluster of three nodes (18, 19, 20), the real
//! Icarus 3.0.0 beside node 18 (`../shared/peers/icarus`, started by `scripts/icarus`) and Daedalus beside 19 and 20.
//! Cluster-wide backups, restores (HARDLINKS and IMPORT) and removals run through each kind of coordinator, with
//! the rows checked over CQL.
//!
//! Icarus sends its own `cassandraDirectory` and `dataDirs` to every node, as on Kubernetes where every node has
//! `/var/lib/cassandra`: each node and its sidecar run in a mount namespace of their own in which the node's
//! directory is `/var/lib/cassandra` (`NODE_MOUNT`, which needs root). The nodes write Cassandra 5.0's `big` format
//! with integer generations (`SSTABLE_FORMAT=big`): Icarus's Esop 3.0.1 backs up BTI files and UUID-named
//! SSTables as nothing, an Icarus limitation, not Daedalus's.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Sidecar, cassandra, eventually_within};

const ICARUS: usize = 18;
const DAEDALUS: [usize; 2] = [19, 20];
/// Where every node, and its sidecar, sees its own files.
const MOUNT: &str = "/var/lib/cassandra";
const ROWS: i64 = 200;

fn harness_env() -> [(&'static str, &'static str); 2] {
    [("NODE_MOUNT", MOUNT), ("SSTABLE_FORMAT", "big")]
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn run_script(name: &str, args: &[&str]) {
    let output = Command::new(script(name))
        .args(args)
        .envs(harness_env())
        .output()
        .unwrap_or_else(|error| panic!("scripts/{name} runs: {error}"));
    assert!(
        output.status.success(),
        "scripts/{name} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The fleet: the cluster and Icarus, started once for the binary, and this test's Daedalus sidecars beside 19 and
/// 20 (stopped when it ends). The tests take turns: they restore into the same tables.
struct Fleet {
    _turn: std::sync::MutexGuard<'static, ()>,
    _daedalus: Vec<Sidecar>,
    /// Where the file:// bucket lives: a directory every namespace sees (only `MOUNT` differs between them).
    bucket: tempfile::TempDir,
}

fn fleet() -> Fleet {
    static STARTED: OnceLock<()> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    STARTED.get_or_init(|| {
        run_script("cassandra", &["cluster", "18", "3"]);
        run_script("icarus", &["start", &ICARUS.to_string()]);
        let replication = "{'class': 'SimpleStrategy', 'replication_factor': 3}";
        cassandra::cql(
            ICARUS,
            &format!("CREATE KEYSPACE IF NOT EXISTS mixed WITH replication = {replication}"),
        );
        cassandra::cql(
            ICARUS,
            "CREATE TABLE IF NOT EXISTS mixed.t (id int PRIMARY KEY, v text)",
        );
        // The nodes outlive a run: the snapshots the last run's TRUNCATEs left would lengthen Esop's walk each run.
        for node in [ICARUS, DAEDALUS[0], DAEDALUS[1]] {
            cassandra::jmx(
                node,
                &[
                    "invoke",
                    cassandra::STORAGE_SERVICE,
                    "clearSnapshot",
                    "string:",
                    "string[]:mixed",
                ],
            );
        }
    });
    let daedalus = DAEDALUS
        .iter()
        .map(|&node| {
            let exec = script("cassandra");
            let node_text = node.to_string();
            let jmx = cassandra::jmx_service(node);
            Sidecar::start_through(
                &[exec.to_str().unwrap(), "exec", &node_text],
                &format!("127.0.0.{node}:4567"),
                &["--jmx-service", &jmx, "--cassandra-dir", MOUNT],
                &harness_env(),
            )
        })
        .collect();
    let bucket = tempfile::tempdir().expect("a directory for the bucket");
    // The bucket exists, as in production: the parts of a cluster-wide backup are sent `skipBucketVerification`.
    std::fs::create_dir(bucket.path().join("mixed")).expect("the bucket");
    Fleet {
        _turn: turn,
        _daedalus: daedalus,
        bucket,
    }
}

fn fill_table() {
    let inserts: String = (0..ROWS)
        .map(|id| format!("INSERT INTO mixed.t (id, v) VALUES ({id}, 'value {id}');"))
        .collect();
    cassandra::cql(
        ICARUS,
        &format!("CONSISTENCY ALL; BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"),
    );
}

fn rows() -> i64 {
    cassandra::cql(ICARUS, "CONSISTENCY ALL; SELECT count(*) FROM mixed.t")[0][0]
        .parse()
        .expect("a count")
}

fn sidecar_url(node: usize) -> String {
    format!("http://127.0.0.{node}:4567")
}

fn http() -> reqwest::blocking::Client {
    daedalus_operations::crypto::install_default_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// Submits `body` to the sidecar beside `node` (Icarus or Daedalus) and waits until the operation ends.
fn run_on(node: usize, body: Value, within: Duration) -> Value {
    // Whoever coordinates, Icarus's part runs Esop on its node.
    cassandra::hold_files_still(ICARUS);
    let http = http();
    let response = http
        .post(format!("{}/operations", sidecar_url(node)))
        .json(&body)
        .send()
        .expect("the sidecar answers");
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    assert_eq!(status, 201, "node {node} refused {body}: {text}");
    let submitted: Value = serde_json::from_str(&text).expect("an operation");
    let id = submitted["id"].as_str().expect("an id").to_string();
    eventually_within(
        &format!("operation {id} on node {node} ends"),
        within,
        || {
            let operation: Value = http
                .get(format!("{}/operations/{id}", sidecar_url(node)))
                .send()
                .ok()?
                .json()
                .ok()?;
            matches!(
                operation["state"].as_str(),
                Some("COMPLETED" | "FAILED" | "CANCELLED")
            )
            .then_some(operation)
        },
    )
}

fn location(fleet: &Fleet) -> String {
    format!("file://{}/mixed/c/d/n", fleet.bucket.path().display())
}

/// Manifests in the bucket whose name starts with `tag-`, as `<cluster>/<dc>/<node>/manifests/<name>`.
fn manifests(fleet: &Fleet, tag: &str) -> Vec<String> {
    let root = fleet.bucket.path().join("mixed");
    let mut found = Vec::new();
    walk(&root, &mut |path| {
        let relative = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let name = path.file_name().unwrap().to_string_lossy();
        if relative.contains("/manifests/") && name.starts_with(&format!("{tag}-")) {
            found.push(relative);
        }
    });
    found.sort();
    found
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, visit);
        } else {
            visit(&path);
        }
    }
}

fn backup(fleet: &Fleet, tag: &str) -> Value {
    json!({"type": "backup", "storageLocation": location(fleet), "snapshotTag": tag, "entities": "mixed",
        "dataDirs": [format!("{MOUNT}/data")], "globalRequest": true})
}

/// How a client drives a cluster-wide restore.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// One request from `INIT`; the coordinator runs every phase (Icarus's documented form, CassKop's and IBM's).
    FromInit,
    /// One request without `restorationPhase`: every phase (Daedalus's form).
    AllPhases,
    /// One request per phase with `singlePhase`, as Icarus's phase-by-phase clients send them.
    PhaseByPhase,
}

/// The restore requests of a cluster-wide restore in `form`, each naming the staging and data directories, as
/// Icarus sends the same to every node.
fn restore(fleet: &Fleet, tag: &str, strategy: &str, form: Form) -> Vec<Value> {
    let body = json!({"type": "restore", "storageLocation": location(fleet), "snapshotTag": tag,
        "entities": "mixed.t", "restorationStrategyType": strategy, "globalRequest": true,
        "import": {"type": "import", "sourceDir": format!("{MOUNT}/downloadedsstables")},
        "dataDirs": [format!("{MOUNT}/data")], "cassandraDirectory": MOUNT});
    let with = |phase: &str, single: bool| {
        let mut body = body.clone();
        body["restorationPhase"] = phase.into();
        if single {
            body["singlePhase"] = true.into();
        }
        body
    };
    match form {
        Form::FromInit => vec![with("INIT", false)],
        Form::AllPhases => vec![body.clone()],
        Form::PhaseByPhase => ["INIT", "DOWNLOAD", "TRUNCATE", "IMPORT", "CLEANUP"]
            .into_iter()
            .map(|phase| with(phase, true))
            .collect(),
    }
}

fn assert_completed(operation: &Value, what: &str) {
    assert_eq!(operation["state"], "COMPLETED", "{what}: {operation:#}");
}

#[test]
fn backups_restores_and_removals_work_whichever_sidecar_coordinates() {
    let fleet = fleet();
    fill_table();
    assert_eq!(rows(), ROWS);

    // Icarus coordinates: its parts on the Daedalus nodes must answer in a shape its Jackson classes read.
    let by_icarus = run_on(ICARUS, backup(&fleet, "byicarus"), Duration::from_secs(300));
    assert_completed(&by_icarus, "Icarus's global backup");
    assert_eq!(
        manifests(&fleet, "byicarus").len(),
        3,
        "one manifest per node: {:?}",
        manifests(&fleet, "byicarus")
    );
    // Daedalus coordinates: Icarus's part is asked in Icarus's forms, and its pre-flight reads Icarus's /version.
    let by_daedalus = run_on(
        DAEDALUS[0],
        backup(&fleet, "bydaedalus"),
        Duration::from_secs(300),
    );
    assert_completed(&by_daedalus, "Daedalus's global backup");
    assert_eq!(
        manifests(&fleet, "bydaedalus").len(),
        3,
        "{:?}",
        manifests(&fleet, "bydaedalus")
    );

    // Each coordinator restores each kind of backup, by both strategies that keep the node running, in each form.
    for (coordinator, tag, strategy, form) in [
        (ICARUS, "bydaedalus", "HARDLINKS", Form::FromInit),
        (DAEDALUS[0], "byicarus", "IMPORT", Form::AllPhases),
        (ICARUS, "byicarus", "IMPORT", Form::PhaseByPhase),
        (DAEDALUS[1], "bydaedalus", "HARDLINKS", Form::PhaseByPhase),
        (DAEDALUS[0], "bydaedalus", "HARDLINKS", Form::FromInit),
    ] {
        let what = format!("node {coordinator}'s {strategy} restore of {tag} ({form:?})");
        cassandra::cql(ICARUS, "CONSISTENCY ALL; TRUNCATE mixed.t");
        assert_eq!(rows(), 0);
        for request in restore(&fleet, tag, strategy, form) {
            let done = run_on(coordinator, request, Duration::from_secs(600));
            assert_completed(&done, &what);
        }
        assert_eq!(rows(), ROWS, "{what} brought every row back");
    }

    // The operators' restore bodies as they send them (`support::operators`), to a Daedalus pod: only the bucket,
    // the backup and the table are this test's. CassKop's names no `dataDirs`, which Icarus 3.0.0 requires.
    for (operator, body, tag) in [
        ("CassKop", support::operators::CASSKOP_RESTORE, "byicarus"),
        ("IBM", support::operators::IBM_RESTORE, "bydaedalus"),
    ] {
        let mut request: Value = serde_json::from_str(body).unwrap();
        request["storageLocation"] = location(&fleet).into();
        request["snapshotTag"] = tag.into();
        request["entities"] = "mixed.t".into();
        cassandra::cql(ICARUS, "CONSISTENCY ALL; TRUNCATE mixed.t");
        let done = run_on(DAEDALUS[0], request, Duration::from_secs(600));
        assert_completed(&done, &format!("{operator}'s restore body"));
        assert_eq!(
            rows(),
            ROWS,
            "{operator}'s restore body brought every row back"
        );
    }

    // A removal removes what a global backup to the same location wrote, whichever sidecar wrote it.
    for (coordinator, tag) in [(DAEDALUS[1], "byicarus"), (ICARUS, "bydaedalus")] {
        let name = manifests(&fleet, tag)[0]
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".json")
            .to_string();
        let done = run_on(
            coordinator,
            json!({"type": "remove-backup", "storageLocation": location(&fleet), "backupName": name,
                "globalRequest": true, "resolveNodes": true}),
            Duration::from_secs(120),
        );
        assert_completed(&done, &format!("node {coordinator}'s removal of {name}"));
        assert_eq!(
            manifests(&fleet, tag),
            Vec::<String>::new(),
            "node {coordinator} removed {name} from every node"
        );
    }

    // The suite runs many nodes on one machine: this test's are not needed after it.
    drop(fleet);
    run_script("icarus", &["stop"]);
    for node in [ICARUS, DAEDALUS[0], DAEDALUS[1]] {
        cassandra::stop(node);
    }
}
