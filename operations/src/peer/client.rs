//! The one HTTP client a coordinator uses for its peers: connect and whole-request timeouts on every call, and
//! bounded retries where a retry cannot start work twice.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::PeerSettings;
use crate::record::ReportedError;
use crate::state::OperationState;

/// How much of a peer's error answer is quoted.
const QUOTED_ANSWER: usize = 400;

/// Why the HTTP client for peer sidecars could not be built: a TLS file unreadable or not PEM.
#[derive(Debug, thiserror::Error)]
pub enum PeerClientError {
    #[error("cannot read the peer CA file {}: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not PEM certificates: {source}", path.display())]
    NotCertificates {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    ReadIdentity {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} and {}: not a PEM certificate and key: {source}", cert.display(), key.display())]
    NotIdentity {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot build the HTTP client for peer sidecars: {source}")]
    Build {
        #[source]
        source: reqwest::Error,
    },
}

/// A call to a peer sidecar that did not give what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    #[error("{url} did not answer: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} answered with something that is not an operation: {message}")]
    Garbled { url: String, message: String },
}

/// The part of a peer's operation object a coordinator follows.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteOperation {
    pub id: Uuid,
    pub state: OperationState,
    /// Icarus can answer `"NaN"`; anything not a number is read as 0.
    #[serde(default, deserialize_with = "lenient_progress")]
    pub progress: f64,
    #[serde(default)]
    pub errors: Vec<ReportedError>,
}

fn lenient_progress<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(value
        .as_f64()
        .filter(|p| p.is_finite())
        .unwrap_or(0.0)
        .clamp(0.0, 1.0))
}

/// Which sidecar runs beside a peer, as its `GET /version` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sidecar {
    #[default]
    Daedalus,
    /// Icarus, or any sidecar that does not name itself Daedalus: it gets its parts in the forms Icarus reads
    /// ([`crate::cluster::icarus_part`]).
    Icarus,
}

#[derive(Debug, Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    retries: u32,
    token_file: Option<std::path::PathBuf>,
}

