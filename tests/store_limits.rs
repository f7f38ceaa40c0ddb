//! What bounds the operation store, as a client sees it: the admission limit (429), the limit on stored operations
//! (the oldest finished ones dropped, counted in `/metrics`), paged listings, and progress 1.0 on every finished
//! operation. Uses the `sleep` test operation, so no Cassandra is needed.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::io::Read;
use std::process::{Child, Stdio};

use serde_json::{Value, json};
use support::{Sidecar, id_of, wait_for_state};

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array().expect("a list").iter().map(id_of).collect()
}

#[test]
fn submissions_past_the_unfinished_limit_get_429_until_one_finishes() {
    let sidecar = Sidecar::start(&[
        "--enable-test-operations",
        "--max-concurrent-operations",
        "1",
        "--max-unfinished-operations",
        "2",
    ]);
    let client = sidecar.client();
    let running = client.submit(json!({"type": "sleep", "duration": "1h"}));
    client.submit(json!({"type": "sleep", "duration": "1h"}));

    let refused = client.post_json("/operations", &json!({"type": "sleep", "duration": "1s"}));
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("5"));
    let body = refused.json();
    assert_eq!(body["code"], "too_many_operations");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("2 unfinished") && message.contains("--max-unfinished-operations"),
        "{message}"
    );
    // Nothing was stored.
    let listed = client.get("/operations").json();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    assert_eq!(
        client
            .delete(&format!("/operations/{}", id_of(&running)))
            .status,
        202
    );
    wait_for_state(&sidecar, &id_of(&running), "CANCELLED");
    client.submit(json!({"type": "sleep", "duration": "1s"}));
}

#[test]
fn the_unfinished_limit_comes_from_the_environment_too() {
    let sidecar = Sidecar::start_with_env(
        &["--enable-test-operations"],
        &[("DAEDALUS_MAX_UNFINISHED_OPERATIONS", "1")],
    );
    let client = sidecar.client();
    client.submit(json!({"type": "sleep", "duration": "1h"}));
    let refused = client.post_json("/operations", &json!({"type": "sleep", "duration": "1h"}));
    assert_eq!(refused.status, 429, "{}", refused.text());
}

#[test]
fn failed_and_cancelled_operations_end_with_progress_one() {
    let sidecar = Sidecar::start(&["--enable-test-operations"]);
    let client = sidecar.client();

    // No Cassandra listens at the sidecar's JMX address: the flush fails.
    let flush = client.submit(json!({"type": "flush", "keyspace": "ks"}));
    let failed = wait_for_state(&sidecar, &id_of(&flush), "FAILED");
    assert_eq!(failed["progress"], 1.0, "{failed}");

    let sleep = client.submit(json!({"type": "sleep", "duration": "1h"}));
    wait_for_state(&sidecar, &id_of(&sleep), "RUNNING");
    client.delete(&format!("/operations/{}", id_of(&sleep)));
    let cancelled = wait_for_state(&sidecar, &id_of(&sleep), "CANCELLED");
    assert_eq!(cancelled["progress"], 1.0, "{cancelled}");

    // The list shows the same.
    let listed = client.get("/operations").json();
    for operation in listed.as_array().unwrap() {
        assert_eq!(operation["progress"], 1.0, "{operation}");
    }
}

/// Follows `X-Next-Cursor` from `first` to the last page; returns every page's ids.
fn walk(client: &support::SpecClient, first: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = first.to_string();
    loop {
        let response = client.get(&next);
        assert_eq!(response.status, 200, "{next}: {}", response.text());
        pages.push(ids_of(&response.json()));
        match response.header("x-next-cursor") {
            Some(cursor) => {
                let separator = if first.contains('?') { '&' } else { '?' };
                next = format!("{first}{separator}cursor={cursor}");
            }
            None => return pages,
        }
    }
}

#[test]
fn lists_page_with_limit_and_cursor_and_stay_whole_without_them() {
    let sidecar = Sidecar::start(&[
        "--enable-test-operations",
        "--max-concurrent-operations",
        "1",
    ]);
    let client = sidecar.client();
    let submitted: Vec<String> = (0..5)
        .map(|_| id_of(&client.submit(json!({"type": "sleep", "duration": "1h"}))))
        .collect();
    wait_for_state(&sidecar, &submitted[0], "RUNNING");
    let newest_first: Vec<String> = submitted.iter().rev().cloned().collect();

    let whole = client.get("/operations");
    assert_eq!(whole.header("x-next-cursor"), None);
    assert_eq!(ids_of(&whole.json()), newest_first);

    let pages = walk(&client, "/operations?limit=2");
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), newest_first);

    // Filters and paging together: the four pending ones, three then one.
    let pages = walk(&client, "/operations?state=PENDING&type=sleep&limit=3");
    assert_eq!(pages.concat(), newest_first[..4]);
    assert_eq!(pages.len(), 2);

    // A limit larger than the list: one page, no cursor.
    assert_eq!(
        walk(&client, "/operations?limit=100"),
        std::slice::from_ref(&newest_first)
    );
}

#[test]
fn a_bad_limit_or_cursor_is_a_400_naming_the_parameter() {
    let sidecar = Sidecar::start(&["--enable-test-operations"]);
    let client = sidecar.client();
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("cursor=abc", "cursor"),
        ("limit=2&cursor=", "cursor"),
    ] {
        let response = client.get(&format!("/operations?{query}"));
        assert_eq!(response.status, 400, "{query}: {}", response.text());
        let body = response.json();
        assert_eq!(body["code"], "invalid_request", "{query}");
        assert_eq!(body["details"][0]["field"], field, "{query}: {body}");
    }
}

