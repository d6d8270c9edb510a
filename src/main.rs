//! `trusty-search`: one binary for every role (indexer, shard, router, local
//! cluster, MCP bridge) and for building, searching and evaluating indexes.

mod cli;

/// Shards load and drop indexes all day. glibc keeps freed memory in its
/// arenas, so a shard's RSS climbs to every arena's high-water mark whatever
/// its budget counts; jemalloc hands freed pages back to the kernel as
/// [`MALLOC_CONF`] says.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its first allocation. A shard restores
/// and drops indexes many times a minute, and memory freed on one thread is
/// otherwise kept for reuse twice over: emptied pages wait out a decay time
/// (`dirty_decay_ms`), and every thread parks freed objects in a cache of its
/// own, across dozens of blocking threads. Purging emptied pages at once and
/// caching a few small objects per thread keeps a shard's RSS near what its
/// budget counts; no thread caches at all cost throughput (docs/BENCHMARKS.md).
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: ConfString = ConfString(
    c"background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0,tcache_max:1024,tcache_nslots_small_max:64".as_ptr(),
);

/// A C string pointer jemalloc reads as its `malloc_conf` symbol.
#[repr(transparent)]
struct ConfString(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, immutable C string literal.
#[allow(unsafe_code)]
unsafe impl Sync for ConfString {}

/// jemalloc's statistics for `trusty_heap_bytes`: live bytes against the
/// pages it holds, the split a shard's RSS alone cannot show.
#[allow(unsafe_code)]
fn jemalloc_stats() -> Option<trusty_search::allocator::HeapStats> {
    use std::ffi::{CStr, c_void};
    use tikv_jemalloc_sys::mallctl;
    // Statistics are a snapshot taken when the epoch advances.
    let mut epoch: u64 = 1;
    let mut len = std::mem::size_of::<u64>();
    // SAFETY: "epoch" reads and writes a u64; both pointers are to live u64s
    // and `len` is their size.
    let refreshed = unsafe {
        mallctl(
            c"epoch".as_ptr(),
            (&raw mut epoch).cast::<c_void>(),
            &raw mut len,
            (&raw mut epoch).cast::<c_void>(),
            len,
        )
    };
    if refreshed != 0 {
        return None;
    }
    let read = |name: &CStr| -> Option<u64> {
        let mut value: usize = 0;
        let mut len = std::mem::size_of::<usize>();
        // SAFETY: every "stats.*" name read here is a size_t; `value` is one
        // and `len` its size; nothing is written.
        let rc = unsafe {
            mallctl(
                name.as_ptr(),
                (&raw mut value).cast::<c_void>(),
                &raw mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0).then_some(value as u64)
    };
    Some(trusty_search::allocator::HeapStats {
        allocated: read(c"stats.allocated")?,
        active: read(c"stats.active")?,
        resident: read(c"stats.resident")?,
        retained: read(c"stats.retained")?,
        // 4096 is MALLCTL_ARENAS_ALL: the sum over arenas.
        thread_caches: read(c"stats.arenas.4096.tcache_bytes")?,
    })
}

/// Returns the calling thread's cached objects to jemalloc's arenas.
#[allow(unsafe_code)]
fn jemalloc_flush_thread_cache() {
    // SAFETY: "thread.tcache.flush" reads and writes nothing; null pointers
    // and zero lengths say so.
    let _ = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"thread.tcache.flush".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
}

fn main() -> std::process::ExitCode {
    trusty_search::allocator::install(trusty_search::allocator::Hooks {
        heap_stats: jemalloc_stats,
        release_thread_cache: jemalloc_flush_thread_cache,
    });
    // Two rustls crypto backends end up linked (aws-lc-rs and ring); pick one
    // before any TLS client (kube, object_store, reqwest) is built.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    cli::main()
}
