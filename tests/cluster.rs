//! Cluster-wide operations (`globalRequest`) across real sidecars of a real cluster: the three nodes of the main
//! cluster (127.0.0.1–3), each with its own sidecar bound to its node's address on one shared port, so that the
//! coordinator forms peer URLs exactly as in production (`http://<node address>:<its own port>`). Backups go to
//! MinIO. The data-centre filter runs on a two-data-centre cluster of its own (nodes 13 and 14). With the `etcd`
//! feature, a coordinator killed mid-backup is replaced by another sidecar sharing the operations in etcd, and a
//! cluster-wide schedule runs on exactly one of the sidecars sharing it at each tick, also after one of them died.
//!
//! Every keyspace is created up front ([`schema`]): a restore checks that the cluster agrees on one schema version,
//! which a test creating a table at the same moment would briefly break.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use support::builder::SidecarBuilder;
use support::stores::Store;
use support::{Sidecar, cassandra, eventually};

const NODES: [usize; 3] = [1, 2, 3];
const BUCKET: &str = "cluster-wide";
const SLOW_ROWS: usize = 3000;
/// Each node's part of a slow backup or restore moves a few MiB at this rate: tens of seconds.
const SLOW: &str = r#"{"value": 100, "unit": "KBPS"}"#;

/// Every keyspace of this file, created once, with its rows.
fn schema() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        cassandra::cluster();
        for keyspace in [
            "cw_restore",
            "cw_killed",
            "cw_takeover",
            "cw_stopped",
            "cw_preflight",
            "cw_cancel",
            "cw_rolling",
            "cw_sched",
        ] {
            cassandra::cql(
                1,
                &format!(
                    "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
                     {{'class': 'SimpleStrategy', 'replication_factor': 2}}; \
                     CREATE TABLE IF NOT EXISTS {keyspace}.t (id int PRIMARY KEY, v text)"
                ),
            );
        }
        cassandra::cql(1, "TRUNCATE cw_restore.t");
        let inserts: String = (0..300)
            .map(|id| format!("INSERT INTO cw_restore.t (id, v) VALUES ({id}, 'value {id}');"))
            .collect();
        cassandra::cql(
            1,
            &format!("CONSISTENCY ALL; BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"),
        );
        // Each slow backup has a keyspace of its own: a backup only uploads what the bucket lacks, so a second
        // test backing up the same files would finish at once, whichever test ran first.
        for keyspace in ["cw_killed", "cw_takeover", "cw_stopped", "cw_cancel"] {
            cassandra::load_rows(1, keyspace, "t", SLOW_ROWS, 1000);
            // On the other replicas too (see `cassandra::flush`).
            for node in &NODES[1..] {
                cassandra::flush(*node, keyspace, "t");
            }
        }
        for keyspace in ["cw_preflight", "cw_rolling", "cw_sched"] {
            cassandra::cql(
                1,
                &format!("INSERT INTO {keyspace}.t (id, v) VALUES (1, 'one')"),
            );
        }
    });
}

fn minio() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| Store::minio_with_bucket(BUCKET))
}

