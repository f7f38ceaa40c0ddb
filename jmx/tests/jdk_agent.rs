//! The client against the JDK's own JMX agent (`-Dcom.sun.management.jmxremote.port=...`), in a real JVM.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use jmx::{JavaArg, JavaValue, JmxClient, JmxConfig, JmxError};

async fn connect(port: u16) -> JmxClient {
    JmxClient::connect(JmxConfig::new("127.0.0.1", port))
        .await
        .expect("connects to the JDK agent")
}

#[tokio::test]
async fn reads_attributes_of_the_runtime() {
    let jvm = support::jdk_agent(&[]);
    let client = connect(jvm.port).await;
    let vm_name = client
        .get_attribute("java.lang:type=Runtime", "VmName")
        .await
        .unwrap();
    assert!(vm_name.as_str().unwrap().contains("VM"), "{vm_name:?}");
    let uptime = client
        .get_attribute("java.lang:type=Runtime", "Uptime")
        .await
        .unwrap();
    assert!(uptime.as_i64().unwrap() > 0);
    let arguments = client
        .get_attribute("java.lang:type=Runtime", "InputArguments")
        .await
        .unwrap();
    let arguments = arguments.to_strings().unwrap();
    assert!(
        arguments.iter().any(|a| a.contains(&jvm.port.to_string())),
        "{arguments:?}"
    );

    let several = client
        .get_attributes(
            "java.lang:type=Runtime",
            &["VmVendor", "NoSuchAttribute", "StartTime"],
        )
        .await
        .unwrap();
    let names: Vec<_> = several.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["VmVendor", "StartTime"]);
}

#[tokio::test]
async fn reads_composite_and_tabular_data() {
    let jvm = support::jdk_agent(&[]);
    let client = connect(jvm.port).await;
    let heap = client
        .get_attribute("java.lang:type=Memory", "HeapMemoryUsage")
        .await
        .unwrap();
    let JavaValue::Composite(heap) = heap else {
        panic!("HeapMemoryUsage is CompositeData: {heap:?}")
    };
    assert_eq!(heap.type_name, "java.lang.management.MemoryUsage");
    let used = heap.items["used"].as_i64().unwrap();
    let max = heap.items["max"].as_i64().unwrap();
    assert!(used > 0 && used <= max, "used {used} max {max}");

    let properties = client
        .get_attribute("java.lang:type=Runtime", "SystemProperties")
        .await
        .unwrap();
    let JavaValue::Tabular(properties) = properties else {
        panic!("SystemProperties is TabularData")
    };
    let hostname = properties
        .rows
        .iter()
        .find(|row| row.items["key"].as_str() == Some("java.rmi.server.hostname"))
        .expect("the property set on the command line is there");
    assert_eq!(hostname.items["value"].as_str(), Some("127.0.0.1"));
}

#[tokio::test]
async fn invokes_operations_and_queries_names() {
    let jvm = support::jdk_agent(&[]);
    let client = connect(jvm.port).await;
    assert_eq!(
        client
            .invoke("java.lang:type=Memory", "gc", &[], &[])
            .await
            .unwrap(),
        JavaValue::Null
    );

    // An operation with primitive parameters and an array result.
    let threads = client
        .invoke(
            "java.lang:type=Threading",
            "dumpAllThreads",
            &[JavaArg::Boolean(false), JavaArg::Boolean(false)],
            &["boolean", "boolean"],
        )
        .await
        .unwrap();
    let threads = threads.as_slice().unwrap();
    assert!(
        threads
            .iter()
            .any(|t| t.get("threadName").and_then(JavaValue::as_str) == Some("main"))
    );

    let names = client.query_names(Some("java.lang:type=*")).await.unwrap();
    assert!(
        names.contains(&"java.lang:type=Runtime".to_string()),
        "{names:?}"
    );
    assert!(client.query_names(None).await.unwrap().len() > names.len());
    assert!(client.is_registered("java.lang:type=Memory").await.unwrap());
    assert!(
        !client
            .is_registered("java.lang:type=Nothing")
            .await
            .unwrap()
    );

    let info = client.mbean_info("java.lang:type=Memory").await.unwrap();
    assert!(
        info.attributes
            .iter()
            .any(|a| a.name == "HeapMemoryUsage" && a.readable && !a.writable)
    );
    assert!(
        info.operations
            .iter()
            .any(|o| o.name == "gc" && o.return_type == "void")
    );
}

