//! Ranking chunks in an opened index version: each arm (BM25, vector, graph)
//! ranks on its own, [`fusion`] combines them, [`query`] parses filters.

pub mod bm25;
pub mod engine;
pub mod fanout;
pub mod fusion;
pub mod graph;
pub mod query;
pub mod vector;
