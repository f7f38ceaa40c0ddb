//! [`SidecarBuilder`]: the arguments and environment of a `daedalus serve` under test, gathered from what the test
//! needs (its node's JMX service, a store to reach, an address to listen on) instead of spelled out in each file.

use super::Sidecar;
use super::stores::{self, Store};

/// A sidecar about to start. Arguments keep the order they were added in.
#[derive(Debug, Clone)]
pub struct SidecarBuilder {
    listen: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Default for SidecarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SidecarBuilder {
    /// On a free loopback port, with no arguments (so with [`super::CLOSED_JMX_SERVICE`]).
    pub fn new() -> Self {
        SidecarBuilder {
            listen: "127.0.0.1:0".into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Listens on `address` (a sidecar of a cluster-wide test binds its node's address).
    pub fn listen(mut self, address: &str) -> Self {
        self.listen = address.to_string();
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `--jmx-service SERVICE`.
    pub fn jmx_service(self, service: &str) -> Self {
        self.args(["--jmx-service", service])
    }

    /// The flags that point it at `store` ([`Store::daedalus_args`]).
    pub fn store(self, store: &Store) -> Self {
        self.args(store.daedalus_args())
    }

    /// The S3 servers' credentials in its environment ([`stores::S3_CREDENTIALS`]).
    pub fn s3_credentials(self) -> Self {
        self.env(stores::S3_CREDENTIALS)
    }

    pub fn env<'a>(mut self, variables: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.env.extend(
            variables
                .into_iter()
                .map(|(name, value)| (name.to_string(), value.to_string())),
        );
        self
    }

    pub fn start(self) -> Sidecar {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        Sidecar::start_listening(&self.listen, &args, &env)
    }
}
