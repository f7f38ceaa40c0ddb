//! A real Cassandra cluster for the tests, started once per test binary by `scripts/cassandra` (which fetches
//! the jars from Maven Central on first use and leaves the nodes running; `scripts/test` stops them).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// How many nodes the Cassandra-backed tests run against (`DAEDALUS_TEST_NODES`, default 3); node 1 also serves
/// the single-node tests. The 4.1 run in `scripts/test` uses one node.
pub fn nodes() -> usize {
    std::env::var("DAEDALUS_TEST_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
}

/// The Cassandra version under test (`CASSANDRA_VERSION`, as `scripts/cassandra` reads it).
pub fn version() -> String {
    std::env::var("CASSANDRA_VERSION").unwrap_or_else(|_| "5.0.8".to_string())
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cassandra")
}

/// Starts (or finds running) the cluster; returns once every node is NORMAL and sees the others.
pub fn cluster() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let output = Command::new(script())
            .args(["start", &nodes().to_string()])
            .output()
            .expect("scripts/cassandra runs");
        assert!(
            output.status.success(),
            "scripts/cassandra start failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// JMX `host:port` of node `n` (1-based).
pub fn jmx_service(node: usize) -> String {
    format!("127.0.0.1:{}", 7099 + 100 * node)
}

/// The directory holding node `n`'s files.
pub fn node_dir(node: usize) -> PathBuf {
    let root = std::env::var_os("DAEDALUS_TEST_CASSANDRA_DIR")
        .map_or_else(|| PathBuf::from("/tmp/daedalus-cassandra"), PathBuf::from);
    root.join(format!("node{node}"))
}

/// Runs CQL on node `n` with cqlsh and returns the rows' cells (header and decoration stripped).
///
/// A statement that timed out is sent again, twice at most: on two busy cores a cluster just started can take longer
/// than cqlsh's 10 s to agree on a schema change. The tests' statements are idempotent (`IF NOT EXISTS`, fixed rows).
pub fn cql(node: usize, statement: &str) -> Vec<Vec<String>> {
    let mut attempts = 0;
    let output = loop {
        attempts += 1;
        let output = Command::new(script())
            .args(["cql", &node.to_string(), "-e", statement])
            .output()
            .expect("cqlsh runs");
        let timed_out = String::from_utf8_lossy(&output.stderr).contains("OperationTimedOut");
        if output.status.success() || !timed_out || attempts == 3 {
            break output;
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
    };
    assert!(
        output.status.success(),
        "cqlsh {statement}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let Some(rule) = lines
        .iter()
        .position(|l| l.starts_with('-') && l.contains('+') || l.starts_with("---"))
    else {
        return Vec::new();
    };
    lines[rule + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split('|').map(|cell| cell.trim().to_string()).collect())
        .collect()
}

/// Starts node `n` alone, as a one-node cluster of its own, for tests that may kill it.
pub fn solo(node: usize) {
    script_or_panic(&["solo", &node.to_string()], &[]);
}

/// Starts node `n` alone with the `cassandra.yaml` it has (as a restore with `updateCassandraYaml` left it).
pub fn solo_keeping_config(node: usize) {
    script_or_panic(&["solo", &node.to_string()], &[("KEEP_CONFIG", "1")]);
}

/// Starts node `n` alone as [`solo`] does, with `env` for `scripts/cassandra` (e.g. `JMX_RMI_PORT=same`).
pub fn solo_with(node: usize, env: &[(&str, &str)]) {
    script_or_panic(&["solo", &node.to_string()], env);
}

/// Writes node `n`'s files for a solo start without starting it: a node that has never run.
pub fn configure(node: usize) {
    script_or_panic(&["configure", &node.to_string()], &[]);
}

fn script_or_panic(args: &[&str], env: &[(&str, &str)]) {
    let output = Command::new(script())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("scripts/cassandra runs");
    assert!(
        output.status.success(),
        "scripts/cassandra {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Kills node `n` with SIGKILL, as a crash would.
pub fn kill(node: usize) {
    let pid = std::fs::read_to_string(node_dir(node).join("pid")).expect("the node's pid file");
    let pid = nix::unistd::Pid::from_raw(pid.trim().parse().expect("a pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("killed");
    // Gone only once the kernel has torn it down; until then it still looks alive to `scripts/cassandra`.
    super::eventually("the killed node is gone", || {
        nix::sys::signal::kill(pid, None).is_err().then_some(())
    });
}

/// The data directory of `keyspace.table` on node `n`, if the table exists there: the live table's, as Cassandra
/// reports it (a table dropped and created again leaves the old `<table>-<id>` directory behind, so the name alone
/// does not tell).
pub fn table_dir(node: usize, keyspace: &str, table: &str) -> Option<PathBuf> {
    let output = Command::new(env!("CARGO_BIN_EXE_daedalus"))
        .args(["jmx", "--jmx-service", &jmx_service(node), "get"])
        .arg(format!(
            "org.apache.cassandra.db:type=Tables,keyspace={keyspace},table={table}"
        ))
        .arg("DataPaths")
        .output()
        .expect("daedalus jmx runs");
    if !output.status.success() {
        return None;
    }
    let paths: Vec<String> = serde_json::from_slice(&output.stdout).expect("DataPaths, a list");
    paths.into_iter().next().map(PathBuf::from)
}

/// The names of the `truncated-*` snapshots (what TRUNCATE takes with `auto_snapshot`) of `keyspace.table` on node
/// `n`, sorted; none when the table does not exist.
pub fn truncation_snapshots(node: usize, keyspace: &str, table: &str) -> Vec<String> {
    let Some(dir) = table_dir(node, keyspace, table) else {
        return Vec::new();
    };
    let mut names: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("truncated-"))
        .collect();
    names.sort();
    names
}

/// The SSTables (`*-Data.db` files) of `keyspace.table` on node `n`.
pub fn sstables(node: usize, keyspace: &str, table: &str) -> std::collections::BTreeSet<String> {
    let Some(dir) = table_dir(node, keyspace, table) else {
        return Default::default();
    };
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with("-Data.db"))
                .collect()
        })
        .unwrap_or_default()
}

/// How many SSTables `keyspace.table` has on node `n`.
pub fn data_files(node: usize, keyspace: &str, table: &str) -> usize {
    sstables(node, keyspace, table).len()
}

/// Creates `keyspace.table (id int PRIMARY KEY, v text)` replicated to every node, holding `rows` rows.
pub fn table_with_rows(keyspace: &str, table: &str, rows: usize) {
    let replication = format!(
        "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
        nodes()
    );
    cql(
        1,
        &format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}"),
    );
    cql(
        1,
        &format!("CREATE TABLE IF NOT EXISTS {keyspace}.{table} (id int PRIMARY KEY, v text)"),
    );
    let inserts: String = (0..rows)
        .map(|id| format!("INSERT INTO {keyspace}.{table} (id, v) VALUES ({id}, 'value {id}');"))
        .collect();
    cql(1, &format!("BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"));
}

/// `SELECT count(*)` of a table, through node 1.
pub fn count(keyspace: &str, table: &str) -> i64 {
    cql(1, &format!("SELECT count(*) FROM {keyspace}.{table}"))[0][0]
        .parse()
        .expect("a count")
}

/// Stops Cassandra from compacting a table on its own, so its files hold still while a test copies them.
pub fn no_autocompaction(keyspace: &str, table: &str) {
    cql(
        1,
        &format!(
            "ALTER TABLE {keyspace}.{table} WITH compaction = {{'class': 'SizeTieredCompactionStrategy', 'enabled': 'false'}}"
        ),
    );
}

/// Holds node `node`'s SSTable files still for Esop 3.0.1 (run by `scripts/esop`, or by Icarus), which walks the
/// node's whole data directory after its snapshot (`Snapshots.parse`) and fails on the first file it listed that is
/// gone when it reads it: a compaction finishing mid-walk, in any keyspace, fails the run with `Unable to parse
/// snapshots` (`NoSuchFileException`). That race is Esop's; so that this suite does not lose it, no compaction starts
/// on the node while Esop runs, and the ones under way are waited out. A node start turns compaction on again, so
/// this is done before every run.
pub fn hold_files_still(node: usize) {
    let keyspaces: Vec<String> =
        serde_json::from_str(&jmx(node, &["--json", "get", STORAGE_SERVICE, "Keyspaces"]))
            .expect("the node's keyspaces as a JSON list");
    for keyspace in keyspaces {
        jmx(
            node,
            &[
                "invoke",
                STORAGE_SERVICE,
                "disableAutoCompaction",
                &format!("string:{keyspace}"),
                "string[]:",
            ],
        );
    }
    super::eventually("no compaction is running on the node", || {
        let running = jmx(
            node,
            &[
                "--json",
                "get",
                "org.apache.cassandra.db:type=CompactionManager",
                "Compactions",
            ],
        );
        (running.trim() == "[]").then_some(())
    });
}

pub const STORAGE_SERVICE: &str = "org.apache.cassandra.db:type=StorageService";

/// The snapshot directories of `keyspace` on node `n` taken under `tag`, in any of its tables: named `TAG`, or
/// `TAG-…` as a backup names its snapshot (`TAG-SCHEMA-MILLIS`).
pub fn snapshot_dirs(node: usize, keyspace: &str, tag: &str) -> Vec<PathBuf> {
    let keyspace = node_dir(node).join("data").join(keyspace);
    let under_tag = format!("{tag}-");
    let mut found = Vec::new();
    for table in std::fs::read_dir(&keyspace).into_iter().flatten().flatten() {
        for snapshot in std::fs::read_dir(table.path().join("snapshots"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = snapshot.file_name().to_string_lossy().into_owned();
            if name == tag || name.starts_with(&under_tag) {
                found.push(snapshot.path());
            }
        }
    }
    found
}

/// Copies the SSTable files (not the snapshots or backups below them) of a table directory into `target`.
pub fn copy_sstables(table_dir: &std::path::Path, target: &std::path::Path) -> usize {
    std::fs::create_dir_all(target).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(table_dir).unwrap().filter_map(Result::ok) {
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
            copied += 1;
        }
    }
    copied
}

/// `SELECT count(*)` read from every replica, so rows that only node 1 has loaded are counted.
pub fn count_all(keyspace: &str, table: &str) -> i64 {
    cql(
        1,
        &format!("CONSISTENCY ALL; SELECT count(*) FROM {keyspace}.{table}"),
    )[0][0]
        .parse()
        .expect("a count")
}

/// Stops node `n`.
pub fn stop(node: usize) {
    let _ = Command::new(script())
        .args(["stop", &node.to_string()])
        .output();
}

/// Starts nodes `first..first+count` as a cluster of their own, from empty directories (a test that changes
/// the ring, e.g. by decommissioning, leaves nodes that could not start again).
pub fn fresh_group(first: usize, count: usize) {
    for node in first..first + count {
        stop(node);
        let _ = std::fs::remove_dir_all(node_dir(node));
    }
    group(first, count);
}

/// Starts whichever of nodes `first..first+count` are down, as members of their own cluster, keeping their data.
pub fn group(first: usize, count: usize) {
    let output = Command::new(script())
        .args(["cluster", &first.to_string(), &count.to_string()])
        .output()
        .expect("scripts/cassandra runs");
    assert!(
        output.status.success(),
        "scripts/cassandra cluster failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts whichever of nodes `first..first+count` are down as a cluster of their own across two data centres
/// (`scripts/cassandra cluster-2dc`): nodes alternate between `dc1` and `dc2`, starting with `first` in `dc1`,
/// all in `rack1`. Nodes 13 and 14 are kept for it (`two_dc_group(13, 2)`: node 13 in dc1, node 14 in dc2). A node
/// whose directory holds data of another command's cluster does not start: remove it first.
pub fn two_dc_group(first: usize, count: usize) {
    script_or_panic(
        &["cluster-2dc", &first.to_string(), &count.to_string()],
        &[],
    );
}

/// Runs `daedalus jmx ARGS` against node `n` (test set-up that no operation does, e.g. a streaming limit);
/// returns its standard output.
pub fn jmx(node: usize, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_daedalus"))
        .args(["jmx", "--jmx-service", &jmx_service(node)])
        .args(args)
        .output()
        .expect("daedalus jmx runs");
    assert!(
        output.status.success(),
        "daedalus jmx {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What node `n` has logged since it last started.
pub fn log(node: usize) -> String {
    std::fs::read_to_string(node_dir(node).join("logs/system.log")).unwrap_or_default()
}

/// `count` CSV rows `id,text` whose text (`width` characters) does not compress, so it streams at full size.
pub fn incompressible_rows(count: usize, width: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut text = String::with_capacity(count * (width + 8));
    for id in 0..count {
        text.push_str(&format!("{id},"));
        for _ in 0..width {
            // xorshift64: enough entropy that LZ4 finds nothing to shrink.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push(ALPHABET[(state % 64) as usize] as char);
        }
        text.push('\n');
    }
    text
}

/// Loads `count` rows of `width` incompressible characters into `keyspace.table (id int PRIMARY KEY, v text)` through
/// node `n`, with COPY (fast enough for tens of MiB).
pub fn load_rows(node: usize, keyspace: &str, table: &str, count: usize, width: usize) {
    let rows = std::env::temp_dir().join(format!(
        "daedalus-rows-{}-{keyspace}-{table}.csv",
        std::process::id()
    ));
    std::fs::write(&rows, incompressible_rows(count, width)).unwrap();
    cql(
        node,
        &format!(
            "COPY {keyspace}.{table} (id, v) FROM '{}' WITH MAXBATCHSIZE = 1",
            rows.display()
        ),
    );
    std::fs::remove_file(&rows).unwrap();
    flush(node, keyspace, table);
}

/// Flushes `keyspace.table` on node `n`, waiting for it and for a flush already under way. Tests flush what they
/// load before backing it up: a snapshot flushes the memtable it finds, but does not wait for one Cassandra is
/// already flushing by itself (a full commit-log segment flushes every dirty table), and then misses its rows (seen
/// on 4.1: the flush of the test's rows completed 20 ms after the backup's snapshot, which held only older files).
pub fn flush(node: usize, keyspace: &str, table: &str) {
    jmx(
        node,
        &[
            "invoke",
            STORAGE_SERVICE,
            "forceKeyspaceFlush",
            &format!("string:{keyspace}"),
            &format!("string[]:{table}"),
        ],
    );
}