#[test]
fn a_long_list_streams_as_one_valid_json_array() {
    let sidecar = Sidecar::start(&["--enable-test-operations"]);
    let client = sidecar.client();
    // More than one chunk of the streamed rendering (256 operations).
    let submitted: Vec<String> = (0..600)
        .map(|_| id_of(&client.submit(json!({"type": "sleep", "duration": "0s"}))))
        .collect();
    let whole = client.get("/operations");
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-type"), Some("application/json"));
    let listed = ids_of(&whole.json());
    let newest_first: Vec<String> = submitted.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    assert_eq!(
        walk(&client, "/operations?limit=250").concat(),
        newest_first
    );
}

/// Submits a quick operation and waits until it has completed, so operations finish in the order they are submitted.
fn complete_one(sidecar: &Sidecar) -> String {
    let id = id_of(
        &sidecar
            .client()
            .submit(json!({"type": "sleep", "duration": "0s"})),
    );
    wait_for_state(sidecar, &id, "COMPLETED");
    id
}

/// The value of an unlabelled sample of `/metrics`.
fn metric(sidecar: &Sidecar, name: &str) -> f64 {
    let response = sidecar.client().get("/metrics");
    assert_eq!(response.status, 200, "{}", response.text());
    let scrape =
        prometheus_parse::Scrape::parse(response.text().lines().map(|line| Ok(line.to_string())))
            .expect("the Prometheus text format");
    let sample = scrape
        .samples
        .iter()
        .find(|sample| sample.metric == name)
        .unwrap_or_else(|| panic!("/metrics has no {name}:\n{}", response.text()));
    match sample.value {
        // The parser reads OpenMetrics counters (`_total` samples of a `counter` family) as untyped.
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name} is not a single value: {other:?}"),
    }
}

#[test]
fn past_the_store_limit_the_oldest_finished_operations_are_dropped_and_counted() {
    let sidecar = Sidecar::start(&[
        "--enable-test-operations",
        "--max-stored-operations",
        "5",
        "--max-unfinished-operations",
        "2",
    ]);
    let client = sidecar.client();
    let submitted: Vec<String> = (0..12).map(|_| complete_one(&sidecar)).collect();

    let newest_first: Vec<String> = submitted.iter().rev().take(5).cloned().collect();
    assert_eq!(ids_of(&client.get("/operations").json()), newest_first);
    assert_eq!(
        walk(&client, "/operations?state=COMPLETED&limit=2").concat(),
        newest_first
    );
    for id in &submitted[..7] {
        let gone = client.get(&format!("/operations/{id}"));
        assert_eq!(gone.status, 404, "{id}: {}", gone.text());
        let message = gone.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains("--max-stored-operations"), "{message}");
    }
    for id in &submitted[7..] {
        assert_eq!(client.get(&format!("/operations/{id}")).status, 200, "{id}");
    }
    assert_eq!(metric(&sidecar, "daedalus_operations_evicted_total"), 7.0);
    assert_eq!(metric(&sidecar, "daedalus_operations_stored"), 5.0);
}

#[test]
fn a_running_operation_outlasts_any_number_of_finished_ones() {
    let sidecar = Sidecar::start_with_env(
        &[
            "--enable-test-operations",
            "--max-unfinished-operations",
            "2",
        ],
        &[("DAEDALUS_MAX_STORED_OPERATIONS", "2")],
    );
    let client = sidecar.client();
    let running = id_of(&client.submit(json!({"type": "sleep", "duration": "1h"})));
    wait_for_state(&sidecar, &running, "RUNNING");
    let quick: Vec<String> = (0..4).map(|_| complete_one(&sidecar)).collect();

    assert_eq!(
        ids_of(&client.get("/operations").json()),
        [quick[3].clone(), running.clone()]
    );
    assert_eq!(client.operation(&running)["state"], "RUNNING");
    assert_eq!(metric(&sidecar, "daedalus_operations_evicted_total"), 3.0);
}

#[test]
fn a_store_limit_below_the_unfinished_limit_stops_the_start() {
    for (args, env) in [
        (
            &[
                "--max-stored-operations",
                "10",
                "--max-unfinished-operations",
                "20",
            ][..],
            None,
        ),
        // The default unfinished limit is 1000.
        (&[][..], Some(("DAEDALUS_MAX_STORED_OPERATIONS", "999"))),
    ] {
        let mut command = support::daedalus_command();
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("DAEDALUS_MAX_UNFINISHED_OPERATIONS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let mut child = KilledOnDrop(command.spawn().expect("the daedalus binary runs"));
        let exited = support::eventually("the sidecar refuses to start", || {
            child.0.try_wait().expect("process status")
        });
        assert_eq!(exited.code(), Some(2), "{args:?} {env:?}");
        let mut stderr = String::new();
        child
            .0
            .stderr
            .take()
            .expect("stderr is piped")
            .read_to_string(&mut stderr)
            .expect("its stderr");
        assert!(
            stderr.contains("--max-stored-operations")
                && stderr.contains("--max-unfinished-operations"),
            "{args:?} {env:?}: {stderr}"
        );
    }
}

/// A child process that does not outlive a failing test.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
