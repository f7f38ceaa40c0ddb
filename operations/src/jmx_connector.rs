//! The sidecar's one JMX client to its Cassandra node, connected on first use and shared by all operations.

use jmx::{JmxClient, JmxError};
use tokio::sync::Mutex;

use crate::jmx_settings::JmxSettings;

#[derive(Debug)]
pub struct JmxConnector {
    settings: JmxSettings,
    client: Mutex<Option<JmxClient>>,
}

impl JmxConnector {
    pub fn new(settings: JmxSettings) -> Self {
        Self {
            settings,
            client: Mutex::new(None),
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
        let connected = JmxClient::connect(self.settings.client_config()).await?;
        *client = Some(connected.clone());
        Ok(connected)
    }
}
