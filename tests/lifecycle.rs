//! How operations live and end, against the real binary: expiry, the concurrency cap, graceful shutdown on
//! SIGTERM, and the `stop` operation.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use nix::sys::signal::Signal;
use serde_json::json;
use support::{Sidecar, eventually, id_of, wait_for_state};

#[test]
fn finished_operations_expire_and_unfinished_ones_stay() {
    let sidecar = Sidecar::start(&["--operations-expiration", "1s", "--enable-test-operations"]);
    let client = sidecar.client();
    let running = id_of(&client.submit(json!({"type": "sleep", "duration": "1h"})));
    let finished = id_of(&client.submit(json!({"type": "flush", "keyspace": "ks"})));
    wait_for_state(&sidecar, &finished, "FAILED");

    eventually("the finished operation expires", || {
        (client.get(&format!("/operations/{finished}")).status == 404).then_some(())
    });
    // The running one has been around longer than the expiration period, and is still there.
    assert_eq!(client.operation(&running)["state"], "RUNNING");
    let listed = client.get("/operations").json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[test]
fn operations_beyond_the_cap_wait_as_pending() {
    let sidecar = Sidecar::start(&[
        "--max-concurrent-operations",
        "1",
        "--enable-test-operations",
    ]);
    let client = sidecar.client();
    let first = id_of(&client.submit(json!({"type": "sleep", "duration": "1h"})));
    wait_for_state(&sidecar, &first, "RUNNING");
    let second = id_of(&client.submit(json!({"type": "sleep", "duration": "50ms"})));
    let third = id_of(&client.submit(json!({"type": "flush", "keyspace": "ks"})));

    // While the first holds the only slot the others stay PENDING, without a start time.
    for id in [&second, &third] {
        let waiting = client.operation(id);
        assert_eq!(waiting["state"], "PENDING", "{waiting}");
        assert!(waiting.get("startTime").is_none());
    }

    // Cancelling a pending operation ends it at once; freeing the slot lets the rest run in order.
    assert_eq!(client.delete(&format!("/operations/{third}")).status, 202);
    wait_for_state(&sidecar, &third, "CANCELLED");
    assert!(
        client.operation(&third).get("startTime").is_none(),
        "it never ran"
    );
    assert_eq!(client.delete(&format!("/operations/{first}")).status, 202);
    let done = wait_for_state(&sidecar, &second, "COMPLETED");
    assert_eq!(done["progress"], 1.0);
}

#[test]
fn sigterm_cancels_running_operations_and_exits_cleanly() {
    let mut sidecar = Sidecar::start(&["--enable-test-operations"]);
    let id = id_of(
        &sidecar
            .client()
            .submit(json!({"type": "sleep", "duration": "1h"})),
    );
    wait_for_state(&sidecar, &id, "RUNNING");
    sidecar.send_signal(Signal::SIGTERM);
    let status = sidecar
        .wait_for_exit()
        .expect("the sidecar exits after SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", sidecar.logs());
    let events = sidecar.log_events();
    let cancelled = events.iter().any(|e| {
        e["message"] == "operation finished"
            && e["state"] == "CANCELLED"
            && e["operation"] == id.as_str()
    });
    assert!(
        cancelled,
        "the running operation was not cancelled:\n{}",
        sidecar.logs()
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "shutting down" && e["reason"] == "SIGTERM")
    );
}

#[test]
fn stop_waits_for_running_operations_then_exits() {
    let mut sidecar = Sidecar::start(&["--enable-test-operations"]);
    let client = sidecar.client();
    let busy = id_of(&client.submit(json!({"type": "sleep", "duration": "1h"})));
    wait_for_state(&sidecar, &busy, "RUNNING");
    // A finished operation does not hold the stop up (Icarus waited for those to expire).
    let failed = id_of(&client.submit(json!({"type": "drain"})));
    wait_for_state(&sidecar, &failed, "FAILED");

    let stop = id_of(&client.submit(json!({"type": "stop"})));
    wait_for_state(&sidecar, &stop, "RUNNING");
    // Still serving while the other operation runs.
    assert_eq!(client.get("/health/live").status, 200);
    assert_eq!(client.operation(&stop)["state"], "RUNNING");

    assert_eq!(client.delete(&format!("/operations/{busy}")).status, 202);
    let status = sidecar
        .wait_for_exit()
        .expect("the sidecar exits once nothing else runs");
    assert!(status.success(), "exit status {status}\n{}", sidecar.logs());
    let events = sidecar.log_events();
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "shutting down" && e["reason"] == "stop operation")
    );
    assert!(events.iter().any(|e| {
        e["message"] == "operation finished"
            && e["state"] == "COMPLETED"
            && e["operation"] == stop.as_str()
    }));
}

