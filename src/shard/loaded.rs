//! A hot index version: the opened engine plus what budgets and status need.

use crate::search::engine::Engine;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

pub struct LoadedIndex {
    pub engine: Engine,
    pub version: String,
    /// ETag of the `CURRENT` object this version was read from (for cheap polling).
    pub current_etag: Option<String>,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub loaded_at: SystemTime,
    pub load_ms: f64,
    dir: PathBuf,
    /// Set when this version is retired (replaced or evicted from disk): the
    /// directory goes away when the last in-flight query drops its handle.
    remove_on_drop: AtomicBool,
}

impl LoadedIndex {
    pub fn new(engine: Engine, current_etag: Option<String>, load_ms: f64) -> LoadedIndex {
        let version = engine.manifest.version.clone();
        let memory_bytes = engine.memory_bytes();
        let disk_bytes = engine.manifest.total_bytes();
        let dir = engine.dir().to_path_buf();
        LoadedIndex {
            engine,
            version,
            current_etag,
            memory_bytes,
            disk_bytes,
            loaded_at: SystemTime::now(),
            load_ms,
            dir,
            remove_on_drop: AtomicBool::new(false),
        }
    }

    pub fn retire(&self) {
        self.remove_on_drop.store(true, Ordering::Release);
    }
}

impl Drop for LoadedIndex {
    fn drop(&mut self) {
        if self.remove_on_drop.load(Ordering::Acquire) {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove retired version");
            }
        }
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
