//! The HTTP contract, against the real binary: every endpoint, status code and body as `openapi.yaml` and the
//! Icarus compatibility notes describe them. Every response is also checked against the spec by `SpecClient`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::spec::spec;
use support::{Sidecar, wait_for_state};

fn state_of(sidecar: &Sidecar, id: &str) -> String {
    sidecar.client().operation(id)["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn post_answers_201_with_an_absolute_location_and_the_operation() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let response = client.post_json(
        "/operations",
        &json!({"type": "flush", "keyspace": "ks", "tables": ["t1"]}),
    );
    assert_eq!(response.status, 201);
    let operation = response.json();
    let id = operation["id"].as_str().unwrap();
    assert_eq!(
        response.header("location").unwrap(),
        format!("{}/operations/{id}", sidecar.base_url)
    );
    assert_eq!(operation["type"], "flush");
    assert_eq!(operation["keyspace"], "ks");
    assert_eq!(operation["tables"], json!(["t1"]));
    // The body shows the operation as it is by the time it is rendered: it may already be running or done.
    assert!(operation["errors"].is_array() && operation["progress"].is_number());

    // Cassandra is not reachable here: the operation fails, and says why and where.
    let finished = wait_for_state(&sidecar, id, "FAILED");
    let message = finished["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot connect to JMX at 127.0.0.1:1"),
        "{message}"
    );
    assert!(finished["startTime"].is_string() && finished["completionTime"].is_string());
}

#[test]
fn get_and_delete_answer_404_for_unknown_ids_and_400_for_non_uuids() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let unknown = "3f1c1d4e-8a61-4f0b-9c39-7f0e0b9c4d21";
    for response in [
        client.get(&format!("/operations/{unknown}")),
        client.delete(&format!("/operations/{unknown}")),
    ] {
        assert_eq!(response.status, 404);
        assert_eq!(response.json()["code"], "not_found");
        assert!(response.json()["error"].as_str().unwrap().contains(unknown));
    }
    for response in [
        client.get("/operations/not-a-uuid"),
        client.delete("/operations/not-a-uuid"),
    ] {
        assert_eq!(response.status, 400);
        assert_eq!(response.json()["details"][0]["field"], "id");
    }
}

#[test]
fn listing_is_newest_first_and_filters_by_type_and_state() {
    let sidecar = Sidecar::start(&["--enable-test-operations"]);
    let client = sidecar.client();
    let flush = client.submit(json!({"type": "flush", "keyspace": "ks"}));
    let cleanup = client.submit(json!({"type": "cleanup", "keyspace": "ks"}));
    let sleep = client.submit(json!({"type": "sleep", "duration": "1h"}));
    let ids = |query: &str| -> Vec<String> {
        let response = client.get(&format!("/operations{query}"));
        assert_eq!(response.status, 200, "{query}: {}", response.text());
        response
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect()
    };
    let id = |op: &Value| op["id"].as_str().unwrap().to_string();
    wait_for_state(&sidecar, &id(&cleanup), "FAILED");
    wait_for_state(&sidecar, &id(&flush), "FAILED");
    wait_for_state(&sidecar, &id(&sleep), "RUNNING");

    assert_eq!(ids(""), [id(&sleep), id(&cleanup), id(&flush)]);
    assert_eq!(ids("?type=flush"), [id(&flush)]);
    assert_eq!(ids("?type=flush&type=cleanup"), [id(&cleanup), id(&flush)]);
    assert_eq!(ids("?type=flush,cleanup"), [id(&cleanup), id(&flush)]);
    assert_eq!(ids("?state=RUNNING"), [id(&sleep)]);
    assert_eq!(ids("?status=failed"), [id(&cleanup), id(&flush)]);
    assert_eq!(ids("?state=RUNNING,FAILED&type=cleanup"), [id(&cleanup)]);
    assert_eq!(ids("?state=COMPLETED"), Vec::<String>::new());

    let bad_state = client.get("/operations?state=DONE");
    assert_eq!(bad_state.status, 400);
    assert_eq!(bad_state.json()["details"][0]["field"], "state");
    // Types this build does not offer match nothing, as in Icarus (clients filter on `list`, `remove-backup`, ...).
    assert_eq!(ids("?type=list"), Vec::<String>::new());
}

