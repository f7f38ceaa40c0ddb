//! What a verification found, as the `verify` operation answers it: per node the manifest checked, the objects and
//! bytes it names, and each object that is not what the manifest says; cluster-wide the same per node and the
//! totals. Also the failure text that names the damaged objects. A response lists at most
//! [`LISTED_PROBLEMS`] problems and counts them all: a backup whose prefix was emptied has one problem per object,
//! and the response is kept in the operation store (an etcd document).

use serde::{Deserialize, Serialize};

/// How many problems the failure text names.
pub const NAMED_PROBLEMS: usize = 20;

/// How many problems a response lists at most (the first found); `problemCount` counts them all.
pub const LISTED_PROBLEMS: usize = 1000;

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
    /// Objects not as the manifest says, all of them.
    #[serde(default)]
    pub problem_count: u64,
    /// The first [`LISTED_PROBLEMS`] of them.
    pub problems: Vec<Problem>,
}

impl NodeVerification {
    /// Counts `problem`, and lists it while fewer than [`LISTED_PROBLEMS`] are.
    pub fn add_problem(&mut self, problem: Problem) {
        self.problem_count += 1;
        if self.problems.len() < LISTED_PROBLEMS {
            self.problems.push(problem);
        }
    }
}

/// One node's backup as checked, in a cluster-wide verification: its problems are listed with the totals'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub manifest: String,
    pub objects: u64,
    pub bytes: u64,
    pub deep: bool,
    #[serde(default)]
    pub problem_count: u64,
}

/// Every node's backup as checked, and the totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterVerification {
    pub nodes: Vec<NodeSummary>,
    pub objects: u64,
    pub bytes: u64,
    pub deep: bool,
    /// Every node's problems, all of them.
    #[serde(default)]
    pub problem_count: u64,
    /// The first [`LISTED_PROBLEMS`] of them over all nodes, each with its node.
    pub problems: Vec<Problem>,
}

impl ClusterVerification {
    /// No node checked yet.
    pub fn new(deep: bool) -> ClusterVerification {
        ClusterVerification {
            nodes: Vec::new(),
            objects: 0,
            bytes: 0,
            deep,
            problem_count: 0,
            problems: Vec::new(),
        }
    }

    /// Adds one node's verification to the totals; the nodes are then in their prefixes' order, their problems
    /// with them (the first found of each node, up to [`LISTED_PROBLEMS`] over all).
    pub fn add(&mut self, node: NodeVerification) {
        self.objects += node.objects;
        self.bytes = crate::esop::manifest::total_size([self.bytes, node.bytes]);
        self.problem_count += node.problem_count;
        let room = LISTED_PROBLEMS.saturating_sub(self.problems.len());
        self.problems
            .extend(node.problems.into_iter().take(room).map(|problem| Problem {
                node: node.node.clone(),
                ..problem
            }));
        let at = self.nodes.partition_point(|other| other.node <= node.node);
        self.nodes.insert(
            at,
            NodeSummary {
                node: node.node,
                manifest: node.manifest,
                objects: node.objects,
                bytes: node.bytes,
                deep: node.deep,
                problem_count: node.problem_count,
            },
        );
        self.problems.sort_by(|a, b| a.node.cmp(&b.node));
    }

