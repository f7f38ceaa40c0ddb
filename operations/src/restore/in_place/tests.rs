//! Tests over real directories: the plan, the node directories and the cassandra.yaml edit.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::esop::manifest::ManifestEntry;
use crate::node_fs::{NodeDirs, RelPath, Root, Target, read_yaml_dirs};

const ID: &str = "0123456789abcdef0123456789abcdef";
const OTHER_ID: &str = "fedcba9876543210fedcba9876543210";

fn entry(key: &str, size: u64) -> ManifestEntry {
    ManifestEntry::file(
        format!("data/ks/t-{ID}/{key}"),
        size,
        Some(format!("hash-{size}")),
    )
}

/// ks.t with three SSTables: nb-1 (digest 111), nb-2 (digest 222), and nb-3 (digest 333) of index `.t_v_idx`.
fn table() -> SelectedTable {
    SelectedTable {
        keyspace: "ks".into(),
        table: "t".into(),
        id: ID.into(),
        entries: vec![
            entry("1-111/nb-1-big-Data.db", 10),
            entry("1-111/nb-1-big-Index.db", 11),
            entry("1-111/nb-1-big-Digest.crc32", 3),
            entry("2-222/nb-2-big-Data.db", 20),
            entry("2-222/nb-2-big-Digest.crc32", 3),
            entry(".t_v_idx/3-333/nb-3-big-Data.db", 30),
            entry(".t_v_idx/3-333/nb-3-big-Digest.crc32", 3),
        ],
    }
}

fn write(path: &Path, contents: &[u8]) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, contents).expect("write");
}

fn data_dirs(root: &Path) -> Vec<PathBuf> {
    vec![root.join("d0"), root.join("d1")]
}

/// The data directories as roots, created.
fn roots(dirs: &[PathBuf]) -> Vec<Arc<Root>> {
    dirs.iter()
        .map(|dir| Arc::new(Root::open_creating(dir).expect("root")))
        .collect()
}

fn paths(targets: &[Target]) -> Vec<PathBuf> {
    targets.iter().map(Target::display).collect()
}

fn table_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("ks").join(format!("t-{id}"))
}

fn downloads(plan: &LocalPlan, root: &Path) -> Vec<(String, String)> {
    plan.downloads
        .iter()
        .map(|file| {
            let key = file.object_key.rsplit('/').next().expect("name").to_owned();
            let path = file
                .target
                .display()
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            (key, path)
        })
        .collect()
}

#[test]
fn fresh_node_downloads_everything_round_robin_by_sstable() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = data_dirs(root.path());
    let plan = plan(&[table()], &roots(&dirs)).expect("plan");
    let t = format!("t-{ID}");
    let expected: Vec<(String, String)> = [
        ("nb-1-big-Data.db", format!("d0/ks/{t}/nb-1-big-Data.db")),
        ("nb-1-big-Index.db", format!("d0/ks/{t}/nb-1-big-Index.db")),
        (
            "nb-1-big-Digest.crc32",
            format!("d0/ks/{t}/nb-1-big-Digest.crc32"),
        ),
        ("nb-2-big-Data.db", format!("d1/ks/{t}/nb-2-big-Data.db")),
        (
            "nb-2-big-Digest.crc32",
            format!("d1/ks/{t}/nb-2-big-Digest.crc32"),
        ),
        (
            "nb-3-big-Data.db",
            format!("d0/ks/{t}/.t_v_idx/nb-3-big-Data.db"),
        ),
        (
            "nb-3-big-Digest.crc32",
            format!("d0/ks/{t}/.t_v_idx/nb-3-big-Digest.crc32"),
        ),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b))
    .collect();
    assert_eq!(downloads(&plan, root.path()), expected);
    assert_eq!(plan.downloads[0].size, 10);
    assert_eq!(plan.downloads[0].hash.as_deref(), Some("hash-10"));
    assert_eq!(plan.download_size(), 10 + 11 + 3 + 20 + 3 + 30 + 3);
    assert!(plan.keep.is_empty() && plan.delete.is_empty() && plan.other_table_dirs.is_empty());
    // Planning reads only: the table directories are made by the downloads.
    assert!(!table_dir(&dirs[0], ID).exists());
}

