//! The format of one index version on disk: what the indexer ([`crate::index`])
//! writes and a shard's engine ([`crate::search`]) reads, so neither depends on
//! the other. Where these files sit in a bundle directory and in object
//! storage is `storage::layout`; which files a version holds, the manifest.
//!
//! - [`chunks`]: every chunk, one JSON line each (`chunks.jsonl`);
//! - [`lexical`] and [`tokenize`]: the BM25 schema and the analyzers both
//!   sides must agree on;
//! - [`vectors`]: the lance dataset of chunk embeddings;
//! - [`graph`]: the code graph model and its `graph.bin` codec;
//! - [`sources`]: the indexed files' text, for reading code back.

pub mod chunks;
pub mod graph;
pub mod lexical;
pub mod sources;
pub mod tokenize;
pub(crate) mod vectors;
