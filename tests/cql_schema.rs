//! Recreating a dropped table from its snapshot's `schema.cql` over CQL (`daedalus_operations::cql`), against the
//! real Cassandra cluster: the table comes back with its original id, in its original directory, and the
//! snapshot's SSTables load into it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::path::Path;

use daedalus_operations::cql::{CqlError, CqlSession, CqlSettings};
use serde_json::json;
use support::{Sidecar, cassandra, run};
use uuid::Uuid;

const KEYSPACE: &str = "cql_schema_test";
const ROWS: usize = 20;

fn table_id_by_cqlsh(table: &str) -> Option<Uuid> {
    let rows = cassandra::cql(
        1,
        &format!(
            "SELECT id FROM system_schema.tables WHERE keyspace_name = '{KEYSPACE}' AND table_name = '{table}'"
        ),
    );
    rows.first()
        .map(|row| Uuid::parse_str(&row[0]).expect("a uuid"))
}

/// Copies the SSTable components of a snapshot (not its manifest.json and schema.cql) into `target`.
fn copy_snapshot_sstables(snapshot: &Path, target: &Path) -> usize {
    std::fs::create_dir_all(target).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(snapshot).unwrap().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let component = [".db", ".txt", ".crc32"]
            .iter()
            .any(|ext| name.ends_with(ext));
        if entry.file_type().unwrap().is_file() && component {
            std::fs::copy(entry.path(), target.join(&name)).unwrap();
            copied += 1;
        }
    }
    copied
}

#[test]
fn a_dropped_table_comes_back_with_its_id_and_its_rows() {
    cassandra::cluster();
    let sidecar = Sidecar::start(&["--jmx-service", &cassandra::jmx_service(1)]);
    let replication = format!(
        "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
        cassandra::nodes()
    );
    // A clean keyspace of this test's own, whatever an earlier run left.
    cassandra::cql(1, &format!("DROP KEYSPACE IF EXISTS {KEYSPACE}"));
    cassandra::cql(
        1,
        &format!("CREATE KEYSPACE {KEYSPACE} WITH replication = {replication}"),
    );
    cassandra::cql(
        1,
        &format!("CREATE TYPE {KEYSPACE}.address (street text, \"Zip\" int)"),
    );
    cassandra::cql(
        1,
        &format!(
            "CREATE TABLE {KEYSPACE}.orders (id int PRIMARY KEY, ship frozen<address>, note text, gone int) \
             WITH comment = 'orders; it''s -- a $$ test'"
        ),
    );
    cassandra::cql(1, &format!("ALTER TABLE {KEYSPACE}.orders DROP gone"));
    cassandra::cql(
        1,
        &format!("CREATE INDEX orders_note ON {KEYSPACE}.orders (note)"),
    );
    let inserts: String = (0..ROWS)
        .map(|id| {
            format!(
                "INSERT INTO {KEYSPACE}.orders (id, ship, note) VALUES ({id}, {{street: 'street {id}', \"Zip\": {id}}}, 'note {id}');"
            )
        })
        .collect();
    cassandra::cql(1, &format!("BEGIN UNLOGGED BATCH {inserts} APPLY BATCH"));
    let original_id = table_id_by_cqlsh("orders").expect("the table exists");

    let tag = format!("cql-schema-{}", std::process::id());
    run(
        &sidecar,
        json!({"type": "snapshot", "snapshotTag": tag, "entities": KEYSPACE}),
        "COMPLETED",
    );
    let table_dir = cassandra::table_dir(1, KEYSPACE, "orders").unwrap();
    let snapshot = table_dir.join("snapshots").join(&tag);
    let schema =
        std::fs::read_to_string(snapshot.join("schema.cql")).expect("the snapshot's schema.cql");
    assert!(schema.contains("CREATE TYPE IF NOT EXISTS"), "{schema}");
    assert!(
        schema.contains("CREATE INDEX IF NOT EXISTS orders_note"),
        "{schema}"
    );
    let saved = tempfile::tempdir().unwrap();
    assert!(copy_snapshot_sstables(&snapshot, saved.path()) > 0);

    cassandra::cql(1, &format!("DROP TABLE {KEYSPACE}.orders"));
    assert_eq!(table_id_by_cqlsh("orders"), None);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let session = runtime
        .block_on(CqlSession::connect(&CqlSettings::default()))
        .expect("connects to node 1");
    assert!(runtime.block_on(session.keyspace_exists(KEYSPACE)).unwrap());
    assert_eq!(
        runtime
            .block_on(session.table_id(KEYSPACE, "orders"))
            .unwrap(),
        None
    );

    let id = runtime
        .block_on(session.recreate_table(KEYSPACE, "orders", &schema))
        .expect("the table is recreated");
    assert_eq!(id, original_id);
    assert_eq!(table_id_by_cqlsh("orders"), Some(original_id));
    let indexes = cassandra::cql(
        1,
        &format!(
            "SELECT index_name FROM system_schema.indexes WHERE keyspace_name = '{KEYSPACE}' AND table_name = 'orders'"
        ),
    );
    assert_eq!(indexes, [["orders_note"]]);
    // Every node has the table in the directory named by the original id, where restored SSTables go.
    let simple_id = original_id.simple().to_string();
    for node in 1..=cassandra::nodes() {
        let dir = cassandra::table_dir(node, KEYSPACE, "orders").expect("the table directory");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, format!("orders-{simple_id}"), "node {node}");
    }

    // The snapshot's files load into the recreated table.
    assert_eq!(cassandra::count_all(KEYSPACE, "orders"), 0);
    copy_snapshot_sstables(saved.path(), &table_dir);
    run(
        &sidecar,
        json!({"type": "refresh", "keyspace": KEYSPACE, "table": "orders"}),
        "COMPLETED",
    );
    assert_eq!(cassandra::count_all(KEYSPACE, "orders") as usize, ROWS);
    let row = cassandra::cql(
        1,
        &format!("CONSISTENCY ALL; SELECT ship FROM {KEYSPACE}.orders WHERE id = 7"),
    );
    assert!(row[0][0].contains("'street 7'"), "{row:?}");

    // Again: the table is there with the same id, so nothing is run and its id comes back.
    let again = runtime
        .block_on(session.recreate_table(KEYSPACE, "orders", &schema))
        .expect("an existing table with the same id is fine");
    assert_eq!(again, original_id);

    // A schema carrying another id for the existing table: refused, naming both ids.
    let other_id = Uuid::from_u128(0x1234_5678);
    let other_schema = schema.replace(&original_id.to_string(), &other_id.to_string());
    let error = runtime
        .block_on(session.recreate_table(KEYSPACE, "orders", &other_schema))
        .unwrap_err();
    assert!(matches!(error, CqlError::IdMismatch { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&original_id.to_string()) && message.contains(&other_id.to_string()),
        "{message}"
    );

    // A keyspace that does not exist: refused, naming it.
    let missing = "cql_schema_test_missing";
    let elsewhere = schema.replace(KEYSPACE, missing);
    let error = runtime
        .block_on(session.recreate_table(missing, "orders", &elsewhere))
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(missing) && message.contains("create the keyspace first"),
        "{message}"
    );

    run(
        &sidecar,
        json!({"type": "clear-snapshot", "snapshotTag": tag, "keyspaces": [KEYSPACE]}),
        "COMPLETED",
    );
}
