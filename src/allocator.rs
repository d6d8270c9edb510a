//! What the library needs from the process's allocator, which the binary
//! chooses: its statistics, for `trusty_heap_bytes`, and a way for a thread
//! that has just freed a lot to hand its cached free memory back. Libraries
//! and tests run on the system allocator and install nothing; then there are
//! no statistics and releasing does nothing.

use std::sync::OnceLock;

/// The allocator's own figures, which separate live objects from pages it
/// keeps after they are freed: RSS alone cannot tell a leak from a cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapStats {
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub retained: u64,
    pub thread_caches: u64,
}

/// The binary's access to its allocator.
#[derive(Debug, Clone, Copy)]
pub struct Hooks {
    /// Reads the statistics; `None` when the allocator keeps none.
    pub heap_stats: fn() -> Option<HeapStats>,
    /// Returns the calling thread's cached free objects to the shared heap,
    /// so memory freed on a thread that may now sit idle can be reused or
    /// returned to the kernel.
    pub release_thread_cache: fn(),
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// Installs the hooks; the first call wins.
pub fn install(hooks: Hooks) {
    let _ = HOOKS.set(hooks);
}

pub(crate) fn heap_stats() -> Option<HeapStats> {
    HOOKS.get().and_then(|h| (h.heap_stats)())
}

pub(crate) fn release_thread_cache() {
    if let Some(h) = HOOKS.get() {
        (h.release_thread_cache)();
    }
}
