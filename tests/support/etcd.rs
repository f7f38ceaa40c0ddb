//! A real etcd cluster for the tests, on loopback: Debian bookworm's etcd 3.4, which `scripts/etcd` unpacks once
//! per test binary into the tools cache (~/.cache/daedalus/tools, or `DAEDALUS_TOOLS`). [`EtcdCluster::start`]
//! runs N members as child processes on free ports, with their data in a temporary directory; dropping the
//! cluster kills them and removes the data.
//!
//! Members are numbered from 0 (`member` below, the index into [`EtcdCluster::endpoints`]); member `i` is named
//! `m{i+1}`. Each logs to `{dir}/m{i+1}/log`, and a failing test prints the tail of every log.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::PATIENCE;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/etcd")
}

/// The directory holding `etcd` and `etcdctl`, installed once per test binary (quick when already there;
/// parallel test binaries on an empty cache wait for one install, under the script's lock).
fn bin_dir() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let output = Command::new(script())
            .arg("bin")
            .output()
            .expect("scripts/etcd runs");
        assert!(
            output.status.success(),
            "scripts/etcd bin:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(
            String::from_utf8(output.stdout)
                .expect("a UTF-8 path")
                .trim(),
        )
    })
}

/// A command for the installed `tool`, without the caller's `ETCD_*` and `ETCDCTL_*` variables: etcd reads every
/// `ETCD_*` as a flag, etcdctl every `ETCDCTL_*`, so a developer's own settings would change the cluster.
fn command(tool: &str) -> Command {
    let mut command = Command::new(bin_dir().join(tool));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCD") {
            command.env_remove(name);
        }
    }
    command.env("ETCDCTL_API", "3").stdin(Stdio::null());
    command
}

