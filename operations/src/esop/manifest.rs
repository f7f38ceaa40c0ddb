//! Esop's backup manifest (`manifests/<tag>-<schemaVersion>-<millis>.json` under the node prefix).
//!
//! The manifest is the only index of a backup: restore, `list` and `remove-backup` read nothing else, and its presence
//! marks a complete backup. Field order and formatting follow Esop's Jackson output (creator properties first, nulls
//! omitted, `DefaultPrettyPrinter`) so manifests written by either tool are byte-compatible; maps keep the order they
//! were read or built in, because Esop's own order (Java `HashMap` iteration) cannot be reproduced meaningfully.

use crate::esop::json::to_jackson_pretty;
use crate::esop::sstable::SstableName;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;

/// The largest manifest the sidecar reads: 64 MiB, about 220,000 entries (a node of some 25,000 SSTables; Esop writes
/// about 300 bytes an entry). Every restore, `list` and `remove-backup` holds a whole manifest in memory; a bucket
/// cannot make it take more.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// The sum of sizes a manifest gives, saturating: the sizes come from a bucket, and a sum past `u64::MAX` must not
/// panic or wrap.
pub fn total_size(sizes: impl IntoIterator<Item = u64>) -> u64 {
    sizes.into_iter().fold(0, u64::saturating_add)
}

/// A manifest that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid Esop manifest at '{path}': {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub snapshot: Snapshot,
    /// The node's tokens, sorted as strings; restore compares them with the target node's.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tokens: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub schema_version: String,
    /// Sum of the entries' sizes; absent from manifests older than Esop 2.
    #[serde(default, deserialize_with = "null_as_default")]
    pub size: u64,
}

impl Manifest {
    /// Parses manifest JSON; unknown fields are ignored (Esop would reject them, but newer Esop versions may add some).
    pub fn from_json(json: &[u8]) -> Result<Manifest, ManifestError> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| ManifestError::Parse {
            path: e.path().to_string(),
            source: e.into_inner(),
        })
    }

    /// The manifest as Esop writes it (Jackson pretty print, no trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        to_jackson_pretty(self).expect("a manifest has only string map keys and infallible fields")
    }

    /// Every entry of every table (the manifest object itself is not an entry).
    pub fn entries(&self) -> impl Iterator<Item = &ManifestEntry> + '_ {
        self.tables().flat_map(|(_, _, table)| table.entries())
    }

    /// `(keyspace, table name, table)` for every table.
    pub fn tables(&self) -> impl Iterator<Item = (&str, &str, &Table)> + '_ {
        self.snapshot.keyspaces.iter().flat_map(|(keyspace, ks)| {
            ks.tables
                .iter()
                .map(move |(name, table)| (keyspace, name, table))
        })
    }

    /// Sum of all entry sizes: the `size` Esop records at backup and the `size` of a `list` report.
    pub fn entries_size(&self) -> u64 {
        total_size(self.entries().map(|e| e.size))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The resolved snapshot tag, equal to the manifest name for backups taken by Esop or Daedalus.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub keyspaces: OrderedMap<Keyspace>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyspace {
    /// Keyed by table name without the id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tables: OrderedMap<Table>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "TableRepr")]
pub struct Table {
    /// Entries grouped by SSTable prefix (`nb-1-big`). A legacy secondary index SSTable shares the group of the base
    /// table's SSTable with the same prefix, as in Esop.
    pub sstables: OrderedMap<Vec<ManifestEntry>>,
    /// The 32-hex table id, the suffix of the table's data directory.
    pub id: String,
    /// The snapshot's `schema.cql`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_content: Option<String>,
}

impl Table {
    pub fn entries(&self) -> impl Iterator<Item = &ManifestEntry> + '_ {
        self.sstables.values().flatten()
    }
}

/// What Esop accepts for a table: the 2.0+ `sstables` map, or the older flat `entries` list when `sstables` is absent
/// or empty.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TableRepr {
    sstables: Option<OrderedMap<Vec<ManifestEntry>>>,
    entries: Option<Vec<ManifestEntry>>,
    id: Option<String>,
    schema_content: Option<String>,
}

impl From<TableRepr> for Table {
    fn from(repr: TableRepr) -> Table {
        let sstables = match repr.sstables {
            Some(sstables) if !sstables.is_empty() => sstables,
            _ => classify_legacy_entries(repr.entries.unwrap_or_default()),
        };
        Table {
            sstables,
            id: repr.id.unwrap_or_default(),
            schema_content: repr.schema_content,
        }
    }
}