#[test]
fn delete_cancels_a_running_operation() {
    let sidecar = Sidecar::start(&["--enable-test-operations"]);
    let client = sidecar.client();
    let id = client.submit(json!({"type": "sleep", "duration": "1h"}))["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_state(&sidecar, &id, "RUNNING");
    let response = client.delete(&format!("/operations/{id}"));
    assert_eq!(response.status, 202);
    assert!(response.body.is_empty());
    let cancelled = wait_for_state(&sidecar, &id, "CANCELLED");
    assert!(cancelled["completionTime"].is_string());
    assert_eq!(cancelled["errors"], json!([]));
    // Cancelling again changes nothing.
    assert_eq!(client.delete(&format!("/operations/{id}")).status, 202);
    assert_eq!(state_of(&sidecar, &id), "CANCELLED");
}

#[test]
fn bad_input_gets_a_4xx_that_names_the_problem() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let post = |content_type: &str, body: Vec<u8>| {
        client.send(Method::POST, "/operations", Some((content_type, body)))
    };
    let json_post = |body: &str| post("application/json", body.as_bytes().to_vec());

    // (request, status, field named in details or None, text the message must contain)
    let malformed = json_post("{\"type\": \"flush\",");
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.json()["error"]
            .as_str()
            .unwrap()
            .contains("malformed JSON")
    );

    let empty = json_post("");
    assert_eq!(empty.status, 400);
    assert!(empty.json()["error"].as_str().unwrap().contains("empty"));

    let not_object = json_post("[1, 2]");
    assert_eq!(not_object.status, 400);
    assert!(
        not_object.json()["error"]
            .as_str()
            .unwrap()
            .contains("JSON object")
    );

    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"type": "backup"}), "storageLocation", "is required"),
        (
            json!({"type": "backup", "storageLocation": "ftp://b"}),
            "storageLocation",
            "available storage providers",
        ),
        (
            json!({"type": "backup", "storageLocation": "s3://b", "entities": "ks1,ks2.t"}),
            "entities",
            "mixes",
        ),
        // Echoed numbers a Go client reads into an int32.
        (
            json!({"type": "backup", "storageLocation": "s3://b", "timeout": 3_000_000_000_i64}),
            "timeout",
            "at most 2147483647 hours",
        ),
        (
            json!({"type": "backup", "storageLocation": "s3://b", "bandwidth": {"value": 5_000_000_000_i64, "unit": "BPS"}}),
            "bandwidth",
            "at most 2147483647",
        ),
        (
            json!({"type": "backup", "storageLocation": "s3://b", "bandwidth": "lots"}),
            "bandwidth",
            "is not a rate",
        ),
        (
            json!({"type": "restore", "storageLocation": "s3://b", "snapshotTag": "t", "restorationPhase": "INIT"}),
            "restorationPhase",
            "IN_PLACE",
        ),
        (
            json!({"type": "restore", "storageLocation": "s3://b", "snapshotTag": "t", "restorationStrategyType": "IMPORT",
            "restorationPhase": "DOWNLOAD", "import": {"sourceDir": "/srv/../var/lib/cassandra/data"}}),
            "import.sourceDir",
            "must not contain '..'",
        ),
        (
            json!({"type": "restore", "snapshotTag": "t"}),
            "storageLocation",
            "is required",
        ),
        (
            json!({"type": "restore", "storageLocation": "s3://b", "snapshotTag": "t", "restorationStrategyType": "HARDLINKS",
            "import": {"sourceDir": "file:///"}}),
            "import.sourceDir",
            "is the root directory",
        ),
        (
            json!({"type": "restore", "storageLocation": "s3://b/c/d/n", "snapshotTag": "t",
            "cassandraDirectory": "/srv/cassandra/"}),
            "cassandraDirectory",
            "--cassandra-dir",
        ),
        (
            json!({"type": "restore", "storageLocation": "s3://b", "snapshotTag": "t", "restorationStrategyType": "HARDLINKS",
            "import": {"sourceDir": "/srv/restore"}, "entities": "ks.a,ks.b",
            "rename": {"ks.a": "ks.b", "ks.b": "ks.c"}}),
            "rename.ks.a",
            "chains are not allowed",
        ),
        (
            json!({"type": "restore", "storageLocation": "s3://b", "snapshotTag": "t", "restorationStrategyType": "HARDLINKS",
            "import": {"sourceDir": "/srv/restore"}, "entities": "ks.a,ks.b", "rename": {"ks.a": "ks.b"}}),
            "rename.ks.a",
            "target 'ks.b' is also restored",
        ),
        (
            json!({"type": "restore", "storageLocation": "s3://b/c/d/n", "snapshotTag": "t",
            "restorationStrategyType": "in_place", "restorationPhase": "DOWNLOAD"}),
            "restorationPhase",
            "not used with the IN_PLACE strategy",
        ),
        (
            json!({"type": "restore", "storageLocation": "s3://b/c/d/n", "snapshotTag": "t",
            "restorationStrategyType": "COPY"}),
            "restorationStrategyType",
            "must be one of IN_PLACE, HARDLINKS, IMPORT, got 'COPY'",
        ),
        (
            json!({"type": "restore", "storageLocation": "s3://b", "snapshotTag": "t"}),
            "storageLocation",
            "must name the node",
        ),
        (
            json!({"type": "commitlog-restore", "storageLocation": "s3://b/c/d/n", "commitlogDownloadDir": "/srv/cl"}),
            "timestampEnd",
            "is required",
        ),
        (
            json!({"type": "commitlog-restore", "storageLocation": "s3://b/c/d/n", "commitlogDownloadDir": "/srv/cl",
            "timestampStart": 1732784400000_i64, "timestampEnd": 1732780800000_i64}),
            "timestampEnd",
            "must not be before timestampStart",
        ),
        (
            json!({"type": "commitlog-restore", "storageLocation": "s3://b/c/d/n", "commitlogDownloadDir": "restored",
            "timestampEnd": 1732780800000_i64}),
            "commitlogDownloadDir",
            "must be an absolute path",
        ),
        (
            json!({"type": "commitlog-backup", "storageLocation": "file:///tmp/b/c/d/n", "commitLog": "/etc/shadow"}),
            "commitLog",
            "not a commit-log segment",
        ),
        (
            json!({"type": "backup", "storageLocation": "s3://"}),
            "storageLocation",
            "",
        ),
        (json!({"type": "explode"}), "type", "unknown type 'explode'"),
        (json!({"keyspace": "ks"}), "type", "is required"),
        (json!({"type": "flush"}), "keyspace", "is required"),
        (
            json!({"type": "flush", "keyspace": ["ks"]}),
            "keyspace",
            "invalid type",
        ),
        (
            json!({"type": "cleanup", "keyspace": "ks", "jobs": -1}),
            "jobs",
            "must be 0 or more",
        ),
        (
            json!({"type": "cleanup", "keyspace": "ks", "jobs": "many"}),
            "jobs",
            "an integer",
        ),
        (
            json!({"type": "scrub", "keyspace": "ks", "skipCorrupted": "perhaps"}),
            "skipCorrupted",
            "a boolean",
        ),
        (
            json!({"type": "flush", "keyspace": "no-dashes"}),
            "keyspace",
            "not a valid keyspace name",
        ),
        (
            json!({"type": "rebuild", "specificTokens": [{"start": "1", "end": "2"}]}),
            "keyspace",
            "required when specificTokens",
        ),
    ];
    for (body, field, text) in cases {
        let response = client.post_json("/operations", &body);
        assert_eq!(response.status, 400, "{body}");
        let error = response.json();
        let detail = error["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["field"] == field);
        let detail = detail.unwrap_or_else(|| panic!("{body}: no detail for {field}: {error}"));
        assert!(
            detail["message"].as_str().unwrap().contains(text),
            "{body}: {error}"
        );
    }

    // The unknown-type error lists what is known.
    let unknown = client
        .post_json("/operations", &json!({"type": "explode"}))
        .json();
    assert!(
        unknown["error"].as_str().unwrap().contains(
            "known types: backup, cleanup, clear-snapshot, commitlog-backup, commitlog-restore, compact"
        ),
        "{unknown}"
    );
    // truncate is known but off.
    let truncate = client
        .post_json(
            "/operations",
            &json!({"type": "truncate", "keyspace": "ks", "table": "t"}),
        )
        .json();
    assert!(
        truncate["error"]
            .as_str()
            .unwrap()
            .contains("--enable-truncate"),
        "{truncate}"
    );

    let huge = format!(
        "{{\"type\":\"flush\",\"keyspace\":\"ks\",\"padding\":\"{}\"}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let too_large = post("application/json", huge.into_bytes());
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.json()["code"], "payload_too_large");

    let form = post("application/x-www-form-urlencoded", b"type=flush".to_vec());
    assert_eq!(form.status, 415);
    assert!(
        form.json()["error"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );

    // Nothing was stored by any of these.
    assert_eq!(client.get("/operations").json(), json!([]));
}

#[test]
fn operator_bodies_are_accepted() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    // Bodies the Instaclustr cassandra-operator sends (pkg/sidecar), with Go's omitempty.
    let decommission = client.submit(json!({"type": "decommission"}));
    assert_eq!(decommission["force"], true, "Icarus defaults force to true");
    client.submit(json!({"type": "cleanup", "keyspace": "ks", "tables": ["t1", "t2"], "jobs": 2}));
    let upgrade = client.submit(
        json!({"type": "upgradesstables", "keyspace": "ks", "includeAllSSTables": true, "jobs": 1}),
    );
    assert_eq!(
        upgrade["includeAllSStables"], true,
        "the operator's spelling is understood"
    );
    client.submit(json!({"type": "rebuild", "sourceDC": "dc1", "keyspace": "ks", "specificSources": ["10.0.0.1"],
        "specificTokens": [{"start": "-9223372036854775808", "end": "0"}]}));
    let scrub = client.submit(
        json!({"type": "scrub", "keyspace": "ks", "tables": ["t"], "disableSnapshot": true,
        "skipCorrupted": "true", "noValidate": false, "reinsertOverflowedTTL": true, "jobs": 0}),
    );
    assert_eq!(
        scrub["skipCorrupted"], true,
        "string booleans are coerced as Jackson did"
    );
    // Fields clients add that Icarus ignores are ignored, not echoed.
    let with_extras = client.submit(
        json!({"type": "flush", "keyspace": "ks", "k8sSecretName": "s", "k8sNamespace": "n"}),
    );
    assert!(with_extras.get("k8sSecretName").is_none());
    // The operator's backup, sent to one pod for the whole cluster.
    let backup = client.submit(json!({"type": "backup", "storageLocation": "s3://my-bucket", "snapshotTag": "nightly",
        "concurrentConnections": 4, "entities": "ks1,ks2", "k8sSecretName": "creds", "k8sNamespace": "cassandra",
        "globalRequest": "true", "createMissingBucket": true, "skipBucketVerification": false,
        "metadataDirective": "copy", "insecure": false}));
    assert_eq!(backup["globalRequest"], true);
    assert_eq!(backup["metadataDirective"], "COPY");
    assert_eq!(backup["timeout"], 5, "Icarus's default timeout");
    assert!(
        backup.get("dataDirs").is_none(),
        "dataDirs may be left out (Icarus 3 required it)"
    );
    // CassKop's backup and restore (through the Icarus Go client): duration as a Go duration string, bandwidth
    // as an object, a HARDLINKS restore with a rename.
    let casskop_backup = client.submit(json!({"type": "backup", "storageLocation": "gcp://backups/test-cluster/dc1/node-0",
        "snapshotTag": "weekly", "duration": "1h30m0s", "bandwidth": {"value": 10, "unit": "MBPS"},
        "concurrentConnections": 2, "entities": "ks1", "k8sSecretName": "creds", "dc": "dc1", "globalRequest": true,
        "k8sNamespace": "ns"}));
    assert_eq!(
        casskop_backup["duration"], "1h30m0s",
        "echoed as sent: the Go client's model has duration as a string"
    );
    let icarus_backup = client.submit(json!({"type": "backup", "storageLocation": "s3://b/c/d/n",
        "duration": {"value": 1, "unit": "HOURS"}, "proxySettings": {"useProxy": "true", "proxyHost": "proxy.local",
        "proxyPort": "3128"}}));
    assert_eq!(
        icarus_backup["duration"],
        json!({"value": 1, "unit": "HOURS"}),
        "Icarus's own object stays an object"
    );
    assert_eq!(
        icarus_backup["proxySettings"],
        json!({"useProxy": "true", "proxyHost": "proxy.local", "proxyPort": "3128"})
    );
    // Secrets are accepted but never echoed (Icarus echoed the proxy password).
    let proxied = client.submit(json!({"type": "backup", "storageLocation": "s3://b", "concurrentConnections": null, "proxySettings":
        {"proxyHost": "proxy.local", "proxyPort": 3128, "proxyUsername": "u", "proxyPassword": "hunter2"}}));
    assert_eq!(proxied["proxySettings"]["proxyHost"], "proxy.local");
    assert_eq!(
        proxied["concurrentConnections"], 10,
        "null means the default"
    );
    assert!(!proxied.to_string().contains("hunter2"), "{proxied}");
    let restore = client.submit(json!({"type": "restore", "dc": "dc1", "storageLocation": "s3://my-bucket",
        "snapshotTag": "weekly-1", "noDeleteTruncates": false, "exactSchemaVersion": false, "restorationPhase": "init",
        "globalRequest": true, "import": {"type": "import", "sourceDir": "/var/lib/cassandra/downloadedsstables"},
        "entities": "ks1.t1", "rename": {"ks1.t1": "ks1.t1_restored"}, "k8sSecretName": "creds",
        "cassandraDirectory": "/var/lib/cassandra", "schemaVersion": "3a6e8c46-2c8e-3f1d-9b4c-6f6a6d2b1c0e",
        "restorationStrategyType": "hardlinks", "resolveHostIdFromTopology": true, "concurrentConnections": 4}));
    assert_eq!(restore["restorationStrategyType"], "HARDLINKS");
    assert_eq!(restore["restorationPhase"], "INIT");
    // Every Icarus maintenance type is accepted.
    for body in [
        json!({"type": "drain"}),
        json!({"type": "refresh", "keyspace": "ks", "table": "t"}),
        json!({"type": "import", "keyspace": "ks", "table": "t", "tablePath": "/var/lib/cassandra/import/ks/t", "quick": "true"}),
        json!({"type": "decommission", "force": "false"}),
    ] {
        client.submit(body);
    }
}

