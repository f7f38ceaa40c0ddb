//! The agent's JVM dies and comes back, with its RMI server on a new port, as Cassandra's does on a restart: the
//! client tells what happened to calls under way, fails fast while the agent is gone, and finds it again through
//! the registry without being rebuilt.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::time::Duration;

use jmx::{ConnectionState, JavaArg, JmxClient, JmxConfig, JmxError};

const SS: &str = "org.apache.cassandra.db:type=StorageService";

/// Guards against a hang: no call here may take longer than this (a hung call is the bug these tests are about).
const NO_HANG: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(NO_HANG, work)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {NO_HANG:?}"))
}

async fn sleeps_begun(client: &JmxClient) -> i64 {
    client
        .get_attribute(SS, "SleepsBegun")
        .await
        .unwrap()
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_found_again_on_its_new_rmi_port() {
    let server = support::cassandra_like(None);
    let port = server.port;
    let config = JmxConfig {
        keepalive: Some(Duration::from_secs(60)),
        ..JmxConfig::new("127.0.0.1", port)
    };
    let client = JmxClient::connect(config).await.unwrap();
    let mut connected = client.watch_connected();

    // A call under way when the JVM is killed.
    let sleeper = client.clone();
    let under_way = tokio::spawn(async move {
        sleeper
            .invoke(SS, "sleep", &[JavaArg::Long(600_000)], &["long"])
            .await
    });
    while sleeps_begun(&client).await == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);
    let error = bounded("the call under way", under_way)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&error, JmxError::ConnectionLost { during, .. } if during == &format!("sleep on {SS}")),
        "the error says the connection broke during the call, not that it could not connect: {error}"
    );
    assert!(error.to_string().contains("broke during sleep"), "{error}");

    // While the agent is gone: fast, clear errors.
    for _ in 0..3 {
        let error = bounded("a call while the agent is down", client.is_registered(SS))
            .await
            .unwrap_err();
        assert!(error.is_connection_problem(), "{error}");
    }
    assert!(matches!(client.state(), ConnectionState::Down { .. }));
    assert!(!*connected.borrow_and_update());

    // Back on the same registry port, with a new RMI port: the keep-alive finds it without any call being made.
    let _restarted = support::cassandra_like_on(port, None, &[]);
    bounded("reconnecting", connected.wait_for(|up| *up))
        .await
        .unwrap();
    assert_eq!(client.state(), ConnectionState::Connected);
    assert!(client.is_registered(SS).await.unwrap());
    assert_eq!(sleeps_begun(&client).await, 0, "a new JVM answers");
    assert!(client.reconnects() >= 1);
}

/// Without a keep-alive, the next call after the agent is back reconnects (after at most one backoff interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keep_alive_calls_reconnect_once_the_agent_is_back() {
    let server = support::cassandra_like(None);
    let port = server.port;
    let config = JmxConfig {
        keepalive: None,
        ..JmxConfig::new("127.0.0.1", port)
    };
    let client = JmxClient::connect(config).await.unwrap();
    assert!(client.is_registered(SS).await.unwrap());
    drop(server);
    let error = bounded("a call while the agent is down", client.is_registered(SS))
        .await
        .unwrap_err();
    assert!(error.is_connection_problem(), "{error}");

    let _restarted = support::cassandra_like_on(port, None, &[]);
    let answered = bounded("reconnecting", async {
        loop {
            match client.is_registered(SS).await {
                Ok(answer) => break answer,
                Err(error) => {
                    assert!(error.is_connection_problem(), "{error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .await;
    assert!(answered);
    assert_eq!(client.state(), ConnectionState::Connected);
}
