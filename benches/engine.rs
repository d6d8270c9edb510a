//! Engine benchmarks (a bench binary, not a test): build throughput on real
//! code no one here wrote (tokio from the cargo registry), query latency per
//! mode on a ≥100k-chunk corpus next to a raw tantivy query on the same index,
//! index size per MB of source, and MiniLM embedding throughput on both
//! backends (candle and ONNX Runtime).
//!
//!     cargo bench --profile dev --bench engine            # results on stdout
//!
//! Conditions are printed with the results; docs/BENCHMARKS.md records them.

#[path = "common.rs"]
mod common;
#[path = "issue_queries.rs"]
mod issue_queries;
#[path = "peer_tantivy.rs"]
mod peer_tantivy;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trusty_search::IndexId;
use trusty_search::api::{GroupBy, SearchMode, SearchRequest};
use trusty_search::embed::{Embedder, MiniLm, MiniLmBackend, default_minilm_dir, embedding_text};
use trusty_search::index::build::{BuildOptions, build_bundle};
use trusty_search::search::engine::Engine;
use trusty_search::search::files::FileRankParams;
use trusty_search::search::query::ParsedQuery;
use trusty_search::storage::layout::bundle;

#[tokio::main]
async fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    println!(
        "machine: {} cores, profile: {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        if cfg!(debug_assertions) {
            "dev (opt-level 2, debug assertions on)"
        } else {
            "release"
        }
    );
    if only.is_empty() || only == "build" {
        build_throughput().await;
    }
    if only.is_empty() || only == "embed" {
        embed_throughput();
    }
    if only.is_empty() || only == "query" {
        query_latency().await;
    }
}

async fn build_throughput() {
    let tokio_src = registry_crates(&["tokio-1."])
        .pop()
        .expect("tokio sources in the cargo registry");
    let id = IndexId::new("bench").unwrap();
    let mut runs = Vec::new();
    for run in 0..3 {
        let work = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let report = build_bundle(&tokio_src, &id, &work.path().join("b"), BuildOptions::default())
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let m = &report.manifest;
        let mb = m.counts.source_bytes as f64 / 1e6;
        println!(
            "build lexical+graph [{}] run {run}: {} files, {:.2} MB, {} chunks in {:.2} s → {:.2} MB/s, {:.0} chunks/s; stages {:?}; index {:.2} MB on disk ({:.2}× source)",
            tokio_src.file_name().unwrap().to_string_lossy(),
            m.counts.files,
            mb,
            m.counts.chunks,
            secs,
            mb / secs,
            m.counts.chunks as f64 / secs,
            report.timings,
            m.total_bytes() as f64 / 1e6,
            m.total_bytes() as f64 / m.counts.source_bytes.max(1) as f64,
        );
        runs.push(mb / secs);
    }
    runs.sort_by(f64::total_cmp);
    println!("build lexical+graph median: {:.2} MB/s", runs[runs.len() / 2]);
    // Lower bound in the same run: just reading the same files.
    let t = Instant::now();
    let mut bytes = 0usize;
    for e in ignore::WalkBuilder::new(&tokio_src).build().flatten() {
        if e.file_type().is_some_and(|t| t.is_file()) {
            bytes += std::fs::read(e.path()).map(|b| b.len()).unwrap_or(0);
        }
    }
    println!(
        "lower bound: walking + reading the same tree: {:.1} MB/s ({:.1} MB)",
        bytes as f64 / 1e6 / t.elapsed().as_secs_f64(),
        bytes as f64 / 1e6
    );
}

