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
            Some(path) => {
                validation::absolute_path(violations, "tablePath", path);
                if let (Some(keyspace), Some(table)) = (&self.keyspace, &self.table)
                    && !names_table(path, keyspace, table)
                {
                    // Cassandra reads keyspace and table from the two last directory names and silently skips
                    // files elsewhere ("No new SSTables were found"): refuse such a path instead.
                    violations.add(
                        "tablePath",
                        format!("'{path}' must end in /{keyspace}/{table} (or /{keyspace}/{table}-<table id>): Cassandra only imports SSTables from a directory named after their keyspace and table"),
                    );
                }
            }
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

/// Whether `path` ends in `<keyspace>/<table>` or `<keyspace>/<table>-<id>`, as Cassandra's SSTable lister wants.
fn names_table(path: &str, keyspace: &str, table: &str) -> bool {
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let (Some(last), Some(parent)) = (parts.next(), parts.next()) else {
        return false;
    };
    let table_matches = last == table
        || last
            .strip_prefix(table)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()));
    parent == keyspace && table_matches
}

impl ImportRequest {
    /// `importNewSSTables`'s booleans in order: resetLevel, clearRepaired, verifySSTables, verifyTokens,
    /// invalidateCaches, extendedVerify, copyData. `quick` turns every check off, as in Esop; data is copied, so
    /// the source directory stays as it was.
    pub fn checks(&self) -> [bool; 7] {
        let (no_verify, no_verify_tokens, no_invalidate_caches, extended_verify) = if self.quick {
            (true, true, true, false)
        } else {
            (
                self.no_verify,
                self.no_verify_tokens,
                self.no_invalidate_caches,
                self.extended_verify,
            )
        };
        [
            !self.keep_level,
            !self.keep_repaired,
            !no_verify,
            !no_verify_tokens,
            !no_invalidate_caches,
            extended_verify,
            true,
        ]
    }
}

pub struct Import;

impl Operation for Import {
    const TYPE: &'static str = "import";
    type Request = ImportRequest;

    async fn run(
        &self,
        request: ImportRequest,
        context: OperationContext,
    ) -> Result<(), OperationFailure> {
        let target = super::target::target(
            &context,
            request.keyspace.clone(),
            request.table.clone().map(|t| vec![t]),
        )
        .await?;
        let (cassandra, keyspace, table) = (
            target.cassandra,
            target.keyspace,
            target.tables.into_iter().next().unwrap_or_default(),
        );
        // The sidecar runs on the node, so the paths it is given are the node's paths.
        let table_path = request.table_path.clone().unwrap_or_default();
        for (field, path) in [
            ("tablePath", Some(&table_path)),
            ("sourceDir", request.source_dir.as_ref()),
        ] {
            if let Some(path) = path
                && !tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir())
            {
                return Err(OperationFailure::Failed(format!(
                    "{field} {path} is not a directory on this node"
                )));
            }
        }
        let failed = context
            .cancellable(cassandra.import(
                &keyspace,
                &table,
                std::slice::from_ref(&table_path),
                request.checks(),
            ))
            .await??;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(OperationFailure::Failed(format!(
                "Cassandra could not import into {keyspace}.{table} from: {}",
                failed.join(", ")
            )))
        }
    }
}
