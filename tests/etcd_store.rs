//! `--store etcd` against a real etcd cluster of three members on loopback (Debian's etcd, from `scripts/etcd`):
//! operations shared by the sidecars of one prefix, surviving a sidecar's restart, expiring through leases, an etcd
//! outage (one member, then all), `etcdctl snapshot`, `daedalus store export|import`, and a sidecar's copy bounded by
//! `--max-stored-operations` while etcd keeps every operation.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing
#![cfg(feature = "etcd")]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use support::etcd::EtcdCluster;
use support::{Sidecar, eventually, wait_for_state};

/// A sidecar keeping its operations in `etcd` under `prefix`, named `id`.
fn sidecar(etcd: &EtcdCluster, prefix: &str, id: &str, extra: &[&str]) -> Sidecar {
    let endpoints = etcd.endpoints_arg();
    let mut args = vec![
        "--enable-test-operations",
        "--store",
        "etcd",
        "--etcd-endpoints",
        &endpoints,
        "--etcd-prefix",
        prefix,
        "--sidecar-id",
        id,
    ];
    args.extend_from_slice(extra);
    Sidecar::start(&args)
}

/// Submits an operation (asserting the 201); its id.
fn submit_id(sidecar: &Sidecar, body: Value) -> String {
    sidecar.client().submit(body)["id"]
        .as_str()
        .expect("an id")
        .to_string()
}

fn ids(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|op| op["id"].as_str().expect("an id").to_string())
        .collect()
}

fn listed(sidecar: &Sidecar) -> BTreeSet<String> {
    ids(&sidecar.client().get("/operations").json())
}

/// The operation ids etcd holds under `prefix`.
fn ids_in_etcd(etcd: &EtcdCluster, prefix: &str) -> BTreeSet<String> {
    let keys = etcd.etcdctl(&[
        "get",
        "--prefix",
        "--keys-only",
        &format!("{prefix}/operations/"),
    ]);
    keys.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|key| key.rsplit('/').next().unwrap().to_string())
        .collect()
}

#[test]
fn sidecars_of_one_prefix_see_each_others_operations_and_other_prefixes_see_none() {
    let etcd = EtcdCluster::start(3);
    let a = sidecar(&etcd, "/t/c1", "sidecar-a", &[]);
    let b = sidecar(
        &etcd,
        "/t/c1",
        "sidecar-b",
        &["--max-unfinished-operations", "1"],
    );
    let other = sidecar(&etcd, "/t/c2", "sidecar-c", &[]);

    let id = submit_id(&a, json!({"type": "sleep", "duration": "1h"}));
    let short = submit_id(&a, json!({"type": "sleep", "duration": "0s"}));
    wait_for_state(&a, &short, "COMPLETED");

    // B answers for A's operations: in its list, by id, with the sidecar that runs them.
    eventually("B lists A's operations", || {
        (listed(&b) == BTreeSet::from([id.clone(), short.clone()])).then_some(())
    });
    let seen_by_b = wait_for_state(&b, &id, "RUNNING");
    assert_eq!(seen_by_b["sidecar"], "sidecar-a");
    assert_eq!(wait_for_state(&b, &short, "COMPLETED")["progress"], 1.0);
    assert!(
        listed(&other).is_empty(),
        "another prefix is another cluster"
    );
    assert_eq!(other.client().get(&format!("/operations/{id}")).status, 404);

    // Only the sidecar running it can stop it; B says where it runs.
    let refused = b.client().delete(&format!("/operations/{id}"));
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert!(refused.text().contains("sidecar-a"), "{}", refused.text());
    assert_eq!(a.client().delete(&format!("/operations/{id}")).status, 202);
    wait_for_state(&b, &id, "CANCELLED");

    // Limits are per sidecar: A's unfinished operation does not count against B's limit of one.
    a.client()
        .submit(json!({"type": "sleep", "duration": "1h"}));
    let response = b
        .client()
        .post_json("/operations", &json!({"type": "sleep", "duration": "0s"}));
    assert_eq!(response.status, 201, "{}", response.text());
}

