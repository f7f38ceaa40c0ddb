//! The JDK agent with TLS on both the registry and the connector, with certificates the test makes with
//! `keytool`: a CA, and a server certificate it signs for 127.0.0.1.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is the test failing

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use jmx::{JmxClient, JmxConfig, JmxError, TlsConfig};

const PASSWORD: &str = "changeit";

fn keytool(dir: &Path, args: &[&str], stdin: Option<Vec<u8>>) -> Vec<u8> {
    let mut command = Command::new("keytool");
    command.current_dir(dir).args(args);
    let output = match stdin {
        None => command.output().expect("keytool runs"),
        Some(input) => {
            use std::io::Write;
            let mut child = command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("keytool runs");
            child.stdin.take().unwrap().write_all(&input).unwrap();
            child.wait_with_output().unwrap()
        }
    };
    assert!(
        output.status.success(),
        "keytool {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A CA (`<name>-ca.pem`), and a PKCS12 keystore `server.p12` whose certificate that CA signed.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let store = format!("{name}-ca.p12");
    keytool(
        dir,
        &[
            "-genkeypair",
            "-alias",
            "ca",
            "-dname",
            &format!("CN={name}"),
            "-ext",
            "bc:c",
            "-keyalg",
            "RSA",
            "-keystore",
            &store,
            "-storetype",
            "PKCS12",
            "-storepass",
            PASSWORD,
            "-validity",
            "2",
        ],
        None,
    );
    let pem = format!("{name}-ca.pem");
    keytool(
        dir,
        &[
            "-exportcert",
            "-rfc",
            "-alias",
            "ca",
            "-keystore",
            &store,
            "-storepass",
            PASSWORD,
            "-file",
            &pem,
        ],
        None,
    );
    dir.join(pem)
}

/// A PKCS12 keystore `<alias>.p12` holding a key pair whose certificate `test-ca` signed, with the CA's
/// certificate; `san` is the certificate's subject alternative name extension, if any.
fn make_signed_keystore(dir: &Path, alias: &str, san: Option<&str>) -> PathBuf {
    let store = format!("{alias}.p12");
    let pem = format!("{alias}.pem");
    keytool(
        dir,
        &[
            "-genkeypair",
            "-alias",
            alias,
            "-dname",
            &format!("CN=jmx-{alias}"),
            "-keyalg",
            "RSA",
            "-keystore",
            &store,
            "-storetype",
            "PKCS12",
            "-storepass",
            PASSWORD,
            "-validity",
            "2",
        ],
        None,
    );
    let request = keytool(
        dir,
        &[
            "-certreq",
            "-alias",
            alias,
            "-keystore",
            &store,
            "-storepass",
            PASSWORD,
        ],
        None,
    );
    let mut sign = vec![
        "-gencert",
        "-alias",
        "ca",
        "-keystore",
        "test-ca.p12",
        "-storepass",
        PASSWORD,
        "-rfc",
        "-validity",
        "2",
    ];
    let extension = san.map(|san| format!("SAN={san}"));
    if let Some(extension) = &extension {
        sign.extend(["-ext", extension.as_str()]);
    }
    let signed = keytool(dir, &sign, Some(request));
    std::fs::write(dir.join(&pem), signed).unwrap();
    keytool(
        dir,
        &[
            "-importcert",
            "-alias",
            "ca",
            "-file",
            "test-ca.pem",
            "-keystore",
            &store,
            "-storepass",
            PASSWORD,
            "-noprompt",
        ],
        None,
    );
    keytool(
        dir,
        &[
            "-importcert",
            "-alias",
            alias,
            "-file",
            &pem,
            "-keystore",
            &store,
            "-storepass",
            PASSWORD,
            "-noprompt",
        ],
        None,
    );
    dir.join(store)
}

fn make_server_keystore(dir: &Path) -> PathBuf {
    make_signed_keystore(dir, "server", Some("ip:127.0.0.1"))
}

#[tokio::test]
async fn tls_registry_and_connector() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "test");
    let other_ca = make_ca(dir.path(), "other");
    let keystore = make_server_keystore(dir.path());
    let rmi_port = support::free_port();
    let jvm = support::jdk_agent(&[
        "-Dcom.sun.management.jmxremote.ssl=true".into(),
        "-Dcom.sun.management.jmxremote.registry.ssl=true".into(),
        "-Dcom.sun.management.jmxremote.ssl.need.client.auth=false".into(),
        format!("-Dcom.sun.management.jmxremote.rmi.port={rmi_port}"),
        format!("-Djavax.net.ssl.keyStore={}", keystore.display()),
        format!("-Djavax.net.ssl.keyStorePassword={PASSWORD}"),
        "-Djavax.net.ssl.keyStoreType=PKCS12".into(),
    ]);
    let config = |host: &str, tls: Option<TlsConfig>| JmxConfig {
        tls,
        ..JmxConfig::new(host, jvm.port)
    };

    // The right CA: registry and connector both over TLS.
    let client = JmxClient::connect(config("127.0.0.1", Some(TlsConfig::new(&ca))))
        .await
        .unwrap();
    let name = client
        .get_attribute("java.lang:type=Runtime", "VmName")
        .await
        .unwrap();
    assert!(name.as_str().is_some());

    // Another CA: refused, and the error says it is about the certificate.
    let error = JmxClient::connect(config("127.0.0.1", Some(TlsConfig::new(&other_ca))))
        .await
        .unwrap_err();
    assert!(matches!(error, JmxError::Tls { .. }), "{error:?}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    // No TLS at all: a clear hint instead of a parse error.
    let error = JmxClient::connect(config("127.0.0.1", None))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");

    // The certificate names 127.0.0.1, not localhost: refused unless host name checks are off.
    let error = JmxClient::connect(config("localhost", Some(TlsConfig::new(&ca))))
        .await
        .unwrap_err();
    assert!(matches!(error, JmxError::Tls { .. }), "{error:?}");
    let lenient = TlsConfig {
        verify_hostname: false,
        ..TlsConfig::new(&ca)
    };
    let client = JmxClient::connect(config("localhost", Some(lenient)))
        .await
        .unwrap();
    assert!(
        client
            .get_attribute("java.lang:type=Runtime", "Uptime")
            .await
            .is_ok()
    );
}

