//! The two ways an agent reaches the tools: streamable HTTP (mounted by the
//! router at `/mcp`) and stdio (`trusty-search mcp --router URL`, launched by
//! a local coding agent).
//!
//! The HTTP endpoint runs stateless (no `Mcp-Session-Id`, plain JSON
//! responses): the tools never push notifications or call back into the
//! client, and routers run as several replicas behind one Service, so a
//! session pinned to one replica's memory would break whenever a load
//! balancer sent the next request elsewhere. Host-header validation is off by
//! default because the router is reached through Service DNS names and
//! ingress hosts this code cannot know; it guards against DNS rebinding of
//! loopback servers, and every tool here only reads what the unauthenticated
//! public API already serves. Callers that want it back pass their own
//! [`StreamableHttpServerConfig`] to [`mcp_http_service_with`].

use super::client::{BackendError, McpBackend};
use super::tools::SearchTools;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;
use std::time::Duration;

/// A `tower::Service` over HTTP requests; mount it with
/// `axum::Router::nest_service("/mcp", service)`.
pub type McpHttpService = StreamableHttpService<SearchTools, NeverSessionManager>;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the MCP client did not complete the handshake on stdio: {0}")]
    Handshake(#[source] Box<rmcp::service::ServerInitializeError>),
    #[error("the MCP stdio server stopped abnormally: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

/// The `/mcp` endpoint in front of the public API at `backend_base_url`
/// (the router's own listen URL, or a shard's), whose calls wait at most
/// `call_timeout`. Fails only on an unusable URL.
pub fn mcp_http_service(backend_base_url: String, call_timeout: Duration) -> Result<McpHttpService, McpError> {
    let backend = McpBackend::with_timeout(&backend_base_url, call_timeout)?;
    Ok(mcp_http_service_with(backend, http_config()))
}

/// The configuration [`mcp_http_service`] uses: stateless, JSON responses,
/// any `Host`, and the public API's body limit (a tool call carries at most
/// one query, and the transport buffers a body whole before parsing it).
pub fn http_config() -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(crate::server::params::BODY_LIMIT)
        .disable_allowed_hosts()
}

/// The `/mcp` endpoint with a caller-chosen transport configuration.
pub fn mcp_http_service_with(backend: McpBackend, config: StreamableHttpServerConfig) -> McpHttpService {
    StreamableHttpService::new(
        move || Ok(SearchTools::new(backend.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}

/// Serves MCP on stdin/stdout until the client closes stdin. Nothing else may
/// write to stdout meanwhile: logs go to stderr.
pub async fn serve_stdio(backend: McpBackend) -> Result<(), McpError> {
    let running = SearchTools::new(backend)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Handshake(Box::new(e)))?;
    let reason = running.waiting().await?;
    tracing::debug!(?reason, "MCP stdio session ended");
    Ok(())
}