/// The operators' bodies byte for byte (`support::operators`, each naming its source): accepted, and what they read
/// back is as they sent it. IBM sends a restore again when the echoed fields differ from a fresh request; CassKop
/// and IBM decode `duration` into a string.
#[test]
fn the_operators_exact_bodies_are_accepted_and_read_back_as_sent() {
    use support::operators::*;
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    for body in [
        INSTACLUSTR_BACKUP,
        CASSKOP_BACKUP,
        CASSKOP_RESTORE,
        IBM_BACKUP,
        IBM_RESTORE,
    ] {
        let answer = client.send(
            Method::POST,
            "/operations",
            Some(("application/json", body.as_bytes().to_vec())),
        );
        assert_eq!(answer.status, 201, "{body}: {}", answer.text());
        let sent: Value = serde_json::from_str(body).unwrap();
        let echoed = answer.json();
        for field in [
            "storageLocation",
            "snapshotTag",
            "duration",
            "bandwidth",
            "dataDirs",
            "retry",
            "timeout",
            "concurrentConnections",
            "restorationStrategyType",
            "restorationPhase",
            "globalRequest",
            "entities",
        ] {
            if let Some(value) = sent.get(field) {
                assert_eq!(&echoed[field], value, "{field} of {body}\n{echoed}");
            }
        }
        if let Some(source) = sent.pointer("/import/sourceDir") {
            assert_eq!(&echoed["import"]["sourceDir"], source, "{echoed}");
        }
    }
}

