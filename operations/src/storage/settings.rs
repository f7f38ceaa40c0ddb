//! How the sidecar reaches each kind of object store: endpoints and credentials from the sidecar's own settings,
//! a mounted Kubernetes secret, and the providers' standard environment variables and credential chains.
//!
//! Precedence, highest first: the sidecar's flags (`--s3-endpoint`, ...), the secret directory (the key names the
//! Instaclustr operator used), the standard environment (`AWS_*`, `AZURE_*`, `GOOGLE_*`, and the names Esop read).
//! What a request may add (proxy, `insecure`) comes in [`StorageOptions`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::file_store::FileStore;
use super::list_filter::{FilteringConnector, TolerantListing};
use super::{StorageError, StorageLocation};
use crate::secret::Secret;

/// Azurite's well-known development account, for `--azure-use-emulator`.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

/// The sidecar-wide object-storage settings (flags and environment of `daedalus serve` and the CLI).
#[derive(Debug, Clone, Default)]
pub struct StorageSettings {
    /// S3-compatible endpoint (MinIO, Ceph, ...); absent = AWS.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// Address buckets as `endpoint/bucket` (S3-compatible stores) rather than `bucket.endpoint`.
    pub s3_path_style: Option<bool>,
    /// Plain HTTP to the store (test servers, stores behind a TLS-terminating proxy).
    pub allow_http: bool,
    /// Azure blob endpoint with the account, e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite.
    pub azure_endpoint: Option<String>,
    /// Azurite's well-known account and key, at `azure_endpoint` or `http://127.0.0.1:10000`.
    pub azure_use_emulator: bool,
    /// GCS service-account JSON file (else `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server).
    pub gcs_service_account: Option<PathBuf>,
    /// A mounted secret: files named `awsaccesskeyid`, `awssecretaccesskey`, `awsregion`, `awsendpoint`,
    /// `azurestorageaccount`, `azurestoragekey`, `gcp` (service-account JSON).
    pub secrets_dir: Option<PathBuf>,
    /// Local state of transfers (the backup hash cache); none = nothing kept between backups.
    pub cache_dir: Option<PathBuf>,
}

/// What a request adds to the settings for its own connections (Esop's request fields).
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    /// `http://[user:password@]host:port`.
    pub proxy_url: Option<Secret>,
    /// Esop's `insecure`: plain HTTP.
    pub insecure: bool,
}

impl StorageOptions {
    /// Esop's request fields `proxySettings` and `insecure`.
    pub fn of_request(proxy: Option<&super::request::ProxySettings>, insecure: bool) -> Self {
        StorageOptions {
            proxy_url: proxy.and_then(super::request::ProxySettings::url),
            insecure,
        }
    }
}

