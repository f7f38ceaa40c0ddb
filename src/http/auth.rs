//! Authentication: bearer tokens from files (one per file, as Kubernetes mounts a Secret's key), each with a scope —
//! `read` (GET and HEAD) or `admin` (every method) — and, over mTLS, client certificates whose DNS names are given a
//! scope the same way. Token files are looked at again at most once a second and re-read when they changed, so a
//! rotated Secret takes effect without a restart. With neither configured the API is open, as Icarus's is.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;

/// How often the token files are looked at for changes.
const RECHECK: Duration = Duration::from_secs(1);

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// GET and HEAD.
    Read,
    /// Every method.
    Admin,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// A token file and the scope its token has.
#[derive(Debug, Clone)]
struct Source {
    path: PathBuf,
    scope: Scope,
}

/// A file as last read: when it changed, and its token's digest (never the token itself).
#[derive(Debug, Clone)]
struct Loaded {
    modified: Option<SystemTime>,
    length: u64,
    digest: [u8; 32],
}

/// The client certificate of a TLS connection, verified against `--tls-client-ca-file` in the handshake.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub rustls_pki_types::CertificateDer<'static>);

/// The tokens the API accepts, read from their files, and the client certificate names it accepts.
#[derive(Debug)]
pub struct Authenticator {
    sources: Vec<Source>,
    /// DNS names of client certificates and the scope each gives.
    client_names: Vec<(String, Scope)>,
    loaded: RwLock<Vec<Loaded>>,
    checked: Mutex<Instant>,
    /// `/health/*` answer without a token (probes).
    open_health: bool,
    /// `/metrics` answers without a token (scrapers).
    open_metrics: bool,
}

impl Authenticator {
    /// `None` when no token file is given: the API is then open.
    pub fn new(
        read: &[PathBuf],
        admin: &[PathBuf],
        open_health: bool,
        open_metrics: bool,
    ) -> Result<Option<Authenticator>, String> {
        let sources: Vec<Source> = read
            .iter()
            .map(|path| (path, Scope::Read))
            .chain(admin.iter().map(|path| (path, Scope::Admin)))
            .map(|(path, scope)| Source {
                path: path.clone(),
                scope,
            })
            .collect();
        if sources.is_empty() {
            return Ok(None);
        }
        let loaded = sources
            .iter()
            .map(|source| load(&source.path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Authenticator {
            sources,
            client_names: Vec::new(),
            loaded: RwLock::new(loaded),
            checked: Mutex::new(Instant::now()),
            open_health,
            open_metrics,
        }))
    }

    /// No token files, for an API that client certificates alone open.
    pub fn certificates_only(open_health: bool, open_metrics: bool) -> Option<Authenticator> {
        Some(Authenticator {
            sources: Vec::new(),
            client_names: Vec::new(),
            loaded: RwLock::new(Vec::new()),
            checked: Mutex::new(Instant::now()),
            open_health,
            open_metrics,
        })
    }

    /// Client certificates for these names (DNS subject alternative names) get these scopes.
    pub fn with_client_names(mut self, read: &[String], admin: &[String]) -> Authenticator {
        self.client_names = read
            .iter()
            .map(|name| (name.clone(), Scope::Read))
            .chain(admin.iter().map(|name| (name.clone(), Scope::Admin)))
            .collect();
        self
    }

    /// Whether anything is asked of clients at all (tokens or certificate names).
    pub fn requires_something(&self) -> bool {
        !self.sources.is_empty() || !self.client_names.is_empty()
    }

    /// The widest scope a client certificate's names give, if any.
    pub fn scope_of_certificate(&self, certificate: &ClientCertificate) -> Option<Scope> {
        let parsed = webpki::EndEntityCert::try_from(&certificate.0).ok()?;
        self.client_names
            .iter()
            .filter(|(name, _)| {
                rustls_pki_types::ServerName::try_from(name.as_str())
                    .is_ok_and(|server| parsed.verify_is_valid_for_subject_name(&server).is_ok())
            })
            .map(|(_, scope)| *scope)
            .max()
    }

