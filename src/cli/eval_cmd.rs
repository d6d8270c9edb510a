//! `trusty-search eval`: index a BEIR corpus as a repository (one file per
//! document), run its queries in every mode and report retrieval metrics.

use super::embedder_args::EmbedderArgs;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;
use trusty_search::IndexId;
use trusty_search::api::SearchMode;
use trusty_search::eval::{BeirData, Metrics, MetricsAccumulator};
use trusty_search::index::build::{BuildOptions, build_bundle};
use trusty_search::search::engine::Engine;
use trusty_search::search::fusion::{FusionMethod, FusionWeights};
use trusty_search::search::query::ParsedQuery;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// BEIR directory (corpus.jsonl, queries.jsonl, qrels/).
    #[arg(long)]
    pub beir: PathBuf,
    #[arg(long, default_value = "dev")]
    pub split: String,
    /// File extension given to each document (selects the chunker language).
    #[arg(long, default_value = "py")]
    pub ext: String,
    /// Modes to evaluate.
    #[arg(long, value_delimiter = ',', default_value = "bm25,vector,graph,hybrid")]
    pub modes: Vec<SearchMode>,
    /// Also sweep fusion weights for the hybrid mode.
    #[arg(long)]
    pub sweep: bool,
    /// Keep the built corpus index here and reuse it on later runs (embedding
    /// a corpus with MiniLM on a CPU takes minutes).
    #[arg(long)]
    pub bundle_dir: Option<PathBuf>,
    /// Evaluate only the first N queries.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub embedder: EmbedderArgs,
}

#[derive(Serialize)]
struct ModeResult {
    mode: SearchMode,
    weights: Option<WeightsJson>,
    metrics: Metrics,
    mean_query_ms: f64,
}

#[derive(Serialize, Clone, Copy)]
struct WeightsJson {
    method: FusionMethod,
    bm25: f32,
    vector: f32,
    k: f32,
    graph: f32,
}

impl From<FusionWeights> for WeightsJson {
    fn from(w: FusionWeights) -> Self {
        WeightsJson {
            method: w.method,
            bm25: w.bm25,
            vector: w.vector,
            k: w.k,
            graph: w.graph,
        }
    }
}

#[derive(Serialize)]
struct Report {
    dataset: String,
    split: String,
    documents: usize,
    queries: usize,
    chunks: u64,
    embedder: Option<String>,
    build_ms: f64,
    results: Vec<ModeResult>,
    sweep: Vec<ModeResult>,
}

