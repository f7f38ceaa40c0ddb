//! Which of a node's backups a removal takes, decided over their names and times alone: the one named, the oldest,
//! or those beyond `keepLast` or older than `olderThan` (of one tag when asked). Two rules hold for every choice
//! but a named backup: the newest backup (of the tag) stays, and so does a backup an unfinished `restore` or
//! `verify` reads; each backup kept that way is reported with why.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RemovalPlan;
use crate::esop::manifest::ManifestName;
use crate::restore::choice::designated;

/// An unfinished operation that reads a backup: a `restore` or a `verify`, by the `snapshotTag` it was given (a
/// full backup name, or a tag standing for its newest backup), and how it narrows its choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub operation: Uuid,
    /// The operation's `type`.
    pub type_id: String,
    pub snapshot_tag: String,
    /// The schema version the reader chooses among (a restore's `exactSchemaVersion`).
    pub schema: ReaderSchema,
    /// A cluster-wide reader (`globalRequest`), which may take its backup from the topology files' names.
    pub global: bool,
}

/// Which schema version's backups a reader chooses among, as [`crate::restore::choice::designated`] is given it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReaderSchema {
    /// Any: the newest backup of the tag (a verify; a restore without `exactSchemaVersion`).
    #[default]
    Any,
    /// This one (`exactSchemaVersion` with `schemaVersion`).
    Exact(String),
    /// The schema version of the node (or cluster) being restored, which a removal cannot know: every one the
    /// node's backups of the tag have.
    Own,
}

/// A backup a selection would have taken but that stays, and why; `node` in a cluster-wide removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptBackup {
    pub name: String,
    pub reason: String,
    /// The node's prefix in the bucket, in a cluster-wide removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// What a plan takes from one node: the names to remove, oldest last, and the backups kept against the selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selected {
    pub remove: Vec<String>,
    pub kept: Vec<KeptBackup>,
}

/// Why a plan takes nothing from a node at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("no backup named {0}")]
    NoSuchBackup(String),
    #[error(
        "backup {name} is being read by the unfinished {type_id} operation {operation}; wait for it to end or \
         cancel it (DELETE /operations/{operation}), then remove the backup"
    )]
    BeingRead {
        name: String,
        type_id: String,
        operation: Uuid,
    },
}

/// The backups `plan` removes among `backups` (`(name, epoch millis)` each, in any order) at `now`.
/// `topology_names` are the names of the bucket's topology files (`topology/<name>.json`), from which a
/// cluster-wide reader may take its backup; only needed when a reader is [`Reader::global`].
pub fn select(
    backups: &[(&str, i64)],
    topology_names: &[String],
    plan: &RemovalPlan,
    now: DateTime<Utc>,
) -> Result<Selected, SelectionError> {
    let names: Vec<String> = backups.iter().map(|(name, _)| name.to_string()).collect();
    let readers = read_backups(&names, topology_names, &plan.readers);
    if let Some(name) = &plan.backup_name {
        // A backup named is removed as asked, the newest too; but never from under an operation reading it.
        if !backups.iter().any(|(candidate, _)| candidate == name) {
            return Err(SelectionError::NoSuchBackup(name.clone()));
        }
        if let Some(reader) = readers.get(name.as_str()) {
            return Err(SelectionError::BeingRead {
                name: name.clone(),
                type_id: reader.type_id.clone(),
                operation: reader.operation,
            });
        }
        return Ok(Selected {
            remove: vec![name.clone()],
            kept: Vec::new(),
        });
    }
    let mut candidates: Vec<(&str, i64)> = backups
        .iter()
        .filter(|(name, _)| {
            plan.snapshot_tag
                .as_deref()
                .is_none_or(|tag| is_of_tag(name, tag))
        })
        .copied()
        .collect();
    // Newest first, as Esop's report orders them.
    candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let chosen: Vec<&str> = if plan.remove_oldest {
        candidates
            .last()
            .map(|(name, _)| *name)
            .into_iter()
            .collect()
    } else {
        let cutoff = plan.older_than.and_then(|age| cutoff_millis(now, age));
        candidates
            .iter()
            .enumerate()
            .filter(|(index, (_, millis))| {
                let beyond = plan.keep_last.is_some_and(|keep| *index >= keep);
                let older = cutoff.is_some_and(|cutoff| *millis < cutoff);
                beyond || older
            })
            .map(|(_, (name, _))| *name)
            .collect()
    };
    let newest = candidates.first().map(|(name, _)| *name);
    let mut selected = Selected::default();
    for name in chosen {
        let reason = if Some(name) == newest {
            Some(match &plan.snapshot_tag {
                Some(tag) => {
                    format!("the newest backup of tag {tag} is never removed by a selection")
                }
                None => "the newest backup is never removed by a selection".to_string(),
            })
        } else {
            readers.get(name).map(|reader| {
                format!(
                    "read by the unfinished {} operation {}",
                    reader.type_id, reader.operation
                )
            })
        };
        match reason {
            Some(reason) => {
                tracing::info!(backup = %name, %reason, "keeping a backup the removal selected");
                selected.kept.push(KeptBackup {
                    name: name.to_string(),
                    reason,
                    node: None,
                });
            }
            None => selected.remove.push(name.to_string()),
        }
    }
    Ok(selected)
}

