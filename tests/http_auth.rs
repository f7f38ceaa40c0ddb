//! Bearer tokens on the API: a sidecar given token files refuses requests without one (401), lets a read token only
//! read (403 for changes), an admin token do anything, picks up a rotated token file without a restart, leaves the
//! health probes open only when told to, and never writes a token to its logs or answers. Without token files the
//! API stays open (every other test file runs that way).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::{Sidecar, eventually};

use support::secrets::{ADMIN_TOKEN, READ_TOKEN, ROTATED_TOKEN};

struct Tokens {
    _dir: tempfile::TempDir,
    read: std::path::PathBuf,
    admin: std::path::PathBuf,
}

fn tokens() -> Tokens {
    let dir = tempfile::tempdir().unwrap();
    let read = dir.path().join("read-token");
    let admin = dir.path().join("admin-token");
    std::fs::write(&read, format!("{READ_TOKEN}\n")).unwrap();
    std::fs::write(&admin, ADMIN_TOKEN).unwrap();
    Tokens {
        _dir: dir,
        read,
        admin,
    }
}

fn start(tokens: &Tokens, extra: &[&str]) -> Sidecar {
    let read = tokens.read.to_str().unwrap();
    let admin = tokens.admin.to_str().unwrap();
    let mut args = vec![
        "--read-token-file",
        read,
        "--admin-token-file",
        admin,
        "--enable-test-operations",
    ];
    args.extend(extra);
    Sidecar::start(&args)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn submit_sleep(sidecar: &Sidecar, authorization: Option<&str>) -> support::spec::Checked {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    sidecar.client().send_with(
        Method::POST,
        "/operations",
        &headers,
        Some(
            json!({"type": "sleep", "duration": "1s"})
                .to_string()
                .into_bytes(),
        ),
    )
}

fn get(sidecar: &Sidecar, path: &str, authorization: Option<&str>) -> support::spec::Checked {
    let headers: Vec<(&str, &str)> = authorization
        .map(|v| ("authorization", v))
        .into_iter()
        .collect();
    sidecar
        .client()
        .send_with(Method::GET, path, &headers, None)
}

#[test]
fn tokens_have_scopes_and_a_rotated_token_file_is_picked_up() {
    let tokens = tokens();
    let sidecar = start(&tokens, &[]);
    let read = bearer(READ_TOKEN);
    let admin = bearer(ADMIN_TOKEN);

    let none = get(&sidecar, "/operations", None);
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["code"], "unauthorized");
    assert_eq!(
        none.header("www-authenticate"),
        Some(r#"Bearer realm="daedalus""#)
    );
    let wrong = get(&sidecar, "/operations", Some("Bearer not-a-token"));
    assert_eq!(wrong.status, 401);
    assert!(
        wrong
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        get(
            &sidecar,
            "/operations",
            Some(&format!("Basic {READ_TOKEN}"))
        )
        .status,
        401
    );

    assert_eq!(get(&sidecar, "/operations", Some(&read)).status, 200);
    assert_eq!(get(&sidecar, "/version", Some(&read)).status, 200);
    let refused = submit_sleep(&sidecar, Some(&read));
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["code"], "forbidden");
    assert_eq!(submit_sleep(&sidecar, None).status, 401);

    let accepted = submit_sleep(&sidecar, Some(&admin));
    assert_eq!(accepted.status, 201);
    let id = accepted.json()["id"].as_str().unwrap().to_string();
    let path = format!("/operations/{id}");
    assert_eq!(get(&sidecar, &path, Some(&read)).status, 200);
    let cancel = |authorization: &str| {
        sidecar
            .client()
            .send_with(
                Method::DELETE,
                &path,
                &[("authorization", authorization)],
                None,
            )
            .status
    };
    assert_eq!(cancel(&read), 403);
    assert_eq!(cancel(&admin), 202);
    // A CORS preflight carries no credentials.
    let preflight = sidecar
        .client()
        .send_with(Method::OPTIONS, "/operations", &[], None);
    assert_eq!(preflight.status, 204);
    assert_eq!(
        get(&sidecar, "/health/live", None).status,
        401,
        "probes are closed unless opened"
    );

    std::fs::write(&tokens.admin, ROTATED_TOKEN).unwrap();
    eventually("the rotated admin token is accepted", || {
        (submit_sleep(&sidecar, Some(&bearer(ROTATED_TOKEN))).status == 201).then_some(())
    });
    assert_eq!(
        submit_sleep(&sidecar, Some(&admin)).status,
        401,
        "the old token is gone"
    );

    let logs = sidecar.logs();
    for secret in [READ_TOKEN, ADMIN_TOKEN, ROTATED_TOKEN] {
        assert!(!logs.contains(secret), "a token is in the logs");
    }
}

#[test]
fn open_probes_stay_open_only_with_the_flag_and_an_open_api_warns() {
    let tokens = tokens();
    let sidecar = start(&tokens, &["--open-health-probes"]);
    assert_eq!(get(&sidecar, "/health/live", None).status, 200);
    assert_eq!(get(&sidecar, "/version", None).status, 401);
    let logs = sidecar.logs();
    assert!(!logs.contains("without authentication"), "{logs}");

    // Loopback without tokens: open, as Icarus, and nothing to warn about.
    let open = Sidecar::start(&[]);
    assert_eq!(get(&open, "/operations", None).status, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!open.logs().contains("without authentication"));
}

#[test]
fn an_api_reachable_from_elsewhere_without_tokens_is_warned_about() {
    let logs = support::logs_of_a_start(support::daedalus_command().args([
        "--log-format",
        "json",
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--jmx-service",
        "127.0.0.1:1",
    ]));
    assert!(
        logs.lines()
            .any(|line| line.contains("\"WARN\"") && line.contains("without authentication")),
        "{logs}"
    );
}
