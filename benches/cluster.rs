//! Serving benchmarks (a bench binary): shard cold load against a plain
//! download of the same bytes from the same store, hot query latency over
//! HTTP against the in-process engine call, resident memory of a hot index,
//! router overhead against going straight to the shard, and cross-index
//! fan-out latency by number of indexes.
//!
//!     cargo bench --profile dev --bench cluster

#[path = "common.rs"]
mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trusty_search::IndexId;
use trusty_search::api::SearchRequest;
use trusty_search::bundle::chunks::load_chunks;
use trusty_search::bundle::graph::CodeGraph;
use trusty_search::embed::Embedder;
use trusty_search::index::build::{BuildOptions, build_bundle};
use trusty_search::router::config::RouterConfig;
use trusty_search::router::membership::{self, ShardEndpoint};
use trusty_search::search::bm25::Bm25Index;
use trusty_search::search::engine::Engine;
use trusty_search::search::vector::VectorIndex;
use trusty_search::shard::ShardConfig;
use trusty_search::shard::admission::Priority;
use trusty_search::storage::layout::{self, bundle};
use trusty_search::storage::open::{fetch_version, read_current};
use trusty_search::storage::publish::{PublishOptions, publish};
use trusty_search::storage::store::{DEFAULT_STALL, Store};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Time of one POST of `body` to `url`, response read in full; a non-2xx is a bench failure.
async fn timed_post(client: &reqwest::Client, url: &str, body: &impl serde::Serialize) -> Duration {
    let t = Instant::now();
    let r = client.post(url).json(body).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.bytes().await.unwrap();
    t.elapsed()
}

