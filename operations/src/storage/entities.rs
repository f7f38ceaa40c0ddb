//! Esop's `entities`: what a backup or restore covers, as `""` (everything), keyspaces (`"ks1,ks2"`) or tables
//! (`"ks1.t1 ks2.t2"`); commas or spaces separate, and the two forms may not be mixed. Parsed when the request is
//! decoded, so the rest of the code never splits the text again.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validation;

/// `keyspace.table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyspaceTable {
    pub keyspace: String,
    pub table: String,
}

impl KeyspaceTable {
    pub fn new(keyspace: impl Into<String>, table: impl Into<String>) -> Self {
        KeyspaceTable {
            keyspace: keyspace.into(),
            table: table.into(),
        }
    }

    pub fn parse(text: &str) -> Result<KeyspaceTable, String> {
        match text.split_once('.') {
            Some((keyspace, table))
                if validation::is_keyspace_name(keyspace) && validation::is_table_name(table) =>
            {
                Ok(KeyspaceTable::new(keyspace, table))
            }
            _ => Err(format!("'{text}' is not a keyspace.table name")),
        }
    }
}

impl fmt::Display for KeyspaceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.keyspace, self.table)
    }
}

impl<'de> Deserialize<'de> for KeyspaceTable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        KeyspaceTable::parse(text.trim()).map_err(serde::de::Error::custom)
    }
}

impl Serialize for KeyspaceTable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What an operation covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Entities {
    #[default]
    All,
    Keyspaces(Vec<String>),
    Tables(Vec<KeyspaceTable>),
}

impl Entities {
    pub fn parse(text: &str) -> Result<Entities, String> {
        let items: Vec<&str> = text
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(Entities::All);
        }
        let tables = items.iter().filter(|item| item.contains('.')).count();
        if tables == 0 {
            for item in &items {
                if !validation::is_keyspace_name(item) {
                    return Err(format!("'{item}' is not a keyspace or keyspace.table name"));
                }
            }
            return Ok(Entities::Keyspaces(
                items.into_iter().map(str::to_string).collect(),
            ));
        }
        if tables != items.len() {
            return Err("mixes keyspaces and keyspace.table entries; use one form".into());
        }
        items
            .into_iter()
            .map(|item| {
                KeyspaceTable::parse(item)
                    .map_err(|_| format!("'{item}' is not a keyspace or keyspace.table name"))
            })
            .collect::<Result<_, _>>()
            .map(Entities::Tables)
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Entities::All)
    }

    /// The list `takeSnapshot` takes: keyspaces, or `ks.table` entries.
    pub fn to_list(&self) -> Vec<String> {
        match self {
            Entities::All => Vec::new(),
            Entities::Keyspaces(keyspaces) => keyspaces.clone(),
            Entities::Tables(tables) => tables.iter().map(ToString::to_string).collect(),
        }
    }

    /// Whether the table is covered.
    pub fn includes(&self, keyspace: &str, table: &str) -> bool {
        match self {
            Entities::All => true,
            Entities::Keyspaces(keyspaces) => keyspaces.iter().any(|k| k == keyspace),
            Entities::Tables(tables) => tables
                .iter()
                .any(|t| t.keyspace == keyspace && t.table == table),
        }
    }

    /// The keyspaces named, with the tables named in each (none: the whole keyspace).
    pub fn by_keyspace(&self) -> std::collections::BTreeMap<&str, Vec<&str>> {
        let mut by_keyspace: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        match self {
            Entities::All => {}
            Entities::Keyspaces(keyspaces) => {
                for keyspace in keyspaces {
                    by_keyspace.entry(keyspace).or_default();
                }
            }
            Entities::Tables(tables) => {
                for table in tables {
                    by_keyspace
                        .entry(&table.keyspace)
                        .or_default()
                        .push(&table.table);
                }
            }
        }
        by_keyspace
    }
}

impl fmt::Display for Entities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_list().join(","))
    }
}

/// A `null` or absent `entities` is everything, as in Esop.
impl<'de> Deserialize<'de> for Entities {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        Entities::parse(text.as_deref().unwrap_or_default()).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Entities {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_take_one_form() {
        assert_eq!(Entities::parse(""), Ok(Entities::All));
        assert_eq!(
            Entities::parse("ks1,ks2"),
            Ok(Entities::Keyspaces(vec!["ks1".into(), "ks2".into()]))
        );
        assert_eq!(
            Entities::parse("ks1.t1 ks2.t2").unwrap().to_string(),
            "ks1.t1,ks2.t2"
        );
        assert!(
            Entities::parse("ks1, ks2.t2")
                .unwrap_err()
                .contains("mixes")
        );
        assert!(Entities::parse("ks-1").is_err());
        assert!(Entities::parse("ks1.").is_err());
        assert!(Entities::parse("ks1.t1.x").is_err());
    }

    #[test]
    fn coverage_follows_the_form() {
        let tables = Entities::parse("ks.a,ks.b").unwrap();
        assert!(tables.includes("ks", "a") && !tables.includes("ks", "c"));
        assert!(Entities::parse("ks").unwrap().includes("ks", "c"));
        assert!(Entities::All.includes("other", "x"));
    }
}
