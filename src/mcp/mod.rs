//! MCP tools over the public search API, for AI coding agents.
//!
//! [`client`] is an HTTP client of the API (router or shard — they speak the
//! same routes), [`tools`] the nine tools agents call, [`format`](mod@format) the compact
//! text they read, and [`server`] the two transports: streamable HTTP, which
//! the router mounts at `/mcp` via [`mcp_http_service`], and stdio for
//! `trusty-search mcp --router URL`.

pub(crate) mod client;
pub(crate) mod format;
pub(crate) mod server;
pub(crate) mod tools;

pub use client::{BackendError, DEADLINE_MARGIN, DEFAULT_REQUEST_TIMEOUT, McpBackend};
pub use server::{McpError, McpHttpService, http_config, mcp_http_service, mcp_http_service_with, serve_stdio};
pub use tools::{SearchTools, TOOL_NAMES};

#[cfg(test)]
mod tests;
