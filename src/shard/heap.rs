//! Handing freed heap back to the kernel after indexes come and go.
//!
//! glibc keeps freed memory in its per-thread arenas. A shard that loads and
//! evicts indexes all day frees as much as it allocates, yet its RSS stays at
//! the high-water mark of every arena, which is what the kubelet's memory
//! limit sees. `malloc_trim` returns the free pages; it walks every arena, so
//! it runs on a blocking thread and at most once per [`MIN_INTERVAL`].

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
