//! Building an index version from a source tree: walk the files, chunk them by
//! symbol, and write the three arms (BM25, vectors, graph) into a local bundle
//! directory that [`crate::storage::publish`] uploads.

pub mod bm25;
pub mod build;
pub mod chunk;
pub mod embed;
pub mod graph;
pub mod tokenize;
pub mod walk;
