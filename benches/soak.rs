//! Soak under a mixed workload with faults (a bench binary, not a test):
//! three shard processes and an S3-compatible server (s3s-fs) on 127.0.0.1,
//! more indexes than fit (crates from the local cargo registry, their total
//! resident size about three times one shard's memory budget), an
//! OpenAI-compatible embeddings stub, and for `SOAK_SECS` (default 300):
//!
//! - Zipf-distributed single-index hybrid searches from 8 clients,
//! - a fan-out over 5 random indexes with a 200 ms deadline every 500 ms,
//! - a fan-out over all indexes every 5 s,
//! - every 30 s an admin reload of a random index, every other time after
//!   publishing a new version of it (rebuilt from its crate),
//! - operator-style re-registration (with preload) of every index every 10 s,
//! - one shard killed with SIGKILL at 30% of the run and restarted 10 s later,
//! - the embedder hanging from 50% to 60% of the run,
//! - a fourth shard joining at 70%.
//!
//! With `SOAK_FIT=1` the budgets hold every index instead (the working set
//! fits), to see that restores then follow only those events (the kill, the
//! join and the new versions).
//!
//! The router runs in this process (`router::server::start_with_members`, the
//! code the router binary runs), fed the shard list directly so a shard can
//! join. Prints per-route latency and failures, shard RSS and cache bytes
//! against the budgets, restores per minute and the most running at once,
//! when the router stopped sending to each shard, searches around the join,
//! and the slowest `/healthz`, as a prober on a thread of its own and as this
//! (loaded) process's runtime see it.
//!
//!     cargo bench --profile dev --bench soak

#[path = "common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::cluster::{port_of, shard_name};
use support::embedder::{self as stub, EmbedStub, Mode};
use support::process::{ADMIN_TOKEN, Proc, shard_args, spawn};
use support::rng::Xorshift;
use support::s3::S3Server;
use support::shard::shard_env;
use trusty_search::IndexId;
use trusty_search::embed::{EmbedderConfig, load_embedder};
use trusty_search::index::build::{BuildOptions, build_bundle};
use trusty_search::router::config::RouterConfig;
use trusty_search::router::membership::{self, ShardEndpoint};
use trusty_search::search::engine::{Engine, estimate_memory};
use trusty_search::shard::disk::dir_bytes;
use trusty_search::storage::publish::{PublishOptions, publish};
use trusty_search::storage::store::Store;

const CLIENTS: usize = 8;
/// How long after a shard joins its hand-off is looked at, and the equal
/// window before it it is compared with.
const HANDOFF_WINDOW: Duration = Duration::from_secs(30);

/// How long a shard took to answer `/healthz`, or `None` when it did not
/// answer 200 within the client's timeout.
/// One shard's `/healthz` answers as the bench's own prober saw them.
#[derive(Debug, Clone, Copy, Default)]
struct ProbeStats {
    answers: u64,
    /// Answers that took 100 ms or more: one outlier and a pattern differ.
    slow: u64,
    max_ms: f64,
    max_at: Duration,
    failed: u64,
}

impl ProbeStats {
    fn answered(&mut self, ms: f64, at: Duration) {
        self.answers += 1;
        if ms >= 100.0 {
            self.slow += 1;
        }
        if ms > self.max_ms {
            self.max_ms = ms;
            self.max_at = at;
        }
    }
}

async fn healthz_ms(client: &reqwest::Client, url: &str) -> Option<f64> {
    let t = Instant::now();
    let response = client.get(format!("{url}/healthz")).send().await.ok()?;
    response
        .status()
        .is_success()
        .then(|| t.elapsed().as_secs_f64() * 1000.0)
}
const ZIPF_S: f64 = 1.1;

/// Indexes the answered fan-outs of one route searched, skipped (by reason)
/// and failed.
#[derive(Debug, Default)]
struct Coverage {
    searched: usize,
    skipped: BTreeMap<String, usize>,
    failed: usize,
}

/// Tallies a fan-out answer; true when it is an answer with no failed index.
fn covered(coverage: &parking_lot::Mutex<BTreeMap<&'static str, Coverage>>, route: &'static str, b: &Value) -> bool {
    let Some(searched) = b["searched"].as_array() else {
        return false;
    };
    let failed = b["failed"].as_array().map_or(0, Vec::len);
    let mut all = coverage.lock();
    let c = all.entry(route).or_default();
    c.searched += searched.len();
    c.failed += failed;
    for s in b["skipped"].as_array().into_iter().flatten() {
        let why = s["error"].as_str().unwrap_or("unknown").to_string();
        *c.skipped.entry(why).or_default() += 1;
    }
    failed == 0
}

/// One finished request.
#[derive(Debug, Clone)]
struct Sample {
    route: &'static str,
    at: Duration,
    ms: f64,
    /// `None` for a 2xx; else the status and error code.
    error: Option<String>,
}