pub async fn run(args: EvalArgs) -> Result<()> {
    let data = BeirData::load(&args.beir, &args.split)?;
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("corpus");
    std::fs::create_dir_all(&src)?;
    let mut path_to_doc = HashMap::new();
    for doc in &data.corpus {
        let name = format!("{}.{}", sanitize(&doc.id), args.ext);
        let text = if doc.title.is_empty() {
            doc.text.clone()
        } else {
            format!("{}\n{}", doc.title, doc.text)
        };
        std::fs::write(src.join(&name), text)?;
        path_to_doc.insert(name, doc.id.clone());
    }
    let embedder = args.embedder.load_for_build()?;
    let id = IndexId::new("eval").expect("valid id");
    let started = Instant::now();
    let bundle = args.bundle_dir.clone().unwrap_or_else(|| tmp.path().join("bundle"));
    // A bundle left by an earlier run is reused only if this build would make
    // the same one: every document indexed or skipped (e.g. a generated-code
    // marker), by the same embedder, chunker and bundle format. (A change to
    // the indexing code without a version bump still needs a fresh
    // --bundle-dir.)
    let embedder_id = embedder.as_ref().map(|e| e.id().to_string());
    let cached = std::fs::read(bundle.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<trusty_search::storage::manifest::Manifest>(&b).ok())
        .filter(|m| (m.counts.files + m.counts.skipped_files) as usize == data.corpus.len())
        .filter(|m| m.embedder.as_ref().map(|e| e.id.clone()) == embedder_id)
        .filter(|m| m.chunker_version == trusty_search::index::CHUNKER_VERSION)
        .filter(|m| m.schema_version == trusty_search::storage::manifest::SCHEMA_VERSION);
    if let Some(m) = &cached {
        eprintln!("reusing the bundle in {} (built {})", bundle.display(), m.created_at);
    }
    let manifest = match cached {
        Some(m) => m,
        None => {
            let _ = std::fs::remove_dir_all(&bundle);
            let report = build_bundle(
                &src,
                &id,
                &bundle,
                BuildOptions {
                    embedder: embedder.clone(),
                    progress: !args.json,
                    ..Default::default()
                },
            )
            .await
            .context("indexing the corpus")?;
            report.manifest
        }
    };
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;
    let report = Built { manifest, dir: bundle };
    let mut engine = Engine::open(&report.dir, report.manifest.clone(), embedder.clone()).await?;

    let queries: Vec<_> = data.queries.iter().take(args.limit.unwrap_or(usize::MAX)).collect();
    // Embed each query once; every mode and weight setting reuses it.
    let mut parsed = Vec::with_capacity(queries.len());
    for q in &queries {
        let p = ParsedQuery::parse(&q.text, None).ok();
        let v = match &p {
            Some(p) if engine.has_vectors() => engine.embed_query(p.embed_text()).await?,
            _ => None,
        };
        parsed.push((p, v));
    }

    let ctx = EvalContext {
        queries: &queries,
        parsed: &parsed,
        path_to_doc: &path_to_doc,
        qrels: &data.qrels,
    };
    let mut results = Vec::new();
    for &mode in &args.modes {
        if matches!(mode, SearchMode::Vector) && !engine.has_vectors() {
            eprintln!("skipping vector mode: no embedder");
            continue;
        }
        let (metrics, mean_query_ms) = ctx.evaluate(&engine, mode).await?;
        let weights = (mode == SearchMode::Hybrid).then(|| engine.weights().into());
        results.push(ModeResult {
            mode,
            weights,
            metrics,
            mean_query_ms,
        });
    }

    let mut sweep = Vec::new();
    if args.sweep {
        let base = engine.weights();
        let mut grid = Vec::new();
        for k in [10.0, 30.0, 60.0] {
            for bm25 in [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0] {
                grid.push(FusionWeights {
                    method: FusionMethod::Rrf,
                    bm25,
                    vector: 1.0,
                    k,
                    graph: 0.0,
                    ..base
                });
            }
        }
        for bm25 in [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5] {
            grid.push(FusionWeights {
                method: FusionMethod::Convex,
                bm25,
                vector: 1.0,
                graph: 0.0,
                ..base
            });
        }
        for graph in [0.05, 0.1, 0.3, 1.0] {
            grid.push(FusionWeights { graph, ..base });
        }
        for w in grid {
            engine.set_weights(w);
            let (metrics, mean_query_ms) = ctx.evaluate(&engine, SearchMode::Hybrid).await?;
            sweep.push(ModeResult {
                mode: SearchMode::Hybrid,
                weights: Some(w.into()),
                metrics,
                mean_query_ms,
            });
        }
        engine.set_weights(base);
    }

    let report = Report {
        dataset: args.beir.display().to_string(),
        split: args.split.clone(),
        documents: data.corpus.len(),
        queries: queries.len(),
        chunks: report.manifest.counts.chunks,
        embedder: report.manifest.embedder.as_ref().map(|e| e.id.clone()),
        build_ms,
        results,
        sweep,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} ({} split): {} documents → {} chunks, {} queries, embedder {}, built in {:.1} s",
            report.dataset,
            report.split,
            report.documents,
            report.chunks,
            report.queries,
            report.embedder.as_deref().unwrap_or("none"),
            report.build_ms / 1000.0
        );
        println!(
            "{:<8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "mode", "nDCG@10", "MRR@10", "R@1", "R@10", "R@100", "ms/query"
        );
        for r in report.results.iter().chain(&report.sweep) {
            let label = match &r.weights {
                Some(w) if !report.sweep.is_empty() => {
                    format!(
                        "{} ({:?} bm25={} k={} graph={})",
                        r.mode.as_str(),
                        w.method,
                        w.bm25,
                        w.k,
                        w.graph
                    )
                }
                _ => r.mode.as_str().to_string(),
            };
            let m = &r.metrics;
            println!(
                "{:<8} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9.2}",
                label, m.ndcg_at_10, m.mrr_at_10, m.recall_at_1, m.recall_at_10, m.recall_at_100, r.mean_query_ms
            );
        }
    }
    Ok(())
}

struct EvalContext<'a> {
    queries: &'a [&'a trusty_search::eval::BeirQuery],
    parsed: &'a [(Option<ParsedQuery>, Option<Vec<f32>>)],
    path_to_doc: &'a HashMap<String, String>,
    qrels: &'a HashMap<String, HashMap<String, u32>>,
}

impl EvalContext<'_> {
    /// Runs every query in `mode` and returns the metrics and mean latency.
    async fn evaluate(&self, engine: &Engine, mode: SearchMode) -> Result<(Metrics, f64)> {
        let mut acc = MetricsAccumulator::default();
        let started = Instant::now();
        for (q, (p, v)) in self.queries.iter().zip(self.parsed) {
            let ranked: Vec<String> = match p {
                Some(p) => engine
                    .search_parsed(mode, 100, p, v.as_deref())
                    .await?
                    .hits
                    .iter()
                    .filter_map(|h| self.path_to_doc.get(&h.path).cloned())
                    .collect(),
                None => Vec::new(),
            };
            acc.add(&ranked, &self.qrels[&q.id]);
        }
        let mean_query_ms = started.elapsed().as_secs_f64() * 1000.0 / self.queries.len().max(1) as f64;
        Ok((acc.finish(), mean_query_ms))
    }
}

struct Built {
    manifest: trusty_search::storage::manifest::Manifest,
    dir: PathBuf,
}

/// Document ids become file names: keep them path-safe.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