async fn publish_dirs(store: &Store, id: &str, prefixes: &[&str], vectors: bool) -> u64 {
    let work = tempfile::tempdir().unwrap();
    gather(&registry_crates(prefixes), &work.path().join("src"));
    let embedder: Option<Arc<dyn Embedder>> = vectors.then(|| Arc::new(HashEmbedder) as Arc<dyn Embedder>);
    let id = IndexId::new(id).unwrap();
    let report = build_bundle(
        &work.path().join("src"),
        &id,
        &work.path().join("b"),
        BuildOptions {
            embedder,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    publish(store, &id, &report.dir, &PublishOptions::default())
        .await
        .unwrap();
    report.manifest.total_bytes()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", dir.path().join("store").display());
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let store = Store::open(&store_url).unwrap();
    let small = publish_dirs(&store, "small", &["petgraph"], true).await;
    let large = publish_dirs(
        &store,
        "large",
        &["tokio-1.", "tantivy", "datafusion-physical", "arrow-array"],
        true,
    )
    .await;
    println!(
        "store: {store_url} (local disk); small index {:.1} MB, large index {:.1} MB (hash vectors, 384-d)",
        small as f64 / 1e6,
        large as f64 / 1e6
    );

    // Cold load vs plain download, fresh cache each run. Each run also times
    // the two phases of `restore` apart, and removes what it wrote so every
    // run starts from the same disk state.
    for id in ["small", "large"] {
        let iid = IndexId::new(id).unwrap();
        let (mut loads, mut downloads, mut fetches, mut opens) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut parts: [Vec<Duration>; 4] = Default::default();
        for run in 0..5 {
            let cache = dir.path().join(format!("dl-{id}-{run}"));
            std::fs::create_dir_all(&cache).unwrap();
            let t = Instant::now();
            let (pointer, _) = read_current(&store, &iid, None).await.unwrap().unwrap();
            let manifest: trusty_search::storage::manifest::Manifest =
                serde_json::from_slice(&store.get(&layout::manifest_key(&iid, &pointer.version)).await.unwrap())
                    .unwrap();
            futures::future::join_all(manifest.files.iter().enumerate().map(|(i, f)| {
                let key = layout::file_key(&iid, &pointer.version, &f.path);
                let dest = cache.join(i.to_string());
                let store = store.clone();
                async move {
                    store
                        .download(&key, &dest, Some(f.size), DEFAULT_STALL, |_| async {})
                        .await
                        .unwrap()
                }
            }))
            .await;
            downloads.push(t.elapsed());
            std::fs::remove_dir_all(&cache).unwrap();

            let cache = dir.path().join(format!("cache-{id}-{run}"));
            let cfg = ShardConfig::local(&store_url, cache.clone(), "bench");
            let parallelism = cfg.download_parallelism;
            let resolver = trusty_search::shard::Resolver::new(
                cfg,
                Store::open(&store_url).unwrap(),
                Some(Arc::new(HashEmbedder)),
            );
            let before = rss_bytes();
            let t = Instant::now();
            let slot = resolver.slot(&iid).await.unwrap();
            let (loaded, reservation) = resolver.restore(&slot, Priority::Demand).await.unwrap();
            loads.push(t.elapsed());
            let after = rss_bytes();
            if run == 0 {
                println!(
                    "{id}: resident memory grew {:.1} MB for {:.1} MB on disk ({:.2}×; engine estimate {:.1} MB)",
                    after.saturating_sub(before) as f64 / 1e6,
                    loaded.disk_bytes as f64 / 1e6,
                    after.saturating_sub(before) as f64 / loaded.disk_bytes as f64,
                    loaded.memory_bytes as f64 / 1e6
                );
            }
            drop((loaded, reservation, slot, resolver));
            std::fs::remove_dir_all(&cache).unwrap();

            let cache = dir.path().join(format!("phases-{id}-{run}"));
            let t = Instant::now();
            let (pointer, _) = read_current(&store, &iid, None).await.unwrap().unwrap();
            let local = fetch_version(&store, &iid, &cache, &pointer, parallelism)
                .await
                .unwrap();
            fetches.push(t.elapsed());
            let t = Instant::now();
            let engine = Engine::open(&local.dir, local.manifest, Some(Arc::new(HashEmbedder)))
                .await
                .unwrap();
            opens.push(t.elapsed());
            drop(engine);
            // Each part of `Engine::open` alone (it runs them concurrently).
            let d = &local.dir;
            let t = Instant::now();
            drop(load_chunks(&d.join(bundle::CHUNKS_FILE)).unwrap());
            parts[0].push(t.elapsed());
            let t = Instant::now();
            drop(Bm25Index::open(&d.join(bundle::BM25_DIR)).unwrap());
            parts[1].push(t.elapsed());
            let t = Instant::now();
            drop(CodeGraph::read(&d.join(bundle::GRAPH_FILE)).unwrap());
            parts[2].push(t.elapsed());
            let t = Instant::now();
            drop(VectorIndex::open(&d.join(bundle::VECTORS_DIR)).await.unwrap());
            parts[3].push(t.elapsed());
            std::fs::remove_dir_all(&cache).unwrap();
        }
        let (l, d) = (stats(&mut loads), stats(&mut downloads));
        println!(
            "{id}: cold load (download + verify + open) p50 {:.0} ms vs plain download p50 {:.0} ms → {:.2}×",
            l.p50,
            d.p50,
            l.p50 / d.p50
        );
        let (f, o) = (stats(&mut fetches), stats(&mut opens));
        println!("{id}: phases p50: fetch + verify {:.0} ms, open {:.0} ms", f.p50, o.p50);
        let p: Vec<f64> = parts.iter_mut().map(|v| stats(v).p50).collect();
        println!(
            "{id}: open parts alone p50: chunks {:.0} ms, bm25 {:.0} ms, graph {:.0} ms, vectors {:.0} ms",
            p[0], p[1], p[2], p[3]
        );
    }

    // Hot query latency: HTTP to a shard vs the in-process engine call.
    let cfg = ShardConfig::local(&store_url, dir.path().join("cache-http"), "shard-0");
    let shard = trusty_search::shard::server::start(cfg, Some(Arc::new(HashEmbedder)))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let iid = IndexId::new("large").unwrap();
    let loaded = shard.resolver.get_or_load_index(&iid).await.unwrap();
    let rounds = 10;
    let (mut direct, mut http) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for q in QUERIES {
            let req = SearchRequest::new(*q);
            let t = Instant::now();
            loaded.engine().search(&req).await.unwrap();
            direct.push(t.elapsed());
            http.push(timed_post(&client, &format!("{}/v1/indexes/large/search", shard.url()), &req).await);
        }
    }
    let (d, h) = (stats(&mut direct), stats(&mut http));
    println!(
        "hot hybrid query, large index: in-process p50 {:.2} p99 {:.2} ms; HTTP to shard p50 {:.2} p99 {:.2} ms (service overhead p50 {:.2} ms)",
        d.p50,
        d.p99,
        h.p50,
        h.p99,
        h.p50 - d.p50
    );

    // Router overhead: same index, same run.
    let members = vec![ShardEndpoint {
        name: "shard-0".into(),
        url: shard.url(),
    }];
    let (tx, rx) = membership::fixed(members);
    let mut rcfg = RouterConfig::local("");
    rcfg.shards = None;
    rcfg.replicas = 1;
    let router = trusty_search::router::server::start_with_members(rcfg, tx, rx, Vec::new())
        .await
        .unwrap();
    let (mut via_router, mut via_shard) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for q in QUERIES {
            let body = json!({"query": q, "mode": "bm25"});
            via_shard.push(timed_post(&client, &format!("{}/v1/indexes/large/search", shard.url()), &body).await);
            via_router.push(timed_post(&client, &format!("{}/v1/indexes/large/search", router.url()), &body).await);
        }
    }
    let (s, r) = (stats(&mut via_shard), stats(&mut via_router));
    println!(
        "bm25 query, large index: direct to shard p50 {:.2} p99 {:.2} ms; through router p50 {:.2} p99 {:.2} ms (router adds p50 {:.2} ms)",
        s.p50,
        s.p99,
        r.p50,
        r.p99,
        r.p50 - s.p50
    );

    // Throughput with a real load generator (wrk), when it is installed.
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '{\"query\": \"spawn a blocking task\", \"mode\": \"bm25\"}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )
    .unwrap();
    for (label, base) in [("shard", shard.url()), ("router", router.url())] {
        let out = tokio::process::Command::new("wrk")
            .args([
                "-t2",
                "-c16",
                "-d10s",
                "-s",
                script.to_str().unwrap(),
                &format!("{base}/v1/indexes/large/search"),
            ])
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let rps = text
                    .lines()
                    .find(|l| l.starts_with("Requests/sec"))
                    .unwrap_or("Requests/sec: ?")
                    .to_string();
                let lat = text
                    .lines()
                    .find(|l| l.trim_start().starts_with("Latency"))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let non2xx = text
                    .lines()
                    .find(|l| l.contains("Non-2xx"))
                    .unwrap_or("Non-2xx responses: 0")
                    .trim()
                    .to_string();
                println!("wrk -t2 -c16 -d10s, bm25 query on the large index via {label}: {rps}; {lat}; {non2xx}");
            }
            _ => println!("wrk not installed (apt-get install wrk): throughput skipped"),
        }
    }

    // Fan-out latency by number of indexes (copies of the small index).
    let src = tempfile::tempdir().unwrap();
    gather(&registry_crates(&["petgraph"]), &src.path().join("src"));
    let work = tempfile::tempdir().unwrap();
    let report = build_bundle(
        &src.path().join("src"),
        &IndexId::new("fan").unwrap(),
        &work.path().join("b"),
        BuildOptions::default(),
    )
    .await
    .unwrap();
    for n in [1usize, 10, 50] {
        let ids: Vec<String> = (0..n).map(|i| format!("fan-{i:02}")).collect();
        for id in &ids {
            let copy = tempfile::tempdir().unwrap();
            let mut manifest = report.manifest.clone();
            manifest.index_id = id.clone();
            gather(std::slice::from_ref(&report.dir), copy.path());
            let bdir = copy.path().join(report.dir.file_name().unwrap());
            let m = trusty_search::storage::publish::seal_bundle(&bdir, manifest).unwrap();
            let _ = m;
            publish(
                &store,
                &IndexId::new(id.clone()).unwrap(),
                &bdir,
                &PublishOptions::default(),
            )
            .await
            .unwrap();
        }
        let body = json!({"query": "graph neighbors iterator", "indexes": ids, "deadline_ms": 30000});
        let url = format!("{}/v1/search", router.url());
        // Warm: every index hot (a fan-out skips cold indexes rather than loading them).
        for id in &ids {
            let one = json!({"query": "graph neighbors iterator"});
            timed_post(&client, &format!("{}/v1/indexes/{id}/search", router.url()), &one).await;
        }
        let mut samples = Vec::new();
        for _ in 0..20 {
            samples.push(timed_post(&client, &url, &body).await);
        }
        let f = stats(&mut samples);
        println!(
            "fan-out over {n:>2} hot indexes through the router: p50 {:.1} ms p99 {:.1} ms",
            f.p50, f.p99
        );
    }
    router.stop().await;
    shard.stop().await;
    let _ = Duration::ZERO;
}
