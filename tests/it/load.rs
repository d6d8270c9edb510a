//! Load is a fault too: restore admission, budgets that hold, shedding that
//! is not mistaken for failure, degraded arms, version directories that
//! outlive their readers, and hand-off when a shard joins. Real shard
//! processes against a real S3-compatible server.

use crate::support::cluster::{Cluster, shard_name};
use crate::support::embedder::{self, EmbedStub, Mode};
use crate::support::fixtures::{build_and_publish, publish_copies, publish_fixture, settled_entries, write_repo};
use crate::support::http::{get_json, metric, post_json, search};
use crate::support::process::{ADMIN_TOKEN, Proc, shard_args, spawn};
use crate::support::s3::Hold;
use crate::support::shard::{Env, admin, env, shard_env, sizes, start_shard};
use crate::support::wait;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use trusty_search::IndexId;
use trusty_search::index::build::{BuildOptions, build_bundle};
use trusty_search::search::engine::{Engine, estimate_memory};
use trusty_search::shard::disk::dir_bytes;

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

async fn status_of(url: &str, id: &str) -> Value {
    get_json(&format!("{url}/v1/indexes/{id}")).await
}

/// Runs `sample` every 20 ms until `stop` is set; returns the largest value seen.
fn peak<F, Fut>(stop: Arc<AtomicBool>, sample: F) -> tokio::task::JoinHandle<f64>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = f64> + Send,
{
    tokio::spawn(async move {
        let mut max = 0f64;
        while !stop.load(Ordering::Relaxed) {
            max = max.max(sample().await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        max.max(sample().await)
    })
}

/// A shard reserves `estimate_memory` before it downloads a version and
/// charges `Engine::memory_bytes` once it is open: on a real tree (this
/// crate's sources) the reservation covers the charge without reserving
/// several times more.
#[tokio::test]
async fn the_memory_estimate_reserves_what_the_open_engine_counts() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let work = tempfile::tempdir().unwrap();
    let id = IndexId::new("estimate").unwrap();
    let report = build_bundle(&src, &id, &work.path().join("bundle"), BuildOptions::default())
        .await
        .unwrap();
    let engine = Engine::open(&report.dir, report.manifest.clone(), None).await.unwrap();
    let counted = engine.memory_bytes() as f64;
    let estimated = estimate_memory(&report.manifest) as f64;
    assert!(
        estimated >= 0.9 * counted && estimated <= 2.0 * counted,
        "estimated {estimated} bytes, the open engine counts {counted}"
    );
}

#[tokio::test]
async fn anonymous_fan_out_over_many_cold_indexes_stays_within_limits() {
    let env = env().await;
    let names = ids("cold", 30);
    publish_copies(&env.store, &names, "a").await;
    let (memory, disk) = sizes(&env, &names[0]).await;
    // Room for three of the thirty.
    let (mem_budget, disk_budget) = (3 * memory + memory / 2, 3 * disk + disk / 2);
    let cache = env.dir.path().join("cache");
    env.s3.set_delay(Duration::from_millis(60));
    let shard = start_shard(
        &env,
        "s0",
        &cache,
        &[
            "--max-restores",
            "2",
            "--memory-budget",
            &mem_budget.to_string(),
            "--disk-budget",
            &disk_budget.to_string(),
            "--warm",
            "false",
        ],
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let url = shard.url.clone();
    let running = peak(stop.clone(), move || {
        let url = url.clone();
        async move { metric(&url, "trusty_restores{state=\"running\"}").await }
    });
    let cache2 = cache.clone();
    let on_disk = peak(stop.clone(), move || {
        let cache = cache2.clone();
        async move { dir_bytes(&cache) as f64 }
    });
    let fan_outs = (0..3).map(|_| {
        let url = shard.url.clone();
        tokio::spawn(async move {
            post_json(
                &format!("{url}/v1/search"),
                json!({"query": "config", "deadline_ms": 20}),
            )
            .await
        })
    });
    let started = Instant::now();
    for r in futures::future::join_all(fan_outs).await {
        let (status, body) = r.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        let skipped = body["skipped"].as_array().unwrap();
        assert_eq!(body["searched"].as_array().unwrap().len() + skipped.len(), 30, "{body}");
        for s in skipped {
            let why = s["error"].as_str().unwrap();
            assert!(
                ["index_cold", "index_loading", "deadline"].contains(&why),
                "skipped with a reason: {s}"
            );
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fan-outs answered by their deadline"
    );
    // Let the background warm-ups the fan-outs queued run their course.
    let settled = wait::until(wait::PATIENCE, async || {
        metric(&shard.url, "trusty_restores{state=\"running\"}").await == 0.0
            && metric(&shard.url, "trusty_restores{state=\"queued\"}").await == 0.0
    })
    .await;
    assert!(settled, "the warm-ups ran their course");
    stop.store(true, Ordering::Relaxed);
    let (running, on_disk) = (running.await.unwrap(), on_disk.await.unwrap());
    assert!(running <= 2.0, "at most two restores at once, saw {running}");
    assert!(running >= 1.0, "restores did run");
    assert!(
        on_disk <= (disk_budget + disk) as f64,
        "cache stayed within the disk budget plus one index: {on_disk} > {disk_budget} + {disk}"
    );
    assert!(metric(&shard.url, "trusty_cache_bytes{tier=\"memory\"}").await <= mem_budget as f64);
    let hot = metric(&shard.url, "trusty_indexes{state=\"hot\"}").await;
    assert!(
        (1.0..=3.0).contains(&hot),
        "background warming filled free budget only: {hot} hot"
    );
    assert!(
        metric(&shard.url, "trusty_index_loads_total").await <= 30.0,
        "never more than one restore per index"
    );
    assert_eq!(
        reqwest::get(format!("{}/healthz", shard.url)).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn re_registering_more_indexes_than_fit_causes_no_restore_churn() {
    let env = env().await;
    let names = ids("reg", 8);
    publish_copies(&env.store, &names, "a").await;
    let (memory, _) = sizes(&env, &names[0]).await;
    let budget = (2 * memory + memory / 2).to_string();
    let shard = start_shard(
        &env,
        "s0",
        &env.dir.path().join("cache"),
        &["--memory-budget", &budget, "--warm", "false"],
    )
    .await;
    let client = reqwest::Client::new();
    let register_all = || async {
        for id in &names {
            let r = client
                .post(format!("{}/v1/admin/indexes/{id}", shard.url))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"preload": true}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    };
    let settle = || async {
        let idle = wait::until(wait::PATIENCE, async || {
            metric(&shard.url, "trusty_indexes{state=\"loading\"}").await
                + metric(&shard.url, "trusty_restores{state=\"queued\"}").await
                + metric(&shard.url, "trusty_restores{state=\"running\"}").await
                == 0.0
        })
        .await;
        assert!(idle, "loads never settled");
    };
    register_all().await;
    settle().await;
    let first = metric(&shard.url, "trusty_index_loads_total").await;
    assert_eq!(
        metric(&shard.url, "trusty_indexes{state=\"hot\"}").await,
        2.0,
        "preloads filled the budget"
    );
    // An operator resyncing every few seconds.
    for _ in 0..5 {
        register_all().await;
        settle().await;
    }
    assert_eq!(
        metric(&shard.url, "trusty_index_loads_total").await,
        first,
        "re-registration restored nothing"
    );
    // A query for a cold index loads it (evicting the least recently used);
    // registering again does not bring the evicted one back.
    assert_eq!(search(&shard.url, &names[7], "config").await.status(), StatusCode::OK);
    let after_query = metric(&shard.url, "trusty_index_loads_total").await;
    for _ in 0..3 {
        register_all().await;
        settle().await;
    }
    assert_eq!(metric(&shard.url, "trusty_index_loads_total").await, after_query);
    assert_eq!(metric(&shard.url, "trusty_cache_evictions_total").await, 1.0);
}

#[tokio::test]
async fn two_restores_competing_for_the_last_room_get_over_budget_not_overshoot() {
    let env = env().await;
    let names = ids("tight", 2);
    publish_copies(&env.store, &names, "a").await;
    let (memory, _) = sizes(&env, &names[0]).await;
    // One index fits, two do not; both restores run at once.
    let budget = (memory + memory / 2).to_string();
    env.s3.set_delay(Duration::from_millis(300));
    let shard = start_shard(
        &env,
        "s0",
        &env.dir.path().join("cache"),
        &["--memory-budget", &budget, "--max-restores", "2", "--warm", "false"],
    )
    .await;
    let both = names.iter().map(|id| {
        let (url, id) = (shard.url.clone(), id.clone());
        tokio::spawn(async move {
            let r = search(&url, &id, "config").await;
            let retry_after = r.headers().get("retry-after").is_some();
            (r.status(), retry_after, r.json::<Value>().await.unwrap())
        })
    });
    let answers: Vec<_> = futures::future::join_all(both)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    env.s3.set_delay(Duration::ZERO);
    let ok = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    let refused: Vec<_> = answers.iter().filter(|a| a.0 != StatusCode::OK).collect();
    assert_eq!(ok, 1, "{answers:?}");
    assert_eq!(refused.len(), 1, "{answers:?}");
    let (status, retry_after, body) = refused[0];
    assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "over_budget", "{body}");
    assert_eq!(body["retryable"], true);
    assert!(retry_after, "over_budget carries Retry-After");
    assert!(metric(&shard.url, "trusty_cache_bytes{tier=\"memory\"}").await <= budget.parse::<f64>().unwrap());
    // Retried later, it evicts the other and loads.
    let loser = body["index_id"].as_str().unwrap().to_string();
    let served = wait::until(wait::PATIENCE, async || {
        search(&shard.url, &loser, "config").await.status() == StatusCode::OK
    })
    .await;
    assert!(served, "{loser} served once retried");
    assert_eq!(metric(&shard.url, "trusty_indexes{state=\"hot\"}").await, 1.0);
}

/// A restore that cannot fit even after every eviction it may make is
/// refused with nothing evicted: the hot set is not flushed for a load that
/// fails anyway. Here a new version of a big hot index, which cannot fit
/// beside its old one, must leave the small hot index alone.
#[tokio::test]
async fn a_restore_that_cannot_fit_evicts_nothing() {
    let env = env().await;
    publish_fixture(&env.store, "small", "a").await;
    let src = tempfile::tempdir().unwrap();
    write_repo(src.path(), "a");
    let generate = |variant: &str| {
        for i in 0..60 {
            let body: String = (0..20)
                .map(|j| format!("pub fn handler_{variant}_{i}_{j}(x: u32) -> u32 {{ x + {j} }}\n"))
                .collect();
            std::fs::write(src.path().join(format!("src/gen_{i}.rs")), body).unwrap();
        }
    };
    generate("a");
    build_and_publish(&env.store, "big", src.path()).await;
    let (small, _) = sizes(&env, "small").await;
    let (big, _) = sizes(&env, "big").await;
    assert!(big > 3 * small, "the big index is {big} bytes, the small {small}");
    // Both fit, but not two versions of the big one.
    let budget = big + big / 2;
    let shard = start_shard(
        &env,
        "s0",
        &env.dir.path().join("cache"),
        &[
            "--memory-budget",
            &budget.to_string(),
            "--poll-interval",
            "300ms",
            "--warm",
            "false",
        ],
    )
    .await;
    assert_eq!(search(&shard.url, "small", "config").await.status(), StatusCode::OK);
    assert_eq!(search(&shard.url, "big", "config").await.status(), StatusCode::OK);
    assert_eq!(metric(&shard.url, "trusty_indexes{state=\"hot\"}").await, 2.0);

    generate("b");
    let next = build_and_publish(&env.store, "big", src.path()).await;
    let refused = wait::until(wait::PATIENCE, async || {
        let st = status_of(&shard.url, "big").await;
        st["owners"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains(&next.version)
    })
    .await;
    assert!(refused, "{}", status_of(&shard.url, "big").await);
    assert_eq!(
        metric(&shard.url, "trusty_cache_evictions_total").await,
        0.0,
        "nothing was evicted for a version that could not fit"
    );
    assert_eq!(metric(&shard.url, "trusty_indexes{state=\"hot\"}").await, 2.0);
    assert_eq!(search(&shard.url, "small", "config").await.status(), StatusCode::OK);
}

/// A request that comes to wait on an index a fan-out began warming in the
/// background makes that restore a demand one: it evicts to make room
/// instead of being refused for want of free budget.
#[tokio::test]
async fn a_request_joining_a_background_warm_up_may_evict() {
    let env = env().await;
    let names = ids("join", 2);
    publish_copies(&env.store, &names, "a").await;
    let (memory, _) = sizes(&env, &names[0]).await;
    let budget = (memory + memory / 2).to_string();
    let shard = start_shard(
        &env,
        "s0",
        &env.dir.path().join("cache"),
        &["--memory-budget", &budget, "--warm", "false"],
    )
    .await;
    assert_eq!(search(&shard.url, &names[0], "config").await.status(), StatusCode::OK);
    // Slow enough that the request joins long before the warm-up reserves.
    env.s3.set_delay(Duration::from_millis(1500));
    // The fan-out skips the cold index and starts warming it in the background.
    let (status, r) = post_json(
        &format!("{}/v1/search", shard.url),
        json!({"query": "config", "indexes": [&names[1]]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["skipped"][0]["index_id"], names[1].as_str(), "{r}");
    let r = search(&shard.url, &names[1], "config").await;
    env.s3.set_delay(Duration::ZERO);
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    assert_eq!(metric(&shard.url, "trusty_cache_evictions_total").await, 1.0);
    // One restore did it: none was refused and started over.
    let refused = r#"trusty_restore_refusals_total{priority="background",reason="full"}"#;
    assert_eq!(metric(&shard.url, refused).await, 0.0);
    assert_eq!(metric(&shard.url, "trusty_index_loads_total").await, 2.0);
}

#[tokio::test]
async fn an_index_larger_than_the_whole_budget_is_refused_not_served() {
    let env = env().await;
    publish_fixture(&env.store, "huge", "a").await;
    let shard = start_shard(
        &env,
        "s0",
        &env.dir.path().join("cache"),
        &["--memory-budget", "1KiB", "--warm", "false"],
    )
    .await;
    let r = search(&shard.url, "huge", "config").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "index_restore_failed", "{body}");
    assert_eq!(body["retryable"], false);
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("too_large") && msg.contains("whole memory budget"),
        "{msg}"
    );
    assert_eq!(metric(&shard.url, "trusty_cache_bytes{tier=\"memory\"}").await, 0.0);
    assert_eq!(
        metric(
            &shard.url,
            "trusty_restore_refusals_total{priority=\"demand\",reason=\"too_large\"}"
        )
        .await,
        1.0
    );
    // Nothing was downloaded: the manifest alone decided.
    assert!(
        !env.dir
            .path()
            .join("cache/huge")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
}

// Two workers: the S3 server, the load and the scrapes do not wait on one thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_shard_answers_its_probes_and_is_not_ejected() {
    // The router's probes get 5 s, not 1 s: on a machine the 64 loops below
    // saturate, a probe that answers late is the machine, not the shard. A
    // saturated shard's 503 `overloaded` is never a strike, however long the
    // probes wait; that is what this test proves.
    let c = Cluster::start_with(
        2,
        2,
        &["--max-concurrency", "2", "--search-threads", "1"],
        &["--probe-timeout", "5s"],
    )
    .await;
    publish_fixture(&c.store, "busy", "a").await;
    assert_eq!(search(&c.router.url, "busy", "config").await.status(), StatusCode::OK);
    let stop = Arc::new(AtomicBool::new(false));
    let shed = Arc::new(AtomicU64::new(0));
    let load = (0..64).map(|_| {
        let (url, stop, shed) = (c.router.url.clone(), stop.clone(), shed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = search(&url, "busy", "parse config load server handle request").await;
                if r.status() == StatusCode::SERVICE_UNAVAILABLE {
                    shed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    let load: Vec<_> = load.collect();
    // Probed from a thread of its own, with a runtime of its own, so that
    // the 64 loops on this runtime do not delay the probes' own side.
    let shard_urls = [c.shard_url(0), c.shard_url(1)];
    let probing = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = reqwest::Client::new();
            let mut probes = 0;
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                for url in &shard_urls {
                    let r = client
                        .get(format!("{url}/healthz"))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await
                        .expect("/healthz answers under saturation");
                    assert_eq!(r.status(), StatusCode::OK);
                    probes += 1;
                }
                if Instant::now() >= deadline {
                    return probes;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });
    let probes = tokio::task::spawn_blocking(move || probing.join())
        .await
        .unwrap()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(probes >= 2, "probed both shards while saturated");
    assert!(
        metric(
            &c.shard_url(0),
            "trusty_http_requests_total{outcome=\"unavailable\",role=\"shard\",route=\"/v1/indexes/{id}/search\"}"
        )
        .await
            + metric(
                &c.shard_url(1),
                "trusty_http_requests_total{outcome=\"unavailable\",role=\"shard\",route=\"/v1/indexes/{id}/search\"}"
            )
            .await
            > 0.0,
        "the shards really were saturated and shed load"
    );
    assert_eq!(
        metric(&c.router.url, "trusty_router_ejections_total").await,
        0.0,
        "shedding is not failure"
    );
    assert_eq!(
        metric(&c.router.url, "trusty_router_shards{health=\"healthy\"}").await,
        2.0
    );
}

/// Publishes `vec`, an index with vectors from `stub`'s model.
async fn publish_stub_vectors(env: &Env, stub: &EmbedStub) {
    use trusty_search::embed::{EmbedderConfig, load_embedder};
    use trusty_search::storage::publish::{PublishOptions, publish};
    let embedder = load_embedder(&EmbedderConfig::Http {
        url: stub.url.clone(),
        model: embedder::MODEL.into(),
        api_key: None,
        dimension: Some(embedder::DIMENSION),
    })
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    write_repo(src.path(), "a");
    let id = IndexId::new("vec").unwrap();
    let work = tempfile::tempdir().unwrap();
    let opts = BuildOptions {
        embedder,
        ..BuildOptions::default()
    };
    let built = build_bundle(src.path(), &id, &work.path().join("b"), opts)
        .await
        .unwrap();
    assert!(built.manifest.embedder.is_some());
    publish(&env.store, &id, &built.dir, &PublishOptions::default())
        .await
        .unwrap();
}

/// A shard on `stub`'s embedder, with a short embed timeout.
async fn stub_shard(env: &Env, stub: &EmbedStub, name: &str) -> Proc {
    let mut args = shard_args(&env.store_url, &env.dir.path().join(name), name, &["--warm", "false"]);
    // These override the lexical-only default the helper sets in the environment.
    args.extend(
        [
            "--embedder",
            "http",
            "--embedder-url",
            &stub.url,
            "--embedder-model",
            embedder::MODEL,
            "--embed-timeout",
            "300ms",
        ]
        .map(String::from),
    );
    spawn(name, &args, &shard_env()).await
}

#[tokio::test]
async fn embedder_outage_degrades_hybrid_fails_vector_and_shards_still_start() {
    let env = env().await;
    let stub = EmbedStub::start().await;
    // An index with vectors from the stub, and a lexical one.
    publish_stub_vectors(&env, &stub).await;
    publish_fixture(&env.store, "lex", "b").await;

    let shard = stub_shard(&env, &stub, "s0").await;
    let hybrid = |url: String| async move {
        post_json(
            &format!("{url}/v1/indexes/vec/search"),
            json!({"query": "load config file"}),
        )
        .await
    };
    let body = with_every_arm(async || hybrid(shard.url.clone()).await).await;
    assert!(
        body["hits"][0]["arms"]["vector"].is_object(),
        "vectors used while up: {body}"
    );
    // File ranking takes the nearest chunks as one more kind of evidence.
    let files = |url: String| async move {
        post_json(
            &format!("{url}/v1/indexes/vec/search"),
            json!({"query": "load config file\n\nIt fails when the file is missing.", "group_by": "file"}),
        )
        .await
    };
    let body = with_every_arm(async || files(shard.url.clone()).await).await;
    assert_eq!(body["mode"], "hybrid", "{body}");
    assert_eq!(body["files"][0]["path"], "src/config.rs", "{body}");

    stub.set(Mode::Hang);
    let t = Instant::now();
    let (status, body) = hybrid(shard.url.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unavailable_arms"], json!(["vector"]), "{body}");
    assert_eq!(
        body["hits"][0]["symbol"], "load_config",
        "BM25 and graph still rank: {body}"
    );
    let (status, body) = files(shard.url.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unavailable_arms"], json!(["vector"]), "{body}");
    assert_eq!(
        body["files"][0]["path"], "src/config.rs",
        "lexical evidence still ranks: {body}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "answered without waiting on the embedder"
    );
    let (status, body) = post_json(
        &format!("{}/v1/indexes/vec/search", shard.url),
        json!({"query": "load config file", "mode": "vector"}),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "embedder_unavailable");
    assert_eq!(body["retryable"], true);
    assert!(
        metric(
            &shard.url,
            "trusty_search_arm_unavailable_total{arm=\"vector\",reason=\"embedder_timeout\"}"
        )
        .await
            >= 1.0
    );

    // A shard started during the outage comes up and serves.
    stub.set(Mode::Error);
    let late = stub_shard(&env, &stub, "s1").await;
    assert_eq!(search(&late.url, "lex", "config").await.status(), StatusCode::OK);
    let (status, body) = hybrid(late.url.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unavailable_arms"], json!(["vector"]));

    // Back up: vectors return once the breaker's cool-down has passed.
    stub.set(Mode::Up);
    let recovered = wait::until(Duration::from_secs(30), async || {
        let (status, body) = hybrid(late.url.clone()).await;
        every_arm(status, &body)
    })
    .await;
    assert!(recovered, "vectors came back with the embedder");
}

#[tokio::test]
async fn another_model_behind_the_embedder_url_turns_vectors_off_instead_of_answering_noise() {
    let env = env().await;
    let stub = EmbedStub::start().await;
    publish_stub_vectors(&env, &stub).await;
    // The service behind the URL now runs another model under the same name.
    stub.set(Mode::Other);
    let shard = stub_shard(&env, &stub, "s0").await;
    let url = format!("{}/v1/indexes/vec/search", shard.url);
    // The first embedded query checks the model; on a loaded machine it may
    // time out first (the 300 ms embed timeout), so ask until it is checked.
    let mut last = Value::Null;
    let refused = wait::until(Duration::from_secs(30), async || {
        let (status, body) = post_json(&url, json!({"query": "load config file", "mode": "vector"})).await;
        last = body;
        status == StatusCode::SERVICE_UNAVAILABLE && last["error"] == "embedder_mismatch"
    })
    .await;
    assert!(refused, "vector mode says the model is not the index's: {last}");
    assert_ne!(last["retryable"], true, "waiting does not help: {last}");
    let (status, body) = post_json(&url, json!({"query": "load config file"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unavailable_arms"], json!(["vector"]), "{body}");
    assert_eq!(
        body["hits"][0]["symbol"], "load_config",
        "BM25 and graph still rank: {body}"
    );
    assert!(
        body["hits"][0]["arms"]["vector"].is_null(),
        "no vector rank from another model: {body}"
    );
    assert!(
        metric(
            &shard.url,
            "trusty_search_arm_unavailable_total{arm=\"vector\",reason=\"embedder_mismatch\"}"
        )
        .await
            >= 2.0
    );
}

/// A search answered with every arm.
fn every_arm(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::OK && body["unavailable_arms"].as_array().is_none_or(|a| a.is_empty())
}

/// The first answer from `ask` with no arm missing. While the embedder is
/// up a query still misses its vector when the embedding does not arrive
/// within the embed timeout (a cold client, a loaded machine), and the
/// breaker then skips the embedder for its cool-down: asked again for up to
/// 30 s, so only an embedder that never serves fails the test.
async fn with_every_arm(ask: impl AsyncFn() -> (StatusCode, Value)) -> Value {
    let mut last = Value::Null;
    let answered = wait::until(Duration::from_secs(30), async || {
        let (status, body) = ask().await;
        let complete = every_arm(status, &body);
        last = body;
        complete
    })
    .await;
    assert!(answered, "every arm answers while the embedder is up: {last}");
    last
}

#[tokio::test]
async fn a_held_query_keeps_its_files_through_eviction_and_reload() {
    use trusty_search::api::SearchRequest;
    use trusty_search::shard::{Resolver, ShardConfig};
    let env = env().await;
    publish_fixture(&env.store, "held", "a").await;
    let cache = env.dir.path().join("cache");
    let resolver = Resolver::new(
        ShardConfig::local(&env.store_url, cache.clone(), "s0"),
        env.store.clone(),
        None,
    );
    let id = IndexId::new("held").unwrap();
    let held = resolver.get_or_load_index(&id).await.unwrap();
    let dir = held.engine().dir().to_path_buf();
    let slot = resolver.registry.get(&id).unwrap();
    // Evicted from memory, then its local copy dropped for disk: the held
    // handle still reads the directory, so it stays.
    assert!(resolver.evict(&slot));
    assert!(resolver.drop_disk_copy(&slot, false).is_some());
    assert!(dir.exists(), "a reader still holds it");
    // Reloaded while the old handle lives: the new handle claims the same directory.
    let again = resolver.get_or_load_index(&id).await.unwrap();
    assert_eq!(again.engine().dir(), dir);
    // Dropped where no runtime is, the old handle lets go before `join`
    // returns, so the check below sees its release, not a pending one.
    std::thread::spawn(move || drop(held)).join().unwrap();
    assert!(dir.exists(), "the new handle keeps its files");
    let resp = again.engine().search(&SearchRequest::new("load config")).await.unwrap();
    assert_eq!(resp.hits[0].symbol.as_deref(), Some("load_config"));
    // Retired (replaced or evicted from disk) and no longer read: gone.
    again.retire();
    resolver.evict(&slot);
    resolver.drop_disk_copy(&slot, false);
    // Inside the runtime the engine is freed on a blocking thread, so the
    // directory goes shortly after the handle, not during the drop.
    drop(again);
    let gone = wait::until(wait::PATIENCE, async || !dir.exists()).await;
    assert!(gone, "removed once the last reader let go");
}

async fn partials(dir: &Path) -> Vec<String> {
    settled_entries(dir, ".partial-").await
}

#[tokio::test]
async fn reload_is_asynchronous_and_a_timed_out_download_leaves_no_partial_directory() {
    let env = env().await;
    let first = publish_fixture(&env.store, "demo", "first").await;
    let cache = env.dir.path().join("cache");
    // The first version is downloaded under default limits, then the shard
    // restarts with tight ones and serves it from its cache directory.
    let mut warm = start_shard(&env, "s0", &cache, &["--poll-interval", "1h"]).await;
    assert_eq!(search(&warm.url, "demo", "config").await.status(), StatusCode::OK);
    warm.kill();
    let shard = start_shard(
        &env,
        "s0",
        &cache,
        &[
            "--load-timeout",
            "400ms",
            "--min-download-rate",
            "1GiB",
            "--poll-interval",
            "1h",
            "--download-parallelism",
            "1",
        ],
    )
    .await;
    assert_eq!(search(&shard.url, "demo", "config").await.status(), StatusCode::OK);
    publish_fixture(&env.store, "demo", "second").await;
    // The store answers nothing: a reload that waited for it (its reads of
    // CURRENT have no deadline but the client's 30 s read timeout) would
    // not answer within the 10 s this client waits.
    env.s3.hold(Hold::Everything);
    let reload = reqwest::Client::new()
        .post(format!("{}/v1/admin/indexes/demo/reload", shard.url))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("reload answers while the store does not");
    assert_eq!(
        reload.status(),
        StatusCode::ACCEPTED,
        "reload answers before it downloads"
    );
    let accepted: Value = reload.json().await.unwrap();
    assert!(
        accepted["owners"][0]["last_error"].is_null(),
        "answered before its refresh ended: {accepted}"
    );
    let asked = wait::until(wait::PATIENCE, async || env.s3.held() >= 1).await;
    assert!(asked, "the reload's refresh reads the store after answering");
    // Now the pointers are read and the bundle's files are not: the
    // download cannot finish, and its deadline (load timeout 400 ms, at
    // 1 GiB/s) ends it with a partial directory on disk.
    env.s3.hold(Hold::BundleFiles);
    let failed = wait::until(wait::PATIENCE, async || {
        let st = status_of(&shard.url, "demo").await;
        st["owners"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("timeout"))
    })
    .await;
    env.s3.release();
    assert!(failed, "{}", status_of(&shard.url, "demo").await);
    let left = partials(&cache.join("demo")).await;
    assert!(left.is_empty(), "{left:?}");
    let st = status_of(&shard.url, "demo").await;
    assert_eq!(st["version"], first.version.as_str(), "the old version keeps serving");
    assert_eq!(search(&shard.url, "demo", "config").await.status(), StatusCode::OK);
}

/// An index unregistered while it restores: the request waiting on it is
/// told it is gone, no second restore starts, and the first one's result is
/// discarded rather than served from a slot the shard no longer lists.
#[tokio::test]
async fn unregistering_an_index_while_it_restores_discards_the_restore() {
    let env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    let cache = env.dir.path().join("cache");
    // The waiter waits as long as the test takes to unregister.
    let flags = [
        "--warm",
        "false",
        "--negative-cache",
        "1h",
        "--load-wait",
        "10m",
        "--request-timeout",
        "10m",
    ];
    let shard = start_shard(&env, "s0", &cache, &flags).await;
    // The store answers nothing until the index is unregistered: the restore
    // cannot finish first, however quick or slow this machine is.
    env.s3.hold(Hold::Everything);
    let url = shard.url.clone();
    let waiting = tokio::spawn(async move { search(&url, "demo", "config").await.status() });
    let running = "trusty_restores{state=\"running\"}";
    let restoring = wait::until(wait::PATIENCE, async || metric(&shard.url, running).await >= 1.0).await;
    assert!(restoring, "the search started a restore");
    let r = admin(&shard.url, reqwest::Method::DELETE, "/v1/admin/indexes/demo").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        waiting.await.unwrap(),
        StatusCode::NOT_FOUND,
        "the waiter learns it is gone"
    );
    env.s3.release();
    // The restore in flight finishes (and gives its admission slot back).
    let finished = wait::until(wait::PATIENCE, async || metric(&shard.url, running).await == 0.0).await;
    assert!(finished, "the restore in flight finished");
    assert_eq!(
        metric(&shard.url, "trusty_index_loads_total").await,
        1.0,
        "no second restore"
    );
    assert_eq!(metric(&shard.url, "trusty_indexes{state=\"hot\"}").await, 0.0);
}

#[tokio::test]
async fn a_restart_counts_old_versions_on_disk_against_the_budget() {
    let env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    let cache = env.dir.path().join("cache");
    let mut shard = start_shard(&env, "s0", &cache, &[]).await;
    assert_eq!(search(&shard.url, "demo", "config").await.status(), StatusCode::OK);
    // Let the poller save the recently used list, then kill -9.
    let recent = cache.join(".recent.json");
    let saved = wait::until(wait::PATIENCE, async || {
        std::fs::read_to_string(&recent).is_ok_and(|r| r.contains("demo"))
    })
    .await;
    assert!(saved, "the recently used list was saved");
    shard.kill();
    let real = dir_bytes(&cache.join("demo"));
    let junk = |dir: &Path, bytes: usize| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("data"), vec![0u8; bytes]).unwrap();
        std::fs::write(dir.join(".complete"), "x").unwrap();
    };
    // An older version of demo, a leftover partial, and a verified copy of an
    // index storage no longer has, larger than the room left.
    let old = cache.join("demo/v0old");
    junk(&old, 1 << 20);
    let week_ago = std::time::SystemTime::now() - Duration::from_secs(7 * 86400);
    std::fs::File::open(&old).unwrap().set_modified(week_ago).unwrap();
    std::fs::create_dir_all(cache.join("demo/v9.partial-abc")).unwrap();
    junk(&cache.join("gone/v1"), 2 << 20);
    let budget = (real + (1 << 20)).to_string();
    let shard = start_shard(&env, "s0", &cache, &["--disk-budget", &budget, "--warm", "false"]).await;
    assert!(!old.exists(), "older version removed");
    assert!(partials(&cache.join("demo")).await.is_empty(), "partial removed");
    assert!(
        !cache.join("gone/v1").exists(),
        "over budget: the least recently used copy went"
    );
    let disk = metric(&shard.url, "trusty_cache_bytes{tier=\"disk\"}").await;
    assert!(disk > 0.0 && disk <= budget.parse::<f64>().unwrap(), "{disk}");
    // The kept copy is reused: a search loads without downloading the files again.
    let before = metric(&shard.url, "trusty_object_store_bytes_total{direction=\"read\"}").await;
    assert_eq!(search(&shard.url, "demo", "config").await.status(), StatusCode::OK);
    let read = metric(&shard.url, "trusty_object_store_bytes_total{direction=\"read\"}").await - before;
    assert!(read < 1024.0, "only CURRENT was read: {read} bytes");
}

#[tokio::test]
async fn random_unknown_ids_are_remembered_in_bounded_memory() {
    let env = env().await;
    let shard = start_shard(
        &env,
        "s0",
        &env.dir.path().join("cache"),
        &["--negative-cache-entries", "50", "--negative-cache", "1h"],
    )
    .await;
    let client = reqwest::Client::new();
    for i in 0..300 {
        let r = client
            .post(format!("{}/v1/indexes/nope-{i}/search", shard.url))
            .json(&json!({"query": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(metric(&shard.url, "trusty_unknown_ids_remembered").await, 50.0);
    // Remembered ids cost no store request.
    let heads = metric(&shard.url, "trusty_object_store_requests_total{op=\"head\"}").await;
    assert_eq!(
        search(&shard.url, "nope-299", "x").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        metric(&shard.url, "trusty_object_store_requests_total{op=\"head\"}").await,
        heads
    );
}

#[tokio::test]
async fn graph_mode_reads_a_bounded_share_of_a_long_query_and_fan_out_is_capped() {
    let env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    let shard = start_shard(
        &env,
        "s0",
        &env.dir.path().join("cache"),
        &["--max-fanout-indexes", "3"],
    )
    .await;
    let words: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
    let query = format!("{} load_config", words.join(" "));
    assert!(query.len() > 4000);
    let query = &query[query.len() - 4000..];
    let (status, body) = post_json(
        &format!("{}/v1/indexes/demo/search", shard.url),
        json!({"query": query, "mode": "graph"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = post_json(
        &format!("{}/v1/search", shard.url),
        json!({"query": "config", "indexes": ["a", "b", "c", "d"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("at most 3"), "{body}");
}

#[tokio::test]
async fn a_shard_joining_takes_over_its_indexes_without_cold_errors() {
    use trusty_search::router::config::RouterConfig;
    use trusty_search::router::membership::{self, ShardEndpoint};
    let env = env().await;
    let names = ids("hand", 16);
    publish_copies(&env.store, &names, "a").await;
    // Four shard processes; the router starts with three of them.
    let mut shards = Vec::new();
    for i in 0..4 {
        let cache = env.dir.path().join(format!("cache-{i}"));
        shards.push(
            spawn(
                &shard_name(i),
                &shard_args(&env.store_url, &cache, &shard_name(i), &[]),
                &shard_env(),
            )
            .await,
        );
    }
    let endpoint = |i: usize| ShardEndpoint {
        name: shard_name(i),
        url: shards[i].url.clone(),
    };
    let (tx, members) = membership::fixed((0..3).map(endpoint).collect());
    let mut cfg = RouterConfig::local("");
    cfg.admin_token = Some(ADMIN_TOKEN.to_string());
    cfg.probe_interval = Duration::from_millis(200);
    let router = trusty_search::router::server::start_with_members(cfg, tx.clone(), members, Vec::new())
        .await
        .unwrap();
    let url = router.url();
    for id in &names {
        assert_eq!(search(&url, id, "config").await.status(), StatusCode::OK);
    }
    // Slow downloads, so the new owner cannot warm instantly.
    env.s3.set_delay(Duration::from_millis(200));
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let ok = Arc::new(AtomicU64::new(0));
    let client = {
        let (url, names, stop, bad, ok) = (url.clone(), names.clone(), stop.clone(), bad.clone(), ok.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for id in &names {
                    let r = search(&url, id, "config").await;
                    if r.status() == StatusCode::OK {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        bad.lock().push((id.clone(), status, text));
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send_replace((0..4).map(endpoint).collect());
    let new_shard = shards[3].url.clone();
    let route = "trusty_http_requests_total{outcome=\"ok\",role=\"shard\",route=\"/v1/indexes/{id}/search\"}";
    let took_over = wait::until(wait::PATIENCE, async || metric(&new_shard, route).await > 0.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    env.s3.set_delay(Duration::ZERO);
    assert!(took_over, "the new shard serves the indexes it gained");
    assert!(ok.load(Ordering::Relaxed) > names.len() as u64);
    assert!(
        bad.lock().is_empty(),
        "no request failed during the hand-off: {:?}",
        bad.lock()
    );
    router.stop().await;
    drop(shards);
}
