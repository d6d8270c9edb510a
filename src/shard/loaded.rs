//! A hot index version: the opened engine plus what budgets and status need.

use super::disk::{DirLease, VersionDirs};
use crate::search::engine::Engine;
use std::time::SystemTime;

pub struct LoadedIndex {
    /// Reachable only through this handle, so the directory lease outlives every reader.
    pub engine: Engine,
    pub version: String,
    /// ETag of the `CURRENT` object this version was read from (for cheap polling).
    pub current_etag: Option<String>,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub loaded_at: SystemTime,
    pub load_ms: f64,
    /// Keeps the version directory on disk while this handle (or a query holding it) lives.
    lease: DirLease,
    dirs: VersionDirs,
}

impl LoadedIndex {
    pub fn new(engine: Engine, lease: DirLease, dirs: VersionDirs, current_etag: Option<String>, load_ms: f64) -> Self {
        let version = engine.manifest.version.clone();
        let memory_bytes = engine.memory_bytes();
        let disk_bytes = engine.manifest.total_bytes();
        LoadedIndex {
            engine,
            version,
            current_etag,
            memory_bytes,
            disk_bytes,
            loaded_at: SystemTime::now(),
            load_ms,
            lease,
            dirs,
        }
    }

    /// Marks this version's directory for removal once no handle uses it
    /// (a newer version replaced it, or disk budget evicted it).
    pub fn retire(&self) {
        self.dirs.doom(self.lease.path());
    }
}

impl std::fmt::Debug for LoadedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedIndex")
            .field("version", &self.version)
            .field("memory_bytes", &self.memory_bytes)
            .finish()
    }
}
