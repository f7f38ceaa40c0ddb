//! Who takes part in a cluster-wide operation: every node of the ring as the local Cassandra sees it (down ones
//! included, so that pre-flight names them), optionally only those of some data centres, each with the URL of the
//! sidecar beside it.

use serde::{Deserialize, Serialize};

use crate::cassandra::Cassandra;
use crate::cassandra::topology::{ClusterTopology, cluster_topology};
use crate::operation::{OperationContext, OperationFailure};

/// A node and the sidecar next to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// The node's broadcast address, as Cassandra reports it.
    pub node: String,
    pub host_id: String,
    pub dc: String,
    /// The sidecar's base URL.
    pub peer: String,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} ({}, host id {})",
            self.node, self.peer, self.host_id
        )
    }
}

/// The cluster as the coordinator found it: the topology (what a backup records) and the peers taking part.
pub struct Participants {
    pub topology: ClusterTopology,
    pub peers: Vec<Peer>,
}

/// The ring's nodes, only those of the data centres in `dc` (comma or space separated) when given. An unknown data
/// centre fails, naming those there are. Peers come sorted by data centre and address, so every run orders them
/// alike.
pub async fn participants(
    context: &OperationContext,
    cassandra: &Cassandra,
    dc: Option<&str>,
) -> Result<Participants, OperationFailure> {
    let topology = context
        .cancellable(cluster_topology(cassandra))
        .await?
        .map_err(|error| {
            OperationFailure::context(
                "cannot read the cluster's topology from the local Cassandra",
                error,
            )
        })?;
    let topology = match wanted_dcs(dc) {
        Some(wanted) => {
            let known: std::collections::BTreeSet<&str> =
                topology.topology.iter().map(|n| n.dc.as_str()).collect();
            if let Some(unknown) = wanted.iter().find(|w| !known.contains(w.as_str())) {
                return Err(OperationFailure::Failed(format!(
                    "dc: the cluster has no data centre '{unknown}'; it has {}",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
            topology.only_in(&wanted)
        }
        None => topology,
    };
    let settings = context.peer_settings();
    let mut peers = Vec::new();
    for node in &topology.topology {
        let url = settings.url_of(&node.ip_address).ok_or_else(|| {
            OperationFailure::Failed(
                "the port of the peer sidecars is not known yet (give --peer-port)".into(),
            )
        })?;
        peers.push(Peer {
            node: node.ip_address.clone(),
            host_id: node.node_id.clone(),
            dc: node.dc.clone(),
            peer: url,
        });
    }
    peers.sort_by_key(|p| (p.dc.clone(), address_order(&p.node)));
    if peers.is_empty() {
        return Err(OperationFailure::Failed(
            "the local Cassandra reports no nodes in the cluster".into(),
        ));
    }
    Ok(Participants { topology, peers })
}

fn wanted_dcs(dc: Option<&str>) -> Option<Vec<String>> {
    let wanted: Vec<String> = dc?
        .split([',', ' '])
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    (!wanted.is_empty()).then_some(wanted)
}

/// Addresses in numeric order (127.0.0.2 before 127.0.0.10), names after them.
fn address_order(address: &str) -> (u8, Option<std::net::IpAddr>, String) {
    match address.parse::<std::net::IpAddr>() {
        Ok(ip) => (0, Some(ip), String::new()),
        Err(_) => (1, None, address.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dc_filters_are_split_as_icarus_splits_them() {
        assert_eq!(wanted_dcs(None), None);
        assert_eq!(wanted_dcs(Some(" ")), None);
        assert_eq!(
            wanted_dcs(Some("dc1, dc2 dc3")),
            Some(vec!["dc1".into(), "dc2".into(), "dc3".into()])
        );
    }

    #[test]
    fn addresses_sort_numerically() {
        let mut addresses = vec!["127.0.0.10", "127.0.0.2", "node-a"];
        addresses.sort_by_key(|a| address_order(a));
        assert_eq!(addresses, ["127.0.0.2", "127.0.0.10", "node-a"]);
    }
}
