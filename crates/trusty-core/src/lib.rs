//! What every trusty-search role shares, without the engine: index ids
//! ([`IndexId`]), the JSON bodies of the HTTP API ([`api`]), and immutable
//! index versions in object storage ([`storage`]: layout, manifest, publish,
//! open, import). The operator depends on this crate alone; the engine,
//! shards and routers re-export it.

pub mod api;
pub mod index_id;
pub mod metrics;
pub mod storage;

pub use index_id::IndexId;

/// Hex SHA-256, the digest manifests record for every file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
