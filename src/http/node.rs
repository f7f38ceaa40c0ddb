//! What Icarus tells about its node: `/status`, `/version/cassandra`, `/version/schema`, `/topology[/{dc}]`,
//! `/config`. Each is a JMX round trip (or a file read), answered 503 with a JSON error when Cassandra cannot
//! be reached.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use daedalus_operations::cassandra::{Cassandra, CassandraError};
use serde::Serialize;
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

/// Icarus's `ClusterTopology`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterTopology {
    timestamp: i64,
    cluster_name: String,
    schema_version: String,
    topology: Vec<NodeTopology>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeTopology {
    hostname: String,
    cluster: String,
    dc: String,
    rack: String,
    node_id: String,
    ip_address: String,
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
    let (cluster, schema, ring) = ask(async {
        Ok((
            cassandra.cluster_name().await?,
            cassandra.schema_version().await?,
            cassandra.ring().await?,
        ))
    })
    .await?;
    // Icarus replaces whitespace runs in the cluster name with '-' (the name is used in storage paths).
    let cluster = cluster.split_whitespace().collect::<Vec<_>>().join("-");
    if let Some(dcs) = &dcs {
        let unknown: Vec<&String> = dcs
            .iter()
            .filter(|dc| !ring.iter().any(|m| &m.datacenter == *dc))
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::NotFound(format!(
                "no such data centre: {}; the cluster has {}",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                ring.iter()
                    .map(|m| m.datacenter.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut topology = Vec::new();
    for member in ring {
        if dcs
            .as_ref()
            .is_some_and(|dcs| !dcs.contains(&member.datacenter))
        {
            continue;
        }
        topology.push(NodeTopology {
            hostname: host_name(&member.address).await,
            cluster: cluster.clone(),
            dc: member.datacenter,
            rack: member.rack,
            node_id: member.host_id,
            ip_address: member.address,
        });
    }
    Ok(ClusterTopology {
        timestamp: chrono::Utc::now().timestamp_millis(),
        cluster_name: cluster,
        schema_version: schema,
        topology,
    })
}

/// How long a reverse-DNS answer is reused: node names rarely change, and `/topology` may be polled often.
const HOST_NAME_TTL: Duration = Duration::from_secs(300);

/// Reverse DNS, as Java's `InetAddress.getHostName`: the address itself when it has no name. Answers are cached;
/// loopback addresses are not looked up (they name this machine, and a resolver has nothing to add).
async fn host_name(address: &str) -> String {
    static CACHE: std::sync::OnceLock<dashmap::DashMap<IpAddr, (String, std::time::Instant)>> =
        std::sync::OnceLock::new();
    let Ok(ip) = address.parse::<IpAddr>() else {
        return address.to_string();
    };
    if ip.is_loopback() {
        return address.to_string();
    }
    let cache = CACHE.get_or_init(dashmap::DashMap::new);
    if let Some(entry) = cache.get(&ip)
        && entry.1.elapsed() < HOST_NAME_TTL
    {
        return entry.0.clone();
    }
    let name = tokio::task::spawn_blocking(move || dns_lookup::lookup_addr(&ip).ok())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| address.to_string());
    cache.insert(ip, (name.clone(), std::time::Instant::now()));
    name
}

/// `GET /config`: the node's `cassandra.yaml`.
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
        Ok(text) => Ok(HttpResponse::Ok()
            .content_type("application/yaml")
            .body(text)),
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
