//! `verify` run end to end through the registry and the executor against `file://` buckets in a temporary
//! directory: a backup laid out as a backup writes it, then damaged object by object.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::decode::DecodeRequest;
use crate::esop::manifest::{Keyspace, Manifest, ManifestEntry, OrderedMap, Snapshot, Table};
use crate::storage::transfer::hashes::{HashAlgorithm, Hasher};
use crate::types::{TypeOptions, registry};
use crate::{Executor, InMemoryStore, OperationState, OperationStore, Services};

const TABLE_DIR: &str = "t-0123456789abcdef0123456789abcdef";
const SCHEMA: &str = "5bd4c9a6-a0ae-3a6d-9d47-2c2d4c6a7bb2";

/// A bucket directory of its own per test, removed at the end.
struct Bucket {
    dir: tempfile::TempDir,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.path().join("bucket/cluster/dc1").join(node)
    }

    fn location(&self, node: &str) -> String {
        format!(
            "file://{}/bucket/cluster/dc1/{node}",
            self.dir.path().display()
        )
    }

    fn object(&self, node: &str, key: &str) -> PathBuf {
        self.node_dir(node).join(key)
    }

    /// Writes a backup of `files` (`(generation, content)`) to `node`, hashed with `algorithm`; returns its keys.
    fn backup(
        &self,
        node: &str,
        name: &str,
        files: &[(u32, &[u8])],
        algorithm: HashAlgorithm,
    ) -> Vec<String> {
        let mut entries = Vec::new();
        for (generation, content) in files {
            let key = format!("data/ks/{TABLE_DIR}/{generation}-1234/nb-{generation}-big-Data.db");
            write(&self.object(node, &key), content);
            let mut hasher = Hasher::new(algorithm);
            hasher.update(content);
            entries.push(ManifestEntry::file(
                key,
                content.len() as u64,
                hasher.finish(),
            ));
        }
        let keys = entries.iter().map(|e| e.object_key.clone()).collect();
        let mut sstables = OrderedMap::new();
        for entry in entries {
            let prefix = entry.object_key.rsplit('/').next().unwrap()[..8].to_string();
            sstables.get_or_insert_with(&prefix, Vec::new).push(entry);
        }
        let mut tables = OrderedMap::new();
        tables.insert(
            "t",
            Table {
                sstables,
                id: TABLE_DIR[2..].to_string(),
                schema_content: None,
            },
        );
        let mut keyspaces = OrderedMap::new();
        keyspaces.insert("ks", Keyspace { tables });
        let manifest = Manifest {
            snapshot: Snapshot {
                name: name.into(),
                keyspaces,
            },
            tokens: vec!["1".into()],
            schema_version: SCHEMA.into(),
            size: 0,
        };
        write(
            &self.object(node, &format!("manifests/{name}.json")),
            &manifest.to_json(),
        );
        keys
    }
}

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// The operation as it ended: (state, errors, response).
async fn run(body: Value) -> (OperationState, Vec<String>, Value) {
    let status = run_to_the_end(body).await;
    (
        status.state,
        status.errors.into_iter().map(|e| e.message).collect(),
        status.response.unwrap_or(Value::Null),
    )
}

fn services() -> Services {
    let store: Arc<dyn OperationStore> = Arc::new(InMemoryStore::new());
    Services {
        source: "test-host".into(),
        jmx: crate::JmxConnector::new(Default::default(), tokio::runtime::Handle::current()),
        storage: Default::default(),
        cql: Default::default(),
        peers: Default::default(),
        metrics: Default::default(),
        store,
        local: Default::default(),
        shutdown_request: CancellationToken::new(),
    }
}

/// The operation's status as it ended.
async fn run_to_the_end(body: Value) -> crate::StoredStatus {
    let services = Arc::new(services());
    let executor = Executor::new(services, 1, tokio::runtime::Handle::current());
    let prepared = registry(TypeOptions::default()).prepare(body).unwrap();
    let record = executor.submit(prepared).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !record.state().is_terminal() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the verification ends");
    record.stored_status().0
}

fn name(millis: u64) -> String {
    format!("nightly-{SCHEMA}-{millis}")
}

const FILES: [(u32, &[u8]); 3] = [(1, b"first file"), (2, b"second, longer file"), (3, b"3")];

