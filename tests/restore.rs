//! Restores of real backups into a real Cassandra node, checked by what CQL reads afterwards: a node of its own
//! (node 10, a one-node cluster, so every row is its own) backed up to MinIO, its data then deleted, overwritten and
//! truncated, and restored with each strategy; faults of the store, the bucket and the node; IN_PLACE with the
//! command line on the stopped node, and into a node that never ran (a new cluster).
//!
//! The tests share node 10, and IN_PLACE stops it: they take turns ([`node`]).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};
use support::builder::SidecarBuilder;
use support::scratch::Scratch;
use support::stores::{self, Store};
use support::{Sidecar, cassandra, eventually, run, wait_for_state};

/// The node the restores go into.
const NODE: usize = 10;
const BUCKET: &str = "restores";

/// Node 10 running, and this test's turn with it.
fn node() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    cassandra::solo(NODE);
    turn
}

fn cql(statement: &str) -> Vec<Vec<String>> {
    cassandra::cql(NODE, statement)
}

/// A sidecar for node 10 that reaches `store`.
fn sidecar_for(store: &Store) -> Sidecar {
    sidecar_with_jmx(store, &cassandra::jmx_service(NODE))
}

fn sidecar_with_jmx(store: &Store, jmx_service: &str) -> Sidecar {
    // No --cql-address: the sidecar asks Cassandra (127.0.0.10, where the default loopback address is another node).
    SidecarBuilder::new()
        .store(store)
        .jmx_service(jmx_service)
        .s3_credentials()
        .start()
}

