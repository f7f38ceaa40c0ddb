//! Backups that run themselves (issue #27), against the main cluster's node 1 and MinIO: a schedule with a
//! seconds-granularity cron backs up on its ticks and keeps only its `keepLast` newest backups, and stops when deleted;
//! a sidecar started again reports the newest backup in the bucket before it makes one; `verify` finds a whole backup
//! whole and names the object that is missing or corrupt, over the API and from the command line. Requests that are
//! not a schedule are refused naming the field, with no Cassandra at all.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::builder::SidecarBuilder;
use support::scratch::Scratch;
use support::stores::Store;
use support::{Sidecar, cassandra, eventually_within, run};

/// The keyspace every backup of this file takes, created once with a few rows.
fn keyspace(name: &str) {
    cassandra::cluster();
    cassandra::table_with_rows(name, "t", 20);
}

fn sidecar_on(store: &Store, extra: &[&str]) -> Sidecar {
    SidecarBuilder::new()
        .jmx_service(&cassandra::jmx_service(1))
        .store(store)
        .s3_credentials()
        .args(extra.iter().copied())
        .start()
}

/// The manifests of backups tagged `tag` in `bucket`, by key.
fn manifests(store: &Store, bucket: &str, tag: &str) -> BTreeSet<String> {
    store
        .objects(bucket)
        .into_keys()
        .filter(|key| key.contains(&format!("/manifests/{tag}-")))
        .collect()
}

/// The operations of `type_id` the sidecar lists, oldest first.
fn operations_of(sidecar: &Sidecar, type_id: &str) -> Vec<Value> {
    let listed = sidecar
        .client()
        .get(&format!("/operations?type={type_id}"))
        .json();
    let mut operations = listed.as_array().unwrap().clone();
    operations.reverse();
    operations
}

fn finished(operation: &Value) -> bool {
    !matches!(operation["state"].as_str(), Some("PENDING" | "RUNNING"))
}

fn metric(sidecar: &Sidecar, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = sidecar.client().get("/metrics").text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a number"),
        })
}

