//! Cassandra's lifecycle beside a sidecar that is never restarted: a clean stop under a running backup, a crash
//! (SIGKILL), and starts with the RMI server on the JMX port (as cassandra-env.sh sets it up) or on a new random
//! port each time. Throughout, `/status` is polled and must answer 200 or 503, never hang or fail otherwise;
//! while Cassandra is down operations fail naming the cause; once it is back, the sidecar finds it by itself.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Sidecar, cassandra, eventually, eventually_within, wait_for_state};

/// Node 15: a one-node cluster of its own, which the test stops and kills at will.
const NODE: usize = 15;
const KEYSPACE: &str = "lifecycle";
/// Long enough for a throttled backup to end (it reads 3 MB at 100 kB/s) or a node to start.
const LONG: Duration = Duration::from_secs(180);

/// Polls `/status` in the background and keeps every answer.
struct StatusPoller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<u16>>>,
}

impl StatusPoller {
    fn start(sidecar: &Sidecar) -> Self {
        let client = sidecar.client();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                seen.push(client.get("/status").status);
                std::thread::sleep(Duration::from_millis(200));
            }
            seen
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<u16> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn errors_of(operation: &Value) -> String {
    operation["errors"].to_string()
}

fn metric(sidecar: &Sidecar, name: &str) -> f64 {
    let text = String::from_utf8(sidecar.client().get("/metrics").body).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Snapshots on disk taken under `tag`, in any table of the keyspace.
fn snapshots_on_disk(tag: &str) -> Vec<PathBuf> {
    cassandra::snapshot_dirs(NODE, KEYSPACE, tag)
}

/// While Cassandra is down: node endpoints answer 503 naming JMX, the sidecar stays live but not ready, the metrics
/// say the connection is down, and an operation submitted fails naming the cause.
fn check_outage(sidecar: &Sidecar) {
    let client = sidecar.client();
    let status = eventually_within("/status answers 503", LONG, || {
        let response = client.get("/status");
        (response.status == 503).then_some(response)
    });
    assert!(
        status.json()["error"].as_str().unwrap().contains("JMX"),
        "{}",
        status.json()
    );
    assert_eq!(client.get("/health/live").status, 200);
    let ready = client.get("/health/ready");
    assert_eq!(ready.status, 503);
    assert!(ready.json()["reason"].as_str().unwrap().contains("JMX"));
    assert_eq!(metric(sidecar, "daedalus_jmx_connected"), 0.0);

    let flush = client.submit(json!({"type": "flush", "keyspace": KEYSPACE}));
    let failed = wait_for_state(sidecar, flush["id"].as_str().unwrap(), "FAILED");
    assert!(errors_of(&failed).contains("JMX"), "{failed}");
}

/// Once Cassandra is back: `/status` answers 200 and a flush completes, with no restart of the sidecar.
fn check_recovered(sidecar: &Sidecar) {
    let client = sidecar.client();
    eventually_within("/status answers 200", LONG, || {
        (client.get("/status").status == 200).then_some(())
    });
    let flush = client.submit(json!({"type": "flush", "keyspace": KEYSPACE}));
    wait_for_state(sidecar, flush["id"].as_str().unwrap(), "COMPLETED");
    assert_eq!(client.get("/health/ready").status, 200);
    assert_eq!(metric(sidecar, "daedalus_jmx_connected"), 1.0);
}

fn backup(bucket: &Path, tag: &str) -> Value {
    json!({
        "type": "backup",
        "storageLocation": format!("file://{}/cluster/dc/node", bucket.display()),
        "snapshotTag": tag,
        "entities": KEYSPACE,
        "bandwidth": {"value": 100, "unit": "KBPS"},
        "uploadClusterTopology": true,
    })
}

#[test]
fn the_sidecar_follows_cassandra_through_stops_crashes_and_restarts() {
    cassandra::stop(NODE);
    cassandra::solo_with(NODE, &[("JMX_RMI_PORT", "same")]);
    cassandra::cql(
        NODE,
        &format!(
            "CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
    );
    cassandra::cql(
        NODE,
        &format!("CREATE TABLE IF NOT EXISTS {KEYSPACE}.t (id int PRIMARY KEY, v text)"),
    );
    cassandra::load_rows(NODE, KEYSPACE, "t", 3000, 1000);

    let sidecar = Sidecar::start(&["--jmx-service", &cassandra::jmx_service(NODE)]);
    let client = sidecar.client();
    let poller = StatusPoller::start(&sidecar);
    check_recovered(&sidecar);
    let bucket = tempfile::tempdir().unwrap();

    // A clean stop under a running backup: the backup fails naming the cause, and its snapshot, which Cassandra
    // could not be asked to clear then, is cleared once Cassandra is back.
    let tag = support::this_runs("outage");
    let running = client.submit(backup(bucket.path(), &tag));
    let id = running["id"].as_str().unwrap().to_string();
    eventually("the backup uploads", || {
        let operation = client.operation(&id);
        (operation["state"] == "RUNNING" && operation["progress"].as_f64().unwrap() > 0.0)
            .then_some(())
    });
    cassandra::stop(NODE);
    check_outage(&sidecar);
    let ended = eventually_within("the backup ends", LONG, || {
        let operation = client.operation(&id);
        matches!(operation["state"].as_str(), Some("FAILED" | "COMPLETED")).then_some(operation)
    });
    assert_eq!(ended["state"], "FAILED", "{ended}");
    assert!(errors_of(&ended).contains("JMX"), "{ended}");
    assert!(
        !snapshots_on_disk(&tag).is_empty(),
        "Cassandra was down when the backup ended, so its snapshot is still there"
    );
    cassandra::solo_with(NODE, &[("JMX_RMI_PORT", "same")]);
    check_recovered(&sidecar);
    eventually_within("the interrupted backup's snapshot is cleared", LONG, || {
        snapshots_on_disk(&tag).is_empty().then_some(())
    });

    // A crash, then a start with the RMI server on a new port.
    cassandra::kill(NODE);
    check_outage(&sidecar);
    cassandra::solo(NODE);
    check_recovered(&sidecar);

    // A clean restart, the RMI server on yet another port; a backup after it works.
    cassandra::stop(NODE);
    check_outage(&sidecar);
    cassandra::solo(NODE);
    check_recovered(&sidecar);
    let after = client.submit(json!({
        "type": "backup",
        "storageLocation": format!("file://{}/cluster/dc/node", bucket.path().display()),
        "snapshotTag": "after",
        "entities": KEYSPACE,
    }));
    wait_for_state(&sidecar, after["id"].as_str().unwrap(), "COMPLETED");
    assert!(metric(&sidecar, "daedalus_jmx_reconnects_total") >= 3.0);

    let statuses = poller.finish();
    assert!(
        statuses.iter().all(|status| matches!(status, 200 | 503)),
        "/status answered only 200 or 503 throughout: {statuses:?}"
    );
    assert!(statuses.contains(&503) && statuses.last() == Some(&200));
    cassandra::stop(NODE);
}
