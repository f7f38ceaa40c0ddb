//! `daedalus list` and `daedalus remove-backup` on S3 (MinIO) and Azure (Azurite) buckets that hold keys no
//! object key of ours can be — a newline in a manifest's name, and one right under the node's prefix — as a tool
//! other than Daedalus may write them (issue #23). Both servers take such keys, as S3 and Azure do; the listing
//! goes past them and reports them.
//!
//! No Cassandra: with a location that names the node, neither command connects to JMX.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use serde_json::{Value, json};
use support::stores::Store;

const BUCKET: &str = "backups";
const NODE: &str = "cl/dc1/node1";
const SCHEMA: &str = "6c8e35a0-4a5e-3a41-9b1e-0b6d4f7f2e11";
const FILES: [(&str, &[u8]); 2] = [
    ("nb-1-big-Data.db", b"some sstable bytes"),
    ("nb-1-big-Index.db", b"an index"),
];

fn manifest(name: &str) -> Vec<u8> {
    let entries: Vec<Value> = FILES
        .iter()
        .map(|(file, bytes)| {
            json!({"objectKey": format!("data/ks/t-0123456789abcdef0123456789abcdef/1-a/{file}"), "type": "FILE", "size": bytes.len()})
        })
        .collect();
    json!({
        "snapshot": {
            "name": name,
            "keyspaces": {"ks": {"tables": {"t": {"sstables": {"nb-1-big": entries}}}}}
        },
        "schemaVersion": SCHEMA,
        "tokens": []
    })
    .to_string()
    .into_bytes()
}

/// Runs `daedalus ARGS --json` against `store`; the operation it prints, which must have COMPLETED.
fn completed(store: &Store, args: &[&str]) -> Value {
    let output = support::daedalus_command()
        .args(args)
        .arg("--json")
        .args(store.daedalus_args())
        .envs(store.daedalus_env().iter().copied())
        .output()
        .expect("the daedalus binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?} failed:\n{stderr}");
    let operation: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(operation["state"], "COMPLETED", "{operation}\n{stderr}");
    assert!(
        stderr.contains(r"manifests/odd\nname.json"),
        "a warning names the skipped key, escaped:\n{stderr}"
    );
    operation
}

fn lists_and_removes_past_odd_names(store: Store) {
    store.create_bucket(BUCKET);
    let name = format!("first-{SCHEMA}-1000");
    for (file, bytes) in FILES {
        store.put(
            BUCKET,
            &format!("{NODE}/data/ks/t-0123456789abcdef0123456789abcdef/1-a/{file}"),
            bytes,
        );
    }
    store.put(
        BUCKET,
        &format!("{NODE}/manifests/{name}.json"),
        &manifest(&name),
    );
    let odd = [
        format!("{NODE}/manifests/odd\nname.json"),
        format!("{NODE}/odd\nentry"),
    ];
    for key in &odd {
        store.put(BUCKET, key, &manifest(&name));
    }
    let scheme = if store.kind().is_s3() { "s3" } else { "azure" };
    let location = format!("{scheme}://{BUCKET}/{NODE}");
    let skipped = json!([{
        "key": format!("{NODE}/manifests/odd\\nname.json"),
        "reason": "not a valid object key"
    }]);

    let listed = completed(&store, &["list", "--sl", &location]);
    assert_eq!(listed["response"]["reports"][0]["name"], name.as_str());
    assert_eq!(listed["response"]["totalManifests"], 1);
    assert_eq!(listed["response"]["skippedObjects"], skipped);

    let removed = completed(
        &store,
        &["remove-backup", "--sl", &location, "--backup-name", &name],
    );
    assert_eq!(removed["response"]["removed"][0]["name"], name.as_str());
    assert_eq!(removed["response"]["skippedObjects"], skipped);
    let left: Vec<String> = store.objects(BUCKET).into_keys().collect();
    assert_eq!(
        left, odd,
        "the backup is gone; the odd objects are left alone"
    );
}

#[test]
fn minio() {
    lists_and_removes_past_odd_names(Store::minio());
}

#[test]
fn azurite() {
    lists_and_removes_past_odd_names(Store::azurite());
}