#[test]
fn a_schedule_backs_up_on_its_ticks_keeps_the_last_two_and_stops_when_deleted() {
    keyspace("sched_ks");
    let store = Store::minio_with_bucket("schedules");
    let sidecar = sidecar_on(&store, &[]);
    let client = sidecar.client();

    // Every ten seconds: a backup of a small keyspace takes a few, so runs do not overlap.
    let created = client.post_json(
        "/schedules",
        &json!({
            "cron": "*/10 * * * * *",
            "operation": {"type": "backup", "storageLocation": "s3://schedules", "entities": "sched_ks",
                          "snapshotTag": "ticks"},
            "retention": {"keepLast": 2}
        }),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let schedule = created.json();
    let id = schedule["id"].as_str().unwrap().to_string();
    assert!(
        created
            .header("location")
            .unwrap()
            .ends_with(&format!("/schedules/{id}")),
        "{:?}",
        created.header("location")
    );
    assert!(schedule["nextRun"].is_string(), "{schedule:#}");
    assert!(
        client
            .get("/schedules")
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str())
    );
    // The runner takes a new schedule up within a second.
    eventually_within("the next run is a metric", Duration::from_secs(10), || {
        metric(
            &sidecar,
            "daedalus_schedule_next_run_timestamp_seconds",
            &[("schedule", &id), ("type", "backup")],
        )
    });

    // Four backups completed, each followed by the retention's remove-backup.
    let backups = eventually_within(
        "four scheduled backups completed",
        Duration::from_secs(150),
        || {
            let done: Vec<Value> = operations_of(&sidecar, "backup")
                .into_iter()
                .filter(|o| o["state"] == "COMPLETED")
                .collect();
            (done.len() >= 4).then_some(done)
        },
    );
    for backup in &backups {
        assert_eq!(backup["entities"], "sched_ks", "{backup:#}");
    }
    eventually_within(
        "the retention after the fourth backup has run",
        Duration::from_secs(60),
        || {
            let removals = operations_of(&sidecar, "remove-backup");
            (removals.len() >= 4 && removals.iter().all(finished)).then_some(())
        },
    );
    for removal in operations_of(&sidecar, "remove-backup") {
        assert_eq!(removal["state"], "COMPLETED", "{removal:#}");
    }
    // The retention run shows in the schedule's lastRun (until the next backup's run takes its place) and in the
    // metrics.
    eventually_within(
        "a lastRun with its completed retention run",
        Duration::from_secs(60),
        || {
            let seen = client.get(&format!("/schedules/{id}")).json();
            let retention = &seen["lastRun"]["retention"];
            (retention["state"] == "COMPLETED" && retention["operationId"].is_string())
                .then_some(())
        },
    );
    eventually_within(
        "the retention's success is a metric",
        Duration::from_secs(10),
        || {
            metric(
                &sidecar,
                "daedalus_schedule_last_retention_success",
                &[("schedule", &id), ("type", "backup")],
            )
            .filter(|value| *value == 1.0)
        },
    );
    let seen = client.get(&format!("/schedules/{id}")).json();
    let last = &seen["lastRun"];
    assert!(last["operationId"].is_string(), "{seen:#}");
    assert!(last["time"].is_string(), "{seen:#}");
    assert!(
        matches!(
            last["state"].as_str(),
            Some("PENDING" | "RUNNING" | "COMPLETED")
        ),
        "{seen:#}"
    );
    assert_eq!(
        metric(
            &sidecar,
            "daedalus_schedule_last_run_success",
            &[("schedule", &id), ("type", "backup")]
        ),
        Some(1.0)
    );

    let deleted = client.delete(&format!("/schedules/{id}"));
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(client.get(&format!("/schedules/{id}")).status, 404);
    assert_eq!(client.delete(&format!("/schedules/{id}")).status, 404);
    // A run submitted just before the delete may still be on its way; after it, nothing new for two ticks.
    eventually_within(
        "every scheduled operation ended",
        Duration::from_secs(60),
        || {
            operations_of(&sidecar, "backup")
                .iter()
                .chain(&operations_of(&sidecar, "remove-backup"))
                .all(finished)
                .then_some(())
        },
    );
    // The bucket, read once nothing runs (the schedule ticked on while it lived). No retention run removes either of
    // the two newest backups, and the last run removed every backup older than the two newest it saw. A backup that
    // ended after the delete had no retention run of its own, so the one before it may still be there, a third.
    let completed: Vec<String> = operations_of(&sidecar, "backup")
        .iter()
        .filter(|o| o["state"] == "COMPLETED")
        .map(|o| o["response"]["snapshotTag"].as_str().unwrap().to_string())
        .collect();
    let removals = operations_of(&sidecar, "remove-backup").len();
    let newest = |count: usize| -> BTreeSet<String> {
        completed.iter().rev().take(count).cloned().collect()
    };
    let kept: BTreeSet<String> = manifests(&store, "schedules", "ticks")
        .iter()
        .map(|key| {
            let name = key.rsplit('/').next().unwrap();
            name.trim_end_matches(".json").to_string()
        })
        .collect();
    let why = format!(
        "keepLast 2 after {} backups and {removals} retention runs: {kept:?} of {completed:?}",
        completed.len()
    );
    if removals >= completed.len() {
        assert_eq!(kept, newest(2), "{why}");
    } else {
        assert!(
            kept.is_superset(&newest(2)) && kept.is_subset(&newest(3)),
            "{why}"
        );
    }

    let before = operations_of(&sidecar, "backup").len();
    std::thread::sleep(Duration::from_secs(22));
    assert_eq!(
        operations_of(&sidecar, "backup").len(),
        before,
        "a deleted schedule runs no more"
    );
    assert!(
        metric(
            &sidecar,
            "daedalus_schedule_next_run_timestamp_seconds",
            &[("schedule", &id)]
        )
        .is_none(),
        "a deleted schedule has no next run"
    );
}