impl StorageSettings {
    /// Builds the client for `location`'s bucket. Nothing is contacted yet.
    pub fn open(
        &self,
        location: &StorageLocation,
        options: &StorageOptions,
    ) -> Result<Arc<dyn ObjectStore>, StorageError> {
        crate::crypto::install_default_provider();
        let store_name = location.store_name();
        let failed = |source: object_store::Error| StorageError::Setup {
            store: store_name.clone(),
            doing: None,
            source: Box::new(source),
        };
        let secrets = SecretDir(self.secrets_dir.as_deref());
        let client = self.client_options(options);
        let store: Arc<dyn ObjectStore> = match location.protocol.as_str() {
            "s3" => Arc::new(TolerantListing::new(
                self.s3_builder(location, options)?
                    .build()
                    .map_err(failed)?,
            )),
            "azure" => {
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_container_name(&location.bucket)
                    .with_client_options(client)
                    .with_http_connector(FilteringConnector)
                    .with_retry(retry());
                // The names Esop read.
                if let Ok(account) = std::env::var("AZURE_STORAGE_ACCOUNT") {
                    builder = builder.with_account(account);
                }
                if let Ok(key) = std::env::var("AZURE_STORAGE_KEY") {
                    builder = builder.with_access_key(key);
                }
                if let Some(account) = secrets.read("azurestorageaccount")? {
                    builder = builder.with_account(account);
                }
                if let Some(key) = secrets.read("azurestoragekey")? {
                    builder = builder.with_access_key(key);
                }
                if self.azure_use_emulator {
                    // Azurite serves accounts as the first path segment.
                    let base = self
                        .azure_endpoint
                        .as_deref()
                        .unwrap_or("http://127.0.0.1:10000");
                    let base = base.trim_end_matches('/');
                    let endpoint = if base.ends_with(EMULATOR_ACCOUNT) {
                        base.to_string()
                    } else {
                        format!("{base}/{EMULATOR_ACCOUNT}")
                    };
                    builder = builder
                        .with_account(EMULATOR_ACCOUNT)
                        .with_access_key(object_store_emulator_key())
                        .with_endpoint(endpoint)
                        .with_allow_http(true);
                } else if let Some(endpoint) = &self.azure_endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                Arc::new(TolerantListing::new(builder.build().map_err(failed)?))
            }
            "gcp" => {
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&location.bucket)
                    .with_client_options(client)
                    .with_http_connector(FilteringConnector)
                    .with_retry(retry());
                if let Ok(path) = std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
                    builder = builder.with_application_credentials(path);
                }
                if let Some(json) = secrets.read("gcp")? {
                    builder = builder.with_service_account_key(json);
                }
                if let Some(path) = &self.gcs_service_account {
                    builder = builder.with_service_account_path(path.to_string_lossy());
                }
                Arc::new(TolerantListing::new(builder.build().map_err(failed)?))
            }
            "file" => {
                let directory = location.directory.as_deref().unwrap_or("/");
                let root = Path::new(directory).join(&location.bucket);
                Arc::new(FileStore::open(&root).map_err(|error| {
                    if error.kind() == std::io::ErrorKind::NotFound {
                        StorageError::MissingBucket {
                            store: store_name.clone(),
                        }
                    } else {
                        StorageError::Setup {
                            store: store_name.clone(),
                            doing: Some("cannot open the bucket directory"),
                            source: Box::new(error),
                        }
                    }
                })?)
            }
            other => {
                return Err(StorageError::Configuration {
                    store: store_name,
                    message: format!("unknown storage provider '{other}'"),
                });
            }
        };
        Ok(store)
    }

    fn s3_builder(
        &self,
        location: &StorageLocation,
        options: &StorageOptions,
    ) -> Result<AmazonS3Builder, StorageError> {
        let secrets = SecretDir(self.secrets_dir.as_deref());
        let client = self.client_options(options);
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&location.bucket)
            .with_client_options(client)
            .with_http_connector(FilteringConnector)
            .with_retry(retry());
        // Esop 2 (and the Instaclustr operator's secrets) spelled the secret key this way.
        if let Ok(key) = std::env::var("AWS_SECRET_KEY") {
            builder = builder.with_secret_access_key(key);
        }
        if let Some(key) = secrets.read("awsaccesskeyid")? {
            builder = builder.with_access_key_id(key);
        }
        if let Some(key) = secrets.read("awssecretaccesskey")? {
            builder = builder.with_secret_access_key(key);
        }
        if let Some(region) = secrets.read("awsregion")? {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = secrets.read("awsendpoint")? {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(endpoint) = &self.s3_endpoint {
            builder = builder.with_endpoint(endpoint);
            // S3-compatible servers accept any region name; the signature only needs one.
            if self.s3_region.is_none()
                && std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region("us-east-1");
            }
        }
        if let Some(region) = &self.s3_region {
            builder = builder.with_region(region);
        }
        if let Some(path_style) = self.s3_path_style {
            builder = builder.with_virtual_hosted_style_request(!path_style);
        }
        Ok(builder)
    }

    /// Creates the bucket of `location` (`createMissingBucket`): a directory for `file://`, a CreateBucket request
    /// for S3. Azure containers and GCS buckets are created by their owners (the providers' tools and policies).
    pub async fn create_bucket(
        &self,
        location: &StorageLocation,
        options: &StorageOptions,
    ) -> Result<(), StorageError> {
        let store = location.store_name();
        let failed = |message: String| StorageError::Configuration {
            store: store.clone(),
            message,
        };
        let setup =
            |doing: Option<&'static str>,
             source: Box<dyn std::error::Error + Send + Sync + 'static>| {
                StorageError::Setup {
                    store: store.clone(),
                    doing,
                    source,
                }
            };
        match location.protocol.as_str() {
            "file" => {
                let directory = location.directory.as_deref().unwrap_or("/");
                std::fs::create_dir_all(Path::new(directory).join(&location.bucket)).map_err(
                    |error| setup(Some("cannot create the bucket directory"), error.into()),
                )
            }
            "s3" => {
                let builder = self.s3_builder(location, options)?;
                let region = builder
                    .get_config_value(&object_store::aws::AmazonS3ConfigKey::Region)
                    .unwrap_or_else(|| "us-east-1".into());
                let s3 = builder.build().map_err(|error| setup(None, error.into()))?;
                // A presigned PUT of the bucket itself is S3's CreateBucket.
                let url = object_store::signer::Signer::signed_url(
                    &s3,
                    http::Method::PUT,
                    &object_store::path::Path::from(""),
                    Duration::from_secs(300),
                )
                .await
                .map_err(|error| setup(None, error.into()))?;
                let body = if region == "us-east-1" {
                    String::new()
                } else {
                    format!(
                        "<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
                    )
                };
                crate::crypto::install_default_provider();
                let mut client = reqwest::Client::builder();
                if let Some(proxy) = &options.proxy_url {
                    let proxy = reqwest::Proxy::all(proxy.expose())
                        .map_err(|error| setup(Some("bad proxy"), error.without_url().into()))?;
                    client = client.proxy(proxy);
                }
                let client = client
                    .build()
                    .map_err(|error| setup(Some("cannot create the bucket"), error.into()))?;
                // The presigned URL carries the credential (and a session token): never in an error.
                let response = client.put(url).body(body).send().await.map_err(|error| {
                    setup(Some("cannot create the bucket"), error.without_url().into())
                })?;
                let status = response.status();
                if status.is_success() || status == reqwest::StatusCode::CONFLICT {
                    Ok(())
                } else {
                    let text = response.text().await.unwrap_or_default();
                    Err(failed(format!("cannot create the bucket: {status} {text}")))
                }
            }
            other => Err(failed(format!(
                "createMissingBucket is not supported for {other}; create the container or bucket first"
            ))),
        }
    }

    fn client_options(&self, options: &StorageOptions) -> ClientOptions {
        // No limit on a whole request: a part of a large SSTable on a throttled link may take minutes. A stalled
        // connection is still caught by the read timeout.
        let mut client = ClientOptions::new()
            .with_timeout_disabled()
            .with_read_timeout(Duration::from_secs(120))
            .with_connect_timeout(Duration::from_secs(10))
            .with_allow_http(self.allow_http || options.insecure);
        if let Some(proxy) = &options.proxy_url {
            client = client.with_proxy_url(proxy.expose());
        }
        client
    }
}

