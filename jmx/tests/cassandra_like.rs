//! Every call kind against a JMX server set up like Cassandra's (loopback registry, random RMI port,
//! daemon export), with an MBean of Cassandra-shaped signatures.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::time::Duration;

use jmx::{JavaArg, JavaValue, JmxClient, JmxConfig, JmxError, NotificationEvent};

const SS: &str = "org.apache.cassandra.db:type=StorageService";

async fn connect(port: u16) -> JmxClient {
    JmxClient::connect(JmxConfig::new("127.0.0.1", port))
        .await
        .expect("connects")
}

#[tokio::test]
async fn attributes_of_every_shape() {
    let server = support::cassandra_like(None);
    let client = connect(server.port).await;
    assert_eq!(
        client
            .get_attribute(SS, "OperationMode")
            .await
            .unwrap()
            .as_str(),
        Some("NORMAL")
    );
    let live = client.get_attribute(SS, "LiveNodes").await.unwrap();
    assert_eq!(live.to_strings().unwrap(), ["127.0.0.1", "127.0.0.2"]);
    let ids = client.get_attribute(SS, "EndpointToHostId").await.unwrap();
    assert_eq!(
        ids.get("127.0.0.2").and_then(JavaValue::as_str),
        Some("7a6c5d1b-2e3f-4a4b-9c0d-1e2f3a4b5c6d")
    );

    client
        .set_attribute(SS, "ConcurrentCompactors", JavaArg::Int(7))
        .await
        .unwrap();
    assert_eq!(
        client
            .get_attribute(SS, "ConcurrentCompactors")
            .await
            .unwrap(),
        JavaValue::Int(7)
    );
}

#[tokio::test]
async fn operations_with_cassandra_signatures() {
    let server = support::cassandra_like(None);
    let client = connect(server.port).await;

    // int, String, String... (varargs travel as String[])
    let cleanup = client
        .invoke(
            SS,
            "forceKeyspaceCleanup",
            &[
                JavaArg::Int(2),
                JavaArg::String("ks".into()),
                JavaArg::StringArray(vec!["t1".into(), "t2".into(), "t3".into()]),
            ],
            &["int", "java.lang.String", "[Ljava.lang.String;"],
        )
        .await
        .unwrap();
    assert_eq!(cleanup, JavaValue::Int(2 * 1000 + 2 * 10 + 3));

    // long, boolean, int, double
    let described = client
        .invoke(
            SS,
            "describe",
            &[
                JavaArg::Long(1 << 40),
                JavaArg::Boolean(true),
                JavaArg::Int(-3),
                JavaArg::Double(0.25),
            ],
            &["long", "boolean", "int", "double"],
        )
        .await
        .unwrap();
    assert_eq!(described.as_str(), Some("1099511627776/true/-3/0.25"));

    // Set<String> and eight booleans, returning List<String>
    let failed = client
        .invoke(
            SS,
            "importNewSSTables",
            &[
                JavaArg::StringSet(vec![
                    "/data/import/good".into(),
                    "/data/import/bad-1".into(),
                ]),
                JavaArg::Boolean(true),
                JavaArg::Boolean(true),
                JavaArg::Boolean(true),
                JavaArg::Boolean(true),
                JavaArg::Boolean(true),
                JavaArg::Boolean(false),
                JavaArg::Boolean(true),
            ],
            &[
                "java.util.Set",
                "boolean",
                "boolean",
                "boolean",
                "boolean",
                "boolean",
                "boolean",
                "boolean",
            ],
        )
        .await
        .unwrap();
    assert_eq!(failed.to_strings().unwrap(), ["/data/import/bad-1"]);

    // Map<String,String> in, Map<String,TabularData> out
    let details = client
        .invoke(
            SS,
            "getSnapshotDetails",
            &[JavaArg::StringMap(vec![("no_ttl".into(), "false".into())])],
            &["java.util.Map"],
        )
        .await
        .unwrap();
    let JavaValue::Tabular(daily) = details.get("daily").expect("the daily snapshot") else {
        panic!("snapshot details are TabularData: {details:?}")
    };
    let mut tables: Vec<_> = daily
        .rows
        .iter()
        .map(|r| r.items["Column family name"].as_str().unwrap())
        .collect();
    tables.sort();
    assert_eq!(tables, ["t1", "t2"]);
}

