//! Tests of the download engine: whole files and ranged parts, retries, hashing and the temporary beside the
//! target, against a directory store.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::storage::Throttle;
use crate::storage::transfer::RetryPolicy;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::*;
use crate::node_fs::Root;
use crate::storage::StorageLocation;
use std::path::{Path, PathBuf};

/// A scratch directory of its own per test, removed at the end, and the root restored files go into.
struct Scratch(PathBuf, Arc<Root>);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("daedalus-download-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bucket")).unwrap();
        let root = Arc::new(Root::open_creating(&dir.join("restore")).unwrap());
        Scratch(dir, root)
    }

    /// The node's objects in a directory store (which streams files in 8 KiB chunks).
    fn store(&self) -> RemoteStorage {
        let location = StorageLocation::parse(&format!(
            "file://{}/bucket/cluster/dc/node",
            self.0.display()
        ))
        .unwrap();
        let store = crate::storage::StorageSettings::default()
            .open(&location, &Default::default())
            .unwrap();
        RemoteStorage::new(store, location).unwrap()
    }

    /// Where restored files go; the directory is created by the download itself.
    fn target(&self, name: &str) -> Target {
        Target::new(&self.1, RelPath::of(["ks", "t-1234", name]).unwrap())
    }

    /// Every temporary file left anywhere under the scratch directory.
    fn temporaries(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.to_string_lossy().ends_with(TEMPORARY_SUFFIX) {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.0, &mut found);
        found
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hash_of(algorithm: HashAlgorithm, content: &[u8]) -> Option<String> {
    let mut hasher = Hasher::new(algorithm);
    hasher.update(content);
    hasher.finish()
}

/// Content that differs at every offset, so a misplaced block is noticed.
fn content(length: usize, seed: u8) -> Vec<u8> {
    (0..length)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

/// Puts `content` under `data/ks/t-1234/<name>` and plans it to `scratch.target(name)`.
async fn object(
    remote: &RemoteStorage,
    scratch: &Scratch,
    name: &str,
    content: &[u8],
    algorithm: HashAlgorithm,
) -> PlannedDownload {
    let key = format!("data/ks/t-1234/1-abc/{name}");
    remote
        .put(&key, Bytes::copy_from_slice(content))
        .await
        .unwrap();
    PlannedDownload {
        key,
        target: scratch.target(name),
        size: content.len() as u64,
        hash: hash_of(algorithm, content),
    }
}

fn settings(algorithm: HashAlgorithm, max_attempts: u32) -> DownloadSettings {
    DownloadSettings {
        concurrency: 3,
        retry: RetryPolicy {
            interval: Duration::ZERO,
            exponential: false,
            max_attempts,
        },
        throttle: Throttle::unlimited(),
        algorithm,
    }
}

/// Every `(done, total)` reported, in order.
type Reports = Arc<Mutex<Vec<(u64, u64)>>>;

/// A progress callback that records every report.
fn recorder() -> (Progress, Reports) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let progress: Progress = Arc::new(move |done, total| lock(&sink).push((done, total)));
    (progress, seen)
}

async fn run(
    remote: &RemoteStorage,
    files: &[PlannedDownload],
    settings: &DownloadSettings,
) -> Result<DownloadStats, StorageError> {
    let (progress, _) = recorder();
    download(
        remote,
        files.to_vec(),
        settings,
        progress,
        &CancellationToken::new(),
    )
    .await
}

/// Three files: empty, small, and larger than a write block (and than the store's chunks).
async fn three_files(
    remote: &RemoteStorage,
    scratch: &Scratch,
    algorithm: HashAlgorithm,
) -> (Vec<PlannedDownload>, Vec<Vec<u8>>) {
    let contents = vec![
        Vec::new(),
        b"a small file".to_vec(),
        content(2 * BLOCK + 12_345, 1),
    ];
    let mut files = Vec::new();
    for (name, bytes) in [
        "nb-1-big-TOC.txt",
        "nb-1-big-Digest.crc32",
        "nb-1-big-Data.db",
    ]
    .iter()
    .zip(&contents)
    {
        files.push(object(remote, scratch, name, bytes, algorithm).await);
    }
    (files, contents)
}

#[tokio::test]
async fn downloads_every_file_whole_reporting_progress_as_bytes_arrive() {
    let scratch = Scratch::new("round-trip");
    let remote = scratch.store();
    let (files, contents) = three_files(&remote, &scratch, HashAlgorithm::Sha256).await;
    let total: u64 = contents.iter().map(|c| c.len() as u64).sum();
    let (progress, seen) = recorder();
    let stats = download(
        &remote,
        files.clone(),
        &settings(HashAlgorithm::Sha256, 0),
        progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();

    for (file, content) in files.iter().zip(&contents) {
        assert_eq!(
            &std::fs::read(file.target.display()).unwrap(),
            content,
            "{file:?}"
        );
    }
    assert_eq!(
        stats,
        DownloadStats {
            files: 3,
            bytes: total,
            downloaded_files: 3,
            downloaded_bytes: total,
            kept_files: 0,
        }
    );
    assert!(scratch.temporaries().is_empty());
    let seen = lock(&seen).clone();
    assert_eq!(seen.first(), Some(&(0, total)));
    assert_eq!(seen.last(), Some(&(total, total)));
    assert!(
        seen.windows(2).all(|pair| pair[0].0 <= pair[1].0),
        "{seen:?}"
    );
    let within_the_large_file = seen
        .iter()
        .filter(|(done, _)| *done > 0 && *done < total)
        .count();
    assert!(
        within_the_large_file >= 2,
        "progress is reported while a file streams, not only once it is done: {seen:?}"
    );
}

#[tokio::test]
async fn a_corrupt_object_fails_naming_it_and_leaves_no_file() {
    let scratch = Scratch::new("corrupt");
    let remote = scratch.store();
    let mut damaged = object(
        &remote,
        &scratch,
        "nb-2-big-Data.db",
        &content(BLOCK + 7, 2),
        HashAlgorithm::Sha256,
    )
    .await;
    damaged.hash = hash_of(HashAlgorithm::Sha256, &content(BLOCK + 7, 3));
    // Beside it, files in flight that the failure cancels.
    let mut files = vec![damaged.clone()];
    for i in 10..14u8 {
        let name = format!("nb-{i}-big-Data.db");
        let bytes = content(3 * BLOCK, i);
        files.push(object(&remote, &scratch, &name, &bytes, HashAlgorithm::Sha256).await);
    }
    let error = run(&remote, &files, &settings(HashAlgorithm::Sha256, 3))
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::Corrupt { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("cluster/dc/node/data/ks/t-1234/1-abc/nb-2-big-Data.db"),
        "{message}"
    );
    assert!(
        message.contains(&remote.location().store_name()),
        "{message}"
    );
    assert!(message.contains("SHA-256"), "{message}");
    assert!(!damaged.target.display().exists());
    assert!(scratch.temporaries().is_empty());

    // An object of another size than the manifest's fails before a byte is written.
    let mut short = object(
        &remote,
        &scratch,
        "nb-3-big-Data.db",
        b"0123456789",
        HashAlgorithm::Sha256,
    )
    .await;
    short.size = 11;
    let error = run(
        &remote,
        std::slice::from_ref(&short),
        &settings(HashAlgorithm::Sha256, 3),
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains(
            "nb-3-big-Data.db does not match its manifest entry: expected 11 bytes, got 10 bytes"
        ),
        "{error}"
    );
    assert!(!short.target.display().exists());
    assert!(scratch.temporaries().is_empty());
}

#[tokio::test]
async fn a_second_run_keeps_complete_files_and_replaces_damaged_ones() {
    let scratch = Scratch::new("resume");
    let remote = scratch.store();
    let (mut files, contents) = three_files(&remote, &scratch, HashAlgorithm::Sha256).await;
    let extra = content(BLOCK / 2, 4);
    files.push(
        object(
            &remote,
            &scratch,
            "nb-1-big-Index.db",
            &extra,
            HashAlgorithm::Sha256,
        )
        .await,
    );
    let algorithm = settings(HashAlgorithm::Sha256, 0);
    run(&remote, &files, &algorithm).await.unwrap();

    let (progress, seen) = recorder();
    let again = download(
        &remote,
        files.clone(),
        &algorithm,
        progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            again.downloaded_files,
            again.downloaded_bytes,
            again.kept_files
        ),
        (0, 0, 4)
    );
    let total = again.bytes;
    assert_eq!(lock(&seen).last(), Some(&(total, total)));

    // Cut short; same size but other bytes; gone with a stale temporary file beside it.
    let large = &files[2];
    std::fs::write(large.target.display(), &contents[2][..1000]).unwrap();
    std::fs::write(files[1].target.display(), b"A SMALL FILE").unwrap();
    std::fs::remove_file(files[3].target.display()).unwrap();
    std::fs::write(
        files[3]
            .target
            .root
            .display(&temporary_path(&files[3].target.rel).unwrap()),
        b"left by a run that was killed",
    )
    .unwrap();
    let third = run(&remote, &files, &algorithm).await.unwrap();
    assert_eq!((third.downloaded_files, third.kept_files), (3, 1));
    assert_eq!(
        third.downloaded_bytes,
        (contents[1].len() + contents[2].len() + extra.len()) as u64
    );
    assert_eq!(
        std::fs::read(files[1].target.display()).unwrap(),
        contents[1]
    );
    assert_eq!(std::fs::read(large.target.display()).unwrap(), contents[2]);
    assert_eq!(std::fs::read(files[3].target.display()).unwrap(), extra);
    assert!(scratch.temporaries().is_empty());
}

#[tokio::test]
async fn cancelling_mid_way_stops_and_leaves_no_temporary_file() {
    let scratch = Scratch::new("cancel");
    let remote = scratch.store();
    let mut files = Vec::new();
    for i in 0..6u8 {
        let name = format!("nb-{i}-big-Data.db");
        let bytes = content(3 * BLOCK, i);
        files.push(object(&remote, &scratch, &name, &bytes, HashAlgorithm::Sha256).await);
    }
    let cancel = CancellationToken::new();
    let on_first_bytes = cancel.clone();
    let progress: Progress = Arc::new(move |done, _| {
        if done > 0 {
            on_first_bytes.cancel();
        }
    });
    let error = download(
        &remote,
        files.clone(),
        &settings(HashAlgorithm::Sha256, 3),
        progress,
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, StorageError::Cancelled), "{error:?}");
    assert!(scratch.temporaries().is_empty());
    assert!(
        files.iter().all(|file| !file.target.display().exists()),
        "no file was complete when the first MiB arrived"
    );
}

