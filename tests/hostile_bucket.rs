//! A bucket written by an attacker, and requests written by mistake, against real restores into a real Cassandra
//! (node 12, a one-node cluster of its own): every shape a manifest, an object key, a topology file or a file:// bucket
//! can take to turn a restore against the node, run through IMPORT and HARDLINKS into the running node, IN_PLACE from
//! the command line and over REST into the stopped node, `commitlog-restore`, `list` and `remove-backup`.
//!
//! For each: the operation fails naming the object, a sentinel directory outside every root is byte-for-byte
//! unchanged, nothing new appears outside the roots, and the table's rows are all still there (read over CQL).
//!
//! The tests share node 12 and take turns with it ([`node`]).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};
use support::{Sidecar, cassandra, run};

const NODE: usize = 12;

/// This test's turn with node 12.
fn node() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cql(statement: &str) -> Vec<Vec<String>> {
    cassandra::cql(NODE, statement)
}

fn rows() -> BTreeMap<String, String> {
    cql("SELECT id, v FROM hb.t")
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect()
}

/// Everything under `dir`: files with their bytes, directories, and symbolic links with their targets.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            let what = if kind.is_symlink() {
                format!("link to {}", std::fs::read_link(&path).unwrap().display())
            } else if kind.is_dir() {
                pending.push(path.clone());
                "directory".into()
            } else {
                format!("file {:x?}", std::fs::read(&path).unwrap_or_default())
            };
            found.insert(path, what);
        }
    }
    found
}

/// [`tree`] without what lies under `skip`.
fn tree_except(dir: &Path, skip: &[&Path]) -> BTreeMap<PathBuf, String> {
    tree(dir)
        .into_iter()
        .filter(|(path, _)| !skip.iter().any(|skip| path.starts_with(skip)))
        .collect()
}

/// The test's own directory: the file:// store, the sentinel outside every root, and staging directories.
struct Scene {
    root: PathBuf,
    /// `file://<root>/store/bucket`
    bucket: PathBuf,
    /// What no operation may change: a secret, and files named like SSTables (which the old IN_PLACE deleted).
    outside: PathBuf,
    staging: PathBuf,
}

