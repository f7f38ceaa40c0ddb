//! Which backup a restore takes: Esop's rules over the node's manifests. A full backup name is taken as it is; a
//! tag picks the newest backup taken under it (`<tag>-<schemaVersion>-<millis>`), with `exactSchemaVersion` only
//! among those of one schema version.

use crate::cassandra::topology::ClusterTopology;
use crate::esop::manifest::{MAX_MANIFEST_BYTES, Manifest, ManifestName, manifest_key};
use crate::operation::{OperationContext, OperationFailure};
use crate::storage::RemoteStorage;
use crate::storage::remote::RemoteObject;

/// The backup chosen, with its manifest.
#[derive(Debug, Clone)]
pub struct ChosenBackup {
    pub name: String,
    pub manifest: Manifest,
}

/// How many tag names an error lists at most.
const LISTED_TAGS: usize = 20;

/// The name of the backup `tag` designates among `names` (manifest names without `.json`). Beyond Esop, a tag
/// matches `<tag>-...` only, so `snap1` never picks a backup of `snap10`.
pub fn designated<'n>(
    names: &'n [String],
    tag: &str,
    schema_version: Option<&str>,
) -> Option<&'n str> {
    if schema_version.is_none()
        && let Some(exact) = names.iter().find(|name| *name == tag)
    {
        return Some(exact);
    }
    let prefix = match schema_version {
        Some(version) => format!("{tag}-{version}-"),
        None => format!("{tag}-"),
    };
    names
        .iter()
        .filter(|name| name.starts_with(&prefix))
        .filter_map(|name| {
            ManifestName::parse(name).map(|parsed| (parsed.timestamp_millis(), name))
        })
        .max()
        .map(|(_, name)| name.as_str())
}

