//! Version directories on local disk: who is reading them, and when they may go.
//!
//! A version directory (`{cache}/{index}/{version}`) can be opened by more than
//! one handle at a time: an evicted index reloaded from its local copy, or a
//! version swap racing a load. Deleting it by path while another handle reads
//! it would pull files out from under lance and tantivy, so removal is a
//! request ([`VersionDirs::doom`]) honoured when the last lease drops; a new
//! lease on a doomed directory revives it.
//!
//! At start, [`inventory`] walks the cache: partial downloads, directories a
//! previous run was still deleting and unverified directories go, and every
//! verified version is returned so the shard can count it against its disk
//! budget.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use trusty_core::storage::local_dir;
use trusty_core::storage::open::is_partial_download;

#[derive(Debug, Default)]
struct DirState {
    leases: usize,
    doomed: bool,
}

/// Leases on version directories, shared by every handle of one shard.
#[derive(Debug, Default, Clone)]
pub struct VersionDirs {
    dirs: Arc<Mutex<HashMap<PathBuf, DirState>>>,
}

/// A reader's claim on a version directory; the directory is removed when the
/// last lease of a doomed directory drops.
#[derive(Debug)]
pub struct DirLease {
    dirs: VersionDirs,
    path: PathBuf,
}

impl DirLease {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl VersionDirs {
    /// Claims `path` (which may not exist yet): while leased it is never removed.
    pub fn lease(&self, path: &Path) -> DirLease {
        let mut dirs = self.dirs.lock();
        let st = dirs.entry(path.to_path_buf()).or_default();
        st.leases += 1;
        st.doomed = false;
        DirLease {
            dirs: self.clone(),
            path: path.to_path_buf(),
        }
    }

    /// Asks for `path` to be removed: now if nobody holds it, else when the last lease drops.
    pub fn doom(&self, path: &Path) {
        let aside = {
            let mut dirs = self.dirs.lock();
            match dirs.get_mut(path) {
                Some(st) if st.leases > 0 => {
                    st.doomed = true;
                    return;
                }
                _ => {
                    dirs.remove(path);
                    local_dir::move_aside(path)
                }
            }
        };
        finish_removal(path, aside);
    }

    /// Leases currently held on `path` (for tests and status).
    pub fn leases(&self, path: &Path) -> usize {
        self.dirs.lock().get(path).map(|s| s.leases).unwrap_or(0)
    }
}

impl Drop for DirLease {
    fn drop(&mut self) {
        let aside = {
            let mut dirs = self.dirs.dirs.lock();
            let Some(st) = dirs.get_mut(&self.path) else { return };
            st.leases -= 1;
            if st.leases > 0 {
                return;
            }
            let doomed = st.doomed;
            dirs.remove(&self.path);
            if !doomed {
                return;
            }
            local_dir::move_aside(&self.path)
        };
        finish_removal(&self.path, aside);
    }
}

/// Frees `path` at once; its files are deleted off the async workers.
fn remove(path: &Path) {
    finish_removal(path, local_dir::move_aside(path));
}

/// Deletes what was moved aside from `path`. The move happens under the
/// lock that leases take, so a lease taken after the decision finds the path
/// free rather than losing its directory to a late rename; only the deletion
/// itself runs after letting go (off the async workers).
fn finish_removal(path: &Path, aside: std::io::Result<Option<local_dir::Aside>>) {
    match local_dir::remove_moved(path, aside) {
        Ok(()) => tracing::debug!(dir = %path.display(), "removed version directory"),
        Err(e) => tracing::warn!(dir = %path.display(), error = %e, "could not remove version directory"),
    }
}

/// A verified version directory found in the cache at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedVersion {
    pub index_id: String,
    pub version: String,
    pub dir: PathBuf,
    pub bytes: u64,
    pub modified: SystemTime,
}

