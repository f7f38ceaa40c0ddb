//! A real JVM with the JDK's JMX agent, for tests of the JMX-facing commands.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct JdkAgent {
    child: Child,
    pub port: u16,
}

impl JdkAgent {
    /// Starts `jmx/tests/fixtures/Idle.java` with an unauthenticated agent on a free loopback port.
    pub fn start() -> JdkAgent {
        Self::start_with(&[])
    }

    /// [`JdkAgent::start`] with extra JVM options.
    pub fn start_with(jvm_options: &[&str]) -> JdkAgent {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let java = std::env::var_os("JAVA_HOME")
            .map(|home| PathBuf::from(home).join("bin/java"))
            .filter(|path| path.exists())
            .unwrap_or_else(|| PathBuf::from("java"));
        let mut child = Command::new(java)
            .arg("-Xmx64m")
            .args(jvm_options)
            .arg(format!("-Dcom.sun.management.jmxremote.port={port}"))
            .arg(format!("-Dcom.sun.management.jmxremote.rmi.port={port}"))
            .arg("-Dcom.sun.management.jmxremote.host=127.0.0.1")
            .arg("-Djava.rmi.server.hostname=127.0.0.1")
            .arg("-Dcom.sun.management.jmxremote.authenticate=false")
            .arg("-Dcom.sun.management.jmxremote.ssl=false")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/jmx/tests/fixtures/Idle.java"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("java starts (is a JDK installed?)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the JVM prints ready");
        assert_eq!(line.trim(), "ready", "the JVM did not start");
        JdkAgent { child, port }
    }

    pub fn service(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for JdkAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