/// Both MiniLM backends on the same chunks of real code, in one run: candle is
/// the peer ONNX Runtime is measured against. Texts and vectors are the same, so
/// only the encoder's speed differs.
fn embed_throughput() {
    let Some(dir) = default_minilm_dir() else {
        println!("embed: MiniLM weights not found (scripts/fetch-minilm.sh); skipped");
        return;
    };
    let tantivy = registry_crates(&["tantivy-0.27"]).pop().unwrap();
    let rt = tokio::runtime::Handle::current();
    let chunks = std::thread::spawn(move || {
        let work = tempfile::tempdir().unwrap();
        let id = IndexId::new("bench").unwrap();
        let report = rt
            .block_on(build_bundle(
                &tantivy,
                &id,
                &work.path().join("b"),
                BuildOptions::default(),
            ))
            .unwrap();
        trusty_search::bundle::chunks::load_chunks(&report.dir.join("chunks.jsonl")).unwrap()
    })
    .join()
    .unwrap();
    let sample: Vec<String> = chunks.iter().take(256).map(embedding_text).collect();
    for backend in [MiniLmBackend::Candle, MiniLmBackend::Onnx] {
        let minilm = match MiniLm::load_backend(&dir, backend) {
            Ok(m) => m,
            Err(e) => {
                println!("embed MiniLM {backend:?}: not available ({e}); skipped");
                continue;
            }
        };
        let refs: Vec<&str> = sample.iter().map(String::as_str).collect();
        // Warm-up: the first call pays for allocation and kernel selection.
        minilm.embed(&refs[..minilm.max_batch().min(refs.len())]).unwrap();
        let t = Instant::now();
        for batch in refs.chunks(minilm.max_batch()) {
            minilm.embed(batch).unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "embed MiniLM {backend:?}: {} tantivy chunks in {:.1} s → {:.1} chunks/s",
            sample.len(),
            secs,
            sample.len() as f64 / secs
        );
        let mut q = Vec::new();
        for query in QUERIES.iter().cycle().take(200) {
            let t = Instant::now();
            minilm.embed(&[query]).unwrap();
            q.push(t.elapsed());
        }
        let s = stats(&mut q);
        println!(
            "embed MiniLM {backend:?} single query: p50 {:.2} ms, p99 {:.2} ms",
            s.p50, s.p99
        );
    }
}

