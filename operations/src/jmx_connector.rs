//! The sidecar's one JMX client to its Cassandra node, connected on first use and shared by all operations.

use jmx::{JmxClient, JmxError};
use tokio::sync::Mutex;

use crate::jmx_settings::JmxSettings;

#[derive(Debug)]
pub struct JmxConnector {
    settings: JmxSettings,
    client: Mutex<Option<JmxClient>>,
    /// Where the client's connections and keep-alive task live. Whoever asks first (an HTTP worker, with its
    /// own single-threaded runtime that stops early at shutdown, or an operation), the client belongs here.
    runtime: tokio::runtime::Handle,
}

impl JmxConnector {
    pub fn new(settings: JmxSettings, runtime: tokio::runtime::Handle) -> Self {
        Self {
            settings,
            client: Mutex::new(None),
            runtime,
        }
    }

    pub fn settings(&self) -> &JmxSettings {
        &self.settings
    }

    /// The shared client, connecting if there is none yet. A connected client re-opens its JMX connection
    /// by itself when the agent drops it, so it is kept for the life of the sidecar.
    pub async fn client(&self) -> Result<JmxClient, JmxError> {
        let mut client = self.client.lock().await;
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let connecting = self
            .runtime
            .spawn(JmxClient::connect(self.settings.client_config()));
        let connected = connecting.await.map_err(|e| JmxError::Protocol {
            address: self.settings.service.to_string(),
            message: format!("the connection task failed: {e}"),
        })??;
        *client = Some(connected.clone());
        Ok(connected)
    }
}