/// An unlabelled sample of the sidecar's `/metrics`.
fn metric(sidecar: &Sidecar, name: &str) -> f64 {
    let text = sidecar.client().get("/metrics").text();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("/metrics has no {name}:\n{text}"))
}

#[test]
fn a_sidecars_copy_is_bounded_while_etcd_and_other_sidecars_keep_every_operation() {
    let etcd = EtcdCluster::start(1);
    let bounded = [
        "--max-stored-operations",
        "2",
        "--max-unfinished-operations",
        "1",
    ];
    let a = sidecar(&etcd, "/t/bound", "sidecar-a", &bounded);
    let b = sidecar(&etcd, "/t/bound", "sidecar-b", &[]);
    // B runs an operation for longer than the test: no limit of A's may make A forget it.
    let running = submit_id(&b, json!({"type": "sleep", "duration": "1h"}));
    wait_for_state(&a, &running, "RUNNING");
    let quick: Vec<String> = (0..4)
        .map(|_| {
            let id = submit_id(&a, json!({"type": "sleep", "duration": "0s"}));
            wait_for_state(&a, &id, "COMPLETED");
            id
        })
        .collect();
    let every: BTreeSet<String> = quick.iter().chain([&running]).cloned().collect();

    // A keeps B's running operation and its own newest finished one; the older ones are gone from A only.
    let kept = BTreeSet::from([running.clone(), quick[3].clone()]);
    eventually("A holds two operations", || {
        (listed(&a) == kept).then_some(())
    });
    for id in &quick[..3] {
        assert_eq!(
            a.client().get(&format!("/operations/{id}")).status,
            404,
            "{id}"
        );
    }
    assert_eq!(metric(&a, "daedalus_operations_evicted_total"), 3.0);
    assert_eq!(metric(&a, "daedalus_operations_stored"), 2.0);
    assert_eq!(ids_in_etcd(&etcd, "/t/bound"), every);
    eventually("B lists every operation", || {
        (listed(&b) == every).then_some(())
    });
    assert_eq!(
        wait_for_state(&b, &quick[0], "COMPLETED")["sidecar"],
        "sidecar-a"
    );

    // A sidecar starting with the limit loads only what fits, whatever order etcd lists the keys in.
    drop(a);
    let again = sidecar(&etcd, "/t/bound", "sidecar-a", &bounded);
    assert_eq!(listed(&again), kept);
    assert_eq!(metric(&again, "daedalus_operations_evicted_total"), 3.0);
}

#[test]
fn a_sidecar_killed_mid_operation_fails_it_when_it_comes_back_and_history_expires_by_lease() {
    let etcd = EtcdCluster::start(3);
    let expiration = ["--operations-expiration", "8s"];
    let mut a = sidecar(&etcd, "/t/restart", "sidecar-a", &expiration);
    let done = submit_id(&a, json!({"type": "sleep", "duration": "0s"}));
    wait_for_state(&a, &done, "COMPLETED");
    let running = submit_id(&a, json!({"type": "sleep", "duration": "1h"}));
    wait_for_state(&a, &running, "RUNNING");

    a.send_signal(Signal::SIGKILL);
    a.wait_for_exit().expect("the sidecar is dead");
    let a = sidecar(&etcd, "/t/restart", "sidecar-a", &expiration);

    let failed = a.client().operation(&running);
    assert_eq!(failed["state"], "FAILED", "{failed}");
    let message = failed["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("restarted while this operation was RUNNING"),
        "{message}"
    );
    assert_eq!(failed["errors"][0]["source"], "sidecar-a");
    assert_eq!(
        a.client().operation(&done)["state"],
        "COMPLETED",
        "history stays listed"
    );

    // etcd's leases end them an expiration period (plus at most a tenth) after they finished.
    eventually("both operations expired", || {
        let gone = [&done, &running]
            .iter()
            .all(|id| a.client().get(&format!("/operations/{id}")).status == 404);
        gone.then_some(())
    });
    assert!(ids_in_etcd(&etcd, "/t/restart").is_empty());
}

