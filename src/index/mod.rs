//! Building an index version from a source tree: walk the files, chunk them by
//! symbol, and write the three arms (BM25, vectors, graph) into a local bundle
//! directory (format: [`crate::bundle`]) that [`crate::storage::publish`]
//! uploads. Nothing here knows how a bundle is searched.

pub(crate) mod bm25;
pub mod build;
pub(crate) mod chunk;
pub mod embed_cache;
pub(crate) mod graph;
pub(crate) mod lang;
pub(crate) mod vectors;
pub mod walk;

/// What a manifest's `chunker_version` says: bumped when chunking changes.
pub use chunk::CHUNKER_VERSION;
