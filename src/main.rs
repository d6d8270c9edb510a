//! `trusty-search`: one binary for every role (indexer, shard, router, local
//! cluster, MCP bridge) and for building, searching and evaluating indexes.

mod cli;

/// Shards load and drop indexes all day. glibc keeps freed memory in its
/// arenas, so a shard's RSS climbs to every arena's high-water mark whatever
/// its budget counts; jemalloc hands freed pages back to the kernel on a
/// background thread after [`MALLOC_CONF`]'s decay time.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its first allocation: purge freed pages
/// after a second (`dirty_decay_ms`) straight to the kernel
/// (`muzzy_decay_ms:0`), from its own thread rather than on the next
/// allocation of the thread that freed them.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: ConfString = ConfString(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads as its `malloc_conf` symbol.
#[repr(transparent)]
struct ConfString(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, immutable C string literal.
#[allow(unsafe_code)]
unsafe impl Sync for ConfString {}

fn main() -> std::process::ExitCode {
    // Two rustls crypto backends end up linked (aws-lc-rs and ring); pick one
    // before any TLS client (kube, object_store, reqwest) is built.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    cli::main()
}