/// A client certificate signed by the same CA, exported to PEM with openssl.
fn make_client_pem(dir: &Path) -> (PathBuf, PathBuf) {
    make_signed_keystore(dir, "client", None);
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let pass = format!("pass:{PASSWORD}");
    openssl(&[
        "pkcs12",
        "-in",
        "client.p12",
        "-passin",
        &pass,
        "-clcerts",
        "-nokeys",
        "-out",
        "client-cert.pem",
    ]);
    openssl(&[
        "pkcs12",
        "-in",
        "client.p12",
        "-passin",
        &pass,
        "-nocerts",
        "-nodes",
        "-out",
        "client-key.pem",
    ]);
    (dir.join("client-cert.pem"), dir.join("client-key.pem"))
}

#[tokio::test]
async fn client_certificates_when_the_agent_requires_them() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "test");
    let keystore = make_server_keystore(dir.path());
    let client_pem = make_client_pem(dir.path());
    let rmi_port = support::free_port();
    let jvm = support::jdk_agent(&[
        "-Dcom.sun.management.jmxremote.ssl=true".into(),
        "-Dcom.sun.management.jmxremote.registry.ssl=true".into(),
        "-Dcom.sun.management.jmxremote.ssl.need.client.auth=true".into(),
        format!("-Dcom.sun.management.jmxremote.rmi.port={rmi_port}"),
        format!("-Djavax.net.ssl.keyStore={}", keystore.display()),
        format!("-Djavax.net.ssl.keyStorePassword={PASSWORD}"),
        "-Djavax.net.ssl.keyStoreType=PKCS12".into(),
        format!("-Djavax.net.ssl.trustStore={}", keystore.display()),
        format!("-Djavax.net.ssl.trustStorePassword={PASSWORD}"),
        "-Djavax.net.ssl.trustStoreType=PKCS12".into(),
    ]);
    let config = |tls| JmxConfig {
        tls: Some(tls),
        ..JmxConfig::new("127.0.0.1", jvm.port)
    };

    let with_certificate = TlsConfig {
        client_cert: Some(client_pem),
        ..TlsConfig::new(&ca)
    };
    let client = JmxClient::connect(config(with_certificate)).await.unwrap();
    assert!(
        client
            .get_attribute("java.lang:type=Runtime", "VmName")
            .await
            .is_ok()
    );

    let error = JmxClient::connect(config(TlsConfig::new(&ca)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, JmxError::Tls { .. }),
        "without a client certificate the agent refuses: {error:?}"
    );
    assert!(error.to_string().contains("client certificate"), "{error}");
}