/// `now` less `age` in epoch millis; `None` when that is before the calendar's start (nothing is older).
fn cutoff_millis(now: DateTime<Utc>, age: Duration) -> Option<i64> {
    let age = chrono::Duration::from_std(age).ok()?;
    Some(now.checked_sub_signed(age)?.timestamp_millis())
}

/// Which backups the `readers` read, each with the first reader found: the backup each one's snapshotTag
/// designates among the node's backups `names`, chosen by the very function a restore and a verify choose with
/// ([`designated`]); for a cluster-wide reader, also the one it designates among `topology_names` (a cluster-wide
/// restore or verify takes the backup its topology file names on every node).
fn read_backups<'r>(
    names: &[String],
    topology_names: &[String],
    readers: &'r [Reader],
) -> BTreeMap<String, &'r Reader> {
    let mut read = BTreeMap::new();
    for reader in readers {
        let mut sources = vec![names];
        if reader.global {
            sources.push(topology_names);
        }
        for source in sources {
            for name in designations(source, &reader.snapshot_tag, &reader.schema) {
                read.entry(name.to_string()).or_insert(reader);
            }
        }
    }
    read
}

/// What `tag` designates among `names` for a reader choosing by `schema`: one backup, or, when the schema version
/// is the node's own and unknown here, the one of each schema version the tag's backups have.
fn designations<'n>(names: &'n [String], tag: &str, schema: &ReaderSchema) -> Vec<&'n str> {
    match schema {
        ReaderSchema::Any => designated(names, tag, None).into_iter().collect(),
        ReaderSchema::Exact(version) => designated(names, tag, Some(version)).into_iter().collect(),
        ReaderSchema::Own => {
            let prefix = format!("{tag}-");
            let versions: BTreeSet<&str> = names
                .iter()
                .filter_map(|name| name.strip_prefix(&prefix)?.rsplit_once('-'))
                .map(|(version, _millis)| version)
                .collect();
            versions
                .into_iter()
                .filter_map(|version| designated(names, tag, Some(version)))
                .collect()
        }
    }
}

/// Whether `name` is a backup taken under `tag`: `<tag>-<schemaVersion>-<millis>`, or the tag itself when the
/// client gave a full name as the tag.
pub fn is_of_tag(name: &str, tag: &str) -> bool {
    name == tag || split_name(name).is_some_and(|(of_tag, _)| of_tag == tag)
}