#[test]
fn after_a_restart_the_freshness_metric_is_the_newest_backup_in_the_bucket() {
    keyspace("fresh_ks");
    let store = Store::minio_with_bucket("freshness");
    let dir = Scratch::empty("schedules-file");
    let file = dir.join("schedules.yaml");
    // Once a year: the schedule never runs during the test, so every backup here is one the test made.
    std::fs::write(
        &file,
        "- id: 6f1c1f9e-8a47-4d4e-9a43-0f3c2f0d7b11\n  cron: \"0 0 3 1 1 *\"\n  operation:\n    type: backup\n    \
         storageLocation: s3://freshness\n    entities: fresh_ks\n    snapshotTag: nightly\n  retention:\n    \
         keepLast: 7\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let schedule = "6f1c1f9e-8a47-4d4e-9a43-0f3c2f0d7b11";
    let first = sidecar_on(&store, &["--schedules-file", file]);
    let listed = first.client().get(&format!("/schedules/{schedule}"));
    assert_eq!(listed.status, 200, "{}", listed.text());
    let text = first.client().get("/metrics").text();
    assert!(
        text.contains("# TYPE daedalus_backup_last_success_timestamp_seconds gauge"),
        "the family is there before any backup: {text}"
    );
    let done = run(
        &first,
        json!({"type": "backup", "storageLocation": "s3://freshness", "entities": "fresh_ks", "snapshotTag": "nightly"}),
        "COMPLETED",
    );
    let name = done["response"]["snapshotTag"].as_str().unwrap();
    let millis: f64 = name.rsplit('-').next().unwrap().parse().unwrap();
    drop(first);

    let second = sidecar_on(&store, &["--schedules-file", file]);
    let fresh = eventually_within(
        "the restarted sidecar read the bucket",
        Duration::from_secs(30),
        || {
            metric(
                &second,
                "daedalus_backup_last_success_timestamp_seconds",
                &[("schedule", schedule)],
            )
        },
    );
    assert!(
        (fresh - millis / 1000.0).abs() < 0.001,
        "{fresh} vs the manifest's {millis} ms"
    );
    assert!(operations_of(&second, "backup").is_empty(), "no new backup");
    assert!(
        metric(
            &second,
            "daedalus_schedule_next_run_timestamp_seconds",
            &[("schedule", schedule)]
        )
        .unwrap()
            > millis / 1000.0
    );
}

#[test]
fn verify_finds_a_whole_backup_whole_and_names_a_missing_or_corrupt_object() {
    keyspace("verify_ks");
    let store = Store::minio_with_bucket("verify");
    let sidecar = sidecar_on(&store, &[]);
    let done = run(
        &sidecar,
        json!({"type": "backup", "storageLocation": "s3://verify", "entities": "verify_ks", "snapshotTag": "whole"}),
        "COMPLETED",
    );
    let location = done["response"]["storageLocation"]
        .as_str()
        .unwrap()
        .to_string();
    let verify = |deep: bool| json!({"type": "verify", "storageLocation": location, "snapshotTag": "whole", "deep": deep});
    for deep in [false, true] {
        let whole = run(&sidecar, verify(deep), "COMPLETED");
        let response = &whole["response"];
        assert!(response["objects"].as_u64().unwrap() > 0, "{whole:#}");
        assert!(response["bytes"].as_u64().unwrap() > 0, "{whole:#}");
        assert_eq!(response["deep"], deep);
        assert_eq!(response["problems"], json!([]), "{whole:#}");
    }

    // The manifest names objects by their key under the node's prefix, as problems do.
    let prefix = format!("{}/", location.strip_prefix("s3://verify/").unwrap());
    let relative = |key: &str| key.strip_prefix(&prefix).unwrap().to_string();
    let objects = store.objects("verify");
    let mut data = objects
        .iter()
        .filter(|(key, size)| key.contains("/data/") && key.ends_with("-Data.db") && **size > 0)
        .map(|(key, _)| key.clone());
    let flipped = data.next().expect("a Data.db object");
    let mut content = store.get("verify", &flipped);
    content[0] ^= 0xff;
    store.put("verify", &flipped, &content);
    // The size is the same: only a deep verify sees it.
    run(&sidecar, verify(false), "COMPLETED");
    let corrupt = run(&sidecar, verify(true), "FAILED");
    let error = corrupt["errors"].to_string();
    assert!(
        error.contains(&relative(&flipped)),
        "names {flipped}: {corrupt:#}"
    );
    assert!(
        corrupt["response"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == relative(&flipped).as_str() && p["problem"] == "hash"),
        "{corrupt:#}"
    );

    let missing = objects
        .keys()
        .find(|key| key.contains("/data/") && **key != flipped)
        .unwrap()
        .clone();
    store.delete("verify", &missing);
    let failed = run(&sidecar, verify(false), "FAILED");
    assert!(
        failed["errors"].to_string().contains(&relative(&missing)),
        "names {missing}: {failed:#}"
    );
    assert!(
        failed["response"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == relative(&missing).as_str() && p["problem"] == "missing"),
        "{failed:#}"
    );
    // It reads only: nothing was put back.
    assert!(!store.objects("verify").contains_key(&missing));
}

#[test]
fn the_command_line_verifies_and_exits_one_on_a_problem() {
    keyspace("verify_cli");
    let root = Scratch::empty("verify-cli");
    std::fs::create_dir_all(root.join("bucket")).unwrap();
    let location = format!("file://{}/bucket/c/dc1/n1", root.display());
    let daedalus = |args: &[&str]| {
        support::daedalus_command()
            .args(args)
            .args(["--jmx-service", &cassandra::jmx_service(1)])
            .args(["--cache-dir", &root.join("cache").display().to_string()])
            .output()
            .unwrap()
    };
    let backup = daedalus(&[
        "backup",
        "--sl",
        &location,
        "--entities",
        "verify_cli",
        "-s",
        "cli",
    ]);
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let whole = daedalus(&["verify", "--sl", &location, "-s", "cli"]);
    assert!(
        whole.status.success(),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );

    let data = walk(&root.join("bucket/c/dc1/n1/data"));
    let victim = data
        .iter()
        .find(|path| path.to_string_lossy().ends_with("-Data.db"))
        .expect("a Data.db file");
    let mut content = std::fs::read(victim).unwrap();
    content[0] ^= 0xff;
    std::fs::write(victim, &content).unwrap();
    let corrupt = daedalus(&["verify", "--sl", &location, "-s", "cli"]);
    let stderr = String::from_utf8_lossy(&corrupt.stderr).to_string();
    let stdout = String::from_utf8_lossy(&corrupt.stdout).to_string();
    assert_eq!(corrupt.status.code(), Some(1), "{stdout}{stderr}");
    let name = victim.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        stdout.contains(&name) || stderr.contains(&name),
        "names {name}: {stdout}{stderr}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Not a schedule: each refused with a 400 naming the field, and nothing is kept.
#[test]
fn requests_that_are_not_a_schedule_are_refused_naming_the_field() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let backup =
        json!({"type": "backup", "storageLocation": "s3://bucket/c/dc/n", "snapshotTag": "t"});
    for (body, field) in [
        (json!({"operation": backup}), "cron"),
        (json!({"cron": "every day", "operation": backup}), "cron"),
        (json!({"cron": "0 61 * * * *", "operation": backup}), "cron"),
        (json!({"cron": "0 0 3 * * *"}), "operation"),
        (
            json!({"cron": "0 0 3 * * *", "operation": {"type": "cleanup", "keyspace": "k"}}),
            "operation.type",
        ),
        (
            json!({"cron": "0 0 3 * * *", "operation": {"type": "nonsense"}}),
            "operation.type",
        ),
        (
            json!({"cron": "0 0 3 * * *", "operation": {"type": "backup"}}),
            "operation.storageLocation",
        ),
        (
            json!({"cron": "0 0 3 * * *", "timezone": "Mars/Olympus", "operation": backup}),
            "timezone",
        ),
        (
            json!({"cron": "0 0 3 * * *", "operation": backup, "retention": {"keepLast": 0}}),
            "retention.keepLast",
        ),
        (
            json!({"cron": "0 0 3 * * *", "operation": backup, "retention": {"maxAge": "soon"}}),
            "retention.maxAge",
        ),
        (
            json!({"cron": "0 0 3 * * *", "operation": {"type": "verify", "storageLocation": "s3://b/c/d/n",
                   "snapshotTag": "t"}, "retention": {"keepLast": 3}}),
            "retention",
        ),
        (
            json!({"cron": "0 0 3 * * *", "operation": backup, "jitter": "a bit"}),
            "jitter",
        ),
        (
            json!({"cron": "*/10 * * * * *", "operation": backup, "jitter": "1h"}),
            "jitter",
        ),
    ] {
        let refused = client.post_json("/schedules", &body);
        assert_eq!(refused.status, 400, "{body}: {}", refused.text());
        let text = refused.text();
        assert!(text.contains(field), "{body} names {field}: {text}");
    }
    assert_eq!(client.get("/schedules").json(), json!([]));
    assert_eq!(
        client
            .get("/schedules/6f1c1f9e-8a47-4d4e-9a43-0f3c2f0d7b11")
            .status,
        404
    );
}
