//! What a verification found, as the `verify` operation answers it: per node the manifest checked, the objects and
//! bytes it names, and each object that is not what the manifest says; cluster-wide the same per node and the
//! totals. Also the failure text that names the damaged objects.

use serde::{Deserialize, Serialize};

/// How many problems the failure text names; the response lists them all.
pub const NAMED_PROBLEMS: usize = 20;

/// What is wrong with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// The store has no object under the key.
    Missing,
    /// The object's size is not the manifest's.
    Size,
    /// The object's bytes do not hash to the manifest's hash (found only by a deep check).
    Hash,
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Size => "size",
            ProblemKind::Hash => "hash",
        })
    }
}

/// One object of the backup that is not what its manifest entry says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The node's prefix (`<cluster>/<dc>/<node>`), in the totals of a cluster-wide verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The object's key relative to the node's prefix, as the manifest names it.
    pub key: String,
    pub problem: ProblemKind,
    /// What the manifest says: the size in bytes (missing, size) or the hash; for a node's manifest missing in a
    /// cluster-wide verification, what was expected there.
    pub expected: String,
    /// What the store holds: `no object`, the size in bytes, or the hash of its bytes.
    pub found: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(node) = &self.node {
            write!(f, "{node}/")?;
        }
        match self.problem {
            ProblemKind::Missing => write!(f, "{} is missing", self.key),
            ProblemKind::Size => write!(
                f,
                "{} has {} bytes, not {}",
                self.key, self.found, self.expected
            ),
            ProblemKind::Hash => write!(
                f,
                "{} hashes to {}, not {}",
                self.key, self.found, self.expected
            ),
        }
    }
}

/// One node's backup as checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeVerification {
    /// The node's prefix, in a cluster-wide verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The manifest's name (`<tag>-<schemaVersion>-<millis>`).
    pub manifest: String,
    /// Distinct objects the manifest names, all checked.
    pub objects: u64,
    /// Their bytes, as the manifest gives them.
    pub bytes: u64,
    /// Whether the objects were read and their hashes checked, not only their sizes.
    pub deep: bool,
    pub problems: Vec<Problem>,
}

/// Every node's backup as checked, and the totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterVerification {
    pub nodes: Vec<NodeVerification>,
    pub objects: u64,
    pub bytes: u64,
    pub deep: bool,
    /// Every node's problems, each with its node.
    pub problems: Vec<Problem>,
}

impl ClusterVerification {
    /// The totals over `nodes`.
    pub fn of(nodes: Vec<NodeVerification>, deep: bool) -> ClusterVerification {
        let problems = nodes
            .iter()
            .flat_map(|node| {
                node.problems.iter().map(|problem| Problem {
                    node: node.node.clone(),
                    ..problem.clone()
                })
            })
            .collect();
        ClusterVerification {
            objects: nodes.iter().map(|node| node.objects).sum(),
            bytes: crate::esop::manifest::total_size(nodes.iter().map(|node| node.bytes)),
            deep,
            problems,
            nodes,
        }
    }
}

/// The `verify` operation's response: one node's verification, or a cluster-wide one (which has `nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VerifyResponse {
    Cluster(ClusterVerification),
    Node(NodeVerification),
}

impl VerifyResponse {
    pub fn problems(&self) -> &[Problem] {
        match self {
            VerifyResponse::Cluster(cluster) => &cluster.problems,
            VerifyResponse::Node(node) => &node.problems,
        }
    }

    pub fn objects(&self) -> u64 {
        match self {
            VerifyResponse::Cluster(cluster) => cluster.objects,
            VerifyResponse::Node(node) => node.objects,
        }
    }

    pub fn bytes(&self) -> u64 {
        match self {
            VerifyResponse::Cluster(cluster) => cluster.bytes,
            VerifyResponse::Node(node) => node.bytes,
        }
    }
}

/// The failure of a backup that is not whole: `what` (the backup and where), how many objects have problems, and
/// the first [`NAMED_PROBLEMS`] of them.
pub fn not_whole(what: &str, objects: u64, problems: &[Problem]) -> String {
    let named: Vec<String> = problems
        .iter()
        .take(NAMED_PROBLEMS)
        .map(Problem::to_string)
        .collect();
    let more = problems.len().saturating_sub(NAMED_PROBLEMS);
    format!(
        "{what} is not whole: {} of its {objects} objects {} not as the manifest says: {}{}",
        problems.len(),
        if problems.len() == 1 { "is" } else { "are" },
        named.join("; "),
        if more > 0 {
            format!("; and {more} more (the response lists them all)")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problem(key: &str, problem: ProblemKind) -> Problem {
        Problem {
            node: None,
            key: key.into(),
            problem,
            expected: "3".into(),
            found: "no object".into(),
        }
    }

    #[test]
    fn responses_are_written_as_the_api_says() {
        let node = NodeVerification {
            node: None,
            manifest: "t-s-1".into(),
            objects: 2,
            bytes: 6,
            deep: false,
            problems: vec![problem("data/k/t/a", ProblemKind::Missing)],
        };
        assert_eq!(
            serde_json::to_value(VerifyResponse::Node(node.clone())).unwrap(),
            json!({"manifest": "t-s-1", "objects": 2, "bytes": 6, "deep": false, "problems": [
                {"key": "data/k/t/a", "problem": "missing", "expected": "3", "found": "no object"}]})
        );
        let cluster = ClusterVerification::of(
            vec![
                NodeVerification {
                    node: Some("c/d/n1".into()),
                    ..node.clone()
                },
                NodeVerification {
                    node: Some("c/d/n2".into()),
                    problems: vec![],
                    ..node
                },
            ],
            false,
        );
        let written = serde_json::to_value(VerifyResponse::Cluster(cluster.clone())).unwrap();
        assert_eq!(written["objects"], 4);
        assert_eq!(written["bytes"], 12);
        assert_eq!(written["problems"][0]["node"], "c/d/n1");
        assert_eq!(written["nodes"][1]["node"], "c/d/n2");
        assert!(written["nodes"][0]["problems"][0].get("node").is_none());
        let read: VerifyResponse = serde_json::from_value(written).unwrap();
        assert_eq!(read, VerifyResponse::Cluster(cluster));
    }

    #[test]
    fn the_failure_names_the_first_problems_and_counts_the_rest() {
        let one = not_whole(
            "backup t in s3://b/c/d/n",
            5,
            &[problem("data/k/t/a", ProblemKind::Missing)],
        );
        assert_eq!(
            one,
            "backup t in s3://b/c/d/n is not whole: 1 of its 5 objects is not as the manifest says: data/k/t/a \
             is missing"
        );
        let many: Vec<Problem> = (0..25)
            .map(|i| problem(&format!("data/k/t/{i}"), ProblemKind::Missing))
            .collect();
        let text = not_whole("backup t", 30, &many);
        assert!(text.contains("data/k/t/19 is missing"), "{text}");
        assert!(!text.contains("data/k/t/20 "), "{text}");
        assert!(
            text.ends_with("; and 5 more (the response lists them all)"),
            "{text}"
        );
        let hash = Problem {
            node: Some("c/d/n".into()),
            found: "ab".into(),
            expected: "cd".into(),
            ..problem("data/k/t/x", ProblemKind::Hash)
        };
        assert_eq!(hash.to_string(), "c/d/n/data/k/t/x hashes to ab, not cd");
    }
}
