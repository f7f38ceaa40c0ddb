//! Real object-storage servers for the tests, on loopback: MinIO and s3s-fs (S3) and Azurite (Azure Blob).
//! `scripts/object-stores` installs them once per test binary (cached under ~/.cache/daedalus/tools) and starts
//! each [`Store`] on a free port with its data in a temporary directory; both go away when the `Store` is dropped.
//!
//! The S3 servers take [`S3_ACCESS_KEY`] / [`S3_SECRET_KEY`] in region [`S3_REGION`], path-style. Azurite takes
//! the emulator's well-known [`AZURE_ACCOUNT`] / [`AZURE_KEY`]; its containers are at
//! `{endpoint}/devstoreaccount1/{container}` (for `object_store`: `with_use_emulator(true)` and
//! `AZURITE_BLOB_STORAGE_URL={endpoint}`).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const S3_ACCESS_KEY: &str = "daedalus-test";
pub const S3_SECRET_KEY: &str = "daedalus-test-secret";
pub const S3_REGION: &str = "us-east-1";
/// [`S3_ACCESS_KEY`] and [`S3_SECRET_KEY`] as the environment of a `daedalus` process.
pub const S3_CREDENTIALS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
];
pub const AZURE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Minio,
    S3s,
    Azurite,
}

impl Kind {
    /// The name `scripts/object-stores` knows the server by.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Minio => "minio",
            Kind::S3s => "s3s",
            Kind::Azurite => "azurite",
        }
    }

    pub fn is_s3(self) -> bool {
        self != Kind::Azurite
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/object-stores")
}