/// A keyspace on node 10 (replicated once: the node holds every row) with `tables`, each `(id int PRIMARY KEY, v
/// text)` holding `rows` rows, flushed to SSTables.
fn keyspace_with_rows(sidecar: &Sidecar, keyspace: &str, tables: &[&str], rows: usize) {
    cql(&format!("DROP KEYSPACE IF EXISTS {keyspace}"));
    cql(&format!(
        "CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    ));
    for table in tables {
        cql(&format!(
            "CREATE TABLE {keyspace}.{table} (id int PRIMARY KEY, v text)"
        ));
        let inserts: String = (0..rows)
            .map(|id| {
                format!("INSERT INTO {keyspace}.{table} (id, v) VALUES ({id}, 'value {id}');")
            })
            .collect();
        cql(&format!("BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"));
    }
    run(
        sidecar,
        json!({"type": "flush", "keyspace": keyspace}),
        "COMPLETED",
    );
}

/// Every row of a table, read by CQL.
fn rows(keyspace: &str, table: &str) -> BTreeMap<i32, String> {
    cql(&format!("SELECT id, v FROM {keyspace}.{table}"))
        .into_iter()
        .map(|row| (row[0].parse().expect("an id"), row[1].clone()))
        .collect()
}

/// Deletes, overwrites and adds rows: what a restore must undo.
fn change_rows(keyspace: &str, table: &str) {
    cql(&format!(
        "DELETE FROM {keyspace}.{table} WHERE id IN (0, 1, 2, 3, 4); \
         UPDATE {keyspace}.{table} SET v = 'changed' WHERE id = 5; \
         INSERT INTO {keyspace}.{table} (id, v) VALUES (1000, 'after the backup')"
    ));
}

/// Backs up `entities` of node 10 under `tag`; returns the backup's name.
fn backup(sidecar: &Sidecar, entities: &str, tag: &str) -> String {
    let done = run(
        sidecar,
        json!({"type": "backup", "storageLocation": format!("s3://{BUCKET}"), "entities": entities,
               "snapshotTag": tag, "uploadClusterTopology": true}),
        "COMPLETED",
    );
    done["response"]["snapshotTag"]
        .as_str()
        .expect("the backup's name")
        .to_string()
}

/// `s3://restores/<cluster>/<dc>/<host id>` of node 10.
fn node_location(sidecar: &Sidecar) -> String {
    let topology = sidecar.client().get("/topology").json();
    let node = &topology["topology"][0];
    format!(
        "s3://{BUCKET}/{}/{}/{}",
        topology["clusterName"].as_str().unwrap(),
        node["dc"].as_str().unwrap(),
        node["nodeId"].as_str().unwrap()
    )
}

fn restore_body(strategy: &str, tag: &str, entities: &str, source_dir: &Path) -> Value {
    json!({
        "type": "restore",
        "storageLocation": format!("s3://{BUCKET}"),
        "snapshotTag": tag,
        "entities": entities,
        "restorationStrategyType": strategy,
        "import": {"sourceDir": source_dir.display().to_string()},
    })
}

/// The files under `dir`, recursively (none when it is gone).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

/// Snapshot directories named `truncated-*` of a table on node 10.
fn truncation_snapshots(keyspace: &str, table: &str) -> usize {
    cassandra::truncation_snapshots(NODE, keyspace, table).len()
}

#[test]
fn import_and_hardlinks_bring_the_backed_up_rows_back() {
    let _node = node();
    let store = Store::minio_with_bucket(BUCKET);
    let sidecar = sidecar_for(&store);
    keyspace_with_rows(&sidecar, "rt", &["t", "indexed"], 60);
    cql("CREATE INDEX IF NOT EXISTS ON rt.indexed (v)");
    let before = (rows("rt", "t"), rows("rt", "indexed"));
    backup(&sidecar, "rt", "rt1");

    change_rows("rt", "t");
    cql("TRUNCATE rt.indexed");
    assert_ne!(rows("rt", "t"), before.0);
    let downloads = Scratch::absent("import");
    // No phase: every phase in order.
    let done = run(
        &sidecar,
        restore_body("import", "rt1", "rt", &downloads),
        "COMPLETED",
    );
    assert_eq!((rows("rt", "t"), rows("rt", "indexed")), before, "{done}");
    assert_eq!(
        cql("SELECT id FROM rt.indexed WHERE v = 'value 7'"),
        [["7".to_string()]],
        "the secondary index answers for the restored rows"
    );
    let response = &done["response"];
    assert_eq!(
        response["phases"],
        json!(["INIT", "DOWNLOAD", "TRUNCATE", "IMPORT", "CLEANUP"])
    );
    assert!(
        response["download"]["downloadedFiles"].as_u64().unwrap() > 0,
        "{done}"
    );
    assert!(
        files_under(&downloads).is_empty(),
        "CLEANUP removes the downloads"
    );
    assert_eq!(
        truncation_snapshots("rt", "t"),
        0,
        "CLEANUP removes the truncation's snapshot"
    );

    // HARDLINKS, one request per phase, as Icarus's coordinator sends them.
    change_rows("rt", "t");
    change_rows("rt", "indexed");
    let downloads = Scratch::absent("hardlinks");
    for phase in ["INIT", "DOWNLOAD", "TRUNCATE", "IMPORT"] {
        let mut body = restore_body("HARDLINKS", "rt1", "rt", &downloads);
        body["restorationPhase"] = json!(phase);
        run(&sidecar, body, "COMPLETED");
    }
    assert_eq!((rows("rt", "t"), rows("rt", "indexed")), before);
    assert!(
        !files_under(&downloads).is_empty(),
        "downloads stay until CLEANUP"
    );
    assert!(truncation_snapshots("rt", "t") > 0);
    let mut cleanup = restore_body("HARDLINKS", "rt1", "rt", &downloads);
    cleanup["restorationPhase"] = json!("cleanup");
    run(&sidecar, cleanup, "COMPLETED");
    assert!(files_under(&downloads).is_empty());
    assert_eq!(truncation_snapshots("rt", "t"), 0);
    assert_eq!((rows("rt", "t"), rows("rt", "indexed")), before);
}

#[test]
fn rename_recreates_dropped_tables_and_leaves_others_alone() {
    let _node = node();
    let store = Store::minio_with_bucket(BUCKET);
    let sidecar = sidecar_for(&store);
    keyspace_with_rows(&sidecar, "rn", &["a", "b", "c"], 30);
    let (a, b) = (rows("rn", "a"), rows("rn", "b"));
    let b_dir = cassandra::table_dir(NODE, "rn", "b").unwrap();
    backup(&sidecar, "rn", "rn1");

    // After the backup: b dropped, a2 and d created, c changed.
    cql("DROP TABLE rn.b");
    cql("CREATE TABLE rn.a2 (id int PRIMARY KEY, v text)");
    cql("INSERT INTO rn.a2 (id, v) VALUES (77, 'a2 before the restore')");
    cql("CREATE TABLE rn.d (id int PRIMARY KEY, v text)");
    cql("INSERT INTO rn.d (id, v) VALUES (1, 'd')");
    change_rows("rn", "c");
    let (c, d) = (rows("rn", "c"), rows("rn", "d"));

    let mut body = restore_body("IMPORT", "rn1", "rn.a,rn.b", &Scratch::absent("rename"));
    body["rename"] = json!({"rn.a": "rn.a2"});
    let done = run(&sidecar, body, "COMPLETED");
    assert_eq!(
        done["response"]["tables"],
        json!(["rn.a2", "rn.b"]),
        "{done}"
    );
    assert_eq!(rows("rn", "a2"), a, "a's backed-up rows, under a2");
    assert_eq!(rows("rn", "b"), b, "the dropped table, back with its rows");
    assert!(
        b_dir.is_dir(),
        "b is recreated with its original id, in its original directory {}",
        b_dir.display()
    );
    let id: String =
        cql("SELECT id FROM system_schema.tables WHERE keyspace_name = 'rn' AND table_name = 'b'")
            [0][0]
            .replace('-', "");
    assert!(
        b_dir.to_string_lossy().ends_with(&id),
        "{id} vs {}",
        b_dir.display()
    );
    assert_eq!(rows("rn", "c"), c, "entities leave c alone");
    assert_eq!(
        rows("rn", "d"),
        d,
        "a table created after the backup is left alone"
    );
    assert_eq!(rows("rn", "a").len(), 30, "the rename source is left alone");
}

#[test]
fn a_corrupt_object_or_a_stopped_store_fails_naming_it_and_imports_nothing() {
    let _node = node();
    let mut store = Store::minio_with_bucket(BUCKET);
    let sidecar = sidecar_for(&store);
    keyspace_with_rows(&sidecar, "fa", &["t"], 40);
    cql("CREATE TABLE IF NOT EXISTS fa.big (id int PRIMARY KEY, v text)");
    cassandra::load_rows(NODE, "fa", "big", 6000, 4000);
    run(
        &sidecar,
        json!({"type": "flush", "keyspace": "fa"}),
        "COMPLETED",
    );
    let before = (
        rows("fa", "t"),
        cql("SELECT count(*) FROM fa.big")[0][0].clone(),
    );
    let name = backup(&sidecar, "fa", "fa1");
    change_rows("fa", "t");
    let changed = rows("fa", "t");

    // One object corrupted in the bucket (same size, other bytes).
    let objects = store.objects(BUCKET);
    let (key, size) = objects
        .iter()
        .find(|(key, _)| key.contains("/data/fa/t-") && key.ends_with("-Data.db"))
        .map(|(k, s)| (k.clone(), *s))
        .expect("t's Data.db in the bucket");
    let original = store.get(BUCKET, &key);
    store.put(BUCKET, &key, &vec![b'x'; usize::try_from(size).unwrap()]);
    let downloads = Scratch::absent("faults");
    let failed = run(
        &sidecar,
        restore_body("IMPORT", "fa1", "fa", &downloads),
        "FAILED",
    );
    let error = failed["errors"][0]["message"].as_str().unwrap();
    assert!(error.contains(&key), "the error names the object: {error}");
    assert_eq!(
        rows("fa", "t"),
        changed,
        "nothing truncated, nothing imported"
    );
    assert!(
        files_under(&downloads)
            .iter()
            .all(|f| !f.ends_with(key.rsplit('/').next().unwrap())),
        "the corrupt file is not kept"
    );
    store.put(BUCKET, &key, &original);

    // The store killed mid-download (the download throttled so it is still going).
    let mut slow = restore_body("IMPORT", "fa1", "fa", &downloads);
    // One connection at a time, so the bytes the kernel already holds for open streams (socket buffers of a few
    // MiB each) cannot hold the whole rest of the backup.
    slow["bandwidth"] = json!("2MBPS");
    slow["concurrentConnections"] = json!(1);
    slow["retry"] = json!({"interval": 1, "maxAttempts": 1});
    let client = sidecar.client();
    let id = client.submit(slow)["id"].as_str().unwrap().to_string();
    eventually("the download is under way", || {
        let operation = client.operation(&id);
        (operation["progress"].as_f64().unwrap_or(0.0) > 0.1).then_some(())
    });
    store.kill();
    let failed = wait_for_state(&sidecar, &id, "FAILED");
    let error = failed["errors"][0]["message"].as_str().unwrap();
    assert!(
        error.contains(&format!("s3://{BUCKET}")),
        "names the store: {error}"
    );
    assert!(error.contains("/data/fa/"), "names the object: {error}");
    assert_eq!(rows("fa", "t"), changed, "nothing imported");

    // Again with the store back: only what is missing is downloaded.
    store.restart();
    let done = run(
        &sidecar,
        restore_body("IMPORT", "fa1", "fa", &downloads),
        "COMPLETED",
    );
    let stats = &done["response"]["download"];
    assert!(stats["keptFiles"].as_u64().unwrap() > 0, "{done}");
    assert!(
        stats["downloadedFiles"].as_u64().unwrap() < stats["files"].as_u64().unwrap(),
        "{done}"
    );
    assert_eq!(done["response"]["backup"], json!(name));
    assert_eq!(
        (
            rows("fa", "t"),
            cql("SELECT count(*) FROM fa.big")[0][0].clone()
        ),
        before
    );
}

#[test]
fn a_cancel_stops_the_restore_and_never_leaves_a_table_half_imported() {
    let _node = node();
    let store = Store::minio_with_bucket(BUCKET);
    let sidecar = sidecar_for(&store);
    let tables = ["t1", "t2", "t3", "t4", "t5", "t6"];
    keyspace_with_rows(&sidecar, "ca", &tables, 50);
    backup(&sidecar, "ca", "ca1");
    let client = sidecar.client();

    // In DOWNLOAD: throttled, so the cancel arrives while files are on their way.
    let downloads = Scratch::absent("cancel");
    let mut body = restore_body("IMPORT", "ca1", "ca", &downloads);
    body["restorationPhase"] = json!("DOWNLOAD");
    body["bandwidth"] = json!("1KBPS");
    let id = client.submit(body)["id"].as_str().unwrap().to_string();
    wait_for_state(&sidecar, &id, "RUNNING");
    client.delete(&format!("/operations/{id}"));
    wait_for_state(&sidecar, &id, "CANCELLED");
    assert!(
        files_under(&downloads)
            .iter()
            .all(|f| !f.to_string_lossy().contains("daedalus-download")),
        "no partial download is left: {:?}",
        files_under(&downloads)
    );

    // In IMPORT: every table is either wholly back or still empty after the truncation.
    for phase in ["DOWNLOAD", "TRUNCATE"] {
        let mut body = restore_body("IMPORT", "ca1", "ca", &downloads);
        body["restorationPhase"] = json!(phase);
        run(&sidecar, body, "COMPLETED");
    }
    let mut body = restore_body("IMPORT", "ca1", "ca", &downloads);
    body["restorationPhase"] = json!("IMPORT");
    let id = client.submit(body)["id"].as_str().unwrap().to_string();
    client.delete(&format!("/operations/{id}"));
    let ended = eventually("the import ends", || {
        let operation = client.operation(&id);
        let state = operation["state"].as_str().unwrap().to_string();
        matches!(state.as_str(), "CANCELLED" | "COMPLETED").then_some(state)
    });
    for table in tables {
        let count = rows("ca", table).len();
        assert!(
            count == 0 || count == 50,
            "{table} has {count} rows after a {ended} import"
        );
    }
}

#[test]
fn bad_nodes_and_tokens_fail_clearly() {
    let _node = node();
    let store = Store::minio_with_bucket(BUCKET);
    let sidecar = sidecar_for(&store);
    keyspace_with_rows(&sidecar, "tk", &["t"], 10);
    let name = backup(&sidecar, "tk", "tk1");
    let location = node_location(&sidecar);

    // A node that does not answer.
    let nowhere = sidecar_with_jmx(&store, "127.0.0.1:1");
    // Bound, not a temporary: the restore writes its journal there after this line, and the drop removes it.
    let down = Scratch::absent("down");
    let mut body = restore_body("IMPORT", "tk1", "tk", &down);
    body["storageLocation"] = json!(location);
    let failed = run(&nowhere, body.clone(), "FAILED");
    let error = failed["errors"][0]["message"].as_str().unwrap();
    assert!(error.contains("cannot be reached"), "{error}");

    // The backup of a node that owned other tokens: node 10's manifest with the tokens changed, under another
    // node's prefix (DOWNLOAD checks the tokens before it fetches anything).
    let prefix = location.trim_start_matches(&format!("s3://{BUCKET}/"));
    let manifest_key = store
        .objects(BUCKET)
        .into_keys()
        .find(|key| key.starts_with(&format!("{prefix}/manifests/{name}")))
        .expect("the backup's manifest");
    let mut manifest: Value = serde_json::from_slice(&store.get(BUCKET, &manifest_key)).unwrap();
    manifest["tokens"] = json!(["-3074457345618258603", "3074457345618258602"]);
    let other_node = format!("{}/other-node", prefix.rsplit_once('/').unwrap().0);
    store.put(
        BUCKET,
        &manifest_key.replace(prefix, &other_node),
        manifest.to_string().as_bytes(),
    );
    body["storageLocation"] = json!(format!("s3://{BUCKET}/{other_node}"));
    let failed = run(&sidecar, body, "FAILED");
    let error = failed["errors"][0]["message"].as_str().unwrap();
    assert!(error.contains("tokens differ"), "{error}");
    assert!(
        error.contains("-9223372036854775808") && error.contains("3074457345618258602"),
        "shows both sides: {error}"
    );

    // An unknown tag names the ones there are.
    let failed = run(
        &sidecar,
        restore_body("IMPORT", "nosuch", "tk", &Scratch::absent("tag")),
        "FAILED",
    );
    let error = failed["errors"][0]["message"].as_str().unwrap();
    assert!(error.contains("tk1"), "{error}");
}

/// `daedalus restore ...` against node `node`'s files, with the test stores' settings.
fn restore_command(store: &Store, args: &[&str]) -> std::process::Output {
    support::daedalus_command()
        .arg("restore")
        .args(store.daedalus_args())
        .args(args)
        .envs(stores::S3_CREDENTIALS)
        .output()
        .expect("daedalus restore runs")
}

#[test]
fn in_place_restores_a_stopped_node_from_the_command_line() {
    let _node = node();
    let store = Store::minio_with_bucket(BUCKET);
    let sidecar = sidecar_for(&store);
    keyspace_with_rows(&sidecar, "ip", &["t"], 40);
    let before = rows("ip", "t");
    backup(&sidecar, "ip", "ip1");
    let location = node_location(&sidecar);
    change_rows("ip", "t");

    // Refused at once while the node runs.
    let mut body = json!({"type": "restore", "storageLocation": location, "snapshotTag": "ip1",
                          "restorationStrategyType": "IN_PLACE", "entities": "ip"});
    let failed = run(&sidecar, body.clone(), "FAILED");
    assert!(
        failed["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("stop Cassandra"),
        "{failed}"
    );

    run(&sidecar, json!({"type": "drain"}), "COMPLETED");
    cassandra::stop(NODE);
    let dir = cassandra::node_dir(NODE);
    // As an init container knows its node: by its host name (here the address, which loopback names are), found in
    // the topology the backup uploaded.
    let by_host_name = format!("{}/127.0.0.{NODE}", location.rsplit_once('/').unwrap().0);
    let marker_dir = Scratch::absent("marker");
    let marker = marker_dir.join("daedalus/restored.json");
    let (dir_arg, conf_arg, marker_arg) = (
        dir.display().to_string(),
        dir.join("conf").display().to_string(),
        marker.display().to_string(),
    );
    let args = [
        "--storage-location",
        &by_host_name,
        "--resolve-host-id-from-topology",
        "--snapshot-tag",
        "ip1",
        "--restoration-strategy-type",
        "IN_PLACE",
        "--entities",
        "ip",
        "--cassandra-dir",
        &dir_arg,
        "--config-directory",
        &conf_arg,
        "--jmx-service",
        &cassandra::jmx_service(NODE),
        "--restored-marker",
        &marker_arg,
    ];
    let output = restore_command(&store, &args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("restore of ip1-"));
    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(&marker).unwrap()).unwrap();
    assert_eq!(recorded["snapshotTag"], "ip1");
    assert!(
        recorded["backup"].as_str().unwrap().starts_with("ip1-"),
        "{recorded}"
    );

    // The pod starts again (the init container runs on every start): the marker says this restore is done, so the
    // node's files are left alone. A restore would empty the commit-log directory.
    let commit_log = dir.join("commitlog/CommitLog-7-1.log");
    std::fs::create_dir_all(commit_log.parent().unwrap()).unwrap();
    std::fs::write(&commit_log, b"written after the restore").unwrap();
    let planted = Planted(commit_log.clone());
    let again = restore_command(&store, &args);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already complete"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert!(commit_log.exists(), "the second run restored again");
    drop(planted);
    cassandra::solo(NODE);
    assert_eq!(rows("ip", "t"), before);
    body["entities"] = json!("nosuch");
    let failed = run(&sidecar_for(&store), body, "FAILED");
    assert!(
        failed["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("stop Cassandra")
    );
}

/// The SSTable prefix (`<version>-<id>-<format>`) of a component file name, or `None` for other files.
fn sstable_prefix(file_name: &str) -> Option<String> {
    let parts: Vec<&str> = file_name.splitn(4, '-').collect();
    (parts.len() == 4 && parts[3].contains('.')).then(|| parts[..3].join("-"))
}

#[test]
fn a_bucket_laid_out_by_esop_restores() {
    let _node = node();
    let store = Store::minio_with_bucket(BUCKET);
    let sidecar = sidecar_for(&store);
    keyspace_with_rows(&sidecar, "es", &["t"], 25);
    let before = rows("es", "t");
    let table_dir = cassandra::table_dir(NODE, "es", "t").unwrap();
    let table_dir_name = table_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let id = table_dir_name.rsplit('-').next().unwrap().to_string();
    run(
        &sidecar,
        json!({"type": "snapshot", "snapshotTag": "esop-made", "entities": "es"}),
        "COMPLETED",
    );
    let snapshot = table_dir.join("snapshots/esop-made");

    // The bucket as Esop writes it (file:// store): every SSTable file under
    // data/<ks>/<table>-<id>/<generation>-<digest>/<file>, hashed with Esop's CRC option, and the manifest.
    let bucket_root = Scratch::absent("esop-bucket");
    let node_path = "esop-cluster/dc1/esop-node";
    let node_dir = bucket_root.join("bucket").join(node_path);
    let mut sstables: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut total = 0;
    for entry in std::fs::read_dir(&snapshot).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(prefix) = sstable_prefix(&name) else {
            continue;
        };
        let digest_file = snapshot.join(format!("{prefix}-Digest.crc32"));
        let digest = std::fs::read_to_string(&digest_file)
            .unwrap()
            .trim()
            .to_string();
        let generation = prefix.split('-').nth(1).unwrap();
        let key = format!("data/es/{table_dir_name}/{generation}-{digest}/{name}");
        let bytes = std::fs::read(entry.path()).unwrap();
        let target = node_dir.join(&key);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, &bytes).unwrap();
        total += bytes.len();
        sstables.entry(prefix).or_default().push(json!({
            "objectKey": key, "type": "FILE", "size": bytes.len(),
            "hash": crc32fast::hash(&bytes).to_string(),
        }));
    }
    assert!(!sstables.is_empty());
    let tokens = cassandra::jmx(
        NODE,
        &[
            "--json",
            "get",
            "org.apache.cassandra.db:type=StorageService",
            "Tokens",
        ],
    );
    let tokens: Value = serde_json::from_str(&tokens).unwrap();
    let schema = cql("SELECT schema_version FROM system.local")[0][0].clone();
    let name = format!("weekly-{schema}-1718029212345");
    let manifest = json!({
        "snapshot": {"name": name, "keyspaces": {"es": {"tables": {"t": {
            "sstables": sstables, "id": id,
            "schemaContent": std::fs::read_to_string(snapshot.join("schema.cql")).unwrap(),
        }}}}},
        "tokens": tokens, "schemaVersion": schema, "size": total,
    });
    // Jackson's pretty printer: `"key" : value`.
    let text = serde_json::to_string_pretty(&manifest)
        .unwrap()
        .replace("\": ", "\" : ");
    std::fs::create_dir_all(node_dir.join("manifests")).unwrap();
    std::fs::write(node_dir.join(format!("manifests/{name}.json")), text).unwrap();
    run(
        &sidecar,
        json!({"type": "clear-snapshot", "snapshotTag": "esop-made"}),
        "COMPLETED",
    );

    cql("TRUNCATE es.t");
    let mut body = restore_body("IMPORT", "weekly", "es", &Scratch::absent("esop-import"));
    body["storageLocation"] = json!(format!(
        "file://{}/bucket/{node_path}",
        bucket_root.display()
    ));
    let done = run(&sidecar, body, "COMPLETED");
    assert_eq!(done["response"]["backup"], json!(name));
    assert_eq!(rows("es", "t"), before);
}

/// Node 11 has never run: its directories and a `cassandra.yaml` of a fresh node, with tokens of its own choosing.
const NEW_NODE: usize = 11;

#[test]
fn in_place_into_a_new_cluster_starts_with_the_backed_up_tokens_and_data() {
    let _node = node();
    let store = Store::minio_with_bucket(BUCKET);
    let sidecar = sidecar_for(&store);
    keyspace_with_rows(&sidecar, "nc", &["t"], 30);
    let before = rows("nc", "t");
    // Everything, system_schema included: a new cluster's node needs the backup's schema.
    let name = backup(&sidecar, "", "nc1");
    let location = node_location(&sidecar);
    let backed_up_tokens = cassandra::jmx(
        NODE,
        &[
            "--json",
            "get",
            "org.apache.cassandra.db:type=StorageService",
            "Tokens",
        ],
    );

    cassandra::stop(NEW_NODE);
    let dir = cassandra::node_dir(NEW_NODE);
    let _ = std::fs::remove_dir_all(&dir);
    cassandra::configure(NEW_NODE);
    // A fresh node would pick tokens of its own: no initial_token, several vnodes, and bootstrapping on.
    let yaml_path = dir.join("conf/cassandra.yaml");
    let yaml: String = std::fs::read_to_string(&yaml_path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("initial_token") && !line.starts_with("auto_bootstrap"))
        .map(|line| {
            if line.starts_with("num_tokens") {
                "num_tokens: 4".to_string()
            } else {
                line.to_string()
            }
        })
        .map(|line| line + "\n")
        .collect();
    std::fs::write(&yaml_path, yaml).unwrap();

    let output = restore_command(
        &store,
        &[
            "--storage-location",
            &location,
            "--snapshot-tag",
            &name,
            "--restoration-strategy-type",
            "in_place",
            "--restore-into-new-cluster",
            "--update-cassandra-yaml",
            "--cassandra-dir",
            &dir.display().to_string(),
            "--config-directory",
            &dir.join("conf").display().to_string(),
            "--jmx-service",
            &cassandra::jmx_service(NEW_NODE),
            "--json",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    assert!(yaml.contains("auto_bootstrap: false"), "{yaml}");
    assert!(
        yaml.contains("initial_token: -9223372036854775808"),
        "{yaml}"
    );

    cassandra::solo_keeping_config(NEW_NODE);
    let tokens = cassandra::jmx(
        NEW_NODE,
        &[
            "--json",
            "get",
            "org.apache.cassandra.db:type=StorageService",
            "Tokens",
        ],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&tokens).unwrap(),
        serde_json::from_str::<Value>(&backed_up_tokens).unwrap()
    );
    let restored: BTreeMap<i32, String> = cassandra::cql(NEW_NODE, "SELECT id, v FROM nc.t")
        .into_iter()
        .map(|row| (row[0].parse().unwrap(), row[1].clone()))
        .collect();
    assert_eq!(restored, before);
    cassandra::stop(NEW_NODE);
}

#[test]
fn commit_logs_replay_to_the_point_in_time() {
    let _node = node();
    let store = Store::minio_with_bucket(BUCKET);
    let sidecar = sidecar_for(&store);
    keyspace_with_rows(&sidecar, "pt", &["t"], 10);
    backup(&sidecar, "pt", "pt1");
    let location = node_location(&sidecar);
    let snapshot_rows = rows("pt", "t");
    // Written after the backup, on either side of the point in time T (whole seconds, as Cassandra reads it); the
    // write timestamps say which side, whatever the clock does meanwhile.
    let point_in_time = (chrono::Utc::now().timestamp() + 3600) * 1000;
    let micros = |offset_seconds: i64| (point_in_time / 1000 + offset_seconds) * 1_000_000;
    cql(&format!(
        "INSERT INTO pt.t (id, v) VALUES (100, 'before T') USING TIMESTAMP {};
         INSERT INTO pt.t (id, v) VALUES (101, 'at T') USING TIMESTAMP {};
         INSERT INTO pt.t (id, v) VALUES (200, 'after T') USING TIMESTAMP {}",
        micros(-60),
        micros(0),
        micros(60)
    ));
    // Cassandra replays a segment only as far as its last sync marker, and the harness's nodes sync the commit log
    // every 10 s (`commitlog_sync: periodic`): wait for one sync past the writes before backing the segments up,
    // two periods, as the sync thread can run late on a loaded machine.
    std::thread::sleep(std::time::Duration::from_secs(21));
    // The segments that hold those writes, as Cassandra has them now.
    run(
        &sidecar,
        json!({"type": "commitlog-backup", "storageLocation": location}),
        "COMPLETED",
    );

    cassandra::stop(NODE);
    let dir = cassandra::node_dir(NODE);
    let common = |args: &[&str]| {
        let mut all = vec!["--storage-location", location.as_str()];
        all.extend(args);
        all.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let dir_text = dir.display().to_string();
    let conf = dir.join("conf").display().to_string();
    let restore_args = common(&[
        "--snapshot-tag",
        "pt1",
        "--restoration-strategy-type",
        "IN_PLACE",
        "--entities",
        "pt",
        "--cassandra-dir",
        &dir_text,
        "--config-directory",
        &conf,
        "--jmx-service",
        &cassandra::jmx_service(NODE),
    ]);
    let output = restore_command(
        &store,
        &restore_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Something of the operator's in the commit-log directory: only segments are moved aside.
    let note = dir.join("commitlog/README");
    std::fs::write(&note, b"the operator's note").unwrap();
    let downloads = Scratch::absent("commitlogs");
    let end = point_in_time.to_string();
    let commitlog_dir = dir.join("commitlog").display().to_string();
    let download_dir = downloads.display().to_string();
    let args = common(&[
        "--timestamp-start",
        "0",
        "--timestamp-end",
        &end,
        "--commitlog-download-dir",
        &download_dir,
        "--commit-log-dir",
        &commitlog_dir,
        "--config-directory",
        &conf,
        "--jmx-service",
        &cassandra::jmx_service(NODE),
    ]);
    let output = support::daedalus_command()
        .arg("commitlog-restore")
        .args(store.daedalus_args())
        .args(&args)
        .envs(stores::S3_CREDENTIALS)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read(&note).unwrap(), b"the operator's note");
    std::fs::remove_file(&note).unwrap();
    let properties = dir.join("conf/commitlog_archiving.properties");
    let planted = Planted(properties.clone());
    assert!(
        std::fs::read_to_string(&properties)
            .unwrap()
            .contains("restore_point_in_time=")
    );

    cassandra::solo(NODE);
    // The replay is done once: later starts of the node must not replay these segments again.
    drop(planted);
    let mut expected = snapshot_rows;
    expected.insert(100, "before T".into());
    expected.insert(101, "at T".into());
    assert_eq!(rows("pt", "t"), expected, "rows up to T, none after");
}

/// A file among the node's own that must not outlive the test, even one that fails: the node outlives the run, and
/// its next start would read the file (a commit-log segment to replay, a replay's configuration).
struct Planted(PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.0)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("removing {}: {error}", self.0.display());
        }
    }
}