async fn query_latency() {
    let crates = registry_crates(&[
        "tokio-1.",
        "tantivy",
        "datafusion",
        "arrow",
        "lance",
        "kube",
        "hyper",
        "tower",
        "axum",
        "reqwest",
        "object_store",
        "serde",
        "tracing",
        "candle",
        "rmcp",
        "prost",
        "regex",
        "h2",
        "rustls",
        "petgraph",
    ]);
    let work = tempfile::tempdir().unwrap();
    gather(&crates, &work.path().join("src"));
    let id = IndexId::new("bench-large").unwrap();
    let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder);
    let t = Instant::now();
    let report = build_bundle(
        &work.path().join("src"),
        &id,
        &work.path().join("bundle"),
        BuildOptions {
            embedder: Some(embedder.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let m = &report.manifest;
    println!(
        "query corpus: {} crates, {} files, {:.1} MB source, {} chunks (built in {:.1} s with hash vectors; index {:.1} MB, {:.2}× source)",
        crates.len(),
        m.counts.files,
        m.counts.source_bytes as f64 / 1e6,
        m.counts.chunks,
        t.elapsed().as_secs_f64(),
        m.total_bytes() as f64 / 1e6,
        m.total_bytes() as f64 / m.counts.source_bytes.max(1) as f64
    );
    let mut engine = Engine::open(&report.dir, report.manifest.clone(), Some(embedder.clone()))
        .await
        .unwrap();
    let rounds = 5;
    let parsed: Vec<ParsedQuery> = QUERIES.iter().map(|q| ParsedQuery::parse(q, None).unwrap()).collect();
    let vecs: Vec<Vec<f32>> = QUERIES
        .iter()
        .map(|q| embedder.embed(&[q]).unwrap().remove(0))
        .collect();
    // Warm caches once.
    for (p, v) in parsed.iter().zip(&vecs) {
        engine.search_parsed(SearchMode::Hybrid, 10, p, Some(v)).await.unwrap();
    }
    let peer = peer_tantivy::StockTantivy::open(&report.dir.join(bundle::BM25_DIR));
    let mut raw = Vec::new();
    let mut raw_all = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..rounds {
        for q in QUERIES {
            let t = Instant::now();
            std::hint::black_box(peer.content_only(q, 10));
            raw.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(peer.same_fields(q, 10));
            raw_all.push(t.elapsed());
            let t = Instant::now();
            engine.bm25().search(q, 10, &[], None).unwrap();
            ours.push(t.elapsed());
        }
    }
    let (r, ra, o) = (stats(&mut raw), stats(&mut raw_all), stats(&mut ours));
    println!(
        "raw tantivy, lower bound (QueryParser over content only, TopDocs 10): p50 {:.2} ms p99 {:.2} ms",
        r.p50, r.p99
    );
    println!(
        "raw tantivy, same work (QueryParser over symbol+path+content with our boosts, TopDocs 10): p50 {:.2} ms p99 {:.2} ms",
        ra.p50, ra.p99
    );
    println!(
        "our bm25 arm (code tokenizer, 3 boosted fields, top 10): p50 {:.2} ms p99 {:.2} ms ({:.2}× same-work raw, {:.2}× content-only raw at p50)",
        o.p50,
        o.p99,
        o.p50 / ra.p50,
        o.p50 / r.p50
    );
    for mode in [
        SearchMode::Bm25,
        SearchMode::Vector,
        SearchMode::Graph,
        SearchMode::Hybrid,
    ] {
        let mut samples: Vec<Duration> = Vec::new();
        for _ in 0..rounds {
            for (p, v) in parsed.iter().zip(&vecs) {
                let t = Instant::now();
                engine.search_parsed(mode, 10, p, Some(v)).await.unwrap();
                samples.push(t.elapsed());
            }
        }
        let s = stats(&mut samples);
        println!(
            "engine {:<6} top 10 (arm depth 100, excl. query embedding): p50 {:.2} ms p99 {:.2} ms mean {:.2} ms (n={})",
            mode.as_str(),
            s.p50,
            s.p99,
            s.mean,
            s.n
        );
    }
    issue_latency(&engine, &peer).await;
    // The same issues with file ranking reading the vector arm twice as deep:
    // what the depth costs, beside the default in the same run.
    let deeper = FileRankParams {
        vector_hits: FileRankParams::default().vector_hits * 2,
        ..FileRankParams::default()
    };
    println!(
        "issue-length queries again, file ranking's vector depth {}:",
        deeper.vector_hits
    );
    engine.set_file_params(deeper);
    issue_latency(&engine, &peer).await;
}

/// Pasted issues through `Engine::search`, as a shard runs them: reading the
/// issue, both arms, the file arm of chunk search, file ranking. The query is
/// embedded inside by the hash embedder, which takes microseconds (MiniLM's
/// time is not counted). The peer is stock tantivy given every word of it.
async fn issue_latency(engine: &Engine, peer: &peer_tantivy::StockTantivy) {
    let rounds = 10;
    let sizes: Vec<usize> = issue_queries::ISSUES.iter().map(|t| t.len()).collect();
    println!(
        "issue-length queries: {} texts of {}-{} bytes, {} rounds, top 10",
        sizes.len(),
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap(),
        rounds
    );
    // Each issue as the flat OR of its words, one analyzer token each: given
    // the raw text, the query parser makes phrase queries of every
    // multi-token identifier, and tantivy 0.27's phrase scorer trips a debug
    // assertion on them (the engine builds no phrase queries).
    let words: Vec<String> = issue_queries::ISSUES
        .iter()
        .map(|t| issue_queries::flat_words(t))
        .collect();
    let mut stock = Vec::new();
    for _ in 0..rounds {
        for text in &words {
            let t = Instant::now();
            std::hint::black_box(peer.same_fields(text, 10));
            stock.push(t.elapsed());
        }
    }
    let s = stats(&mut stock);
    println!(
        "  stock tantivy, every word of the issue (lenient QueryParser, symbol+path+content, TopDocs 10): p50 {:.2} ms p99 {:.2} ms",
        s.p50, s.p99
    );
    let cases = [
        ("chunks bm25", SearchMode::Bm25, None),
        ("chunks hybrid", SearchMode::Hybrid, None),
        ("files bm25", SearchMode::Bm25, Some(GroupBy::File)),
        ("files hybrid", SearchMode::Hybrid, Some(GroupBy::File)),
    ];
    let request = |text: &str, mode, group_by| SearchRequest {
        query: text.to_string(),
        mode,
        top_k: Some(10),
        filters: None,
        group_by,
    };
    for (label, mode, group_by) in cases {
        let mut samples = Vec::new();
        for _ in 0..rounds {
            for text in issue_queries::ISSUES {
                let req = request(text, mode, group_by);
                let t = Instant::now();
                std::hint::black_box(engine.search(&req).await.unwrap());
                samples.push(t.elapsed());
            }
        }
        let s = stats(&mut samples);
        println!(
            "  engine {label:<13}: p50 {:.2} ms p99 {:.2} ms mean {:.2} ms (n={})",
            s.p50, s.p99, s.mean, s.n
        );
    }
    for (label, text) in [
        ("64 KiB of random identifiers", issue_queries::random_identifiers()),
        ("500-frame backtrace", issue_queries::deep_backtrace()),
    ] {
        for (case, mode, group_by) in cases {
            let mut samples = Vec::new();
            for _ in 0..rounds {
                let req = request(&text, mode, group_by);
                let t = Instant::now();
                let resp = std::hint::black_box(engine.search(&req).await.unwrap());
                samples.push(t.elapsed());
                assert!(!resp.hits.is_empty() || !resp.files.is_empty(), "{label}: an answer");
            }
            let s = stats(&mut samples);
            println!(
                "  {label} ({} bytes), {case:<13}: p50 {:.2} ms max {:.2} ms",
                text.len(),
                s.p50,
                samples.iter().max().unwrap().as_secs_f64() * 1000.0
            );
        }
    }
}
