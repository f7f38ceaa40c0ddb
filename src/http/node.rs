//! What Icarus tells about its node: `/status`, `/version/cassandra`, `/version/schema`, `/topology[/{dc}]`,
//! `/config`. Each is a JMX round trip (or a file read), answered 503 with a JSON error when Cassandra cannot
//! be reached.

use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use daedalus_operations::cassandra::topology::{
    ClusterTopology, cluster_topology as cluster_topology_of,
};
use daedalus_operations::cassandra::{Cassandra, CassandraError};
use serde_json::json;

use super::AppState;
use super::error::ApiError;

/// A JMX round trip that takes longer than this is reported, not waited for.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

impl AppState {
    /// The Cassandra facade, or 503 naming why Cassandra cannot be reached.
    pub async fn cassandra(&self) -> Result<Cassandra, ApiError> {
        let connect = self.executor.services().jmx.client();
        match tokio::time::timeout(ANSWER_WITHIN, connect).await {
            Ok(Ok(client)) => Ok(Cassandra::new(client)),
            Ok(Err(error)) => Err(ApiError::Unavailable(error.to_string())),
            Err(_) => Err(ApiError::Unavailable(format!(
                "Cassandra's JMX agent at {} did not answer within {ANSWER_WITHIN:?}",
                self.executor.services().jmx.settings().service
            ))),
        }
    }

    /// Whether Cassandra answers over JMX within `within` (readiness, and the reachability gauge of `/metrics`);
    /// the reason when it does not.
    pub async fn cassandra_answers(&self, within: std::time::Duration) -> Result<(), String> {
        let cassandra = self.cassandra().await.map_err(|error| error.to_string())?;
        match tokio::time::timeout(within, cassandra.operation_mode()).await {
            Ok(answer) => answer.map(|_| ()).map_err(|error| error.to_string()),
            Err(_) => Err(format!(
                "Cassandra's JMX agent did not answer within {}",
                humantime::format_duration(within)
            )),
        }
    }
}

/// Runs facade calls with a time limit; Cassandra's failures become 503s.
async fn ask<T>(work: impl Future<Output = Result<T, CassandraError>>) -> Result<T, ApiError> {
    match tokio::time::timeout(ANSWER_WITHIN, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ApiError::Unavailable(error.to_string())),
        Err(_) => Err(ApiError::Unavailable(format!(
            "Cassandra did not answer within {ANSWER_WITHIN:?}"
        ))),
    }
}

/// `GET /status`: `{"nodeState": "NORMAL"}` — Cassandra's operation mode, including the modes 5.0 added.
pub async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cassandra = state.cassandra().await?;
    let mode = ask(cassandra.operation_mode()).await?;
    Ok(HttpResponse::Ok().json(json!({ "nodeState": mode })))
}

/// `GET /version/cassandra`.
pub async fn cassandra_version(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cassandra = state.cassandra().await?;
    Ok(HttpResponse::Ok().json(ask(cassandra.release_version()).await?))
}

/// `GET /version/schema`.
pub async fn schema_version(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cassandra = state.cassandra().await?;
    Ok(HttpResponse::Ok().json(json!({ "schemaVersion": ask(cassandra.schema_version()).await? })))
}

/// `GET /topology`: every node with its data centre and rack.
pub async fn topology(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(cluster_topology(&state, None).await?))
}

/// `GET /topology/{dc}`: only the named data centres (comma- or space-separated).
pub async fn topology_of(
    state: web::Data<AppState>,
    dcs: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let wanted: Vec<String> = dcs
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Ok(HttpResponse::Ok().json(cluster_topology(&state, Some(wanted)).await?))
}

async fn cluster_topology(
    state: &AppState,
    dcs: Option<Vec<String>>,
) -> Result<ClusterTopology, ApiError> {
    let cassandra = state.cassandra().await?;
    let topology = ask(cluster_topology_of(&cassandra)).await?;
    let Some(dcs) = dcs else {
        return Ok(topology);
    };
    let known: std::collections::BTreeSet<&str> = topology
        .topology
        .iter()
        .map(|node| node.dc.as_str())
        .collect();
    let unknown: Vec<&str> = dcs
        .iter()
        .map(String::as_str)
        .filter(|dc| !known.contains(dc))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no such data centre: {}; the cluster has {}",
            unknown.join(", "),
            known.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(topology.only_in(&dcs))
}

/// `GET /config`: the node's `cassandra.yaml`, its passwords and other secrets redacted.
pub async fn config(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let configured = state.cassandra_config.clone();
    let found = tokio::task::spawn_blocking(move || match configured {
        Some(path) => Ok(path),
        None => find_config(Path::new(DEFAULT_CONFIG_ROOT), 0).ok_or(()),
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("cannot look for cassandra.yaml: {e}")))?;
    let Ok(path) = found else {
        return Err(ApiError::NotFound(format!(
            "no cassandra*.yaml under {DEFAULT_CONFIG_ROOT}; give its path with --cassandra-config"
        )));
    };
    match tokio::fs::read_to_string(&path).await {
        Ok(text) => {
            let redacted = tokio::task::spawn_blocking(move || super::redact::redact_yaml(&text))
                .await
                .map_err(|e| {
                    ApiError::Unavailable(format!("cannot redact {}: {e}", path.display()))
                })?;
            Ok(HttpResponse::Ok()
                .content_type("application/yaml")
                .body(redacted))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(ApiError::NotFound(
            format!("{} does not exist (see --cassandra-config)", path.display()),
        )),
        Err(error) => Err(ApiError::Unavailable(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

/// Where Icarus looks for the configuration when it is not given.
pub const DEFAULT_CONFIG_ROOT: &str = "/var/lib/cassandra";

/// The first `cassandra*.yaml` under `dir`, depth first in name order, as Icarus searches.
fn find_config(dir: &Path, depth: usize) -> Option<PathBuf> {
    if depth > 8 {
        return None;
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_file() && name.starts_with("cassandra") && name.ends_with(".yaml") {
            return Some(path);
        }
        if path.is_dir()
            && let Some(found) = find_config(&path, depth + 1)
        {
            return Some(found);
        }
    }
    None
}