/// Storage requests echo what the server decoded, in the shapes the spec gives: restore's enums in upper case and
/// no `restorationPhase` when every phase runs, `entities` left out when it means everything, `keyspaceTables` as a
/// list whichever form it came in, and the connection's `concurrentConnections` on `list` and `remove-backup` too.
#[test]
fn storage_requests_echo_what_the_server_decoded() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    // An empty directory: every operation here ends FAILED before writing anything.
    let store = tempfile::tempdir().unwrap();
    let location = format!("file://{}/bucket/cluster/dc1/node1", store.path().display());
    let id = |operation: &Value| operation["id"].as_str().unwrap().to_string();

    let restore = client.submit(json!({"type": "restore", "storageLocation": location, "snapshotTag": "nightly",
        "restorationStrategyType": "Import", "import": {"type": "import", "sourceDir": "/srv/restore"},
        "entities": "", "bandwidth": "10MBPS", "schemaVersion": "3A6E8C46-2C8E-3F1D-9B4C-6F6A6D2B1C0E"}));
    assert_eq!(restore["restorationStrategyType"], "IMPORT");
    assert!(
        restore.get("restorationPhase").is_none(),
        "absent: every phase, in order"
    );
    assert!(restore.get("entities").is_none(), "{restore}");
    assert_eq!(restore["bandwidth"], "10MBPS", "a string is echoed as sent");
    assert_eq!(
        restore["schemaVersion"],
        "3a6e8c46-2c8e-3f1d-9b4c-6f6a6d2b1c0e"
    );
    assert_eq!(restore["import"]["sourceDir"], "/srv/restore");
    wait_for_state(&sidecar, &id(&restore), "FAILED");

    // The sidecar's own Cassandra directory, spelled with a trailing slash.
    let in_place = client.submit(
        json!({"type": "restore", "storageLocation": location, "snapshotTag": "nightly",
        "restorationStrategyType": "in_place", "cassandraDirectory": "/var/lib/cassandra/"}),
    );
    assert_eq!(in_place["restorationStrategyType"], "IN_PLACE");
    assert_eq!(in_place["cassandraDirectory"], "/var/lib/cassandra");
    wait_for_state(&sidecar, &id(&in_place), "FAILED");

    for keyspace_tables in [
        json!("ks.t1, ks.t2"),
        json!(["ks.t1", "ks.t2"]),
        json!({"ks": ["t1", "t2"]}),
    ] {
        let operation = client.submit(
            json!({"type": "commitlog-restore", "storageLocation": location,
            "commitlogDownloadDir": "/srv/commitlog-restore", "timestampEnd": "1732780800000",
            "keyspaceTables": keyspace_tables}),
        );
        assert_eq!(
            operation["keyspaceTables"],
            json!(["ks.t1", "ks.t2"]),
            "{keyspace_tables}"
        );
        assert_eq!(operation["timestampEnd"], 1732780800000_i64);
        assert_eq!(operation["timestampStart"], 0);
        assert_eq!(
            operation["cassandraCommitLogDirectory"],
            "/var/lib/cassandra/commitlog"
        );
        wait_for_state(&sidecar, &id(&operation), "FAILED");
    }

    let list = client
        .submit(json!({"type": "list", "storageLocation": location, "concurrentConnections": "4"}));
    assert_eq!(list["concurrentConnections"], 4);
    let remove = client.submit(
        json!({"type": "remove-backup", "storageLocation": location, "removeOldest": true}),
    );
    assert_eq!(remove["concurrentConnections"], 10);
    for operation in [list, remove] {
        wait_for_state(&sidecar, &id(&operation), "FAILED");
    }
}

