//! `trusty-search search` and `symbols`: query a published index directly
//! from object storage (fetched into a local cache), without a cluster.

use super::embedder_args::EmbedderArgs;
use anyhow::{Context, Result};
use std::path::PathBuf;
use trusty_search::IndexId;
use trusty_search::api::{Filters, GroupBy, SearchMode, SearchRequest, SearchResponse, SymbolRelation};
use trusty_search::search::engine::Engine;
use trusty_search::search::files::FileRankParams;
use trusty_search::search::fusion::FusionWeights;
use trusty_search::storage::open::{fetch_version, read_current};
use trusty_search::storage::store::Store;

#[derive(clap::Args)]
pub struct StoreArgs {
    #[arg(long, env = "TRUSTY_STORE")]
    pub store: String,
    #[arg(long)]
    pub id: IndexId,
    /// Local cache for downloaded versions.
    #[arg(long, env = "TRUSTY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub embedder: EmbedderArgs,
}

#[derive(clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub target: StoreArgs,
    #[arg(long, default_value = "hybrid")]
    pub mode: SearchMode,
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Restrict to a language (repeatable); same as `lang:` in the query.
    #[arg(long = "lang")]
    pub languages: Vec<String>,
    /// Restrict to paths matching a glob (repeatable); same as `path:`.
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Rank files instead of chunks (`group_by: file`): for "where is this
    /// handled?" and pasted issues or stack traces.
    #[arg(long)]
    pub files: bool,
    /// Set a file-ranking weight or prior, e.g. `test_prior=1` (repeatable;
    /// names in `FileRankParams`). Applies to `--files` and to the file arm
    /// chunk search fuses for a pasted issue. For evaluation sweeps.
    #[arg(long = "file-param")]
    pub file_params: Vec<String>,
    /// Set a fusion weight for issue-shaped and stack-trace queries in chunk
    /// search, e.g. `bm25=0.3` (repeatable; names in `FusionWeights`). For
    /// evaluation sweeps.
    #[arg(long = "long-text-fusion", conflicts_with = "files")]
    pub long_text_fusion: Vec<String>,
    /// Print the JSON response.
    #[arg(long)]
    pub json: bool,
    /// Read the query from this file (a pasted issue or log) instead of the argument.
    #[arg(long, conflicts_with = "query")]
    pub query_file: Option<PathBuf>,
    /// Free text, with optional `lang:`, `path:` and `sym:` filters.
    #[arg(required_unless_present = "query_file")]
    pub query: Option<String>,
}

#[derive(clap::Args)]
pub struct SymbolsArgs {
    #[command(flatten)]
    pub target: StoreArgs,
    #[arg(long, default_value = "definition")]
    pub rel: SymbolRelation,
    #[arg(long, default_value_t = 1)]
    pub depth: u32,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
    pub name: String,
}

pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/trusty-search/cli-cache")
}

async fn open_engine(t: &StoreArgs) -> Result<Engine> {
    let store = Store::open(&t.store)?;
    let (pointer, _) = read_current(&store, &t.id, None)
        .await?
        .context("CURRENT vanished while reading")?;
    let cache = t.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let local = fetch_version(&store, &t.id, &cache, &pointer, 8).await?;
    let embedder = t.embedder.load_for_query(local.manifest.embedder.as_ref())?;
    Ok(Engine::open(&local.dir, local.manifest, embedder).await?)
}

pub async fn run_search(args: SearchArgs) -> Result<()> {
    let mut engine = open_engine(&args.target).await?;
    let mut params = FileRankParams::default();
    for p in &args.file_params {
        params.set(p).map_err(anyhow::Error::msg)?;
    }
    engine.set_file_params(params);
    let mut weights = FusionWeights::long_text();
    for p in &args.long_text_fusion {
        weights.set(p).map_err(anyhow::Error::msg)?;
    }
    engine.set_long_text_weights(weights);
    let filters = (!args.languages.is_empty() || !args.paths.is_empty()).then(|| Filters {
        languages: args.languages.clone(),
        paths: args.paths.clone(),
        symbols: vec![],
    });
    let query = match (&args.query_file, &args.query) {
        (Some(path), _) => {
            std::fs::read_to_string(path).with_context(|| format!("reading the query from {}", path.display()))?
        }
        (None, Some(q)) => q.clone(),
        (None, None) => anyhow::bail!("give a query or --query-file"),
    };
    let req = SearchRequest {
        query,
        mode: args.mode,
        top_k: Some(args.top_k),
        filters,
        group_by: args.files.then_some(GroupBy::File),
    };
    let resp = engine.search(&req).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
    } else if args.files {
        print_files(&resp);
    } else {
        print_hits(&resp);
    }
    Ok(())
}

/// Ranked files with the line ranges of their best chunks.
pub fn print_files(resp: &SearchResponse) {
    println!(
        "{} @ {} — {} files in {:.1} ms",
        resp.index_id,
        resp.version,
        resp.files.len(),
        resp.took_ms
    );
    for (i, f) in resp.files.iter().enumerate() {
        let ranges: Vec<String> = f
            .chunks
            .iter()
            .map(|c| format!("{}-{} {}", c.start_line, c.end_line, c.symbol.as_deref().unwrap_or("-")))
            .collect();
        println!("{:>2}. {}  [{:.4}]  {}", i + 1, f.path, f.score, ranges.join(", "));
    }
}

pub fn print_hits(resp: &SearchResponse) {
    println!(
        "{} @ {} — {} hits in {:.1} ms ({}){}",
        resp.index_id,
        resp.version,
        resp.hits.len(),
        resp.took_ms,
        resp.mode.as_str(),
        if resp.unavailable_arms.is_empty() {
            String::new()
        } else {
            format!(", unavailable: {}", resp.unavailable_arms.join(","))
        }
    );
    for (i, h) in resp.hits.iter().enumerate() {
        let mut why = Vec::new();
        if let Some(b) = &h.arms.bm25 {
            why.push(format!("bm25 #{}", b.rank));
        }
        if let Some(v) = &h.arms.vector {
            why.push(format!("vector #{}", v.rank));
        }
        if let Some(g) = &h.arms.graph {
            why.push(format!("graph: {} {}", g.relation, g.via));
        }
        println!(
            "{:>2}. {}:{}-{}  {} {}  [{:.4}; {}]",
            i + 1,
            h.path,
            h.start_line,
            h.end_line,
            h.kind,
            h.symbol.as_deref().unwrap_or("-"),
            h.score,
            why.join(", ")
        );
        for line in h.snippet.lines().take(3) {
            println!("      {line}");
        }
    }
}

pub async fn run_symbols(args: SymbolsArgs) -> Result<()> {
    let engine = open_engine(&args.target).await?;
    let resp = engine.symbols(&args.name, args.rel, args.depth, args.limit);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&resp)?);
    } else {
        for r in &resp.results {
            println!(
                "{}:{}-{}  {} {}  (depth {})",
                r.path, r.start_line, r.end_line, r.kind, r.symbol, r.depth
            );
        }
        if resp.results.is_empty() {
            println!("no {:?} found for {}", args.rel, args.name);
        }
    }
    Ok(())
}