type Log = Arc<parking_lot::Mutex<Vec<Sample>>>;

/// Inverse-CDF sampling of ranks 0..n with P(k) ∝ 1/(k+1)^s.
struct Zipf(Vec<f64>);
impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let w: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        Zipf(
            w.iter()
                .map(|x| {
                    acc += x / total;
                    acc
                })
                .collect(),
        )
    }
    fn sample(&self, rng: &mut Xorshift) -> usize {
        // Uniform in [0, 1) from the top 53 bits.
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}

async fn timed(
    log: &Log,
    started: Instant,
    route: &'static str,
    req: reqwest::RequestBuilder,
    ok_if: impl Fn(&Value) -> bool,
) {
    let t = Instant::now();
    let at = started.elapsed();
    let error = match req.send().await {
        Ok(r) => {
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if status.is_success() && ok_if(&body) {
                None
            } else {
                Some(format!("{} {}", status.as_u16(), body["error"].as_str().unwrap_or("")))
            }
        }
        Err(e) => Some(format!("transport: {e}")),
    };
    log.lock().push(Sample {
        route,
        at,
        ms: t.elapsed().as_secs_f64() * 1000.0,
        error,
    });
}

/// Resident bytes of a process: all, heap and other anonymous pages, and
/// file-backed pages, of which the program's own (its code, paged in as code
/// paths first run: large for a dev-profile binary, and no index's doing).
#[derive(Debug, Clone, Copy, Default)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
    program: u64,
}

/// Resident bytes of the pages mapped from the process's own executable.
fn program_rss(pid: u32) -> u64 {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return 0;
    };
    let exe = exe.to_string_lossy().into_owned();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut in_program = false;
    let mut kb = 0u64;
    for line in smaps.lines() {
        if let Some(value) = line.strip_prefix("Rss:") {
            if in_program {
                kb += value.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0);
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            // A mapping's header: "start-end perms offset dev inode [path]".
            in_program = line.split_whitespace().nth(5) == Some(exe.as_str());
        }
    }
    kb * 1024
}

fn rss_of(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
        program: program_rss(pid),
    }
}

/// What the sampler keeps per shard: peaks, and the last RSS read.
#[derive(Debug, Default)]
struct ShardPeaks {
    rss: Rss,
    /// Bytes under the shard's cache directory.
    cache: u64,
    healthz_ms: f64,
    /// Probes from the loaded runtime that got no answer (a killed shard's included).
    healthz_failed: u64,
    last: Rss,
    /// Live heap objects by the allocator's count (`trusty_heap_bytes`).
    heap_allocated: u64,
    /// Peak file-backed pages other than the program's (mapped index files).
    other_file: u64,
    /// Peak RSS less the program's pages, in one sample.
    held: u64,
    /// Of which freed objects parked in per-thread caches.
    heap_thread_caches: u64,
    /// What the engines charge against the memory budget.
    counted: u64,
    /// Restores admitted and running at once, against the admission limit.
    restores_running: u64,
    /// Restores waiting for an admission slot.
    restores_waiting: u64,
}

/// One sample from a process's `/metrics`; 0 when it cannot be read (a shard
/// that was just killed must not stop the sampler).
async fn metric(url: &str, series: &str) -> f64 {
    support::http::sample(&metrics_text(url).await, series)
}

/// A process's whole `/metrics` text; empty when it cannot be read.
async fn metrics_text(url: &str) -> String {
    static CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client")
    });
    let Ok(resp) = CLIENT.get(format!("{url}/metrics")).send().await else {
        return String::new();
    };
    resp.text().await.unwrap_or_default()
}

/// What opening each index costs on the heap, against what the shard charges
/// to its memory budget: the estimate before the download and the engine's own
/// count after the open. The BM25 files are memory-mapped (page cache, not
/// heap), so they are reported apart.
#[derive(Default)]
struct Accounting {
    heap: u64,
    counted: u64,
    estimated: u64,
    mapped: u64,
    worst_heap: f64,
    worst_estimate: f64,
    /// The largest index by the engine's count, BM25 files included: the
    /// "one index" a shard may exceed its budget by.
    largest: u64,
}

impl Accounting {
    async fn add(&mut self, dir: &std::path::Path, manifest: &trusty_search::storage::manifest::Manifest) {
        let before = heap_in_use();
        let engine = Engine::open(dir, manifest.clone(), None).await.unwrap();
        let heap = heap_in_use().saturating_sub(before);
        let mapped = manifest.bytes_under(trusty_search::storage::layout::bundle::BM25_DIR);
        let counted = engine.memory_bytes() - mapped;
        let estimated = estimate_memory(manifest) - mapped;
        drop(engine);
        self.heap += heap;
        self.counted += counted;
        self.estimated += estimated;
        self.mapped += mapped;
        self.worst_heap = self.worst_heap.max(heap as f64 / counted.max(1) as f64);
        self.worst_estimate = self.worst_estimate.max(counted as f64 / estimated.max(1) as f64);
        self.largest = self.largest.max(counted + mapped);
    }

