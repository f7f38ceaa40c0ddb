//! The etcd test harness works against the real servers: a three-member cluster starts, keeps taking writes with a
//! member down and takes that member back; a snapshot restores into a fresh cluster; and parallel first installs
//! of etcd on an empty cache all end with working binaries (as parallel test binaries start them).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use support::etcd::EtcdCluster;
use support::eventually;

fn get(cluster: &EtcdCluster, key: &str) -> String {
    cluster
        .etcdctl(&["get", key, "--print-value-only"])
        .trim()
        .to_string()
}

#[test]
fn a_three_member_cluster_takes_writes_with_a_member_down_and_takes_it_back() {
    let mut cluster = EtcdCluster::start(3);
    let endpoints = cluster.endpoints();
    assert_eq!(endpoints.len(), 3);
    assert!(
        endpoints
            .iter()
            .all(|endpoint| endpoint.starts_with("http://127.0.0.1:")),
        "{endpoints:?}"
    );
    assert_eq!(cluster.endpoints_arg(), endpoints.join(","));

    assert_eq!(cluster.etcdctl(&["put", "/daedalus/a", "1"]).trim(), "OK");
    assert_eq!(get(&cluster, "/daedalus/a"), "1");

    // A follower, so that the write below needs no election first.
    let leader = cluster.leader();
    let down = (0..3).find(|&member| member != leader).unwrap();
    cluster.kill(down);
    assert!(!cluster.is_running(down));
    assert!((0..3).filter(|&m| m != down).all(|m| cluster.is_running(m)));
    assert_eq!(cluster.etcdctl(&["put", "/daedalus/b", "2"]).trim(), "OK");
    assert_eq!(get(&cluster, "/daedalus/b"), "2");

    cluster.restart(down);
    assert!(cluster.is_running(down));
    // The member catches up on what it missed: its own (serializable) read shows the write made without it.
    eventually("the restarted member has the write it missed", || {
        let value = cluster.etcdctl_on(
            down,
            &[
                "get",
                "/daedalus/b",
                "--print-value-only",
                "--consistency=s",
            ],
        );
        (value.trim() == "2").then_some(())
    });
    // Every member, the restarted one too, is healthy and counts three members.
    cluster.etcdctl(&["endpoint", "health"]);
    let members = cluster.etcdctl_on(down, &["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    assert_eq!(cluster.etcdctl(&["put", "/daedalus/c", "3"]).trim(), "OK");
}

#[test]
fn a_snapshot_restores_into_a_fresh_cluster() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let snapshot = scratch.path().join("etcd.snapshot");
    let source = EtcdCluster::start(1);
    source.etcdctl(&["put", "/daedalus/kept", "before the snapshot"]);
    source.snapshot_save(&snapshot);
    source.etcdctl(&["put", "/daedalus/later", "after the snapshot"]);
    let source_endpoints = source.endpoints();
    // The restored cluster needs nothing of the source.
    drop(source);

    let restored = EtcdCluster::start_from_snapshot(&snapshot);
    assert_eq!(restored.endpoints().len(), 1);
    assert_ne!(restored.endpoints(), source_endpoints, "new ports");
    assert_eq!(get(&restored, "/daedalus/kept"), "before the snapshot");
    assert_eq!(get(&restored, "/daedalus/later"), "");
    assert_eq!(
        restored.etcdctl(&["put", "/daedalus/new", "x"]).trim(),
        "OK"
    );
    assert_eq!(get(&restored, "/daedalus/new"), "x");
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/etcd")
}

/// The version the script pins, as `etcd --version` shows it (`package_version=3.4.23-4+b4` → `3.4.23`).
fn pinned_version() -> String {
    let script = std::fs::read_to_string(script()).expect("scripts/etcd");
    let line = script
        .lines()
        .find_map(|line| line.strip_prefix("package_version="))
        .expect("scripts/etcd pins package_version");
    line.split('-').next().unwrap().to_string()
}

#[test]
fn parallel_first_installs_of_etcd_all_get_working_binaries() {
    let cache = tempfile::tempdir().expect("a temporary directory");
    // Started one after another, so later callers find the first one's install under way, half done.
    let callers: Vec<_> = (0..4u64)
        .map(|caller| {
            let cache = cache.path().to_path_buf();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(300 * caller));
                Command::new(script())
                    .arg("install")
                    .env("DAEDALUS_TOOLS", cache)
                    .output()
                    .expect("scripts/etcd runs")
            })
        })
        .collect();
    let mut installs = 0;
    for caller in callers {
        let output = caller.join().expect("the caller thread ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "scripts/etcd install failed:\n{stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "install printed on stdout: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        installs += stderr.matches("installing etcd").count();
    }
    assert_eq!(installs, 1, "one caller installs, the others wait for it");
    let leftovers: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".etcd-install"))
        .collect();
    assert!(leftovers.is_empty(), "install left {leftovers:?}");

    let bin = Command::new(script())
        .arg("bin")
        .env("DAEDALUS_TOOLS", cache.path())
        .output()
        .expect("scripts/etcd runs");
    assert!(bin.status.success());
    let bin = PathBuf::from(String::from_utf8(bin.stdout).unwrap().trim());
    assert_eq!(bin, cache.path().join("etcd/usr/bin"));
    let version = pinned_version();
    for (tool, arg, banner) in [
        ("etcd", "--version", format!("etcd Version: {version}")),
        ("etcdctl", "version", format!("etcdctl version: {version}")),
    ] {
        let output = Command::new(bin.join(tool))
            .arg(arg)
            .output()
            .unwrap_or_else(|e| panic!("{tool} does not run: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.lines().any(|line| line == banner),
            "{tool} {arg}: {stdout}"
        );
    }
}
