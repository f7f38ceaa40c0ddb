//! The backup upload engine and the restore download engine against a `file://` bucket, for
//! `scripts/bench-file-store`: each phase on its own, so that its wall time and system calls can be measured apart.
//!
//! Usage:
//!   file_transfer_bench upload SOURCE LOCATION PLAN [CONCURRENCY [HASH]]
//!     backs every file under SOURCE up to LOCATION (`file:///DIR/BUCKET/CLUSTER/DC/NODE`) with key
//!     `data/<path under SOURCE>`, the hash of each computed as it is read, and writes PLAN: lines
//!     `KEY<TAB>SIZE<TAB>HASH<TAB>PATH UNDER SOURCE`.
//!   file_transfer_bench download LOCATION PLAN TARGET [CONCURRENCY [HASH]]
//!     restores PLAN's objects to TARGET/<path under SOURCE>, every hash checked as the bytes arrive.
//! CONCURRENCY is files at a time (default 10); HASH, after it, is `SHA-256` (default), `CRC` or `NONE` (the download
//! must be given the upload's). Each prints the engine's stats and the wall time as one JSON line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use daedalus_operations::backup::upload::{PlannedFile, upload};
use daedalus_operations::node_fs::{RelPath, Root, Target};
use daedalus_operations::restore::download::{PlannedDownload, download};
use daedalus_operations::storage::transfer::RetryPolicy;
use daedalus_operations::storage::transfer::hashes::{HashAlgorithm, HashCache};
use daedalus_operations::storage::transfer::{LocalFile, TransferSettings};
use daedalus_operations::storage::{RemoteStorage, StorageLocation, StorageSettings, Throttle};
use tokio_util::sync::CancellationToken;

fn settings(rest: &[String]) -> Result<TransferSettings, String> {
    let concurrency = match rest.first() {
        Some(text) => text
            .parse()
            .map_err(|error| format!("concurrency: {error}"))?,
        None => 10,
    };
    let algorithm = match rest.get(1) {
        Some(text) => serde_json::from_value(serde_json::Value::String(text.clone()))
            .map_err(|_| format!("'{text}' is not a hash algorithm: SHA-256, CRC or NONE"))?,
        None => HashAlgorithm::Sha256,
    };
    Ok(TransferSettings {
        concurrency,
        retry: RetryPolicy {
            interval: Duration::from_secs(1),
            exponential: false,
            max_attempts: 3,
        },
        throttle: Throttle::unlimited(),
        algorithm,
    })
}

fn remote(location: &str) -> Result<RemoteStorage, String> {
    let location = StorageLocation::parse(location)?;
    let store = StorageSettings::default()
        .open(&location, &Default::default())
        .map_err(|error| error.to_string())?;
    RemoteStorage::new(store, location).map_err(|error| error.to_string())
}

/// Every regular file under `dir`, with its path relative to `root`.
fn files_under(root: &Path, dir: &Path, into: &mut Vec<(PathBuf, String)>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("{}: {error}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|error| format!("{}: {error}", path.display()))?;
        if kind.is_dir() {
            files_under(root, &path, into)?;
        } else if kind.is_file() {
            let relative = path
                .strip_prefix(root)
                .map_err(|error| error.to_string())?
                .to_str()
                .ok_or_else(|| format!("{}: not UTF-8", path.display()))?
                .to_string();
            into.push((path, relative));
        }
    }
    Ok(())
}

async fn run_upload(args: &[String]) -> Result<String, String> {
    let [source, location, plan_file, rest @ ..] = args else {
        return Err(
            "usage: file_transfer_bench upload SOURCE LOCATION PLAN [CONCURRENCY [HASH]]".into(),
        );
    };
    let remote = remote(location)?;
    let source = PathBuf::from(source);
    let mut found = Vec::new();
    files_under(&source, &source, &mut found)?;
    let mut files = Vec::new();
    for (path, relative) in &found {
        let metadata =
            std::fs::metadata(path).map_err(|error| format!("{}: {error}", path.display()))?;
        files.push(PlannedFile {
            file: LocalFile {
                path: path.clone(),
                cache_key: path.clone(),
                size: metadata.len(),
                modified: metadata.modified().map_err(|error| error.to_string())?,
            },
            key: format!("data/{relative}"),
        });
    }
    let settings = settings(rest)?;
    let cache = Mutex::new(HashCache::load(None, settings.algorithm));
    let began = Instant::now();
    let (stored, stats) = upload(
        &remote,
        files,
        &settings,
        &cache,
        Arc::new(|_, _| {}),
        &CancellationToken::new(),
    )
    .await
    .map_err(|error| error.to_string())?;
    let seconds = began.elapsed().as_secs_f64();
    let plan: String = stored
        .iter()
        .zip(&found)
        .map(|(file, (_, relative))| {
            format!(
                "{}\t{}\t{}\t{relative}\n",
                file.key,
                file.size,
                file.hash.as_deref().unwrap_or_default()
            )
        })
        .collect();
    std::fs::write(plan_file, plan).map_err(|error| format!("{plan_file}: {error}"))?;
    let mut json = serde_json::to_value(&stats).map_err(|error| error.to_string())?;
    json["seconds"] = seconds.into();
    Ok(json.to_string())
}

async fn run_download(args: &[String]) -> Result<String, String> {
    let [location, plan_file, target, rest @ ..] = args else {
        return Err(
            "usage: file_transfer_bench download LOCATION PLAN TARGET [CONCURRENCY [HASH]]".into(),
        );
    };
    let remote = remote(location)?;
    let text =
        std::fs::read_to_string(plan_file).map_err(|error| format!("{plan_file}: {error}"))?;
    let mut files = Vec::new();
    // The restore's files land through a root, as a restore's do.
    let root = Arc::new(Root::open_creating(Path::new(target)).map_err(|error| error.to_string())?);
    for (number, line) in text.lines().filter(|line| !line.is_empty()).enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [key, size, hash, relative] = fields[..] else {
            return Err(format!("plan line {}: expected 4 fields", number + 1));
        };
        let relative = RelPath::parse(relative)
            .map_err(|error| format!("plan line {}: {error}", number + 1))?;
        files.push(PlannedDownload {
            key: key.to_string(),
            target: Target::new(&root, relative),
            size: size
                .parse()
                .map_err(|error| format!("plan line {}: size: {error}", number + 1))?,
            hash: (!hash.is_empty()).then(|| hash.to_string()),
        });
    }
    let began = Instant::now();
    let stats = download(
        &remote,
        files,
        &settings(rest)?,
        Arc::new(|_, _| {}),
        &CancellationToken::new(),
    )
    .await
    .map_err(|error| error.to_string())?;
    let seconds = began.elapsed().as_secs_f64();
    let mut json = serde_json::to_value(&stats).map_err(|error| error.to_string())?;
    json["seconds"] = seconds.into();
    Ok(json.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((phase, rest)) if phase == "upload" => run_upload(rest).await,
        Some((phase, rest)) if phase == "download" => run_download(rest).await,
        _ => Err("usage: file_transfer_bench upload|download ...".into()),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("file_transfer_bench: {error}");
            ExitCode::FAILURE
        }
    }
}
