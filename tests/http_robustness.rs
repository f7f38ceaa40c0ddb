//! The HTTP layer against hostile or broken clients, over raw TCP: ambiguous framing, slow heads and bodies, and
//! more connections held open than the sidecar accepts at once.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;
use support::{PATIENCE, Sidecar};

fn connect(sidecar: &Sidecar) -> TcpStream {
    let stream =
        TcpStream::connect(sidecar.base_url.trim_start_matches("http://")).expect("connects");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// What the server sends until it closes the connection; fails if it keeps it open past `PATIENCE`.
fn received_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the connection stayed open ({e}); got so far:\n{}",
            String::from_utf8_lossy(&received)
        ),
    }
    String::from_utf8_lossy(&received).into_owned()
}

fn read_until_closed(stream: &mut TcpStream) -> Answer {
    Answer::parse(&received_until_closed(stream))
}

/// Every answer the server sent before closing the connection, each framed by its `Content-Length` (the sidecar
/// sends one with every answer).
fn answers_until_closed(stream: &mut TcpStream) -> Vec<Answer> {
    let received = received_until_closed(stream);
    let mut rest = received.as_str();
    let mut answers = Vec::new();
    while !rest.is_empty() {
        let (head, after) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let length = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or(after.len())
            .min(after.len());
        answers.push(Answer::parse(&format!(
            "{head}\r\n\r\n{}",
            &after[..length]
        )));
        rest = &after[length..];
    }
    answers
}

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn parse(text: &str) -> Answer {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        Answer {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

const SLEEP: &str = r#"{"type":"sleep","duration":"1s"}"#;

/// A submission framed both ways: by its chunked coding it ends after `SLEEP`, by its `Content-Length` after 5
/// bytes; a proxy and the sidecar that disagree on which one counts disagree on where the next request starts.
fn ambiguous_submission() -> String {
    format!(
        "POST /operations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{SLEEP}\r\n0\r\n\r\n",
        SLEEP.len()
    )
}

const VERSION: &str = "GET /version HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn a_request_with_content_length_and_transfer_encoding_is_refused_and_the_connection_closed() {
    let sidecar = Sidecar::start(&["--enable-test-operations"]);
    let mut stream = connect(&sidecar);
    // actix-http before 3.12.1 reads this body as chunked, answers 201 and keeps the connection open.
    stream.write_all(ambiguous_submission().as_bytes()).unwrap();
    let answer = read_until_closed(&mut stream);
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.head.contains("connection: close"), "{answer:?}");
    // Nothing was submitted.
    let listed = sidecar.client().get("/operations").json();
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
}

/// What follows an ambiguous request on its connection is not a request: it may be the body a proxy forwarded.
#[test]
fn nothing_sent_after_an_ambiguous_request_in_the_same_write_is_answered() {
    let sidecar = Sidecar::start(&["--enable-test-operations"]);
    let mut stream = connect(&sidecar);
    let both = format!("{}{VERSION}", ambiguous_submission());
    stream.write_all(both.as_bytes()).unwrap();
    let answers = answers_until_closed(&mut stream);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [400], "{answers:?}");
    let listed = sidecar.client().get("/operations").json();
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
}

#[test]
fn nothing_sent_after_an_ambiguous_request_in_a_second_write_is_answered() {
    let sidecar = Sidecar::start(&["--enable-test-operations"]);
    let mut stream = connect(&sidecar);
    stream.set_nodelay(true).unwrap();
    stream.write_all(ambiguous_submission().as_bytes()).unwrap();
    // The server may have closed the connection already, which refuses this write: that is an answer too.
    let _ = stream.write_all(VERSION.as_bytes());
    let answers = answers_until_closed(&mut stream);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [400], "{answers:?}");
}

/// An ambiguous request in the middle of a kept-alive connection: what came before it is answered, what comes
/// after it is not.
#[test]
fn an_ambiguous_request_after_a_good_one_ends_the_connection_there() {
    let sidecar = Sidecar::start(&["--enable-test-operations"]);
    let mut stream = connect(&sidecar);
    let all = format!("{VERSION}{}{VERSION}", ambiguous_submission());
    stream.write_all(all.as_bytes()).unwrap();
    let answers = answers_until_closed(&mut stream);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 400], "{answers:?}");
}

#[test]
fn a_head_that_never_ends_gets_408_and_the_connection_closed() {
    let sidecar = Sidecar::start(&["--request-header-timeout", "1s"]);
    let mut stream = connect(&sidecar);
    stream
        .write_all(b"GET /operations HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let answer = read_until_closed(&mut stream);
    assert_eq!(answer.status, 408, "{answer:?}");
}

/// Many clients send a head and part of a body, then nothing. Each gets a JSON 408 once the body timeout is over,
/// its connection is closed, and fresh requests are answered meanwhile: only `--max-connections` are held at once,
/// the rest wait to be accepted.
#[test]
fn half_sent_bodies_get_408_and_do_not_starve_other_clients() {
    let sidecar = Sidecar::start(&[
        "--enable-test-operations",
        "--max-connections",
        "8",
        "--request-body-timeout",
        "1s",
    ]);
    let limits = sidecar
        .log_events()
        .into_iter()
        .find(|e| e["message"] == "connection limits")
        .expect("the limits are logged at start");
    assert!(limits["max_connections"].as_u64().unwrap() <= 8, "{limits}");
    assert_eq!(limits["request_body_timeout"], "1s");

    let mut slow: Vec<TcpStream> = (0..120)
        .map(|_| {
            let mut stream = connect(&sidecar);
            let head = format!(
                "POST /operations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                SLEEP.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&SLEEP.as_bytes()[..10]).unwrap();
            stream
        })
        .collect();

    // A fresh client is answered while the slow ones still hold on.
    let client = sidecar.client();
    assert_eq!(client.get("/operations").status, 200);
    let created = client.post_json("/operations", &serde_json::from_str(SLEEP).unwrap());
    assert_eq!(created.status, 201);

    for stream in &mut slow {
        let answer = read_until_closed(stream);
        assert_eq!(answer.status, 408, "{answer:?}");
        assert!(answer.head.contains("connection: close"), "{answer:?}");
        let error = answer.json();
        assert_eq!(error["code"], "request_timeout");
        assert!(
            error["error"].as_str().unwrap().contains("1s"),
            "the error names the limit: {error}"
        );
    }
    // None of the slow ones was submitted.
    let listed = client.get("/operations").json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

/// actix-http logs every connection it ends on a malformed request at ERROR; a flood of them must not flood the log.
#[test]
fn malformed_requests_get_400_without_an_error_line_each() {
    let mut sidecar = Sidecar::start(&[]);
    for _ in 0..20 {
        let mut stream = connect(&sidecar);
        stream
            .write_all(b"GET /operations HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            .unwrap();
        assert_eq!(read_until_closed(&mut stream).status, 400);
    }
    sidecar.send_signal(nix::sys::signal::Signal::SIGTERM);
    assert!(sidecar.wait_for_exit().expect("exits").success());
    support::eventually("the last log line is read", || {
        sidecar
            .log_events()
            .iter()
            .any(|e| e["message"] == "stopped")
            .then_some(())
    });
    let errors: Vec<Value> = sidecar
        .log_events()
        .into_iter()
        .filter(|e| e["level"] == "ERROR")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