#[test]
fn existing_node_keeps_matching_files_and_deletes_the_rest_of_the_restored_table_only() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = data_dirs(root.path());
    let live = table_dir(&dirs[1], ID);
    // nb-1 is the manifest's SSTable (digest 111): Data.db kept, Index.db has another size, so replaced.
    write(&live.join("nb-1-big-Data.db"), &[0; 10]);
    write(&live.join("nb-1-big-Index.db"), &[0; 5]);
    write(&live.join("nb-1-big-Digest.crc32"), b"111");
    write(&live.join("nb-1-big-Summary.db"), b"not in the manifest");
    // nb-2 has the right name but another digest: a different SSTable.
    write(&live.join("nb-2-big-Data.db"), &[0; 20]);
    write(&live.join("nb-2-big-Digest.crc32"), b"999");
    // nb-4 is not in the backup at all; nb-3 of the index sits in the other data directory and matches.
    write(&live.join("nb-4-big-Data.db"), b"x");
    let index = table_dir(&dirs[0], ID).join(".t_v_idx");
    write(&index.join("nb-3-big-Data.db"), &[0; 30]);
    write(&index.join("nb-3-big-Digest.crc32"), b"333");
    // Never touched: snapshots, backups, transaction logs, other tables, the same table under another id.
    let untouched = [
        live.join("snapshots/s1/nb-9-big-Data.db"),
        live.join("backups/nb-8-big-Data.db"),
        live.join("nb_txn_flush_0f8b2e70-1a2b-11ee-9c3c-5d4d5e2b7c1f.log"),
        dirs[1].join(format!("ks/u-{ID}/nb-1-big-Data.db")),
        table_dir(&dirs[0], OTHER_ID).join("nb-1-big-Data.db"),
    ];
    for path in &untouched {
        write(path, b"x");
    }

    let plan = plan(&[table()], &roots(&dirs)).expect("plan");

    let kept_paths: Vec<PathBuf> = plan.keep.iter().map(|f| f.target.display()).collect();
    let kept: Vec<(&str, &Path)> = plan
        .keep
        .iter()
        .zip(&kept_paths)
        .map(|(f, path)| (f.object_key.as_str(), path.as_path()))
        .collect();
    let key1 = format!("data/ks/t-{ID}/1-111/nb-1-big-Data.db");
    let key2 = format!("data/ks/t-{ID}/1-111/nb-1-big-Digest.crc32");
    let key3 = format!("data/ks/t-{ID}/.t_v_idx/3-333/nb-3-big-Data.db");
    let key4 = format!("data/ks/t-{ID}/.t_v_idx/3-333/nb-3-big-Digest.crc32");
    let data1 = live.join("nb-1-big-Data.db");
    let digest1 = live.join("nb-1-big-Digest.crc32");
    let data3 = index.join("nb-3-big-Data.db");
    let digest3 = index.join("nb-3-big-Digest.crc32");
    assert_eq!(
        kept,
        vec![
            (key3.as_str(), data3.as_path()),
            (key4.as_str(), digest3.as_path()),
            (key1.as_str(), data1.as_path()),
            (key2.as_str(), digest1.as_path()),
        ]
    );
    assert_eq!(
        plan.keep[0].hash.as_deref(),
        Some("hash-30"),
        "kept files carry the hash to verify"
    );
    // nb-1's Index.db is replaced by its download (renamed over it), not deleted first; nb-2's files are not
    // replaced, as its download goes to the other data directory.
    let mut expected_delete = vec![
        live.join("nb-1-big-Summary.db"),
        live.join("nb-2-big-Data.db"),
        live.join("nb-2-big-Digest.crc32"),
        live.join("nb-4-big-Data.db"),
    ];
    expected_delete.sort();
    assert_eq!(paths(&plan.delete), expected_delete);
    let t = format!("t-{ID}");
    assert_eq!(
        downloads(&plan, root.path()),
        vec![
            // Beside the kept components of nb-1, not where the round robin would put it.
            (
                "nb-1-big-Index.db".to_owned(),
                format!("d1/ks/{t}/nb-1-big-Index.db")
            ),
            // The first SSTable without a home starts the round robin.
            (
                "nb-2-big-Data.db".to_owned(),
                format!("d0/ks/{t}/nb-2-big-Data.db")
            ),
            (
                "nb-2-big-Digest.crc32".to_owned(),
                format!("d0/ks/{t}/nb-2-big-Digest.crc32")
            ),
        ]
    );
    assert_eq!(
        plan.other_table_dirs,
        vec![OtherTableDir {
            keyspace: "ks".into(),
            table: "t".into(),
            manifest_id: ID.into(),
            path: table_dir(&dirs[0], OTHER_ID),
        }]
    );
    for path in &untouched {
        assert!(
            !paths(&plan.delete).contains(path) && path.exists(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn the_same_sstable_in_two_data_dirs_is_kept_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = data_dirs(root.path());
    for dir in &dirs {
        write(&table_dir(dir, ID).join("nb-2-big-Data.db"), &[0; 20]);
        write(&table_dir(dir, ID).join("nb-2-big-Digest.crc32"), b"222");
    }
    let plan = plan(&[table()], &roots(&dirs)).expect("plan");
    assert_eq!(plan.keep.len(), 2);
    assert!(
        plan.keep
            .iter()
            .all(|f| f.target.display().starts_with(&dirs[0]))
    );
    assert_eq!(
        paths(&plan.delete),
        vec![
            table_dir(&dirs[1], ID).join("nb-2-big-Data.db"),
            table_dir(&dirs[1], ID).join("nb-2-big-Digest.crc32")
        ]
    );
}

#[test]
fn object_keys_from_the_bucket_cannot_leave_the_table_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = data_dirs(root.path());
    for key in [
        "data/ks/t-x/../1-1/nb-1-big-Data.db".to_owned(),
        format!("data/other/t-{ID}/1-1/nb-1-big-Data.db"),
        format!("data/ks/t-{ID}/1-1/../../nb-1-big-Data.db"),
        format!("data/ks/t-{ID}/1-1/schema.cql"),
        format!("data/ks/t-{ID}/1-1/nb-1-pwn.sh"),
        format!("data/ks/t-{ID}/2-1/nb-1-big-Data.db"),
        format!("ks/t-{ID}/1-1/nb-1-big-Data.db"),
    ] {
        let mut table = table();
        table.entries = vec![ManifestEntry::file(key.clone(), 1, None)];
        let error = plan(&[table], &roots(&dirs)).expect_err(&key);
        assert!(matches!(error, PlanError::BadName(_)), "{key}: {error}");
        assert!(error.to_string().contains(&key), "{error}");
    }
}

#[test]
fn names_of_the_manifest_are_checked_before_anything_is_read() {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = data_dirs(root.path());
    for (keyspace, name, id) in [
        ("..", "t", ID),
        ("ks", "a/b", ID),
        ("ks", "t", "x/../../../../outside/victim"),
        ("ks", "t", ""),
    ] {
        let mut table = table();
        (table.keyspace, table.table, table.id) = (keyspace.into(), name.into(), id.into());
        let error = plan(&[table], &roots(&dirs))
            .expect_err(keyspace)
            .to_string();
        assert!(error.contains("nothing was written or deleted"), "{error}");
    }
}

#[test]
fn no_data_dir_or_table_id_is_an_error() {
    assert!(matches!(plan(&[table()], &[]), Err(PlanError::NoDataDirs)));
    let root = tempfile::tempdir().expect("tempdir");
    let mut table = table();
    table.id.clear();
    let error = plan(&[table], &roots(&data_dirs(root.path()))).expect_err("no id");
    assert!(
        error
            .to_string()
            .contains("the manifest has no table id for it"),
        "{error}"
    );
}

#[test]
fn yaml_dirs_default_under_the_cassandra_dir() {
    let root = tempfile::tempdir().expect("tempdir");
    let yaml = root.path().join("cassandra.yaml");
    // As shipped: every directory commented out.
    fs::write(
        &yaml,
        "cluster_name: 'Test Cluster'\n# data_file_directories:\n#     - /var/lib/cassandra/data\n\
         # commitlog_directory: /var/lib/cassandra/commitlog\nhints_directory:\n",
    )
    .expect("write");
    let dirs = read_yaml_dirs(&yaml, Path::new("/var/lib/cassandra")).expect("dirs");
    assert_eq!(dirs, NodeDirs::defaults(Path::new("/var/lib/cassandra")));
    assert_eq!(dirs.data, vec![PathBuf::from("/var/lib/cassandra/data")]);
    assert_eq!(dirs.hints, PathBuf::from("/var/lib/cassandra/hints"));
}

#[test]
fn yaml_dirs_as_set() {
    let root = tempfile::tempdir().expect("tempdir");
    let yaml = root.path().join("cassandra.yaml");
    // The layout scripts/cassandra writes for its test nodes, plus JBOD and a local system directory.
    fs::write(
        &yaml,
        "num_tokens: 1\ndata_file_directories: [/n/data1, /n/data2]\n\
         local_system_data_file_directory: /n/system\ncommitlog_directory: /n/commitlog\n\
         saved_caches_directory: /n/saved_caches\nhints_directory: /n/hints\n",
    )
    .expect("write");
    let dirs = read_yaml_dirs(&yaml, Path::new("/ignored")).expect("dirs");
    assert_eq!(
        dirs,
        NodeDirs {
            data: vec!["/n/data1".into(), "/n/data2".into()],
            local_system_data: Some("/n/system".into()),
            commitlog: "/n/commitlog".into(),
            saved_caches: "/n/saved_caches".into(),
            hints: "/n/hints".into(),
        }
    );
    assert_eq!(
        dirs.data_dirs_for("system_schema"),
        [PathBuf::from("/n/system")]
    );
    assert_eq!(dirs.data_dirs_for("ks").len(), 2);
}

#[test]
fn yaml_dirs_errors_name_the_file_and_field() {
    let root = tempfile::tempdir().expect("tempdir");
    let yaml = root.path().join("cassandra.yaml");
    fs::write(&yaml, "data_file_directories: /one/path\n").expect("write");
    let error = read_yaml_dirs(&yaml, root.path()).expect_err("not a list");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: data_file_directories is not a list of paths",
            yaml.display()
        )
    );
    let missing = root.path().join("missing.yaml");
    assert!(
        read_yaml_dirs(&missing, root.path())
            .expect_err("missing")
            .to_string()
            .starts_with(&format!("reading {}", missing.display()))
    );
}