#[tokio::test]
async fn a_whole_backup_completes_with_what_was_checked() {
    let bucket = Bucket::new();
    bucket.backup("n1", &name(1000), &FILES, HashAlgorithm::Sha256);
    let (state, errors, response) = run(json!({"type": "verify",
        "storageLocation": bucket.location("n1"), "snapshotTag": "nightly"}))
    .await;
    assert_eq!(state, OperationState::Completed, "{errors:?}");
    assert_eq!(
        response,
        json!({"manifest": name(1000), "objects": 3, "bytes": 30, "deep": true, "problemCount": 0,
            "problems": []})
    );
}

#[tokio::test]
async fn a_tag_picks_its_newest_backup_and_a_full_name_that_one() {
    let bucket = Bucket::new();
    let old = bucket.backup("n1", &name(1000), &FILES, HashAlgorithm::Sha256);
    bucket.backup("n1", &name(2000), &FILES[..1], HashAlgorithm::Sha256);
    // Only the old backup has these.
    std::fs::remove_file(bucket.object("n1", &old[2])).unwrap();
    let (state, _, response) = run(json!({"type": "verify",
        "storageLocation": bucket.location("n1"), "snapshotTag": "nightly"}))
    .await;
    assert_eq!(state, OperationState::Completed);
    assert_eq!(response["manifest"], name(2000));
    let (state, errors, response) = run(json!({"type": "verify",
        "storageLocation": bucket.location("n1"), "snapshotTag": name(1000)}))
    .await;
    assert_eq!(state, OperationState::Failed);
    assert_eq!(response["manifest"], name(1000));
    assert!(errors[0].contains(&old[2]), "{errors:?}");
}

#[tokio::test]
async fn an_unknown_backup_fails_saying_so() {
    let bucket = Bucket::new();
    bucket.backup("n1", &name(1000), &FILES, HashAlgorithm::Sha256);
    let (state, errors, response) = run(json!({"type": "verify",
        "storageLocation": bucket.location("n1"), "snapshotTag": "weekly"}))
    .await;
    assert_eq!(state, OperationState::Failed);
    assert!(
        errors[0].starts_with(&format!("no backup weekly in {}", bucket.location("n1"))),
        "{errors:?}"
    );
    assert_eq!(response, Value::Null);
}

#[tokio::test]
async fn a_deleted_object_is_missing() {
    let bucket = Bucket::new();
    let keys = bucket.backup("n1", &name(1000), &FILES, HashAlgorithm::Sha256);
    std::fs::remove_file(bucket.object("n1", &keys[1])).unwrap();
    for deep in [false, true] {
        let (state, errors, response) = run(json!({"type": "verify", "deep": deep,
            "storageLocation": bucket.location("n1"), "snapshotTag": "nightly"}))
        .await;
        assert_eq!(state, OperationState::Failed);
        assert_eq!(
            response["problems"],
            json!([{"key": keys[1], "problem": "missing", "expected": "19", "found": "no object"}]),
            "deep {deep}"
        );
        assert_eq!(response["objects"], 3);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains(&format!("{} is missing", keys[1])),
            "{errors:?}"
        );
        assert!(errors[0].contains("1 of its 3 objects"), "{errors:?}");
    }
}

#[tokio::test]
async fn a_truncated_object_has_the_wrong_size() {
    let bucket = Bucket::new();
    let keys = bucket.backup("n1", &name(1000), &FILES, HashAlgorithm::Sha256);
    write(&bucket.object("n1", &keys[0]), b"first");
    for deep in [false, true] {
        let (state, errors, response) = run(json!({"type": "verify", "deep": deep,
            "storageLocation": bucket.location("n1"), "snapshotTag": "nightly"}))
        .await;
        assert_eq!(state, OperationState::Failed);
        assert_eq!(
            response["problems"],
            json!([{"key": keys[0], "problem": "size", "expected": "10", "found": "5"}]),
            "deep {deep}"
        );
        assert!(
            errors[0].contains(&format!("{} has 5 bytes, not 10", keys[0])),
            "{errors:?}"
        );
    }
}

#[tokio::test]
async fn a_flipped_byte_is_found_only_by_a_deep_check() {
    for algorithm in [HashAlgorithm::Sha256, HashAlgorithm::Crc] {
        let bucket = Bucket::new();
        let keys = bucket.backup("n1", &name(1000), &FILES, algorithm);
        write(&bucket.object("n1", &keys[1]), b"second, longer fild");
        let body = |deep: bool| {
            json!({"type": "verify", "deep": deep, "storageLocation": bucket.location("n1"),
                "snapshotTag": "nightly", "concurrency": 1})
        };
        let (state, _, response) = run(body(false)).await;
        assert_eq!(state, OperationState::Completed, "{algorithm:?}");
        assert_eq!(response["deep"], false);
        let (state, errors, response) = run(body(true)).await;
        assert_eq!(state, OperationState::Failed, "{algorithm:?}");
        let problem = &response["problems"][0];
        assert_eq!(problem["key"], keys[1].as_str());
        assert_eq!(problem["problem"], "hash");
        let mut hasher = Hasher::new(algorithm);
        hasher.update(b"second, longer file");
        assert_eq!(problem["expected"], hasher.finish().unwrap());
        assert_ne!(problem["found"], problem["expected"]);
        assert_eq!(response["problems"].as_array().unwrap().len(), 1);
        assert!(
            errors[0].contains(&format!("{} hashes to", keys[1])),
            "{errors:?}"
        );
    }
}

