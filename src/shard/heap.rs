//! Handing freed heap back to the kernel after indexes come and go.
//!
//! glibc keeps freed memory in its per-thread arenas. A shard that loads and
//! evicts indexes all day frees as much as it allocates, yet its RSS stays at
//! the high-water mark of every arena, which is what the kubelet's memory
//! limit sees. `malloc_trim` returns the free pages; it walks every arena, so
//! it runs on a blocking thread and at most once per [`MIN_INTERVAL`].
//!
//! glibc also gives threads up to eight arenas per core, and a shard's blocking
//! pool runs dozens of threads (restores, file I/O): each arena keeps its own
//! high-water mark, so the shard caps them at one per core ([`limit_arenas`])
//! before its runtime starts a thread. docs/BENCHMARKS.md has the effect in
//! the soak.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MIN_INTERVAL: Duration = Duration::from_secs(2);

static LAST_TRIM_MS: AtomicU64 = AtomicU64::new(0);

/// Returns freed heap pages to the kernel soon (no-op off glibc).
pub(crate) fn release_freed() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let last = LAST_TRIM_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) < MIN_INTERVAL.as_millis() as u64
        || LAST_TRIM_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    tokio::task::spawn_blocking(trim);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim takes no pointers and is thread-safe in glibc; it
    // only releases pages malloc already considers free.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Caps glibc's malloc arenas at one per core (at least two), unless
/// `MALLOC_ARENA_MAX` already says otherwise. Call before any thread starts:
/// arenas already handed to threads stay. No-op off glibc.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    set_arena_max(cores.max(2));
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: usize) {
    /// `M_ARENA_MAX` in glibc's malloc.h.
    const M_ARENA_MAX: std::os::raw::c_int = -8;
    unsafe extern "C" {
        fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    let value = std::os::raw::c_int::try_from(arenas).unwrap_or(std::os::raw::c_int::MAX);
    // SAFETY: mallopt takes two integers; M_ARENA_MAX only bounds how many
    // arenas later threads may create.
    unsafe {
        mallopt(M_ARENA_MAX, value);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: usize) {}
