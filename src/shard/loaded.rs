//! A hot index version: the opened engine plus what budgets and status need.

use super::disk::{DirLease, VersionDirs};
use crate::search::engine::Engine;
use std::time::SystemTime;

pub struct LoadedIndex {
    /// The engine and the lease on its directory, dropped together (engine
    /// first) when the last handle goes; `None` only inside `drop`.
    held: Option<Held>,
    pub version: String,
    /// ETag of the `CURRENT` object this version was read from (for cheap polling).
    pub current_etag: Option<String>,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub loaded_at: SystemTime,
    pub load_ms: f64,
    dirs: VersionDirs,
}

/// Field order is drop order: the engine closes its files before the lease
/// lets the directory go.
struct Held {
    engine: Engine,
    lease: DirLease,
}

impl LoadedIndex {
    pub fn new(engine: Engine, lease: DirLease, dirs: VersionDirs, current_etag: Option<String>, load_ms: f64) -> Self {
        let version = engine.manifest.version.clone();
        let memory_bytes = engine.memory_bytes();
        let disk_bytes = engine.manifest.total_bytes();
        LoadedIndex {
            held: Some(Held { engine, lease }),
            version,
            current_etag,
            memory_bytes,
            disk_bytes,
            loaded_at: SystemTime::now(),
            load_ms,
            dirs,
        }
    }

    /// The opened index. Reachable only through this handle, so the directory
    /// lease outlives every reader.
    pub fn engine(&self) -> &Engine {
        &self.held().engine
    }

    /// Marks this version's directory for removal once no handle uses it
    /// (a newer version replaced it, or disk budget evicted it).
    pub fn retire(&self) {
        self.dirs.doom(self.held().lease.path());
    }

    fn held(&self) -> &Held {
        self.held.as_ref().expect("an engine is held until the handle drops")
    }
}

/// Freeing an engine is one free per chunk, table and column, and returning
/// the pages to the kernel: the last handle often goes on an async worker
/// (an eviction, a version swap), where that work would hold up the tasks
/// queued behind it, health probes included. So it happens on a blocking
/// thread when there is a runtime; that thread then hands back the freed
/// objects its allocator cache kept, as it may sit idle for a while.
impl Drop for LoadedIndex {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else { return };
        let release = move || {
            drop(held);
            crate::allocator::release_thread_cache();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(release)),
            Err(_) => release(),
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
