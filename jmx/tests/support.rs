//! Starts real JVMs for the integration tests and stops them when dropped.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Jvm {
    child: Child,
    pub port: u16,
}

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `java` from JAVA_HOME, else from PATH.
pub fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// Starts `Idle.java` with the JDK's JMX agent on a free loopback port, plus `extra` system properties.
pub fn jdk_agent(extra: &[String]) -> Jvm {
    let port = free_port();
    let mut command = Command::new(java());
    command
        .arg("-Xmx64m")
        .arg(format!("-Dcom.sun.management.jmxremote.port={port}"))
        .arg(format!("-Dcom.sun.management.jmxremote.rmi.port={port}"))
        .arg("-Dcom.sun.management.jmxremote.host=127.0.0.1")
        .arg("-Djava.rmi.server.hostname=127.0.0.1")
        .arg("-Dcom.sun.management.jmxremote.local.only=true");
    if !extra
        .iter()
        .any(|a| a.starts_with("-Dcom.sun.management.jmxremote.authenticate"))
    {
        command.arg("-Dcom.sun.management.jmxremote.authenticate=false");
    }
    if !extra
        .iter()
        .any(|a| a.starts_with("-Dcom.sun.management.jmxremote.ssl="))
    {
        command.arg("-Dcom.sun.management.jmxremote.ssl=false");
    }
    command.args(extra).arg(fixture("Idle.java"));
    spawn_until_ready(command, port)
}

/// Spawns a JVM whose main() prints "ready" once its JMX server is up, and waits for that line.
fn spawn_until_ready(mut command: Command, port: u16) -> Jvm {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("java starts (is a JDK installed?)");
    // The agent is bound before main() runs, and main() prints "ready".
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut jvm = Jvm { child, port };
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    if !matches!(read, Ok(n) if n > 0) || line.trim() != "ready" {
        let status = jvm.child.try_wait();
        panic!("the JVM did not start: {line:?} {status:?}");
    }
    jvm
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after 60s");
}

/// Compiles the Cassandra-like server (once per test binary) and returns its class directory.
fn cassandra_like_classes() -> PathBuf {
    static CLASSES: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CLASSES
        .get_or_init(|| {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cassandra-like-classes");
            std::fs::create_dir_all(&out).unwrap();
            let javac = java().with_file_name("javac");
            let javac = if javac.exists() {
                javac
            } else {
                PathBuf::from("javac")
            };
            let status = Command::new(javac)
                .arg("-d")
                .arg(&out)
                .arg(fixture("CassandraLikeServer.java"))
                .status()
                .expect("javac runs (is a JDK installed?)");
            assert!(status.success(), "CassandraLikeServer.java compiles");
            out
        })
        .clone()
}

/// Starts the Cassandra-like JMX server on a free loopback port; `credentials` turns authentication on.
pub fn cassandra_like(credentials: Option<(&str, &str)>) -> Jvm {
    cassandra_like_with(credentials, &[])
}

/// [`cassandra_like`] with extra JVM options, e.g. `-DidleTimeoutMs=1500`.
pub fn cassandra_like_with(credentials: Option<(&str, &str)>, jvm_options: &[&str]) -> Jvm {
    cassandra_like_on(free_port(), credentials, jvm_options)
}

/// [`cassandra_like_with`] with its registry on `port` (a restart of an agent that ran there); its RMI server
/// takes a new random port, as Cassandra's does.
pub fn cassandra_like_on(
    port: u16,
    credentials: Option<(&str, &str)>,
    jvm_options: &[&str],
) -> Jvm {
    let mut command = Command::new(java());
    command
        .arg("-Xmx64m")
        .args(jvm_options)
        .arg("-cp")
        .arg(cassandra_like_classes())
        .arg("CassandraLikeServer")
        .arg(port.to_string());
    if let Some((user, password)) = credentials {
        command.arg(user).arg(password);
    }
    spawn_until_ready(command, port)
}