impl PeerClient {
    pub fn new(settings: &PeerSettings) -> Result<PeerClient, PeerClientError> {
        crate::crypto::install_default_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            // Peers are named by address; a proxy from the environment has no business between sidecars.
            .no_proxy()
            .user_agent(concat!("daedalus/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|error| PeerClientError::ReadCa {
                path: path.clone(),
                source: error,
            })?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                PeerClientError::NotCertificates {
                    path: path.clone(),
                    source: error,
                }
            })?;
            builder = builder.tls_certs_only(roots);
        }
        if let Some((cert, key)) = &settings.identity_files {
            let read = |path: &PathBuf| {
                std::fs::read(path).map_err(|error| PeerClientError::ReadIdentity {
                    path: path.clone(),
                    source: error,
                })
            };
            let mut pem = read(cert)?;
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|error| {
                PeerClientError::NotIdentity {
                    cert: cert.clone(),
                    key: key.clone(),
                    source: error,
                }
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|error| PeerClientError::Build { source: error })?;
        Ok(PeerClient {
            http,
            retries: settings.retries,
            token_file: settings.token_file.clone(),
        })
    }

    /// `POST /operations`: starts `body` on the peer. Retried only when the connection could not be made, so a
    /// peer never runs the same request twice.
    pub async fn submit(&self, base: &str, body: &Value) -> Result<RemoteOperation, PeerError> {
        let url = format!("{base}/operations");
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut attempt = 0;
        loop {
            let request = self
                .authorized(self.http.post(&url))
                .await
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone());
            match request.send().await {
                Ok(response) => return operation_from(&url, response, 201).await,
                Err(error) if error.is_connect() && attempt < self.retries => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(error) => return Err(unreachable(&url, &error)),
            }
        }
    }

    /// `GET /operations/{id}`.
    pub async fn operation(&self, base: &str, id: Uuid) -> Result<RemoteOperation, PeerError> {
        let url = format!("{base}/operations/{id}");
        let response = self.idempotent(&url, reqwest::Method::GET).await?;
        operation_from(&url, response, 200).await
    }

    /// `DELETE /operations/{id}`: asks the peer to cancel. An operation the peer no longer has is not an error.
    pub async fn cancel(&self, base: &str, id: Uuid) -> Result<(), PeerError> {
        let url = format!("{base}/operations/{id}");
        let response = self.idempotent(&url, reqwest::Method::DELETE).await?;
        let status = response.status().as_u16();
        if response.status().is_success() || status == 404 {
            Ok(())
        } else {
            Err(refused(&url, response).await)
        }
    }

    /// The pre-flight check: the peer answers `GET /version` and is ready for operations. A Daedalus peer says so
    /// on `/health/ready`; Icarus has no readiness probe (it answers unknown paths with 500, not 404), so an Icarus
    /// peer, or any sidecar that does not name itself Daedalus, must reach its Cassandra: `/version/cassandra`.
    pub async fn check_ready(&self, base: &str) -> Result<Sidecar, PeerError> {
        let version = format!("{base}/version");
        let response = self.idempotent(&version, reqwest::Method::GET).await?;
        if !response.status().is_success() {
            return Err(refused(&version, response).await);
        }
        let body = response.bytes().await.unwrap_or_default();
        let sidecar = serde_json::from_slice::<VersionAnswer>(&body)
            .map(|answer| answer.version)
            .unwrap_or_default();
        let (kind, probe) = if is_daedalus(&sidecar) {
            (Sidecar::Daedalus, format!("{base}/health/ready"))
        } else {
            (Sidecar::Icarus, format!("{base}/version/cassandra"))
        };
        let response = self.idempotent(&probe, reqwest::Method::GET).await?;
        if response.status().is_success() {
            Ok(kind)
        } else {
            Err(refused(&probe, response).await)
        }
    }

    /// The request with the peer token, read from its file now (a rotated token is picked up); without one, or
    /// when the file cannot be read, as it is (the peer then answers 401, which names the problem).
    async fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let Some(path) = &self.token_file else {
            return request;
        };
        match tokio::fs::read_to_string(path).await {
            Ok(token) if !token.trim().is_empty() => request.bearer_auth(token.trim()),
            Ok(_) | Err(_) => {
                tracing::warn!(file = %path.display(), "cannot read the peer token file; calling peers without a token");
                request
            }
        }
    }

    /// A call that may be repeated: retried on transport errors and 5xx answers.
    async fn idempotent(
        &self,
        url: &str,
        method: reqwest::Method,
    ) -> Result<reqwest::Response, PeerError> {
        let mut attempt = 0;
        loop {
            let request = self
                .authorized(self.http.request(method.clone(), url))
                .await;
            let outcome = request.send().await;
            let retry = match &outcome {
                Ok(response) => response.status().is_server_error(),
                Err(_) => true,
            };
            if !retry || attempt >= self.retries {
                return outcome.map_err(|error| unreachable(url, &error));
            }
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

/// What `GET /version` names a Daedalus sidecar: `daedalus <version>` (Icarus: `instaclustr-icarus <version>`).
fn is_daedalus(version: &str) -> bool {
    version.split_whitespace().next() == Some("daedalus")
}

/// 0.5 s, 1 s, 2 s, ...: short, as every call is already bounded by its own timeout.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.min(5))
}

fn unreachable(url: &str, error: &reqwest::Error) -> PeerError {
    let message = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "connection failed".to_string()
    } else {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        message
    };
    PeerError::Unreachable {
        url: url.to_string(),
        message,
    }
}

/// What a sidecar's `GET /version` says of it (Icarus and Daedalus alike); the rest is not read.
#[derive(Debug, Deserialize)]
struct VersionAnswer {
    version: String,
}

/// An error body of Daedalus or Icarus; the rest is not read.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    message: String,
}