/// The tags the backups in `names` were taken under (`<tag>-<schema uuid>-<millis>` less its suffix), sorted.
pub fn tags(names: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = names
        .iter()
        .map(|name| {
            let parts: Vec<&str> = name.rsplitn(7, '-').collect();
            // millis, then the five groups of the schema uuid, then the tag.
            match parts.as_slice() {
                [_, e, d, c, b, a, tag]
                    if uuid::Uuid::parse_str(&format!("{a}-{b}-{c}-{d}-{e}")).is_ok() =>
                {
                    tag.to_string()
                }
                _ => name.clone(),
            }
        })
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

/// The topology of the backup `tag` designates, as a cluster-wide backup writes it at the bucket's root
/// (`topology/<name>.json`), with the backup's name; `None` when the bucket holds no such file.
pub async fn backup_topology(
    context: &OperationContext,
    remote: &RemoteStorage,
    tag: &str,
    schema_version: Option<&str>,
) -> Result<Option<(String, ClusterTopology)>, OperationFailure> {
    let names: Vec<String> = context
        .cancellable(remote.list_in_bucket("topology/"))
        .await??
        .iter()
        .filter_map(|key| {
            key.strip_prefix("topology/")?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    let Some(name) = designated(&names, tag, schema_version) else {
        return Ok(None);
    };
    let key = format!("topology/{name}.json");
    let bytes = context.cancellable(remote.get_in_bucket(&key)).await??;
    let topology = serde_json::from_slice(&bytes).map_err(|error| {
        OperationFailure::context(
            format!(
                "{}/{key} is not a cluster topology",
                remote.location().store_name()
            ),
            error,
        )
    })?;
    Ok(Some((name.to_string(), topology)))
}

/// Finds and reads the manifest of the backup `tag` designates in the node's storage.
pub async fn choose(
    context: &OperationContext,
    remote: &RemoteStorage,
    tag: &str,
    schema_version: Option<&str>,
) -> Result<ChosenBackup, OperationFailure> {
    let objects = context.cancellable(remote.list("manifests/")).await??;
    let names = names_of_manifests(&objects);
    let Some(name) = designated(&names, tag, schema_version) else {
        let known = tags(&names);
        let listed = if known.is_empty() {
            "it holds no backups".to_string()
        } else {
            let more = known.len().saturating_sub(LISTED_TAGS);
            format!(
                "its backups are tagged {}{}",
                known
                    .iter()
                    .take(LISTED_TAGS)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        };
        let schema = schema_version
            .map(|version| format!(" of schema version {version}"))
            .unwrap_or_default();
        return Err(OperationFailure::Failed(format!(
            "no backup {tag}{schema} in {}: {listed}",
            remote.location()
        )));
    };
    let key = manifest_key(name);
    let listed = objects
        .iter()
        .find(|object| object.key == key)
        .map(|object| object.size);
    let manifest = read_manifest(context, remote, &key, listed).await?;
    Ok(ChosenBackup {
        name: name.to_string(),
        manifest,
    })
}

/// Reads and parses the manifest at `key` (its size as listed, when known). A manifest over [`MAX_MANIFEST_BYTES`]
/// is refused before it is read, so a hostile or broken bucket cannot make the sidecar take gigabytes of memory.
pub async fn read_manifest(
    context: &OperationContext,
    remote: &RemoteStorage,
    key: &str,
    listed_size: Option<u64>,
) -> Result<Manifest, OperationFailure> {
    let too_large = |size: u64| {
        OperationFailure::Failed(format!(
            "{}/{key} is {size} bytes, more than the {} MiB a manifest may have (about 220,000 entries, a node \
             of some 25,000 SSTables); it was not read",
            remote.location(),
            MAX_MANIFEST_BYTES / (1024 * 1024),
        ))
    };
    let size = match listed_size {
        Some(size) => Some(size),
        None => context.cancellable(remote.size_of(key)).await??,
    };
    if let Some(size) = size
        && size > MAX_MANIFEST_BYTES
    {
        return Err(too_large(size));
    }
    let bytes = context.cancellable(remote.get(key)).await??;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Manifest::from_json(&bytes).map_err(|error| {
        OperationFailure::context(
            format!("{}/{key} is not a backup manifest", remote.location()),
            error,
        )
    })
}

/// The names of the backups under the node's prefix (`manifests/<name>.json`), as the bucket lists them.
pub async fn manifest_names(
    context: &OperationContext,
    remote: &RemoteStorage,
) -> Result<Vec<String>, OperationFailure> {
    let objects = context.cancellable(remote.list("manifests/")).await??;
    Ok(names_of_manifests(&objects))
}

/// The backup names among objects listed under `manifests/`.
fn names_of_manifests(objects: &[RemoteObject]) -> Vec<String> {
    objects
        .iter()
        .filter_map(|object| {
            object
                .key
                .strip_prefix("manifests/")?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA_A: &str = "5bd4c9a6-a0ae-3a6d-9d47-2c2d4c6a7bb2";
    const SCHEMA_B: &str = "136fcce3-f30b-3c74-8014-b9e1812fdb46";

    fn names() -> Vec<String> {
        vec![
            format!("nightly-{SCHEMA_A}-1000"),
            format!("nightly-{SCHEMA_A}-3000"),
            format!("nightly-{SCHEMA_B}-2000"),
            format!("nightly10-{SCHEMA_B}-9000"),
            "legacy".to_string(),
        ]
    }

    #[test]
    fn a_tag_designates_its_newest_backup() {
        let names = names();
        assert_eq!(
            designated(&names, "nightly", None),
            Some(format!("nightly-{SCHEMA_A}-3000").as_str())
        );
        assert_eq!(
            designated(&names, "nightly", Some(SCHEMA_B)),
            Some(format!("nightly-{SCHEMA_B}-2000").as_str())
        );
        let full = format!("nightly-{SCHEMA_A}-1000");
        assert_eq!(designated(&names, &full, None), Some(full.as_str()));
        assert_eq!(designated(&names, "legacy", None), Some("legacy"));
        assert_eq!(designated(&names, "weekly", None), None);
        assert_eq!(
            designated(
                &names,
                "nightly",
                Some("00000000-0000-0000-0000-000000000000")
            ),
            None
        );
    }

    #[test]
    fn unknown_tags_are_answered_with_the_tags_there_are() {
        assert_eq!(tags(&names()), ["legacy", "nightly", "nightly10"]);
    }
}
