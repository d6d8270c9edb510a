//! trusty-search: sharded hybrid code search.
//!
//! Data flows one way through the modules:
//! [`index`] builds a version of a repository (walk → chunk → BM25, vectors, graph),
//! [`storage`] publishes it to object storage and opens it again on a shard,
//! [`search`] ranks chunks in an opened version, [`shard`] serves opened versions
//! behind loading gates, [`router`] places index ids on shards and fans out, and
//! [`mcp`] exposes the router to coding agents. [`api`] holds the JSON bodies all
//! HTTP roles share; [`telemetry`] the metrics and logs.

pub mod api;
pub mod eval;
pub mod index;
pub mod index_id;
pub mod mcp;
pub mod model;
pub mod router;
pub mod search;
pub mod server;
pub mod shard;
pub mod storage;
pub mod telemetry;

pub use index_id::IndexId;
pub use model::{Chunk, Language, SymbolKind};