async fn refused(url: &str, response: reqwest::Response) -> PeerError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    // Our own and Icarus's error bodies carry a `message`; anything else is quoted as it came.
    let message = serde_json::from_str::<ErrorAnswer>(&text)
        .map(|answer| answer.message)
        .unwrap_or(text);
    PeerError::Refused {
        url: url.to_string(),
        status,
        message: message.chars().take(QUOTED_ANSWER).collect(),
    }
}

async fn operation_from(
    url: &str,
    response: reqwest::Response,
    expected: u16,
) -> Result<RemoteOperation, PeerError> {
    if response.status().as_u16() != expected {
        return Err(refused(url, response).await);
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|error| unreachable(url, &error))?;
    serde_json::from_slice(&bytes).map_err(|error| PeerError::Garbled {
        url: url.to_string(),
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's errors read as the strings they replaced, with the io error kept underneath.
    #[test]
    fn an_unreadable_ca_file_reads_as_before_and_keeps_the_io_error() {
        let missing =
            std::env::temp_dir().join(format!("daedalus-no-ca-{}.pem", std::process::id()));
        let mut settings = PeerSettings::default();
        settings.ca_file = Some(missing.clone());
        let error = settings.client().expect_err("no CA file");
        let io = std::fs::read(&missing).expect_err("no CA file");
        assert_eq!(
            error.to_string(),
            format!("cannot read the peer CA file {}: {io}", missing.display())
        );
        let source = std::error::Error::source(&error).expect("the io error");
        assert!(
            source.downcast_ref::<std::io::Error>().is_some(),
            "{source:?}"
        );
        let failure = crate::operation::OperationFailure::from(error.clone());
        assert_eq!(
            failure.to_string(),
            error.to_string(),
            "the operation's error text"
        );
        let shared = std::error::Error::source(&failure).expect("the client's error");
        assert!(
            shared.source().is_some_and(|io| io.is::<std::io::Error>()),
            "the io error at the end of the chain: {shared:?}"
        );
    }

    #[test]
    fn an_identity_that_is_not_pem_reads_as_before() {
        let dir = std::env::temp_dir().join(format!("daedalus-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let mut settings = PeerSettings::default();
        settings.identity_files = Some((cert.clone(), key.clone()));
        let error = PeerClient::new(&settings).expect_err("not PEM");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "{} and {}: not a PEM certificate and key: ",
                cert.display(),
                key.display()
            )),
            "{text}"
        );
        let PeerClientError::NotIdentity { source, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(text.ends_with(&source.to_string()), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_icarus_operations_including_nan_progress() {
        let operation: RemoteOperation = serde_json::from_value(serde_json::json!({
            "id": "7b3a4f1e-8e4b-4c3a-9a55-1f2e3d4c5b6a", "type": "backup", "state": "RUNNING",
            "progress": "NaN", "errors": [{"source": "node2", "message": "disk full"}],
            "creationTime": "2026-01-01T00:00:00.000Z"
        }))
        .unwrap();
        assert_eq!(operation.state, OperationState::Running);
        assert_eq!(operation.progress, 0.0);
        assert_eq!(operation.errors[0].source, "node2");
    }

    #[test]
    fn only_a_sidecar_naming_itself_daedalus_is_asked_for_readiness() {
        assert!(is_daedalus("daedalus 0.1.0"));
        assert!(!is_daedalus("instaclustr-icarus 3.0.0"));
        assert!(!is_daedalus("daedalus-fork 1.0"));
        assert!(!is_daedalus(""));
    }

    #[test]
    fn reads_the_version_and_error_answers_of_both_sidecars() {
        let read = |body: &str| serde_json::from_str::<VersionAnswer>(body).map(|a| a.version);
        assert_eq!(
            read(r#"{"version": "instaclustr-icarus 3.0.0", "buildTime": "x", "gitCommit": "y"}"#)
                .unwrap(),
            "instaclustr-icarus 3.0.0"
        );
        assert!(read(r#"{"version": 3}"#).is_err());
        let message =
            serde_json::from_str::<ErrorAnswer>(r#"{"status": 400, "message": "bad"}"#).unwrap();
        assert_eq!(message.message, "bad");
    }
}