/// A port free on every address of `nodes` at once.
fn shared_port(nodes: &[usize]) -> u16 {
    for _ in 0..20 {
        let first = TcpListener::bind(format!("127.0.0.{}:0", nodes[0])).expect("a free port");
        let port = first.local_addr().unwrap().port();
        if nodes[1..]
            .iter()
            .all(|node| TcpListener::bind(format!("127.0.0.{node}:{port}")).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on every node address");
}

/// One sidecar per node, each bound to its node's address, all on the same port.
struct Sidecars {
    nodes: Vec<usize>,
    sidecars: Vec<Sidecar>,
}

impl Sidecars {
    fn start(nodes: &[usize]) -> Sidecars {
        Self::start_with(nodes, &[])
    }

    /// With `extra` arguments for every sidecar.
    fn start_with(nodes: &[usize], extra: &[&str]) -> Sidecars {
        let extra: Vec<String> = extra.iter().map(|arg| arg.to_string()).collect();
        Self::start_each(shared_port(nodes), nodes, |_| extra.clone())
    }

    /// On `port`, each with the arguments `extra` gives for its node.
    fn start_each(port: u16, nodes: &[usize], extra: impl Fn(usize) -> Vec<String>) -> Sidecars {
        let sidecars = nodes
            .iter()
            .map(|node| Self::start_one(&format!("127.0.0.{node}:{port}"), *node, &extra(*node)))
            .collect();
        Sidecars {
            nodes: nodes.to_vec(),
            sidecars,
        }
    }

    /// A sidecar listening on `listen`, for the Cassandra of node `node`.
    fn start_one(listen: &str, node: usize, extra: &[String]) -> Sidecar {
        SidecarBuilder::new()
            .listen(listen)
            .jmx_service(&cassandra::jmx_service(node))
            .args(["--cql-address".to_string(), format!("127.0.0.{node}:9042")])
            .store(minio())
            .args([
                "--peer-poll-interval",
                "300ms",
                "--peer-connect-timeout",
                "1s",
                "--peer-request-timeout",
                "3s",
            ])
            .args(extra.iter().map(String::as_str))
            .s3_credentials()
            .start()
    }

    /// The sidecar of node `node`.
    fn of(&self, node: usize) -> &Sidecar {
        let index = self
            .nodes
            .iter()
            .position(|n| *n == node)
            .expect("a node of this test");
        &self.sidecars[index]
    }

    fn of_mut(&mut self, node: usize) -> &mut Sidecar {
        let index = self
            .nodes
            .iter()
            .position(|n| *n == node)
            .expect("a node of this test");
        &mut self.sidecars[index]
    }

    /// Submits `body` to node `node`'s sidecar; returns the operation's id.
    fn submit(&self, node: usize, body: Value) -> String {
        self.of(node).client().submit(body)["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn operation(&self, node: usize, id: &str) -> Value {
        self.of(node).client().operation(id)
    }

    /// Waits up to `patience` for the operation to end; returns it.
    fn finished(&self, node: usize, id: &str, patience: Duration) -> Value {
        let deadline = Instant::now() + patience;
        loop {
            let operation = self.operation(node, id);
            if !matches!(operation["state"].as_str(), Some("PENDING" | "RUNNING")) {
                return operation;
            }
            assert!(
                Instant::now() < deadline,
                "still unfinished after {patience:?}: {operation:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The parts of a cluster-wide operation as its `nodes` shows them, read from each part's own sidecar.
    fn parts(&self, operation: &Value) -> Vec<(usize, Value)> {
        operation["nodes"]
            .as_array()
            .expect("a cluster-wide operation lists its nodes")
            .iter()
            .filter_map(|view| {
                let id = view["operationId"].as_str()?;
                let node = self.node_of(view);
                Some((node, self.operation(node, id)))
            })
            .collect()
    }

    fn node_of(&self, view: &Value) -> usize {
        let address = view["node"].as_str().unwrap();
        address.rsplit('.').next().unwrap().parse().unwrap()
    }
}

/// Waits until every node's part of the operation is RUNNING (and the phase is `phase`, if given).
fn all_parts_running(
    sidecars: &Sidecars,
    coordinator: usize,
    id: &str,
    nodes: usize,
    phase: Option<&str>,
) {
    eventually(&format!("every part of {id} runs"), || {
        let operation = sidecars.operation(coordinator, id);
        assert_eq!(operation["state"], "RUNNING", "{operation:#}");
        let views = operation["nodes"].as_array()?;
        let running = views
            .iter()
            .filter(|v| v["state"] == "RUNNING" && phase.is_none_or(|p| v["phase"] == p))
            .count();
        (running == nodes).then_some(())
    });
}

fn host_ids(nodes: &[usize]) -> BTreeMap<usize, String> {
    nodes
        .iter()
        .map(|node| {
            (
                *node,
                cassandra::cql(*node, "SELECT host_id FROM system.local")[0][0].clone(),
            )
        })
        .collect()
}

fn cluster_name(node: usize) -> String {
    cassandra::cql(node, "SELECT cluster_name FROM system.local")[0][0]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-")
}

fn backup(keyspace: &str, tag: &str) -> Value {
    json!({"type": "backup", "storageLocation": format!("s3://{BUCKET}"), "snapshotTag": tag,
           "entities": keyspace, "globalRequest": true})
}

fn slow_backup(keyspace: &str, tag: &str) -> Value {
    let mut body = backup(keyspace, tag);
    body["bandwidth"] = serde_json::from_str(SLOW).unwrap();
    body["concurrentConnections"] = 1.into();
    body
}

/// The global restores of two tests, one at a time: both stage in each node's default staging directory, whose
/// one journal keeps the records of one backup's restore (a known limit: concurrent restores of different backups
/// into one staging directory are not supported).
fn staging_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes what a restore an earlier run cut short left in `keyspace`'s default staging directory on every node:
/// the nodes outlive a run, and a restore's CLEANUP removes only its own backup's files.
fn nothing_staged(keyspace: &str) {
    for node in NODES {
        support::scratch::remove_leftover(
            &cassandra::node_dir(node)
                .join("downloadedsstables")
                .join(keyspace),
        );
    }
}

fn errors(operation: &Value) -> String {
    operation["errors"].to_string()
}

/// Snapshot directories named after `tag` under node `node`'s copy of `keyspace.t`.
fn snapshots_tagged(node: usize, keyspace: &str, tag: &str) -> Vec<String> {
    let Some(table) = cassandra::table_dir(node, keyspace, "t") else {
        return Vec::new();
    };
    std::fs::read_dir(table.join("snapshots"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(tag))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_global_backup_lands_under_each_host_id_and_global_restores_bring_every_row_back() {
    schema();
    let _staging = staging_turn();
    nothing_staged("cw_restore");
    let sidecars = Sidecars::start(&NODES);
    let ids = host_ids(&NODES);
    let cluster = cluster_name(1);

    let id = sidecars.submit(1, backup("cw_restore", "cwnightly"));
    let done = sidecars.finished(1, &id, Duration::from_secs(120));
    assert_eq!(done["state"], "COMPLETED", "{done:#}");
    assert_eq!(done["progress"], 1.0);
    let tag = done["response"]["snapshotTag"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        tag.starts_with("cwnightly-"),
        "one resolved tag for all: {tag}"
    );
    let parts = sidecars.parts(&done);
    assert_eq!(parts.len(), 3, "{done:#}");
    for (node, part) in &parts {
        assert_eq!(part["state"], "COMPLETED", "node {node}: {part:#}");
        assert_eq!(
            part["snapshotTag"],
            tag.as_str(),
            "node {node} kept the shared tag"
        );
        assert_eq!(part["globalRequest"], false);
        assert_eq!(part["skipBucketVerification"], true);
    }

    let objects = minio().objects(BUCKET);
    let manifests: Vec<&String> = objects
        .keys()
        .filter(|key| key.ends_with(&format!("/manifests/{tag}.json")))
        .collect();
    assert_eq!(manifests.len(), 3, "one manifest per node: {manifests:?}");
    for (node, host_id) in &ids {
        let prefix = format!("{cluster}/datacenter1/{host_id}/");
        assert!(
            manifests.iter().any(|key| key.starts_with(&prefix)),
            "node {node}'s manifest under {prefix}: {manifests:?}"
        );
        assert!(
            objects
                .keys()
                .any(|key| key.starts_with(&format!("{prefix}data/cw_restore/t-"))),
            "node {node}'s SSTables under {prefix}"
        );
    }
    let topology: Vec<&String> = objects
        .keys()
        .filter(|key| key.starts_with("topology/"))
        .collect();
    assert!(
        topology.contains(&&format!("topology/{tag}.json")),
        "{topology:?}"
    );
    let uploaded: Value =
        serde_json::from_slice(&minio().get(BUCKET, &format!("topology/{tag}.json"))).unwrap();
    assert_eq!(
        uploaded["topology"].as_array().unwrap().len(),
        3,
        "{uploaded:#}"
    );

    // HARDLINKS restores a copy of the backup that names other host ids, as a backup of another cluster's nodes
    // (with the same tokens) would: each node is matched to the backed-up node that owned its tokens.
    let moved = tag.replacen("cwnightly", "cwmoved", 1);
    let made_up = as_if_from_other_nodes(&cluster, &tag, &moved, &ids);
    for (strategy, snapshot, backup) in [
        ("IMPORT", "cwnightly", &tag),
        ("HARDLINKS", "cwmoved", &moved),
    ] {
        cassandra::cql(1, "CONSISTENCY ALL; TRUNCATE cw_restore.t");
        assert_eq!(cassandra::count_all("cw_restore", "t"), 0);
        // That TRUNCATE is a user's: its snapshots (auto_snapshot, on every node) are theirs, and stay.
        let users: Vec<Vec<String>> = NODES
            .iter()
            .map(|&node| cassandra::truncation_snapshots(node, "cw_restore", "t"))
            .collect();
        assert!(users.iter().all(|names| !names.is_empty()), "{users:?}");
        let id = sidecars.submit(
            2,
            json!({"type": "restore", "storageLocation": format!("s3://{BUCKET}"), "snapshotTag": snapshot,
                   "entities": "cw_restore.t", "restorationStrategyType": strategy, "globalRequest": true}),
        );
        let done = sidecars.finished(2, &id, Duration::from_secs(180));
        assert_eq!(done["state"], "COMPLETED", "{strategy}: {done:#}");
        assert_eq!(done["response"]["backup"], backup.as_str(), "{done:#}");
        assert_eq!(
            cassandra::count_all("cw_restore", "t"),
            300,
            "{strategy}: every row is back"
        );
        for (node, part) in sidecars.parts(&done) {
            let location = part["storageLocation"].as_str().unwrap();
            let expected = if strategy == "HARDLINKS" {
                &made_up[&ids[&node]]
            } else {
                &ids[&node]
            };
            assert!(
                location.ends_with(expected.as_str()),
                "node {node} restored {location}"
            );
        }
        for (index, node) in NODES.into_iter().enumerate() {
            let downloads = cassandra::node_dir(node).join("downloadedsstables");
            assert!(
                !downloads.join("cw_restore").exists(),
                "CLEANUP removed {}",
                downloads.display()
            );
            // The restore's own TRUNCATE (run on one node, snapshotted on each) is cleaned up everywhere.
            assert_eq!(
                cassandra::truncation_snapshots(node, "cw_restore", "t"),
                users[index],
                "node {node}: {done:#}"
            );
        }
    }

    // The second with placeholders for cluster, DC and node, as Icarus's clients write a location: `resolveNodes`
    // fills in the real cluster from Cassandra (it used to look for a cluster named `placeholder`).
    for (name, node, location) in [
        (&tag, 3, format!("s3://{BUCKET}")),
        (&moved, 1, format!("s3://{BUCKET}/placeholder/dc/node")),
    ] {
        let id = sidecars.submit(
            node,
            json!({"type": "remove-backup", "storageLocation": location, "backupName": name,
                   "globalRequest": true, "resolveNodes": true}),
        );
        let done = sidecars.finished(node, &id, Duration::from_secs(60));
        assert_eq!(done["state"], "COMPLETED", "{done:#}");
        assert_eq!(
            done["response"]["removed"].as_array().unwrap().len(),
            3,
            "{done:#}"
        );
    }
    let left: Vec<String> = minio()
        .objects(BUCKET)
        .into_keys()
        .filter(|key| {
            key.contains(&tag) || key.contains(&moved) || key.contains("/data/cw_restore/")
        })
        .collect();
    assert!(
        left.is_empty(),
        "every node's backups and the topologies are gone: {left:?}"
    );
}

/// Copies backup `tag` of every node to made-up host ids under the name `moved`, with a topology naming those ids:
/// what a backup of another cluster whose nodes had these nodes' tokens looks like. Returns real → made-up host id.
fn as_if_from_other_nodes(
    cluster: &str,
    tag: &str,
    moved: &str,
    ids: &BTreeMap<usize, String>,
) -> BTreeMap<String, String> {
    let store = minio();
    let objects = store.objects(BUCKET);
    let mut made_up = BTreeMap::new();
    for (node, host_id) in ids {
        let fake = format!("00000000-0000-4000-8000-0000000000{node:02}");
        let from = format!("{cluster}/datacenter1/{host_id}/");
        for key in objects.keys().filter(|key| key.starts_with(&from)) {
            let rest = &key[from.len()..];
            let rest = if rest == format!("manifests/{tag}.json") {
                format!("manifests/{moved}.json")
            } else if rest.starts_with("manifests/") {
                continue;
            } else {
                rest.to_string()
            };
            let to = format!("{cluster}/datacenter1/{fake}/{rest}");
            store.put(BUCKET, &to, &store.get(BUCKET, key));
        }
        made_up.insert(host_id.clone(), fake);
    }
    let mut topology =
        String::from_utf8(store.get(BUCKET, &format!("topology/{tag}.json"))).unwrap();
    for (real, fake) in &made_up {
        topology = topology.replace(real.as_str(), fake);
    }
    store.put(
        BUCKET,
        &format!("topology/{moved}.json"),
        topology.as_bytes(),
    );
    made_up
}

#[test]
fn a_peer_killed_mid_backup_fails_it_naming_that_node_and_cancels_the_others() {
    schema();
    let mut sidecars = Sidecars::start(&NODES);
    let id = sidecars.submit(1, slow_backup("cw_killed", "cwkilled"));
    all_parts_running(&sidecars, 1, &id, 3, None);
    let parts = sidecars.parts(&sidecars.operation(1, &id));
    sidecars.of_mut(3).send_signal(Signal::SIGKILL);
    let killed_at = Instant::now();

    let done = sidecars.finished(1, &id, Duration::from_secs(60));
    assert_eq!(done["state"], "FAILED", "{done:#}");
    assert!(
        errors(&done).contains("127.0.0.3"),
        "the error names the node: {}",
        errors(&done)
    );
    // The poll interval, the retries of the last poll and the others' cancellation, with a wide margin.
    assert!(
        killed_at.elapsed() < Duration::from_secs(40),
        "{:?}",
        killed_at.elapsed()
    );
    for (node, part) in parts.into_iter().filter(|(node, _)| *node != 3) {
        let part = sidecars.finished(node, part["id"].as_str().unwrap(), Duration::from_secs(30));
        assert_eq!(part["state"], "CANCELLED", "node {node}: {part:#}");
        eventually(&format!("node {node}'s snapshot is cleared"), || {
            snapshots_tagged(node, "cw_killed", "cwkilled")
                .is_empty()
                .then_some(())
        });
    }
}

#[test]
fn a_peer_that_stops_answering_fails_the_backup_at_its_timeout_naming_it() {
    schema();
    let sidecars = Sidecars::start(&NODES);
    let mut body = slow_backup("cw_stopped", "cwstopped");
    body["timeout"] = "10s".into();
    let submitted = Instant::now();
    let id = sidecars.submit(1, body);
    all_parts_running(&sidecars, 1, &id, 3, None);
    sidecars.of(2).send_signal(Signal::SIGSTOP);
    let done = std::panic::catch_unwind(|| sidecars.finished(1, &id, Duration::from_secs(90)));
    sidecars.of(2).send_signal(Signal::SIGCONT);
    let done = done.unwrap();
    assert_eq!(done["state"], "FAILED", "{done:#}");
    let errors = errors(&done);
    assert!(
        errors.contains("timeout (10s)") && errors.contains("127.0.0.2"),
        "{errors}"
    );
    // The timeout, then at most the grace the parts get to confirm their cancellation.
    assert!(
        submitted.elapsed() < Duration::from_secs(60),
        "{:?}",
        submitted.elapsed()
    );
    for view in done["nodes"].as_array().unwrap() {
        let node = sidecars.node_of(view);
        if node != 2 {
            let part = sidecars.finished(
                node,
                view["operationId"].as_str().unwrap(),
                Duration::from_secs(30),
            );
            assert_eq!(part["state"], "CANCELLED", "node {node}: {part:#}");
        }
    }
}

#[test]
fn a_peer_down_at_submit_fails_the_pre_flight_and_nothing_starts() {
    schema();
    let mut sidecars = Sidecars::start(&NODES);
    sidecars.of_mut(3).send_signal(Signal::SIGKILL);
    let _ = sidecars.of_mut(3).wait_for_exit();
    let id = sidecars.submit(1, backup("cw_preflight", "cwpreflight"));
    let done = sidecars.finished(1, &id, Duration::from_secs(60));
    assert_eq!(done["state"], "FAILED", "{done:#}");
    let errors = errors(&done);
    assert!(
        errors.contains("pre-flight") && errors.contains("127.0.0.3"),
        "{errors}"
    );
    for node in [1, 2] {
        let started: Vec<Value> = sidecars
            .of(node)
            .client()
            .get("/operations?type=backup")
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|operation| operation["globalRequest"] == false)
            .cloned()
            .collect();
        assert!(
            started.is_empty(),
            "node {node} started nothing: {started:?}"
        );
    }
    assert!(
        !minio()
            .objects(BUCKET)
            .keys()
            .any(|key| key.contains("cwpreflight")),
        "nothing was uploaded"
    );
}

#[test]
fn deleting_a_global_operation_cancels_every_part_and_a_part_cancelled_on_its_peer_fails_it() {
    let _staging = staging_turn();
    nothing_staged("cw_cancel");
    schema();
    let sidecars = Sidecars::start(&NODES);
    let id = sidecars.submit(2, slow_backup("cw_cancel", "cwcancelled"));
    all_parts_running(&sidecars, 2, &id, 3, None);
    assert_eq!(
        sidecars
            .of(2)
            .client()
            .delete(&format!("/operations/{id}"))
            .status,
        202
    );
    let done = sidecars.finished(2, &id, Duration::from_secs(60));
    assert_eq!(done["state"], "CANCELLED", "{done:#}");
    let parts = sidecars.parts(&done);
    assert_eq!(parts.len(), 3);
    for (node, part) in parts {
        let part = sidecars.finished(node, part["id"].as_str().unwrap(), Duration::from_secs(30));
        assert_eq!(part["state"], "CANCELLED", "node {node}: {part:#}");
    }

    // A backup to restore from, then a restore slowed down in its DOWNLOAD phase.
    let id = sidecars.submit(2, backup("cw_cancel", "cwtorestore"));
    let done = sidecars.finished(2, &id, Duration::from_secs(120));
    assert_eq!(done["state"], "COMPLETED", "{done:#}");
    let id = sidecars.submit(
        1,
        json!({"type": "restore", "storageLocation": format!("s3://{BUCKET}"), "snapshotTag": "cwtorestore",
               "entities": "cw_cancel.t", "restorationStrategyType": "IMPORT", "globalRequest": true,
               "bandwidth": serde_json::from_str::<Value>(SLOW).unwrap(), "concurrentConnections": 1}),
    );
    all_parts_running(&sidecars, 1, &id, 3, Some("DOWNLOAD"));
    assert_eq!(
        sidecars
            .of(1)
            .client()
            .delete(&format!("/operations/{id}"))
            .status,
        202
    );
    let done = sidecars.finished(1, &id, Duration::from_secs(60));
    assert_eq!(done["state"], "CANCELLED", "{done:#}");
    for (node, part) in sidecars.parts(&done) {
        let part = sidecars.finished(node, part["id"].as_str().unwrap(), Duration::from_secs(30));
        assert_eq!(part["state"], "CANCELLED", "node {node}: {part:#}");
        assert_eq!(part["restorationPhase"], "DOWNLOAD");
    }
    assert_eq!(
        cassandra::count_all("cw_cancel", "t"),
        SLOW_ROWS as i64,
        "nothing was truncated"
    );

    // A part cancelled on its own peer fails the restore naming that node; CLEANUP still removes the downloads.
    let id = sidecars.submit(
        1,
        json!({"type": "restore", "storageLocation": format!("s3://{BUCKET}"), "snapshotTag": "cwtorestore",
               "entities": "cw_cancel.t", "restorationStrategyType": "IMPORT", "globalRequest": true,
               "bandwidth": serde_json::from_str::<Value>(SLOW).unwrap(), "concurrentConnections": 1}),
    );
    all_parts_running(&sidecars, 1, &id, 3, Some("DOWNLOAD"));
    let downloads = |node: usize| {
        cassandra::node_dir(node)
            .join("downloadedsstables")
            .join("cw_cancel")
    };
    eventually("the downloads are under way on every node", || {
        NODES
            .iter()
            .all(|node| downloads(*node).exists())
            .then_some(())
    });
    let running = sidecars.operation(1, &id);
    let third = running["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|view| view["node"] == "127.0.0.3")
        .unwrap()["operationId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sidecars
            .of(3)
            .client()
            .delete(&format!("/operations/{third}"))
            .status,
        202
    );
    let done = sidecars.finished(1, &id, Duration::from_secs(120));
    assert_eq!(done["state"], "FAILED", "{done:#}");
    assert!(errors(&done).contains("127.0.0.3"), "{}", errors(&done));
    for view in done["nodes"].as_array().unwrap() {
        assert_eq!(
            (&view["phase"], &view["state"]),
            (&json!("CLEANUP"), &json!("COMPLETED")),
            "{done:#}"
        );
    }
    for node in NODES {
        assert!(
            !downloads(node).exists(),
            "node {node}: CLEANUP removed {}",
            downloads(node).display()
        );
    }
    assert_eq!(
        cassandra::count_all("cw_cancel", "t"),
        SLOW_ROWS as i64,
        "nothing was truncated"
    );
}

#[test]
fn rolling_cleanup_runs_one_node_at_a_time_and_stops_at_the_first_failure() {
    schema();
    let sidecars = Sidecars::start(&NODES);
    let id = sidecars.submit(
        3,
        json!({"type": "cleanup", "keyspace": "cw_rolling", "globalRequest": true}),
    );
    let done = sidecars.finished(3, &id, Duration::from_secs(120));
    assert_eq!(done["state"], "COMPLETED", "{done:#}");
    let mut intervals: Vec<(String, String)> = sidecars
        .parts(&done)
        .into_iter()
        .map(|(node, part)| {
            assert_eq!(part["state"], "COMPLETED", "node {node}: {part:#}");
            (
                part["startTime"].as_str().unwrap().to_string(),
                part["completionTime"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(intervals.len(), 3);
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "one node at a time: {intervals:?}");
    }

    let id = sidecars.submit(
        3,
        json!({"type": "cleanup", "keyspace": "cw_no_such_keyspace", "globalRequest": true}),
    );
    let done = sidecars.finished(3, &id, Duration::from_secs(60));
    assert_eq!(done["state"], "FAILED", "{done:#}");
    let views = done["nodes"].as_array().unwrap();
    assert_eq!(views[0]["state"], "FAILED", "{done:#}");
    assert!(
        errors(&done).contains(views[0]["node"].as_str().unwrap()),
        "{}",
        errors(&done)
    );
    assert!(
        views[1..]
            .iter()
            .all(|view| view.get("operationId").is_none()),
        "no node after the failed one started: {done:#}"
    );
}

#[test]
fn a_dc_filtered_global_backup_touches_only_that_data_centre() {
    cassandra::two_dc_group(13, 2);
    let dc2_node = 14;
    cassandra::cql(
        13,
        "CREATE KEYSPACE IF NOT EXISTS cw_dcs WITH replication = \
         {'class': 'NetworkTopologyStrategy', 'dc1': 1, 'dc2': 1}; \
         CREATE TABLE IF NOT EXISTS cw_dcs.t (id int PRIMARY KEY, v text); \
         CONSISTENCY ALL; INSERT INTO cw_dcs.t (id, v) VALUES (1, 'one')",
    );
    let sidecars = Sidecars::start(&[13, 14]);
    let cluster = cluster_name(13);
    let host_ids = host_ids(&[13, 14]);

    let mut body = backup("cw_dcs", "cwdc2");
    body["dc"] = "dc2".into();
    let id = sidecars.submit(13, body);
    let done = sidecars.finished(13, &id, Duration::from_secs(120));
    assert_eq!(done["state"], "COMPLETED", "{done:#}");
    assert_eq!(done["nodes"].as_array().unwrap().len(), 1, "{done:#}");
    let ours: Vec<String> = minio()
        .objects(BUCKET)
        .into_keys()
        .filter(|key| key.starts_with(&format!("{cluster}/")))
        .collect();
    assert!(!ours.is_empty());
    let dc2_prefix = format!("{cluster}/dc2/{}/", host_ids[&dc2_node]);
    assert!(
        ours.iter().all(|key| key.starts_with(&dc2_prefix)),
        "only dc2's node: {ours:?}"
    );

    let mut body = backup("cw_dcs", "cwdc3");
    body["dc"] = "dc3".into();
    let id = sidecars.submit(14, body);
    let done = sidecars.finished(14, &id, Duration::from_secs(60));
    assert_eq!(done["state"], "FAILED", "{done:#}");
    assert!(
        errors(&done).contains("no data centre 'dc3'"),
        "{}",
        errors(&done)
    );
}

#[test]
fn peer_calls_carry_the_admin_token_and_a_peer_refusing_it_fails_the_pre_flight() {
    schema();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, support::secrets::CLUSTER_TOKEN).unwrap();
    let bearer = format!("Bearer {}", support::secrets::CLUSTER_TOKEN);
    let token_arg = token.to_str().unwrap();
    let sidecars = Sidecars::start_with(&NODES, &["--admin-token-file", token_arg]);
    let call = |node: usize, method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut headers = vec![("authorization", bearer.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        sidecars
            .of(node)
            .client()
            .send_with(
                method,
                path,
                &headers,
                body.map(|b| b.to_string().into_bytes()),
            )
            .json()
    };
    let flush = json!({"type": "flush", "keyspace": "cw_rolling", "globalRequest": true});
    let id = call(1, reqwest::Method::POST, "/operations", Some(flush.clone()))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = eventually("the rolling flush ends", || {
        let operation = call(1, reqwest::Method::GET, &format!("/operations/{id}"), None);
        (!matches!(operation["state"].as_str(), Some("PENDING" | "RUNNING"))).then_some(operation)
    });
    assert_eq!(done["state"], "COMPLETED", "{done:#}");
    assert_eq!(done["nodes"].as_array().unwrap().len(), 3);

    // A coordinator whose peer token (--peer-token-file) the peers do not accept fails in pre-flight.
    let other = dir.path().join("peer-token");
    std::fs::write(&other, support::secrets::OTHER_CLUSTER_TOKEN).unwrap();
    drop(sidecars);
    let sidecars = Sidecars::start_with(
        &NODES,
        &[
            "--admin-token-file",
            token_arg,
            "--peer-token-file",
            other.to_str().unwrap(),
        ],
    );
    let id = sidecars
        .of(2)
        .client()
        .send_with(
            reqwest::Method::POST,
            "/operations",
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
            ],
            Some(flush.to_string().into_bytes()),
        )
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = eventually("the refused flush ends", || {
        let operation = sidecars
            .of(2)
            .client()
            .send_with(
                reqwest::Method::GET,
                &format!("/operations/{id}"),
                &[("authorization", bearer.as_str())],
                None,
            )
            .json();
        (!matches!(operation["state"].as_str(), Some("PENDING" | "RUNNING"))).then_some(operation)
    });
    assert_eq!(done["state"], "FAILED", "{done:#}");
    let errors = errors(&done);
    assert!(
        errors.contains("pre-flight") && errors.contains("401"),
        "{errors}"
    );
}

#[test]
fn peers_are_called_over_tls_with_a_client_certificate_and_the_token() {
    use support::tls::{ca, client, file, leaf};
    schema();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    ca(path, "cluster-ca");
    leaf(
        path,
        "sidecar",
        "cluster-ca",
        &["127.0.0.1", "127.0.0.2", "127.0.0.3"],
        true,
    );
    leaf(path, "operator", "cluster-ca", &[], false);
    let token = file(path, "admin-token");
    std::fs::write(&token, support::secrets::TLS_CLUSTER_TOKEN).unwrap();
    let (cert, key, ca_file) = (
        file(path, "sidecar.pem"),
        file(path, "sidecar.key"),
        file(path, "cluster-ca.pem"),
    );
    let sidecars = Sidecars::start_with(
        &NODES,
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-client-ca-file",
            ca_file.to_str().unwrap(),
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    );
    let https = sidecars.of(2).base_url.replacen("http://", "https://", 1);
    let operator = client(path, "cluster-ca", Some("operator"));
    let created: Value = operator
        .post(format!("{https}/operations"))
        .bearer_auth(support::secrets::TLS_CLUSTER_TOKEN)
        .header("content-type", "application/json")
        .body(json!({"type": "flush", "keyspace": "cw_rolling", "globalRequest": true}).to_string())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let done = eventually("the flush over TLS ends", || {
        let operation: Value = operator
            .get(format!("{https}/operations/{id}"))
            .bearer_auth(support::secrets::TLS_CLUSTER_TOKEN)
            .send()
            .ok()?
            .json()
            .ok()?;
        (!matches!(operation["state"].as_str(), Some("PENDING" | "RUNNING"))).then_some(operation)
    });
    assert_eq!(done["state"], "COMPLETED", "{done:#}");
    for view in done["nodes"].as_array().unwrap() {
        assert!(
            view["peer"].as_str().unwrap().starts_with("https://"),
            "{view}"
        );
        assert_eq!(view["state"], "COMPLETED", "{view}");
    }
}

/// With `--store etcd`: the sidecar coordinating a global backup is killed while the parts run; one of the node
/// sidecars takes the backup over once the killed one's lease runs out, follows the parts already sent rather than
/// sending them again, and completes it under the tag the first coordinator settled. The coordinator here is a
/// sidecar of its own (on 127.0.0.4, beside node 1's Cassandra) so that killing it leaves every part running.
#[cfg(feature = "etcd")]
#[test]
fn a_global_backup_whose_coordinator_dies_is_taken_over_by_another_sidecar_and_completes() {
    use support::etcd::EtcdCluster;
    schema();
    let etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints_arg();
    let store_args = |id: String| -> Vec<String> {
        [
            "--store",
            "etcd",
            "--etcd-endpoints",
            &endpoints,
            "--etcd-prefix",
            "/t/takeover",
            "--sidecar-id",
            &id,
        ]
        .map(str::to_string)
        .to_vec()
    };
    let port = shared_port(&[1, 2, 3, 4]);
    let sidecars = Sidecars::start_each(port, &NODES, |node| store_args(format!("node-{node}")));
    let mut coordinator = Sidecars::start_one(
        &format!("127.0.0.4:{port}"),
        1,
        &store_args("coordinator".into()),
    );

    let id = coordinator
        .client()
        .submit(slow_backup("cw_takeover", "cwtakeover"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = eventually("every part of the backup runs", || {
        let operation = coordinator.client().operation(&id);
        let views = operation["nodes"].as_array()?;
        let running = views.iter().filter(|v| v["state"] == "RUNNING").count();
        (running == NODES.len()).then_some(operation)
    });
    assert_eq!(sent["sidecar"], "coordinator", "{sent:#}");
    let tag = sent["response"]["snapshotTag"]
        .as_str()
        .unwrap()
        .to_string();
    let part_ids = |operation: &Value| -> BTreeMap<String, String> {
        operation["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["hostId"].to_string(), v["operationId"].to_string()))
            .collect()
    };
    coordinator.send_signal(Signal::SIGKILL);
    coordinator.wait_for_exit();

    let taken = eventually("a node's sidecar takes the backup over", || {
        let operation = sidecars.operation(2, &id);
        (operation["sidecar"] != "coordinator").then_some(operation)
    });
    let successor = taken["sidecar"].as_str().unwrap().to_string();
    assert!(successor.starts_with("node-"), "{taken:#}");

    let done = sidecars.finished(2, &id, Duration::from_secs(180));
    assert_eq!(done["state"], "COMPLETED", "{done:#}");
    assert_eq!(done["sidecar"], successor.as_str());
    assert_eq!(
        done["response"]["snapshotTag"],
        tag.as_str(),
        "the first coordinator's tag"
    );
    assert_eq!(
        part_ids(&done),
        part_ids(&sent),
        "the parts sent before the takeover were followed, not sent again"
    );
    for node in NODES {
        let seen = sidecars.finished(node, &id, Duration::from_secs(10));
        assert_eq!(
            seen["state"], "COMPLETED",
            "from node {node}'s sidecar: {seen:#}"
        );
        assert_eq!(seen["nodes"], done["nodes"], "from node {node}'s sidecar");
    }
    for (node, part) in sidecars.parts(&done) {
        assert_eq!(part["state"], "COMPLETED", "node {node}: {part:#}");
    }
    let objects = minio().objects(BUCKET);
    let manifests = objects
        .keys()
        .filter(|key| key.ends_with(&format!("/manifests/{tag}.json")))
        .count();
    assert_eq!(manifests, 3, "one manifest per node");
    assert!(
        objects.contains_key(&format!("topology/{tag}.json")),
        "the topology is uploaded once the parts completed"
    );
}

/// With `--store etcd`: a cluster-wide backup schedule, created on one sidecar, is shared by the three; at each tick
/// exactly one of them runs the global backup. The one that ran the last is killed: the next tick still comes, run by
/// another (its backup fails, a node's sidecar being down), and once the killed one is back a tick completes again.
#[cfg(feature = "etcd")]
#[test]
fn a_cluster_wide_schedule_runs_once_per_tick_and_goes_on_when_its_sidecar_dies() {
    use support::etcd::EtcdCluster;
    const TICK: i64 = 15;
    schema();
    let etcd = EtcdCluster::start(1);
    let endpoints = etcd.endpoints_arg();
    let store_args = |node: usize| -> Vec<String> {
        [
            "--store",
            "etcd",
            "--etcd-endpoints",
            &endpoints,
            "--etcd-prefix",
            "/t/schedule",
            "--sidecar-id",
            &format!("node-{node}"),
        ]
        .map(str::to_string)
        .to_vec()
    };
    let port = shared_port(&NODES);
    let mut sidecars = Sidecars::start_each(port, &NODES, store_args);
    let created = sidecars.of(1).client().post_json(
        "/schedules",
        &json!({
            "cron": format!("*/{TICK} * * * * *"),
            "operation": {"type": "backup", "storageLocation": format!("s3://{BUCKET}"), "entities": "cw_sched",
                          "snapshotTag": "cwsched", "globalRequest": true}
        }),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let schedule = created.json()["id"].as_str().unwrap().to_string();
    for node in NODES {
        let seen = sidecars
            .of(node)
            .client()
            .get(&format!("/schedules/{schedule}"));
        assert_eq!(seen.status, 200, "node {node} shares the schedule");
    }

    // The global backups (not their parts), as every sidecar sees them in etcd, oldest first.
    let global_backups = |sidecars: &Sidecars, node: usize| -> Vec<Value> {
        let listed = sidecars
            .of(node)
            .client()
            .get("/operations?type=backup")
            .json();
        let mut global: Vec<Value> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["globalRequest"] == true)
            .cloned()
            .collect();
        global.sort_by_key(|o| o["creationTime"].as_str().unwrap().to_string());
        global
    };
    let created = |operation: &Value| {
        chrono::DateTime::parse_from_rfc3339(operation["creationTime"].as_str().unwrap()).unwrap()
    };
    let tick_of = |operation: &Value| created(operation).timestamp().div_euclid(TICK);
    let once_per_tick = |global: &[Value]| {
        let ticks: Vec<i64> = global.iter().map(tick_of).collect();
        let distinct: std::collections::BTreeSet<i64> = ticks.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            ticks.len(),
            "one global backup per tick: {global:#?}"
        );
    };

    let done = support::eventually_within(
        "three scheduled global backups completed",
        Duration::from_secs(150),
        || {
            let global = global_backups(&sidecars, 2);
            let completed = global.iter().filter(|o| o["state"] == "COMPLETED").count();
            (completed >= 3
                && global
                    .iter()
                    .all(|o| o["state"] != "RUNNING" && o["state"] != "PENDING"))
            .then_some(global)
        },
    );
    once_per_tick(&done);
    let last = done.last().unwrap();
    assert_eq!(last["state"], "COMPLETED", "{last:#}");
    let runner = last["sidecar"].as_str().unwrap().to_string();
    let killed: usize = runner.strip_prefix("node-").unwrap().parse().unwrap();
    let alive = *NODES.iter().find(|node| **node != killed).unwrap();
    sidecars.of_mut(killed).send_signal(Signal::SIGKILL);
    sidecars.of_mut(killed).wait_for_exit();
    let killed_after = created(last);

    let next = support::eventually_within(
        "the next tick runs on another sidecar",
        Duration::from_secs(60),
        || {
            let global = global_backups(&sidecars, alive);
            global.into_iter().find(|o| created(o) > killed_after)
        },
    );
    assert_ne!(next["sidecar"], runner.as_str(), "{next:#}");
    assert!(
        next["sidecar"].as_str().unwrap().starts_with("node-"),
        "{next:#}"
    );

    let restarted_at = chrono::Utc::now();
    let listen = format!("127.0.0.{killed}:{port}");
    *sidecars.of_mut(killed) = Sidecars::start_one(&listen, killed, &store_args(killed));
    let completed = support::eventually_within(
        "a tick completes once every sidecar is back",
        Duration::from_secs(90),
        || {
            global_backups(&sidecars, alive)
                .into_iter()
                .find(|o| created(o) > restarted_at && o["state"] == "COMPLETED")
        },
    );
    assert!(completed["sidecar"].as_str().unwrap().starts_with("node-"));
    once_per_tick(&global_backups(&sidecars, alive));
    // Whichever sidecar ran the tick, every one reports the schedule's last run and its backup's age.
    for node in NODES {
        support::eventually_within(
            &format!("node {node}'s sidecar reports the completed run"),
            Duration::from_secs(30),
            || {
                let text = sidecars.of(node).client().get("/metrics").text();
                let succeeded = text.lines().any(|line| {
                    line == format!(
                        "daedalus_schedule_last_run_success{{schedule=\"{schedule}\",type=\"backup\"}} 1"
                    )
                });
                let fresh = text.lines().any(|line| {
                    line.starts_with("daedalus_backup_last_success_timestamp_seconds{")
                        && line.contains(&format!("schedule=\"{schedule}\""))
                });
                (succeeded && fresh).then_some(())
            },
        );
    }

    let deleted = sidecars
        .of(alive)
        .client()
        .delete(&format!("/schedules/{schedule}"));
    assert_eq!(deleted.status, 204);
}