#[test]
fn clean_node_dirs_empties_but_keeps_the_directories() {
    let root = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    fs::write(outside.path().join("secret"), b"s").expect("write");
    let cassandra = root.path();
    let dirs = NodeDirs::defaults(cassandra);
    write(&dirs.hints.join("a-1-1.hints"), b"h");
    write(&dirs.saved_caches.join("KeyCache-f.db"), b"k");
    write(&dirs.commitlog.join("CommitLog-7-1.log"), b"c");
    write(&cassandra.join("commitlogs/CommitLog-7-2.log"), b"c");
    write(&cassandra.join("commitlogs/sub/x"), b"c");
    // A symbolic link in a cleaned directory is removed as a link: what it points to stays.
    std::os::unix::fs::symlink(outside.path(), cassandra.join("commitlogs/sub/out"))
        .expect("symlink");
    write(&dirs.data[0].join("ks/t-1/nb-1-big-Data.db"), b"d");
    let report = clean_node_dirs(cassandra, &dirs).expect("clean");
    assert_eq!(fs::read(outside.path().join("secret")).expect("kept"), b"s");
    assert_eq!(
        report.removed,
        vec![
            dirs.hints.join("a-1-1.hints"),
            dirs.saved_caches.join("KeyCache-f.db"),
            dirs.commitlog.join("CommitLog-7-1.log"),
            cassandra.join("commitlogs/CommitLog-7-2.log"),
            cassandra.join("commitlogs/sub"),
        ]
    );
    for dir in [
        &dirs.hints,
        &dirs.saved_caches,
        &dirs.commitlog,
        &cassandra.join("commitlogs"),
    ] {
        assert!(dir.is_dir() && fs::read_dir(dir).expect("list").next().is_none());
    }
    assert!(dirs.data[0].join("ks/t-1/nb-1-big-Data.db").exists());
    // Missing directories are nothing to clean.
    let empty = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        clean_node_dirs(empty.path(), &NodeDirs::defaults(empty.path())).expect("clean"),
        CleanReport::default()
    );
}

