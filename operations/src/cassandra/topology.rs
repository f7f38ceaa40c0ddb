//! Icarus's `ClusterTopology`: every node with its data centre, rack and host id. `/topology` serves it, and a
//! backup with `uploadClusterTopology` writes it to `topology/<tag>.json` in the bucket, as Esop does.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Cassandra, CassandraError};

/// How long a reverse-DNS answer is reused: node names rarely change, and `/topology` may be polled often.
const HOST_NAME_TTL: Duration = Duration::from_secs(300);

/// Icarus's `ClusterTopology`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTopology {
    pub timestamp: i64,
    pub cluster_name: String,
    pub schema_version: String,
    pub topology: Vec<NodeTopology>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeTopology {
    pub hostname: String,
    pub cluster: String,
    pub dc: String,
    pub rack: String,
    pub node_id: String,
    pub ip_address: String,
}

impl ClusterTopology {
    /// Only the nodes of data centres `dcs`.
    pub fn only_in(mut self, dcs: &[String]) -> ClusterTopology {
        self.topology.retain(|node| dcs.contains(&node.dc));
        self
    }
}

/// The whole cluster as this node sees it.
pub async fn cluster_topology(cassandra: &Cassandra) -> Result<ClusterTopology, CassandraError> {
    let cluster = cassandra.cluster_name().await?;
    let schema = cassandra.schema_version().await?;
    let ring = cassandra.ring().await?;
    // Icarus replaces whitespace runs in the cluster name with '-' (the name is used in storage paths).
    let cluster = cluster.split_whitespace().collect::<Vec<_>>().join("-");
    let mut topology = Vec::new();
    for member in ring {
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