    /// The scope of `presented`, if it is one of the tokens. Every token is compared, in constant time, whatever
    /// matches: how long the check takes says nothing about which token is close.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        self.refresh_if_due();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let mut best: Option<Scope> = None;
        for (source, file) in self.sources.iter().zip(loaded.iter()) {
            if bool::from(file.digest.ct_eq(&digest)) {
                best = best.max(Some(source.scope));
            }
        }
        best
    }

    /// Re-reads the files that changed since they were read, at most once per [`RECHECK`]. A file that cannot be
    /// read now (a Secret being swapped) keeps its last token, with a warning.
    fn refresh_if_due(&self) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() < RECHECK {
                return;
            }
            *checked = Instant::now();
        }
        for (index, source) in self.sources.iter().enumerate() {
            let stamp = std::fs::metadata(&source.path)
                .ok()
                .map(|m| (m.modified().ok(), m.len()));
            let unchanged = {
                let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
                stamp.is_some_and(|(modified, length)| {
                    loaded[index].modified == modified && loaded[index].length == length
                })
            };
            if unchanged {
                continue;
            }
            match load(&source.path) {
                Ok(file) => {
                    tracing::info!(file = %source.path.display(), scope = source.scope.name(), "token file re-read");
                    self.loaded.write().unwrap_or_else(|p| p.into_inner())[index] = file;
                }
                Err(error) => {
                    tracing::warn!(%error, "keeping the token last read from the file");
                }
            }
        }
    }

    fn is_open(&self, request: &ServiceRequest) -> bool {
        // A CORS preflight carries no credentials, and its answer says only which methods exist.
        request.method() == Method::OPTIONS
            || (self.open_health && request.path().starts_with("/health/"))
            || (self.open_metrics && request.path() == "/metrics")
    }
}

fn load(path: &Path) -> Result<Loaded, String> {
    let metadata = std::fs::metadata(path)
        .map_err(|error| format!("cannot read the token file {}: {error}", path.display()))?;
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the token file {}: {error}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    if token.contains(char::is_whitespace) {
        return Err(format!(
            "the token file {} holds more than one word; put one token per file",
            path.display()
        ));
    }
    Ok(Loaded {
        modified: metadata.modified().ok(),
        length: metadata.len(),
        digest: Sha256::digest(token.as_bytes()).into(),
    })
}

/// The scope a method needs.
fn needed(method: &Method) -> Scope {
    if method == Method::GET || method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Admin
    }
}

/// Middleware: lets a request through when no token is configured, when its path is open, or when its bearer token
/// has the scope its method needs; otherwise 401 (no or an unknown token) or 403 (a read token for a change).
pub async fn authenticate(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let Some(authenticator) = request.app_data::<web::Data<Option<Authenticator>>>() else {
        return next.call(request).await;
    };
    let Some(authenticator) = authenticator.as_ref() else {
        return next.call(request).await;
    };
    if authenticator.is_open(&request) {
        return next.call(request).await;
    }
    let certified = request
        .conn_data::<ClientCertificate>()
        .and_then(|certificate| authenticator.scope_of_certificate(certificate));
    let needs = needed(request.method());
    if certified.is_some_and(|scope| scope >= needs) {
        return next.call(request).await;
    }
    let presented = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    let scope = match presented {
        Some(presented) => match authenticator.scope_of(&presented) {
            Some(scope) => Some(scope),
            None => return Err(ApiError::Unauthorized { presented: true }.into()),
        },
        None => certified,
    };
    match scope {
        None => Err(ApiError::Unauthorized { presented: false }.into()),
        Some(scope) if scope < needs => Err(ApiError::Forbidden(format!(
            "this token or certificate may only read; {} {} needs admin rights",
            request.method(),
            request.path()
        ))
        .into()),
        Some(_) => next.call(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_scope_of_their_file_and_are_re_read_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let read = dir.path().join("read");
        let admin = dir.path().join("admin");
        std::fs::write(&read, "reader-token\n").unwrap();
        std::fs::write(&admin, "admin-token").unwrap();
        let auth = Authenticator::new(
            std::slice::from_ref(&read),
            std::slice::from_ref(&admin),
            false,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(auth.scope_of("reader-token"), Some(Scope::Read));
        assert_eq!(auth.scope_of("admin-token"), Some(Scope::Admin));
        assert_eq!(auth.scope_of("admin-toke"), None);
        assert_eq!(auth.scope_of(""), None);

        std::fs::write(&admin, "rotated-admin-token-of-another-length").unwrap();
        *auth.checked.lock().unwrap() = Instant::now() - RECHECK;
        assert_eq!(auth.scope_of("admin-token"), None);
        assert_eq!(
            auth.scope_of("rotated-admin-token-of-another-length"),
            Some(Scope::Admin)
        );
        std::fs::remove_file(&read).unwrap();
        *auth.checked.lock().unwrap() = Instant::now() - RECHECK;
        assert_eq!(
            auth.scope_of("reader-token"),
            Some(Scope::Read),
            "a file gone for a moment keeps its token"
        );
    }

    #[test]
    fn bad_token_files_are_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        assert!(
            Authenticator::new(&[empty], &[], false, false)
                .unwrap_err()
                .contains("is empty")
        );
        let missing = dir.path().join("missing");
        assert!(
            Authenticator::new(&[], &[missing], false, false)
                .unwrap_err()
                .contains("cannot read")
        );
        assert!(
            Authenticator::new(&[], &[], false, false)
                .unwrap()
                .is_none()
        );
    }
}
