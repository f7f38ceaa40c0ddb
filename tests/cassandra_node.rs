//! The Cassandra facade and the node endpoints against a real Cassandra cluster on 127.0.0.1-N (5.0 with three
//! nodes by default; `scripts/test` also runs them on a single 4.1 node), each answer checked against what CQL or
//! the filesystem says.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::collections::BTreeSet;

use daedalus_operations::cassandra::Cassandra;
use jmx::{JmxClient, JmxConfig};
use serde_json::json;
use support::Sidecar;
use support::cassandra::{self, nodes};

async fn facade(node: usize) -> Cassandra {
    cassandra::cluster();
    let client =
        JmxClient::connect(JmxConfig::from_service(&cassandra::jmx_service(node)).unwrap())
            .await
            .expect("JMX connects to the node");
    Cassandra::new(client)
}

fn host_ids_by_cql() -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = cassandra::cql(1, "SELECT host_id FROM system.local")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    ids.extend(
        cassandra::cql(1, "SELECT host_id FROM system.peers")
            .into_iter()
            .map(|r| r[0].clone()),
    );
    ids
}

#[tokio::test]
async fn identity_and_ring_match_cql() {
    let node = facade(1).await;
    let version = node.release_version().await.unwrap();
    assert_eq!(version.to_string(), cassandra::version());
    let cql_version = &cassandra::cql(1, "SELECT release_version FROM system.local")[0][0];
    assert_eq!(&version.to_string(), cql_version);
    assert_eq!(node.operation_mode().await.unwrap(), "NORMAL");
    assert_eq!(node.cluster_name().await.unwrap(), "daedalus-test");

    let local = &cassandra::cql(1, "SELECT host_id FROM system.local")[0];
    assert_eq!(node.local_host_id().await.unwrap(), local[0]);
    // Other tests change the schema concurrently: compare once it holds still.
    let mut agreed = false;
    for _ in 0..50 {
        let by_jmx = node.schema_version().await.unwrap();
        let by_cql = cassandra::cql(1, "SELECT schema_version FROM system.local")[0][0].clone();
        if by_jmx == by_cql {
            agreed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(agreed, "JMX and CQL agree on the schema version");
    assert_eq!(
        node.tokens().await.unwrap(),
        ["-9223372036854775808"],
        "the harness's token for node 1"
    );

    let ring = node.endpoint_to_host_id().await.unwrap();
    let addresses: Vec<String> = ring.keys().cloned().collect();
    let expected: Vec<String> = (1..=nodes()).map(|n| format!("127.0.0.{n}")).collect();
    assert_eq!(addresses, expected);
    assert_eq!(
        ring.values().cloned().collect::<BTreeSet<_>>(),
        host_ids_by_cql()
    );

    let mut live = node.live_nodes().await.unwrap();
    live.sort();
    assert_eq!(live, expected);
    assert!(node.unreachable_nodes().await.unwrap().is_empty());
    assert!(node.joining_nodes().await.unwrap().is_empty());
    assert!(node.leaving_nodes().await.unwrap().is_empty());
    assert!(node.moving_nodes().await.unwrap().is_empty());
}

#[tokio::test]
async fn data_centre_and_rack_are_the_snitchs() {
    let last = nodes();
    let node = facade(last).await;
    let cql = &cassandra::cql(last, "SELECT data_center, rack FROM system.local")[0];
    assert_eq!(node.local_datacenter().await.unwrap(), cql[0]);
    assert_eq!(node.local_rack().await.unwrap(), cql[1]);
    for member in node.ring().await.unwrap() {
        assert_eq!(
            (member.datacenter.as_str(), member.rack.as_str()),
            ("datacenter1", "rack1"),
            "{member:?}"
        );
    }
}

#[tokio::test]
async fn directories_exist_where_cassandra_says() {
    let node = facade(1).await;
    let data = node.data_file_locations().await.unwrap();
    assert_eq!(
        data,
        [cassandra::node_dir(1).join("data").display().to_string()]
    );
    for dir in data.iter().chain([
        &node.commitlog_location().await.unwrap(),
        &node.saved_caches_location().await.unwrap(),
    ]) {
        assert!(std::path::Path::new(dir).is_dir(), "{dir} exists");
    }
}

#[tokio::test]
async fn keyspaces_tables_and_snapshots() {
    let node = facade(1).await;
    cassandra::cql(
        1,
        "CREATE KEYSPACE IF NOT EXISTS facade_ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
    );
    cassandra::cql(
        1,
        "CREATE TABLE IF NOT EXISTS facade_ks.t1 (id int PRIMARY KEY, v text)",
    );
    cassandra::cql(1, "INSERT INTO facade_ks.t1 (id, v) VALUES (1, 'one')");
    let keyspaces = node.keyspaces().await.unwrap();
    assert!(
        keyspaces.contains(&"facade_ks".to_string())
            && keyspaces.contains(&"system_schema".to_string()),
        "{keyspaces:?}"
    );
    assert_eq!(node.tables("facade_ks").await.unwrap(), ["t1"]);

    let tag = format!("facade-{}", std::process::id());
    node.take_snapshot(&tag, &["facade_ks".to_string()], None, false)
        .await
        .unwrap();
    let table_dir = std::fs::read_dir(cassandra::node_dir(1).join("data/facade_ks"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("t1-"))
        .expect("the table's data directory");
    let snapshot_dir = table_dir.join("snapshots").join(&tag);
    assert!(
        snapshot_dir.is_dir(),
        "{} exists after the snapshot",
        snapshot_dir.display()
    );
    assert!(
        std::fs::read_dir(&snapshot_dir).unwrap().count() > 0,
        "the snapshot holds files"
    );
    let listed = node.snapshots().await.unwrap();
    assert_eq!(
        listed.get(&tag),
        Some(&vec![("facade_ks".to_string(), "t1".to_string())])
    );

    node.clear_snapshot(&tag, &["facade_ks".to_string()])
        .await
        .unwrap();
    assert!(
        !snapshot_dir.exists(),
        "{} is gone after clearing",
        snapshot_dir.display()
    );
    assert!(!node.snapshots().await.unwrap().contains_key(&tag));
}

#[test]
fn node_endpoints_answer_from_cassandra() {
    cassandra::cluster();
    let yaml = cassandra::node_dir(1).join("conf/cassandra.yaml");
    let service = cassandra::jmx_service(1);
    let sidecar = Sidecar::start(&[
        "--jmx-service",
        &service,
        "--cassandra-config",
        yaml.to_str().unwrap(),
    ]);
    let client = sidecar.client();

    assert_eq!(client.get("/status").json(), json!({"nodeState": "NORMAL"}));
    assert_eq!(client.get("/health/ready").json(), json!({"status": "UP"}));
    let version = client.get("/version/cassandra").json();
    let expected = cassandra::version();
    let mut parts = expected.split('.').map(|p| p.parse::<i64>().ok());
    assert_eq!(
        (version["major"].as_i64(), version["minor"].as_i64()),
        (parts.next().flatten(), parts.next().flatten())
    );
    // Other tests change the schema concurrently: compare once it holds still.
    support::eventually("/version/schema matches system.local", || {
        let schema = client.get("/version/schema").json();
        let by_cql = cassandra::cql(1, "SELECT schema_version FROM system.local")[0][0].clone();
        (schema["schemaVersion"].as_str() == Some(by_cql.as_str())).then_some(())
    });

    let topology = client.get("/topology").json();
    assert_eq!(topology["clusterName"], "daedalus-test");
    let members = topology["topology"].as_array().unwrap();
    assert_eq!(members.len(), cassandra::nodes());
    let ids: BTreeSet<String> = members
        .iter()
        .map(|n| n["nodeId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, host_ids_by_cql());
    for node in members {
        assert_eq!(node["dc"], "datacenter1");
        assert_eq!(
            node["rack"], "rack1",
            "the rack, not the data centre again: {node}"
        );
    }
    assert_eq!(
        client.get("/topology/datacenter1").json()["topology"]
            .as_array()
            .unwrap()
            .len(),
        cassandra::nodes()
    );
    let unknown = client.get("/topology/dc9");
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.json()["error"]
            .as_str()
            .unwrap()
            .contains("datacenter1")
    );

    let config = client.get("/config");
    assert_eq!(config.header("content-type"), Some("application/yaml"));
    assert_eq!(config.text(), std::fs::read_to_string(&yaml).unwrap());
}

/// A node that dies under the sidecar: its endpoints answer 503 naming the node, at once, instead of hanging.
#[test]
fn a_killed_node_gives_clear_errors_not_hangs() {
    const NODE: usize = 4;
    cassandra::solo(NODE);
    let service = cassandra::jmx_service(NODE);
    let sidecar = Sidecar::start(&["--jmx-service", &service]);
    let client = sidecar.client();
    assert_eq!(client.get("/status").json(), json!({"nodeState": "NORMAL"}));
    assert_eq!(client.get("/health/ready").status, 200);

    cassandra::kill(NODE);
    let status = client.get("/status");
    assert_eq!(status.status, 503);
    let error = status.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains(&service),
        "the error names the node's JMX address: {error}"
    );
    let ready = client.get("/health/ready");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["status"], "DOWN");
    let topology = client.get("/topology");
    assert_eq!(topology.status, 503);
}

#[tokio::test]
async fn maintenance_calls_on_a_real_table() {
    use daedalus_operations::cassandra::SsTableOpStatus::Successful;
    let node = facade(1).await;
    // Every node holds every row, so node 1 has data to work on whichever node owns a key.
    let replication = format!(
        "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
        cassandra::nodes()
    );
    cassandra::cql(
        1,
        &format!("CREATE KEYSPACE IF NOT EXISTS maint_ks WITH replication = {replication}"),
    );
    cassandra::cql(
        1,
        &format!("ALTER KEYSPACE maint_ks WITH replication = {replication}"),
    );
    cassandra::cql(
        1,
        "CREATE TABLE IF NOT EXISTS maint_ks.t (id int PRIMARY KEY, v text)",
    );
    let no_tables: Vec<String> = Vec::new();

    // Each flush of new rows writes an SSTable; major compaction merges them into one.
    let before = cassandra::data_files(1, "maint_ks", "t");
    for id in 0..2 {
        cassandra::cql(
            1,
            &format!("INSERT INTO maint_ks.t (id, v) VALUES ({id}, 'v{id}')"),
        );
        node.flush("maint_ks", &["t".to_string()]).await.unwrap();
    }
    assert!(
        cassandra::data_files(1, "maint_ks", "t") > before,
        "flush wrote SSTables"
    );
    node.compact(false, "maint_ks", &no_tables).await.unwrap();
    // Cassandra deletes the compacted-away files just after the call returns.
    support::eventually("major compaction leaves one SSTable", || {
        (cassandra::data_files(1, "maint_ks", "t") == 1).then_some(())
    });

    assert_eq!(
        node.cleanup(0, "maint_ks", &no_tables).await.unwrap(),
        Successful
    );
    assert_eq!(
        node.scrub(true, false, true, false, 0, "maint_ks", &no_tables)
            .await
            .unwrap(),
        Successful
    );
    assert_eq!(
        node.upgrade_sstables("maint_ks", false, 0, &no_tables)
            .await
            .unwrap(),
        Successful
    );
    assert_eq!(
        node.garbage_collect("ROW", 0, "maint_ks", &no_tables)
            .await
            .unwrap(),
        Successful
    );
    let rows = cassandra::cql(1, "SELECT count(*) FROM maint_ks.t");
    assert!(
        rows[0][0].parse::<i64>().unwrap() >= 2,
        "the data survived: {rows:?}"
    );

    assert!(node.table_mbean("maint_ks", "t").await.unwrap().is_some());
    assert_eq!(node.table_mbean("maint_ks", "nope").await.unwrap(), None);
    assert!(
        node.flush("no_such_keyspace", &no_tables).await.is_err(),
        "an unknown keyspace is an error"
    );

    let throughput = node.compaction_throughput().await.unwrap();
    node.set_compaction_throughput(17).await.unwrap();
    assert_eq!(node.compaction_throughput().await.unwrap(), 17);
    node.set_compaction_throughput(throughput as i32)
        .await
        .unwrap();

    // A repair starts (command > 0), or there is nothing to repair on a single node (0).
    let command = node.repair_async("maint_ks", vec![]).await.unwrap();
    assert!(command >= 0);
    if command > 0 {
        // The status appears once Cassandra has set the repair up, a moment after repairAsync returns.
        let mut known = false;
        for _ in 0..100 {
            if node.parent_repair_status(command).await.unwrap().is_some() {
                known = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(known, "repair {command} has a status");
    }
    assert_eq!(node.parent_repair_status(987_654).await.unwrap(), None);
}
