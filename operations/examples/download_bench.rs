//! The restore download engine on its own, for `scripts/bench-restore`: downloads the objects a plan names from an
//! S3-compatible endpoint and prints the engine's stats and the wall time as one JSON line.
//!
//! Usage: download_bench ENDPOINT LOCATION PLAN [CONCURRENCY]
//!   ENDPOINT     e.g. http://127.0.0.1:9000 (plain HTTP allowed, path-style buckets)
//!   LOCATION     the node's storage location, s3://BUCKET/CLUSTER/DC/NODE
//!   PLAN         a file of lines `KEY<TAB>SIZE<TAB>SHA-256<TAB>LOCAL PATH` (key relative to the node)
//!   CONCURRENCY  files at a time (default 10)
//! Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use daedalus_operations::node_fs::{RelPath, Root, Target};
use daedalus_operations::restore::download::{
    DownloadSettings, PlannedDownload, Progress, download,
};
use daedalus_operations::storage::transfer::RetryPolicy;
use daedalus_operations::storage::transfer::hashes::HashAlgorithm;
use daedalus_operations::storage::{RemoteStorage, StorageLocation, StorageSettings, Throttle};
use tokio_util::sync::CancellationToken;

/// The plan's local paths are absolute: each file is placed through a root at its parent directory.
fn plan(text: &str) -> Result<Vec<PlannedDownload>, String> {
    let mut roots: std::collections::HashMap<PathBuf, Arc<Root>> = Default::default();
    text.lines()
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(number, line)| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [key, size, hash, path] = fields[..] else {
                return Err(format!("plan line {}: expected 4 fields", number + 1));
            };
            let path = PathBuf::from(path);
            let (Some(dir), Some(name)) =
                (path.parent(), path.file_name().and_then(|n| n.to_str()))
            else {
                return Err(format!(
                    "plan line {}: {} is not a file path",
                    number + 1,
                    path.display()
                ));
            };
            let root = match roots.get(dir) {
                Some(root) => Arc::clone(root),
                None => {
                    let root =
                        Arc::new(Root::open_creating(dir).map_err(|error| error.to_string())?);
                    roots.insert(dir.to_owned(), Arc::clone(&root));
                    root
                }
            };
            let rel = RelPath::name(name).map_err(|error| error.to_string())?;
            Ok(PlannedDownload {
                key: key.to_string(),
                target: Target::new(&root, rel),
                size: size
                    .parse()
                    .map_err(|error| format!("plan line {}: size: {error}", number + 1))?,
                hash: (!hash.is_empty()).then(|| hash.to_string()),
            })
        })
        .collect()
}

async fn run(args: &[String]) -> Result<String, String> {
    let [endpoint, location, plan_file, rest @ ..] = args else {
        return Err("usage: download_bench ENDPOINT LOCATION PLAN [CONCURRENCY]".into());
    };
    let concurrency = match rest.first() {
        Some(text) => text
            .parse()
            .map_err(|error| format!("concurrency: {error}"))?,
        None => 10,
    };
    let location = StorageLocation::parse(location)?;
    let settings = StorageSettings {
        s3_endpoint: Some(endpoint.clone()),
        s3_path_style: Some(true),
        allow_http: true,
        ..StorageSettings::default()
    };
    let store = settings
        .open(&location, &Default::default())
        .map_err(|error| error.to_string())?;
    let remote = RemoteStorage::new(store, location).map_err(|error| error.to_string())?;
    let text =
        std::fs::read_to_string(plan_file).map_err(|error| format!("{plan_file}: {error}"))?;
    let files = plan(&text)?;
    let download_settings = DownloadSettings {
        concurrency,
        retry: RetryPolicy {
            interval: Duration::from_secs(1),
            exponential: false,
            max_attempts: 3,
        },
        throttle: Throttle::unlimited(),
        algorithm: HashAlgorithm::Sha256,
    };
    let progress: Progress = Arc::new(|_, _| {});
    let began = Instant::now();
    let stats = download(
        &remote,
        files,
        &download_settings,
        progress,
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
    match run(&args).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("download_bench: {error}");
            ExitCode::FAILURE
        }
    }
}
