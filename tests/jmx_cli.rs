//! `daedalus jmx ...` against a real JVM's JMX agent.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::process::Output;

use support::jvm::JdkAgent;

use support::daedalus;

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn get_prints_the_jvm_name() {
    let agent = JdkAgent::start();
    let output = daedalus(&[
        "jmx",
        "get",
        "java.lang:type=Runtime",
        "VmName",
        "--jmx-service",
        &agent.service(),
    ]);
    assert!(stdout(&output).contains("VM"), "{}", stdout(&output));
}

#[test]
fn every_subcommand_works_with_json_output() {
    let agent = JdkAgent::start();
    let service = agent.service();
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["jmx", "--json", "--jmx-service", &service];
        all.extend_from_slice(args);
        serde_json::from_str(&stdout(&daedalus(&all))).expect("JSON output")
    };

    let heap = json(&["get", "java.lang:type=Memory", "HeapMemoryUsage"]);
    assert!(heap["used"].as_i64().unwrap() > 0, "{heap}");
    let several = json(&["get", "java.lang:type=Runtime", "VmName", "Uptime"]);
    assert!(
        several["VmName"].is_string() && several["Uptime"].is_number(),
        "{several}"
    );

    let names = json(&["query", "java.lang:type=Mem*"]);
    assert_eq!(names, serde_json::json!(["java.lang:type=Memory"]));

    let info = json(&["info", "java.lang:type=Memory"]);
    let operations = info["operations"].as_array().unwrap();
    assert!(operations.iter().any(|o| o["name"] == "gc"), "{info}");

    stdout(&daedalus(&[
        "jmx",
        "--jmx-service",
        &service,
        "set",
        "java.lang:type=Memory",
        "Verbose",
        "boolean:true",
    ]));
    assert_eq!(
        json(&["get", "java.lang:type=Memory", "Verbose"]),
        serde_json::json!(true)
    );

    let cpu = json(&[
        "invoke",
        "java.lang:type=Threading",
        "getThreadCpuTime",
        "long:1",
    ]);
    assert!(cpu.is_number(), "{cpu}");
}

#[test]
fn listen_prints_notifications() {
    let agent = JdkAgent::start_with(&["-XX:+UseSerialGC"]);
    let service = agent.service();
    let listener = support::daedalus_command()
        .args([
            "jmx",
            "--jmx-service",
            &service,
            "listen",
            "java.lang:type=GarbageCollector,name=MarkSweepCompact",
        ])
        .args(["--count", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let listener = std::sync::Arc::new(std::sync::Mutex::new(listener));
    // The listener may subscribe after the first gc; collect until it has printed one.
    support::eventually("the listener prints a GC notification", || {
        stdout(&daedalus(&[
            "jmx",
            "--jmx-service",
            &service,
            "invoke",
            "java.lang:type=Memory",
            "gc",
        ]));
        listener.lock().unwrap().try_wait().unwrap().map(|_| ())
    });
    let listener = std::sync::Arc::try_unwrap(listener)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    let output = listener.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let event: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("one line")).unwrap();
    assert_eq!(
        event["type"], "com.sun.management.gc.notification",
        "{event}"
    );
    assert_eq!(event["userData"]["gcName"], "MarkSweepCompact", "{event}");
}

#[test]
fn errors_exit_1_and_name_the_problem() {
    let agent = JdkAgent::start();
    let output = daedalus(&[
        "jmx",
        "get",
        "java.lang:type=Nothing",
        "X",
        "--jmx-service",
        &agent.service(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no MBean java.lang:type=Nothing") && stderr.contains(&agent.service()),
        "{stderr}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    drop(std::net::TcpListener::bind(("127.0.0.1", closed)));
    let output = daedalus(&[
        "jmx",
        "get",
        "a:b=c",
        "X",
        "--jmx-service",
        &format!("127.0.0.1:{closed}"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect to JMX"));
}

/// The sidecar's operations get a JMX client connected to the configured agent.
#[test]
fn operations_reach_the_configured_jmx_agent() {
    let agent = JdkAgent::start();
    let service = agent.service();
    let sidecar = support::Sidecar::start(&["--jmx-service", &service]);
    let client = sidecar.client();
    let id = client.submit(serde_json::json!({"type": "flush", "keyspace": "ks"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = support::wait_for_state(&sidecar, &id, "FAILED");
    let message = failed["errors"][0]["message"].as_str().unwrap();
    // Connected (no connection error), and asked the agent for Cassandra's StorageService, which a plain JVM lacks.
    let expected =
        format!("JMX at {service}: no MBean org.apache.cassandra.db:type=StorageService");
    assert!(message.contains(&expected), "{message}");
}
