//! File hashes for manifests, and a local cache of them: SSTables never change once written, so a file with the
//! same live path, size and modification time as one hashed before has the same hash (Esop re-reads every file
//! on every backup).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::LocalFile;

/// How manifest entries are hashed: Esop's `--hash-algorithm` (`SHA-256`, the default, or `CRC`), and `NONE` as
/// Esop 4 added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashAlgorithm {
    #[default]
    #[serde(
        rename = "SHA-256",
        alias = "SHA256",
        alias = "sha-256",
        alias = "sha256"
    )]
    Sha256,
    #[serde(rename = "CRC", alias = "crc", alias = "CRC32", alias = "crc32")]
    Crc,
    #[serde(rename = "NONE", alias = "none")]
    None,
}

impl HashAlgorithm {
    /// The algorithm that wrote `hash`, as a manifest holds it: 64 hex digits are SHA-256, a decimal number is
    /// CRC32. A restore reads it from the backup rather than asking, since the two must match.
    pub fn of_hash(hash: &str) -> Option<HashAlgorithm> {
        if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(HashAlgorithm::Sha256)
        } else if !hash.is_empty() && hash.len() <= 10 && hash.bytes().all(|b| b.is_ascii_digit()) {
            Some(HashAlgorithm::Crc)
        } else {
            None
        }
    }

    /// The algorithm of a backup: that of its first hashed entry; `None` when it has no hashes.
    pub fn of_manifest(manifest: &crate::esop::manifest::Manifest) -> HashAlgorithm {
        manifest
            .entries()
            .find_map(|entry| entry.hash.as_deref().and_then(HashAlgorithm::of_hash))
            .unwrap_or(HashAlgorithm::None)
    }
}

/// A hash being computed over a file's bytes as they stream past.
pub enum Hasher {
    Sha256(sha2::Sha256),
    Crc(crc32fast::Hasher),
    None,
}

impl Hasher {
    pub fn new(algorithm: HashAlgorithm) -> Self {
        match algorithm {
            HashAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgorithm::Crc => Hasher::Crc(crc32fast::Hasher::new()),
            HashAlgorithm::None => Hasher::None,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(hasher) => hasher.update(bytes),
            Hasher::Crc(hasher) => hasher.update(bytes),
            Hasher::None => {}
        }
    }

    /// Lower-case hex for SHA-256, decimal for CRC32, as Esop writes them.
    pub fn finish(self) -> Option<String> {
        match self {
            Hasher::Sha256(hasher) => Some(hex::encode(hasher.finalize())),
            Hasher::Crc(hasher) => Some(hasher.finalize().to_string()),
            Hasher::None => None,
        }
    }
}

/// Reads the whole file at `path` and hashes it (blocking; run it off the async workers).
pub fn hash_file(path: &Path, algorithm: HashAlgorithm) -> std::io::Result<Option<String>> {
    let mut hasher = Hasher::new(algorithm);
    if algorithm == HashAlgorithm::None {
        return Ok(None);
    }
    let mut file = crate::node_fs::open_no_follow(path)?;
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finish())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    /// Modification time, nanoseconds since the epoch.
    modified: u128,
    hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    entries: HashMap<String, Entry>,
}

/// Known hashes, by live file path, for one algorithm; loaded from and saved to a file in the cache directory.
#[derive(Debug)]
pub struct HashCache {
    file: Option<PathBuf>,
    entries: HashMap<String, Entry>,
}

impl HashCache {
    /// The cache for `algorithm` in `dir`; empty when there is no directory or no readable cache yet (a damaged
    /// cache only costs re-reading the files).
    pub fn load(dir: Option<&Path>, algorithm: HashAlgorithm) -> Self {
        let file = dir.map(|dir| dir.join(format!("backup-hashes-{}.json", file_tag(algorithm))));
        let entries = file
            .as_deref()
            .and_then(|file| std::fs::read(file).ok())
            .and_then(|bytes| match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(cache) => Some(cache.entries),
                Err(error) => {
                    tracing::warn!(%error, "ignoring an unreadable hash cache");
                    None
                }
            })
            .unwrap_or_default();
        HashCache { file, entries }
    }

    pub fn get(&self, file: &LocalFile) -> Option<String> {
        let entry = self.entries.get(&key(file))?;
        (entry.size == file.size && entry.modified == modified(file)).then(|| entry.hash.clone())
    }

    pub fn insert(&mut self, file: &LocalFile, hash: String) {
        self.entries.insert(
            key(file),
            Entry {
                size: file.size,
                modified: modified(file),
                hash,
            },
        );
    }

    /// Writes the cache, without the entries of files that are gone (compacted away), atomically.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        self.entries.retain(|path, _| Path::new(path).exists());
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = file.with_extension("json.tmp");
        let cache = CacheFile {
            entries: std::mem::take(&mut self.entries),
        };
        let written = serde_json::to_vec(&cache)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&temporary, bytes));
        self.entries = cache.entries;
        written?;
        std::fs::rename(&temporary, file)
    }
}

fn file_tag(algorithm: HashAlgorithm) -> &'static str {
    match algorithm {
        HashAlgorithm::Sha256 => "sha256",
        HashAlgorithm::Crc => "crc32",
        HashAlgorithm::None => "none",
    }
}

fn key(file: &LocalFile) -> String {
    file.cache_key.to_string_lossy().into_owned()
}

fn modified(file: &LocalFile) -> u128 {
    file.modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_as_esop_writes_them() {
        let mut sha = Hasher::new(HashAlgorithm::Sha256);
        sha.update(b"abc");
        assert_eq!(
            sha.finish().unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut crc = Hasher::new(HashAlgorithm::Crc);
        crc.update(b"abc");
        assert_eq!(crc.finish().unwrap(), "891568578");
        assert_eq!(Hasher::new(HashAlgorithm::None).finish(), None);
    }

    #[test]
    fn cached_hashes_survive_a_reload_and_expire_with_their_file() {
        let dir = std::env::temp_dir().join(format!("daedalus-hashcache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let live = dir.join("nb-1-big-Data.db");
        std::fs::write(&live, b"abc").unwrap();
        let metadata = std::fs::metadata(&live).unwrap();
        let file = LocalFile {
            path: live.clone(),
            cache_key: live.clone(),
            size: metadata.len(),
            modified: metadata.modified().unwrap(),
        };
        let mut cache = HashCache::load(Some(&dir), HashAlgorithm::Sha256);
        assert_eq!(cache.get(&file), None);
        cache.insert(&file, "h".into());
        cache.save().unwrap();

        let mut reloaded = HashCache::load(Some(&dir), HashAlgorithm::Sha256);
        assert_eq!(reloaded.get(&file).as_deref(), Some("h"));
        let grown = LocalFile {
            size: 4,
            ..file.clone()
        };
        assert_eq!(reloaded.get(&grown), None, "a changed size is a new file");
        assert_eq!(
            HashCache::load(Some(&dir), HashAlgorithm::Crc).get(&file),
            None
        );

        std::fs::remove_file(&live).unwrap();
        reloaded.save().unwrap();
        assert_eq!(
            HashCache::load(Some(&dir), HashAlgorithm::Sha256).get(&file),
            None
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