    fn print(&self) {
        println!(
            "heap taken by opening each index once (sum): {:.1} MB measured, {:.1} MB counted by the engine, \
             {:.1} MB estimated before download (worst index: measured {:.2}x counted, \
             counted {:.2}x estimated); plus {:.1} MB of memory-mapped BM25 files; the largest index counts {:.1} MB",
            self.heap as f64 / 1e6,
            self.counted as f64 / 1e6,
            self.estimated as f64 / 1e6,
            self.worst_heap,
            self.worst_estimate,
            self.mapped as f64 / 1e6,
            self.largest as f64 / 1e6,
        );
    }
}

/// Bytes glibc has handed out and not had back, over every arena.
#[allow(unsafe_code)]
fn heap_in_use() -> u64 {
    #[repr(C)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> MallInfo2;
    }
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
    let info = unsafe { mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

/// Crates with enough code to be a real index, spread over the alphabet.
fn pick_crates(n: usize) -> Vec<PathBuf> {
    let all = registry_crates(&[""]);
    let sized: Vec<(PathBuf, u64)> = all
        .into_iter()
        .map(|p| {
            let b = dir_bytes(&p.join("src"));
            (p, b)
        })
        .filter(|(_, b)| (150_000..2_000_000).contains(b))
        .collect();
    let step = (sized.len() / n).max(1);
    sized.into_iter().step_by(step).take(n).map(|(p, _)| p).collect()
}

/// Builds `krate` again and publishes it as a new version of `id`.
/// Owned arguments: the build's future is spawned.
async fn publish_version(
    krate: PathBuf,
    id: String,
    embedder: Option<Arc<dyn trusty_search::embed::Embedder>>,
    store: Store,
) -> Result<String, String> {
    let iid = IndexId::new(id.as_str()).map_err(|e| e.to_string())?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let opts = BuildOptions {
        embedder,
        ..BuildOptions::default()
    };
    let report = build_bundle(&krate, &iid, &work.path().join("b"), opts)
        .await
        .map_err(|e| e.to_string())?;
    publish(&store, &iid, &report.dir, &PublishOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(report.manifest.version)
}

struct Shards {
    store_url: String,
    root: PathBuf,
    /// 0 until a shard first binds; a restart comes back on the same port.
    ports: Vec<u16>,
    procs: Vec<Option<Proc>>,
    flags: Vec<String>,
    /// RSS of each shard process right after it became healthy, before it
    /// held any index (the lowest over its starts): the runtime's share.
    baseline_rss: Vec<u64>,
    /// The anonymous part of it, likewise.
    baseline_anon: Vec<u64>,
}

impl Shards {
    async fn start(&mut self, i: usize) {
        let listen = format!("127.0.0.1:{}", self.ports[i]);
        let mut flags: Vec<&str> = vec!["--listen", &listen];
        flags.extend(self.flags.iter().map(String::as_str));
        let cache = self.root.join(format!("cache-{i}"));
        let args = shard_args(&self.store_url, &cache, &shard_name(i), &flags);
        let proc = spawn(&shard_name(i), &args, &shard_env()).await;
        self.ports[i] = port_of(&proc);
        let rss = rss_of(proc.child.id());
        self.baseline_rss[i] = match self.baseline_rss[i] {
            0 => rss.total,
            b => b.min(rss.total),
        };
        self.baseline_anon[i] = match self.baseline_anon[i] {
            0 => rss.anon,
            b => b.min(rss.anon),
        };
        self.procs[i] = Some(proc);
    }
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }
    fn running(&self, i: usize) -> (u32, String) {
        (self.procs[i].as_ref().map_or(0, |p| p.child.id()), self.url(i))
    }
    fn endpoint(&self, i: usize) -> ShardEndpoint {
        ShardEndpoint {
            name: shard_name(i),
            url: self.url(i),
        }
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The in-process router's logs, e.g. RUST_LOG=trusty_search::router::forward=debug
    // to see why a request was answered with a shard's error.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let n_indexes: usize = std::env::var("SOAK_INDEXES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(44);
    let dir = tempfile::tempdir().unwrap();
    support::s3::set_process_env();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let store_url = s3.url("soak");
    let store = Store::open(&store_url).unwrap();
    let embed = EmbedStub::start().await;

    // Indexes: one crate each, with vectors from the stub.
    let crates = pick_crates(n_indexes);
    let embedder = load_embedder(&EmbedderConfig::Http {
        url: embed.url.clone(),
        model: stub::MODEL.into(),
        api_key: None,
        dimension: Some(stub::DIMENSION),
    })
    .unwrap();
    let t = Instant::now();
    let mut ids = Vec::new();
    let (mut total_memory, mut total_disk, mut largest_disk) = (0u64, 0u64, 0u64);
    let mut accounting = Accounting::default();
    for (i, krate) in crates.iter().enumerate() {
        let name = krate.file_name().unwrap().to_string_lossy().to_lowercase();
        let id = format!(
            "c{i:02}-{}",
            name.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(20)
                .collect::<String>()
        );
        let iid = IndexId::new(id.as_str()).unwrap();
        let work = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            embedder: embedder.clone(),
            ..BuildOptions::default()
        };
        let report = build_bundle(krate, &iid, &work.path().join("b"), opts).await.unwrap();
        total_memory += estimate_memory(&report.manifest);
        total_disk += report.manifest.total_bytes();
        largest_disk = largest_disk.max(report.manifest.total_bytes());
        accounting.add(&report.dir, &report.manifest).await;
        publish(&store, &iid, &report.dir, &PublishOptions::default())
            .await
            .unwrap();
        ids.push(id);
    }
    accounting.print();
    // Budgets: a third of the memory and half the disk the indexes need, or
    // with `SOAK_FIT=1` all of it and a quarter more (see the module doc).
    let fit = std::env::var("SOAK_FIT").is_ok_and(|v| v == "1");
    let (memory_budget, disk_budget) = if fit {
        (total_memory + total_memory / 4, total_disk + total_disk / 4)
    } else {
        (total_memory / 3, total_disk / 2)
    };
    println!(
        "{} indexes from registry crates built in {:.0} s: {:.1} MB resident (estimated), {:.1} MB on disk \
         (the largest {:.1} MB); per-shard budgets: memory {:.1} MB, disk {:.1} MB; replicas 2",
        ids.len(),
        t.elapsed().as_secs_f64(),
        total_memory as f64 / 1e6,
        total_disk as f64 / 1e6,
        largest_disk as f64 / 1e6,
        memory_budget as f64 / 1e6,
        disk_budget as f64 / 1e6
    );

    let mut shards = Shards {
        store_url: store_url.clone(),
        root: dir.path().to_path_buf(),
        ports: vec![0; 4],
        procs: (0..4).map(|_| None).collect(),
        baseline_rss: vec![0; 4],
        baseline_anon: vec![0; 4],
        flags: [
            "--memory-budget",
            &memory_budget.to_string(),
            "--disk-budget",
            &disk_budget.to_string(),
            "--max-restores",
            "2",
            "--embedder",
            "http",
            "--embedder-url",
            &embed.url,
            "--embedder-model",
            stub::MODEL,
            "--embed-timeout",
            "500ms",
            "--poll-interval",
            "5s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    };
    for i in 0..3 {
        shards.start(i).await;
    }
    let (tx, members) = membership::fixed((0..3).map(|i| shards.endpoint(i)).collect());
    let mut cfg = RouterConfig::local("");
    cfg.admin_token = Some(ADMIN_TOKEN.to_string());
    cfg.probe_interval = Duration::from_millis(500);
    let router = trusty_search::router::server::start_with_members(cfg, tx.clone(), members, Vec::new())
        .await
        .unwrap();
    let base = router.url();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    // Register every index once, as the operator does when they are created.
    for id in &ids {
        let r = client
            .post(format!("{base}/v1/admin/indexes/{id}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"replicas": 2, "preload": true}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let run_for = Duration::from_secs(secs);
    let mut tasks = Vec::new();

    // Zipf single-index searches.
    let zipf = Arc::new(Zipf::new(ids.len(), ZIPF_S));
    for c in 0..CLIENTS {
        let (client, base, ids, log, stop, zipf) = (
            client.clone(),
            base.clone(),
            ids.clone(),
            log.clone(),
            stop.clone(),
            zipf.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Xorshift(0x9e3779b97f4a7c15 ^ (c as u64 + 1));
            while !stop.load(Ordering::Relaxed) {
                let id = &ids[zipf.sample(&mut rng)];
                let q = QUERIES[(rng.next() % QUERIES.len() as u64) as usize];
                let req = client
                    .post(format!("{base}/v1/indexes/{id}/search"))
                    .json(&json!({"query": q, "top_k": 10}));
                timed(&log, started, "search", req, |_| true).await;
            }
        }));
    }
    // What fan-outs covered: a partial answer (indexes skipped as cold or
    // past the deadline) is by design, so it is reported, not failed; an
    // index that errored fails the request.
    let coverage = Arc::new(parking_lot::Mutex::new(BTreeMap::<&'static str, Coverage>::new()));
    // Small fan-outs with a short deadline.
    {
        let (client, base, ids, log, stop) = (client.clone(), base.clone(), ids.clone(), log.clone(), stop.clone());
        let coverage = coverage.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Xorshift(7);
            while !stop.load(Ordering::Relaxed) {
                let pick: Vec<&String> = (0..5).map(|_| &ids[(rng.next() % ids.len() as u64) as usize]).collect();
                let req = client
                    .post(format!("{base}/v1/search"))
                    .json(&json!({"query": "error handling", "indexes": pick, "deadline_ms": 200}));
                timed(&log, started, "fanout5", req, |b| covered(&coverage, "fanout5", b)).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }
    // Fan-out over everything.
    {
        let (client, base, log, stop) = (client.clone(), base.clone(), log.clone(), stop.clone());
        let coverage = coverage.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let req = client
                    .post(format!("{base}/v1/search"))
                    .json(&json!({"query": "parse", "deadline_ms": 1000}));
                timed(&log, started, "fanout_all", req, |b| {
                    covered(&coverage, "fanout_all", b)
                })
                .await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }));
    }
    // Admin reloads and operator-style re-registration. Every other reload
    // follows a new version of its index, published as a build Job would.
    let published = Arc::new(parking_lot::Mutex::new(Vec::<Duration>::new()));
    {
        let (client, base, ids, log, stop) = (client.clone(), base.clone(), ids.clone(), log.clone(), stop.clone());
        let (crates, embedder, store, published) = (crates.clone(), embedder.clone(), store.clone(), published.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Xorshift(11);
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(10)).await;
                tick += 1;
                for id in &ids {
                    let req = client
                        .post(format!("{base}/v1/admin/indexes/{id}"))
                        .bearer_auth(ADMIN_TOKEN)
                        .json(&json!({"replicas": 2, "preload": true}));
                    timed(&log, started, "register", req, |_| true).await;
                }
                if tick.is_multiple_of(3) {
                    let i = (rng.next() % ids.len() as u64) as usize;
                    let id = &ids[i];
                    if tick.is_multiple_of(6) {
                        // Bounded: during the embedder outage the build would wait on it.
                        let build = tokio::spawn(publish_version(
                            crates[i].clone(),
                            id.clone(),
                            embedder.clone(),
                            store.clone(),
                        ));
                        let outcome = match tokio::time::timeout(Duration::from_secs(20), build).await {
                            Ok(joined) => joined.map_err(|e| e.to_string()).and_then(|r| r),
                            Err(_) => Err("no answer in 20 s".to_string()),
                        };
                        let t = started.elapsed().as_secs_f64();
                        match outcome {
                            Ok(version) => {
                                published.lock().push(started.elapsed());
                                println!("t={t:.0}s: published {id} {version}");
                            }
                            Err(e) => println!("t={t:.0}s: {id} not republished: {e}"),
                        }
                    }
                    let req = client
                        .post(format!("{base}/v1/admin/indexes/{id}/reload"))
                        .bearer_auth(ADMIN_TOKEN);
                    timed(&log, started, "reload", req, |_| true).await;
                }
            }
        }));
    }
    // Sampling: RSS, cache bytes, /healthz latency, loads per minute.
    let samples = Arc::new(parking_lot::Mutex::new(BTreeMap::<usize, ShardPeaks>::new()));
    let loads_by_minute = Arc::new(parking_lot::Mutex::new(Vec::<f64>::new()));
    // Per shard: its process id (0 while it is down or not yet started) and URL.
    let running = Arc::new(parking_lot::Mutex::new(vec![(0u32, String::new()); 4]));
    // When the router stopped sending to a shard (ejected it), by shard.
    let ejected = Arc::new(parking_lot::Mutex::new(Vec::<(usize, Duration)>::new()));
    for i in 0..3 {
        running.lock()[i] = shards.running(i);
    }
    {
        let (samples, stop, running, root, loads_by_minute) = (
            samples.clone(),
            stop.clone(),
            running.clone(),
            dir.path().to_path_buf(),
            loads_by_minute.clone(),
        );
        let (router_state, ejected) = (router.state.clone(), ejected.clone());
        let health = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut last_minute = Instant::now();
            // Each shard's load counter as last read, by process: a restarted
            // shard counts from zero again (loads in the last 250 ms before a
            // kill are not seen).
            let mut last_loads: Vec<(u32, f64)> = vec![(0, 0.0); 4];
            let mut loads_this_minute = 0f64;
            let mut was_healthy = [true; 4];
            while !stop.load(Ordering::Relaxed) {
                for (i, was) in was_healthy.iter_mut().enumerate() {
                    let healthy = router_state.health.is_healthy(&shard_name(i));
                    if *was && !healthy {
                        ejected.lock().push((i, started.elapsed()));
                    }
                    *was = healthy;
                }
                let now = running.lock().clone();
                for (i, (pid, url)) in now.iter().enumerate() {
                    if *pid == 0 {
                        continue;
                    }
                    let rss = rss_of(*pid);
                    let cache = dir_bytes(&root.join(format!("cache-{i}")));
                    let ms = healthz_ms(&health, url).await;
                    let text = metrics_text(url).await;
                    let heap = support::http::sample(&text, "trusty_heap_bytes{state=\"allocated\"}") as u64;
                    let counted = support::http::sample(&text, "trusty_cache_bytes{tier=\"memory\"}") as u64;
                    let cached = support::http::sample(&text, "trusty_heap_bytes{state=\"thread_caches\"}") as u64;
                    let running_restores = support::http::sample(&text, "trusty_restores{state=\"running\"}") as u64;
                    let queued_restores = support::http::sample(&text, "trusty_restores{state=\"queued\"}") as u64;
                    {
                        let mut s = samples.lock();
                        let e = s.entry(i).or_default();
                        e.rss.total = e.rss.total.max(rss.total);
                        e.rss.anon = e.rss.anon.max(rss.anon);
                        e.rss.file = e.rss.file.max(rss.file);
                        e.rss.program = e.rss.program.max(rss.program);
                        // Index files and other mappings: file-backed pages not the program's.
                        // A process read between its death and its restart has no pages
                        // of its own program: that sample says nothing about the rest.
                        if rss.program > 0 {
                            e.other_file = e.other_file.max(rss.file.saturating_sub(rss.program));
                            e.held = e.held.max(rss.total.saturating_sub(rss.program));
                        }
                        e.cache = e.cache.max(cache);
                        // Unanswered within the client's 2 s: counted, not taken as fast.
                        match ms {
                            Some(ms) => e.healthz_ms = e.healthz_ms.max(ms),
                            None => e.healthz_failed += 1,
                        }
                        e.last = rss;
                        e.heap_allocated = e.heap_allocated.max(heap);
                        e.counted = e.counted.max(counted);
                        e.heap_thread_caches = e.heap_thread_caches.max(cached);
                        e.restores_running = e.restores_running.max(running_restores);
                        e.restores_waiting = e.restores_waiting.max(queued_restores);
                    }
                    // An unanswered scrape (a dying shard) says nothing about its count.
                    if !text.is_empty() {
                        let loads = support::http::sample(&text, "trusty_index_loads_total");
                        let (last_pid, last) = last_loads[i];
                        loads_this_minute += if last_pid == *pid {
                            (loads - last).max(0.0)
                        } else {
                            loads
                        };
                        last_loads[i] = (*pid, loads);
                    }
                }
                if last_minute.elapsed() >= Duration::from_secs(60) {
                    loads_by_minute.lock().push(loads_this_minute);
                    loads_this_minute = 0.0;
                    last_minute = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            // The last, partial minute: restores near the end count too.
            loads_by_minute.lock().push(loads_this_minute);
        }));
    }

    // A prober on a thread and runtime of its own, as the kubelet probes from
    // its own process: the sampler above shares this process's runtime with
    // the router and the clients, so its timings include their queueing.
    // Per shard: the slowest answer and when, how many were slow, and probes
    // that failed or timed out (2 s).
    let probe_max = Arc::new(parking_lot::Mutex::new([ProbeStats::default(); 4]));
    let prober = {
        let (stop, running, probe_max) = (stop.clone(), running.clone(), probe_max.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .build()
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let now = running.lock().clone();
                    for (i, (pid, url)) in now.iter().enumerate() {
                        if *pid == 0 {
                            continue;
                        }
                        let ms = healthz_ms(&client, url).await;
                        let mut m = probe_max.lock();
                        if let Some(ms) = ms {
                            m[i].answered(ms, started.elapsed());
                        } else if running.lock()[i].0 != 0 {
                            // Not a shard this bench has just killed.
                            m[i].failed += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        })
    };

    // The fault timeline.
    let at = |f: f64| started + run_for.mul_f64(f);
    tokio::time::sleep_until(at(0.3).into()).await;
    let victim = 1;
    let inflight_at_kill = router.state.health.inflight(&shard_name(victim));
    let killed_at = started.elapsed();
    shards.procs[victim].take().unwrap().kill();
    running.lock()[victim].0 = 0;
    println!(
        "t={:.0}s: killed {} (-9) with {inflight_at_kill} requests in flight to it",
        killed_at.as_secs_f64(),
        shard_name(victim)
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    shards.start(victim).await;
    running.lock()[victim] = shards.running(victim);
    println!(
        "t={:.0}s: restarted {}",
        started.elapsed().as_secs_f64(),
        shard_name(victim)
    );
    let router_counts = || async {
        (
            metric(&base, "trusty_router_retries_total").await,
            metric(&base, "trusty_router_waits_total").await,
        )
    };
    tokio::time::sleep_until((at(0.5) - HANDOFF_WINDOW).into()).await;
    let quiet_from = (started.elapsed(), router_counts().await);
    tokio::time::sleep_until(at(0.5).into()).await;
    let quiet_to = router_counts().await;
    let outage = (started.elapsed(), started.elapsed() + run_for.mul_f64(0.1));
    embed.set(Mode::Hang);
    println!("t={:.0}s: embedder hangs", outage.0.as_secs_f64());
    tokio::time::sleep_until(at(0.6).into()).await;
    embed.set(Mode::Up);
    println!("t={:.0}s: embedder back", started.elapsed().as_secs_f64());
    tokio::time::sleep_until((at(0.7) - HANDOFF_WINDOW).into()).await;
    let window_before = router_counts().await;
    tokio::time::sleep_until(at(0.7).into()).await;
    shards.start(3).await;
    running.lock()[3] = shards.running(3);
    let before_join = router_counts().await;
    tx.send_replace((0..4).map(|i| shards.endpoint(i)).collect());
    let joined_at = started.elapsed();
    println!("t={:.0}s: {} joined", joined_at.as_secs_f64(), shard_name(3));
    let handoff_end = (started + joined_at + HANDOFF_WINDOW).min(started + run_for);
    tokio::time::sleep_until(handoff_end.into()).await;
    let after_join = router_counts().await;
    let joiner = (
        metric(&shards.url(3), "trusty_index_loads_total").await,
        metric(&shards.url(3), "trusty_indexes{state=\"hot\"}").await,
    );
    tokio::time::sleep_until((started + run_for).into()).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let _ = prober.join();

    // Report.
    let log = log.lock().clone();
    let kill_window = (killed_at, killed_at + Duration::from_secs(5));
    println!("\nduration {secs} s, {} requests", log.len());
    println!("| route | requests | p50 ms | p99 ms | failed outside the kill window | failed inside it |");
    println!("|---|---|---|---|---|---|");
    let mut routes: Vec<&str> = log.iter().map(|s| s.route).collect();
    routes.sort();
    routes.dedup();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for route in routes {
        let of: Vec<&Sample> = log.iter().filter(|s| s.route == route).collect();
        let mut ms: Vec<f64> = of.iter().map(|s| s.ms).collect();
        ms.sort_by(f64::total_cmp);
        let inside = |s: &&&Sample| s.at >= kill_window.0 && s.at < kill_window.1;
        let failed_in = of.iter().filter(|s| s.error.is_some()).filter(inside).count();
        let failed_out = of.iter().filter(|s| s.error.is_some()).count() - failed_in;
        for s in of.iter().filter(|s| s.error.is_some()) {
            *errors
                .entry(format!("{route}: {}", s.error.as_ref().unwrap()))
                .or_default() += 1;
        }
        // Under 100 samples a p99 is the slowest one or next to it: say so.
        let p99 = if ms.len() < 100 {
            format!("max {:.1}", ms.last().copied().unwrap_or(0.0))
        } else {
            format!("{:.1}", percentile(&ms, 99.0))
        };
        println!(
            "| {route} | {} | {:.1} | {p99} | {failed_out} | {failed_in} |",
            of.len(),
            percentile(&ms, 50.0),
        );
    }
    println!("requests in flight to the killed shard when it died: {inflight_at_kill}");
    for (route, c) in coverage.lock().iter() {
        let named = c.searched + c.skipped.values().sum::<usize>() + c.failed;
        let skipped: Vec<String> = c.skipped.iter().map(|(why, n)| format!("{why} {n}")).collect();
        println!(
            "{route}: {named} indexes over the answered requests: searched {} ({:.1} %), skipped {} ({}), failed {}",
            c.searched,
            100.0 * c.searched as f64 / named.max(1) as f64,
            c.skipped.values().sum::<usize>(),
            skipped.join(", "),
            c.failed
        );
    }
    for (e, n) in &errors {
        println!("  error {e}: {n}");
    }
    println!(
        "\n| shard | baseline RSS MB | peak RSS MB | peak − baseline MB (memory budget {:.1}) | peak anonymous MB | peak file-backed MB | RSS at end MB (anonymous) | peak cache MB (disk budget {:.1}) | max /healthz ms (own prober), at t | probes ≥ 100 ms / answered | failed probes (own prober) | max /healthz ms (from the loaded runtime) | unanswered probes from it |",
        memory_budget as f64 / 1e6,
        disk_budget as f64 / 1e6
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (
        i,
        ShardPeaks {
            rss,
            cache,
            healthz_ms: health,
            healthz_failed,
            last,
            ..
        },
    ) in samples.lock().iter()
    {
        let baseline = shards.baseline_rss[*i];
        let probed = probe_max.lock()[*i];
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} ({:.1}) | {:.1} | {:.1}, {:.0} s | {} / {} | {} | {:.1} | {} |",
            shard_name(*i),
            baseline as f64 / 1e6,
            rss.total as f64 / 1e6,
            rss.total.saturating_sub(baseline) as f64 / 1e6,
            rss.anon as f64 / 1e6,
            rss.file as f64 / 1e6,
            last.total as f64 / 1e6,
            last.anon as f64 / 1e6,
            *cache as f64 / 1e6,
            probed.max_ms,
            probed.max_at.as_secs_f64(),
            probed.slow,
            probed.answers,
            probed.failed,
            health,
            healthz_failed
        );
    }
    println!(
        "\n| shard | peak program pages MB | peak other file-backed MB | peak RSS less program pages, less anonymous at start MB (budget {:.1}) | peak heap allocated MB (not freed to the allocator) | peak of it in thread caches MB | peak engines' count MB |",
        memory_budget as f64 / 1e6
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, peaks) in samples.lock().iter() {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            shard_name(*i),
            peaks.rss.program as f64 / 1e6,
            peaks.other_file as f64 / 1e6,
            peaks.held.saturating_sub(shards.baseline_anon[*i]) as f64 / 1e6,
            peaks.heap_allocated as f64 / 1e6,
            peaks.heap_thread_caches as f64 / 1e6,
            peaks.counted as f64 / 1e6
        );
    }
    let per_minute = loads_by_minute.lock().clone();
    println!("restores per minute (all shards; the last entry is the partial minute before the stop): {per_minute:?}");
    let mut versions_by_minute = vec![0usize; per_minute.len()];
    for at in published.lock().iter() {
        let m = (at.as_secs() / 60) as usize;
        versions_by_minute[m.min(per_minute.len().saturating_sub(1))] += 1;
    }
    println!("new versions published per minute (each restores on its owners): {versions_by_minute:?}");
    for (i, peaks) in samples.lock().iter() {
        println!(
            "{}: at most {} restores running and {} queued at once (sampled every 250 ms; admission limit 2)",
            shard_name(*i),
            peaks.restores_running,
            peaks.restores_waiting
        );
    }
    println!(
        "router ejections: {}",
        metric(&base, "trusty_router_ejections_total").await
    );
    // An ejection of the killed shard while it was down is the fault's; any
    // other is the router taking load (shedding, slowness) for failure.
    let restarted_by = killed_at + Duration::from_secs(10) + HANDOFF_WINDOW;
    for (i, at) in ejected.lock().iter() {
        let cause = if *i == victim && *at >= killed_at && *at < restarted_by {
            "the killed shard"
        } else {
            "a running shard (overload?)"
        };
        println!(
            "  {} left the healthy set at t={:.1}s: {cause}",
            shard_name(*i),
            at.as_secs_f64()
        );
    }
    println!(
        "\nsearches around the join: {} joined at t={:.0}s and had restored {} indexes ({} hot) {:.0} s later",
        shard_name(3),
        joined_at.as_secs_f64(),
        joiner.0,
        joiner.1,
        HANDOFF_WINDOW.as_secs_f64()
    );
    println!("| window | searches | failed | p50 ms | p99 ms | router retries | restore waits |");
    println!("|---|---|---|---|---|---|---|");
    let diff = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0, b.1 - a.1);
    for (label, from, counts) in [
        (
            "before the embedder outage (no fault)",
            quiet_from.0,
            diff(quiet_from.1, quiet_to),
        ),
        (
            "before the join (after the outage)",
            joined_at.saturating_sub(HANDOFF_WINDOW),
            diff(window_before, before_join),
        ),
        ("after the join", joined_at, diff(before_join, after_join)),
    ] {
        let of: Vec<&Sample> = log
            .iter()
            .filter(|s| s.route == "search" && s.at >= from && s.at < from + HANDOFF_WINDOW)
            .collect();
        let mut ms: Vec<f64> = of.iter().map(|s| s.ms).collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "| {label} | {} | {} | {:.1} | {:.1} | {} | {} |",
            of.len(),
            of.iter().filter(|s| s.error.is_some()).count(),
            percentile(&ms, 50.0),
            percentile(&ms, 99.0),
            counts.0,
            counts.1
        );
    }
    for i in 0..4 {
        let url = shards.url(i);
        println!(
            "{}: hot {} | loads {} | new versions swapped in {} | refusals full/demand {} | cache memory {:.1} MB of {:.1} MB",
            shard_name(i),
            metric(&url, "trusty_indexes{state=\"hot\"}").await,
            metric(&url, "trusty_index_loads_total").await,
            metric(&url, "trusty_index_swaps_total").await,
            metric(
                &url,
                "trusty_restore_refusals_total{priority=\"demand\",reason=\"full\"}"
            )
            .await,
            metric(&url, "trusty_cache_bytes{tier=\"memory\"}").await / 1e6,
            memory_budget as f64 / 1e6
        );
    }
    println!(
        "embedder outage {:.0}-{:.0} s: vector arm dropped {} times",
        outage.0.as_secs_f64(),
        outage.1.as_secs_f64(),
        {
            let mut n = 0.0;
            for i in 0..4 {
                n += metric(
                    &shards.url(i),
                    "trusty_search_arm_unavailable_total{arm=\"vector\",reason=\"embedder_timeout\"}",
                )
                .await
                    + metric(
                        &shards.url(i),
                        "trusty_search_arm_unavailable_total{arm=\"vector\",reason=\"embedder_down\"}",
                    )
                    .await;
            }
            n
        }
    );
    router.stop().await;
    drop(shards);
}
