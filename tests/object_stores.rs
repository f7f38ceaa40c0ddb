//! The object-storage test servers work: each starts, takes a bucket and an object written by a signed request,
//! lists and returns it, and keeps it across a restart.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use support::stores::Store;

fn round_trip(mut store: Store) {
    store.create_bucket("backups");
    store.create_bucket("backups"); // one that exists is fine
    let key = "cluster/node 1/data+1.db";
    store.put("backups", key, b"some sstable bytes");
    store.put("backups", "cluster/manifest.json", b"{}");

    let expected = [
        (key.to_string(), 18),
        ("cluster/manifest.json".to_string(), 2),
    ];
    assert_eq!(store.objects("backups"), expected.into_iter().collect());
    assert_eq!(store.get("backups", key), b"some sstable bytes");

    store.stop();
    store.restart();
    assert_eq!(
        store.get("backups", key),
        b"some sstable bytes",
        "{:?} kept it",
        store.kind()
    );
    store.delete("backups", "cluster/manifest.json");
    assert_eq!(
        store.objects("backups").into_keys().collect::<Vec<_>>(),
        [key]
    );
}

#[test]
fn minio() {
    round_trip(Store::minio());
}

#[test]
fn s3s_fs() {
    round_trip(Store::s3s());
}

#[test]
fn azurite() {
    round_trip(Store::azurite());
}
