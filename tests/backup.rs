//! Backups of a real Cassandra 5.0 node to real object stores (MinIO, s3s-fs, Azurite, a directory), checked from
//! outside Daedalus: the bucket's objects, their bytes, the manifest, and the node's snapshot directories.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::Digest;
use support::builder::SidecarBuilder;
use support::scratch::Scratch;
use support::stores::Store;
use support::{Sidecar, cassandra, run, wait_for_state};

const CLUSTER_PATH: &str = "daedalus-test/datacenter1/node1";

/// A sidecar for node 1 that reaches `store` (none: only `file://` locations).
fn sidecar_for(store: Option<&Store>, cache: &Path) -> Sidecar {
    cassandra::cluster();
    let mut builder = SidecarBuilder::new()
        .jmx_service(&cassandra::jmx_service(1))
        .args(["--cache-dir".to_string(), cache.display().to_string()]);
    if let Some(store) = store {
        builder = builder.store(store);
    }
    // The S3 credentials whatever the store: harmless to the others.
    builder.s3_credentials().start()
}

/// A keyspace on node 1 with a table of several SSTables, a table with a secondary index and one with an SAI
/// index (5.0), automatic compaction off so the files hold still between backups.
fn keyspace_with_tables(sidecar: &Sidecar, keyspace: &str) {
    cassandra::cql(1, &format!("DROP KEYSPACE IF EXISTS {keyspace}"));
    cassandra::cql(
        1,
        &format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 3}}"
        ),
    );
    for table in ["t", "indexed", "sai"] {
        cassandra::cql(
            1,
            &format!("CREATE TABLE IF NOT EXISTS {keyspace}.{table} (id int PRIMARY KEY, v text)"),
        );
        cassandra::no_autocompaction(keyspace, table);
    }
    cassandra::cql(
        1,
        &format!("CREATE INDEX IF NOT EXISTS ON {keyspace}.indexed (v)"),
    );
    // SAI came with 5.0; on 4.x the table stays without it.
    if !cassandra::version().starts_with('4') {
        cassandra::cql(
            1,
            &format!("CREATE INDEX IF NOT EXISTS ON {keyspace}.sai (v) USING 'sai'"),
        );
    }
    for round in 0..3 {
        for table in ["t", "indexed", "sai"] {
            let inserts: String = (0..20)
                .map(|i| {
                    let id = round * 100 + i;
                    format!("INSERT INTO {keyspace}.{table} (id, v) VALUES ({id}, 'value {id}');")
                })
                .collect();
            cassandra::cql(1, &format!("BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"));
        }
        run(
            sidecar,
            json!({"type": "flush", "keyspace": keyspace}),
            "COMPLETED",
        );
    }
}

/// The files a snapshot of `keyspace` on node 1 holds now, by `<table dir>/[<index dir>/]<file>`: taken and cleared
/// here, so the test sees what Cassandra puts in a snapshot without relying on the backup's own walk.
fn snapshot_contents(sidecar: &Sidecar, keyspace: &str) -> BTreeMap<String, Vec<u8>> {
    // A new name each time: on Cassandra 4.0 a snapshot taken two seconds after a clear-snapshot of the same name
    // was once found without files (the third check of one keyspace in one test).
    static CHECKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let check = CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!("check-{}-{check:04}", std::process::id());
    run(
        sidecar,
        json!({"type": "snapshot", "snapshotTag": tag, "entities": keyspace, "skipFlush": true}),
        "COMPLETED",
    );
    let mut files = BTreeMap::new();
    for snapshot in snapshots_named(keyspace, &tag) {
        let table_dir = snapshot.parent().unwrap().parent().unwrap();
        let table_name = table_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for entry in std::fs::read_dir(&snapshot).unwrap().filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                for index_file in std::fs::read_dir(entry.path())
                    .unwrap()
                    .filter_map(Result::ok)
                {
                    let index_name = index_file.file_name().to_string_lossy().into_owned();
                    files.insert(
                        format!("{table_name}/{name}/{index_name}"),
                        std::fs::read(index_file.path()).unwrap(),
                    );
                }
            } else if name != "schema.cql" && name != "manifest.json" {
                files.insert(
                    format!("{table_name}/{name}"),
                    std::fs::read(entry.path()).unwrap(),
                );
            }
        }
    }
    run(
        sidecar,
        json!({"type": "clear-snapshot", "snapshotTag": tag}),
        "COMPLETED",
    );
    files
}

/// Snapshot directories of `keyspace` on node 1 taken under `tag`.
fn snapshots_named(keyspace: &str, tag: &str) -> Vec<PathBuf> {
    cassandra::snapshot_dirs(1, keyspace, tag)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// What a test reads back from a bucket, whatever holds it.
trait Bucket {
    fn objects(&self) -> BTreeMap<String, u64>;
    fn get(&self, key: &str) -> Vec<u8>;
}

struct InStore<'a>(&'a Store, &'a str);

impl Bucket for InStore<'_> {
    fn objects(&self) -> BTreeMap<String, u64> {
        self.0.objects(self.1)
    }
    fn get(&self, key: &str) -> Vec<u8> {
        self.0.get(self.1, key)
    }
}

