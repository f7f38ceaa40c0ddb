//! Calling other nodes' sidecars over the REST API: the settings of every peer call and the one HTTP client that
//! makes them. Below the operation framework (which carries the settings) and the cluster-wide coordinator (which
//! uses the client).

pub mod client;
mod settings;

pub use client::{PeerClient, PeerClientError, PeerError, RemoteOperation, Sidecar};
pub use settings::PeerSettings;
