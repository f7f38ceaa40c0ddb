//! What this build is, for `GET /version` and `--version`.

use serde::Serialize;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("DAEDALUS_GIT_COMMIT");
pub const BUILD_TIME: &str = env!("DAEDALUS_BUILD_TIME");
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DAEDALUS_GIT_COMMIT"),
    ", built ",
    env!("DAEDALUS_BUILD_TIME"),
    ")"
);

/// Icarus's `/version` body: `{"version": ..., "buildTime": ..., "gitCommit": ...}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub version: String,
    pub build_time: &'static str,
    pub git_commit: &'static str,
}

impl VersionInfo {
    pub fn of_this_build() -> Self {
        Self {
            version: format!("daedalus {VERSION}"),
            build_time: BUILD_TIME,
            git_commit: GIT_COMMIT,
        }
    }
}