struct InDirectory(PathBuf);

impl Bucket for InDirectory {
    fn objects(&self) -> BTreeMap<String, u64> {
        fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<String, u64>) {
            for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
                if entry.file_type().unwrap().is_dir() {
                    walk(root, &entry.path(), into);
                } else {
                    let key = entry
                        .path()
                        .strip_prefix(root)
                        .unwrap()
                        .display()
                        .to_string();
                    into.insert(key, entry.metadata().unwrap().len());
                }
            }
        }
        let mut objects = BTreeMap::new();
        walk(&self.0, &self.0, &mut objects);
        objects
    }
    fn get(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.0.join(key)).unwrap()
    }
}

/// Checks a completed backup of `keyspace` from outside: every SSTable file of a snapshot is in the bucket under its Esop
/// key with its size and SHA-256, the manifest lists exactly those objects with the schema, tokens and schema
/// version, and the snapshot is gone from disk. Returns the manifest.
fn check_backup(sidecar: &Sidecar, bucket: &dyn Bucket, keyspace: &str, done: &Value) -> Value {
    let tag = done["response"]["snapshotTag"]
        .as_str()
        .unwrap()
        .to_string();
    let objects = bucket.objects();
    let manifest_key = format!("{CLUSTER_PATH}/manifests/{tag}.json");
    assert!(
        objects.contains_key(&manifest_key),
        "{manifest_key} in {objects:?}"
    );
    let manifest: Value = serde_json::from_slice(&bucket.get(&manifest_key)).unwrap();
    assert_eq!(manifest["snapshot"]["name"], tag);

    let mut entries = BTreeMap::new();
    for (table_name, table) in manifest["snapshot"]["keyspaces"][keyspace]["tables"]
        .as_object()
        .unwrap()
    {
        assert!(
            table["schemaContent"]
                .as_str()
                .unwrap()
                .contains(&format!("{keyspace}.{table_name}")),
            "schema of {table_name}: {table}"
        );
        for files in table["sstables"].as_object().unwrap().values() {
            for entry in files.as_array().unwrap() {
                entries.insert(
                    entry["objectKey"].as_str().unwrap().to_string(),
                    (
                        entry["size"].as_u64().unwrap(),
                        entry["hash"].as_str().unwrap().to_string(),
                    ),
                );
            }
        }
    }
    let live = snapshot_contents(sidecar, keyspace);
    let named: Vec<&str> = entries
        .keys()
        .map(|key| key.rsplit('/').next().unwrap())
        .collect();
    let unlisted: Vec<&String> = live
        .keys()
        .filter(|relative| !named.contains(&relative.rsplit('/').next().unwrap()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "snapshot files missing from the manifest: {unlisted:#?}"
    );
    assert_eq!(
        entries.len(),
        live.len(),
        "one manifest entry per snapshot file"
    );
    for (relative, bytes) in &live {
        let (table_dir, rest) = relative.split_once('/').unwrap();
        let (index, file) = match rest.rsplit_once('/') {
            Some((index, file)) => (format!("{index}/"), file),
            None => (String::new(), rest),
        };
        let (key, (size, hash)) = entries
            .iter()
            .find(|(key, _)| {
                key.starts_with(&format!("data/{keyspace}/{table_dir}/{index}"))
                    && key.ends_with(&format!("/{file}"))
                    && key.matches('/').count() == 4 + usize::from(!index.is_empty())
            })
            .unwrap_or_else(|| panic!("{relative} has a manifest entry"));
        assert_eq!(*size, bytes.len() as u64, "{key}");
        assert_eq!(*hash, sha256(bytes), "{key}");
        let object = format!("{CLUSTER_PATH}/{key}");
        assert_eq!(
            objects.get(&object),
            Some(size),
            "{object} is in the bucket"
        );
        assert_eq!(
            sha256(&bucket.get(&object)),
            *hash,
            "{object} holds the file's bytes"
        );
    }
    assert_eq!(
        manifest["size"],
        entries.values().map(|(size, _)| size).sum::<u64>()
    );
    let tokens = cassandra::jmx(
        1,
        &[
            "--json",
            "get",
            "org.apache.cassandra.db:type=StorageService",
            "Tokens",
        ],
    );
    let tokens: Value = serde_json::from_str(&tokens).unwrap();
    assert_eq!(manifest["tokens"], tokens);
    // Tests change the schema in parallel, so the version is checked against the tag it was taken under.
    let version = manifest["schemaVersion"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(version).is_ok(), "{version}");
    assert!(
        tag.contains(&format!("-{version}-")),
        "{tag} carries {version}"
    );
    assert!(
        snapshots_named(keyspace, &tag).is_empty(),
        "the snapshot is cleared"
    );
    manifest
}

fn backup_body(location: &str, keyspace: &str, tag: &str) -> Value {
    json!({
        "type": "backup",
        "storageLocation": location,
        "entities": keyspace,
        "snapshotTag": tag,
        "retry": {"interval": 1, "maxAttempts": 1},
    })
}

/// MinIO: a backup lands as Esop lays it out (BTI files with UUID ids, index components, several SSTables), and a
/// second one after more writes uploads only the new SSTable and reads none of the unchanged files.
#[test]
fn backup_to_minio_then_only_new_sstables() {
    let store = Store::minio();
    store.create_bucket("backups");
    let cache = Scratch::empty("minio-cache");
    let sidecar = sidecar_for(Some(&store), &cache);
    keyspace_with_tables(&sidecar, "bk_minio");
    let location = format!("s3://backups/{CLUSTER_PATH}");
    let first = run(
        &sidecar,
        backup_body(&location, "bk_minio", "first"),
        "COMPLETED",
    );
    assert_eq!(first["progress"], 1.0);
    let manifest = check_backup(&sidecar, &InStore(&store, "backups"), "bk_minio", &first);
    let keys: Vec<String> = manifest["snapshot"]["keyspaces"]["bk_minio"]["tables"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|t| {
            t["sstables"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    if cassandra::version().starts_with('4') {
        assert!(
            keys.iter().all(|prefix| prefix.starts_with("nb-")),
            "4.x big-format SSTables: {keys:?}"
        );
    } else {
        assert!(
            keys.iter()
                .any(|prefix| prefix.ends_with("-bti") && prefix.contains('_')),
            "5.0 BTI SSTables with UUID ids: {keys:?}"
        );
    }
    let stats = &first["response"]["stats"];
    assert_eq!(stats["uploadedFiles"], stats["files"], "{stats}");

    let before = store.objects("backups").len() as u64;
    let inserts: String = (1000..1020)
        .map(|id| format!("INSERT INTO bk_minio.t (id, v) VALUES ({id}, 'later');"))
        .collect();
    cassandra::cql(1, &format!("BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"));
    let second = run(
        &sidecar,
        backup_body(&location, "bk_minio", "second"),
        "COMPLETED",
    );
    check_backup(&sidecar, &InStore(&store, "backups"), "bk_minio", &second);
    let stats = &second["response"]["stats"];
    let new_files = stats["uploadedFiles"].as_u64().unwrap();
    assert!(
        new_files > 0 && new_files < stats["files"].as_u64().unwrap(),
        "{stats}"
    );
    assert_eq!(
        stats["hashedFiles"], 0,
        "no unchanged file is read again: {stats}"
    );
    assert_eq!(
        stats["cachedHashes"].as_u64().unwrap() + new_files,
        stats["files"].as_u64().unwrap()
    );
    assert_eq!(
        store.objects("backups").len() as u64,
        before + new_files + 1,
        "the new SSTable's files and the manifest"
    );

    // A bucket that does not exist yet: refused, unless the request asks for it to be created.
    let fresh = format!("s3://fresh/{CLUSTER_PATH}");
    let failed = run(&sidecar, backup_body(&fresh, "bk_minio", "fresh"), "FAILED");
    assert!(
        failed["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("s3://fresh: the bucket does not exist"),
        "{failed}"
    );
    let mut create = backup_body(&fresh, "bk_minio", "fresh");
    create["createMissingBucket"] = json!(true);
    run(&sidecar, create, "COMPLETED");
    assert!(
        store
            .objects("fresh")
            .keys()
            .any(|key| key.contains("/manifests/fresh-"))
    );
}

/// The same backup to Azurite and to a directory.
#[test]
fn backup_to_azurite_and_a_directory() {
    let store = Store::azurite();
    store.create_bucket("backups");
    let cache = Scratch::empty(store.kind().name());
    let sidecar = sidecar_for(Some(&store), &cache);
    let keyspace = format!("bk_{}", store.kind().name().replace('-', "_"));
    keyspace_with_tables(&sidecar, &keyspace);
    let done = run(
        &sidecar,
        backup_body(
            &format!("azure://backups/{CLUSTER_PATH}"),
            &keyspace,
            "other",
        ),
        "COMPLETED",
    );
    check_backup(&sidecar, &InStore(&store, "backups"), &keyspace, &done);

    let root = Scratch::empty("directory");
    std::fs::create_dir_all(root.join("bucket")).unwrap();
    let sidecar = sidecar_for(None, &root.join("cache"));
    keyspace_with_tables(&sidecar, "bk_file");
    let location = format!("file://{}/bucket/{CLUSTER_PATH}", root.display());
    // No tag: the 201 answer names the one generated, and the manifest is named from it as the Esop command line
    // names its default-tag backups, `<tag>-<schemaVersion>-<millis>`.
    let mut body = backup_body(&location, "bk_file", "files");
    body.as_object_mut().unwrap().remove("snapshotTag");
    body["uploadClusterTopology"] = json!(true);
    let accepted = sidecar.client().submit(body);
    let told = accepted["snapshotTag"]
        .as_str()
        .unwrap_or_else(|| panic!("the 201 answer names the tag: {accepted}"))
        .to_string();
    let done = wait_for_state(&sidecar, accepted["id"].as_str().unwrap(), "COMPLETED");
    assert_eq!(done["snapshotTag"], told.as_str(), "{done}");
    let tag = done["response"]["snapshotTag"].as_str().unwrap();
    let topology: Value = serde_json::from_slice(
        &std::fs::read(root.join(format!("bucket/topology/{tag}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(topology["clusterName"], "daedalus-test");
    assert_eq!(
        topology["topology"].as_array().unwrap().len(),
        cassandra::nodes()
    );
    let manifest = check_backup(
        &sidecar,
        &InDirectory(root.join("bucket")),
        "bk_file",
        &done,
    );
    let schema_version = manifest["schemaVersion"].as_str().unwrap();
    let millis: i64 = tag
        .strip_prefix(&format!("{told}-{schema_version}-"))
        .and_then(|millis| millis.parse().ok())
        .unwrap_or_else(|| panic!("{tag} is {told}-{schema_version}-<millis>"));
    let seconds: i64 = told
        .strip_prefix("autosnap-")
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("{told} is autosnap-<epoch seconds>"));
    assert!(
        millis >= seconds * 1000,
        "{tag}: taken after it was accepted"
    );
}

/// Locations that cannot work are refused at submit time, or fail saying why.
#[test]
fn bad_locations_are_refused() {
    let root = Scratch::empty("bad");
    let sidecar = sidecar_for(None, &root);
    for location in ["s3:/x", "ftp://bucket/c/dc/n", "s3://bucket/prefix"] {
        let refused = sidecar.client().post_json(
            "/operations",
            &json!({"type": "backup", "storageLocation": location}),
        );
        assert_eq!(refused.status, 400, "{location}");
        assert!(
            refused.text().contains("storageLocation"),
            "{}",
            refused.text()
        );
    }
    // Requests Daedalus cannot honour as asked are refused, naming the field.
    for (field, value) in [
        (
            "kmsKeyId",
            json!("arn:aws:kms:eu-west-1:111122223333:key/k"),
        ),
        (
            "proxySettings",
            json!({"proxyHost": "proxy/x", "proxyPort": 3128}),
        ),
    ] {
        let mut body = json!({"type": "backup", "storageLocation": "s3://bucket/c/dc/n"});
        body[field] = value;
        let refused = sidecar.client().post_json("/operations", &body);
        assert_eq!(refused.status, 400, "{field}");
        assert!(refused.text().contains(field), "{}", refused.text());
    }

    let missing = format!("file://{}/no-bucket/{CLUSTER_PATH}", root.display());
    let failed = run(
        &sidecar,
        backup_body(&missing, "system_auth", "missing"),
        "FAILED",
    );
    let message = failed["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("no-bucket") && message.contains("does not exist"),
        "{message}"
    );
    let mut create = backup_body(&missing, "system_auth", "created");
    create["createMissingBucket"] = json!(true);
    run(&sidecar, create, "COMPLETED");
    assert!(
        root.join("no-bucket")
            .join(CLUSTER_PATH)
            .join("manifests")
            .is_dir()
    );

    // A snapshot under the backup's tag exists already (someone else's): the backup fails and leaves it alone. A
    // tag that ends in a number is taken as the snapshot's whole name.
    let taken = format!("taken-{}", std::process::id());
    run(
        &sidecar,
        json!({"type": "snapshot", "snapshotTag": taken, "entities": "system_auth"}),
        "COMPLETED",
    );
    let clash = run(
        &sidecar,
        backup_body(&missing, "system_auth", &taken),
        "FAILED",
    );
    let message = clash["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("already exists"), "{message}");
    assert!(!snapshots_named("system_auth", &taken).is_empty());
    run(
        &sidecar,
        json!({"type": "clear-snapshot", "snapshotTag": taken}),
        "COMPLETED",
    );
}

/// s3s-fs keeps each object's metadata in a file named after the base64 of the key, so it cannot hold keys longer
/// than about 160 bytes, and Esop's keys of 5.0's SSTables are longer: a backup there fails naming the store and the object,
/// leaving no manifest and no snapshot. Commit-log keys are short, and commit logs go there fine.
#[test]
fn commit_logs_to_s3s_fs_and_a_failing_store_leaves_nothing_behind() {
    let store = Store::s3s();
    store.create_bucket("backups");
    let cache = Scratch::empty("s3s");
    let sidecar = sidecar_for(Some(&store), &cache);
    // Cassandra recycles segments while the backup runs (seen on 4.1): only those on disk before and after it are
    // sure to have been there when it listed them.
    let segments = || -> std::collections::BTreeMap<String, u64> {
        std::fs::read_dir(cassandra::node_dir(1).join("commitlog"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().map(|m| m.len()).unwrap_or_default(),
                )
            })
            .filter(|(name, _)| name.starts_with("CommitLog-") && name.ends_with(".log"))
            .collect()
    };
    let before = segments();
    let done = run(
        &sidecar,
        json!({"type": "commitlog-backup", "storageLocation": "s3://backups/c/d/n"}),
        "COMPLETED",
    );
    let after = segments();
    let objects = store.objects("backups");
    assert!(!objects.is_empty());
    assert_eq!(done["response"]["stats"]["files"], objects.len());
    for key in objects.keys() {
        let (segment, millis) = key
            .strip_prefix("c/d/n/commitlog/")
            .and_then(|name| name.rsplit_once('.'))
            .unwrap_or_else(|| panic!("{key} is not <node>/commitlog/<segment>.<millis>"));
        assert!(
            segment.starts_with("CommitLog-") && segment.ends_with(".log"),
            "{key}"
        );
        assert!(millis.parse::<u64>().is_ok(), "{key}");
    }
    let stable: Vec<&String> = before
        .keys()
        .filter(|name| after.contains_key(*name))
        .collect();
    assert!(!stable.is_empty(), "{before:?} {after:?}");
    for name in stable {
        let prefix = format!("c/d/n/commitlog/{name}.");
        let (key, stored) = objects
            .iter()
            .find(|(key, _)| key.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{prefix}<millis> in {objects:?}"));
        assert_eq!(*stored, after[name], "{key}");
    }

    if cassandra::version().starts_with('4') {
        // 4.x SSTable names are short enough for s3s-fs: nothing fails there.
        return;
    }
    keyspace_with_tables(&sidecar, "bk_s3s");
    let tag = support::this_runs("long");
    let failed = run(
        &sidecar,
        backup_body(&format!("s3://backups/{CLUSTER_PATH}"), "bk_s3s", &tag),
        "FAILED",
    );
    let message = failed["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("s3://backups: uploading daedalus-test/datacenter1/node1/data/bk_s3s/"),
        "{message}"
    );
    assert!(
        !store
            .objects("backups")
            .keys()
            .any(|key| key.contains("/manifests/")),
        "no manifest for a failed backup"
    );
    assert!(
        snapshots_named("bk_s3s", &tag).is_empty(),
        "the snapshot is cleared"
    );
}

/// MinIO stopped in the middle of a backup, and a backup cancelled in the middle: FAILED / CANCELLED, no manifest,
/// no snapshot left, and a rerun uploads only what is missing.
#[test]
fn a_stopped_store_or_a_cancel_leaves_no_manifest_and_no_snapshot() {
    let mut store = Store::minio();
    store.create_bucket("backups");
    let cache = Scratch::empty("faults");
    let sidecar = sidecar_for(Some(&store), &cache);
    let client = sidecar.client();
    cassandra::cql(1, "DROP KEYSPACE IF EXISTS bk_fault");
    cassandra::cql(
        1,
        "CREATE KEYSPACE bk_fault WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}",
    );
    cassandra::cql(
        1,
        "CREATE TABLE bk_fault.t (id int PRIMARY KEY, v text) WITH compression = {'enabled': 'false'}",
    );
    cassandra::no_autocompaction("bk_fault", "t");
    cassandra::load_rows(1, "bk_fault", "t", 150, 60_000);
    let location = format!("s3://backups/{CLUSTER_PATH}");
    // 9 MB on this node (RF 3), at 1 MB/s: the data file goes up in two parts, and the store dies after progress
    // shows (the first part, or a small file) and before the second part, which waits seconds for its turn.
    let stopped = support::this_runs("stopped");
    let mut slow = backup_body(&location, "bk_fault", &stopped);
    slow["bandwidth"] = json!("1MBPS");
    let id = client.submit(slow)["id"].as_str().unwrap().to_string();
    support::eventually("the upload is under way", || {
        (client.operation(&id)["progress"].as_f64().unwrap() > 0.0).then_some(())
    });
    store.kill();
    let failed = support::wait_for_state(&sidecar, &id, "FAILED");
    let message = failed["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("s3://backups: ") && message.contains("/data/bk_fault/t-"),
        "names the store and the object: {message}"
    );
    store.restart();
    assert!(
        !store
            .objects("backups")
            .keys()
            .any(|key| key.contains("/manifests/"))
    );
    assert!(snapshots_named("bk_fault", &stopped).is_empty());

    let rerun = run(
        &sidecar,
        backup_body(&location, "bk_fault", "rerun"),
        "COMPLETED",
    );
    let stats = &rerun["response"]["stats"];
    assert!(stats["skippedFiles"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["uploadedFiles"].as_u64().unwrap() > 0, "{stats}");
    check_backup(&sidecar, &InStore(&store, "backups"), "bk_fault", &rerun);

    cassandra::load_rows(1, "bk_fault", "t", 150, 60_000);
    let cancelled = support::this_runs("cancelled");
    let mut slow = backup_body(&location, "bk_fault", &cancelled);
    slow["bandwidth"] = json!("1MBPS");
    let id = client.submit(slow)["id"].as_str().unwrap().to_string();
    support::eventually("the upload is under way", || {
        (client.operation(&id)["progress"].as_f64().unwrap() > 0.0).then_some(())
    });
    assert_eq!(client.delete(&format!("/operations/{id}")).status, 202);
    support::wait_for_state(&sidecar, &id, "CANCELLED");
    assert!(
        !store
            .objects("backups")
            .keys()
            .any(|key| key.contains(&format!("/manifests/{cancelled}"))),
        "no manifest for a cancelled backup"
    );
    assert!(snapshots_named("bk_fault", &cancelled).is_empty());

    // An object the backup found in the bucket, and so skipped, is deleted while the backup runs (as a
    // remove-backup beside it could): the backup checks its skipped objects again before writing its manifest, and
    // uploads the missing one anew. The data file the cancelled backup left behind is still to go up, in two parts:
    // progress shows after the first, and the second leaves seconds for the deletion.
    let rerun_tag = rerun["response"]["snapshotTag"].as_str().unwrap();
    let rerun_manifest: Value = serde_json::from_slice(&store.get(
        "backups",
        &format!("{CLUSTER_PATH}/manifests/{rerun_tag}.json"),
    ))
    .unwrap();
    let victim = manifest_object_keys(&rerun_manifest)
        .into_iter()
        .find(|key| key.ends_with("-Data.db"))
        .unwrap();
    let mut slow = backup_body(&location, "bk_fault", "vanished");
    slow["bandwidth"] = json!("1MBPS");
    let id = client.submit(slow)["id"].as_str().unwrap().to_string();
    support::eventually("the upload is under way", || {
        (client.operation(&id)["progress"].as_f64().unwrap() > 0.0).then_some(())
    });
    store.delete("backups", &format!("{CLUSTER_PATH}/{victim}"));
    let vanished = support::wait_for_state(&sidecar, &id, "COMPLETED");
    let manifest = check_backup(&sidecar, &InStore(&store, "backups"), "bk_fault", &vanished);
    assert!(
        manifest_object_keys(&manifest).contains(&victim),
        "{victim}"
    );
    assert!(
        sidecar
            .logs()
            .contains("are gone (removed meanwhile?); uploading them again"),
        "the deletion came after the existence checks, and was caught by the second look"
    );

    // A tag given in full names that backup: a second backup under it is refused, and the first one stays.
    let tag = vanished["response"]["snapshotTag"].as_str().unwrap();
    let again = run(&sidecar, backup_body(&location, "bk_fault", tag), "FAILED");
    let message = again["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("exists already"), "{message}");
    check_backup(&sidecar, &InStore(&store, "backups"), "bk_fault", &vanished);
}

/// Every `objectKey` a manifest lists.
fn manifest_object_keys(manifest: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    for keyspace in manifest["snapshot"]["keyspaces"]
        .as_object()
        .unwrap()
        .values()
    {
        for table in keyspace["tables"].as_object().unwrap().values() {
            for files in table["sstables"].as_object().unwrap().values() {
                keys.extend(
                    files
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|entry| entry["objectKey"].as_str().unwrap().to_string()),
                );
            }
        }
    }
    keys
}

/// `list` and `remove-backup` read the bucket: three backups, each adding an SSTable to the last one's; removal
/// keeps every object another backup refers to. A manifest written by Esop is listed too.
#[test]
fn list_and_remove_backups_read_the_bucket() {
    let root = Scratch::empty("list");
    let bucket = root.join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let sidecar = sidecar_for(None, &root.join("cache"));
    cassandra::cql(1, "DROP KEYSPACE IF EXISTS bk_list");
    cassandra::cql(
        1,
        // On every node, so node 1 holds each row written.
        "CREATE KEYSPACE bk_list WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}",
    );
    cassandra::cql(1, "CREATE TABLE bk_list.t (id int PRIMARY KEY, v text)");
    cassandra::no_autocompaction("bk_list", "t");
    let location = format!("file://{}/{CLUSTER_PATH}", bucket.display());
    let mut names = Vec::new();
    for round in 0..3 {
        cassandra::cql(
            1,
            &format!("INSERT INTO bk_list.t (id, v) VALUES ({round}, 'round')"),
        );
        let done = run(
            &sidecar,
            backup_body(&location, "bk_list", &format!("b{round}")),
            "COMPLETED",
        );
        names.push(
            done["response"]["snapshotTag"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let manifest_of = |name: &str| -> Value {
        serde_json::from_slice(
            &std::fs::read(bucket.join(format!("{CLUSTER_PATH}/manifests/{name}.json"))).unwrap(),
        )
        .unwrap()
    };
    let keys_of = |manifest: &Value| -> Vec<String> {
        manifest["snapshot"]["keyspaces"]["bk_list"]["tables"]["t"]["sstables"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|files| {
                files
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["objectKey"].as_str().unwrap().to_string())
            })
            .collect()
    };

    let listed = run(
        &sidecar,
        json!({"type": "list", "storageLocation": location}),
        "COMPLETED",
    );
    let report = &listed["response"];
    assert_eq!(report["totalManifests"], 3);
    let listed_names: Vec<&str> = report["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed_names,
        [&names[2], &names[1], &names[0]],
        "newest first"
    );
    let oldest = &report["reports"][2];
    assert_eq!(
        oldest["reclaimableSpace"], 0,
        "b0's files are all in b1 and b2: {oldest}"
    );
    let newest = &report["reports"][0];
    assert!(newest["reclaimableSpace"].as_u64().unwrap() > 0, "{newest}");
    assert_eq!(newest["files"], keys_of(&manifest_of(&names[2])).len());

    let refused = sidecar.client().post_json(
        "/operations",
        &json!({"type": "remove-backup", "storageLocation": location}),
    );
    assert_eq!(refused.status, 400);

    let before = InDirectory(bucket.clone()).objects();
    let dry = run(
        &sidecar,
        json!({"type": "remove-backup", "storageLocation": location, "backupName": names[2], "dry": true}),
        "COMPLETED",
    );
    assert!(
        dry["response"]["removed"][0]["removedObjects"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(
        InDirectory(bucket.clone()).objects(),
        before,
        "a dry run removes nothing"
    );

    let kept = keys_of(&manifest_of(&names[2]));
    run(
        &sidecar,
        json!({"type": "remove-backup", "storageLocation": location, "removeOldest": true}),
        "COMPLETED",
    );
    let objects = InDirectory(bucket.clone()).objects();
    assert!(!objects.contains_key(&format!("{CLUSTER_PATH}/manifests/{}.json", names[0])));
    for key in &kept {
        assert!(
            objects.contains_key(&format!("{CLUSTER_PATH}/{key}")),
            "{key} is still referenced"
        );
    }

    let only_b1: Vec<String> = keys_of(&manifest_of(&names[2]))
        .into_iter()
        .filter(|k| !keys_of(&manifest_of(&names[1])).contains(k))
        .collect();
    run(
        &sidecar,
        json!({"type": "remove-backup", "storageLocation": location, "backupName": names[2]}),
        "COMPLETED",
    );
    let objects = InDirectory(bucket.clone()).objects();
    for key in &only_b1 {
        assert!(
            !objects.contains_key(&format!("{CLUSTER_PATH}/{key}")),
            "{key} went with its backup"
        );
    }
    for key in keys_of(&manifest_of(&names[1])) {
        assert!(
            objects.contains_key(&format!("{CLUSTER_PATH}/{key}")),
            "{key} stays with b1"
        );
    }

    // An age reaching back before the calendar begins removes nothing (and is no error).
    let ancient = run(
        &sidecar,
        json!({"type": "remove-backup", "storageLocation": location,
               "olderThan": {"value": 100_000_000, "unit": "DAYS"}}),
        "COMPLETED",
    );
    assert_eq!(ancient["response"]["removed"], json!([]));

    std::thread::sleep(std::time::Duration::from_millis(1100));
    // An age never takes the newest backup (issue #27): b1 stays, and the response says why.
    let aged = run(
        &sidecar,
        json!({"type": "remove-backup", "storageLocation": location, "olderThan": "1s"}),
        "COMPLETED",
    );
    assert_eq!(aged["response"]["removed"], json!([]), "{aged}");
    assert_eq!(aged["response"]["kept"][0]["name"], names[1], "{aged}");
    assert!(
        InDirectory(bucket.clone())
            .objects()
            .contains_key(&format!("{CLUSTER_PATH}/manifests/{}.json", names[1]))
    );
    // Named, the newest goes too.
    run(
        &sidecar,
        json!({"type": "remove-backup", "storageLocation": location, "backupName": names[1]}),
        "COMPLETED",
    );
    let left: Vec<String> = InDirectory(bucket.clone())
        .objects()
        .into_keys()
        .filter(|key| key.starts_with(CLUSTER_PATH))
        .collect();
    assert!(left.is_empty(), "every backup is removed: {left:?}");

    // A manifest as Esop writes it, for another node.
    let esop = include_str!("../operations/tests/fixtures/esop-manifest.json");
    let name: Value = serde_json::from_str(esop).unwrap();
    let name = name["snapshot"]["name"].as_str().unwrap();
    let esop_node = bucket.join("esop-cluster/dc1/esop-node/manifests");
    std::fs::create_dir_all(&esop_node).unwrap();
    std::fs::write(esop_node.join(format!("{name}.json")), esop).unwrap();
    let listed = run(
        &sidecar,
        json!({"type": "list", "storageLocation": format!("file://{}/esop-cluster/dc1/esop-node", bucket.display())}),
        "COMPLETED",
    );
    assert_eq!(listed["response"]["reports"][0]["name"], name);
    let entries = serde_json::from_str::<Value>(esop).unwrap();
    let count: usize = entries["snapshot"]["keyspaces"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ks| ks["tables"].as_object().unwrap().values())
        .flat_map(|t| t["sstables"].as_object().unwrap().values())
        .map(|files| files.as_array().unwrap().len())
        .sum();
    assert_eq!(listed["response"]["reports"][0]["files"], count);
}

/// `daedalus backup` and `daedalus list` run the same operations from the command line, with Esop's flags and
/// exit codes.
#[test]
fn the_command_line_runs_the_same_backup() {
    cassandra::cluster();
    let root = Scratch::empty("cli");
    std::fs::create_dir_all(root.join("bucket")).unwrap();
    cassandra::cql(
        1,
        "CREATE KEYSPACE IF NOT EXISTS bk_cli WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}",
    );
    cassandra::cql(
        1,
        "CREATE TABLE IF NOT EXISTS bk_cli.t (id int PRIMARY KEY, v text)",
    );
    cassandra::cql(1, "INSERT INTO bk_cli.t (id, v) VALUES (1, 'one')");
    let location = format!("file://{}/bucket/{CLUSTER_PATH}", root.display());
    let daedalus = |args: &[&str]| {
        support::daedalus_command()
            .args(args)
            .args(["--jmx-service", &cassandra::jmx_service(1)])
            .args(["--cache-dir", &root.join("cache").display().to_string()])
            .output()
            .unwrap()
    };
    let backup = daedalus(&[
        "backup",
        "--sl",
        &location,
        "--entities",
        "bk_cli",
        "-s",
        "cli",
        "--json",
    ]);
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let operation: Value = serde_json::from_slice(&backup.stdout).unwrap();
    assert_eq!(operation["state"], "COMPLETED");
    let tag = operation["response"]["snapshotTag"].as_str().unwrap();
    assert!(
        root.join(format!("bucket/{CLUSTER_PATH}/manifests/{tag}.json"))
            .is_file()
    );

    let list = daedalus(&["list", "--sl", &location]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let table = String::from_utf8_lossy(&list.stdout);
    assert!(
        table.starts_with("Timestamp\tName\tFiles") && table.contains(tag),
        "{table}"
    );

    let missing = format!("file://{}/no-bucket/{CLUSTER_PATH}", root.display());
    let failed = daedalus(&["backup", "--sl", &missing, "--entities", "bk_cli"]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("backup FAILED") && stderr.contains("does not exist"),
        "{stderr}"
    );

    // SIGTERM (a Job or its pod being stopped) cancels the backup, which still clears its snapshot: exit code 1,
    // no manifest. Megabytes at 1 MB/s keep it running meanwhile.
    cassandra::load_rows(1, "bk_cli", "t", 50, 60_000);
    let tag = support::this_runs("terminated");
    let child = support::daedalus_command()
        .args(["backup", "--sl", &location, "--entities", "bk_cli"])
        .args(["-s", &tag, "--bandwidth", "1MBPS"])
        .args(["--jmx-service", &cassandra::jmx_service(1)])
        .args(["--cache-dir", &root.join("cache").display().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    support::eventually("the backup has taken its snapshot", || {
        (!snapshots_named("bk_cli", &tag).is_empty()).then_some(())
    });
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let terminated = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&terminated.stderr);
    assert_eq!(terminated.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("backup CANCELLED"), "{stderr}");
    assert!(snapshots_named("bk_cli", &tag).is_empty());
    let manifests =
        std::fs::read_dir(root.join(format!("bucket/{CLUSTER_PATH}/manifests"))).unwrap();
    assert!(
        !manifests
            .filter_map(Result::ok)
            .any(|m| m.file_name().to_string_lossy().starts_with(&tag)),
        "no manifest for a terminated backup"
    );
}