/// A tmpfs of `size` (e.g. `1m`) mounted on a new directory, unmounted when dropped.
struct SmallFilesystem(PathBuf);

impl SmallFilesystem {
    /// `None` where this process may not mount (not root, or no mount namespace of its own): the caller skips,
    /// saying so.
    fn mount(name: &str, size: &str) -> Option<SmallFilesystem> {
        let dir = std::env::temp_dir().join(format!("daedalus-full-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output();
        match output {
            Ok(output) if output.status.success() => Some(SmallFilesystem(dir)),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_string(),
                    Err(error) => error.to_string(),
                };
                eprintln!(
                    "SKIPPED: cannot mount a {size} tmpfs at {} to fill ({why}); the full-disk test needs root",
                    dir.display()
                );
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A download, or a backup into a `file://` bucket, that fills its filesystem fails naming the directory, leaves
/// no partial file behind, and the node's tables as they were.
#[test]
fn a_full_disk_fails_naming_the_directory_and_leaves_the_node_alone() {
    let _node = node();
    let Some(small) = SmallFilesystem::mount("restore", "1m") else {
        return;
    };
    let store = Store::minio_with_bucket(BUCKET);
    let sidecar = sidecar_for(&store);
    keyspace_with_rows(&sidecar, "fd", &["t"], 40);
    cql("CREATE TABLE IF NOT EXISTS fd.big (id int PRIMARY KEY, v text)");
    cassandra::load_rows(NODE, "fd", "big", 3000, 1000);
    run(
        &sidecar,
        json!({"type": "flush", "keyspace": "fd"}),
        "COMPLETED",
    );
    backup(&sidecar, "fd", "fd1");
    change_rows("fd", "t");
    let before = (
        rows("fd", "t"),
        cassandra::sstables(NODE, "fd", "t"),
        cassandra::sstables(NODE, "fd", "big"),
    );

    let downloads = small.0.join("downloads");
    let failed = run(
        &sidecar,
        restore_body("IMPORT", "fd1", "fd", &downloads),
        "FAILED",
    );
    let error = failed["errors"][0]["message"].as_str().unwrap();
    assert!(
        error.contains(&format!("the filesystem holding {}", downloads.display()))
            && error.contains("is full"),
        "the error names the full directory: {error}"
    );
    // Files downloaded whole stay for a retry (CLEANUP removes them); the one cut short does not.
    let partial: Vec<_> = files_under(&small.0)
        .into_iter()
        .filter(|file| file.to_string_lossy().ends_with(".daedalus-download"))
        .collect();
    assert!(partial.is_empty(), "no partial file is left: {partial:?}");
    let after = (
        rows("fd", "t"),
        cassandra::sstables(NODE, "fd", "t"),
        cassandra::sstables(NODE, "fd", "big"),
    );
    assert_eq!(after, before, "nothing truncated, nothing imported");

    // A backup's own writes: into a file:// bucket on the full filesystem.
    let bucket = small.0.join("bucket");
    std::fs::create_dir(&bucket).unwrap();
    let failed = run(
        &sidecar,
        json!({"type": "backup", "storageLocation": format!("file://{}/c/d/n", bucket.display()),
               "entities": "fd", "snapshotTag": "full"}),
        "FAILED",
    );
    let error = failed["errors"][0]["message"].as_str().unwrap();
    assert!(
        error.contains(&bucket.display().to_string()) && error.contains("is full"),
        "the error names the full bucket directory: {error}"
    );
    let partial: Vec<_> = files_under(&bucket)
        .into_iter()
        .filter(|file| file.to_string_lossy().contains('#'))
        .collect();
    assert!(partial.is_empty(), "no partial object is left: {partial:?}");
    let snapshots: Vec<_> = files_under(&cassandra::node_dir(NODE).join("data/fd"))
        .into_iter()
        .filter(|file| file.to_string_lossy().contains("/snapshots/full-"))
        .collect();
    assert!(
        snapshots.is_empty(),
        "the backup's snapshot is cleared: {snapshots:?}"
    );
    assert_eq!(rows("fd", "t"), before.0);
}
