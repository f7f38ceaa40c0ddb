//! Esop's storage locations: `protocol://bucket[/cluster/dc/node]`, or `file:///dir/bucket/cluster/dc/node`.

/// Storage providers Esop 3 knows.
const PROVIDERS: [&str; 4] = ["s3", "gcp", "azure", "file"];

/// `protocol://bucket[/cluster/dc/node]`, or `file:///dir/bucket/cluster/dc/node`, as Esop parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageLocation {
    pub protocol: String,
    pub bucket: String,
    /// `(cluster, dc, node)` when the location names a node; absent in the global form `protocol://bucket`.
    pub node_path: Option<(String, String, String)>,
    /// `file://` only: the directory that holds the bucket directory.
    pub directory: Option<String>,
}

impl StorageLocation {
    pub fn parse(text: &str) -> Result<StorageLocation, String> {
        let trimmed = text.trim().trim_end_matches('/');
        let Some((protocol, rest)) = trimmed.split_once("://") else {
            return Err(format!(
                "'{text}' is not a storage location: use PROTOCOL://BUCKET[/CLUSTER/DC/NODE]"
            ));
        };
        if !PROVIDERS.contains(&protocol) {
            return Err(format!(
                "unknown storage provider '{protocol}'; available storage providers: {}",
                PROVIDERS.join(", ")
            ));
        }
        let segments: Vec<&str> = rest.split('/').collect();
        if protocol == "file" {
            // file:///<dir>/<bucket>/<cluster>/<dc>/<node>: the last four segments, after a base directory.
            if !rest.starts_with('/')
                || segments.len() < 6
                || segments.iter().skip(1).any(|s| s.is_empty())
            {
                return Err(format!(
                    "'{text}' is not a file location: use file:///DIRECTORY/BUCKET/CLUSTER/DC/NODE"
                ));
            }
            let n = segments.len();
            return Ok(StorageLocation {
                directory: Some(format!("/{}", segments[1..n - 4].join("/"))),
                protocol: protocol.into(),
                bucket: segments[n - 4].into(),
                node_path: Some((
                    segments[n - 3].into(),
                    segments[n - 2].into(),
                    segments[n - 1].into(),
                )),
            });
        }
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("'{text}' has an empty path segment"));
        }
        match segments.as_slice() {
            [bucket] => Ok(StorageLocation {
                directory: None,
                protocol: protocol.into(),
                bucket: (*bucket).into(),
                node_path: None,
            }),
            [bucket, cluster, dc, node] => Ok(StorageLocation {
                directory: None,
                protocol: protocol.into(),
                bucket: (*bucket).into(),
                node_path: Some(((*cluster).into(), (*dc).into(), (*node).into())),
            }),
            _ => Err(format!(
                "'{text}' is not a storage location: use {protocol}://BUCKET (all nodes) or \
                 {protocol}://BUCKET/CLUSTER/DC/NODE (prefixes inside a bucket are not supported, as in Esop)"
            )),
        }
    }
}

impl StorageLocation {
    /// The same bucket, for the node `cluster/dc/node` (how an incomplete location is completed from Cassandra).
    pub fn for_node(&self, cluster: &str, dc: &str, node: &str) -> StorageLocation {
        StorageLocation {
            node_path: Some((cluster.into(), dc.into(), node.into())),
            ..self.clone()
        }
    }

    /// `<cluster>/<dc>/<node>`, the prefix of every object of the node, if the location names one.
    pub fn node_prefix(&self) -> Option<String> {
        self.node_path
            .as_ref()
            .map(|(cluster, dc, node)| format!("{cluster}/{dc}/{node}"))
    }

    /// `protocol://bucket`: how errors name the store (never with credentials).
    pub fn store_name(&self) -> String {
        match &self.directory {
            Some(directory) => format!("file://{directory}/{}", self.bucket),
            None => format!("{}://{}", self.protocol, self.bucket),
        }
    }
}

impl std::fmt::Display for StorageLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.node_prefix() {
            Some(prefix) => write!(f, "{}/{prefix}", self.store_name()),
            None => f.write_str(&self.store_name()),
        }
    }
}

/// Parsed when a request is decoded, so a bad location is refused naming `storageLocation`; echoed as text.
impl<'de> serde::Deserialize<'de> for StorageLocation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        StorageLocation::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for StorageLocation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_storage_locations_as_esop_does() {
        let node = StorageLocation::parse("s3://bucket/my-cluster/dc1/6f5b4c0a-1d2e/").unwrap();
        assert_eq!(node.bucket, "bucket");
        assert_eq!(
            node.node_path,
            Some(("my-cluster".into(), "dc1".into(), "6f5b4c0a-1d2e".into()))
        );
        assert_eq!(
            StorageLocation::parse("gcp://bucket").unwrap().node_path,
            None
        );
        let file = StorageLocation::parse("file:///var/backups/bucket/c/dc/n").unwrap();
        assert_eq!(
            (file.bucket.as_str(), file.node_path.is_some()),
            ("bucket", true)
        );
        assert_eq!(file.directory.as_deref(), Some("/var/backups"));
        assert_eq!(file.to_string(), "file:///var/backups/bucket/c/dc/n");
        assert_eq!(node.to_string(), "s3://bucket/my-cluster/dc1/6f5b4c0a-1d2e");
        assert!(
            StorageLocation::parse("ftp://bucket")
                .unwrap_err()
                .contains("available storage providers")
        );
        assert!(StorageLocation::parse("s3://bucket/prefix").is_err());
        assert!(StorageLocation::parse("file:///tmp/bucket").is_err());
        assert!(StorageLocation::parse("bucket").is_err());
    }
}