#[test]
fn clean_node_dirs_refuses_a_directory_holding_data() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut dirs = NodeDirs::defaults(root.path());
    write(&dirs.data[0].join("ks/t-1/nb-1-big-Data.db"), b"d");
    dirs.commitlog = root.path().to_owned();
    let error = clean_node_dirs(root.path(), &dirs).expect_err("refused");
    assert!(matches!(error, CleanError::HoldsData { .. }), "{error}");
    assert!(dirs.data[0].join("ks/t-1/nb-1-big-Data.db").exists());
}

/// The token part of Cassandra 4.1/5.0's shipped cassandra.yaml, in its layout: `num_tokens: 16`, token allocation,
/// a commented-out `initial_token:`, and no `auto_bootstrap` at all.
const SHIPPED: &str = "\
# Cassandra storage config YAML

cluster_name: 'Test Cluster'

# This defines the number of tokens randomly assigned to this node on the ring
num_tokens: 16

# Replica factor is explicitly set, regardless of keyspace or datacenter.
allocate_tokens_for_local_replication_factor: 3

# initial_token allows you to specify tokens manually.
# initial_token:

# May either be \"true\" or \"false\" to enable globally
hinted_handoff_enabled: true

# Directory where Cassandra should store hints.
# hints_directory: /var/lib/cassandra/hints
";

