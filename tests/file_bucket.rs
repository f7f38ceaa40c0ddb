//! `daedalus list` and `daedalus remove-backup` on `file://` buckets that someone with write access to the bucket
//! has tampered with (issue #23): a node's `data` directory that is a symbolic link to a directory outside, an
//! object or a manifest that is a symbolic link to a file outside, and a manifest named with a newline. Nothing
//! outside the bucket is read or deleted, and the listing goes on, reporting what it skipped.
//!
//! No Cassandra: with a location that names the node, neither command connects to JMX.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::daedalus;

const NODE: &str = "cl/dc1/node1";
const SCHEMA: &str = "6c8e35a0-4a5e-3a41-9b1e-0b6d4f7f2e11";
const SECRET: &[u8] = b"root:$6$not-for-the-bucket:19000:0:99999:7:::\n";

/// A bucket directory and a sentinel directory beside it (outside the bucket) holding a secret file and files at
/// the paths a backup's objects have under `data/`.
struct Bucket {
    dir: tempfile::TempDir,
}

impl Bucket {
    fn new() -> Bucket {
        let bucket = Bucket {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        std::fs::create_dir_all(bucket.node().join("manifests")).unwrap();
        std::fs::create_dir_all(
            bucket
                .sentinel()
                .join("ks/t-0123456789abcdef0123456789abcdef/1-a"),
        )
        .unwrap();
        std::fs::write(bucket.sentinel().join("secret"), SECRET).unwrap();
        for (name, _) in FILES {
            std::fs::write(
                bucket
                    .sentinel()
                    .join("ks/t-0123456789abcdef0123456789abcdef/1-a")
                    .join(name),
                format!("outside: {name}"),
            )
            .unwrap();
        }
        bucket
    }

    fn node(&self) -> PathBuf {
        self.dir.path().join("bucket").join(NODE)
    }

    fn sentinel(&self) -> PathBuf {
        self.dir.path().join("sentinel")
    }

    fn location(&self) -> String {
        format!("file://{}/bucket/{NODE}", self.dir.path().display())
    }

    /// Writes the objects of backup `name` (its manifest and, unless `data` is false, its files) as a backup does.
    fn backup(&self, name: &str, data: bool) {
        if data {
            let dir = self
                .node()
                .join("data/ks/t-0123456789abcdef0123456789abcdef/1-a");
            std::fs::create_dir_all(&dir).unwrap();
            for (file, _) in FILES {
                std::fs::write(dir.join(file), format!("backed up: {file}")).unwrap();
            }
        }
        std::fs::write(
            self.node().join(format!("manifests/{name}.json")),
            manifest(name).to_string(),
        )
        .unwrap();
    }
}

const FILES: [(&str, u64); 2] = [("nb-1-big-Data.db", 22), ("nb-1-big-Index.db", 23)];

fn manifest(name: &str) -> Value {
    let entries: Vec<Value> = FILES
        .iter()
        .map(|(file, size)| {
            json!({"objectKey": format!("data/ks/t-0123456789abcdef0123456789abcdef/1-a/{file}"), "type": "FILE", "size": size})
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
}

fn name(tag: &str, millis: u64) -> String {
    format!("{tag}-{SCHEMA}-{millis}")
}

/// Every file under `dir` with its content.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

/// Runs `args --json`; the operation it prints, which must have COMPLETED.
fn completed(args: &[&str]) -> (Value, String) {
    let mut args = args.to_vec();
    args.push("--json");
    let output = daedalus(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?} failed:\n{stderr}");
    let operation: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(operation["state"], "COMPLETED", "{operation}");
    (operation, stderr)
}

fn listed_names(operation: &Value) -> Vec<String> {
    operation["response"]["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|report| report["name"].as_str().unwrap().to_string())
        .collect()
}

/// (a) The node's `data` is a symbolic link to a directory outside the bucket: removing a backup deletes its
/// manifest and nothing there.
#[test]
fn remove_backup_never_deletes_through_a_symlinked_data_directory() {
    let bucket = Bucket::new();
    let (old, new) = (name("old", 1_000), name("new", 2_000));
    bucket.backup(&old, false);
    // The newer backup refers to other objects, so the old one's are all removable.
    let mut newer = manifest(&new);
    newer["snapshot"]["keyspaces"]["ks"]["tables"]["t"]["sstables"]["nb-1-big"] = json!([]);
    std::fs::write(
        bucket.node().join(format!("manifests/{new}.json")),
        newer.to_string(),
    )
    .unwrap();
    symlink(bucket.sentinel(), bucket.node().join("data")).unwrap();
    let before = contents(&bucket.sentinel());

    let location = bucket.location();
    let (listed, _) = completed(&["list", "--sl", &location]);
    assert_eq!(listed_names(&listed), [new.clone(), old.clone()]);

    let (removed, _) = completed(&["remove-backup", "--sl", &location, "--backup-name", &old]);
    assert_eq!(removed["response"]["removed"][0]["name"], old.as_str());
    assert!(!bucket.node().join(format!("manifests/{old}.json")).exists());
    assert_eq!(
        contents(&bucket.sentinel()),
        before,
        "nothing outside the bucket was deleted"
    );
}

/// (b) A manifest entry's object, and a manifest itself, are symbolic links to files outside the bucket: the
/// manifest is not read (it is skipped and reported), the object is neither deleted nor followed.
#[test]
fn symlinked_objects_and_manifests_are_neither_read_nor_deleted() {
    let bucket = Bucket::new();
    let (old, new) = (name("old", 1_000), name("new", 2_000));
    bucket.backup(&old, true);
    let object = bucket
        .node()
        .join("data/ks/t-0123456789abcdef0123456789abcdef/1-a/nb-1-big-Data.db");
    std::fs::remove_file(&object).unwrap();
    symlink(bucket.sentinel().join("secret"), &object).unwrap();
    // A manifest outside the bucket, shown to the node through a link.
    let planted = name("planted", 3_000);
    std::fs::write(
        bucket.sentinel().join("planted.json"),
        manifest(&planted).to_string(),
    )
    .unwrap();
    symlink(
        bucket.sentinel().join("planted.json"),
        bucket.node().join(format!("manifests/{planted}.json")),
    )
    .unwrap();
    let mut newer = manifest(&new);
    newer["snapshot"]["keyspaces"]["ks"]["tables"]["t"]["sstables"]["nb-1-big"] = json!([]);
    std::fs::write(
        bucket.node().join(format!("manifests/{new}.json")),
        newer.to_string(),
    )
    .unwrap();
    let before = contents(&bucket.sentinel());
    let location = bucket.location();
    let planted_key = format!("{NODE}/manifests/{planted}.json");

    let (listed, _) = completed(&["list", "--sl", &location]);
    assert_eq!(listed_names(&listed), [new.clone(), old.clone()]);
    assert_eq!(
        listed["response"]["skippedObjects"],
        json!([{"key": planted_key, "reason": "a symbolic link, never followed"}])
    );

    let (removed, stderr) = completed(&["remove-backup", "--sl", &location, "--backup-name", &old]);
    assert_eq!(removed["response"]["removed"][0]["name"], old.as_str());
    assert_eq!(
        removed["response"]["skippedObjects"][0]["key"],
        planted_key.as_str()
    );
    assert!(
        stderr.contains("not deleting a symbolic link") && stderr.contains("nb-1-big-Data.db"),
        "{stderr}"
    );
    assert!(
        object.is_symlink(),
        "the link is left for the operator to see"
    );
    assert!(
        !bucket
            .node()
            .join("data/ks/t-0123456789abcdef0123456789abcdef/1-a/nb-1-big-Index.db")
            .exists()
    );
    assert_eq!(
        contents(&bucket.sentinel()),
        before,
        "nothing outside changed"
    );
    assert_eq!(
        std::fs::read(bucket.sentinel().join("secret")).unwrap(),
        SECRET
    );
}

/// (c) A manifest named with a newline: `list` and `remove-backup` work, and both report the name they skipped.
#[test]
fn list_and_remove_backup_go_past_a_name_with_a_newline() {
    let bucket = Bucket::new();
    let (first, second) = (name("first", 1_000), name("second", 2_000));
    bucket.backup(&first, true);
    bucket.backup(&second, true);
    std::fs::write(
        bucket.node().join("manifests/odd\nname.json"),
        manifest(&first).to_string(),
    )
    .unwrap();
    let location = bucket.location();
    let skipped = json!([{
        "key": format!("{NODE}/manifests/odd\\nname.json"),
        "reason": "not a valid object key"
    }]);

    let (listed, stderr) = completed(&["list", "--sl", &location]);
    assert_eq!(listed_names(&listed), [second.clone(), first.clone()]);
    assert_eq!(listed["response"]["skippedObjects"], skipped);
    assert!(
        stderr.contains(r"manifests/odd\nname.json"),
        "a warning names the entry, escaped:\n{stderr}"
    );

    // Without --json: Esop's table on stdout, the skipped names on stderr.
    let table = daedalus(&["list", "--sl", &location]);
    assert!(table.status.success());
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert!(
        stdout.starts_with("Timestamp\tName") && stdout.contains(&second),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&table.stderr);
    assert!(
        stderr.contains("1 entries of the bucket could not be listed")
            && stderr
                .contains(r#""cl/dc1/node1/manifests/odd\nname.json": not a valid object key"#),
        "{stderr}"
    );

    // The same through the REST API, every answer checked against openapi.yaml.
    let sidecar = support::Sidecar::start(&[]);
    let done = support::run(
        &sidecar,
        json!({"type": "list", "storageLocation": location}),
        "COMPLETED",
    );
    assert_eq!(done["response"]["skippedObjects"], skipped);
    let done = support::run(
        &sidecar,
        json!({"type": "remove-backup", "storageLocation": location, "backupName": second, "dry": true}),
        "COMPLETED",
    );
    assert_eq!(done["response"]["skippedObjects"], skipped);

    let (removed, _) = completed(&["remove-backup", "--sl", &location, "--backup-name", &first]);
    assert_eq!(removed["response"]["removed"][0]["name"], first.as_str());
    assert_eq!(removed["response"]["skippedObjects"], skipped);
    assert!(bucket.node().join("manifests/odd\nname.json").exists());
}