/// An Icarus coordinating a mixed fleet reads its parts on Daedalus nodes with Jackson, which refuses a field its
/// classes lack: answers to Icarus's HTTP client (Jersey) carry only those. The known properties are Jackson's own
/// list when Icarus 3.0.0 refuses an unknown one.
#[test]
fn icarus_reads_only_the_fields_its_classes_have() {
    const BACKUP: &str = "type, id, creationTime, state, errors, progress, startTime, completionTime, storageLocation, \
        duration, bandwidth, concurrentConnections, metadataDirective, entities, snapshotTag, globalRequest, dc, timeout, \
        insecure, createMissingBucket, skipBucketVerification, schemaVersion, uploadClusterTopology, proxySettings, \
        retry, skipRefreshing, dataDirs, kmsKeyId";
    const RESTORE: &str = "type, id, creationTime, state, errors, progress, startTime, completionTime, \
        storageLocation, concurrentConnections, cassandraDirectory, cassandraConfigDirectory, restoreSystemKeyspace, \
        restoreSystemAuth, snapshotTag, entities, updateCassandraYaml, restorationStrategyType, restorationPhase, \
        import, noDeleteTruncates, noDeleteDownloads, noDownloadData, exactSchemaVersion, schemaVersion, \
        globalRequest, dc, timeout, resolveHostIdFromTopology, insecure, newCluster, skipBucketVerification, \
        proxySettings, rename, retry, singlePhase, dataDirs, kmsKeyId";
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let store = tempfile::tempdir().unwrap();
    let location = format!("file://{}/bucket/cluster/dc1/node1", store.path().display());
    let jersey = [
        ("content-type", "application/json"),
        ("user-agent", "Jersey/3.1.2 (HttpUrlConnection 17.0.15)"),
    ];
    let unknown = |operation: &Value, known: &str| -> Vec<String> {
        let known: Vec<&str> = known.split(',').map(str::trim).collect();
        operation
            .as_object()
            .unwrap()
            .keys()
            .filter(|key| !known.contains(&key.as_str()))
            .cloned()
            .collect()
    };
    for (body, known) in [
        (
            json!({"type": "backup", "storageLocation": location, "snapshotTag": "t-1", "hashAlgorithm": "CRC"}),
            BACKUP,
        ),
        (
            json!({"type": "restore", "storageLocation": location, "snapshotTag": "t-1",
                "restorationStrategyType": "HARDLINKS", "restorationPhase": "INIT", "bandwidth": "1MBPS",
                "import": {"type": "import", "sourceDir": "/srv/restore"}}),
            RESTORE,
        ),
    ] {
        let submitted = client.send_with(
            Method::POST,
            "/operations",
            &jersey,
            Some(body.to_string().into_bytes()),
        );
        assert_eq!(submitted.status, 201, "{}", submitted.text());
        let operation = submitted.json();
        assert_eq!(
            unknown(&operation, known),
            Vec::<String>::new(),
            "{operation}"
        );
        let id = operation["id"].as_str().unwrap().to_string();
        wait_for_state(&sidecar, &id, "FAILED");
        let polled = client
            .send_with(
                Method::GET,
                &format!("/operations/{id}"),
                &jersey[1..],
                None,
            )
            .json();
        assert_eq!(unknown(&polled, known), Vec::<String>::new(), "{polled}");
        if body["type"] == "restore" {
            assert_eq!(polled["import"]["type"], "import", "{polled}");
            assert_eq!(polled["resolveHostIdFromTopology"], false, "{polled}");
        }
        // Any other client sees Daedalus's fields.
        let full = client.operation(&id);
        assert!(!unknown(&full, known).is_empty(), "{full}");
    }
}

