//! Request pieces both roles parse the same way: index ids in paths, the
//! query string of symbol navigation, and the internal headers a router uses
//! to tell a shard how patient to be with a cold index.

use crate::IndexId;
use crate::api::{ApiError, LineRange, SymbolRelation};
use crate::storage::layout;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

/// Request body limit: the longest query, twice over for JSON escaping (a
/// client escaping non-ASCII as `\\uXXXX` doubles CJK text), plus room for
/// the rest of the request.
pub const BODY_LIMIT: usize = 2 * crate::api::MAX_QUERY_BYTES + 64 * 1024;

/// Set by a router on an attempt that has another owner to fall back on:
/// a cold shard starts loading and answers `index_cold` at once instead of
/// holding the request while a replica may already be hot.
pub const NO_WAIT_HEADER: &str = "x-trusty-no-wait";
/// Set by a router on the per-index searches of a fan-out: a cold index is
/// warmed in the background (free budget only) and reported as skipped.
pub const FANOUT_HEADER: &str = "x-trusty-fanout";
/// Set by a router on every attempt: how many milliseconds it will wait for
/// the answer. The shard gives up by then (503 `request_timeout`) instead of
/// working on for a caller that has already moved on.
pub const DEADLINE_HEADER: &str = "x-trusty-deadline-ms";

/// The caller's deadline from [`DEADLINE_HEADER`], if it sent a usable one.
pub fn caller_deadline(headers: &HeaderMap) -> Option<std::time::Duration> {
    let ms: u64 = headers.get(DEADLINE_HEADER)?.to_str().ok()?.trim().parse().ok()?;
    Some(std::time::Duration::from_millis(ms))
}

/// How long a request may wait for a cold index, from the router's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Wait for the restore (up to the shard's `load_wait`).
    Wait,
    /// Start a demand restore, answer at once.
    NoWait,
    /// Start a background warm-up if there is room, answer at once.
    FanOut,
}

impl Patience {
    pub fn from_headers(headers: &HeaderMap) -> Patience {
        if headers.contains_key(FANOUT_HEADER) {
            Patience::FanOut
        } else if headers.contains_key(NO_WAIT_HEADER) {
            Patience::NoWait
        } else {
            Patience::Wait
        }
    }
}

pub fn parse_id(raw: &str) -> Result<IndexId, ApiError> {
    IndexId::new(raw)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_index_id", e.to_string()).retryable(false))
}

/// Query string of `files/{path}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileParams {
    #[serde(default)]
    pub lines: Option<String>,
}

impl FileParams {
    pub fn lines(&self) -> Result<Option<LineRange>, ApiError> {
        self.lines
            .as_deref()
            .map(|l| l.parse::<LineRange>().map_err(ApiError::bad_request))
            .transpose()
    }
}

/// A file path inside an index version: relative, `/`-separated, no `.` or
/// `..` segments, at most 1 KiB.
pub fn parse_file_path(raw: &str) -> Result<String, ApiError> {
    let bad = raw.len() > 1024 || raw.contains('\0') || layout::check_relative_path(raw).is_err();
    if bad {
        return Err(ApiError::bad_request(format!(
            "file path {raw:?} must be relative to the repository root, without `.` or `..` segments"
        )));
    }
    Ok(raw.to_string())
}

/// The `{name}` of symbol navigation (see [`crate::api::check_symbol_name`]).
pub fn parse_symbol_name(raw: &str) -> Result<(), ApiError> {
    crate::api::check_symbol_name(raw).map_err(ApiError::bad_request)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolParams {
    #[serde(default)]
    pub rel: Option<String>,
    #[serde(default)]
    pub depth: Option<u32>,
    #[serde(default)]
    pub limit: Option<usize>,
}

impl SymbolParams {
    pub fn parse(&self) -> Result<(SymbolRelation, u32, usize), ApiError> {
        let rel = match &self.rel {
            Some(r) => r.parse().map_err(ApiError::bad_request)?,
            None => SymbolRelation::Definition,
        };
        let depth = self.depth.unwrap_or(1);
        if !(1..=5).contains(&depth) {
            return Err(ApiError::bad_request("depth must be between 1 and 5"));
        }
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::bad_request("limit must be between 1 and 500"));
        }
        Ok((rel, depth, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_must_stay_inside_the_version() {
        assert_eq!(parse_file_path("src/lib.rs").unwrap(), "src/lib.rs");
        assert!(parse_file_path("a b/ü.py").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b", "a/", "x\0y"] {
            let e = parse_file_path(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
        assert!(parse_file_path(&"a/".repeat(600)).is_err());
    }
}