    /// The totals over `nodes`.
    pub fn of(nodes: Vec<NodeVerification>, deep: bool) -> ClusterVerification {
        let mut cluster = ClusterVerification::new(deep);
        for node in nodes {
            cluster.add(node);
        }
        cluster
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
    /// The problems listed: the first [`LISTED_PROBLEMS`].
    pub fn problems(&self) -> &[Problem] {
        match self {
            VerifyResponse::Cluster(cluster) => &cluster.problems,
            VerifyResponse::Node(node) => &node.problems,
        }
    }

    /// Every problem found, listed or not.
    pub fn problem_count(&self) -> u64 {
        let counted = match self {
            VerifyResponse::Cluster(cluster) => cluster.problem_count,
            VerifyResponse::Node(node) => node.problem_count,
        };
        counted.max(self.problems().len() as u64)
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

/// The failure of a backup that is not whole: `what` (the backup and where), how many objects have problems
/// (`count`), and the first [`NAMED_PROBLEMS`] of those listed (`problems`).
pub fn not_whole(what: &str, objects: u64, count: u64, problems: &[Problem]) -> String {
    let count = count.max(problems.len() as u64);
    let named: Vec<String> = problems
        .iter()
        .take(NAMED_PROBLEMS)
        .map(Problem::to_string)
        .collect();
    let more = count.saturating_sub(named.len() as u64);
    let listed = if count > problems.len() as u64 {
        format!("the response lists the first {}", problems.len())
    } else {
        "the response lists them all".to_string()
    };
    format!(
        "{what} is not whole: {count} of its {objects} objects {} not as the manifest says: {}{}",
        if count == 1 { "is" } else { "are" },
        named.join("; "),
        if more > 0 {
            format!("; and {more} more ({listed})")
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
            problem_count: 1,
            problems: vec![problem("data/k/t/a", ProblemKind::Missing)],
        };
        assert_eq!(
            serde_json::to_value(VerifyResponse::Node(node.clone())).unwrap(),
            json!({"manifest": "t-s-1", "objects": 2, "bytes": 6, "deep": false, "problemCount": 1,
                "problems": [{"key": "data/k/t/a", "problem": "missing", "expected": "3",
                "found": "no object"}]})
        );
        let cluster = ClusterVerification::of(
            vec![
                NodeVerification {
                    node: Some("c/d/n1".into()),
                    ..node.clone()
                },
                NodeVerification {
                    node: Some("c/d/n2".into()),
                    problem_count: 0,
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
        assert_eq!(written["problemCount"], 1);
        assert_eq!(written["nodes"][1]["node"], "c/d/n2");
        assert_eq!(written["nodes"][0]["problemCount"], 1);
        assert!(
            written["nodes"][0].get("problems").is_none(),
            "listed once, with the totals"
        );
        let read: VerifyResponse = serde_json::from_value(written).unwrap();
        assert_eq!(read, VerifyResponse::Cluster(cluster));
    }

    #[test]
    fn the_failure_names_the_first_problems_and_counts_the_rest() {
        let one = not_whole(
            "backup t in s3://b/c/d/n",
            5,
            1,
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
        let text = not_whole("backup t", 30, 25, &many);
        assert!(text.contains("data/k/t/19 is missing"), "{text}");
        assert!(!text.contains("data/k/t/20 "), "{text}");
        assert!(
            text.ends_with("; and 5 more (the response lists them all)"),
            "{text}"
        );
        // More found than listed.
        let text = not_whole("backup t", 5000, 4000, &many);
        assert!(text.contains("4000 of its 5000 objects are"), "{text}");
        assert!(
            text.ends_with("; and 3980 more (the response lists the first 25)"),
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

    /// A backup whose objects are all gone: the response lists the first 1000 problems and counts them all, in a
    /// cluster-wide verification once, with the totals.
    #[test]
    fn responses_list_at_most_a_thousand_problems_and_count_all() {
        let node = |name: &str| {
            let mut node = NodeVerification {
                node: Some(name.into()),
                manifest: "t-s-1".into(),
                objects: 50_000,
                bytes: 0,
                deep: false,
                problem_count: 0,
                problems: Vec::new(),
            };
            for i in 0..50_000 {
                node.add_problem(problem(&format!("data/k/t/{i}"), ProblemKind::Missing));
            }
            node
        };
        let one = node("c/d/n2");
        assert_eq!(one.problem_count, 50_000);
        assert_eq!(one.problems.len(), LISTED_PROBLEMS);
        assert_eq!(one.problems[999].key, "data/k/t/999");
        let written = serde_json::to_string(&VerifyResponse::Node(one.clone())).unwrap();
        assert!(written.len() < 200_000, "{} bytes", written.len());
        let cluster = ClusterVerification::of(vec![one, node("c/d/n1")], false);
        assert_eq!(cluster.problem_count, 100_000);
        assert_eq!(cluster.problems.len(), LISTED_PROBLEMS);
        assert_eq!(
            cluster.problems[0].node.as_deref(),
            Some("c/d/n2"),
            "the first found"
        );
        let nodes: Vec<_> = cluster.nodes.iter().map(|n| n.node.as_deref()).collect();
        assert_eq!(nodes, [Some("c/d/n1"), Some("c/d/n2")]);
        let response = VerifyResponse::Cluster(cluster);
        assert_eq!(response.problem_count(), 100_000);
        let written = serde_json::to_string(&response).unwrap();
        assert!(written.len() < 200_000, "{} bytes", written.len());
        assert_eq!(
            serde_json::from_str::<VerifyResponse>(&written).unwrap(),
            response
        );
    }
}