/// Defaults a client needs are decided when the request is accepted, so the 201 answer and the operation show them:
/// a backup without `snapshotTag` gets Icarus's `autosnap-<epoch seconds>` (it used to be made only when the
/// backup ran, and the client never learnt it), a snapshot `daedalus-<epoch millis>`.
#[test]
fn generated_snapshot_tags_are_in_the_201_answer_and_stay() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let seconds: fn() -> i64 = || chrono::Utc::now().timestamp();
    let millis: fn() -> i64 = || chrono::Utc::now().timestamp_millis();
    for (body, prefix, clock) in [
        (
            json!({"type": "backup", "storageLocation": "s3://b/c/d/n"}),
            "autosnap-",
            seconds,
        ),
        (json!({"type": "snapshot"}), "daedalus-", millis),
    ] {
        let before = clock();
        let accepted = client.submit(body.clone());
        let after = clock();
        let tag = accepted["snapshotTag"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}: the 201 answer names the tag: {accepted}"));
        let when: i64 = tag
            .strip_prefix(prefix)
            .and_then(|time| time.parse().ok())
            .unwrap_or_else(|| panic!("{tag} is {prefix}<time>"));
        assert!(
            (before..=after).contains(&when),
            "{tag} is from when the request was accepted ({before}..={after})"
        );
        // Cassandra is not reachable here, so it fails; the tag stays what the client was told.
        let id = accepted["id"].as_str().unwrap();
        let finished = wait_for_state(&sidecar, id, "FAILED");
        assert_eq!(finished["snapshotTag"], tag, "{finished}");
    }
}