/// Groups flat entries by SSTable prefix in order of first appearance; like Esop, entries whose file name is not an
/// SSTable component are dropped.
fn classify_legacy_entries(entries: Vec<ManifestEntry>) -> OrderedMap<Vec<ManifestEntry>> {
    let mut sstables = OrderedMap::new();
    for entry in entries {
        let file_name = entry.object_key.rsplit('/').next().unwrap_or_default();
        if let Some(name) = SstableName::parse(file_name) {
            sstables
                .get_or_insert_with(name.prefix(), Vec::new)
                .push(entry);
        }
    }
    sstables
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    /// Relative to the node prefix: `data/<ks>/<table>-<id>/[.<index>/]<generation>-<digest>/<file>`.
    pub object_key: String,
    #[serde(rename = "type")]
    pub kind: EntryType,
    #[serde(default, deserialize_with = "null_as_default")]
    pub size: u64,
    /// Hex SHA-256 or decimal CRC32 of the file, per the backup's hash algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl ManifestEntry {
    /// An SSTable component entry.
    pub fn file(object_key: impl Into<String>, size: u64, hash: Option<String>) -> ManifestEntry {
        ManifestEntry {
            object_key: object_key.into(),
            kind: EntryType::File,
            size,
            hash,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntryType {
    File,
    ManifestFile,
    /// Schema files of Esop 1.x backups.
    CqlSchema,
    CommitLog,
}

/// The name of a manifest object, `<tag>-<schemaVersion>-<epochMillis>`, without `.json`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ManifestName {
    name: String,
    timestamp_millis: i64,
}

impl ManifestName {
    pub fn new(tag: &str, schema_version: &str, timestamp_millis: i64) -> ManifestName {
        ManifestName {
            name: format!("{tag}-{schema_version}-{timestamp_millis}"),
            timestamp_millis,
        }
    }

    /// Accepts any name whose text after the last `-` (or the whole name, if there is none) is an integer, which is
    /// all Esop needs to order backups.
    pub fn parse(name: &str) -> Option<ManifestName> {
        let timestamp = name.rsplit('-').next()?;
        let timestamp_millis = timestamp.parse().ok()?;
        Some(ManifestName {
            name: name.to_owned(),
            timestamp_millis,
        })
    }

    /// From an object key or path ending in `<name>.<extension>`, e.g. `c/dc/node/manifests/<name>.json`.
    pub fn from_key(key: &str) -> Option<ManifestName> {
        let file_name = key.rsplit('/').next()?;
        let (name, _extension) = file_name.rsplit_once('.')?;
        ManifestName::parse(name)
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn timestamp_millis(&self) -> i64 {
        self.timestamp_millis
    }

    /// `manifests/<name>.json`.
    pub fn key(&self) -> String {
        manifest_key(&self.name)
    }
}

impl fmt::Display for ManifestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// `manifests/<name>.json`, relative to the node prefix.
pub fn manifest_key(name: &str) -> String {
    format!("manifests/{name}.json")
}

/// Jackson maps JSON `null` to an empty collection or zero for these fields; serde's `default` covers only absence.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A string-keyed map that keeps insertion order, so a manifest read and written again keeps its layout.
#[derive(Debug, Clone)]
pub struct OrderedMap<V> {
    entries: Vec<(String, V)>,
    index: HashMap<String, usize>,
}

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap {
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<V: PartialEq> PartialEq for OrderedMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<V: Eq> Eq for OrderedMap<V> {}

impl<V> OrderedMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.index.get(key).map(|&i| &mut self.entries[i].1)
    }

    /// Replaces the value of an existing key in place (keeping its position), else appends.
    pub fn insert(&mut self, key: impl Into<String>, value: V) -> Option<V> {
        let key = key.into();
        match self.index.get(&key) {
            Some(&i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
                None
            }
        }
    }

    pub fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.index.get(key) {
            Some(&i) => i,
            None => {
                self.index.insert(key.to_owned(), self.entries.len());
                self.entries.push((key.to_owned(), make()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

impl<V> FromIterator<(String, V)> for OrderedMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut map = OrderedMap::new();
        for (key, value) in iter {
            map.insert(key, value);
        }
        map
    }
}

impl<V> IntoIterator for OrderedMap<V> {
    type Item = (String, V);
    type IntoIter = std::vec::IntoIter<(String, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (key, value) in &self.entries {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedMapVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedMapVisitor<V> {
            type Value = OrderedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                // A repeated key keeps its first position and its last value, as Jackson's map deserializer does.
                let mut map = OrderedMap::new();
                while let Some((key, value)) = access.next_entry::<String, V>()? {
                    map.insert(key, value);
                }
                Ok(map)
            }
        }

        deserializer.deserialize_map(OrderedMapVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = include_str!("../../tests/fixtures/esop-manifest.json");

    #[test]
    fn golden_manifest_parses_into_the_model() {
        let manifest = Manifest::from_json(GOLDEN.as_bytes()).expect("golden manifest parses");
        let name = "daily-6c8e35a0-4a5e-3a41-9b1e-0b6d4f7f2e11-1718029212345";
        assert_eq!(manifest.snapshot.name, name);
        assert_eq!(
            manifest.schema_version,
            "6c8e35a0-4a5e-3a41-9b1e-0b6d4f7f2e11"
        );
        assert_eq!(manifest.tokens.len(), 16);
        let mut sorted = manifest.tokens.clone();
        sorted.sort();
        assert_eq!(manifest.tokens, sorted, "Esop sorts tokens as strings");
        assert_eq!(manifest.size, manifest.entries_size());

        let shop = manifest
            .snapshot
            .keyspaces
            .get("shop")
            .expect("keyspace shop");
        let orders = shop.tables.get("orders").expect("table orders");
        assert_eq!(orders.id.len(), 32);
        let bti = orders
            .sstables
            .get("da-3h5q_1qn7_1rvds2osgtyy6n3jdc-bti")
            .expect("BTI sstable");
        assert!(
            bti.iter().all(
                |e| e.kind == EntryType::File && e.hash.as_ref().is_some_and(|h| h.len() == 64)
            )
        );
        assert!(bti.iter().any(|e| {
            e.object_key
                .ends_with("-bti-SAI+aa+orders_customer_idx+PostingLists.db")
        }));
        assert!(
            orders
                .schema_content
                .as_deref()
                .is_some_and(|s| s.starts_with("CREATE TABLE IF NOT EXISTS shop.orders"))
        );

        let users = shop.tables.get("users").expect("table users");
        assert!(
            users
                .entries()
                .any(|e| e.object_key.contains("/.users_email_idx/"))
        );
        for (_, _, table) in manifest.tables() {
            for (prefix, entries) in table.sstables.iter() {
                for entry in entries {
                    let file = entry.object_key.rsplit('/').next().expect("file name");
                    assert_eq!(SstableName::parse(file).expect("sstable").prefix(), prefix);
                }
            }
        }
    }

    #[test]
    fn golden_manifest_round_trips_byte_for_byte() {
        let manifest = Manifest::from_json(GOLDEN.as_bytes()).expect("golden manifest parses");
        assert_eq!(
            String::from_utf8(manifest.to_json()).expect("utf-8"),
            GOLDEN
        );
    }

    #[test]
    fn legacy_entries_are_classified_by_prefix() {
        let json = r#"{
          "snapshot" : { "name" : "s", "keyspaces" : { "ks" : { "tables" : {
            "t" : { "entries" : [
              { "objectKey" : "data/ks/t-0123456789abcdef0123456789abcdef/13-1/mc-13-big-Data.db", "type" : "FILE", "size" : 5 },
              { "objectKey" : "data/ks/t-0123456789abcdef0123456789abcdef/schema.cql", "type" : "CQL_SCHEMA", "size" : 1 },
              { "objectKey" : "data/ks/t-0123456789abcdef0123456789abcdef/14-2/mc-14-big-Data.db", "type" : "FILE", "size" : 6 },
              { "objectKey" : "data/ks/t-0123456789abcdef0123456789abcdef/13-1/mc-13-big-TOC.txt", "type" : "FILE", "size" : 7 }
            ], "id" : "0123456789abcdef0123456789abcdef" },
            "empty" : { "entries" : [ ], "id" : "fedcba9876543210fedcba9876543210" }
          } } } },
          "tokens" : [ "1" ], "schemaVersion" : "v", "someFutureField" : { "x" : 1 }
        }"#;
        let manifest = Manifest::from_json(json.as_bytes()).expect("parses");
        let tables = &manifest.snapshot.keyspaces.get("ks").expect("ks").tables;
        let t = tables.get("t").expect("t");
        assert_eq!(
            t.sstables.keys().collect::<Vec<_>>(),
            ["mc-13-big", "mc-14-big"]
        );
        assert_eq!(
            t.sstables
                .get("mc-13-big")
                .expect("13")
                .iter()
                .map(|e| e.size)
                .collect::<Vec<_>>(),
            [5, 7]
        );
        assert!(tables.get("empty").expect("empty").sstables.is_empty());
        assert_eq!(manifest.size, 0);
        assert_eq!(manifest.entries_size(), 18);
    }

    #[test]
    fn nulls_are_omitted_and_read_as_absent() {
        let entry = ManifestEntry::file("data/k/t-0/1-2/nb-1-big-Data.db", 3, None);
        let json =
            String::from_utf8(to_jackson_pretty(&entry).expect("serializes")).expect("utf-8");
        assert_eq!(
            json,
            "{\n  \"objectKey\" : \"data/k/t-0/1-2/nb-1-big-Data.db\",\n  \"type\" : \"FILE\",\n  \"size\" : 3\n}"
        );
        let table = Table {
            sstables: OrderedMap::new(),
            id: "0".into(),
            schema_content: None,
        };
        let json =
            String::from_utf8(to_jackson_pretty(&table).expect("serializes")).expect("utf-8");
        assert_eq!(json, "{\n  \"sstables\" : { },\n  \"id\" : \"0\"\n}");

        let json = r#"{"snapshot":{"name":"s","keyspaces":{"k":{"tables":null}}},"tokens":null,"size":null,
                       "schemaVersion":null}"#;
        let manifest = Manifest::from_json(json.as_bytes()).expect("parses");
        assert!(
            manifest.tokens.is_empty() && manifest.schema_version.is_empty() && manifest.size == 0
        );
    }

    #[test]
    fn invalid_manifest_reports_the_path() {
        let json = r#"{"snapshot":{"name":"s","keyspaces":{"k":{"tables":{"t":{"sstables":{"nb-1-big":[
                       {"objectKey":"x","type":"BOGUS","size":1}]},"id":"0"}}}}}}"#;
        let ManifestError::Parse { path, .. } =
            Manifest::from_json(json.as_bytes()).expect_err("bad type");
        assert_eq!(
            path,
            "snapshot.keyspaces.k.tables.t.sstables.nb-1-big[0].type"
        );
    }

    #[test]
    fn manifest_names() {
        let name = ManifestName::new(
            "snapshot3",
            "f1159959-593d-33d1-9ade-712ea55b31ef",
            1600645759830,
        );
        assert_eq!(
            name.as_str(),
            "snapshot3-f1159959-593d-33d1-9ade-712ea55b31ef-1600645759830"
        );
        assert_eq!(
            name.key(),
            "manifests/snapshot3-f1159959-593d-33d1-9ade-712ea55b31ef-1600645759830.json"
        );
        assert_eq!(ManifestName::parse(name.as_str()), Some(name.clone()));
        let from_key = ManifestName::from_key(
            "c/dc/n/manifests/snapshot3-f1159959-593d-33d1-9ade-712ea55b31ef-1600645759830.json",
        );
        assert_eq!(from_key.map(|n| n.timestamp_millis()), Some(1600645759830));
        assert_eq!(
            ManifestName::parse("autosnap-1700000000").map(|n| n.timestamp_millis()),
            Some(1700000000)
        );
        assert_eq!(
            ManifestName::parse("12345").map(|n| n.timestamp_millis()),
            Some(12345)
        );
        assert_eq!(ManifestName::parse("snap-latest"), None);
        assert_eq!(ManifestName::parse("snap-"), None);
        assert_eq!(ManifestName::from_key("manifests/snap-1"), None);
        assert_eq!(manifest_key("a-b-1"), "manifests/a-b-1.json");
    }

    #[test]
    fn ordered_map_keeps_first_position_and_last_value() {
        let map: OrderedMap<i32> = serde_json::from_str(r#"{"b":1,"a":2,"b":3}"#).expect("parses");
        assert_eq!(map.iter().collect::<Vec<_>>(), [("b", &3), ("a", &2)]);
        let mut map = map;
        assert_eq!(map.insert("a", 4), Some(2));
        *map.get_or_insert_with("c", || 0) += 5;
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            [("b".into(), 3), ("a".into(), 4), ("c".into(), 5)]
        );
    }
}