#[tokio::test]
async fn hash_none_checks_sizes_only() {
    let scratch = Scratch::new("none");
    let remote = scratch.store();
    let (files, contents) = three_files(&remote, &scratch, HashAlgorithm::None).await;
    assert!(files.iter().all(|file| file.hash.is_none()));
    let none = settings(HashAlgorithm::None, 0);
    let stats = run(&remote, &files, &none).await.unwrap();
    assert_eq!(stats.downloaded_files, 3);
    assert_eq!(
        std::fs::read(files[2].target.display()).unwrap(),
        contents[2]
    );
    assert_eq!(run(&remote, &files, &none).await.unwrap().kept_files, 3);
    verify(&files, HashAlgorithm::None, &CancellationToken::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn crc_hashes_are_checked() {
    let scratch = Scratch::new("crc");
    let remote = scratch.store();
    let (mut files, _) = three_files(&remote, &scratch, HashAlgorithm::Crc).await;
    let crc = settings(HashAlgorithm::Crc, 0);
    assert_eq!(
        run(&remote, &files, &crc).await.unwrap().downloaded_files,
        3
    );
    verify(&files, HashAlgorithm::Crc, &CancellationToken::new())
        .await
        .unwrap();

    std::fs::remove_file(files[2].target.display()).unwrap();
    files[2].hash = Some("12345".into());
    let error = run(&remote, &files, &crc).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expected CRC32 12345, got CRC32 "),
        "{error}"
    );
    assert!(!files[2].target.display().exists());
}

#[tokio::test]
async fn verify_names_a_missing_or_changed_file() {
    let scratch = Scratch::new("verify");
    let remote = scratch.store();
    let (files, _) = three_files(&remote, &scratch, HashAlgorithm::Sha256).await;
    run(&remote, &files, &settings(HashAlgorithm::Sha256, 0))
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    verify(&files, HashAlgorithm::Sha256, &cancel)
        .await
        .unwrap();

    let mut changed = std::fs::read(files[2].target.display()).unwrap();
    changed[BLOCK + 1] ^= 0xff;
    std::fs::write(files[2].target.display(), &changed).unwrap();
    let error = verify(&files, HashAlgorithm::Sha256, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::Mismatch { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with(&format!(
            "{} does not match its manifest entry: expected SHA-256 ",
            files[2].target.display().display()
        )),
        "{error}"
    );

    std::fs::remove_file(files[1].target.display()).unwrap();
    let error = verify(&files[..2], HashAlgorithm::Sha256, &cancel)
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "cannot read {}",
            files[1].target.display().display()
        )),
        "{error}"
    );
}

