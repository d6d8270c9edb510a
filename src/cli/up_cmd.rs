//! `trusty-search up`: a whole cluster on this machine — N shards and a
//! router in one process over a local file object store — with the given
//! directories indexed and ready to search.

use super::embedder_args::EmbedderArgs;
use anyhow::{Context, Result};
use std::path::PathBuf;
use trusty_search::IndexId;
use trusty_search::index::build::{BuildOptions, build_bundle, git_commit};
use trusty_search::router::config::RouterConfig;
use trusty_search::router::membership::{self, ShardEndpoint};
use trusty_search::shard::ShardConfig;
use trusty_search::storage::manifest::SourceInfo;
use trusty_search::storage::publish::{PublishOptions, publish};
use trusty_search::storage::store::Store;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Directories to index (default: the current one).
    pub dirs: Vec<PathBuf>,
    /// Number of shards.
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// Owners per index.
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// Router address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Where the local object store and shard caches live.
    #[arg(long, env = "TRUSTY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Index the directories, print a sample search, and exit instead of serving.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub embedder: EmbedderArgs,
}

/// An index id from a directory name: lowercase, invalid characters to `-`.
pub fn id_for_dir(dir: &std::path::Path) -> Result<IndexId> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "root".into());
    let mut id: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    id = id
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .replace("..", ".");
    id.truncate(63);
    if id.is_empty() {
        id = "root".into();
    }
    Ok(IndexId::new(id)?)
}

/// Holds `data` for this process: two `up`s sharing a data directory would
/// write the same shard caches and publish over each other's versions.
/// The lock goes with the returned file (and with the process).
fn lock_data_dir(data: &std::path::Path) -> Result<std::fs::File> {
    let path = data.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `trusty-search up` is using {}; stop it, or pass --data-dir to use another directory",
            data.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

pub async fn run(args: UpArgs) -> Result<()> {
    // Before indexing, which can take minutes: a router already on the
    // address (an earlier `up` still serving) would only fail at the end.
    std::net::TcpListener::bind(&args.listen).with_context(|| {
        format!(
            "the router address {} is not free (is another `up` serving?); pass --listen to use another",
            args.listen
        )
    })?;
    let data = args.data_dir.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".cache/trusty-search/local")
    });
    let store_dir = data.join("store");
    std::fs::create_dir_all(&store_dir)?;
    let _lock = lock_data_dir(&data)?;
    let store_url = format!("file://{}", store_dir.canonicalize()?.display());
    let store = Store::open(&store_url)?;
    let embedder = args.embedder.load_for_build()?;

    let dirs = if args.dirs.is_empty() {
        vec![std::env::current_dir()?]
    } else {
        args.dirs.clone()
    };
    let mut ids = Vec::new();
    for dir in &dirs {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("directory {}", dir.display()))?;
        let id = id_for_dir(&dir)?;
        eprintln!("indexing {} as {id} …", dir.display());
        let work = tempfile::tempdir()?;
        let source = SourceInfo {
            path: dir.display().to_string(),
            git_commit: git_commit(&dir),
            ..Default::default()
        };
        let report = build_bundle(
            &dir,
            &id,
            &work.path().join("bundle"),
            BuildOptions {
                embedder: embedder.clone(),
                embed_cache: Some(store.clone()),
                progress: true,
                source,
                ..Default::default()
            },
        )
        .await?;
        publish(&store, &id, &report.dir, &PublishOptions::default()).await?;
        let m = &report.manifest;
        eprintln!(
            "  {} files, {} chunks, {} graph edges, {} in {:.1} s",
            m.counts.files,
            m.counts.chunks,
            m.counts.graph_edges,
            m.embedder
                .as_ref()
                .map(|e| format!(
                    "vectors ({}: {} embedded, {} reused)",
                    e.id, report.embedding.embedded, report.embedding.reused
                ))
                .unwrap_or("lexical + graph".into()),
            (report.timings.walk_ms
                + report.timings.chunk_ms
                + report.timings.bm25_ms.max(report.timings.graph_ms)
                + report.timings.embed_ms
                + report.timings.vectors_ms
                + report.timings.seal_ms)
                / 1000.0
        );
        ids.push(id);
    }

    let mut shards = Vec::new();
    for i in 0..args.shards.max(1) {
        let name = format!("shard-{i}");
        let cfg = ShardConfig::local(&store_url, data.join("cache").join(&name), &name);
        shards.push(trusty_search::shard::server::start(cfg, embedder.clone()).await?);
    }
    let members: Vec<ShardEndpoint> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| ShardEndpoint {
            name: format!("shard-{i}"),
            url: s.url(),
        })
        .collect();
    let mut rcfg = RouterConfig::local("");
    rcfg.listen = args.listen.clone();
    rcfg.replicas = args.replicas.min(shards.len()).max(1);
    rcfg.shards = None;
    let (tx, rx) = membership::fixed(members);
    let router = trusty_search::router::server::start_with_members(rcfg, tx, rx, Vec::new()).await?;
    let url = router.url();

    let example = ids.first().map(|i| i.to_string()).unwrap_or_default();
    println!("trusty-search local cluster");
    println!("  router:  {url}   (MCP: {url}/mcp)");
    for (i, s) in shards.iter().enumerate() {
        println!("  shard-{i}: {}", s.url());
    }
    println!("  store:   {store_url}");
    println!(
        "  indexes: {}",
        ids.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
    );
    println!();
    println!("Try:");
    println!("  curl -s {url}/v1/indexes/{example}/search -H 'content-type: application/json' \\");
    println!("       -d '{{\"query\": \"parse configuration file\", \"top_k\": 5}}'");
    println!("  curl -s '{url}/v1/indexes/{example}/symbols/main?rel=callees'");

    if args.once {
        let client = reqwest::Client::new();
        let answer = client
            .post(format!("{url}/v1/indexes/{example}/search"))
            .json(&serde_json::json!({"query": "parse configuration file", "top_k": 5}))
            .send()
            .await?;
        let status = answer.status();
        if !status.is_success() {
            // The API's error body says why (index_loading, over_budget, ...).
            let body = answer.text().await.unwrap_or_default();
            anyhow::bail!("the sample search answered {status}: {body}");
        }
        let resp: trusty_search::api::SearchResponse = answer.json().await?;
        println!();
        super::search_cmd::print_hits(&resp);
        router.stop().await;
        for s in shards {
            s.stop().await;
        }
        return Ok(());
    }
    println!("\nServing until Ctrl-C.");
    router.wait().await?;
    for s in shards {
        s.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_serves_one_up_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_data_dir(dir.path()).unwrap();
        let e = lock_data_dir(dir.path()).unwrap_err();
        assert!(e.to_string().contains("another `trusty-search up`"), "{e}");
        drop(held);
        lock_data_dir(dir.path()).expect("free again once the first one is gone");
    }
}