#[test]
fn an_etcd_outage_refuses_new_operations_serves_reads_from_the_cache_and_loses_nothing() {
    let mut etcd = EtcdCluster::start(3);
    let a = sidecar(&etcd, "/t/outage", "sidecar-a", &[]);
    let client = a.client();
    let submit = |accepted: &mut Vec<String>| {
        let response = client.post_json("/operations", &json!({"type": "sleep", "duration": "0s"}));
        if response.status == 201 {
            accepted.push(response.json()["id"].as_str().unwrap().to_string());
        }
        response
    };
    let mut accepted = Vec::new();
    for _ in 0..5 {
        assert_eq!(submit(&mut accepted).status, 201);
    }

    // One member down: clients notice nothing.
    etcd.kill(etcd.leader());
    for _ in 0..10 {
        let response = submit(&mut accepted);
        assert_eq!(response.status, 201, "{}", response.text());
    }
    for id in &accepted {
        assert_eq!(client.get(&format!("/operations/{id}")).status, 200);
    }

    // Runs across the outage, and finishes during it.
    let across = submit_id(&a, json!({"type": "sleep", "duration": "4s"}));
    accepted.push(across.clone());
    wait_for_state(&a, &across, "RUNNING");

    // Every member down: new operations are refused with a clear 503, reads answer from the cache, marked stale.
    for member in 0..etcd.members() {
        if etcd.is_running(member) {
            etcd.kill(member);
        }
    }
    let refused = submit(&mut accepted);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("operation store cannot be reached"),
        "{}",
        refused.text()
    );
    let list = client.get("/operations");
    assert_eq!(list.status, 200);
    assert_eq!(list.header("X-Daedalus-Stale"), Some("true"));
    assert!(ids(&list.json()).is_superset(&accepted.iter().cloned().collect()));
    let one = client.get(&format!("/operations/{}", accepted[0]));
    assert_eq!(one.status, 200);
    assert_eq!(one.header("X-Daedalus-Stale"), Some("true"));
    // The operation finishes meanwhile; etcd will learn of it once it is back.
    std::thread::sleep(Duration::from_secs(5));

    etcd.restart_all();
    eventually("writes resume", || {
        (submit(&mut accepted).status == 201).then_some(())
    });
    eventually("the cache is in step again", || {
        client
            .get("/operations")
            .header("X-Daedalus-Stale")
            .is_none()
            .then_some(())
    });
    let stored = ids_in_etcd(&etcd, "/t/outage");
    for id in &accepted {
        assert!(
            stored.contains(id),
            "operation {id} was accepted but etcd lost it"
        );
    }
    let finished = eventually("the state reached during the outage is written", || {
        let value = etcd.etcdctl(&[
            "get",
            "--print-value-only",
            &format!("/t/outage/operations/{across}"),
        ]);
        let document: Value = serde_json::from_str(value.trim()).ok()?;
        (document["operation"]["state"] == "COMPLETED").then_some(document)
    });
    assert_eq!(finished["sidecar"], "sidecar-a");
}