/// An in-memory store whose next `failures` downloads break off after `after` bytes, as a store that goes
/// down mid-object does.
#[derive(Debug)]
struct Flaky {
    inner: InMemory,
    failures: AtomicU32,
    after: usize,
}

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flaky")
    }
}

#[async_trait::async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let mut result = self.inner.get_opts(location, options).await?;
        let fail = self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        let GetResultPayload::Stream(stream) = result.payload else {
            unreachable!("InMemory streams")
        };
        let after = self.after;
        let chunks = stream
            .flat_map(move |whole| {
                let whole = whole.unwrap();
                let mut pieces: Vec<object_store::Result<Bytes>> = (0..whole.len())
                    .step_by(64 * 1024)
                    .map(|at| Ok(whole.slice(at..whole.len().min(at + 64 * 1024))))
                    .collect();
                if fail {
                    pieces.truncate(after.div_ceil(64 * 1024));
                    pieces.push(Err(object_store::Error::Generic {
                        store: "Flaky",
                        source: "connection reset".into(),
                    }));
                }
                futures_util::stream::iter(pieces)
            })
            .boxed();
        result.payload = GetResultPayload::Stream(chunks);
        Ok(result)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn flaky(failures: u32) -> RemoteStorage {
    let store = Flaky {
        inner: InMemory::new(),
        failures: AtomicU32::new(failures),
        after: BLOCK + BLOCK / 2,
    };
    let location = StorageLocation::parse("s3://bucket/cluster/dc/node").unwrap();
    RemoteStorage::new(Arc::new(store), location).unwrap()
}

