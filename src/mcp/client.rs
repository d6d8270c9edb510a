//! HTTP client of the public search API, the only thing the MCP tools talk to.
//!
//! The MCP layer deliberately does not link the search engine or the router
//! internals: it speaks the same JSON API as every other client, against a
//! base URL that may be a router or a single shard (they serve identical
//! routes). That keeps the stdio server (`trusty-search mcp --router URL`, run
//! on a developer's machine) and the `/mcp` endpoint mounted inside the router
//! on exactly the same code path, and means an agent sees the same errors a
//! human using `curl` would.
//!
//! Failures keep the API's error code, message and `retryable` flag, plus the
//! `Retry-After` seconds of a 503, so the tools can tell an agent whether
//! trying again is worthwhile.

use crate::api::{
    ErrorBody, FileContent, FileOutline, IndexList, IndexStatus, MultiSearchRequest, MultiSearchResponse,
    SearchRequest, SearchResponse, SymbolRelation, SymbolResponse,
};
use crate::error_chain::one_line;
use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long one API call may take end to end: longer than the router's own
/// default deadline, so its answer (a 503 with retry advice) arrives before
/// this client gives up. Searches on a cold index wait for the shard's load
/// gate, which answers 503 well before either.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(65);
/// How much longer than the API's own deadline a client in front of it waits.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Error bodies larger than this are cut when quoted back to the agent.
const MAX_QUOTED_BODY: usize = 512;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The configured base URL cannot be used.
    #[error("invalid search API URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The API answered with its error body.
    #[error("HTTP {status} {}: {}", body.error, body.message)]
    Api {
        status: u16,
        body: ErrorBody,
        retry_after_secs: Option<u64>,
    },
    /// No HTTP answer at all (connection refused, reset, timed out). The
    /// message carries reqwest's causes: its outermost alone does not say which.
    #[error("cannot reach the search API at {url}: {}", one_line(source))]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Arguments the API would reject, caught before calling it.
    #[error("{0}")]
    InvalidArgument(String),
    /// An answer that is not the API's JSON (a proxy's HTML page, a truncated body).
    #[error("unexpected response from {url} (HTTP {status}): {detail}")]
    Protocol { url: String, status: u16, detail: String },
}

impl BackendError {
    /// The machine-readable code: the API's own, or one of `bad_request`
    /// (caught locally), `invalid_backend_url`, `backend_timeout` (the API
    /// took longer than this client waits), `backend_unreachable`,
    /// `bad_backend_response`.
    pub fn code(&self) -> &str {
        match self {
            BackendError::InvalidUrl { .. } => "invalid_backend_url",
            BackendError::Api { body, .. } => &body.error,
            BackendError::InvalidArgument(_) => "bad_request",
            BackendError::Transport { source, .. } if source.is_timeout() => "backend_timeout",
            BackendError::Transport { .. } => "backend_unreachable",
            BackendError::Protocol { .. } => "bad_backend_response",
        }
    }

    /// Whether the same call may succeed later without changing it.
    pub fn retryable(&self) -> bool {
        match self {
            BackendError::InvalidUrl { .. } | BackendError::InvalidArgument(_) => false,
            BackendError::Api { body, .. } => body.retryable,
            // A router restarting or a connection reset: trying again is the fix.
            BackendError::Transport { .. } => true,
            BackendError::Protocol { status, .. } => matches!(status, 502..=504),
        }
    }

    /// Seconds the API asked to wait before retrying (`Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            BackendError::Api { retry_after_secs, .. } => *retry_after_secs,
            _ => None,
        }
    }

    /// The HTTP status, when there was an HTTP answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            BackendError::Api { status, .. } | BackendError::Protocol { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The index the error is about, when the API said so.
    pub fn index_id(&self) -> Option<&str> {
        match self {
            BackendError::Api { body, .. } => body.index_id.as_deref(),
            _ => None,
        }
    }

    /// A human-readable message without the code.
    pub fn message(&self) -> String {
        match self {
            BackendError::Api { body, .. } => body.message.clone(),
            other => other.to_string(),
        }
    }
}

/// A client of the public API at one base URL (router or shard).
#[derive(Debug, Clone)]
pub struct McpBackend {
    base: Url,
    http: reqwest::Client,
}

