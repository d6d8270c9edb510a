//! `trusty-search shard`: run one shard until SIGTERM.

use super::embedder_args::EmbedderArgs;
use anyhow::Result;
use trusty_search::shard::ShardConfig;

#[derive(clap::Args)]
pub struct ShardArgs {
    #[command(flatten)]
    pub config: ShardConfig,
    #[command(flatten)]
    pub embedder: EmbedderArgs,
}

pub async fn run(args: ShardArgs) -> Result<()> {
    // The query embedder must match what indexes were built with; `auto`
    // loads MiniLM when its weights are present.
    let embedder = args.embedder.load_for_shard(args.config.embed_timeout)?;
    let handle = trusty_search::shard::server::start(args.config, embedder).await?;
    println!("shard listening on {}", handle.url());
    handle.wait().await?;
    Ok(())
}
