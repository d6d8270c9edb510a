//! Command-line surface: parsing with clap, one module per command family.

mod embedder_args;
mod eval_cmd;
mod index_cmd;
mod mcp_cmd;
mod router_cmd;
mod search_cmd;
mod shard_cmd;
mod up_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use trusty_search::telemetry::logging::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "trusty-search",
    version,
    about = "Sharded hybrid code search",
    propagate_version = true
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "TRUSTY_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, publish and manage index versions in object storage.
    #[command(subcommand)]
    Index(index_cmd::IndexCommand),
    /// Search a published index.
    Search(search_cmd::SearchArgs),
    /// Navigate the code graph of a published index (definition, references, callers, callees).
    Symbols(search_cmd::SymbolsArgs),
    /// Evaluate retrieval quality on a BEIR-layout dataset.
    Eval(eval_cmd::EvalArgs),
    /// Run a shard: serve indexes pulled lazily from object storage.
    Shard(shard_cmd::ShardArgs),
    /// Run a router: place indexes on shards, fail over, fan out.
    Router(router_cmd::RouterArgs),
    /// Start a local cluster (router + shards + file store) with directories indexed.
    Up(up_cmd::UpArgs),
    /// Serve MCP tools over stdio for a coding agent, backed by a router URL.
    Mcp(mcp_cmd::McpArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Index(cmd) => index_cmd::run(cmd).await,
            Command::Search(args) => search_cmd::run_search(args).await,
            Command::Symbols(args) => search_cmd::run_symbols(args).await,
            Command::Eval(args) => eval_cmd::run(args).await,
            Command::Shard(args) => shard_cmd::run(args).await,
            Command::Mcp(args) => mcp_cmd::run(args).await,
            Command::Router(args) => router_cmd::run(args).await,
            Command::Up(args) => up_cmd::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", trusty_search::error_chain::one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