/// A file path's segments, refused up front when it could leave the
/// repository: URL building would quietly resolve `..` segments away.
/// An index id as one path segment; checked here because a `.` or `..`
/// segment would be dropped from the URL and the call reach another route.
fn index_segment(index: &str) -> Result<&str, BackendError> {
    crate::IndexId::new(index).map_err(|e| BackendError::InvalidArgument(e.to_string()))?;
    Ok(index)
}

fn file_segments(path: &str) -> Result<std::str::Split<'_, char>, BackendError> {
    crate::server::params::parse_file_path(path).map_err(|e| BackendError::InvalidArgument(e.body.message))?;
    Ok(path.split('/'))
}

impl McpBackend {
    /// A client of `base_url` (e.g. `http://router:8080`, optionally with a path prefix).
    pub fn new(base_url: &str) -> Result<Self, BackendError> {
        Self::with_timeout(base_url, DEFAULT_REQUEST_TIMEOUT)
    }

    /// Like [`McpBackend::new`] with a per-request timeout.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, BackendError> {
        let invalid = |reason: String| BackendError::InvalidUrl {
            url: base_url.to_string(),
            reason,
        };
        let base = Url::parse(base_url.trim()).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        if base.cannot_be_a_base() || base.host_str().is_none() {
            return Err(invalid("the URL has no host".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .user_agent(concat!("trusty-search-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(McpBackend { base, http })
    }

    /// The base URL every route is resolved against.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `POST /v1/indexes/{id}/search`.
    pub async fn search(&self, index: &str, req: &SearchRequest) -> Result<SearchResponse, BackendError> {
        let url = self.url(&["v1", "indexes", index_segment(index)?, "search"], &[]);
        self.call(Method::POST, url, Some(req)).await
    }

    /// `POST /v1/search`: many or all indexes.
    pub async fn search_all(&self, req: &MultiSearchRequest) -> Result<MultiSearchResponse, BackendError> {
        let url = self.url(&["v1", "search"], &[]);
        self.call(Method::POST, url, Some(req)).await
    }

    /// `GET /v1/indexes/{id}/symbols/{name}?rel=&depth=&limit=`.
    pub async fn symbols(
        &self,
        index: &str,
        symbol: &str,
        rel: SymbolRelation,
        depth: u32,
        limit: usize,
    ) -> Result<SymbolResponse, BackendError> {
        let rel = match rel {
            SymbolRelation::Definition => "definition",
            SymbolRelation::References => "references",
            SymbolRelation::Callers => "callers",
            SymbolRelation::Callees => "callees",
        };
        crate::api::check_symbol_name(symbol).map_err(BackendError::InvalidArgument)?;
        let url = self.url(
            &["v1", "indexes", index_segment(index)?, "symbols", symbol],
            &[
                ("rel", rel.to_string()),
                ("depth", depth.to_string()),
                ("limit", limit.to_string()),
            ],
        );
        self.call::<(), _>(Method::GET, url, None).await
    }

    /// `GET /v1/indexes/{id}/files/{path}?lines=a-b`; the path keeps its
    /// slashes as segment separators.
    pub async fn read_file(&self, index: &str, path: &str, lines: Option<&str>) -> Result<FileContent, BackendError> {
        let mut segments = vec!["v1", "indexes", index_segment(index)?, "files"];
        segments.extend(file_segments(path)?);
        let query: Vec<(&str, String)> = lines.map(|l| ("lines", l.to_string())).into_iter().collect();
        let url = self.url(&segments, &query);
        self.call::<(), _>(Method::GET, url, None).await
    }

    /// `GET /v1/indexes/{id}/outline/{path}`.
    pub async fn outline(&self, index: &str, path: &str) -> Result<FileOutline, BackendError> {
        let mut segments = vec!["v1", "indexes", index_segment(index)?, "outline"];
        segments.extend(file_segments(path)?);
        let url = self.url(&segments, &[]);
        self.call::<(), _>(Method::GET, url, None).await
    }

    /// `GET /v1/indexes`.
    pub async fn list_indexes(&self) -> Result<IndexList, BackendError> {
        let url = self.url(&["v1", "indexes"], &[]);
        self.call::<(), _>(Method::GET, url, None).await
    }

    /// `GET /v1/indexes/{id}`.
    pub async fn index_status(&self, index: &str) -> Result<IndexStatus, BackendError> {
        let url = self.url(&["v1", "indexes", index_segment(index)?], &[]);
        self.call::<(), _>(Method::GET, url, None).await
    }

    /// Appends percent-encoded path segments and query pairs to the base
    /// URL. A segment cannot escape into the next, but `.` and `..` are
    /// dropped as dot segments: callers refuse them first.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            // `new` rejected cannot-be-a-base URLs, so this always runs.
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, BackendError> {
        let shown = url.to_string();
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|source| BackendError::Transport {
            url: shown.clone(),
            source,
        })?;
        let status = resp.status();
        let retry_after_secs = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = resp.bytes().await.map_err(|source| BackendError::Transport {
            url: shown.clone(),
            source,
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| BackendError::Protocol {
                url: shown,
                status: status.as_u16(),
                detail: format!("the body is not the expected JSON: {e}"),
            });
        }
        decode_error(&shown, status, retry_after_secs, &bytes)
    }
}

/// Maps a non-2xx answer: the API's error body when it is one, otherwise a
/// [`BackendError::Protocol`] quoting the start of whatever came back.
fn decode_error<T>(
    url: &str,
    status: StatusCode,
    retry_after_secs: Option<u64>,
    bytes: &[u8],
) -> Result<T, BackendError> {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => Err(BackendError::Api {
            status: status.as_u16(),
            body,
            retry_after_secs,
        }),
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            let mut quoted: String = text.chars().take(MAX_QUOTED_BODY).collect();
            if quoted.len() < text.len() {
                quoted.push('…');
            }
            Err(BackendError::Protocol {
                url: url.to_string(),
                status: status.as_u16(),
                detail: if quoted.trim().is_empty() {
                    "empty body".to_string()
                } else {
                    quoted
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unusable_base_urls() {
        for bad in ["", "router:8080", "ftp://router", "mailto:a@b"] {
            let err = McpBackend::new(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_backend_url", "{bad}");
            assert!(!err.retryable());
        }
    }

    #[test]
    fn routes_are_appended_under_a_path_prefix_and_encoded() {
        let b = McpBackend::new("http://router:8080/api/?x=1").unwrap();
        let url = b.url(
            &["v1", "indexes", "demo", "symbols", "Server::start<T>/x y"],
            &[("rel", "callers".into())],
        );
        assert_eq!(
            url.as_str(),
            "http://router:8080/api/v1/indexes/demo/symbols/Server::start%3CT%3E%2Fx%20y?rel=callers"
        );
        let b = McpBackend::new("http://router:8080").unwrap();
        assert_eq!(b.url(&["v1", "indexes"], &[]).as_str(), "http://router:8080/v1/indexes");
    }

    #[test]
    fn non_json_errors_keep_status_and_retryability() {
        let err = decode_error::<()>(
            "http://x/v1/indexes",
            StatusCode::BAD_GATEWAY,
            None,
            b"<html>bad gateway</html>",
        )
        .unwrap_err();
        assert_eq!(err.code(), "bad_backend_response");
        assert_eq!(err.status(), Some(502));
        assert!(err.retryable());
        assert!(err.to_string().contains("<html>bad gateway</html>"));

        let err = decode_error::<()>("http://x/", StatusCode::NOT_FOUND, None, b"").unwrap_err();
        assert!(!err.retryable());
        assert!(err.to_string().contains("empty body"));
    }

    #[test]
    fn api_error_bodies_are_kept() {
        let body = br#"{"error":"index_loading","message":"loading","index_id":"demo","retryable":true}"#;
        let err = decode_error::<()>("http://x/", StatusCode::SERVICE_UNAVAILABLE, Some(3), body).unwrap_err();
        assert_eq!(err.code(), "index_loading");
        assert_eq!(err.index_id(), Some("demo"));
        assert_eq!(err.retry_after_secs(), Some(3));
        assert!(err.retryable());
        assert_eq!(err.message(), "loading");
    }
}