/// Walks `cache_dir`: removes partial downloads and directories without a
/// completion marker, keeps the newest verified version of each index and
/// removes older ones. Returns what was kept, newest first.
pub fn inventory(cache_dir: &Path, is_verified: impl Fn(&Path) -> bool) -> std::io::Result<Vec<CachedVersion>> {
    let mut kept: Vec<CachedVersion> = Vec::new();
    let Ok(indexes) = std::fs::read_dir(cache_dir) else {
        return Ok(kept);
    };
    for index_dir in indexes.flatten() {
        if !index_dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let index_id = index_dir.file_name().to_string_lossy().into_owned();
        // Not ours (a volume's `lost+found`, a file an admin left): never
        // walked into, never cleaned.
        if crate::IndexId::new(&index_id).is_err() {
            tracing::debug!(entry = %index_id, "not an index directory; left alone");
            continue;
        }
        let entries = match std::fs::read_dir(index_dir.path()) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(index_id, error = %e, "cannot read a cached index; skipped");
                continue;
            }
        };
        let mut versions: Vec<CachedVersion> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_partial_download(&name) || local_dir::is_being_removed(&name) || !is_verified(&path) {
                remove(&path);
                continue;
            }
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            versions.push(CachedVersion {
                index_id: index_id.clone(),
                version: name,
                bytes: dir_bytes(&path),
                dir: path,
                modified,
            });
        }
        versions.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.version.cmp(&a.version)));
        let mut versions = versions.into_iter();
        if let Some(newest) = versions.next() {
            kept.push(newest);
        }
        for old in versions {
            remove(&old.dir);
        }
        if std::fs::read_dir(index_dir.path()).is_ok_and(|mut d| d.next().is_none()) {
            let _ = std::fs::remove_dir(index_dir.path());
        }
    }
    kept.sort_by_key(|k| std::cmp::Reverse(k.modified));
    Ok(kept)
}

/// Bytes of the regular files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(dir: &Path, files: &[(&str, usize)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, size) in files {
            std::fs::write(dir.join(name), vec![b'x'; *size]).unwrap();
        }
    }

    #[test]
    fn a_doomed_directory_waits_for_its_last_lease() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx/v1");
        make(&dir, &[("f", 3)]);
        let dirs = VersionDirs::default();
        let a = dirs.lease(&dir);
        let b = dirs.lease(&dir);
        dirs.doom(&dir);
        drop(a);
        assert!(dir.exists(), "one lease still holds it");
        drop(b);
        assert!(!dir.exists(), "removed with the last lease");
    }

    #[test]
    fn a_new_lease_revives_a_doomed_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx/v1");
        make(&dir, &[("f", 3)]);
        let dirs = VersionDirs::default();
        let old = dirs.lease(&dir);
        dirs.doom(&dir);
        let new = dirs.lease(&dir);
        drop(old);
        assert!(dir.exists(), "the new handle keeps its files");
        assert_eq!(dirs.leases(&dir), 1);
        drop(new);
        assert!(dir.exists(), "not doomed any more");
        dirs.doom(&dir);
        assert!(!dir.exists(), "unleased: removed at once");
    }

    #[test]
    fn inventory_keeps_the_newest_verified_version() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        make(&root.join("a/v1"), &[("ok", 10)]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        make(&root.join("a/v2"), &[("ok", 20)]);
        make(&root.join("a/v3.partial-123"), &[("ok", 5)]);
        // A verified version a previous run renamed aside and did not finish deleting.
        make(&root.join("a/v2.removing-456"), &[("ok", 30)]);
        make(&root.join("b/v1"), &[("junk", 7)]);
        // A volume's own directory is not an index: left as it is.
        make(&root.join("lost+found/x"), &[("junk", 1)]);
        let kept = inventory(root, |p| p.join("ok").exists()).unwrap();
        assert!(root.join("lost+found/x/junk").exists());
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].index_id.as_str(), kept[0].version.as_str()), ("a", "v2"));
        assert_eq!(kept[0].bytes, 20);
        assert!(!root.join("a/v1").exists(), "older version removed");
        assert!(!root.join("a/v3.partial-123").exists(), "partial removed");
        assert!(!root.join("a/v2.removing-456").exists(), "unfinished removal finished");
        assert!(
            !root.join("b").exists(),
            "unverified directory and its empty parent removed"
        );
    }
}
