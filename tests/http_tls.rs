//! TLS on the API with certificates made by `openssl` for each test: a client trusting the CA gets 200 (and
//! `Location` says https), plain HTTP to the TLS port gets no answer, certificate files replaced on disk are served
//! to new connections without a restart, and with a client CA (mTLS) a client without a certificate, or with one of
//! another CA, is refused.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Client;
use support::tls::{ca, client, file, leaf};
use support::{Sidecar, eventually};

fn start(dir: &Path, extra: &[&str]) -> (Sidecar, String) {
    let cert = file(dir, "server.pem");
    let key = file(dir, "server.key");
    let mut args = vec![
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--enable-test-operations",
    ];
    args.extend(extra);
    let sidecar = Sidecar::start(&args);
    let https = sidecar.base_url.replacen("http://", "https://", 1);
    (sidecar, https)
}

#[test]
fn a_client_trusting_the_ca_is_served_plain_http_is_not_and_replaced_certificates_are_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ca(dir, "ca1");
    ca(dir, "ca2");
    leaf(dir, "server", "ca1", &["127.0.0.1"], true);
    let (sidecar, https) = start(dir, &[]);

    let trusting = client(dir, "ca1", None);
    let version = trusting.get(format!("{https}/version")).send().unwrap();
    assert_eq!(version.status(), 200);
    let created = trusting
        .post(format!("{https}/operations"))
        .header("content-type", "application/json")
        .body(r#"{"type": "sleep", "duration": "1s"}"#)
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("https://"), "{location}");

    daedalus_operations::crypto::install_default_provider();
    let plain = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(
        plain
            .get(format!("{}/version", sidecar.base_url))
            .send()
            .is_err(),
        "plain HTTP to the TLS port gets no HTTP answer"
    );
    let other_ca = client(dir, "ca2", None);
    assert!(other_ca.get(format!("{https}/version")).send().is_err());

    // cert-manager replaces the files in place: a certificate of another CA is served to new connections.
    leaf(dir, "next", "ca2", &["127.0.0.1"], true);
    std::fs::copy(file(dir, "next.key"), file(dir, "server.key")).unwrap();
    std::fs::copy(file(dir, "next.pem"), file(dir, "server.pem")).unwrap();
    eventually("the new certificate is served", || {
        // A new client each time: no connection is reused.
        client(dir, "ca2", None)
            .get(format!("{https}/version"))
            .send()
            .ok()
            .filter(|response| response.status() == 200)
    });
    assert!(
        client(dir, "ca1", None)
            .get(format!("{https}/version"))
            .send()
            .is_err()
    );
    assert!(sidecar.logs().contains("TLS certificate re-read"));
}

#[test]
fn with_a_client_ca_only_clients_it_signed_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ca(dir, "ca1");
    ca(dir, "rogue");
    leaf(dir, "server", "ca1", &["127.0.0.1"], true);
    leaf(dir, "client", "ca1", &[], false);
    leaf(dir, "intruder", "rogue", &[], false);
    let client_ca = file(dir, "ca1.pem");
    let (_sidecar, https) = start(dir, &["--tls-client-ca-file", client_ca.to_str().unwrap()]);

    let signed = client(dir, "ca1", Some("client"));
    assert_eq!(
        signed
            .get(format!("{https}/version"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let anonymous = client(dir, "ca1", None);
    assert!(
        anonymous.get(format!("{https}/version")).send().is_err(),
        "no client certificate"
    );
    let intruder = client(dir, "ca1", Some("intruder"));
    assert!(
        intruder.get(format!("{https}/version")).send().is_err(),
        "a certificate of another CA"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ca(dir, "ca1");
    leaf(dir, "server", "ca1", &["127.0.0.1"], true);
    leaf(dir, "other", "ca1", &["127.0.0.1"], true);
    let output = support::daedalus_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert-file"])
        .arg(file(dir, "server.pem"))
        .arg("--tls-key-file")
        .arg(file(dir, "other.key"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("do not make a certificate and its key"),
        "{stderr}"
    );
}

#[test]
fn client_certificate_names_give_scopes_as_tokens_do() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ca(dir, "ca1");
    leaf(dir, "server", "ca1", &["127.0.0.1"], true);
    leaf(dir, "operator", "ca1", &["operator.example"], false);
    leaf(dir, "dashboard", "ca1", &["dashboard.example"], false);
    leaf(dir, "stranger", "ca1", &["stranger.example"], false);
    let client_ca = file(dir, "ca1.pem");
    let (_sidecar, https) = start(
        dir,
        &[
            "--tls-client-ca-file",
            client_ca.to_str().unwrap(),
            "--admin-client-name",
            "operator.example",
            "--read-client-name",
            "dashboard.example",
        ],
    );
    let submit = |client: &Client| {
        client
            .post(format!("{https}/operations"))
            .header("content-type", "application/json")
            .body(r#"{"type": "sleep", "duration": "1s"}"#)
            .send()
            .unwrap()
            .status()
    };
    let list = |client: &Client| {
        client
            .get(format!("{https}/operations"))
            .send()
            .unwrap()
            .status()
    };
    let operator = client(dir, "ca1", Some("operator"));
    assert_eq!(submit(&operator), 201);
    let dashboard = client(dir, "ca1", Some("dashboard"));
    assert_eq!(list(&dashboard), 200);
    assert_eq!(submit(&dashboard), 403);
    let stranger = client(dir, "ca1", Some("stranger"));
    assert_eq!(
        list(&stranger),
        401,
        "signed by the CA, but not a name with a scope"
    );
}
