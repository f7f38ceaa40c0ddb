//! HARDLINKS: which downloaded file is linked where in the table's data directories, and making the links
//! all-or-nothing. Both sides are reached through their roots.

use std::collections::BTreeMap;

use crate::esop::sstable::SstableName;
use crate::node_fs::{FsError, Target};
use crate::restore::download::PlannedDownload;

/// (downloaded file, link) pairs: SSTables assigned to `table_dirs` in turn, all components of one SSTable together.
pub fn plan(
    files: &[PlannedDownload],
    table_dirs: &[Target],
) -> Result<Vec<(Target, Target)>, FsError> {
    let mut assigned: BTreeMap<String, usize> = BTreeMap::new();
    let mut links = Vec::new();
    for file in files {
        let Some(name) = file.target.rel.file_name() else {
            continue;
        };
        let prefix = SstableName::parse(name)
            .map(|parsed| parsed.prefix().to_string())
            .unwrap_or_else(|| name.to_owned());
        // An index SSTable goes with its directory (`.<index>/`), so its prefix is told apart from the base table's.
        let index = file
            .target
            .rel
            .parent()
            .and_then(|parent| parent.file_name().map(str::to_owned))
            .filter(|dir| dir.starts_with('.'));
        let key = format!("{}/{prefix}", index.clone().unwrap_or_default());
        let next = assigned.len();
        let slot = *assigned.entry(key).or_insert(next) % table_dirs.len().max(1);
        let Some(table_dir) = table_dirs.get(slot) else {
            continue;
        };
        let link_error = |error| FsError {
            action: "plan the link of",
            path: file.target.display(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, error),
        };
        let dir = match &index {
            Some(index) => table_dir.rel.join(index).map_err(link_error)?,
            None => table_dir.rel.clone(),
        };
        let link = dir.join(name).map_err(link_error)?;
        links.push((file.target.clone(), Target::new(&table_dir.root, link)));
    }
    Ok(links)
}

/// Makes the links; on failure removes those made and returns the error. A link already there to a file of the same
/// size counts as made (a rerun).
pub fn make(links: &[(Target, Target)]) -> Result<usize, FsError> {
    let mut made: Vec<&Target> = Vec::new();
    for (original, link) in links {
        let result = (|| {
            if let Some(parent) = link.rel.parent() {
                link.root.create_dir_all(&parent)?;
            }
            match original
                .root
                .hard_link(&original.rel, &link.root, &link.rel)
            {
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let size = |target: &Target| {
                        target.root.kind(&target.rel).map(|kind| kind.map(|k| k.1))
                    };
                    if size(original)? == size(link)? {
                        Ok(false)
                    } else {
                        Err(FsError {
                            action: "link",
                            path: link.display(),
                            source: std::io::Error::new(
                                std::io::ErrorKind::AlreadyExists,
                                "a file with other contents is there already",
                            ),
                        })
                    }
                }
                Err(error) => Err(error),
                Ok(()) => Ok(true),
            }
        })();
        match result {
            Ok(true) => made.push(link),
            Ok(false) => {}
            Err(error) => {
                for link in made {
                    let _ = link.root.remove_file(&link.rel);
                }
                return Err(error);
            }
        }
    }
    Ok(made.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_fs::{RelPath, Root};
    use std::sync::Arc;

    fn planned(root: &Arc<Root>, path: &str) -> PlannedDownload {
        PlannedDownload {
            key: String::new(),
            target: Target::new(root, RelPath::parse(path).unwrap()),
            size: 0,
            hash: None,
        }
    }

    #[test]
    fn sstables_spread_over_data_directories_with_their_components_together() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["dl", "a", "b"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let open = |sub: &str| Arc::new(Root::open(&dir.path().join(sub)).unwrap());
        let (dl, a, b) = (open("dl"), open("a"), open("b"));
        let files = [
            planned(&dl, "ks/t-1/nb-1-big-Data.db"),
            planned(&dl, "ks/t-1/nb-1-big-Index.db"),
            planned(&dl, "ks/t-1/nb-2-big-Data.db"),
            planned(&dl, "ks/t-1/.t_idx/nb-1-big-Data.db"),
        ];
        let table = RelPath::parse("ks/t-1").unwrap();
        let links = plan(
            &files,
            &[Target::new(&a, table.clone()), Target::new(&b, table)],
        )
        .unwrap();
        let targets: Vec<String> = links
            .iter()
            .map(|(_, link)| {
                link.display()
                    .strip_prefix(dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            targets,
            [
                "a/ks/t-1/nb-1-big-Data.db",
                "a/ks/t-1/nb-1-big-Index.db",
                "b/ks/t-1/nb-2-big-Data.db",
                "a/ks/t-1/.t_idx/nb-1-big-Data.db",
            ]
        );
    }

    #[test]
    fn a_failed_link_undoes_the_links_made_before() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        std::fs::write(dir.path().join("t/clash"), b"other contents").unwrap();
        let root = Arc::new(Root::open(dir.path()).unwrap());
        let at = |path: &str| Target::new(&root, RelPath::parse(path).unwrap());
        let links = vec![(at("a"), at("t/first")), (at("a"), at("t/clash"))];
        assert!(make(&links).is_err());
        assert!(!dir.path().join("t/first").exists());
        assert_eq!(
            std::fs::read(dir.path().join("t/clash")).unwrap(),
            b"other contents"
        );
    }
}
