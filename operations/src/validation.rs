//! Submit-time validation: every problem with a request, each naming the JSON field it is about.
//!
//! We do not use the `validator` crate here: its derive reports Rust field names, while clients need the JSON
//! names they sent (`includeAllSStables`, `sourceDC`), and nearly all our rules (Cassandra identifiers, fields that
//! only make sense together) are custom checks anyway.

use serde::Serialize;

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldViolation {
    pub field: String,
    pub message: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Collects every violation of a request, so the client can fix them all at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldViolation::new(field, message));
    }

    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }
}

/// The violations in one line, `field message; field message`, for an error's text.
pub fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{} {}", v.field, v.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A request type checks its own fields; the registry runs this before an operation is stored.
/// Requests without fields, or whose fields cannot be wrong once decoded, keep the default (no checks).
pub trait Validate {
    fn validate(&self, _violations: &mut Violations) {}
}

/// Cassandra keeps keyspace names to 48 characters (`SchemaConstants.NAME_LENGTH`).
const KEYSPACE_NAME_MAX: usize = 48;
/// Table directory names are `<table>-<32 hex id>` and must fit the usual 255-byte file name limit.
const TABLE_NAME_MAX: usize = 222;

/// Letters, digits and underscores, 1 to 48 characters.
pub fn is_keyspace_name(name: &str) -> bool {
    is_identifier(name, KEYSPACE_NAME_MAX)
}

/// Letters, digits and underscores, 1 to 222 characters.
pub fn is_table_name(name: &str) -> bool {
    is_identifier(name, TABLE_NAME_MAX)
}

fn is_identifier(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A keyspace name as Cassandra accepts it: letters, digits and underscores, at most 48 characters.
pub fn keyspace_name(violations: &mut Violations, field: &str, name: &str) {
    if !is_identifier(name, KEYSPACE_NAME_MAX) {
        violations.add(
            field,
            format!(
                "'{name}' is not a valid keyspace name: use 1 to {KEYSPACE_NAME_MAX} letters, digits or underscores"
            ),
        );
    }
}

/// A table name as Cassandra accepts it: letters, digits and underscores.
pub fn table_name(violations: &mut Violations, field: &str, name: &str) {
    if !is_identifier(name, TABLE_NAME_MAX) {
        violations.add(
            field,
            format!(
                "'{name}' is not a valid table name: use 1 to {TABLE_NAME_MAX} letters, digits or underscores"
            ),
        );
    }
}

/// A required keyspace field.
pub fn required_keyspace(violations: &mut Violations, field: &str, name: &Option<String>) {
    match name {
        Some(name) => keyspace_name(violations, field, name),
        None => violations.add(field, "is required"),
    }
}

/// A required table field.
pub fn required_table(violations: &mut Violations, field: &str, name: &Option<String>) {
    match name {
        Some(name) => table_name(violations, field, name),
        None => violations.add(field, "is required"),
    }
}

/// An optional list of table names; each entry is checked and named by its index.
pub fn table_names(violations: &mut Violations, field: &str, names: &Option<Vec<String>>) {
    for (index, name) in names.iter().flatten().enumerate() {
        table_name(violations, &format!("{field}[{index}]"), name);
    }
}

/// Counts such as `jobs` where 0 means "let Cassandra decide".
pub fn non_negative(violations: &mut Violations, field: &str, value: i32) {
    if value < 0 {
        violations.add(field, format!("must be 0 or more, got {value}"));
    }
}

/// A path on the Cassandra node; relative paths would depend on the sidecar's working directory.
pub fn absolute_path(violations: &mut Violations, field: &str, path: &str) {
    if !path.starts_with('/') {
        violations.add(field, format!("'{path}' must be an absolute path"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut Violations)) -> Vec<FieldViolation> {
        let mut violations = Violations::default();
        f(&mut violations);
        violations.into_vec()
    }

    #[test]
    fn accepts_cassandra_identifiers_and_names_bad_ones() {
        assert!(check(|v| keyspace_name(v, "keyspace", "system_auth")).is_empty());
        assert!(check(|v| table_name(v, "table", "Table_01")).is_empty());
        let errors = check(|v| keyspace_name(v, "keyspace", "my-ks"));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "keyspace");
        assert!(errors[0].message.contains("'my-ks'"));
        assert_eq!(
            check(|v| keyspace_name(v, "keyspace", &"k".repeat(49))).len(),
            1
        );
        assert_eq!(check(|v| keyspace_name(v, "keyspace", "")).len(), 1);
    }

    #[test]
    fn names_the_index_of_a_bad_list_entry() {
        let errors = check(|v| table_names(v, "tables", &Some(vec!["ok".into(), "not ok".into()])));
        assert_eq!(
            errors,
            [FieldViolation::new(
                "tables[1]",
                "'not ok' is not a valid table name: use 1 to 222 letters, digits or underscores"
            )]
        );
    }

    #[test]
    fn required_fields_must_be_present() {
        let errors = check(|v| required_keyspace(v, "keyspace", &None));
        assert_eq!(errors, [FieldViolation::new("keyspace", "is required")]);
    }

    #[test]
    fn negative_counts_and_relative_paths_are_rejected() {
        assert_eq!(
            check(|v| non_negative(v, "jobs", -1)),
            [FieldViolation::new("jobs", "must be 0 or more, got -1")]
        );
        assert!(check(|v| non_negative(v, "jobs", 0)).is_empty());
        assert_eq!(check(|v| absolute_path(v, "tablePath", "data/ks")).len(), 1);
    }
}