#[tokio::test]
async fn every_node_of_the_cluster_is_checked() {
    let bucket = Bucket::new();
    bucket.backup("n1", &name(1000), &FILES, HashAlgorithm::Sha256);
    let keys = bucket.backup("n2", &name(1000), &FILES[..2], HashAlgorithm::Sha256);
    // A node without the backup is not part of it.
    bucket.backup(
        "n3",
        &format!("weekly-{SCHEMA}-1000"),
        &FILES,
        HashAlgorithm::Sha256,
    );
    std::fs::remove_file(bucket.object("n2", &keys[0])).unwrap();
    let (state, errors, response) = run(json!({"type": "verify", "globalRequest": true,
        "storageLocation": bucket.location("n1"), "snapshotTag": "nightly"}))
    .await;
    assert_eq!(state, OperationState::Failed);
    assert_eq!(response["objects"], 5);
    assert_eq!(response["bytes"], 59);
    assert_eq!(response["deep"], true);
    let nodes: Vec<&str> = response["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["cluster/dc1/n1", "cluster/dc1/n2"]);
    assert_eq!(
        response["problems"],
        json!([{"node": "cluster/dc1/n2", "key": keys[0], "problem": "missing", "expected": "10",
            "found": "no object"}])
    );
    assert!(
        errors[0].contains(&format!("cluster/dc1/n2/{} is missing", keys[0])),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_node_the_backups_topology_names_must_have_its_manifest() {
    let bucket = Bucket::new();
    let backup = name(1000);
    bucket.backup("n1", &backup, &FILES, HashAlgorithm::Sha256);
    // n2 took part in the backup, but its manifest is gone; n3 is not in it.
    bucket.backup("n2", &backup, &FILES[..1], HashAlgorithm::Sha256);
    std::fs::remove_file(bucket.object("n2", &format!("manifests/{backup}.json"))).unwrap();
    bucket.backup("n3", &backup, &FILES, HashAlgorithm::Sha256);
    let node = |id: &str| {
        json!({"hostname": id, "cluster": "cluster", "dc": "dc1", "rack": "r1", "nodeId": id,
            "ipAddress": "127.0.0.1"})
    };
    let topology = json!({"timestamp": 1000, "clusterName": "cluster", "schemaVersion": SCHEMA,
        "topology": [node("n1"), node("n2")]});
    write(
        &bucket
            .dir
            .path()
            .join(format!("bucket/topology/{backup}.json")),
        topology.to_string().as_bytes(),
    );
    let (state, errors, response) = run(json!({"type": "verify", "globalRequest": true,
        "storageLocation": bucket.location("n1"), "snapshotTag": "nightly", "deep": false}))
    .await;
    assert_eq!(state, OperationState::Failed);
    let nodes: Vec<&str> = response["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["cluster/dc1/n1", "cluster/dc1/n2"]);
    assert_eq!(response["objects"], 3);
    let manifest = format!("manifests/{backup}.json");
    assert_eq!(response["problems"][0]["node"], "cluster/dc1/n2");
    assert_eq!(response["problems"][0]["key"], manifest.as_str());
    assert_eq!(response["problems"][0]["problem"], "missing");
    assert_eq!(response["problems"].as_array().unwrap().len(), 1);
    assert!(
        errors[0].contains(&format!("cluster/dc1/n2/{manifest} is missing")),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_cluster_without_the_backup_fails_saying_so() {
    let bucket = Bucket::new();
    bucket.backup("n1", &name(1000), &FILES, HashAlgorithm::Sha256);
    let (state, errors, _) = run(json!({"type": "verify", "globalRequest": true,
        "storageLocation": bucket.location("n1"), "snapshotTag": "weekly"}))
    .await;
    assert_eq!(state, OperationState::Failed);
    assert!(
        errors[0].starts_with("no backup weekly in file://"),
        "{errors:?}"
    );
    assert!(errors[0].ends_with("under cluster cluster"), "{errors:?}");
}

/// The nodes' manifests are read one at a time, each checked before the next is read: a node whose manifest
/// cannot be read fails the verification after the nodes before it were checked, not before any was.
#[tokio::test]
async fn a_cluster_wide_verification_reads_one_manifest_at_a_time() {
    let bucket = Bucket::new();
    let backup = name(1000);
    bucket.backup("n1", &backup, &FILES, HashAlgorithm::Sha256);
    bucket.backup("n2", &backup, &FILES, HashAlgorithm::Sha256);
    write(
        &bucket.object("n2", &format!("manifests/{backup}.json")),
        b"not a manifest",
    );
    let node = |id: &str| {
        json!({"hostname": id, "cluster": "cluster", "dc": "dc1", "rack": "r1", "nodeId": id,
            "ipAddress": "127.0.0.1"})
    };
    let topology = json!({"timestamp": 1000, "clusterName": "cluster", "schemaVersion": SCHEMA,
        "topology": [node("n1"), node("n2")]});
    write(
        &bucket
            .dir
            .path()
            .join(format!("bucket/topology/{backup}.json")),
        topology.to_string().as_bytes(),
    );
    // Run without the executor, which sets a finished operation's progress to 1.
    let request =
        crate::types::verify::VerifyRequest::decode_request(json!({"globalRequest": true,
        "storageLocation": bucket.location("n1"), "snapshotTag": "nightly", "concurrency": 1}))
        .unwrap();
    let plan = request.fields.plan(&request.connection);
    let record = Arc::new(crate::OperationRecord::new(
        "verify",
        serde_json::Map::new(),
        CancellationToken::new(),
    ));
    let context = crate::OperationContext::new(Arc::clone(&record), Arc::new(services()));
    let error = crate::cluster::verify::verify(&request.connection, &plan, false, &context)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("is not a backup manifest"),
        "{error}"
    );
    assert_eq!(
        record.stored_status().0.progress,
        0.5,
        "n1 was checked, n2 not"
    );
}

/// An emptied prefix: the response lists the first thousand problems and counts them all, and the failure says
/// so.
#[tokio::test]
async fn a_response_lists_the_first_thousand_problems() {
    let bucket = Bucket::new();
    let files: Vec<(u32, Vec<u8>)> = (1..=1005)
        .map(|generation| (generation, vec![b'x']))
        .collect();
    let files: Vec<(u32, &[u8])> = files
        .iter()
        .map(|(generation, content)| (*generation, content.as_slice()))
        .collect();
    let keys = bucket.backup("n1", &name(1000), &files, HashAlgorithm::Sha256);
    for key in &keys {
        std::fs::remove_file(bucket.object("n1", key)).unwrap();
    }
    let (state, errors, response) = run(json!({"type": "verify", "deep": false,
        "storageLocation": bucket.location("n1"), "snapshotTag": "nightly"}))
    .await;
    assert_eq!(state, OperationState::Failed);
    assert_eq!(response["problemCount"], 1005);
    assert_eq!(response["problems"].as_array().unwrap().len(), 1000);
    assert!(
        errors[0].contains("1005 of its 1005 objects are not")
            && errors[0].ends_with("; and 985 more (the response lists the first 1000)"),
        "{errors:?}"
    );
}

/// A manifest from a hostile bucket naming objects outside the node's prefix (a path that climbs, an absolute
/// one): the verification fails naming the key, and reads nothing, even where a file of the right size waits there.
#[tokio::test]
async fn a_manifest_naming_objects_outside_the_prefix_is_refused() {
    for hostile in ["data/ks/../../../../outside-Data.db", "/etc/hostname"] {
        let bucket = Bucket::new();
        let keys = bucket.backup("n1", &name(1000), &FILES, HashAlgorithm::Sha256);
        let manifest = bucket.object("n1", &format!("manifests/{}.json", name(1000)));
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(&manifest, text.replace(&keys[0], hostile)).unwrap();
        // What a verification that followed the key would find: present, of the manifest's size.
        // (the climbing key resolves, from the node's directory, to the cluster's).
        write(
            &bucket.dir.path().join("bucket/cluster/outside-Data.db"),
            FILES[0].1,
        );
        let (state, errors, response) = run(json!({"type": "verify", "deep": true,
            "storageLocation": bucket.location("n1"), "snapshotTag": "nightly"}))
        .await;
        assert_eq!(state, OperationState::Failed, "{hostile}: {response}");
        assert!(
            errors.iter().any(|error| error.contains(hostile)),
            "{hostile}: {errors:?}"
        );
    }
}