#[tokio::test]
async fn sets_attributes() {
    let jvm = support::jdk_agent(&[]);
    let client = connect(jvm.port).await;
    client
        .set_attribute("java.lang:type=Memory", "Verbose", JavaArg::Boolean(true))
        .await
        .unwrap();
    let verbose = client
        .get_attribute("java.lang:type=Memory", "Verbose")
        .await
        .unwrap();
    assert_eq!(verbose, JavaValue::Boolean(true));
}

#[tokio::test]
async fn errors_are_typed_and_name_the_mbean() {
    let jvm = support::jdk_agent(&[]);
    let client = connect(jvm.port).await;
    match client.get_attribute("java.lang:type=Nothing", "X").await {
        Err(JmxError::InstanceNotFound { mbean, address }) => {
            assert_eq!(mbean, "java.lang:type=Nothing");
            assert_eq!(address, format!("127.0.0.1:{}", jvm.port));
        }
        other => panic!("expected InstanceNotFound, got {other:?}"),
    }
    match client.get_attribute("java.lang:type=Runtime", "Nope").await {
        Err(JmxError::AttributeNotFound { attribute, .. }) => assert_eq!(attribute, "Nope"),
        other => panic!("expected AttributeNotFound, got {other:?}"),
    }
    match client
        .invoke("java.lang:type=Memory", "gc", &[JavaArg::Int(1)], &["int"])
        .await
    {
        Err(error @ JmxError::MBean { .. }) => {
            assert!(
                error.to_string().contains("java.lang:type=Memory"),
                "{error}"
            );
        }
        other => panic!("expected an MBean error for a wrong signature, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_refused_is_a_clear_error() {
    let port = support::free_port();
    let error = JmxClient::connect(JmxConfig::new("127.0.0.1", port))
        .await
        .unwrap_err();
    assert!(matches!(error, JmxError::Connect { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}

#[tokio::test]
async fn concurrent_calls_share_one_client() {
    let jvm = support::jdk_agent(&[]);
    let client = connect(jvm.port).await;
    let calls = (0..16).map(|_| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .get_attribute("java.lang:type=Runtime", "Uptime")
                .await
        })
    });
    for call in calls {
        assert!(call.await.unwrap().unwrap().as_i64().is_some());
    }
    client.close().await.unwrap();
}

#[tokio::test]
async fn receives_gc_notifications() {
    let jvm = support::jdk_agent(&["-XX:+UseSerialGC".to_string()]);
    let client = connect(jvm.port).await;
    let collector = "java.lang:type=GarbageCollector,name=MarkSweepCompact";
    let mut subscription = client.subscribe(collector).await.unwrap();
    client
        .invoke("java.lang:type=Memory", "gc", &[], &[])
        .await
        .unwrap();
    let event = tokio::time::timeout(std::time::Duration::from_secs(30), subscription.next())
        .await
        .expect("a notification arrives")
        .expect("the subscription is open");
    let jmx::NotificationEvent::Notification(notification) = event else {
        panic!("expected a notification, got {event:?}")
    };
    assert_eq!(notification.kind, "com.sun.management.gc.notification");
    let JavaValue::Composite(info) = &notification.user_data else {
        panic!(
            "GC notification data is CompositeData: {:?}",
            notification.user_data
        )
    };
    assert_eq!(info.items["gcName"].as_str(), Some("MarkSweepCompact"));
    assert!(notification.timestamp > 0);
    subscription.close().await.unwrap();
    // Calls still work after the listener is removed.
    assert!(client.is_registered(collector).await.unwrap());
}