#[test]
fn an_etcd_snapshot_restored_into_a_new_cluster_carries_the_operations() {
    let etcd = EtcdCluster::start(3);
    let a = sidecar(&etcd, "/t/snap", "sidecar-a", &[]);
    let submitted: BTreeSet<String> = (0..3)
        .map(|_| {
            let id = submit_id(&a, json!({"type": "sleep", "duration": "0s"}));
            wait_for_state(&a, &id, "COMPLETED");
            id
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("etcd.db");
    etcd.snapshot_save(&snapshot);
    drop(a);
    drop(etcd);

    let restored = EtcdCluster::start_from_snapshot(&snapshot);
    let b = sidecar(&restored, "/t/snap", "sidecar-b", &[]);
    assert_eq!(listed(&b), submitted);
    for id in &submitted {
        assert_eq!(b.client().operation(id)["state"], "COMPLETED");
    }
}

#[test]
fn store_export_and_import_move_operations_between_prefixes() {
    let etcd = EtcdCluster::start(1);
    let a = sidecar(&etcd, "/t/from", "sidecar-a", &[]);
    let id = submit_id(&a, json!({"type": "sleep", "duration": "0s"}));
    wait_for_state(&a, &id, "COMPLETED");

    let daedalus = |args: &[&str], input: Option<&[u8]>| {
        use std::io::Write;
        let mut child = support::daedalus_command()
            .arg("store")
            .args(args)
            .args(["--etcd-endpoints", &etcd.endpoints_arg()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(bytes) = input {
            child.stdin.take().unwrap().write_all(bytes).unwrap();
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    let exported = daedalus(&["export", "--etcd-prefix", "/t/from"], None).stdout;
    assert_eq!(exported.iter().filter(|b| **b == b'\n').count(), 1);
    let imported = daedalus(&["import", "--etcd-prefix", "/t/to"], Some(&exported));
    assert!(String::from_utf8_lossy(&imported.stderr).contains("imported 1 operations"));
    // Again: nothing is written twice.
    let again = daedalus(&["import", "--etcd-prefix", "/t/to"], Some(&exported));
    assert!(String::from_utf8_lossy(&again.stderr).contains("1 were there already"));

    let b = sidecar(&etcd, "/t/to", "sidecar-b", &[]);
    let copy = b.client().operation(&id);
    assert_eq!(copy["state"], "COMPLETED");
    assert_eq!(copy["sidecar"], "sidecar-a");

    let broken = support::daedalus_command()
        .args([
            "store",
            "import",
            "--etcd-prefix",
            "/t/to",
            "--etcd-endpoints",
            &etcd.endpoints_arg(),
        ])
        .arg("/dev/null/nothing")
        .output()
        .unwrap();
    assert!(!broken.status.success());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("cannot open /dev/null/nothing"));
}

/// A schedule kept in etcd outlives its sidecar; ticks missed while the sidecar was down are run once when it is
/// back, not once per missed tick. The scheduled operation is a `verify` of a backup that is not there: it ends
/// FAILED at once, and needs no Cassandra.
#[test]
fn ticks_missed_while_the_sidecar_was_down_run_once_when_it_is_back() {
    const TICK: i64 = 20;
    let etcd = EtcdCluster::start(1);
    let bucket = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bucket.path().join("bucket/c/dc/n")).unwrap();
    let location = format!("file://{}/bucket/c/dc/n", bucket.path().display());
    let verifies = |sidecar: &Sidecar| -> Vec<chrono::DateTime<chrono::FixedOffset>> {
        let listed = sidecar.client().get("/operations?type=verify").json();
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                chrono::DateTime::parse_from_rfc3339(o["creationTime"].as_str().unwrap()).unwrap()
            })
            .collect()
    };
    // Waits until the second of the minute is `at` modulo the tick, so a start lands well between two ticks.
    let between_ticks = |at: i64| {
        eventually("a moment between two ticks", || {
            (chrono::Utc::now().timestamp().rem_euclid(TICK) == at).then_some(())
        });
    };

    let first = sidecar(&etcd, "/t/missed", "solo", &[]);
    let created = first.client().post_json(
        "/schedules",
        &json!({"cron": format!("*/{TICK} * * * * *"),
                "operation": {"type": "verify", "storageLocation": location, "snapshotTag": "absent"}}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_string();
    let ran = support::eventually_within("the first tick ran", Duration::from_secs(40), || {
        let schedule = first.client().get(&format!("/schedules/{id}")).json();
        (schedule["lastRun"]["state"] == "FAILED").then_some(schedule)
    });
    assert!(ran["lastRun"]["operationId"].is_string(), "{ran:#}");
    drop(first);

    // Two ticks and more pass with no sidecar.
    std::thread::sleep(Duration::from_secs(2 * TICK as u64 + 5));
    between_ticks(6);
    let started = chrono::Utc::now();
    let second = sidecar(&etcd, "/t/missed", "solo", &[]);
    between_ticks(16);
    let since_start: Vec<_> = verifies(&second)
        .into_iter()
        .filter(|created| *created >= started)
        .collect();
    assert_eq!(
        since_start.len(),
        1,
        "the missed ticks ran once, before the next tick: {since_start:?}"
    );
    let schedule = second.client().get(&format!("/schedules/{id}")).json();
    let last = chrono::DateTime::parse_from_rfc3339(schedule["lastRun"]["time"].as_str().unwrap())
        .unwrap();
    assert!(last >= started, "{schedule:#}");
}