/// Runs `etcdctl --endpoints=ENDPOINTS ARGS`; its stdout. Panics with its stderr if it fails.
fn etcdctl_at(endpoints: &str, args: &[&str]) -> String {
    let output = command("etcdctl")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .output()
        .expect("etcdctl runs");
    assert!(
        output.status.success(),
        "etcdctl --endpoints={endpoints} {} ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("etcdctl prints UTF-8")
}

/// A free loopback port, never one this process handed out before: the kernel may offer a just-probed port again,
/// and two members (or two clusters of parallel tests) must not both get it.
fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// A cluster token no other cluster on the machine has, so that members of two clusters never join each other.
fn unique_token() -> String {
    static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
    format!(
        "daedalus-test-{}-{}",
        std::process::id(),
        CLUSTERS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the member on `port` answers `GET /health` with `"health":"true"` (it has a leader and a quorum).
/// Plain HTTP/1.0 on a socket rather than reqwest::blocking, which panics inside a tokio test's runtime.
fn healthy(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut response = String::new();
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .and_then(|()| stream.read_to_string(&mut response))
        .is_err()
    {
        return false;
    }
    response
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<Value>(body).ok())
        .is_some_and(|body| body["health"] == "true")
}

/// The last `lines` lines of the file at `path` (or why there are none).
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// `{cluster dir}/m{N}`, holding `data/` and `log`.
    dir: PathBuf,
    process: Mutex<Option<Child>>,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// How the process ended, if it was started and has ended.
    fn exited(&self) -> Option<ExitStatus> {
        let mut process = self.process.lock().unwrap();
        process
            .as_mut()
            .and_then(|child| child.try_wait().expect("the member's status"))
    }

    fn is_running(&self) -> bool {
        let mut process = self.process.lock().unwrap();
        process
            .as_mut()
            .is_some_and(|child| child.try_wait().expect("the member's status").is_none())
    }

    /// SIGKILL, and the process reaped; nothing if it was not started.
    fn kill(&self) {
        let process = self.process.lock().unwrap().take();
        if let Some(mut child) = process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the member's etcd, appending to its log (a restart keeps the earlier runs' lines).
    fn spawn(&self, initial_cluster: &str, token: &str, state: &str) {
        assert!(!self.is_running(), "{} runs already", self.name);
        std::fs::create_dir_all(&self.dir).expect("the member's directory");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("the member's log file");
        let child = command("etcd")
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &self.endpoint()])
            .args(["--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", token])
            // 3.4's default logger, capnslog, is deprecated and says so at every start.
            .args(["--logger", "zap"])
            .stdout(log.try_clone().expect("the log file again"))
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        *self.process.lock().unwrap() = Some(child);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why members did not all become healthy.
enum NotHealthy {
    /// A member's process ended; `clash` when it could not bind its port, which fresh ports may fix.
    Exited {
        name: String,
        clash: bool,
    },
    TimedOut,
}

/// Waits until each of `members` is healthy, or one of them ends, or `PATIENCE` runs out.
fn wait_healthy(members: &[&Member]) -> Result<(), NotHealthy> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut all = true;
        for member in members {
            if member.exited().is_some() {
                let log = std::fs::read_to_string(member.log()).unwrap_or_default();
                return Err(NotHealthy::Exited {
                    name: member.name.clone(),
                    clash: log.contains("address already in use"),
                });
            }
            all = all && healthy(member.client_port);
        }
        if all {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotHealthy::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tail of every member's log, for a failure message.
fn logs(members: &[Member]) -> String {
    members
        .iter()
        .map(|member| {
            let state = match member.exited() {
                Some(status) => format!("exited: {status}"),
                None if member.is_running() => "running".to_string(),
                None => "not running".to_string(),
            };
            format!(
                "--- {} ({}, {state}), the end of {}:\n{}",
                member.name,
                member.endpoint(),
                member.log().display(),
                tail(&member.log(), 30)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A running etcd cluster; its members are killed, and their data removed, when it is dropped.
pub struct EtcdCluster {
    // Declared before `dir`, so the processes end before their data goes.
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts a new cluster of `members` members; returns once every one is healthy.
    pub fn start(members: usize) -> EtcdCluster {
        assert!(members >= 1, "a cluster needs a member");
        Self::launch(members, None)
    }

    /// Starts a new single-member cluster (new ports, new token) with the data of `snapshot`, a file from
    /// [`EtcdCluster::snapshot_save`]; returns once it is healthy.
    pub fn start_from_snapshot(snapshot: &Path) -> EtcdCluster {
        assert!(snapshot.is_file(), "no snapshot at {}", snapshot.display());
        Self::launch(1, Some(snapshot))
    }

    fn launch(count: usize, snapshot: Option<&Path>) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("daedalus-etcd-")
            .tempdir()
            .expect("a temporary directory");
        let mut clashes = Vec::new();
        // Another process may take a port between our probe and etcd's bind: try fresh ports a few times.
        for _ in 0..3 {
            let members: Vec<Member> = (1..=count)
                .map(|n| Member {
                    name: format!("m{n}"),
                    client_port: free_port(),
                    peer_port: free_port(),
                    dir: dir.path().join(format!("m{n}")),
                    process: Mutex::new(None),
                })
                .collect();
            for member in &members {
                // An earlier attempt's data would hold its ports.
                let _ = std::fs::remove_dir_all(&member.dir);
            }
            let initial_cluster = members
                .iter()
                .map(|member| format!("{}={}", member.name, member.peer_url()))
                .collect::<Vec<_>>()
                .join(",");
            let token = unique_token();
            if let Some(snapshot) = snapshot {
                let member = &members[0];
                std::fs::create_dir_all(&member.dir).expect("the member's directory");
                let output = command("etcdctl")
                    .arg("snapshot")
                    .arg("restore")
                    .arg(snapshot)
                    .arg("--data-dir")
                    .arg(member.data_dir())
                    .args(["--name", &member.name])
                    .args(["--initial-cluster", &initial_cluster])
                    .args(["--initial-cluster-token", &token])
                    .args(["--initial-advertise-peer-urls", &member.peer_url()])
                    .output()
                    .expect("etcdctl runs");
                assert!(
                    output.status.success(),
                    "etcdctl snapshot restore {} ({}):\n{}",
                    snapshot.display(),
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            for member in &members {
                member.spawn(&initial_cluster, &token, "new");
            }
            match wait_healthy(&members.iter().collect::<Vec<_>>()) {
                Ok(()) => {
                    return EtcdCluster {
                        members,
                        initial_cluster,
                        token,
                        dir,
                    };
                }
                Err(NotHealthy::Exited { name, clash: true }) => {
                    clashes.push(format!("{name} could not bind:\n{}", logs(&members)));
                }
                Err(NotHealthy::Exited { name, clash: false }) => {
                    panic!("etcd {name} exited during startup:\n{}", logs(&members))
                }
                Err(NotHealthy::TimedOut) => panic!(
                    "the etcd cluster was not healthy within {PATIENCE:?}:\n{}",
                    logs(&members)
                ),
            }
        }
        panic!(
            "etcd found its ports taken three times:\n{}",
            clashes.join("\n")
        );
    }

    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// `http://127.0.0.1:PORT`, each member's client URL (whether it runs or not).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// The endpoints joined with commas, as `--endpoints` flags take them.
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    /// The directory of every member's data and log (`m1/data`, `m1/log`, …).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills `member` with SIGKILL, as a crash would end it, keeping its data for [`EtcdCluster::restart`].
    pub fn kill(&mut self, member: usize) {
        self.members[member].kill();
    }

    /// Starts `member` again (killing it first if it runs) with its data and ports, joining the cluster it was
    /// in; returns once it is healthy.
    pub fn restart(&mut self, member: usize) {
        let it = &self.members[member];
        it.kill();
        it.spawn(&self.initial_cluster, &self.token, "existing");
        match wait_healthy(&[it]) {
            Ok(()) => {}
            Err(NotHealthy::Exited { name, .. }) => {
                panic!("etcd {name} exited on restart:\n{}", logs(&self.members))
            }
            Err(NotHealthy::TimedOut) => panic!(
                "etcd {} was not healthy within {PATIENCE:?} of its restart:\n{}",
                it.name,
                logs(&self.members)
            ),
        }
    }

    /// Starts every member that is not running, at once (one alone would have no quorum to be healthy with), and
    /// waits until all are healthy.
    pub fn restart_all(&mut self) {
        let stopped: Vec<&Member> = self.members.iter().filter(|m| !m.is_running()).collect();
        for it in &stopped {
            it.spawn(&self.initial_cluster, &self.token, "existing");
        }
        if let Err(error) = wait_healthy(&stopped) {
            let what = match error {
                NotHealthy::Exited { name, .. } => format!("etcd {name} exited on restart"),
                NotHealthy::TimedOut => {
                    format!("etcd was not healthy within {PATIENCE:?} of its restart")
                }
            };
            panic!("{what}:\n{}", logs(&self.members));
        }
    }

    pub fn is_running(&self, member: usize) -> bool {
        self.members[member].is_running()
    }

    /// The member that leads the cluster now, as the running members see it.
    pub fn leader(&self) -> usize {
        let mut ids = Vec::new();
        let mut leader = None;
        for (index, member) in self.members.iter().enumerate() {
            if !member.is_running() {
                continue;
            }
            let status: Value = serde_json::from_str(&etcdctl_at(
                &member.endpoint(),
                &["endpoint", "status", "--write-out=json"],
            ))
            .expect("endpoint status as JSON");
            let status = &status[0]["Status"];
            ids.push((index, status["header"]["member_id"].as_u64()));
            leader = leader.or(status["leader"].as_u64().filter(|&id| id != 0));
        }
        let leader = leader.expect("a running member knows a leader");
        ids.iter()
            .find(|(_, id)| *id == Some(leader))
            .map(|(index, _)| *index)
            .unwrap_or_else(|| panic!("the leader {leader:x} is none of the running members"))
    }

    /// Runs `etcdctl ARGS` against every endpoint (the v3 API); its stdout. Panics with its stderr if it fails.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        etcdctl_at(&self.endpoints_arg(), args)
    }

    /// Runs `etcdctl ARGS` against `member` alone; with `--consistency=s`, a read shows that member's own data.
    pub fn etcdctl_on(&self, member: usize, args: &[&str]) -> String {
        etcdctl_at(&self.members[member].endpoint(), args)
    }

    /// Saves a snapshot of the data to `path`, from one running member.
    pub fn snapshot_save(&self, path: &Path) {
        let member = self
            .members
            .iter()
            .find(|member| member.is_running())
            .expect("a running member to take the snapshot from");
        let path = path.to_str().expect("a UTF-8 path");
        etcdctl_at(&member.endpoint(), &["snapshot", "save", path]);
    }

    /// The end of `member`'s log.
    pub fn log_tail(&self, member: usize, lines: usize) -> String {
        tail(&self.members[member].log(), lines)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // A failing test shows what each member logged last; the members themselves are killed as they drop.
        if std::thread::panicking() {
            eprintln!("{}", logs(&self.members));
        }
    }
}
