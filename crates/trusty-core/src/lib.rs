//! What every trusty-search role shares, without the engine: index ids
//! ([`IndexId`]), the JSON bodies of the HTTP API ([`api`]), immutable
//! index versions in object storage ([`storage`]: layout, manifest, publish,
//! open, import), and one-line error chains ([`error_chain`]). The operator depends on this crate alone; the engine,
//! shards and routers re-export it.

pub mod api;
pub mod error_chain;
pub mod index_id;
pub mod metrics;
pub mod storage;

pub use index_id::IndexId;

/// Hex SHA-256, the digest manifests record for every file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// A time as manifests and status bodies write it: RFC 3339, UTC.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Whether logs written to `stream` may carry colour: only for a person at a
/// terminal who has not set `NO_COLOR`; in a pod's log (and a build's
/// termination message) escape codes are noise.
pub fn log_colour(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_written_in_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_250);
        assert_eq!(super::rfc3339(t), "2023-11-14T22:13:20.25Z");
    }
}