/// The port stays open while operations wind down: new operations get a JSON 503 instead of a refused connection,
/// and clients can still poll; the process exits once the operations are over.
#[test]
fn while_operations_wind_down_new_ones_get_503_and_reads_still_answer() {
    let mut sidecar = Sidecar::start(&["--enable-test-operations", "--shutdown-timeout", "1m"]);
    let client = sidecar.client();
    let winding =
        id_of(&client.submit(json!({"type": "sleep", "duration": "1h", "windDown": "10s"})));
    wait_for_state(&sidecar, &winding, "RUNNING");
    sidecar.send_signal(Signal::SIGTERM);
    eventually("the shutdown begins", || {
        sidecar
            .log_events()
            .iter()
            .any(|e| e["message"] == "shutting down")
            .then_some(())
    });

    let refused = client.post_json("/operations", &json!({"type": "sleep", "duration": "1s"}));
    assert_eq!(refused.status, 503);
    let error = refused.json();
    assert_eq!(error["code"], "unavailable");
    assert!(
        error["error"].as_str().unwrap().contains("shutting down"),
        "{error}"
    );
    assert_eq!(client.operation(&winding)["state"], "RUNNING");
    assert_eq!(
        client.get("/operations").json().as_array().unwrap().len(),
        1
    );

    let status = sidecar
        .wait_for_exit()
        .expect("the sidecar exits once the operation is over");
    assert!(status.success(), "exit status {status}\n{}", sidecar.logs());
    assert!(
        sidecar
            .log_events()
            .iter()
            .any(|e| e["message"] == "operation finished"
                && e["state"] == "CANCELLED"
                && e["operation"] == winding.as_str())
    );
}

#[test]
fn sigterm_right_after_start_is_a_clean_exit() {
    let mut sidecar = Sidecar::start(&["--enable-test-operations"]);
    sidecar.send_signal(Signal::SIGTERM);
    let status = sidecar.wait_for_exit().expect("exits");
    assert!(status.success());
}

/// With every slot taken, a stop waits its turn, then shuts down without waiting for what is still pending.
#[test]
fn stop_does_not_wait_for_pending_operations() {
    let mut sidecar = Sidecar::start(&[
        "--max-concurrent-operations",
        "1",
        "--enable-test-operations",
    ]);
    let client = sidecar.client();
    let busy = id_of(&client.submit(json!({"type": "sleep", "duration": "1h"})));
    wait_for_state(&sidecar, &busy, "RUNNING");
    let stop = id_of(&client.submit(json!({"type": "stop"})));
    let queued = id_of(&client.submit(json!({"type": "sleep", "duration": "1h"})));
    assert_eq!(client.operation(&stop)["state"], "PENDING");
    assert_eq!(client.delete(&format!("/operations/{busy}")).status, 202);
    let status = sidecar
        .wait_for_exit()
        .expect("the sidecar exits although an operation is still pending");
    assert!(status.success(), "exit status {status}\n{}", sidecar.logs());
    let events = sidecar.log_events();
    assert!(events.iter().any(|e| e["message"] == "operation finished"
        && e["state"] == "CANCELLED"
        && e["operation"] == queued.as_str()));
}

/// Decommission, drain and rebuild change what the node is: while one is unfinished, the others get 409.
#[test]
fn conflicting_operations_are_refused_with_the_running_one_named() {
    let sidecar = Sidecar::start(&[
        "--max-concurrent-operations",
        "1",
        "--enable-test-operations",
    ]);
    let client = sidecar.client();
    // Hold the only slot, so the drain stays PENDING (unfinished) for as long as the test needs.
    let busy = id_of(&client.submit(json!({"type": "sleep", "duration": "1h"})));
    wait_for_state(&sidecar, &busy, "RUNNING");
    let drain = id_of(&client.submit(json!({"type": "drain"})));
    for body in [
        json!({"type": "decommission"}),
        json!({"type": "rebuild", "sourceDC": "dc1"}),
        json!({"type": "drain"}),
    ] {
        let refused = client.post_json("/operations", &body);
        assert_eq!(refused.status, 409, "{body}");
        let error = refused.json();
        assert_eq!(error["code"], "conflict");
        assert_eq!(error["operationId"], drain.as_str());
        assert!(
            error["error"].as_str().unwrap().contains("drain"),
            "{error}"
        );
    }
    // Other operations are not held up.
    client.submit(json!({"type": "flush", "keyspace": "ks"}));
    // Once the drain is over, a decommission may be submitted.
    assert_eq!(client.delete(&format!("/operations/{drain}")).status, 202);
    wait_for_state(&sidecar, &drain, "CANCELLED");
    client.submit(json!({"type": "decommission"}));
}