fn tokens(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

#[test]
fn yaml_edit_of_the_shipped_file() {
    let (edited, change) =
        edit_cassandra_yaml(SHIPPED, &tokens(&["-3", "-9223372036854775808", "5"])).expect("edit");
    let expected = SHIPPED.replace(
        "num_tokens: 16\n",
        "# Set by the restore: num_tokens must equal the number of tokens in initial_token.\nnum_tokens: 3\n",
    ) + "auto_bootstrap: false\ninitial_token: -3,-9223372036854775808,5\n";
    assert_eq!(edited, expected);
    assert_eq!(
        change,
        YamlChange {
            auto_bootstrap: AutoBootstrap::Appended,
            initial_token: InitialToken::Set,
            num_tokens: Some((Some("16".into()), 3)),
        }
    );
}

#[test]
fn yaml_edit_turns_auto_bootstrap_off_and_fills_an_empty_initial_token() {
    let text = "auto_bootstrap: true # stream on join\nnum_tokens: 1\ninitial_token:\n";
    let (edited, change) = edit_cassandra_yaml(text, &tokens(&["42"])).expect("edit");
    assert_eq!(
        edited,
        "auto_bootstrap: false\nnum_tokens: 1\ninitial_token: 42\n"
    );
    assert_eq!(change.auto_bootstrap, AutoBootstrap::Changed);
    assert_eq!(change.initial_token, InitialToken::Set);
    assert_eq!(change.num_tokens, None);
}

#[test]
fn yaml_edit_keeps_an_existing_initial_token_and_says_whether_it_differs() {
    // scripts/cassandra's test nodes: one token, bootstrap already off.
    let text = "num_tokens: 1\ninitial_token: -9223372036854775808\nauto_bootstrap: false\n";
    let (edited, change) =
        edit_cassandra_yaml(text, &tokens(&["-9223372036854775808"])).expect("edit");
    assert_eq!(edited, text);
    assert_eq!(
        change.initial_token,
        InitialToken::Kept {
            existing: "-9223372036854775808".into(),
            differs_from_backup: false
        }
    );
    assert!(!change.changed_file());
    let (_, change) = edit_cassandra_yaml(text, &tokens(&["7"])).expect("edit");
    assert_eq!(
        change.initial_token,
        InitialToken::Kept {
            existing: "-9223372036854775808".into(),
            differs_from_backup: true
        }
    );
}

#[test]
fn yaml_edit_refuses_a_file_that_is_not_yaml() {
    let error = edit_cassandra_yaml("a: [unclosed\n", &tokens(&["1"])).expect_err("invalid");
    assert!(!error.to_string().is_empty());
}

#[test]
fn update_cassandra_yaml_rewrites_the_file_in_place() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("tempdir");
    let path = root.path().join("cassandra.yaml");
    fs::write(&path, SHIPPED).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    let config = Root::open(root.path()).expect("root");
    let yaml = RelPath::name("cassandra.yaml").expect("name");
    let change = update_cassandra_yaml(&config, &yaml, &tokens(&["1", "2"])).expect("update");
    assert!(change.changed_file());
    let text = fs::read_to_string(&path).expect("read");
    assert!(
        text.starts_with("# Cassandra storage config YAML\n"),
        "comments stay"
    );
    assert!(
        text.ends_with("auto_bootstrap: false\ninitial_token: 1,2\n"),
        "{text}"
    );
    assert!(text.contains("\nnum_tokens: 2\n"));
    let mode = fs::metadata(&path).expect("metadata").permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    // Running it again changes nothing.
    let again = update_cassandra_yaml(&config, &yaml, &tokens(&["1", "2"])).expect("update");
    assert!(!again.changed_file());
    assert_eq!(fs::read_to_string(&path).expect("read"), text);

    assert!(matches!(
        update_cassandra_yaml(&config, &yaml, &[]),
        Err(YamlError::NoTokens)
    ));
    // A token from a hostile manifest that would add a setting of its own.
    let error = update_cassandra_yaml(&config, &yaml, &tokens(&["1\nhints_directory: /etc"]))
        .expect_err("bad");
    assert!(matches!(error, YamlError::BadToken { .. }), "{error}");
    assert_eq!(fs::read_to_string(&path).expect("read"), text);
    fs::write(&path, "a: [unclosed\n").expect("write");
    let error = update_cassandra_yaml(&config, &yaml, &tokens(&["1"])).expect_err("invalid");
    assert!(matches!(error, YamlError::Invalid { .. }), "{error}");
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "a: [unclosed\n",
        "left unchanged"
    );
}