/// Jackson took a number wherever a string was wanted, and Icarus clients write durations with Java's
/// `TimeUnit` names in any case, or with the count as a string.
#[test]
fn numbers_for_strings_and_time_unit_durations_are_accepted() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let flush = client.submit(json!({"type": "flush", "keyspace": 123, "tables": [7, "t"]}));
    assert_eq!(flush["keyspace"], "123");
    assert_eq!(flush["tables"], json!(["7", "t"]));
    let backup = client.submit(
        json!({"type": "backup", "storageLocation": "s3://b/c/d/n", "snapshotTag": 2024,
        "proxySettings": {"proxyHost": "proxy.local", "proxyPort": "3128", "proxyUsername": 42}}),
    );
    assert_eq!(backup["snapshotTag"], "2024");
    assert_eq!(backup["proxySettings"]["proxyUsername"], "42");
    // Strings are echoed as sent (the Icarus Go client, and the operators on it, decode `duration` into a string);
    // anything else as Icarus's object.
    for (duration, echoed) in [
        (json!("1 HOURS"), json!("1 HOURS")),
        (json!("60 MINUTES"), json!("60 MINUTES")),
        (json!("90 Minutes"), json!("90 Minutes")),
        (
            json!({"value": "60", "unit": "MINUTES"}),
            json!({"value": 1, "unit": "HOURS"}),
        ),
        (json!(45), json!({"value": 45, "unit": "SECONDS"})),
    ] {
        let backup = client.submit(
            json!({"type": "backup", "storageLocation": "s3://b/c/d/n", "duration": duration}),
        );
        assert_eq!(backup["duration"], echoed, "{duration}");
    }
    let bad = client.post_json(
        "/operations",
        &json!({"type": "backup", "storageLocation": "s3://b/c/d/n", "duration": {"value": "soon", "unit": "HOURS"}}),
    );
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["details"][0]["field"],
        "duration.value",
        "{}",
        bad.text()
    );
}

#[test]
fn truncate_is_offered_only_when_enabled() {
    let sidecar = Sidecar::start(&["--enable-truncate"]);
    let operation = sidecar
        .client()
        .submit(json!({"type": "truncate", "keyspace": "ks", "table": "t"}));
    assert_eq!(operation["type"], "truncate");
}

#[test]
fn version_health_and_spec_endpoints() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    for path in ["/version", "/version/sidecar"] {
        let version = client.get(path).json();
        assert_eq!(
            version["version"],
            format!("daedalus {}", env!("CARGO_PKG_VERSION"))
        );
    }
    assert_eq!(client.get("/health/live").json(), json!({"status": "UP"}));
    // Nothing listens where these sidecars look for JMX, so they are live but not ready.
    let ready = client.get("/health/ready");
    assert_eq!(ready.status, 503);
    assert!(
        ready.json()["reason"]
            .as_str()
            .unwrap()
            .contains("cannot connect to JMX at 127.0.0.1:1"),
        "{}",
        ready.text()
    );
    let served = client.get("/openapi.yaml");
    assert_eq!(served.header("content-type"), Some("application/yaml"));
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    assert_eq!(served.text(), file);
}

#[test]
fn unknown_paths_and_methods_get_json_errors() {
    let sidecar = Sidecar::start(&[]);
    let client = sidecar.client();
    let missing = client.get("/nothing/here");
    assert_eq!(missing.status, 404);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("/nothing/here")
    );
    let wrong_method = client.send(Method::PUT, "/operations", None);
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("GET, HEAD, POST"));
    let preflight = client.send(Method::OPTIONS, "/operations", None);
    assert_eq!(preflight.status, 204);
}

#[test]
fn cors_headers_follow_the_flag() {
    let with_cors = Sidecar::start(&[]);
    let response = with_cors.client().get("/version");
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        response.header("access-control-allow-methods"),
        Some("GET, POST, PUT, DELETE, OPTIONS, HEAD")
    );
    let without = Sidecar::start(&["--disable-cors"]);
    assert_eq!(
        without
            .client()
            .get("/version")
            .header("access-control-allow-origin"),
        None
    );
}

/// The spec documents exactly the operation types the server registers, and every documented endpoint is served.
#[test]
fn the_spec_and_the_server_agree() {
    let sidecar = Sidecar::start(&["--enable-truncate", "--enable-test-operations"]);
    let client = sidecar.client();
    let error = client
        .post_json("/operations", &json!({"type": "?"}))
        .json();
    let message = error["error"].as_str().unwrap();
    let mut known: Vec<&str> = message
        .split("known types: ")
        .nth(1)
        .unwrap()
        .split(", ")
        .collect();
    known.sort_unstable();
    let mapping =
        spec().document["components"]["schemas"]["OperationRequest"]["discriminator"]["mapping"]
            .as_object()
            .unwrap();
    let mut documented: Vec<&str> = mapping.keys().map(String::as_str).collect();
    documented.sort_unstable();
    assert_eq!(known, documented);

    // Each documented path and method answers as documented (SpecClient panics otherwise) and is routed.
    let paths = spec().document["paths"].as_object().unwrap();
    for (template, item) in paths {
        let path = template.replace("{id}", "3f1c1d4e-8a61-4f0b-9c39-7f0e0b9c4d21");
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| *m != "parameters")
        {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = match method {
                Method::POST => {
                    client.post_json(&path, &json!({"type": "drain", "unexpected": true}))
                }
                _ => client.send(method.clone(), &path, None),
            };
            let routed = response.status != 404
                || !response.json()["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("no such endpoint");
            assert!(routed, "{method} {template} is documented but not served");
        }
    }
}