/// Request-level retries are short: the backup retries whole files itself, with the request's `retry` settings.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

/// Azurite's published development key (not a secret).
fn object_store_emulator_key() -> &'static str {
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
}

/// The mounted secret directory, if any.
struct SecretDir<'a>(Option<&'a Path>);

impl SecretDir<'_> {
    /// The trimmed content of file `key`, if the directory has it.
    fn read(&self, key: &str) -> Result<Option<String>, StorageError> {
        let Some(dir) = self.0 else { return Ok(None) };
        let path = dir.join(key);
        match std::fs::read_to_string(&path) {
            Ok(value) => Ok(Some(value.trim().to_string())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StorageError::Setup {
                store: format!("secret {}", path.display()),
                doing: None,
                source: Box::new(error),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(text: &str) -> StorageLocation {
        StorageLocation::parse(text).expect("a location")
    }

    #[test]
    fn a_setup_error_reads_as_the_message_it_replaced_and_keeps_its_cause() {
        use std::error::Error as _;
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let doing = StorageError::Setup {
            store: "file://b".into(),
            doing: Some("cannot create the bucket directory"),
            source: Box::new(io()),
        };
        assert_eq!(
            doing.to_string(),
            "file://b: cannot create the bucket directory: denied"
        );
        assert!(
            doing
                .source()
                .is_some_and(|cause| cause.is::<std::io::Error>())
        );
        let bare = StorageError::Setup {
            store: "s3://b".into(),
            doing: None,
            source: Box::new(io()),
        };
        assert_eq!(bare.to_string(), "s3://b: denied");
    }

    #[test]
    fn builds_every_provider_from_settings() {
        let settings = StorageSettings {
            s3_endpoint: Some("http://127.0.0.1:9000".into()),
            allow_http: true,
            ..Default::default()
        };
        let options = StorageOptions::default();
        let s3 = settings
            .open(&location("s3://bucket/c/dc/n"), &options)
            .unwrap();
        assert!(s3.to_string().contains("bucket"), "{s3}");

        let azure = StorageSettings {
            azure_use_emulator: true,
            ..Default::default()
        };
        assert!(
            azure
                .open(&location("azure://container/c/dc/n"), &options)
                .is_ok()
        );
    }

    #[test]
    fn gcs_takes_a_service_account_file_from_the_secret_directory() {
        let dir = std::env::temp_dir().join(format!("daedalus-gcs-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A service account pointed at a local base URL with OAuth off: the shape GCS tools accept for emulators.
        std::fs::write(
            dir.join("gcp"),
            r#"{"gcs_base_url": "http://127.0.0.1:4443", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}"#,
        )
        .unwrap();
        let settings = StorageSettings {
            secrets_dir: Some(dir.clone()),
            ..Default::default()
        };
        let store = settings
            .open(&location("gcp://bucket/c/dc/n"), &StorageOptions::default())
            .unwrap();
        assert!(store.to_string().contains("bucket"), "{store}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_location_needs_its_bucket_directory() {
        let error = StorageSettings::default()
            .open(
                &location("file:///nonexistent-daedalus/bucket/c/dc/n"),
                &StorageOptions::default(),
            )
            .expect_err("missing bucket directory");
        assert!(error.to_string().contains("does not exist"), "{error}");
    }
}
