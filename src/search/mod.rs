//! Ranking chunks in an opened index version: each arm (BM25, vector, graph)
//! ranks on its own, [`fusion`] combines them, [`query`] parses filters.
//! [`files`] ranks files instead of chunks, reading issue-shaped queries
//! through [`query_text`]; both take their parameters by name through `param`.

pub mod bm25;
pub mod engine;
pub mod files;
pub mod fusion;
pub(crate) mod graph;
mod param;
pub mod query;
mod query_model;
pub(crate) mod query_text;
mod top_k;
pub mod vector;
