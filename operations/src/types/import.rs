//! `import`: loads SSTables from a directory into a table (Cassandra 4.0+ `importNewSSTables`).

use serde::{Deserialize, Serialize};

use crate::decode;
use crate::operation::{Operation, OperationContext, OperationFailure};
use crate::validation::{self, Validate, Violations};

/// Field names and defaults as Esop's `ImportOperationRequest`; each flag turns one of Cassandra's checks off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The directory holding the SSTables to import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_path: Option<String>,
    /// Esop's download directory; must exist when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_dir: Option<String>,
    #[serde(default, deserialize_with = "decode::bool")]
    pub keep_level: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub keep_repaired: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_verify: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_verify_tokens: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub no_invalidate_caches: bool,
    /// Skips every check (implies noVerify, noVerifyTokens, noInvalidateCaches and no extendedVerify).
    #[serde(default, deserialize_with = "decode::bool")]
    pub quick: bool,
    #[serde(default, deserialize_with = "decode::bool")]
    pub extended_verify: bool,
}

impl Validate for ImportRequest {
    fn validate(&self, violations: &mut Violations) {
        validation::required_keyspace(violations, "keyspace", &self.keyspace);
        validation::required_table(violations, "table", &self.table);
        match &self.table_path {
            Some(path) => validation::absolute_path(violations, "tablePath", path),
            None => violations.add("tablePath", "is required"),
        }
        if let Some(path) = &self.source_dir {
            validation::absolute_path(violations, "sourceDir", path);
        }
        if self.quick && self.extended_verify {
            violations.add(
                "extendedVerify",
                "cannot be combined with quick, which skips verification",
            );
        }
    }
}

pub struct Import;

impl Operation for Import {
    const TYPE: &'static str = "import";
    type Request = ImportRequest;

    async fn run(
        &self,
        _request: ImportRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        Err(context.facade_pending().await)
    }
}
