//! Cluster-wide operations: a request with `globalRequest: true` makes this sidecar the coordinator. It finds the
//! cluster's nodes over JMX, checks that every node's sidecar answers, sends each node its part as an ordinary
//! operation over the same REST API (Icarus's protocol, so Icarus peers take part too), follows them, and fails,
//! naming the node, when one of them fails, stops answering, or outlasts the request's `timeout`.

pub mod backup;
pub mod client;
pub mod coordinator;
pub mod peers;
pub mod remove;
pub mod restore;
pub mod rolling;
mod settings;

pub use client::{PeerClient, PeerError, RemoteOperation};
pub use coordinator::Coordinator;
pub use peers::Peer;
pub use settings::PeerSettings;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::operation::OperationFailure;
use crate::storage::request::StorageRequest;

/// The body a peer receives for its part: the request as this sidecar decoded it (every field with its effective
/// value), its `type`, and `globalRequest: false`. The caller then rewrites what differs per node.
pub fn part_body(
    type_id: &str,
    request: &impl Serialize,
) -> Result<Map<String, Value>, OperationFailure> {
    let mut body = match serde_json::to_value(request) {
        Ok(Value::Object(body)) => body,
        Ok(_) | Err(_) => {
            return Err(OperationFailure::Failed(format!(
                "cannot write the {type_id} request for the other nodes"
            )));
        }
    };
    body.insert("type".into(), type_id.into());
    body.insert("globalRequest".into(), false.into());
    Ok(body)
}

/// [`part_body`] of a storage request, with the proxy password the echo leaves out (the peers need it too).
pub fn storage_part_body<F: Serialize>(
    type_id: &str,
    request: &StorageRequest<F>,
) -> Result<Map<String, Value>, OperationFailure> {
    let mut body = part_body(type_id, request)?;
    if let Some(password) = request
        .connection
        .proxy_settings
        .as_ref()
        .and_then(|proxy| proxy.proxy_password.as_ref())
        && let Some(Value::Object(proxy)) = body.get_mut("proxySettings")
    {
        proxy.insert("proxyPassword".into(), password.clone().into());
    }
    Ok(body)
}

/// When a request's `timeout` runs out, counted from now.
pub fn deadline_after(timeout: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or(now + std::time::Duration::from_secs(100 * 365 * 86_400))
}
