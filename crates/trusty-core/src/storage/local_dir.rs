//! Removing directories from a local cache without holding up async work.
//!
//! Deleting a version's files is one unlink per file and can take far longer
//! than a request on a busy disk. Done on an async worker, it stalls every
//! task queued behind it, health probes included. [`remove_dir`] renames the
//! directory aside (one syscall, so the path is free at once) and deletes it on
//! a blocking thread. A process that stops before the deletion finishes leaves
//! a directory whose name contains [`REMOVING`]; whoever inventories the cache
//! at start deletes those.

use std::path::{Path, PathBuf};

/// Marks a directory renamed aside for deletion.
pub const REMOVING: &str = ".removing-";

/// Removes `path` and everything under it: in the background when called from
/// a tokio runtime, inline otherwise. When it returns `Ok` the path is free
/// (a missing directory counts); a failure of the background deletion is
/// logged, as there is no caller left to tell.
pub fn remove_dir(path: &Path) -> std::io::Result<()> {
    remove_moved(path, move_aside(path))
}

/// The second half of [`remove_dir`], given what [`move_aside`] did with
/// `path`: deletes the directory moved aside, or `path` in place where the
/// rename failed (it can fail where deleting would not), so that the path
/// is free when this returns.
pub fn remove_moved(path: &Path, moved: std::io::Result<Option<Aside>>) -> std::io::Result<()> {
    match moved {
        Ok(Some(aside)) => aside.delete(),
        Ok(None) => Ok(()),
        Err(_) => remove_now(path),
    }
}

/// A directory renamed aside: its old path is free, its files are still to delete.
#[derive(Debug)]
#[must_use = "an aside directory is deleted only by `delete`"]
pub struct Aside(PathBuf);

/// Renames `path` aside, one syscall: the first half of [`remove_dir`], for
/// a caller that must free the path while it holds a lock and delete the
/// files after letting go. `None` when there was nothing at `path`.
pub fn move_aside(path: &Path) -> std::io::Result<Option<Aside>> {
    let aside = aside_name(path);
    match std::fs::rename(path, &aside) {
        Ok(()) => Ok(Some(Aside(aside))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Aside {
    /// Deletes the files: on a blocking thread under a tokio runtime (a
    /// failure is logged), inline otherwise.
    pub fn delete(self) -> std::io::Result<()> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return remove_now(&self.0);
        };
        runtime.spawn_blocking(move || {
            if let Err(e) = remove_now(&self.0) {
                tracing::warn!(dir = %self.0.display(), error = %e, "could not remove directory");
            }
        });
        Ok(())
    }
}

/// True for a directory [`remove_dir`] renamed aside and may not have finished deleting.
pub fn is_being_removed(name: &str) -> bool {
    name.contains(REMOVING)
}

fn aside_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!("{REMOVING}{}", uuid::Uuid::new_v4().simple()));
    path.with_file_name(name)
}

fn remove_now(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(dir: &Path) {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/f"), b"x").unwrap();
    }

    #[test]
    fn outside_a_runtime_it_removes_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v1");
        make(&dir);
        remove_dir(&dir).unwrap();
        assert!(!dir.exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        remove_dir(&dir).unwrap(); // missing: nothing to do
    }

    #[tokio::test]
    async fn inside_a_runtime_the_path_is_free_at_once_and_the_files_go_in_the_background() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v1");
        make(&dir);
        remove_dir(&dir).unwrap();
        assert!(!dir.exists(), "the path is free as soon as remove_dir returns");
        // The same path can be used again while the old files are deleted.
        make(&dir);
        assert!(dir.join("sub/f").exists());
        for _ in 0..500 {
            let leftovers = std::fs::read_dir(tmp.path())
                .unwrap()
                .flatten()
                .filter(|e| is_being_removed(&e.file_name().to_string_lossy()))
                .count();
            if leftovers == 0 {
                assert!(dir.join("sub/f").exists(), "the new directory is untouched");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the renamed directory was never deleted");
    }
}
