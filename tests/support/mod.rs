//! Test support: start the real `daedalus` binary, talk to it over HTTP, and check every response against
//! `openapi.yaml`.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod builder;
pub mod cassandra;
pub mod etcd;
pub mod jvm;
pub mod operators;
pub mod scratch;
pub mod secrets;
pub mod spec;
pub mod stores;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use spec::SpecClient;

/// How long a test waits for something that should happen soon. A bound against hanging, not a speed check.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The JMX service sidecars under test use unless a test says otherwise.
pub const CLOSED_JMX_SERVICE: &str = "127.0.0.1:1";

/// A running sidecar process, killed when dropped.
pub struct Sidecar {
    child: Child,
    pub base_url: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Sidecar {
    /// Starts `daedalus serve` on a free loopback port with the extra `args`.
    pub fn start(args: &[&str]) -> Sidecar {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Sidecar {
        Self::start_listening("127.0.0.1:0", args, env)
    }

    /// Starts `daedalus serve --listen LISTEN` (a sidecar of a cluster-wide test binds its node's address).
    pub fn start_listening(listen: &str, args: &[&str], env: &[(&str, &str)]) -> Sidecar {
        Self::start_through(&[], listen, args, env)
    }

    /// [`Sidecar::start_listening`] through a command that execs it, e.g. `scripts/cassandra exec 19`, which runs
    /// it in node 19's mount namespace.
    pub fn start_through(
        prefix: &[&str],
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Sidecar {
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(env!("CARGO_BIN_EXE_daedalus"));
                command
            }
            None => daedalus_command(),
        };
        command
            .args(["--log-format", "json", "serve", "--listen", listen])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        // Nothing listens on port 1, so operations fail fast and the same way on every machine, whether or
        // not a Cassandra runs on 7199 there.
        let jmx_given = args.contains(&"--jmx-service")
            || env.iter().any(|(n, _)| *n == "DAEDALUS_JMX_SERVICE");
        if !jmx_given {
            command.args(["--jmx-service", CLOSED_JMX_SERVICE]);
        }
        let mut child = command.spawn().expect("the daedalus binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"] == "listening"
                    && let Some(address) = event["address"].as_str()
                {
                    let _ = address_tx.send(address.to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let address = match address_rx.recv_timeout(PATIENCE) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the sidecar did not start listening:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Sidecar {
            child,
            base_url: format!("http://{address}"),
            logs,
        }
    }

    pub fn client(&self) -> SpecClient {
        SpecClient::new(&self.base_url)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn send_signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .expect("signal delivered");
    }

    /// Waits for the process to exit on its own; `None` if it is still running after `PATIENCE`.
    pub fn wait_for_exit(&mut self) -> Option<ExitStatus> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("process status") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The JSON log events logged so far.
    pub fn log_events(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        // A failing test shows what its sidecar logged last, and how it ended.
        if std::thread::panicking() {
            let logs = self.logs.lock().map(|l| l.clone()).unwrap_or_default();
            let ended = self.child.try_wait().ok().flatten();
            eprintln!(
                "--- sidecar {} ({}), its last log lines:\n{}",
                self.base_url,
                ended.map_or_else(|| "still running".to_string(), |s| format!("exited: {s}")),
                logs[logs.len().saturating_sub(40)..].join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let logs = self.logs();
            let found = secrets::found_in(&logs);
            assert!(
                found.is_empty(),
                "the sidecar {} logged secrets: {found:?}",
                self.base_url
            );
        }
    }
}

/// Polls `condition` until it holds, failing the test with `what` if it does not within `PATIENCE`.
pub fn eventually<T>(what: &str, condition: impl FnMut() -> Option<T>) -> T {
    eventually_within(what, PATIENCE, condition)
}

/// [`eventually`] with a bound of its own, for what takes longer by nature (a node starting, a throttled transfer).
pub fn eventually_within<T>(
    what: &str,
    within: Duration,
    mut condition: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `GET /operations/{id}` until the operation is in state `wanted`; returns it.
pub fn wait_for_state(sidecar: &Sidecar, id: &str, wanted: &str) -> Value {
    let client = sidecar.client();
    eventually(&format!("operation {id} is {wanted}"), || {
        let operation = client.operation(id);
        let state = operation["state"].as_str().unwrap_or_default();
        assert!(
            state == wanted || matches!(state, "PENDING" | "RUNNING"),
            "operation {id} ended {state}, not {wanted}: {operation}"
        );
        (state == wanted).then_some(operation)
    })
}

/// Submits an operation and waits for it to end; returns it.
pub fn run(sidecar: &Sidecar, body: Value, expected: &str) -> Value {
    run_within(sidecar, body, expected, PATIENCE)
}

/// [`run`] with a bound of its own, for what takes longer by nature and more so on a loaded machine (a repair across
/// nodes, a decommission's streaming).
pub fn run_within(sidecar: &Sidecar, body: Value, expected: &str, within: Duration) -> Value {
    let client = sidecar.client();
    let id = client.submit(body.clone())["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = eventually_within(&format!("{body} finishes"), within, || {
        let operation = client.operation(&id);
        let state = operation["state"].as_str().unwrap().to_string();
        (state != "PENDING" && state != "RUNNING").then_some(operation)
    });
    assert_eq!(done["state"], expected, "{done}");
    done
}

/// The `daedalus` binary under test, as a command to give arguments to.
pub fn daedalus_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_daedalus"))
}

/// Runs `daedalus ARGS` to its end; what it printed and how it exited.
pub fn daedalus(args: &[&str]) -> Output {
    daedalus_command()
        .args(args)
        .output()
        .expect("the daedalus binary runs")
}

/// Starts `serve` (a `daedalus_command` with its arguments), reads its log up to the `listening` line, stops it with
/// SIGTERM and returns all it logged: what a sidecar says as it starts, read without a sleep.
pub fn logs_of_a_start(command: &mut Command) -> String {
    use std::io::Read;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the daedalus binary runs");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut logs = String::new();
    while !logs.contains("listening") {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("the log is readable") == 0 {
            break;
        }
        logs.push_str(&line);
    }
    let pid = i32::try_from(child.id()).expect("a pid");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    stderr
        .read_to_string(&mut logs)
        .expect("the log is readable");
    let _ = child.wait();
    logs
}

/// A tag of this run's own (`TAG-p<pid>`): the nodes outlive a run, and a snapshot that a run cut short left behind
/// must not be taken for this run's.
pub fn this_runs(tag: &str) -> String {
    format!("{tag}-p{}", std::process::id())
}

/// The `id` of an operation as the API returns it.
pub fn id_of(operation: &Value) -> String {
    operation["id"].as_str().expect("operation id").to_string()
}