/// `<tag>-<schemaVersion>-<millis>` into its tag and schema version. The schema version is a UUID, which holds
/// `-` itself; a name whose middle is not one is split at its second-to-last `-`.
fn split_name(name: &str) -> Option<(&str, &str)> {
    ManifestName::parse(name)?;
    let (rest, _millis) = name.rsplit_once('-')?;
    const UUID_LENGTH: usize = 36;
    if let Some(split) = rest.len().checked_sub(UUID_LENGTH + 1)
        && rest.is_char_boundary(split)
        && rest[split..].starts_with('-')
        && uuid::Uuid::try_parse(&rest[split + 1..]).is_ok()
    {
        return Some((&rest[..split], &rest[split + 1..]));
    }
    let (tag, schema) = rest.rsplit_once('-')?;
    Some((tag, schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA_A: &str = "5bd4c9a6-a0ae-3a6d-9d47-2c2d4c6a7bb2";
    const SCHEMA_B: &str = "136fcce3-f30b-3c74-8014-b9e1812fdb46";
    const DAY: i64 = 86_400_000;

    /// Now is day 100; backups of `nightly` on days 91..=99 (schema A), `weekly` on days 93 and 98 (schema B).
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(100 * DAY).unwrap()
    }

    fn names() -> Vec<(String, i64)> {
        let mut names: Vec<(String, i64)> = (91..=99)
            .map(|day| (format!("nightly-{SCHEMA_A}-{}", day * DAY), day * DAY))
            .collect();
        for day in [93, 98] {
            names.push((format!("weekly-{SCHEMA_B}-{}", day * DAY), day * DAY));
        }
        names
    }

    fn run(plan: &RemovalPlan) -> Result<Selected, SelectionError> {
        let names = names();
        let backups: Vec<(&str, i64)> = names.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        select(&backups, &[], plan, now())
    }

    fn days(selected: &[String]) -> Vec<String> {
        selected
            .iter()
            .map(|name| {
                let (tag, _) = split_name(name).unwrap();
                let millis: i64 = name.rsplit('-').next().unwrap().parse().unwrap();
                format!("{tag}{}", millis / DAY)
            })
            .collect()
    }

    fn nightly(day: i64) -> String {
        format!("nightly-{SCHEMA_A}-{}", day * DAY)
    }

    fn reader(tag: &str) -> Reader {
        Reader {
            operation: Uuid::from_u128(7),
            type_id: "restore".into(),
            snapshot_tag: tag.into(),
            schema: ReaderSchema::Any,
            global: false,
        }
    }

    #[test]
    fn keep_last_keeps_the_newest_of_the_tag() {
        let selected = run(&RemovalPlan {
            keep_last: Some(2),
            snapshot_tag: Some("nightly".into()),
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(
            days(&selected.remove),
            [
                "nightly97",
                "nightly96",
                "nightly95",
                "nightly94",
                "nightly93",
                "nightly92",
                "nightly91"
            ]
        );
        assert!(selected.kept.is_empty());
        // Without a tag the count is over every backup: day 99 and 98 (nightly and weekly) stay.
        let selected = run(&RemovalPlan {
            keep_last: Some(3),
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(selected.remove.len(), 8);
        assert!(!days(&selected.remove).contains(&"weekly98".to_string()));
        assert!(days(&selected.remove).contains(&"weekly93".to_string()));
        // More kept than there are: nothing goes.
        let selected = run(&RemovalPlan {
            keep_last: Some(50),
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(selected, Selected::default());
    }

    #[test]
    fn older_than_alone_and_with_keep_last_as_medusa_purges() {
        let older = |days: u64| Some(Duration::from_secs(days * 86_400));
        let selected = run(&RemovalPlan {
            older_than: older(5),
            snapshot_tag: Some("nightly".into()),
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(
            days(&selected.remove),
            ["nightly94", "nightly93", "nightly92", "nightly91"],
            "strictly older than day 95"
        );
        // Beyond 2 OR older than 5 days: the count decides.
        let selected = run(&RemovalPlan {
            older_than: older(5),
            keep_last: Some(2),
            snapshot_tag: Some("nightly".into()),
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(selected.remove.len(), 7);
        // Beyond 8 OR older than 5 days: the age decides.
        let selected = run(&RemovalPlan {
            older_than: older(5),
            keep_last: Some(8),
            snapshot_tag: Some("nightly".into()),
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(selected.remove.len(), 4);
        // An age beyond the calendar's start takes nothing.
        let selected = run(&RemovalPlan {
            older_than: Some(Duration::from_secs(u64::MAX / 4)),
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(selected, Selected::default());
    }

    #[test]
    fn the_newest_is_never_removed_by_a_selection() {
        // Every weekly backup is older than a day: the newest of the tag stays and is reported.
        let selected = run(&RemovalPlan {
            older_than: Some(Duration::from_secs(86_400)),
            snapshot_tag: Some("weekly".into()),
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(days(&selected.remove), ["weekly93"]);
        assert_eq!(selected.kept.len(), 1);
        assert_eq!(
            days(std::slice::from_ref(&selected.kept[0].name)),
            ["weekly98"]
        );
        assert!(
            selected.kept[0]
                .reason
                .contains("newest backup of tag weekly")
        );
        // The oldest of a tag with one backup is its newest.
        let only = nightly(50);
        let selected = select(
            &[(only.as_str(), 50 * DAY)],
            &[],
            &RemovalPlan {
                remove_oldest: true,
                ..RemovalPlan::default()
            },
            now(),
        )
        .unwrap();
        assert!(selected.remove.is_empty());
        assert_eq!(selected.kept[0].name, nightly(50));
        // Named, the newest goes.
        let selected = run(&RemovalPlan {
            backup_name: Some(nightly(99)),
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(selected.remove, [nightly(99)]);
    }

    #[test]
    fn remove_oldest_takes_the_oldest_of_the_tag() {
        let selected = run(&RemovalPlan {
            remove_oldest: true,
            snapshot_tag: Some("weekly".into()),
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(days(&selected.remove), ["weekly93"]);
        let selected = run(&RemovalPlan {
            remove_oldest: true,
            ..RemovalPlan::default()
        })
        .unwrap();
        assert_eq!(days(&selected.remove), ["nightly91"]);
    }

    #[test]
    fn backups_being_read_are_kept_and_reported() {
        // A full name, and a tag standing for its newest backup of each schema version.
        let mut plan = RemovalPlan {
            keep_last: Some(1),
            readers: vec![
                reader(&nightly(92)),
                Reader {
                    operation: Uuid::from_u128(8),
                    type_id: "verify".into(),
                    snapshot_tag: "weekly".into(),
                    schema: ReaderSchema::Any,
                    global: false,
                },
            ],
            ..RemovalPlan::default()
        };
        let selected = run(&plan).unwrap();
        let kept: Vec<(String, &str)> = selected
            .kept
            .iter()
            .map(|kept| {
                (
                    days(std::slice::from_ref(&kept.name))[0].clone(),
                    kept.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            kept,
            [
                (
                    "weekly98".to_string(),
                    "read by the unfinished verify operation 00000000-0000-0000-0000-000000000008"
                ),
                (
                    "nightly92".to_string(),
                    "read by the unfinished restore operation 00000000-0000-0000-0000-000000000007"
                ),
            ]
        );
        assert_eq!(selected.remove.len(), 11 - 1 - 2);
        assert!(!selected.remove.contains(&nightly(92)));
        // A tag no backup has protects nothing; `nightly` does not stand for `nightly10`'s.
        plan.readers = vec![reader("night"), reader("nightly1")];
        assert_eq!(run(&plan).unwrap().remove.len(), 10);
    }

    /// A reader's backup is the one its tag designates as restore and verify choose it: `db` stands for the
    /// newest `db-...` backup, `db-weekly-...` ones too, which a retention must then keep.
    #[test]
    fn a_reader_keeps_the_backup_it_would_choose() {
        let weekly = |day: i64| format!("db-weekly-{SCHEMA_A}-{}", day * DAY);
        let daily = |day: i64| format!("db-{SCHEMA_B}-{}", day * DAY);
        let other = format!("other-{SCHEMA_A}-{}", 100 * DAY);
        let names = [weekly(90), weekly(95), daily(98), weekly(99), other];
        let backups: Vec<(&str, i64)> = names
            .iter()
            .map(|name| {
                let millis = name.rsplit('-').next().unwrap().parse().unwrap();
                (name.as_str(), millis)
            })
            .collect();
        let removed = |readers: Vec<Reader>, topology: &[String]| {
            let plan = RemovalPlan {
                keep_last: Some(1),
                readers,
                ..RemovalPlan::default()
            };
            select(&backups, topology, &plan, now()).unwrap().remove
        };
        assert_eq!(
            removed(vec![], &[]),
            [weekly(99), daily(98), weekly(95), weekly(90)]
        );
        // A restore of `db` reads the newest `db-` backup, a db-weekly one; a full name reads that backup.
        assert_eq!(
            removed(vec![reader("db")], &[]),
            [daily(98), weekly(95), weekly(90)]
        );
        assert_eq!(
            removed(vec![reader(&weekly(95))], &[]),
            [weekly(99), daily(98), weekly(90)]
        );
        // exactSchemaVersion: the newest `db-<version>-` backup of that version, or of each when it is the node's.
        let exact = |schema: ReaderSchema| Reader {
            schema,
            ..reader("db")
        };
        assert_eq!(
            removed(vec![exact(ReaderSchema::Exact(SCHEMA_B.into()))], &[]),
            [weekly(99), weekly(95), weekly(90)]
        );
        assert_eq!(
            removed(vec![exact(ReaderSchema::Exact(SCHEMA_A.into()))], &[]),
            [weekly(99), daily(98), weekly(95), weekly(90)],
            "no backup is named db-{SCHEMA_A}-..."
        );
        assert_eq!(
            removed(vec![exact(ReaderSchema::Own)], &[]),
            [weekly(95), weekly(90)]
        );
        // A cluster-wide reader also takes the backup the topology files designate: day 90's here.
        let global = Reader {
            type_id: "verify".into(),
            global: true,
            ..reader("db")
        };
        let topology = [weekly(90)];
        assert_eq!(
            removed(vec![global.clone()], &topology),
            [daily(98), weekly(95)]
        );
        let local = Reader {
            global: false,
            ..global
        };
        assert_eq!(
            removed(vec![local], &topology),
            [daily(98), weekly(95), weekly(90)]
        );
    }

    #[test]
    fn a_named_backup_being_read_fails_naming_the_operation() {
        let plan = RemovalPlan {
            backup_name: Some(nightly(95)),
            readers: vec![reader(&nightly(95))],
            ..RemovalPlan::default()
        };
        let error = run(&plan).unwrap_err();
        assert_eq!(
            error,
            SelectionError::BeingRead {
                name: nightly(95),
                type_id: "restore".into(),
                operation: Uuid::from_u128(7),
            }
        );
        assert!(
            error
                .to_string()
                .contains("unfinished restore operation 00000000-0000-0000-0000-000000000007"),
            "{error}"
        );
        let missing = run(&RemovalPlan {
            backup_name: Some("nightly-x-1".into()),
            ..RemovalPlan::default()
        })
        .unwrap_err();
        assert_eq!(missing, SelectionError::NoSuchBackup("nightly-x-1".into()));
    }

    #[test]
    fn names_split_into_tag_and_schema() {
        assert_eq!(
            split_name(&format!("daily-x-{SCHEMA_A}-17")),
            Some(("daily-x", SCHEMA_A))
        );
        assert_eq!(split_name("tag-s-1"), Some(("tag", "s")));
        assert_eq!(split_name("legacy"), None);
        assert_eq!(split_name("weekly-1"), None);
        assert!(
            is_of_tag("weekly-1", "weekly-1"),
            "a full name given as the tag"
        );
        assert!(is_of_tag(&format!("nightly-{SCHEMA_B}-5"), "nightly"));
        assert!(!is_of_tag(&format!("nightly10-{SCHEMA_B}-5"), "nightly"));
        assert!(!is_of_tag(&format!("a-nightly-{SCHEMA_B}-5"), "nightly"));
    }
}