/// Runs `scripts/object-stores ARGS`; its stdout, or `Err(stderr)`.
fn run(args: &[&str]) -> Result<Vec<u8>, String> {
    let output = Command::new(script())
        .args(args)
        .output()
        .expect("scripts/object-stores runs");
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn run_or_panic(args: &[&str]) -> Vec<u8> {
    run(args).unwrap_or_else(|stderr| panic!("scripts/object-stores {}:\n{stderr}", args.join(" ")))
}

/// Installs the servers once per test binary (quick when they are already there).
fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        run_or_panic(&["install"]);
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running object-storage server; stopped, and its data removed, when dropped.
pub struct Store {
    kind: Kind,
    port: u16,
    running: bool,
    dir: tempfile::TempDir,
}

impl Store {
    pub fn minio() -> Store {
        Store::start(Kind::Minio)
    }

    pub fn s3s() -> Store {
        Store::start(Kind::S3s)
    }

    pub fn azurite() -> Store {
        Store::start(Kind::Azurite)
    }

    /// Starts a server of `kind` on a free loopback port; returns once it answers.
    pub fn start(kind: Kind) -> Store {
        install();
        let dir = tempfile::Builder::new()
            .prefix(&format!("daedalus-{}-", kind.name()))
            .tempdir()
            .expect("a temporary directory");
        let mut failures = Vec::new();
        // Another process may take the port between our probe and the server's bind: try a few.
        for _ in 0..3 {
            let port = free_port();
            match run(&["start", kind.name(), &path(dir.path()), &port.to_string()]) {
                Ok(_) => {
                    return Store {
                        kind,
                        port,
                        running: true,
                        dir,
                    };
                }
                Err(stderr) => failures.push(format!("port {port}: {stderr}")),
            }
        }
        panic!("{} did not start:\n{}", kind.name(), failures.join("\n"));
    }

    /// A MinIO with `bucket` created.
    pub fn minio_with_bucket(bucket: &str) -> Store {
        let store = Store::minio();
        store.create_bucket(bucket);
        store
    }

    /// The flags that point `daedalus` at this server: `--s3-endpoint URL --storage-allow-http` (S3), or
    /// `--azure-use-emulator --azure-endpoint URL` (Azurite).
    pub fn daedalus_args(&self) -> Vec<String> {
        if self.kind.is_s3() {
            vec![
                "--s3-endpoint".into(),
                self.endpoint(),
                "--storage-allow-http".into(),
            ]
        } else {
            vec![
                "--azure-use-emulator".into(),
                "--azure-endpoint".into(),
                self.endpoint(),
            ]
        }
    }

    /// The environment `daedalus` needs beside [`Store::daedalus_args`]: the S3 credentials for an S3 server, none
    /// for Azurite (the emulator's account is built in).
    pub fn daedalus_env(&self) -> &'static [(&'static str, &'static str)] {
        if self.kind.is_s3() {
            &S3_CREDENTIALS
        } else {
            &[]
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, the same across `stop` and `restart`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's files: `data/` (for s3s-fs, one directory per bucket), `log` and `pid`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a bucket (Azurite: a container). One that exists already is fine.
    pub fn create_bucket(&self, bucket: &str) {
        run_or_panic(&["bucket", self.kind.name(), &self.port.to_string(), bucket]);
    }

    /// Stops the server (SIGTERM, SIGKILL after 10 s), keeping its data for `restart`.
    pub fn stop(&mut self) {
        run_or_panic(&["stop", &path(self.dir.path())]);
        self.running = false;
    }

    /// Kills the server with SIGKILL, as a crash or a network cut would end it (SIGTERM lets MinIO finish the
    /// requests it has), keeping its data for `restart`.
    pub fn kill(&mut self) {
        let pid =
            std::fs::read_to_string(self.dir.path().join("pid")).expect("the server's pid file");
        let pid = nix::unistd::Pid::from_raw(pid.trim().parse().expect("a pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        super::eventually("the killed server is gone", || {
            nix::sys::signal::kill(pid, None).is_err().then_some(())
        });
        self.running = false;
    }

    /// Starts the server again on the same port with the same data (stopping it first if it runs).
    pub fn restart(&mut self) {
        if self.running {
            self.stop();
        }
        run_or_panic(&[
            "start",
            self.kind.name(),
            &path(self.dir.path()),
            &self.port.to_string(),
        ]);
        self.running = true;
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Every object in `bucket`, read with the server's own list API: key → size in bytes.
    pub fn objects(&self, bucket: &str) -> BTreeMap<String, u64> {
        const PAGE: usize = 1000;
        let mut objects = BTreeMap::new();
        let mut next: Option<String> = None;
        loop {
            let target = match (self.kind.is_s3(), &next) {
                (true, None) => format!("/{bucket}?list-type=2&max-keys={PAGE}"),
                (true, Some(token)) => {
                    format!(
                        "/{bucket}?continuation-token={}&list-type=2&max-keys={PAGE}",
                        encode(token, false)
                    )
                }
                (false, None) => format!(
                    "/{AZURE_ACCOUNT}/{bucket}?comp=list&maxresults={PAGE}&restype=container"
                ),
                (false, Some(marker)) => format!(
                    "/{AZURE_ACCOUNT}/{bucket}?comp=list&marker={}&maxresults={PAGE}&restype=container",
                    encode(marker, false)
                ),
            };
            let xml = String::from_utf8(self.request("GET", &target, None)).expect("UTF-8 XML");
            let (entry, name, size) = if self.kind.is_s3() {
                ("Contents", "Key", "Size")
            } else {
                ("Blob", "Name", "Content-Length")
            };
            for item in elements(&xml, entry) {
                let key = element(item, name).unwrap_or_else(|| panic!("no {name} in {item}"));
                let size = element(item, size)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("no {size} in {item}"));
                objects.insert(key, size);
            }
            next = if self.kind.is_s3() {
                (element(&xml, "IsTruncated").as_deref() == Some("true"))
                    .then(|| element(&xml, "NextContinuationToken").expect("a continuation token"))
            } else {
                element(&xml, "NextMarker").filter(|marker| !marker.is_empty())
            };
            if next.is_none() {
                return objects;
            }
        }
    }

    /// The content of object `key` in `bucket`; panics if there is none.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.request("GET", &self.object_path(bucket, key), None)
    }

    /// Writes object `key` in `bucket`, as a client other than Daedalus would.
    pub fn put(&self, bucket: &str, key: &str, content: &[u8]) {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        file.write_all(content).expect("written");
        self.request("PUT", &self.object_path(bucket, key), Some(file.path()));
    }

    /// Deletes object `key` in `bucket`.
    pub fn delete(&self, bucket: &str, key: &str) {
        self.request("DELETE", &self.object_path(bucket, key), None);
    }

    fn object_path(&self, bucket: &str, key: &str) -> String {
        let key = encode(key, true);
        if self.kind.is_s3() {
            format!("/{bucket}/{key}")
        } else {
            format!("/{AZURE_ACCOUNT}/{bucket}/{key}")
        }
    }

    /// A signed request to the server; the response body (panics on an HTTP error).
    fn request(&self, method: &str, target: &str, body: Option<&Path>) -> Vec<u8> {
        let port = self.port.to_string();
        let mut args = vec!["request", self.kind.name(), port.as_str(), method, target];
        let body = body.map(path);
        if let Some(body) = &body {
            args.push(body);
        }
        run_or_panic(&args)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.running {
            let _ = run(&["stop", &path(self.dir.path())]);
        }
    }
}

fn path(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_string()
}

/// Percent-encodes all but the unreserved characters (and `/` when `keep_slash`), as SigV4 and SharedKey expect.
fn encode(text: &str, keep_slash: bool) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char)
            }
            b'/' if keep_slash => encoded.push('/'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// The raw contents of each `<tag>…</tag>` in `xml` (enough for the flat list responses of S3 and Azure).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let end = rest
            .find(&close)
            .unwrap_or_else(|| panic!("no {close} in {xml}"));
        found.push(&rest[..end]);
        rest = &rest[end + close.len()..];
    }
    found
}

/// The text of the first `<tag>` in `xml`, unescaped.
fn element(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).first().map(|text| unescape(text))
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let semi = rest
            .find(';')
            .unwrap_or_else(|| panic!("a bad XML entity in {text}"));
        let entity = &rest[1..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32)
                .unwrap_or_else(|| panic!("an unknown XML entity &{entity}; in {text}")),
        };
        out.push(c);
        rest = &rest[semi + 1..];
    }
    out.push_str(rest);
    out
}
