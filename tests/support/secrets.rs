//! The secrets the tests hand the sidecar, in one place, so that every test's logs and answers can be searched for
//! them: [`super::Sidecar`] checks its logs when it stops, [`super::SpecClient`] every answer it receives.

pub const READ_TOKEN: &str = "read-3f9a1c0e7b2d4e6f8a0b1c2d3e4f5a6b";
pub const ADMIN_TOKEN: &str = "admin-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b";
pub const ROTATED_TOKEN: &str = "admin-rotated-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
pub const CLUSTER_TOKEN: &str = "cluster-admin-token-5f1e2d3c";
pub const OTHER_CLUSTER_TOKEN: &str = "some-other-token-7a8b9c";
pub const TLS_CLUSTER_TOKEN: &str = "tls-cluster-token-4d5e6f";
pub const METRICS_TOKEN: &str = "metrics-reader-1a2b3c";
/// The proxy and JMX passwords the tests send.
pub const PASSWORD: &str = "hunter2";

/// Every secret a test may give a sidecar.
pub fn all() -> [&'static str; 10] {
    [
        READ_TOKEN,
        ADMIN_TOKEN,
        ROTATED_TOKEN,
        CLUSTER_TOKEN,
        OTHER_CLUSTER_TOKEN,
        TLS_CLUSTER_TOKEN,
        METRICS_TOKEN,
        PASSWORD,
        super::stores::S3_SECRET_KEY,
        super::stores::AZURE_KEY,
    ]
}

/// The secrets found in `text`.
pub fn found_in(text: &str) -> Vec<&'static str> {
    all()
        .into_iter()
        .filter(|secret| text.contains(secret))
        .collect()
}