#[tokio::test]
async fn exceptions_carry_their_class_message_and_causes() {
    let server = support::cassandra_like(None);
    let client = connect(server.port).await;

    let error = client
        .invoke(SS, "failChecked", &[], &[])
        .await
        .unwrap_err();
    let JmxError::MBean {
        exception, mbean, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(mbean, SS);
    let classes: Vec<_> = exception.chain().map(|e| e.class.as_str()).collect();
    assert_eq!(
        classes,
        [
            "javax.management.MBeanException",
            "java.io.IOException",
            "java.lang.IllegalStateException"
        ]
    );
    assert_eq!(exception.root_cause().message.as_deref(), Some("disk full"));
    assert!(error.to_string().contains("flush failed"), "{error}");

    let error = client
        .invoke(SS, "failRuntime", &[], &[])
        .await
        .unwrap_err();
    let JmxError::MBean { exception, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(exception.class, "javax.management.RuntimeMBeanException");
    assert_eq!(
        exception.root_cause().class,
        "java.lang.IllegalArgumentException"
    );
    assert_eq!(
        exception.root_cause().message.as_deref(),
        Some("Unknown keyspace nope")
    );

    // A checked exception declared by the operation, as Cassandra throws for unknown keyspaces.
    let error = client
        .invoke(
            SS,
            "forceKeyspaceFlush",
            &[
                JavaArg::String("missing".into()),
                JavaArg::StringArray(vec![]),
            ],
            &["java.lang.String", "[Ljava.lang.String;"],
        )
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("Unknown keyspace missing"),
        "{error}"
    );

    // A wrong signature is the MBean server's complaint, named as such.
    let error = client
        .invoke(
            SS,
            "forceKeyspaceFlush",
            &[JavaArg::String("ks".into())],
            &["java.lang.String"],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, JmxError::MBean { exception, .. } if exception.class == "javax.management.ReflectionException"),
        "{error:?}"
    );
}

#[tokio::test]
async fn repair_style_progress_notifications() {
    let server = support::cassandra_like(None);
    let client = connect(server.port).await;
    let mut progress = client.subscribe(SS).await.unwrap();
    let command = client
        .invoke(
            SS,
            "repairAsync",
            &[
                JavaArg::String("ks".into()),
                JavaArg::StringMap(vec![("steps".into(), "3".into())]),
            ],
            &["java.lang.String", "java.util.Map"],
        )
        .await
        .unwrap();
    assert_eq!(command, JavaValue::Int(1));
    let mut counts = Vec::new();
    while counts.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(30), progress.next())
            .await
            .expect("progress arrives")
            .expect("open");
        let NotificationEvent::Notification(notification) = event else {
            panic!("{event:?}")
        };
        assert_eq!(notification.kind, "progress");
        assert_eq!(notification.source.as_str(), Some("repair:1"));
        assert_eq!(
            notification
                .user_data
                .get("total")
                .and_then(JavaValue::as_i64),
            Some(3)
        );
        counts.push(
            notification
                .user_data
                .get("progressCount")
                .and_then(JavaValue::as_i64)
                .unwrap(),
        );
    }
    assert_eq!(counts, [0, 1, 2, 3]);
    progress.close().await.unwrap();
}

#[tokio::test]
async fn authentication_as_cassandra_does_it() {
    let server = support::cassandra_like(Some(("cassandra", "cassandra")));
    let config = || JmxConfig::new("127.0.0.1", server.port);
    let client = JmxClient::connect(config().with_credentials("cassandra", "cassandra"))
        .await
        .unwrap();
    assert!(client.is_registered(SS).await.unwrap());
    let error = JmxClient::connect(config().with_credentials("cassandra", "wrong"))
        .await
        .unwrap_err();
    let JmxError::AuthenticationFailed { message, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(message.contains("Authentication failed"), "{message}");
}

/// The server forgets a connection idle for longer than its timeout (here 1.5 s).
#[tokio::test]
async fn keep_alive_prevents_idle_expiry_and_expiry_is_survived() {
    let server = support::cassandra_like_with(None, &["-DidleTimeoutMs=1500"]);
    let config = |keepalive| JmxConfig {
        keepalive,
        ..JmxConfig::new("127.0.0.1", server.port)
    };

    let kept = JmxClient::connect(config(Some(Duration::from_millis(300))))
        .await
        .unwrap();
    let lapsed = JmxClient::connect(config(None)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;

    assert!(kept.is_registered(SS).await.unwrap());
    assert_eq!(kept.reconnects(), 0, "keep-alive kept the connection");
    assert!(
        lapsed.is_registered(SS).await.unwrap(),
        "an expired connection is replaced transparently"
    );
    assert_eq!(lapsed.reconnects(), 1);
}

/// With `java.rmi.server.ignoreStubClasses` the server hands out dynamic-proxy stubs and its registry only
/// takes the 1.2 call form; the client falls back to it.
#[tokio::test]
async fn proxy_stubs_and_the_registry_fallback() {
    let server = support::cassandra_like_with(None, &["-Djava.rmi.server.ignoreStubClasses=true"]);
    let client = connect(server.port).await;
    assert_eq!(
        client
            .get_attribute(SS, "OperationMode")
            .await
            .unwrap()
            .as_str(),
        Some("NORMAL")
    );
}
