//! Esop's `Manifest.AllManifestsReport`: what `list` returns and what `remove-backup` deletes by.
//!
//! Object keys are node-scoped and shared between backups of the node, so a file may be deleted only when no other
//! manifest of the same node references it; reference counting over that node's manifests is sufficient.

use crate::esop::manifest::{
    EntryType, Manifest, ManifestEntry, ManifestName, manifest_key, total_size,
};
use chrono::{Datelike, Local, NaiveDateTime, TimeZone, Timelike};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("manifest name '{0}' does not end in '-<epoch milliseconds>'")]
    InvalidManifestName(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllManifestsReport {
    /// Bytes of all distinct entries of all manifests.
    pub total_size: u64,
    /// Number of distinct entry keys.
    pub total_files: u64,
    pub total_manifests: u64,
    /// Newest first.
    pub reports: Vec<ManifestReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestReport {
    /// Entries of the manifest, the manifest itself excluded.
    pub files: u64,
    /// Sum of the entries' sizes.
    pub size: u64,
    pub name: String,
    /// Bytes freed by removing this backup alone.
    pub reclaimable_space: u64,
    /// Keys of the entries no other manifest of the node references.
    pub removable_entries: Vec<String>,
    /// The backup time as a local `LocalDateTime.toString()`, e.g. `2024-06-10T14:20:12.345`.
    pub timestamp: String,
    /// The manifest object; Esop's listing labels it `FILE`, with the size of the manifest object.
    pub manifest: ManifestEntry,
    pub unixtimestamp: i64,
}

impl ManifestReport {
    /// The entry keys Esop deletes with this backup: none unless the reclaimable space is positive.
    pub fn keys_to_delete(&self) -> &[String] {
        if self.reclaimable_space > 0 {
            &self.removable_entries
        } else {
            &[]
        }
    }
}

/// Which backups `remove-backup` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The manifest with exactly this name.
    Name(String),
    Oldest,
    /// All backups whose timestamp is before this epoch millisecond (Esop: now − `olderThan`).
    OlderThan(i64),
}

impl AllManifestsReport {
    /// The report over one node's manifests `(name without .json, manifest object size, manifest)`, timestamps in
    /// the process's local time zone as Esop prints them.
    pub fn compute(
        manifests: &[(String, u64, Manifest)],
    ) -> Result<AllManifestsReport, ReportError> {
        Self::compute_in(manifests, &Local)
    }

    /// [`compute`](Self::compute) with timestamps rendered in `zone`.
    pub fn compute_in<Tz: TimeZone>(
        manifests: &[(String, u64, Manifest)],
        zone: &Tz,
    ) -> Result<AllManifestsReport, ReportError> {
        let mut dated = Vec::with_capacity(manifests.len());
        for (name, object_size, manifest) in manifests {
            let parsed = ManifestName::parse(name)
                .ok_or_else(|| ReportError::InvalidManifestName(name.clone()))?;
            let timestamp = java_local_date_time(parsed.timestamp_millis(), zone)
                .ok_or_else(|| ReportError::InvalidManifestName(name.clone()))?;
            dated.push((
                parsed.timestamp_millis(),
                timestamp,
                name,
                *object_size,
                manifest,
            ));
        }
        // Esop compares timestamps through an `int` cast that overflows for backups more than 24.8 days apart; the
        // intended order is newest first.
        dated.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(b.2)));

        // References per key, counted per occurrence as Esop does, with the size of the first occurrence.
        let mut references: HashMap<&str, (usize, u64)> = HashMap::new();
        for (.., manifest) in &dated {
            for entry in manifest.entries() {
                references
                    .entry(&entry.object_key)
                    .or_insert((0, entry.size))
                    .0 += 1;
            }
        }

        let reports = dated
            .iter()
            .map(|(millis, timestamp, name, object_size, manifest)| {
                let removable: Vec<&ManifestEntry> = manifest
                    .entries()
                    .filter(|e| {
                        references
                            .get(e.object_key.as_str())
                            .is_some_and(|&(count, _)| count == 1)
                    })
                    .collect();
                ManifestReport {
                    files: manifest.entries().count() as u64,
                    size: manifest.entries_size(),
                    name: (*name).clone(),
                    reclaimable_space: total_size(
                        removable
                            .iter()
                            .map(|e| references[e.object_key.as_str()].1),
                    ),
                    removable_entries: removable.iter().map(|e| e.object_key.clone()).collect(),
                    timestamp: timestamp.clone(),
                    manifest: ManifestEntry {
                        object_key: manifest_key(name),
                        kind: EntryType::File,
                        size: *object_size,
                        hash: None,
                    },
                    unixtimestamp: *millis,
                }
            })
            .collect::<Vec<_>>();

        Ok(AllManifestsReport {
            total_size: total_size(references.values().map(|&(_, size)| size)),
            total_files: references.len() as u64,
            total_manifests: reports.len() as u64,
            reports,
        })
    }

    pub fn latest(&self) -> Option<&ManifestReport> {
        self.reports.first()
    }

    pub fn oldest(&self) -> Option<&ManifestReport> {
        self.reports.last()
    }

    pub fn get(&self, name: &str) -> Option<&ManifestReport> {
        self.reports.iter().find(|r| r.name == name)
    }

    pub fn older_than(&self, cutoff_millis: i64) -> Vec<&ManifestReport> {
        self.reports
            .iter()
            .filter(|r| r.unixtimestamp < cutoff_millis)
            .collect()
    }

    /// The backups `remove-backup` deletes, newest first. Each one's removable entries were computed against all
    /// manifests, so files shared only among several selected backups are kept, as with Esop.
    pub fn select(&self, selection: &Selection) -> Vec<&ManifestReport> {
        match selection {
            Selection::Name(name) => self.get(name).into_iter().collect(),
            Selection::Oldest => self.oldest().into_iter().collect(),
            Selection::OlderThan(cutoff) => self.older_than(*cutoff),
        }
    }

    /// `list`'s `fromTimestamp`: keeps backups taken at or before `millis`. Totals stay those of all manifests.
    pub fn retain_up_to(&mut self, millis: i64) {
        self.reports.retain(|r| r.unixtimestamp <= millis);
    }

    /// `list`'s `lastN`: keeps the `n` oldest backups (still newest first); `n == 0` keeps all. Totals stay.
    pub fn retain_oldest(&mut self, n: usize) {
        if n > 0 && self.reports.len() > n {
            self.reports.drain(..self.reports.len() - n);
        }
    }
}

