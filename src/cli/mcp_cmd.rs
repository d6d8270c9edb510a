//! `trusty-search mcp`: serve the MCP tools over stdio for a local coding
//! agent, backed by a router (or shard) URL. stdout carries the protocol, so
//! this command never prints to it; logs go to stderr.

use anyhow::{Context, Result};
use trusty_search::mcp::{McpBackend, serve_stdio};

#[derive(clap::Args)]
pub struct McpArgs {
    /// Base URL of the search API: a router (or a single shard).
    #[arg(long, env = "TRUSTY_ROUTER_URL")]
    pub router: String,
    /// Per-request timeout for API calls; keep it above the router's
    /// `--request-timeout` so the router's own answer arrives first.
    #[arg(long, default_value = "65s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

pub async fn run(args: McpArgs) -> Result<()> {
    let backend = McpBackend::with_timeout(&args.router, args.timeout)?;
    tracing::info!(router = %backend.base_url(), "serving MCP over stdio");
    serve_stdio(backend).await.context("MCP over stdio")?;
    Ok(())
}
