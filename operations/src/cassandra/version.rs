//! Cassandra release versions, parsed from `StorageService.ReleaseVersion` (e.g. `5.0.8`, `4.1-rc1`,
//! `5.0-beta1-SNAPSHOT`), in the shape Icarus renders at `GET /version/cassandra`.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CassandraVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// Always -1: a DSE patch level, which open-source Cassandra does not have (kept for Icarus clients).
    pub dse_patch: i32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre_release_labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_label: Option<String>,
}

impl CassandraVersion {
    pub fn parse(text: &str) -> Option<CassandraVersion> {
        let (main, build) = match text.trim().split_once('+') {
            Some((main, build)) => (main, Some(build.to_string())),
            None => (text.trim(), None),
        };
        let (numbers, labels) = match main.split_once('-') {
            Some((numbers, labels)) => (numbers, labels.split('-').map(str::to_string).collect()),
            None => (main, Vec::new()),
        };
        let mut parts = numbers.split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(CassandraVersion {
            major,
            minor,
            patch,
            dse_patch: -1,
            pre_release_labels: labels,
            build_label: build,
        })
    }

    /// True from `major.minor` on.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for CassandraVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for label in &self.pre_release_labels {
            write!(f, "-{label}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_versions() {
        let v = CassandraVersion::parse("5.0.8").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (5, 0, 8));
        assert!(v.at_least(4, 1) && !v.at_least(5, 1));
        let rc = CassandraVersion::parse("4.1-rc1").unwrap();
        assert_eq!(
            (rc.minor, rc.patch, rc.pre_release_labels.as_slice()),
            (1, 0, &["rc1".to_string()][..])
        );
        assert_eq!(rc.to_string(), "4.1.0-rc1");
        assert!(CassandraVersion::parse("banana").is_none());
        let json = serde_json::to_value(CassandraVersion::parse("4.0.20").unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"major": 4, "minor": 0, "patch": 20, "dsePatch": -1})
        );
    }
}
