//! The `file://` store against real directories: `object_store`'s conformance tests, `LocalFileSystem`'s layout,
//! symbolic links and other files that are no objects, names that cannot be keys, multipart uploads and ranges.

use std::os::unix::fs::symlink;

use futures_util::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStoreExt, integration};

use super::*;
use crate::storage::skipped::{SkipReason, SkippedEntries, SkippedEntry};

/// A bucket directory and, beside it (outside the bucket), a sentinel directory with a secret file.
struct Fixture {
    _dir: tempfile::TempDir,
    bucket: PathBuf,
    outside: PathBuf,
    store: FileStore,
}

const SECRET: &[u8] = b"root:$6$the-shadow-file:19000:0:99999:7:::\n";

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&bucket).unwrap();
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("shadow"), SECRET).unwrap();
    std::fs::write(outside.join("sub/nb-1-big-Data.db"), b"not the bucket's").unwrap();
    let store = FileStore::open(&bucket).unwrap();
    Fixture {
        _dir: dir,
        bucket,
        outside,
        store,
    }
}

/// Every file under `dir` with its content: what "unchanged" is checked against.
fn snapshot(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

async fn listed(store: &FileStore, prefix: Option<&str>) -> (Vec<String>, Vec<SkippedEntry>) {
    let prefix = prefix.map(Path::from);
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    let mut listing = store.list(prefix.as_ref());
    while let Some(item) = listing.next().await {
        match item {
            Ok(meta) => keys.push(meta.location.to_string()),
            Err(error) => skipped.push(
                SkippedEntry::of(&error)
                    .unwrap_or_else(|| panic!("a failed listing: {error}"))
                    .clone(),
            ),
        }
    }
    keys.sort();
    skipped.sort_by(|a, b| a.name.cmp(&b.name));
    (keys, skipped)
}

#[tokio::test(flavor = "multi_thread")]
async fn passes_object_stores_own_conformance_tests() {
    let fixture = fixture();
    let store = &fixture.store;
    integration::put_get_delete_list(store).await;
    integration::list_with_offset_exclusivity(store).await;
    integration::get_opts(store).await;
    integration::list_uses_directories_correctly(store).await;
    integration::list_with_delimiter(store).await;
    integration::rename_and_copy(store).await;
    integration::copy_if_not_exists(store).await;
    integration::copy_rename_nonexistent_object(store).await;
    integration::stream_get(store).await;
    integration::put_opts(store, false).await;
}

/// Keys with characters `Path` encodes, and what other tools write: the file names are those
/// `LocalFileSystem` uses, both ways.
#[tokio::test(flavor = "multi_thread")]
async fn lays_objects_out_as_local_file_system_does() {
    let fixture = fixture();
    let local = LocalFileSystem::new_with_prefix(&fixture.bucket).unwrap();
    let keys = [
        Path::from("c/dc/n/manifests/tag-1.json"),
        Path::from("c/dc/n/data/ks/t-1/1-abc/nb-1-big-Data.db"),
        Path::from("odd/a b/c%d/e#f/x\ny.json"),
        Path::from_iter(["odd", "a/b", "..", "été", "p|q*r?"]),
    ];
    for (index, key) in keys.iter().enumerate() {
        let content = Bytes::from(format!("object {index}"));
        if index % 2 == 0 {
            local.put(key, content.clone().into()).await.unwrap();
        } else {
            fixture
                .store
                .put(key, content.clone().into())
                .await
                .unwrap();
        }
        let ours = fixture.store.get(key).await.unwrap().bytes().await.unwrap();
        let theirs = local.get(key).await.unwrap().bytes().await.unwrap();
        assert_eq!((&ours, &theirs), (&content, &content), "{key}");
        assert_eq!(
            fixture.store.head(key).await.unwrap().e_tag,
            local.head(key).await.unwrap().e_tag,
            "{key}"
        );
    }
    // Written by another tool: a name `Path` would have encoded, listed as it is by both.
    std::fs::write(fixture.bucket.join("odd/raw été [1].txt"), b"raw").unwrap();
    // `Path` percent-encoded what it does not take as it is; the file names are its segments.
    assert!(
        fixture
            .bucket
            .join("odd/a b/c%25d/e%23f/x%0Ay.json")
            .is_file()
    );
    assert!(
        fixture
            .bucket
            .join("odd/a%2Fb/%2E%2E/%C3%A9t%C3%A9/p%7Cq%2Ar%3F")
            .is_file()
    );
    let mut ours: Vec<ObjectMeta> = fixture.store.list(None).try_collect().await.unwrap();
    let mut theirs: Vec<ObjectMeta> = local.list(None).try_collect().await.unwrap();
    ours.sort_by(|a, b| a.location.cmp(&b.location));
    theirs.sort_by(|a, b| a.location.cmp(&b.location));
    assert_eq!(ours, theirs);
    let ours = fixture
        .store
        .list_with_delimiter(Some(&Path::from("odd")))
        .await
        .unwrap();
    let theirs = local
        .list_with_delimiter(Some(&Path::from("odd")))
        .await
        .unwrap();
    assert_eq!(ours.common_prefixes, theirs.common_prefixes);
}

/// A node prefix whose `data` is a symbolic link to a directory outside the bucket: nothing there is read,
/// listed or deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlinked_directory_is_never_followed() {
    let fixture = fixture();
    let node = fixture.bucket.join("c/dc/n");
    std::fs::create_dir_all(node.join("manifests")).unwrap();
    std::fs::write(node.join("manifests/m.json"), b"{}").unwrap();
    symlink(&fixture.outside, node.join("data")).unwrap();
    let before = snapshot(&fixture.outside);

    let key = Path::from("c/dc/n/data/sub/nb-1-big-Data.db");
    let error = fixture.store.get(&key).await.unwrap_err();
    assert!(
        matches!(error, object_store::Error::NotFound { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("c/dc/n/data is a symbolic link"),
        "{error}"
    );
    let error = fixture.store.head(&key).await.unwrap_err();
    assert!(
        matches!(error, object_store::Error::NotFound { .. }),
        "{error}"
    );
    let error = fixture.store.delete(&key).await.unwrap_err();
    assert!(
        matches!(error, object_store::Error::NotFound { .. }),
        "{error}"
    );
    let deleted: Vec<_> = fixture
        .store
        .delete_stream(futures_util::stream::iter([Ok(key.clone())]).boxed())
        .collect()
        .await;
    assert!(matches!(
        deleted[..],
        [Err(object_store::Error::NotFound { .. })]
    ));
    // Writing through it is refused too.
    let error = fixture
        .store
        .put(&Path::from("c/dc/n/data/new"), "x".into())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("symbolic link"), "{error}");

    let (keys, skipped) = listed(&fixture.store, Some("c/dc/n")).await;
    assert_eq!(keys, ["c/dc/n/manifests/m.json"]);
    assert_eq!(
        skipped,
        [SkippedEntry {
            name: "c/dc/n/data".into(),
            reason: SkipReason::SymbolicLink
        }]
    );
    // Listing the link itself as a prefix gives it, skipped, and nothing behind it.
    let (keys, skipped) = listed(&fixture.store, Some("c/dc/n/data")).await;
    assert!(keys.is_empty(), "{keys:?}");
    assert_eq!(skipped.len(), 1);
    let level = fixture
        .store
        .list_with_delimiter(Some(&Path::from("c/dc/n")))
        .await
        .unwrap();
    assert_eq!(level.common_prefixes, [Path::from("c/dc/n/manifests")]);
    let SkippedEntries(skipped) = level.extensions.get::<SkippedEntries>().unwrap();
    assert_eq!(skipped[0].name, "c/dc/n/data");

    assert_eq!(
        snapshot(&fixture.outside),
        before,
        "the sentinel is unchanged"
    );
}

/// An object that is a symbolic link to a secret file outside the bucket (or to another object inside it):
/// its bytes are never served, it is not listed, and deleting it deletes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlinked_object_is_never_read() {
    let fixture = fixture();
    let table = fixture.bucket.join("c/dc/n/data/ks/t-1/1-abc");
    std::fs::create_dir_all(&table).unwrap();
    std::fs::write(table.join("nb-1-big-Index.db"), b"index").unwrap();
    symlink(
        fixture.outside.join("shadow"),
        table.join("nb-1-big-Data.db"),
    )
    .unwrap();
    symlink("nb-1-big-Index.db", table.join("nb-1-big-Summary.db")).unwrap();
    let before = snapshot(&fixture.outside);

    for name in ["nb-1-big-Data.db", "nb-1-big-Summary.db"] {
        let key = Path::from(format!("c/dc/n/data/ks/t-1/1-abc/{name}"));
        let error = fixture.store.get(&key).await.unwrap_err();
        assert!(
            matches!(error, object_store::Error::NotFound { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("is a symbolic link"), "{error}");
        assert!(fixture.store.head(&key).await.is_err());
        let copy = fixture.store.copy(&key, &Path::from("copied")).await;
        assert!(copy.is_err());
        let error = fixture.store.delete(&key).await.unwrap_err();
        assert!(
            matches!(error, object_store::Error::NotFound { .. }),
            "{error}"
        );
    }
    let (keys, skipped) = listed(&fixture.store, None).await;
    assert_eq!(keys, ["c/dc/n/data/ks/t-1/1-abc/nb-1-big-Index.db"]);
    let names: Vec<(&str, SkipReason)> = skipped
        .iter()
        .map(|entry| (entry.name.as_str(), entry.reason))
        .collect();
    assert_eq!(
        names,
        [
            (
                "c/dc/n/data/ks/t-1/1-abc/nb-1-big-Data.db",
                SkipReason::SymbolicLink
            ),
            (
                "c/dc/n/data/ks/t-1/1-abc/nb-1-big-Summary.db",
                SkipReason::SymbolicLink
            ),
        ]
    );
    assert!(
        table.join("nb-1-big-Data.db").is_symlink(),
        "the link itself stays"
    );
    assert_eq!(
        snapshot(&fixture.outside),
        before,
        "the sentinel is unchanged"
    );
    assert_eq!(
        std::fs::read(fixture.outside.join("shadow")).unwrap(),
        SECRET
    );
}

/// A FIFO in an object's place is not an object: reading it neither blocks nor serves anything.
#[tokio::test(flavor = "multi_thread")]
async fn only_regular_files_are_objects() {
    let fixture = fixture();
    std::fs::create_dir_all(fixture.bucket.join("c")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(fixture.bucket.join("c/pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let error = fixture.store.get(&Path::from("c/pipe")).await.unwrap_err();
    assert!(
        matches!(error, object_store::Error::NotFound { .. }),
        "{error}"
    );
    let (keys, skipped) = listed(&fixture.store, None).await;
    assert!(keys.is_empty());
    assert_eq!(skipped[0].reason, SkipReason::NotAFile);
}

/// File names no key can have (a newline, bytes that are not UTF-8), as a tool other than an object store
/// may write them: skipped and reported, and the listing goes on.
#[tokio::test(flavor = "multi_thread")]
async fn names_that_cannot_be_keys_are_skipped_and_reported() {
    use std::os::unix::ffi::OsStrExt;
    let fixture = fixture();
    let manifests = fixture.bucket.join("c/dc/n/manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("good-1.json"), b"{}").unwrap();
    std::fs::write(manifests.join("bad\nname.json"), b"{}").unwrap();
    std::fs::write(
        manifests.join(std::ffi::OsStr::from_bytes(b"bad\xff.json")),
        b"{}",
    )
    .unwrap();
    std::fs::create_dir_all(manifests.join("dir\twith tab")).unwrap();
    std::fs::write(manifests.join("dir\twith tab/inside.json"), b"{}").unwrap();
    std::fs::write(manifests.join("good-2.json"), b"{}").unwrap();

    let (keys, skipped) = listed(&fixture.store, Some("c/dc/n/manifests")).await;
    assert_eq!(
        keys,
        [
            "c/dc/n/manifests/good-1.json",
            "c/dc/n/manifests/good-2.json"
        ]
    );
    let names: Vec<&str> = skipped.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "c/dc/n/manifests/bad\\nname.json",
            "c/dc/n/manifests/bad\\xff.json",
            "c/dc/n/manifests/dir\\twith tab",
        ]
    );
    assert!(
        skipped
            .iter()
            .all(|entry| entry.reason == SkipReason::NotAKey)
    );

    let level = fixture
        .store
        .list_with_delimiter(Some(&Path::from("c/dc/n/manifests")))
        .await
        .unwrap();
    assert_eq!(level.objects.len(), 2);
    assert!(level.common_prefixes.is_empty());
    assert_eq!(level.extensions.get::<SkippedEntries>().unwrap().0.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_uploads_are_atomic_and_leave_nothing_behind() {
    let fixture = fixture();
    let key = Path::from("c/dc/n/data/big");
    let parts: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 3 * 1024 * 1024 + 1]).collect();
    let mut upload = fixture.store.put_multipart(&key).await.unwrap();
    for part in &parts {
        upload.put_part(part.clone().into()).await.unwrap();
    }
    // In progress: nothing to see.
    assert!(fixture.store.head(&key).await.is_err());
    assert_eq!(listed(&fixture.store, None).await, (vec![], vec![]));
    upload.complete().await.unwrap();
    let got = fixture
        .store
        .get(&key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, parts.concat());

    // Aborted, and dropped unfinished: the object is untouched and no temporary file stays.
    let mut aborted = fixture.store.put_multipart(&key).await.unwrap();
    aborted.put_part(vec![9; 10].into()).await.unwrap();
    aborted.abort().await.unwrap();
    let mut dropped = fixture.store.put_multipart(&key).await.unwrap();
    dropped.put_part(vec![9; 10].into()).await.unwrap();
    drop(dropped);
    eventually_only(&fixture.bucket.join("c/dc/n/data"), &["big"]).await;
    let got = fixture
        .store
        .get(&key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), parts.concat().len());
}

/// Waits until `dir` holds exactly `names` (a dropped upload removes its file on the blocking pool).
async fn eventually_only(dir: &std::path::Path, names: &[&str]) {
    for _ in 0..500 {
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        if found == names {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{} does not hold just {names:?}", dir.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_ranges_in_large_blocks() {
    let fixture = fixture();
    let key = Path::from("c/dc/n/data/object");
    let data: Vec<u8> = (0..(3 * READ_BLOCK + 12_345))
        .map(|i| (i % 251) as u8)
        .collect();
    fixture.store.put(&key, data.clone().into()).await.unwrap();

    let chunks: Vec<Bytes> = fixture
        .store
        .get(&key)
        .await
        .unwrap()
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
    assert_eq!(sizes, [READ_BLOCK, READ_BLOCK, READ_BLOCK, 12_345]);
    assert_eq!(chunks.concat(), data);

    let range = READ_BLOCK as u64 - 10..READ_BLOCK as u64 + 10;
    let got = fixture.store.get_range(&key, range.clone()).await.unwrap();
    assert_eq!(got, data[range.start as usize..range.end as usize]);
    let tail = fixture
        .store
        .get_opts(
            &key,
            GetOptions::new().with_range(Some(object_store::GetRange::Suffix(7))),
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(tail, data[data.len() - 7..]);
    let error = fixture
        .store
        .get_range(&key, data.len() as u64 + 1..data.len() as u64 + 5)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("outside the object's"),
        "{error}"
    );
    let ranges = fixture
        .store
        .get_ranges(&key, &[0..3, 10..20])
        .await
        .unwrap();
    assert_eq!(ranges, [&data[0..3], &data[10..20]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_of_files_being_written_are_refused() {
    let fixture = fixture();
    let error = fixture
        .store
        .put(&Path::parse("c/x#12").unwrap(), "x".into())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("files being written"), "{error}");
    std::fs::create_dir_all(fixture.bucket.join("c")).unwrap();
    std::fs::write(fixture.bucket.join("c/y#3"), b"partial").unwrap();
    assert_eq!(listed(&fixture.store, None).await, (vec![], vec![]));
}
