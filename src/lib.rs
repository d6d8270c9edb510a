//! trusty-search: sharded hybrid code search.
//!
//! Data and code dependencies flow one way:
//! [`index`] builds a version of a repository (walk → chunk → BM25, vectors,
//! graph) in the format [`bundle`] defines; [`storage`] (from `trusty-core`)
//! publishes it to object storage and fetches it again on a shard; [`search`]
//! opens a bundle and ranks it; [`shard`] serves opened versions behind
//! loading gates; [`router`] places index ids on shards and fans out; [`mcp`]
//! exposes the router to coding agents. [`embed`] turns text into vectors for
//! both the indexer and the query path; [`model`] is the chunk vocabulary
//! everyone shares; [`api`] the JSON bodies of every HTTP role; [`server`] the
//! HTTP plumbing shards and routers share; [`telemetry`] metrics and logs;
//! [`error_chain`] renders an error and its causes where only text travels;
//! [`allocator`] the hooks through which the binary's allocator is read and
//! asked to release thread caches.
//! `index` and `search` never import each other (scripts/check-layers.py).

pub mod allocator;
pub mod bundle;
pub mod embed;
pub mod eval;
pub(crate) mod heap_size;
pub mod index;
pub mod mcp;
pub mod model;
pub mod router;
pub mod search;
pub(crate) mod server;
pub mod shard;
pub mod telemetry;
#[cfg(test)]
mod test_support;

pub use model::{Chunk, Language, SymbolKind};
pub use trusty_core::{IndexId, api, error_chain, index_id, storage};

/// The message of a caught panic (`panic!` with a literal or a format), for
/// the error or log line that takes the crash's place.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_message_is_read_from_a_literal_or_a_format() {
        let caught = |f: fn()| std::panic::catch_unwind(f).unwrap_err();
        assert_eq!(
            super::panic_message(caught(|| panic!("grammar bug")).as_ref()),
            "grammar bug"
        );
        assert_eq!(super::panic_message(caught(|| panic!("bug {}", 7)).as_ref()), "bug 7");
        let other = caught(|| std::panic::panic_any(7u8));
        assert_eq!(super::panic_message(other.as_ref()), "(no message)");
    }
}
