//! Request-level security and HTTP compatibility, against the real binary: CORS, content types, `Location`,
//! `/config` redaction, secrets on the command line, `HEAD` and trailing slashes. Every response is also checked
//! against `openapi.yaml` by `SpecClient`.

mod support;

use reqwest::Method;
use serde_json::json;
use support::Sidecar;

const FLUSH: &str = r#"{"type": "flush", "keyspace": "ks"}"#;

#[test]
fn a_post_must_declare_json() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let post = |headers: &[(&str, &str)]| {
        client.send_with(
            Method::POST,
            "/operations",
            headers,
            Some(FLUSH.as_bytes().to_vec()),
        )
    };
    // What a browser sends cross-site without a preflight: no type, or a form/plain-text type.
    for headers in [
        &[][..],
        &[("content-type", "text/plain")][..],
        &[("content-type", "application/x-www-form-urlencoded")][..],
        &[("content-type", "multipart/form-data; boundary=x")][..],
    ] {
        let refused = post(headers);
        assert_eq!(refused.status, 415, "{headers:?}");
        assert_eq!(refused.json()["code"], "unsupported_media_type");
        assert!(
            refused.json()["error"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{}",
            refused.text()
        );
    }
    let missing = post(&[]);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("no Content-Type"),
        "{}",
        missing.text()
    );
    assert_eq!(
        client.get("/operations").json(),
        json!([]),
        "nothing was stored"
    );
    for accepted in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.daedalus+json",
    ] {
        assert_eq!(
            post(&[("content-type", accepted)]).status,
            201,
            "{accepted}"
        );
    }
}

#[test]
fn the_default_cors_wildcard_never_allows_credentials() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let origin = [("origin", "https://evil.example")];
    for response in [
        client.send_with(Method::GET, "/version", &origin, None),
        client.send_with(Method::OPTIONS, "/operations", &origin, None),
        client.send_with(Method::GET, "/nothing", &origin, None),
    ] {
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
        assert_eq!(response.header("access-control-allow-credentials"), None);
        assert_eq!(
            response.header("access-control-allow-methods"),
            Some("GET, POST, PUT, DELETE, OPTIONS, HEAD")
        );
    }
}

#[test]
fn a_cors_origin_list_echoes_only_listed_origins() {
    let sidecar = Sidecar::start_with_env(
        &[],
        &[(
            "DAEDALUS_CORS_ALLOWED_ORIGINS",
            "https://console.example.com, http://localhost:3000",
        )],
    );
    let client = sidecar.client();
    let from =
        |origin: &str| client.send_with(Method::GET, "/version", &[("origin", origin)], None);

    let listed = from("http://localhost:3000");
    assert_eq!(
        listed.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(
        listed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(listed.header("vary"), Some("Origin"));

    let other = from("https://evil.example");
    assert_eq!(other.status, 200, "CORS is the browser's to enforce");
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.header("access-control-allow-credentials"), None);
    assert_eq!(other.header("vary"), Some("Origin"));

    let preflight = client.send_with(
        Method::OPTIONS,
        "/operations",
        &[
            ("origin", "https://console.example.com"),
            ("access-control-request-method", "POST"),
        ],
        None,
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://console.example.com")
    );
}

#[test]
fn a_bad_cors_origin_is_refused_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_daedalus"))
        .args(["serve", "--cors-allowed-origins", "console.example.com/x"])
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--cors-allowed-origins") && stderr.contains("scheme://host[:port]"),
        "{stderr}"
    );
}