#[tokio::test]
async fn a_store_that_breaks_off_mid_object_is_tried_again_from_the_start() {
    let scratch = Scratch::new("retry");
    let remote = flaky(1);
    let bytes = content(3 * BLOCK, 5);
    let file = object(
        &remote,
        &scratch,
        "nb-5-big-Data.db",
        &bytes,
        HashAlgorithm::Sha256,
    )
    .await;
    let (progress, seen) = recorder();
    let stats = download(
        &remote,
        vec![file.clone()],
        &settings(HashAlgorithm::Sha256, 1),
        progress,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(stats.downloaded_files, 1);
    assert_eq!(std::fs::read(file.target.display()).unwrap(), bytes);
    let seen = lock(&seen).clone();
    let total = bytes.len() as u64;
    assert_eq!(seen.last(), Some(&(total, total)));
    assert!(seen.iter().all(|(done, _)| *done <= total), "{seen:?}");
    assert!(scratch.temporaries().is_empty());
}

#[tokio::test]
async fn a_store_that_stays_down_fails_naming_store_and_object() {
    let scratch = Scratch::new("down");
    let remote = flaky(2);
    let bytes = content(3 * BLOCK, 6);
    let file = object(
        &remote,
        &scratch,
        "nb-6-big-Data.db",
        &bytes,
        HashAlgorithm::Sha256,
    )
    .await;
    let error = run(
        &remote,
        std::slice::from_ref(&file),
        &settings(HashAlgorithm::Sha256, 1),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, StorageError::Object { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with(
            "s3://bucket: downloading cluster/dc/node/data/ks/t-1234/1-abc/nb-6-big-Data.db failed"
        ),
        "{error}"
    );
    assert!(!file.target.display().exists());
    assert!(scratch.temporaries().is_empty());
}
