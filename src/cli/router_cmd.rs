//! `trusty-search router`: run one router until SIGTERM.

use anyhow::Result;
use trusty_search::router::config::RouterConfig;

#[derive(clap::Args)]
pub struct RouterArgs {
    #[command(flatten)]
    pub config: RouterConfig,
}

pub async fn run(args: RouterArgs) -> Result<()> {
    let handle = trusty_search::router::server::start(args.config).await?;
    println!("router listening on {}", handle.url());
    handle.wait().await?;
    Ok(())
}