/// The directories a restore request names are checked against the node's, as the sidecar was configured (here a
/// node laid out in a temporary directory: `data/ks/t-<id>`, a dropped keyspace's leftovers, the commit log): with
/// Cassandra stopped, the request may only name the node's own directories; a staging directory must be one of its
/// own, whatever the spelling (`//`, `/./`, a symbolic link). Each refusal is a 400 naming the field.
#[test]
fn restore_directories_are_checked_against_the_nodes_own() {
    let node = tempfile::tempdir().unwrap();
    let root = node.path();
    let data = root.join("data");
    let table = data.join("ks/t-0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&table).unwrap();
    std::fs::create_dir_all(data.join("dropped/u-0123456789abcdef0123456789abcdef/snapshots"))
        .unwrap();
    std::fs::create_dir_all(root.join("commitlog")).unwrap();
    std::fs::create_dir_all(root.join("conf")).unwrap();
    std::fs::write(root.join("conf/cassandra.yaml"), "cluster_name: t\n").unwrap();
    std::os::unix::fs::symlink(&data, root.join("innocent")).unwrap();
    let (dir, conf) = (
        root.display().to_string(),
        root.join("conf/cassandra.yaml").display().to_string(),
    );
    let sidecar = Sidecar::start(&["--cassandra-dir", &dir, "--cassandra-config", &conf]);
    let client = sidecar.client();
    let at = |path: &str| format!("{dir}{path}");
    let live = |source: String| {
        json!({"type": "restore", "storageLocation": "s3://b", "snapshotTag": "t",
               "restorationStrategyType": "HARDLINKS", "import": {"sourceDir": source}})
    };
    let refused = |body: Value, field: &str, text: &str| {
        let response = client.post_json("/operations", &body);
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        let details = response.json()["details"].clone();
        assert!(
            details
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["field"] == field && d["message"].as_str().unwrap().contains(text)),
            "{body}: {details}"
        );
    };
    // An accepted restore fails here (no JMX, no bucket); waiting for that keeps the next
    // restore from being refused as running beside it.
    let accepted = |body: Value| {
        let id = client.submit(body)["id"].as_str().unwrap().to_string();
        wait_for_state(&sidecar, &id, "FAILED");
    };
    for (source, why) in [
        (at("/data"), "is the data directory"),
        (at("//data/"), "is the data directory"),
        (at("/./data"), "is the data directory"),
        (at("/innocent"), "is the data directory"),
        (format!("file://{dir}/data"), "is the data directory"),
        (at("/data/ks"), "keyspace directory"),
        (
            at("/data/ks/t-0123456789abcdef0123456789abcdef"),
            "keyspace directory",
        ),
        (at("/innocent/ks/restore"), "keyspace directory"),
        (at("/data/dropped"), "keyspace directory"),
        (at("/data/system_schema"), "keyspace directory"),
        (at(""), "holds the data directory"),
        (at("/commitlog/x"), "commit-log"),
    ] {
        refused(live(source), "import.sourceDir", why);
    }
    // CassKop's and Icarus's forms, and any other directory of its own.
    for source in [
        at("/data/downloadedsstables"),
        at("/downloadedsstables"),
        format!("file://{dir}/downloadedsstables/"),
        "/srv/restore".to_string(),
    ] {
        accepted(live(source));
    }
    assert!(
        !data.join("downloadedsstables").exists(),
        "a restore that cannot reach its node creates nothing"
    );

    let in_place = |fields: Value| {
        let mut body = json!({"type": "restore", "storageLocation": "s3://b/c/d/n", "snapshotTag": "t",
                              "cassandraDirectory": dir, "cassandraConfigDirectory": at("/conf")});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        body
    };
    accepted(in_place(json!({"dataDirs": [at("/data/")]})));
    refused(
        in_place(json!({"cassandraDirectory": "/var/lib/cassandra"})),
        "cassandraDirectory",
        "--cassandra-dir",
    );
    refused(
        in_place(json!({"cassandraConfigDirectory": at("/data")})),
        "cassandraConfigDirectory",
        "--cassandra-config",
    );
    refused(
        in_place(json!({"dataDirs": [at("/data"), "/etc"]})),
        "dataDirs[1]",
        "not one of the node's data directories",
    );
    refused(
        in_place(json!({"cassandraDirectory": at("/../etc")})),
        "cassandraDirectory",
        "..",
    );

    let commitlog = |fields: Value| {
        let mut body = json!({"type": "commitlog-restore", "storageLocation": "s3://b/c/d/n",
            "cassandraCommitLogDirectory": at("/commitlog"), "cassandraConfigDirectory": at("/conf"),
            "commitlogDownloadDir": at("/commitlog-restore"), "timestampEnd": 1732780800000_i64});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        body
    };
    accepted(commitlog(json!({})));
    refused(
        commitlog(json!({"cassandraConfigDirectory": "/tmp"})),
        "cassandraConfigDirectory",
        "--cassandra-config",
    );
    refused(
        commitlog(json!({"cassandraCommitLogDirectory": at("/data")})),
        "cassandraCommitLogDirectory",
        "not the node's directory",
    );
    refused(
        commitlog(json!({"commitlogDownloadDir": at("/data")})),
        "commitlogDownloadDir",
        "is the data directory",
    );
}
