//! Certificates for TLS tests, made by `openssl` (which scripts/test installs), and clients that trust them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::{Certificate, Identity};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (scripts/test installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA: `<name>.pem` and `<name>.key` in `dir`.
pub fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A certificate `<name>.pem` and key `<name>.key` signed by CA `ca`, for `names` (addresses or DNS names): for a
/// server (and for clients too, as sidecars present theirs to their peers), or for a client only when `server` is
/// false.
pub fn leaf(dir: &Path, name: &str, ca: &str, names: &[&str], server: bool) {
    // Addresses become IP names, anything else DNS names.
    let names: Vec<String> = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(_) => format!("IP:{n}"),
            Err(_) => format!("DNS:{n}"),
        })
        .collect();
    let alternative = if names.is_empty() {
        String::new()
    } else {
        format!("subjectAltName={}\n", names.join(","))
    };
    let usage = if server {
        "serverAuth,clientAuth"
    } else {
        "clientAuth"
    };
    let extensions = format!("{alternative}extendedKeyUsage={usage}\n");
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

pub fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// A client trusting only CA `ca`, presenting `identity` (`<name>` of a leaf) if given.
pub fn client(dir: &Path, ca: &str, identity: Option<&str>) -> Client {
    daedalus_operations::crypto::install_default_provider();
    let mut builder = Client::builder()
        .tls_certs_only([Certificate::from_pem(&read(file(dir, &format!("{ca}.pem")))).unwrap()])
        .timeout(Duration::from_secs(10));
    if let Some(name) = identity {
        let mut pem = read(file(dir, &format!("{name}.pem")));
        pem.extend(read(file(dir, &format!("{name}.key"))));
        builder = builder.identity(Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}
