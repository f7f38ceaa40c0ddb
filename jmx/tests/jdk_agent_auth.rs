//! The JDK agent with a password file: right credentials work, wrong or missing ones give the typed error.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::os::unix::fs::PermissionsExt;

use jmx::{JavaArg, JmxClient, JmxConfig, JmxError};

/// Password and access files as the JDK agent wants them (the password file readable by its owner only).
fn auth_files(dir: &std::path::Path) -> Vec<String> {
    let password = dir.join("jmxremote.password");
    std::fs::write(&password, "admin s3cret\nmonitor watch\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let access = dir.join("jmxremote.access");
    std::fs::write(&access, "admin readwrite\nmonitor readonly\n").unwrap();
    vec![
        "-Dcom.sun.management.jmxremote.authenticate=true".into(),
        format!(
            "-Dcom.sun.management.jmxremote.password.file={}",
            password.display()
        ),
        format!(
            "-Dcom.sun.management.jmxremote.access.file={}",
            access.display()
        ),
    ]
}

#[tokio::test]
async fn credentials_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let jvm = support::jdk_agent(&auth_files(dir.path()));
    let config = || JmxConfig::new("127.0.0.1", jvm.port);

    let client = JmxClient::connect(config().with_credentials("admin", "s3cret"))
        .await
        .unwrap();
    assert!(
        client
            .get_attribute("java.lang:type=Runtime", "VmName")
            .await
            .is_ok()
    );

    for (user, password) in [("admin", "wrong"), ("nobody", "s3cret")] {
        let error = JmxClient::connect(config().with_credentials(user, password))
            .await
            .unwrap_err();
        assert!(
            matches!(error, JmxError::AuthenticationFailed { .. }),
            "{user}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .contains(&format!("127.0.0.1:{}", jvm.port)),
            "{error}"
        );
        assert!(
            !error.to_string().contains(password),
            "the password is not echoed: {error}"
        );
    }
    let error = JmxClient::connect(config()).await.unwrap_err();
    assert!(
        matches!(error, JmxError::AuthenticationFailed { .. }),
        "no credentials: {error:?}"
    );

    // A read-only user may read but not invoke.
    let monitor = JmxClient::connect(config().with_credentials("monitor", "watch"))
        .await
        .unwrap();
    assert!(
        monitor
            .get_attribute("java.lang:type=Runtime", "Uptime")
            .await
            .is_ok()
    );
    let denied = monitor
        .invoke("java.lang:type=Memory", "gc", &[], &[])
        .await
        .unwrap_err();
    assert!(
        matches!(denied, JmxError::AccessDenied { .. }),
        "{denied:?}"
    );
    let denied = monitor
        .set_attribute("java.lang:type=Memory", "Verbose", JavaArg::Boolean(true))
        .await
        .unwrap_err();
    assert!(
        matches!(denied, JmxError::AccessDenied { .. }),
        "{denied:?}"
    );
}