/// `new java.sql.Timestamp(millis).toLocalDateTime().toString()` in `zone`: seconds and milliseconds appear only
/// when non-zero.
fn java_local_date_time<Tz: TimeZone>(millis: i64, zone: &Tz) -> Option<String> {
    let local: NaiveDateTime = zone.timestamp_millis_opt(millis).single()?.naive_local();
    let year = local.year();
    // Java switches to the Julian calendar before 1583; manifests are never that old.
    let mut text = if year > 9999 {
        format!("+{year}")
    } else {
        format!("{year:04}")
    };
    text.push_str(&format!(
        "-{:02}-{:02}T{:02}:{:02}",
        local.month(),
        local.day(),
        local.hour(),
        local.minute()
    ));
    let millis_of_second = local.nanosecond() / 1_000_000;
    if local.second() > 0 || millis_of_second > 0 {
        text.push_str(&format!(":{:02}", local.second()));
    }
    if millis_of_second > 0 {
        text.push_str(&format!(".{millis_of_second:03}"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esop::json::to_jackson_pretty;
    use crate::esop::manifest::{Keyspace, OrderedMap, Snapshot, Table};
    use chrono::{FixedOffset, Utc};

    fn manifest(files: &[(&str, u64)]) -> Manifest {
        let mut sstables = OrderedMap::new();
        for (key, size) in files {
            let entries: &mut Vec<ManifestEntry> = sstables.get_or_insert_with(key, Vec::new);
            entries.push(ManifestEntry::file(
                format!("data/ks/t-0/{key}"),
                *size,
                Some("h".into()),
            ));
        }
        let mut tables = OrderedMap::new();
        tables.insert(
            "t",
            Table {
                sstables,
                id: "0".into(),
                schema_content: None,
            },
        );
        let mut keyspaces = OrderedMap::new();
        keyspaces.insert("ks", Keyspace { tables });
        Manifest {
            snapshot: Snapshot {
                name: "s".into(),
                keyspaces,
            },
            tokens: vec![],
            schema_version: "v".into(),
            size: 0,
        }
    }

    /// Three backups: `a` (oldest) and `b` share file 2; `c` (newest) shares file 3 with `b`.
    fn sample() -> Vec<(String, u64, Manifest)> {
        vec![
            ("b-v-2000".into(), 20, manifest(&[("2", 200), ("3", 300)])),
            ("a-v-1000".into(), 10, manifest(&[("1", 100), ("2", 200)])),
            ("c-v-3000".into(), 30, manifest(&[("3", 300), ("4", 400)])),
        ]
    }

    #[test]
    fn counts_references_within_the_node() {
        let report = AllManifestsReport::compute_in(&sample(), &Utc).expect("report");
        assert_eq!(
            (
                report.total_size,
                report.total_files,
                report.total_manifests
            ),
            (1000, 4, 3)
        );
        let names: Vec<_> = report.reports.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["c-v-3000", "b-v-2000", "a-v-1000"]);
        let c = &report.reports[0];
        assert_eq!((c.files, c.size, c.reclaimable_space), (2, 700, 400));
        assert_eq!(c.removable_entries, ["data/ks/t-0/4"]);
        let b = &report.reports[1];
        assert_eq!((b.reclaimable_space, b.removable_entries.len()), (0, 0));
        assert!(b.keys_to_delete().is_empty());
        let a = &report.reports[2];
        assert_eq!(a.keys_to_delete(), ["data/ks/t-0/1"]);
        assert_eq!(
            a.manifest,
            ManifestEntry {
                object_key: "manifests/a-v-1000.json".into(),
                kind: EntryType::File,
                size: 10,
                hash: None
            }
        );
        assert_eq!(a.unixtimestamp, 1000);
    }

    #[test]
    fn removable_entries_with_zero_size_are_not_deleted() {
        let manifests = vec![("x-v-1".to_string(), 1, manifest(&[("empty", 0)]))];
        let report = AllManifestsReport::compute_in(&manifests, &Utc).expect("report");
        assert_eq!(report.reports[0].removable_entries, ["data/ks/t-0/empty"]);
        assert!(report.reports[0].keys_to_delete().is_empty());
    }

    #[test]
    fn selection_for_remove_backup() {
        let report = AllManifestsReport::compute_in(&sample(), &Utc).expect("report");
        let names = |s: &Selection| {
            report
                .select(s)
                .iter()
                .map(|r| r.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&Selection::Name("b-v-2000".into())), ["b-v-2000"]);
        assert!(names(&Selection::Name("b-v".into())).is_empty());
        assert_eq!(names(&Selection::Oldest), ["a-v-1000"]);
        assert_eq!(names(&Selection::OlderThan(3000)), ["b-v-2000", "a-v-1000"]);
        assert!(names(&Selection::OlderThan(1000)).is_empty());
        assert_eq!(report.latest().map(|r| r.name.as_str()), Some("c-v-3000"));
    }

    #[test]
    fn list_filters_keep_totals() {
        let mut report = AllManifestsReport::compute_in(&sample(), &Utc).expect("report");
        report.retain_up_to(2000);
        assert_eq!(
            report
                .reports
                .iter()
                .map(|r| r.unixtimestamp)
                .collect::<Vec<_>>(),
            [2000, 1000]
        );
        let mut report = AllManifestsReport::compute_in(&sample(), &Utc).expect("report");
        report.retain_oldest(2);
        assert_eq!(
            report
                .reports
                .iter()
                .map(|r| r.unixtimestamp)
                .collect::<Vec<_>>(),
            [2000, 1000]
        );
        report.retain_oldest(0);
        assert_eq!((report.reports.len(), report.total_manifests), (2, 3));
    }

    #[test]
    fn invalid_manifest_name_fails_the_report() {
        let manifests = vec![("latest".to_string(), 1, manifest(&[]))];
        assert!(matches!(
            AllManifestsReport::compute_in(&manifests, &Utc),
            Err(ReportError::InvalidManifestName(name)) if name == "latest"
        ));
    }

    #[test]
    fn timestamps_print_like_java_local_date_time() {
        let utc = |millis| java_local_date_time(millis, &Utc).expect("in range");
        assert_eq!(utc(1_718_029_212_345), "2024-06-10T14:20:12.345");
        assert_eq!(utc(1_718_029_212_000), "2024-06-10T14:20:12");
        assert_eq!(utc(1_718_029_200_000), "2024-06-10T14:20");
        assert_eq!(utc(1_718_029_200_005), "2024-06-10T14:20:00.005");
        assert_eq!(utc(0), "1970-01-01T00:00");
        assert_eq!(utc(-1), "1969-12-31T23:59:59.999");
        let cest = FixedOffset::east_opt(2 * 3600).expect("offset");
        assert_eq!(
            java_local_date_time(1_718_029_212_345, &cest).as_deref(),
            Some("2024-06-10T16:20:12.345")
        );
        assert_eq!(utc(253_402_300_800_000), "+10000-01-01T00:00");
        assert_eq!(java_local_date_time(i64::MAX, &Utc), None);
    }

    #[test]
    fn serializes_in_esop_field_order() {
        let manifests = vec![("a-v-1718029212345".to_string(), 9, manifest(&[("1", 5)]))];
        let report = AllManifestsReport::compute_in(&manifests, &Utc).expect("report");
        let json =
            String::from_utf8(to_jackson_pretty(&report).expect("serializes")).expect("utf-8");
        let expected = "{\n  \"totalSize\" : 5,\n  \"totalFiles\" : 1,\n  \"totalManifests\" : 1,\n  \"reports\" : [ {\n    \
                        \"files\" : 1,\n    \"size\" : 5,\n    \"name\" : \"a-v-1718029212345\",\n    \
                        \"reclaimableSpace\" : 5,\n    \"removableEntries\" : [ \"data/ks/t-0/1\" ],\n    \
                        \"timestamp\" : \"2024-06-10T14:20:12.345\",\n    \"manifest\" : {\n      \
                        \"objectKey\" : \"manifests/a-v-1718029212345.json\",\n      \"type\" : \"FILE\",\n      \
                        \"size\" : 9\n    },\n    \"unixtimestamp\" : 1718029212345\n  } ]\n}";
        assert_eq!(json, expected);
    }
}
