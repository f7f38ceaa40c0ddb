//! The command line: version, help, environment variables, and clear errors for bad flags.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use support::Sidecar;

use support::daedalus;

#[test]
fn version_and_help() {
    let version = daedalus(&["--version"]);
    assert!(version.status.success());
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        text.starts_with(&format!("daedalus {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );

    let help = daedalus(&["serve", "--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--operations-expiration",
        "--max-concurrent-operations",
        "--disable-cors",
        "--enable-truncate",
        "--jmx-service",
        "--jmx-user",
        "--jmx-password",
        "--jmx-credentials",
        "--jmx-truststore",
        "--jmx-truststore-password",
        "--jmx-keystore",
        "--jmx-keystore-password",
        "--jmx-client-auth",
        "DAEDALUS_LISTEN",
        "[default: 0.0.0.0:4567]",
    ] {
        assert!(
            text.contains(flag),
            "serve --help does not mention {flag}:\n{text}"
        );
    }
}

#[test]
fn bad_flags_are_refused_with_the_reason() {
    for (args, expected) in [
        (
            &["serve", "--operations-expiration", "soon"][..],
            "'soon' is not a duration",
        ),
        (
            &["serve", "--operations-expiration", "0s"][..],
            "longer than zero",
        ),
        (
            &["serve", "--max-concurrent-operations", "0"][..],
            "--max-concurrent-operations",
        ),
        (&["serve", "--listen", "here:there"][..], "[ADDRESS][:PORT]"),
        (
            &["serve", "--jmx-service", "host:port"][..],
            "is not a JMX service",
        ),
    ] {
        let output = daedalus(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn an_unreadable_credentials_file_stops_the_start() {
    let output = daedalus(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--jmx-credentials",
        "/nonexistent/jmx.properties",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/jmx.properties"), "{stderr}");
}

#[test]
fn an_unreadable_cql_password_file_stops_the_start() {
    let output = daedalus(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--cql-username",
        "restorer",
        "--cql-password-file",
        "/nonexistent/cql-password",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/cql-password"), "{stderr}");
}

#[test]
fn environment_variables_set_flags() {
    let sidecar = Sidecar::start_with_env(
        &[],
        &[
            ("DAEDALUS_JMX_SERVICE", "10.9.8.7:7299"),
            ("DAEDALUS_DISABLE_CORS", "true"),
        ],
    );
    let client = sidecar.client();
    assert_eq!(
        client.get("/version").header("access-control-allow-origin"),
        None
    );
    let id = client.submit(serde_json::json!({"type": "drain"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = support::wait_for_state(&sidecar, &id, "FAILED");
    let message = failed["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("10.9.8.7:7299"),
        "the JMX service from the environment is used: {message}"
    );
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap().to_string();
    let output = daedalus(&["serve", "--listen", &address]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
}

/// Log collectors (files, journald, `kubectl logs`) read stderr as a pipe: colour codes there are noise.
#[test]
fn text_logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let logs = support::logs_of_a_start(support::daedalus_command().env_remove("NO_COLOR").args([
        "--log-format",
        "text",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--jmx-service",
        "127.0.0.1:1",
    ]));
    assert!(logs.contains("listening"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "no ANSI escape codes in piped logs: {logs:?}"
    );
}

/// An init container's `restore --json --restored-marker` that finds its restore done prints JSON too, so the
/// script reading its output parses it whichever way the run went. No Cassandra: the marker is read first.
#[test]
fn restore_json_with_a_marker_of_the_same_restore_prints_json() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let location = format!("file://{}/bucket/cluster/dc1/node1", dir.path().display());
    let marker = dir.path().join("restored.json");
    std::fs::write(
        &marker,
        serde_json::json!({
            "storageLocation": location,
            "snapshotTag": "nightly",
            "backup": "nightly-5d1c-1718029212345",
            "completed": "2026-01-02T03:04:05Z",
        })
        .to_string(),
    )
    .unwrap();
    // Directories of the temporary one: were the marker not matched, nothing of this machine's Cassandra is touched.
    let cassandra_dir = dir.path().join("cassandra").display().to_string();
    let config_dir = dir.path().join("conf").display().to_string();
    let output = daedalus(&[
        "restore",
        "--storage-location",
        &location,
        "--snapshot-tag",
        "nightly",
        "--cassandra-dir",
        &cassandra_dir,
        "--config-directory",
        &config_dir,
        "--jmx-service",
        support::CLOSED_JMX_SERVICE,
        "--restored-marker",
        &marker.display().to_string(),
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(printed["alreadyRestored"], true, "{printed}");
    assert_eq!(printed["backup"], "nightly-5d1c-1718029212345", "{printed}");
    assert_eq!(printed["snapshotTag"], "nightly", "{printed}");
    assert_eq!(printed["storageLocation"], location.as_str(), "{printed}");
    assert_eq!(printed["marker"], marker.display().to_string(), "{printed}");
}
