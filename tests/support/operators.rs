//! The request bodies Kubernetes operators send to Icarus, byte for byte as they go over the wire, each naming the
//! source it came from. Values are those of the operator's documented example; the tests that run them against a
//! real cluster substitute only the bucket location, the tag and the entities.

/// Instaclustr cassandra-operator (instaclustr/cassandra-operator b8906d8), a CassandraBackup:
/// `pkg/controller/cassandrabackup/cassandrabackup_controller.go:260-272` fills `pkg/sidecar/operations.go:87-104`,
/// sent by resty with `json.Marshal` (no trailing newline). Its restores run `icarus esop restore` in an init
/// container, not over REST.
pub const INSTACLUSTR_BACKUP: &str = r#"{"type":"backup","storageLocation":"s3://cassandra-bucket","snapshotTag":"mySnapshotTag","k8sSecretName":"cloud-backup-secrets","k8sNamespace":"default","globalRequest":true}"#;

/// CassKop (Orange-OpenSource/casskop 8fb1b71), a CassandraBackup: `controllers/cassandrabackup/reconcile.go` and
/// `pkg/backrest/backrest.go` through the Icarus Go client's `model_backup_operation_request.go`, encoded with
/// `json.NewEncoder` (a trailing newline). `duration` is a Go duration string.
pub const CASSKOP_BACKUP: &str = concat!(
    r#"{"type":"backup","storageLocation":"s3://cassie","duration":"12h","bandwidth":{"value":10,"unit":"MBPS"},"concurrentConnections":15,"snapshotTag":"SnapshotTag2","dc":"dc1","entities":"k1.t1,k2.t3","k8sNamespace":"default","k8sSecretName":"cloud-backup-secrets","globalRequest":true}"#,
    "\n"
);

/// CassKop, a CassandraRestore: `controllers/cassandrarestore/reconcile.go:179-231` and `pkg/backrest/backrest.go`
/// through `model_restore_operation_request.go` (a trailing newline): one global request from INIT, a plain
/// staging path, no `dataDirs`.
pub const CASSKOP_RESTORE: &str = concat!(
    r#"{"type":"restore","storageLocation":"s3://cassie","snapshotTag":"SnapshotTag2","entities":"k1.t1","restorationStrategyType":"HARDLINKS","restorationPhase":"INIT","import":{"type":"import","sourceDir":"/var/lib/cassandra/downloadedsstables"},"globalRequest":true,"k8sSecretName":"cloud-backup-secrets","resolveHostIdFromTopology":true}"#,
    "\n"
);

/// IBM's cassandra-operator (IBM/mr-cassop 4ec50db), a CassandraBackup: `controllers/cassandrabackup/icarus.go:12-81`
/// fills `controllers/icarus/backup.go:20-40` (`json.Marshal`): `<cluster>/<first DC>/1` appended to the location.
/// With the bucket of its integration test (`tests/integration/cassandrarestore_test.go:39-46`): the documented
/// example's `s3://bucket-name/backup/location` is a prefix inside a bucket, which Esop does not take either.
pub const IBM_BACKUP: &str = r#"{"type":"backup","storageLocation":"s3://bucket/test-cluster/dc1/1","dataDirs":["/var/lib/cassandra/data"],"globalRequest":true,"snapshotTag":"example-backup","k8sNamespace":"default","k8sSecretName":"storage-credentials","concurrentConnections":10,"timeout":5,"metadataDirective":"COPY","insecure":false,"createMissingBucket":false,"skipRefreshing":false,"skipBucketVerification":false,"retry":{"interval":10,"strategy":"LINEAR","maxAttempts":3,"enabled":false}}"#;

/// IBM's cassandra-operator, a CassandraRestore: `controllers/cassandrarestore/icarus.go:12-100` fills
/// `controllers/icarus/restore.go:12-38`: the staging directory as a `file://` URI. After a failure IBM compares the
/// echoed `import.sourceDir`, `dataDirs`, `retry`, ... with a fresh request and sends it again when they differ, so
/// they must come back as sent. The integration test's bucket, as for [`IBM_BACKUP`].
pub const IBM_RESTORE: &str = r#"{"type":"restore","storageLocation":"s3://bucket/test-cluster/dc1/1","snapshotTag":"example-backup","dataDirs":["/var/lib/cassandra/data"],"globalRequest":true,"restorationStrategyType":"HARDLINKS","restorationPhase":"INIT","import":{"type":"import","sourceDir":"file:///var/lib/cassandra/downloadedsstables"},"k8sNamespace":"default","k8sSecretName":"storage-credentials","concurrentConnections":10,"timeout":5,"retry":{"interval":10,"strategy":"LINEAR","maxAttempts":3,"enabled":false}}"#;
