//! `rebuild`: streams this node's data from another data centre, like `nodetool rebuild`.

use serde::{Deserialize, Serialize};

use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

/// A token range `(start, end]`, with tokens written as the partitioner writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TokenRange {
    #[serde(default)]
    pub start: String,
    #[serde(default)]
    pub end: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildRequest {
    /// The data centre to stream from; absent lets Cassandra pick.
    #[serde(default, rename = "sourceDC", skip_serializing_if = "Option::is_none")]
    pub source_dc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specific_tokens: Option<Vec<TokenRange>>,
    /// Addresses of the nodes to stream from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specific_sources: Option<Vec<String>>,
}

impl Validate for RebuildRequest {
    fn validate(&self, violations: &mut Violations) {
        if let Some(dc) = &self.source_dc
            && dc.trim().is_empty()
        {
            violations.add("sourceDC", "must not be empty when given");
        }
        if let Some(keyspace) = &self.keyspace {
            validation::keyspace_name(violations, "keyspace", keyspace);
        }
        let tokens = self.specific_tokens.as_deref().unwrap_or_default();
        if !tokens.is_empty() && self.keyspace.is_none() {
            // Cassandra refuses token ranges without a keyspace ("Cannot specify tokens without keyspace").
            violations.add("keyspace", "is required when specificTokens is given");
        }
        for (index, range) in tokens.iter().enumerate() {
            if range.start.trim().is_empty() {
                violations.add(format!("specificTokens[{index}].start"), "is required");
            }
            if range.end.trim().is_empty() {
                violations.add(format!("specificTokens[{index}].end"), "is required");
            }
        }
        for (index, source) in self.specific_sources.iter().flatten().enumerate() {
            if source.trim().is_empty() {
                violations.add(format!("specificSources[{index}]"), "must not be empty");
            }
        }
    }
}

pub struct Rebuild;

impl Operation for Rebuild {
    const TYPE: &'static str = "rebuild";
    const EXCLUSIVE: Option<&'static str> = Some(super::NODE_STATE);
    type Request = RebuildRequest;

    async fn run(
        &self,
        request: RebuildRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let cassandra = context.cassandra().await?;
        if let Some(keyspace) = &request.keyspace {
            context
                .cancellable(cassandra.require_tables(keyspace, &[]))
                .await??;
        }
        // Cassandra takes the ranges as "(start,end],(start,end]" and the sources comma-separated.
        let tokens = request
            .specific_tokens
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|ranges| {
                ranges
                    .iter()
                    .map(|r| format!("({},{}]", r.start.trim(), r.end.trim()))
                    .collect::<Vec<_>>()
                    .join(",")
            });
        let sources = request
            .specific_sources
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| s.join(","));
        let rebuild = cassandra.rebuild(
            request.source_dc.as_deref(),
            request.keyspace.as_deref(),
            tokens.as_deref(),
            sources.as_deref(),
        );
        context.cancellable(rebuild).await??;
        Ok(())
    }
}
