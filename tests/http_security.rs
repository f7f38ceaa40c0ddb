//! Request-level security and HTTP compatibility, against the real binary: CORS, content types, `Location`,
//! `/config` redaction, secrets on the command line, `HEAD` and trailing slashes. Every response is also checked
//! against `openapi.yaml` by `SpecClient`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

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
        // A browser script reads the new operation's address and the next page of a list only if exposed.
        assert_eq!(
            response.header("access-control-expose-headers"),
            Some("location, x-next-cursor, retry-after")
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
    let output = support::daedalus_command()
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

/// Submits a flush with these extra headers; returns its `Location` and id.
fn location_of(sidecar: &Sidecar, headers: &[(&str, &str)]) -> (String, String) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let response = sidecar.client().send_with(
        Method::POST,
        "/operations",
        &all,
        Some(FLUSH.as_bytes().to_vec()),
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let location = response.header("location").unwrap().to_string();
    reqwest::Url::parse(&location).unwrap_or_else(|e| panic!("{location}: {e}"));
    (
        location,
        response.json()["id"].as_str().unwrap().to_string(),
    )
}

#[test]
fn location_is_the_host_header_and_ignores_forwarded_headers_by_default() {
    let sidecar = Sidecar::start(&[]);
    let (location, id) = location_of(&sidecar, &[("host", "sidecar-0.example:4567")]);
    assert_eq!(
        location,
        format!("http://sidecar-0.example:4567/operations/{id}")
    );

    let (location, id) = location_of(
        &sidecar,
        &[
            ("host", "sidecar-0.example:4567"),
            ("x-forwarded-proto", "javascript"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "proto=https;host=evil.example"),
        ],
    );
    assert_eq!(
        location,
        format!("http://sidecar-0.example:4567/operations/{id}")
    );

    // A Host that is no URI authority: the address the request came in on.
    let own = sidecar.base_url.clone();
    for bad in ["a b", "evil.example/path?", "user@evil.example", "x:port"] {
        let (location, id) = location_of(&sidecar, &[("host", bad)]);
        assert_eq!(location, format!("{own}/operations/{id}"), "Host: {bad}");
    }
}

#[test]
fn forwarded_headers_count_only_when_trusted_and_only_with_web_schemes() {
    let sidecar = Sidecar::start(&["--trust-forwarded-headers"]);
    let (location, id) = location_of(
        &sidecar,
        &[
            ("host", "10.0.0.5:4567"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "sidecar.example"),
        ],
    );
    assert_eq!(location, format!("https://sidecar.example/operations/{id}"));

    let (location, id) = location_of(
        &sidecar,
        &[
            ("host", "10.0.0.5:4567"),
            (
                "forwarded",
                r#"for=192.0.2.1;proto=https;host="sidecar.example:8443", for=10.0.0.1"#,
            ),
        ],
    );
    assert_eq!(
        location,
        format!("https://sidecar.example:8443/operations/{id}")
    );

    let (location, id) = location_of(
        &sidecar,
        &[
            ("host", "10.0.0.5:4567"),
            ("x-forwarded-proto", "javascript"),
            ("x-forwarded-host", "evil example"),
        ],
    );
    assert_eq!(location, format!("http://10.0.0.5:4567/operations/{id}"));
}

#[test]
fn location_without_a_host_header_is_the_connection_address() {
    use std::io::{Read, Write};
    let sidecar = Sidecar::start(&[]);
    let address = sidecar.base_url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    // HTTP/1.0 needs no Host header.
    write!(
        stream,
        "POST /operations HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{FLUSH}",
        FLUSH.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.0 201"), "{response}");
    let location = response
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .starts_with("location:")
                .then(|| line[9..].trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location: {response}"));
    assert!(
        location.starts_with(&format!("http://{address}/operations/")),
        "{location}"
    );
}

#[test]
fn config_is_served_with_its_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("cassandra.yaml");
    std::fs::write(
        &yaml,
        "\
# Cassandra storage config
cluster_name: 'Test Cluster'
num_tokens: 16
server_encryption_options:
  keystore: conf/.keystore
  keystore_password: kspass1   # change me
  truststore_password: \"tspass2\"
ldap:
  Bind_Credentials:
    user: admin
    pass: ldappass3
tokens_list: [{client_secret: flowpass4}]
",
    )
    .unwrap();
    let sidecar = Sidecar::start(&["--cassandra-config", yaml.to_str().unwrap()]);
    let config = sidecar.client().get("/config");
    assert_eq!(config.status, 200);
    assert_eq!(config.header("content-type"), Some("application/yaml"));
    let text = config.text();
    for secret in ["kspass1", "tspass2", "ldappass3", "flowpass4"] {
        assert!(!text.contains(secret), "{secret} served:\n{text}");
    }
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(value["cluster_name"], "Test Cluster");
    assert_eq!(value["num_tokens"], 16);
    assert_eq!(
        value["server_encryption_options"]["keystore"],
        "conf/.keystore"
    );
    assert_eq!(
        value["server_encryption_options"]["keystore_password"],
        "<redacted>"
    );
    assert_eq!(value["ldap"]["Bind_Credentials"], "<redacted>");
    assert_eq!(value["tokens_list"], "<redacted>");
}

#[test]
fn config_without_secrets_is_served_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("cassandra.yaml");
    let text = "# comment\ncluster_name: c   # trailing\nnum_tokens: 1\ninitial_token: -9223372036854775808\n";
    std::fs::write(&yaml, text).unwrap();
    let sidecar = Sidecar::start(&["--cassandra-config", yaml.to_str().unwrap()]);
    assert_eq!(sidecar.client().get("/config").text(), text);
}

#[test]
fn a_jmx_password_on_the_command_line_is_warned_about() {
    let warnings = |sidecar: &Sidecar| -> Vec<String> {
        sidecar
            .log_events()
            .into_iter()
            .filter(|event| event["level"] == "WARN")
            .map(|event| event.to_string())
            .collect()
    };
    let flagged = Sidecar::start(&["--jmx-password", "hunter2"]);
    let found = warnings(&flagged);
    assert!(
        found.iter().any(|w| w.contains("--jmx-password")
            && w.contains("DAEDALUS_JMX_PASSWORD")
            && w.contains("--jmx-credentials")),
        "{found:?}"
    );
    assert!(
        !flagged.logs().contains("hunter2"),
        "the password itself is not logged"
    );
    let from_env = Sidecar::start_with_env(&[], &[("DAEDALUS_JMX_PASSWORD", "hunter2")]);
    assert_eq!(warnings(&from_env), Vec::<String>::new());
}

#[test]
fn head_answers_wherever_get_does_without_a_body() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let id = client.submit(json!({"type": "flush", "keyspace": "ks"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let unknown = "3f1c1d4e-8a61-4f0b-9c39-7f0e0b9c4d21";
    for path in [
        "/version".to_string(),
        "/health/live".into(),
        "/health/ready".into(),
        "/openapi.yaml".into(),
        "/operations".into(),
        format!("/operations/{id}"),
        format!("/operations/{unknown}"),
        "/config".into(),
    ] {
        let get = client.get(&path);
        let head = client.send(Method::HEAD, &path, None);
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {path}"
        );
        assert_eq!(
            head.header("access-control-allow-origin"),
            Some("*"),
            "HEAD {path}"
        );
    }
    let version = client.get("/version");
    let head = client.send(Method::HEAD, "/version", None);
    assert_eq!(
        head.header("content-length").map(str::to_string),
        Some(version.body.len().to_string())
    );
    // Unknown paths and methods stay JSON errors for GET, and bodiless for HEAD.
    assert_eq!(client.send(Method::HEAD, "/nothing", None).status, 404);
    let wrong = client.send(Method::PUT, "/version", None);
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, HEAD"));
}

#[test]
fn a_trailing_slash_is_ignored_and_unknown_paths_stay_404() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let created = client.send(
        Method::POST,
        "/operations/",
        Some(("application/json", FLUSH.as_bytes().to_vec())),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_string();
    let listed = client.get("/operations/");
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()[0]["id"], id.as_str());
    assert_eq!(client.get(&format!("/operations/{id}/")).status, 200);
    assert_eq!(client.get("/version/").status, 200);
    let missing = client.get("/nothing/here/");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "not_found");
}