impl Scene {
    fn new(name: &str) -> Scene {
        let root =
            std::env::temp_dir().join(format!("daedalus-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let outside = root.join("outside");
        std::fs::create_dir_all(outside.join("victim/hb/t")).unwrap();
        std::fs::write(outside.join("secret"), b"the host's secret\n").unwrap();
        std::fs::write(outside.join("victim/nb-1-big-Data.db"), b"not Cassandra's").unwrap();
        std::fs::write(outside.join("victim/hb/t/nb-2-big-Index.db"), b"keep me").unwrap();
        let bucket = root.join("store/bucket");
        std::fs::create_dir_all(&bucket).unwrap();
        Scene {
            staging: root.join("staging"),
            root,
            bucket,
            outside,
        }
    }

    fn location(&self) -> String {
        format!("file://{}", self.bucket.display())
    }

    /// No file under `dir` holds the sentinel's secret.
    fn secret_is_not_in(&self, dir: &Path, what: &str) {
        let secret = format!(
            "file {:x?}",
            std::fs::read(self.outside.join("secret")).unwrap()
        );
        for (path, found) in tree(dir) {
            assert_ne!(
                found,
                secret,
                "{what} copied the secret to {}",
                path.display()
            );
        }
    }

    /// `../` enough times to climb from any directory to `/`, then the sentinel.
    fn climb_to_outside(&self) -> String {
        format!(
            "{}{}",
            "../".repeat(24),
            self.outside.display().to_string().trim_start_matches('/')
        )
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The node's sidecar: JMX and CQL of node 12, and the node's directories as its configuration (as an operator of a
/// stopped-node restore gives them).
fn sidecar() -> Sidecar {
    let dir = cassandra::node_dir(NODE);
    let (jmx, cql_address) = (cassandra::jmx_service(NODE), format!("127.0.0.1:{}", 9042));
    let cql_address = cql_address.replace("127.0.0.1", &format!("127.0.0.{NODE}"));
    Sidecar::start(&[
        "--jmx-service",
        &jmx,
        "--cql-address",
        &cql_address,
        "--cassandra-dir",
        &dir.display().to_string(),
        "--cassandra-config",
        &dir.join("conf/cassandra.yaml").display().to_string(),
    ])
}

/// The backed-up node: `<bucket>/<cluster>/<dc>/<host id>` on disk and as a location, with its good manifest.
struct Backup {
    prefix: PathBuf,
    location: String,
    manifest: Value,
    schema: String,
    id: String,
}

/// Keyspace `hb` with table `t` of 50 rows on node 12, backed up under `good` into the scene's file:// bucket.
fn good_backup(sidecar: &Sidecar, scene: &Scene) -> Backup {
    cql("DROP KEYSPACE IF EXISTS hb");
    cql(
        "CREATE KEYSPACE hb WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    );
    cql("CREATE TABLE hb.t (id int PRIMARY KEY, v text)");
    let inserts: String = (0..50)
        .map(|id| format!("INSERT INTO hb.t (id, v) VALUES ({id}, 'value {id}');"))
        .collect();
    cql(&format!("BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"));
    run(
        sidecar,
        json!({"type": "flush", "keyspace": "hb"}),
        "COMPLETED",
    );
    // A file:// location names the node whole.
    let topology = sidecar.client().get("/topology").json();
    let node = &topology["topology"][0];
    let path = format!(
        "{}/{}/{}",
        topology["clusterName"].as_str().unwrap(),
        node["dc"].as_str().unwrap(),
        node["nodeId"].as_str().unwrap()
    );
    let location = format!("{}/{path}", scene.location());
    let done = run(
        sidecar,
        json!({"type": "backup", "storageLocation": location, "snapshotTag": "good", "entities": "hb",
               "uploadClusterTopology": true}),
        "COMPLETED",
    );
    let name = done["response"]["snapshotTag"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = scene.bucket.join(&path);
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(prefix.join(format!("manifests/{name}.json"))).unwrap(),
    )
    .unwrap();
    let schema = manifest["schemaVersion"].as_str().unwrap().to_string();
    let id = manifest["snapshot"]["keyspaces"]["hb"]["tables"]["t"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    Backup {
        location,
        prefix,
        manifest,
        schema,
        id,
    }
}

/// A shape of hostile backup, planted as a manifest of its own (tag `<name>`) beside the good one.
struct Shape {
    name: &'static str,
    /// What the error must say.
    expect: String,
    /// Found from the names alone, before anything is read or written on the node.
    names_only: bool,
}

fn shape(name: &'static str, expect: impl Into<String>, names_only: bool) -> Shape {
    Shape {
        name,
        expect: expect.into(),
        names_only,
    }
}

/// The good manifest's table `hb.t`, mutable.
fn table(manifest: &mut Value) -> &mut Value {
    &mut manifest["snapshot"]["keyspaces"]["hb"]["tables"]["t"]
}

/// The first entry of the table's first SSTable.
fn first_entry(manifest: &mut Value) -> &mut Value {
    let sstables = table(manifest)["sstables"].as_object_mut().unwrap();
    let first = sstables.values_mut().next().unwrap();
    &mut first[0]
}

/// Writes `manifest` (or raw `text`) as the backup `<tag>-<schema>-<millis>` of the node.
fn plant(backup: &Backup, tag: &str, millis: i64, manifest: &[u8]) {
    let path = backup
        .prefix
        .join(format!("manifests/{tag}-{}-{millis}.json", backup.schema));
    std::fs::write(path, manifest).unwrap();
}

/// Plants every hostile shape that a manifest and its objects can take; returns them.
fn plant_shapes(backup: &Backup, scene: &Scene) -> Vec<Shape> {
    let id = backup.id.clone();
    let mut millis = chrono::Utc::now().timestamp_millis();
    let mut shapes = Vec::new();
    let mut plant_json =
        |tag: &'static str, edit: &dyn Fn(&mut Value), expect: String, names_only: bool| {
            let mut manifest = backup.manifest.clone();
            edit(&mut manifest);
            millis += 1;
            plant(
                backup,
                tag,
                millis,
                &serde_json::to_vec_pretty(&manifest).unwrap(),
            );
            shapes.push(shape(tag, expect, names_only));
        };
    plant_json(
        "dotdotkeyspace",
        &|m| {
            let keyspaces = m["snapshot"]["keyspaces"].as_object_mut().unwrap();
            let hb = keyspaces.remove("hb").unwrap();
            keyspaces.insert("..".into(), hb);
        },
        "the keyspace is not a Cassandra keyspace name".into(),
        true,
    );
    let climb = scene.climb_to_outside();
    plant_json(
        "slashtable",
        &|m| {
            let tables = m["snapshot"]["keyspaces"]["hb"]["tables"]
                .as_object_mut()
                .unwrap();
            let t = tables.remove("t").unwrap();
            tables.insert(format!("t/{climb}"), t);
        },
        "the table is not a Cassandra table name".into(),
        true,
    );
    plant_json(
        "traversalid",
        &|m| table(m)["id"] = json!(format!("x/{climb}/victim")),
        "is not 32 hex digits".into(),
        true,
    );
    // An object that is there, named like a component but not one: the old IN_PLACE wrote it beside the SSTables.
    let pwn = format!("data/hb/t-{id}/1-abc/nb-1-pwn.sh");
    std::fs::create_dir_all(backup.prefix.join(&pwn).parent().unwrap()).unwrap();
    std::fs::write(backup.prefix.join(&pwn), b"#!/bin/sh\n").unwrap();
    plant_json(
        "pwncomponent",
        &|m| {
            table(m)["sstables"]["nb-1-pwn"] =
                json!([{"objectKey": pwn, "type": "FILE", "size": 10}]);
        },
        "nb-1-pwn.sh".into(),
        true,
    );
    plant_json(
        "dotdotkey",
        &|m| {
            first_entry(m)["objectKey"] =
                json!(format!("data/hb/t-{id}/{climb}/victim/nb-1-big-Data.db"))
        },
        "is refused".into(),
        true,
    );
    let secret = scene.outside.join("secret").display().to_string();
    plant_json(
        "absolutekey",
        &|m| first_entry(m)["objectKey"] = json!(secret),
        "does not start with data/".into(),
        true,
    );
    // A size no object has: found when the object is fetched.
    let huge_key = first_entry(&mut backup.manifest.clone())["objectKey"]
        .as_str()
        .unwrap()
        .to_string();
    plant_json(
        "hugesize",
        &|m| first_entry(m)["size"] = json!(1_u64 << 50),
        format!("{huge_key} does not match its manifest entry"),
        false,
    );
    // An object that is a symbolic link to the secret, with no hash to catch it.
    let linked = format!("data/hb/t-{id}/7-77/nb-7-big-Data.db");
    std::fs::create_dir_all(backup.prefix.join(&linked).parent().unwrap()).unwrap();
    symlink(scene.outside.join("secret"), backup.prefix.join(&linked)).unwrap();
    let secret_len = std::fs::metadata(scene.outside.join("secret"))
        .unwrap()
        .len();
    plant_json(
        "symlinkedobject",
        &|m| {
            table(m)["sstables"]["nb-7-big"] =
                json!([{"objectKey": linked, "type": "FILE", "size": secret_len}]);
        },
        "nb-7-big-Data.db".into(),
        false,
    );
    // JSON nested deeper than any manifest, and a manifest larger than the sidecar reads.
    millis += 1;
    plant(
        backup,
        "deepjson",
        millis,
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes(),
    );
    shapes.push(shape("deepjson", "is not a backup manifest", true));
    millis += 1;
    let oversized = backup.prefix.join(format!(
        "manifests/oversized-{}-{millis}.json",
        backup.schema
    ));
    std::fs::File::create(&oversized)
        .unwrap()
        .set_len(64 * 1024 * 1024 + 1)
        .unwrap();
    shapes.push(shape(
        "oversized",
        "more than the 64 MiB a manifest may have",
        true,
    ));
    shapes
}

/// The operation failed, saying `expect`.
fn failed_saying(operation: &Value, expect: &str) {
    assert_eq!(operation["state"], "FAILED", "{operation}");
    let message = operation["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains(expect),
        "expected '{expect}' in: {operation}"
    );
}

/// HARDLINKS and IMPORT into the running node: every shape fails naming what is wrong, before anything is touched
/// where names are wrong, and with nothing outside the staging directory and the data directories changed in any
/// case. The rows are all there after each.
#[test]
fn live_restores_refuse_every_hostile_shape() {
    let _turn = node();
    cassandra::solo(NODE);
    let scene = Scene::new("live");
    let sidecar = sidecar();
    let backup = good_backup(&sidecar, &scene);
    let shapes = plant_shapes(&backup, &scene);
    let before_rows = rows();
    let outside = tree(&scene.outside);
    let elsewhere = tree_except(&scene.root, &[&scene.staging]);
    for shape in &shapes {
        for strategy in ["IMPORT", "HARDLINKS"] {
            let staging = scene.staging.join(format!("{}-{strategy}", shape.name));
            let done = run(
                &sidecar,
                json!({"type": "restore", "storageLocation": backup.location, "snapshotTag": shape.name,
                       "restorationStrategyType": strategy, "import": {"sourceDir": staging}}),
                "FAILED",
            );
            failed_saying(&done, &shape.expect);
            if shape.names_only {
                assert!(
                    !staging.exists(),
                    "{}: nothing is created before the names are checked",
                    shape.name
                );
            }
            assert_eq!(
                tree(&scene.outside),
                outside,
                "{} {strategy} changed the sentinel",
                shape.name
            );
            assert_eq!(
                tree_except(&scene.root, &[&scene.staging]),
                elsewhere,
                "{} {strategy} wrote outside its staging directory",
                shape.name
            );
            // The secret never lands anywhere the restore writes.
            scene.secret_is_not_in(&scene.staging, shape.name);
            assert_eq!(rows(), before_rows, "{} {strategy}", shape.name);
        }
    }
    // And the good backup still restores.
    cql("DELETE FROM hb.t WHERE id IN (1, 2, 3)");
    run(
        &sidecar,
        json!({"type": "restore", "storageLocation": backup.location, "snapshotTag": "good",
               "restorationStrategyType": "IMPORT", "import": {"sourceDir": scene.staging.join("good")}}),
        "COMPLETED",
    );
    assert_eq!(rows(), before_rows);
}

/// `daedalus restore` (IN_PLACE) for node 12, from its own flags.
fn restore_command(location: &str, tag: &str, extra: &[&str]) -> std::process::Output {
    let dir = cassandra::node_dir(NODE);
    support::daedalus_command()
        .args([
            "restore",
            "--storage-location",
            location,
            "--snapshot-tag",
            tag,
        ])
        .args([
            "--restoration-strategy-type",
            "IN_PLACE",
            "--jmx-service",
            &cassandra::jmx_service(NODE),
        ])
        .args(["--cassandra-dir", &dir.display().to_string()])
        .args([
            "--config-directory",
            &dir.join("conf").display().to_string(),
        ])
        .args(extra)
        .output()
        .expect("daedalus restore runs")
}

/// IN_PLACE into the stopped node, from the command line and over REST, `commitlog-restore`, and a CLEANUP whose
/// lookups fail: every hostile shape fails naming what is wrong; the node's directories are untouched where the
/// names are wrong, the sentinel always; the node then starts with every row.
#[test]
fn stopped_node_restores_refuse_every_hostile_shape() {
    let _turn = node();
    cassandra::solo(NODE);
    let scene = Scene::new("stopped");
    let sidecar = sidecar();
    let backup = good_backup(&sidecar, &scene);
    let shapes = plant_shapes(&backup, &scene);
    let before_rows = rows();

    // A download for a CLEANUP to come, while the node runs; then the node goes, and the sidecar's JMX with it.
    let downloads = scene.staging.join("cleanup");
    let phase = |phase: &str| {
        json!({"type": "restore", "storageLocation": backup.location, "snapshotTag": "good",
               "restorationStrategyType": "IMPORT", "restorationPhase": phase,
               "import": {"sourceDir": downloads}})
    };
    run(&sidecar, phase("INIT"), "COMPLETED");
    run(&sidecar, phase("DOWNLOAD"), "COMPLETED");
    let downloaded = tree(&downloads);
    assert!(downloaded.values().any(|what| what.starts_with("file")));
    run(&sidecar, json!({"type": "drain"}), "COMPLETED");
    cassandra::stop(NODE);
    // A lookup that fails must fail CLEANUP (it once reported COMPLETED having removed nothing).
    let cleanup = run(&sidecar, phase("CLEANUP"), "FAILED");
    assert!(
        cleanup["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("JMX"),
        "{cleanup}"
    );
    assert_eq!(
        tree(&downloads),
        downloaded,
        "nothing was removed on a guess"
    );

    let node_dir = cassandra::node_dir(NODE);
    let conf = node_dir.join("conf").display().to_string();
    let outside = tree(&scene.outside);
    let elsewhere = tree_except(&scene.root, &[&scene.staging]);
    let node_files = tree_except(&node_dir, &[&node_dir.join("logs")]);
    for shape in &shapes {
        let output = restore_command(&backup.location, shape.name, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{}: {stderr}", shape.name);
        assert!(
            stderr.contains(&shape.expect),
            "{}: expected '{}' in {stderr}",
            shape.name,
            shape.expect
        );
        let done = run(
            &sidecar,
            json!({"type": "restore", "storageLocation": backup.location, "snapshotTag": shape.name,
                   "restorationStrategyType": "IN_PLACE", "cassandraDirectory": node_dir,
                   "cassandraConfigDirectory": conf}),
            "FAILED",
        );
        failed_saying(&done, &shape.expect);
        assert_eq!(
            tree(&scene.outside),
            outside,
            "{} changed the sentinel",
            shape.name
        );
        assert_eq!(
            tree_except(&scene.root, &[&scene.staging]),
            elsewhere,
            "{}",
            shape.name
        );
        if shape.names_only {
            assert_eq!(
                tree_except(&node_dir, &[&node_dir.join("logs")]),
                node_files,
                "{}: the node's files changed",
                shape.name
            );
        }
        scene.secret_is_not_in(&node_dir.join("data"), shape.name);
    }

    // Tokens that would write settings of their own into cassandra.yaml.
    let mut manifest = backup.manifest.clone();
    manifest["tokens"] = json!([format!("1\nhints_directory: {}", scene.outside.display())]);
    plant(
        &backup,
        "badtokens",
        chrono::Utc::now().timestamp_millis(),
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let yaml = std::fs::read(node_dir.join("conf/cassandra.yaml")).unwrap();
    let output = restore_command(&backup.location, "badtokens", &["--update-cassandra-yaml"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not a ring token"),
        "{output:?}"
    );
    assert_eq!(
        std::fs::read(node_dir.join("conf/cassandra.yaml")).unwrap(),
        yaml
    );

    // A topology whose host id climbs out of the bucket.
    let topology_dir = scene.bucket.join("topology");
    let topology_file = std::fs::read_dir(&topology_dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut topology: Value =
        serde_json::from_slice(&std::fs::read(&topology_file).unwrap()).unwrap();
    let host_name = topology["topology"][0]["hostname"]
        .as_str()
        .unwrap()
        .to_string();
    topology["topology"][0]["nodeId"] = json!(scene.climb_to_outside());
    let good_name = topology_file
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .replace("good-", "badtopology-");
    std::fs::write(
        topology_dir.join(format!("{good_name}.json")),
        serde_json::to_vec(&topology).unwrap(),
    )
    .unwrap();
    let by_host = format!(
        "{}/{host_name}",
        backup.location.rsplit_once('/').unwrap().0
    );
    let output = restore_command(
        &by_host,
        "badtopology",
        &["--resolve-host-id-from-topology"],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot be part of a storage location"),
        "{output:?}"
    );

    // commitlog-restore: a segment that is a link to the secret is never copied, and the node's commit log stays.
    let segments = backup.prefix.join("commitlog");
    std::fs::create_dir_all(&segments).unwrap();
    symlink(
        scene.outside.join("secret"),
        segments.join("CommitLog-7-1.log.1000"),
    )
    .unwrap();
    let commit_logs = tree(&node_dir.join("commitlog"));
    let download_dir = scene.staging.join("commitlogs");
    let done = run(
        &sidecar,
        json!({"type": "commitlog-restore", "storageLocation": backup.location,
               "cassandraCommitLogDirectory": node_dir.join("commitlog"), "cassandraConfigDirectory": conf,
               "commitlogDownloadDir": download_dir, "timestampStart": 0, "timestampEnd": 2000}),
        "FAILED",
    );
    assert_eq!(done["state"], "FAILED");
    scene.secret_is_not_in(&download_dir, "commitlog-restore");
    assert_eq!(tree(&node_dir.join("commitlog")), commit_logs);
    assert!(
        !node_dir
            .join("conf/commitlog_archiving.properties")
            .exists()
    );
    assert_eq!(tree(&scene.outside), outside);

    cassandra::solo(NODE);
    assert_eq!(rows(), before_rows, "the node starts with every row");
}

/// `list` and `remove-backup` (from the command line: no Cassandra needed) over node prefixes of their own, each
/// holding one hostile shape.
#[test]
fn listing_and_removal_refuse_what_is_not_a_backup() {
    let scene = Scene::new("remove");
    let id = "0123456789abcdef0123456789abcdef";
    let schema = "3a6e8c46-2c8e-3f1d-9b4c-6f6a6d2b1c0e";
    let climb = scene.climb_to_outside();
    let node = |name: &str| scene.bucket.join(format!("c/dc/{name}"));
    let location = |name: &str| format!("{}/c/dc/{name}", scene.location());
    let manifest = |keys: &[(&str, u64)]| {
        let entries: Vec<Value> = keys
            .iter()
            .map(|(key, size)| json!({"objectKey": key, "type": "FILE", "size": size}))
            .collect();
        json!({"snapshot": {"name": "x", "keyspaces": {"hb": {"tables": {"t": {"id": id, "sstables": {"nb-1-big": entries}}}}}},
               "tokens": ["1"], "schemaVersion": schema})
    };
    let write_manifest = |node_name: &str, tag: &str, manifest: &Value| -> String {
        let name = format!("{tag}-{schema}-1700000000000");
        let dir = node(node_name).join("manifests");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_vec(manifest).unwrap(),
        )
        .unwrap();
        name
    };
    let daedalus = |args: &[&str]| {
        support::daedalus_command()
            .args(args)
            .output()
            .expect("daedalus runs")
    };
    let outside = tree(&scene.outside);

    // Keys that climb out of the bucket, or start at its root.
    for (node_name, key) in [
        (
            "dotdot",
            format!("data/hb/t-{id}/{climb}/victim/nb-1-big-Data.db"),
        ),
        (
            "absolute",
            scene
                .outside
                .join("victim/nb-1-big-Data.db")
                .display()
                .to_string(),
        ),
    ] {
        let name = write_manifest(node_name, "evil", &manifest(&[(&key, 15)]));
        let output = daedalus(&[
            "remove-backup",
            "--storage-location",
            &location(node_name),
            "--backup-name",
            &name,
        ]);
        assert!(!output.status.success(), "{node_name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("is refused") && stderr.contains(&key),
            "{node_name}: {stderr}"
        );
        assert!(
            node(node_name)
                .join(format!("manifests/{name}.json"))
                .exists(),
            "nothing removed"
        );
        assert_eq!(tree(&scene.outside), outside, "{node_name}");
    }

    // A node prefix whose `data` is a link to a directory outside the bucket, shaped like a backup's objects.
    let mirror = scene.outside.join("mirror");
    let mirrored = mirror.join(format!("hb/t-{id}/1-abc/nb-1-big-Data.db"));
    std::fs::create_dir_all(mirrored.parent().unwrap()).unwrap();
    std::fs::write(&mirrored, b"outside the bucket").unwrap();
    let outside = tree(&scene.outside);
    let key = format!("data/hb/t-{id}/1-abc/nb-1-big-Data.db");
    let name = write_manifest("linked", "linked", &manifest(&[(&key, 18)]));
    symlink(&mirror, node("linked").join("data")).unwrap();
    let output = daedalus(&[
        "remove-backup",
        "--storage-location",
        &location("linked"),
        "--backup-name",
        &name,
    ]);
    assert_eq!(tree(&scene.outside), outside, "{output:?}");
    assert!(mirrored.exists());

    // Sizes past any real file, summed: reported, never a panic.
    let huge = write_manifest(
        "huge",
        "huge",
        &manifest(&[(&key, u64::MAX), (&format!("{key}2"), u64::MAX)]),
    );
    let output = daedalus(&["list", "--storage-location", &location("huge"), "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(&huge));

    // A manifest nested deeper than any, and one larger than the sidecar reads: named, not read.
    let dir = node("deep").join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("deep-{schema}-1.json")),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    let output = daedalus(&["list", "--storage-location", &location("deep")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a backup manifest"));
    let dir = node("large").join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::File::create(dir.join(format!("large-{schema}-1.json")))
        .unwrap()
        .set_len(64 * 1024 * 1024 + 1)
        .unwrap();
    let output = daedalus(&["list", "--storage-location", &location("large")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("more than the 64 MiB"));
    assert_eq!(tree(&scene.outside), outside);
}

/// The names of the `truncated-*` snapshots of `hb.t`.
fn truncation_snapshots() -> Vec<String> {
    cassandra::truncation_snapshots(NODE, "hb", "t")
}

/// The table's live SSTable files (snapshots aside), with their bytes.
fn live_files() -> BTreeMap<PathBuf, String> {
    let dir = cassandra::table_dir(NODE, "hb", "t").expect("hb.t exists");
    tree_except(&dir, &[&dir.join("snapshots")])
}

/// Requests a sidecar cannot refuse when submitted (it was told nothing of the node's directories), refused from
/// what Cassandra reports before anything changes: a staging directory that is the data directory however spelled,
/// a keyspace or table directory, a parent of the data; HARDLINKS across filesystems. Then what must work: a user's
/// own truncation snapshot kept by CLEANUP, and CassKop's and Icarus's staging directories.
#[test]
fn misconfigured_live_restores_fail_before_anything_changes() {
    let _turn = node();
    cassandra::solo(NODE);
    let scene = Scene::new("misconfigured");
    let cql_address = format!("127.0.0.{NODE}:9042");
    let sidecar = Sidecar::start(&[
        "--jmx-service",
        &cassandra::jmx_service(NODE),
        "--cql-address",
        &cql_address,
    ]);
    let backup = good_backup(&sidecar, &scene);
    let before = rows();
    let table_dir = cassandra::table_dir(NODE, "hb", "t").unwrap();
    let data = table_dir.parent().unwrap().parent().unwrap().to_path_buf();
    let innocent = scene.root.join("innocent");
    symlink(&data, &innocent).unwrap();
    let files = live_files();
    let restore = |strategy: &str, source: String| {
        json!({"type": "restore", "storageLocation": backup.location, "snapshotTag": "good",
               "restorationStrategyType": strategy, "import": {"sourceDir": source}})
    };
    let text = |path: &Path| path.display().to_string();
    for (source, why) in [
        (text(&data), "is the data directory"),
        (format!("{}//", text(&data)), "is the data directory"),
        (text(&data).replacen('/', "/./", 2), "is the data directory"),
        (text(&innocent), "is the data directory"),
        (text(&data.join("hb")), "keyspace directory"),
        (text(&table_dir), "keyspace directory"),
        (text(&innocent.join("hb/new")), "keyspace directory"),
        (text(data.parent().unwrap()), "holds the data directory"),
    ] {
        for strategy in ["IMPORT", "HARDLINKS"] {
            let done = run(&sidecar, restore(strategy, source.clone()), "FAILED");
            failed_saying(&done, why);
            failed_saying(&done, "import.sourceDir");
            assert_eq!(live_files(), files, "{strategy} {source}");
            assert_eq!(rows(), before, "{strategy} {source}");
        }
    }

    // HARDLINKS from another filesystem would truncate every table and then fail to link: refused first.
    let shm = Path::new("/dev/shm");
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        std::fs::metadata(shm).expect("/dev/shm").dev(),
        std::fs::metadata(&data).unwrap().dev(),
        "the test needs /dev/shm on another filesystem than the node's data"
    );
    let elsewhere = shm.join(format!("daedalus-hostile-{}", std::process::id()));
    let done = run(&sidecar, restore("HARDLINKS", text(&elsewhere)), "FAILED");
    failed_saying(&done, "on another filesystem");
    assert_eq!(
        truncation_snapshots(),
        Vec::<String>::new(),
        "nothing was truncated"
    );
    assert_eq!(rows(), before);
    let _ = std::fs::remove_dir_all(&elsewhere);

    // A user's own TRUNCATE before the restore: its snapshot is theirs, and stays.
    cql("TRUNCATE hb.t");
    let users = truncation_snapshots();
    assert_eq!(users.len(), 1, "auto_snapshot took the user's snapshot");
    let staging = scene.staging.join("import");
    let done = run(&sidecar, restore("IMPORT", text(&staging)), "COMPLETED");
    assert_eq!(rows(), before);
    assert_eq!(truncation_snapshots(), users, "{done}");
    let cleanup = &done["response"]["cleanup"];
    assert_eq!(
        cleanup["removedSnapshots"].as_array().unwrap().len(),
        1,
        "{done}"
    );
    assert_eq!(
        cleanup["keptSnapshots"],
        json!([format!("hb.t/{}", users[0])]),
        "{done}"
    );
    assert!(
        !staging.exists(),
        "the staging directory the restore created is gone"
    );

    // CassKop's staging directory (inside the data directory) and Icarus's (beside it, as a file:// URI). The node
    // outlives a run, and CLEANUP removes only its own backup's files: what a run cut short left there goes first.
    let node_dir = cassandra::node_dir(NODE);
    for staging in [
        data.join("downloadedsstables"),
        node_dir.join("downloadedsstables"),
    ] {
        support::scratch::remove_leftover(&staging);
    }
    for (strategy, source, made) in [
        (
            "IMPORT",
            text(&data.join("downloadedsstables")),
            data.join("downloadedsstables"),
        ),
        (
            "HARDLINKS",
            format!("file://{}/downloadedsstables", text(&node_dir)),
            node_dir.join("downloadedsstables"),
        ),
    ] {
        cql("DELETE FROM hb.t WHERE id IN (0, 1, 2); UPDATE hb.t SET v = 'changed' WHERE id = 3");
        assert_ne!(rows(), before);
        run(&sidecar, restore(strategy, source.clone()), "COMPLETED");
        assert_eq!(rows(), before, "{strategy} {source}");
        assert!(
            !made.exists(),
            "{strategy}: CLEANUP removed {}",
            made.display()
        );
    }
}
