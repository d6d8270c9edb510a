//! The shard as a real process against a real S3-compatible server.

use crate::support::fixtures::{publish_fixture, settled_entries};
use crate::support::http::{get_json, metric, post_json, search};
use crate::support::process::Proc;
use crate::support::s3::Hold;
use crate::support::shard::{admin, env, sizes, start_shard};
use crate::support::wait;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use trusty_search::IndexId;
use trusty_search::storage::layout;

#[tokio::test]
async fn hundred_concurrent_requests_cause_one_restore() {
    let env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    let shard = start_shard(&env, "s0", &env.dir.path().join("cache"), &[]).await;
    let url = shard.url.clone();
    let requests = (0..100).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let r = search(&url, "demo", "load config").await;
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (status, body)
        })
    });
    let results = futures::future::join_all(requests).await;
    for r in results {
        let (status, body) = r.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["hits"][0]["symbol"], "load_config", "{body}");
    }
    assert_eq!(
        metric(&url, "trusty_index_loads_total").await,
        1.0,
        "exactly one restore"
    );
    assert_eq!(metric(&url, "trusty_indexes{state=\"hot\"}").await, 1.0);
}

#[tokio::test]
async fn slow_restore_answers_503_then_serves_without_a_second_restore() {
    let env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    env.s3.set_delay(Duration::from_millis(400));
    let shard = start_shard(
        &env,
        "s0",
        &env.dir.path().join("cache"),
        &["--load-wait", "300ms", "--warm", "false"],
    )
    .await;
    let r = search(&shard.url, "demo", "load config").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some(), "503 carries Retry-After");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "index_loading");
    assert_eq!(body["retryable"], true);
    assert_eq!(body["index_id"], "demo");
    env.s3.set_delay(Duration::ZERO);
    let served = wait::until(wait::PATIENCE, async || {
        search(&shard.url, "demo", "load config").await.status() == StatusCode::OK
    })
    .await;
    assert!(served, "index never became hot");
    assert_eq!(
        metric(&shard.url, "trusty_index_loads_total").await,
        1.0,
        "no second restore"
    );
}

#[tokio::test]
async fn corrupt_index_fails_alone_and_recovers_after_reset() {
    let env = env().await;
    let bad = publish_fixture(&env.store, "bad", "a").await;
    publish_fixture(&env.store, "good", "b").await;
    let key = format!("cluster/indexes/bad/versions/{}/chunks.jsonl", bad.version);
    let path = env.s3.object_path(&key);
    let original = std::fs::read(&path).unwrap();
    let mut broken = original.clone();
    broken[5] ^= 0x20;
    std::fs::write(&path, &broken).unwrap();

    // A long backoff so only the reset can bring it back quickly.
    let shard = start_shard(
        &env,
        "s0",
        &env.dir.path().join("cache"),
        &["--retry-base", "10m", "--retry-max", "10m"],
    )
    .await;
    let r = search(&shard.url, "bad", "config").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "index_restore_failed", "{body}");
    assert_eq!(body["retryable"], false);
    assert!(body["message"].as_str().unwrap().contains("checksum"), "{body}");
    assert_eq!(
        metric(&shard.url, "trusty_index_load_failures_total{reason=\"corrupt\"}").await,
        1.0
    );

    // Other indexes are unaffected.
    assert_eq!(search(&shard.url, "good", "config").await.status(), StatusCode::OK);
    let status: Value = get_json(&format!("{}/v1/indexes/bad", shard.url)).await;
    assert_eq!(status["owners"][0]["state"], "failed");
    assert!(
        status["owners"][0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("corrupt"),
        "{status}"
    );

    // Still failed (backoff) until fixed and reset.
    assert_eq!(
        search(&shard.url, "bad", "config").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    std::fs::write(&path, &original).unwrap();
    assert_eq!(
        admin(&shard.url, reqwest::Method::POST, "/v1/admin/indexes/bad/reset")
            .await
            .status(),
        StatusCode::OK
    );
    let r = search(&shard.url, "bad", "config").await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
}

#[tokio::test]
async fn missing_object_and_incompatible_schema_fail_with_reasons() {
    let env = env().await;
    let missing = publish_fixture(&env.store, "missing", "a").await;
    std::fs::remove_file(env.s3.object_path(&format!(
        "cluster/indexes/missing/versions/{}/graph.bin",
        missing.version
    )))
    .unwrap();
    let newer = publish_fixture(&env.store, "newer", "a").await;
    let manifest_path = env.s3.object_path(&format!(
        "cluster/indexes/newer/versions/{}/manifest.json",
        newer.version
    ));
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["schema_version"] = json!(99);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    std::fs::write(&manifest_path, &bytes).unwrap();
    let pointer = json!({"version": newer.version, "manifest_sha256": trusty_search::model::sha256_hex(&bytes)});
    std::fs::write(
        env.s3.object_path("cluster/indexes/newer/CURRENT"),
        serde_json::to_vec(&pointer).unwrap(),
    )
    .unwrap();

    let shard = start_shard(&env, "s0", &env.dir.path().join("cache"), &["--retry-base", "10m"]).await;
    let body: Value = search(&shard.url, "missing", "config").await.json().await.unwrap();
    assert_eq!(body["error"], "index_restore_failed");
    assert!(body["message"].as_str().unwrap().contains("missing"), "{body}");
    let body: Value = search(&shard.url, "newer", "config").await.json().await.unwrap();
    assert_eq!(body["error"], "index_restore_failed");
    assert!(
        body["message"].as_str().unwrap().contains("schema version 99"),
        "{body}"
    );
    assert_eq!(
        metric(
            &shard.url,
            "trusty_index_load_failures_total{reason=\"incompatible_schema\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn store_outage_is_survived_and_recovered_by_backoff() {
    let mut env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    let shard = start_shard(&env, "s0", &env.dir.path().join("cache"), &["--warm", "false"]).await;
    env.s3.stop().await;
    let r = search(&shard.url, "demo", "config").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("unavailable"), "{body}");
    assert!(shard_alive(&shard).await, "the shard must not crash");
    env.s3.restart().await;
    // The failed restore is retried after its backoff (500ms base in tests).
    let ok = wait::until(wait::PATIENCE, async || {
        search(&shard.url, "demo", "config").await.status() == StatusCode::OK
    })
    .await;
    assert!(ok, "index did not come back with the store");
}

async fn shard_alive(p: &Proc) -> bool {
    reqwest::get(format!("{}/healthz", p.url))
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

#[tokio::test]
async fn kill_during_download_leaves_nothing_half_written() {
    let env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    let cache = env.dir.path().join("cache");
    let mut shard = start_shard(&env, "s0", &cache, &["--load-wait", "100ms", "--warm", "false"]).await;
    // The restore reads its pointers and starts downloading; the files
    // themselves do not come until the shard is dead.
    env.s3.hold(Hold::BundleFiles);
    assert_eq!(
        search(&shard.url, "demo", "config").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Wait until the download directory exists, then kill -9 mid-download.
    let partial_exists = || {
        std::fs::read_dir(cache.join("demo"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(".partial-"))
            })
            .unwrap_or(false)
    };
    let started = wait::until(wait::PATIENCE, async || partial_exists()).await;
    assert!(started, "download never started");
    shard.kill();
    assert!(partial_exists(), "killed mid-download");

    env.s3.release();
    let shard = start_shard(&env, "s0", &cache, &["--warm", "false"]).await;
    let left = settled_entries(&cache.join("demo"), ".partial-").await;
    assert!(left.is_empty(), "restart cleans partial downloads: {left:?}");
    let r = search(&shard.url, "demo", "config").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn least_recently_used_index_is_evicted_under_the_memory_budget() {
    let env = env().await;
    publish_fixture(&env.store, "one", "a").await;
    publish_fixture(&env.store, "two", "b").await;
    // Room for one of the two fixtures, not both.
    let (memory, _) = sizes(&env, "one").await;
    let budget = format!("{}", memory + memory / 2);
    let shard = start_shard(&env, "s0", &env.dir.path().join("cache"), &["--memory-budget", &budget]).await;
    assert_eq!(search(&shard.url, "one", "config").await.status(), StatusCode::OK);
    assert_eq!(search(&shard.url, "two", "config").await.status(), StatusCode::OK);
    let one: Value = get_json(&format!("{}/v1/indexes/one", shard.url)).await;
    let two: Value = get_json(&format!("{}/v1/indexes/two", shard.url)).await;
    assert_eq!(one["owners"][0]["state"], "cold", "{one}");
    assert_eq!(two["owners"][0]["state"], "hot", "{two}");
    assert_eq!(metric(&shard.url, "trusty_cache_evictions_total").await, 1.0);
    // Coming back reuses the verified local copy.
    assert_eq!(search(&shard.url, "one", "config").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn new_version_is_swapped_in_under_queries_with_no_failures() {
    let env = env().await;
    let first = publish_fixture(&env.store, "demo", "first").await;
    let shard = start_shard(&env, "s0", &env.dir.path().join("cache"), &[]).await;
    assert_eq!(search(&shard.url, "demo", "config").await.status(), StatusCode::OK);

    let url = shard.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let client = tokio::spawn(async move {
        let (mut ok, mut failed, mut versions) = (0, 0, std::collections::BTreeSet::new());
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let r = search(&url, "demo", "parse config").await;
            if r.status() == StatusCode::OK {
                ok += 1;
                let body: Value = r.json().await.unwrap();
                versions.insert(body["version"].as_str().unwrap().to_string());
            } else {
                failed += 1;
            }
        }
        (ok, failed, versions)
    });
    let second = publish_fixture(&env.store, "demo", "second").await;
    let swapped = wait::until(wait::PATIENCE, async || {
        let st: Value = get_json(&format!("{}/v1/indexes/demo", shard.url)).await;
        st["version"] == second.version.as_str()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, versions) = client.await.unwrap();
    assert!(swapped, "new version never served");
    assert_eq!(failed, 0, "queries failed during the swap");
    assert!(ok > 0);
    assert!(
        versions.contains(&first.version) && versions.contains(&second.version),
        "{versions:?}"
    );
    assert_eq!(metric(&shard.url, "trusty_index_swaps_total").await, 1.0);
}

/// A new version that cannot load leaves the old one serving, and polls do
/// not download it again each time: its retries back off (10 minutes here,
/// against a poll every half second). An admin reload still tries at once.
#[tokio::test]
async fn a_new_version_that_fails_to_load_is_not_fetched_again_every_poll() {
    let env = env().await;
    let first = publish_fixture(&env.store, "demo", "first").await;
    let args = ["--retry-base", "10m", "--retry-max", "1h"];
    let shard = start_shard(&env, "s0", &env.dir.path().join("cache"), &args).await;
    assert_eq!(search(&shard.url, "demo", "config").await.status(), StatusCode::OK);

    // A version of "demo" whose manifest names another index: every try fails.
    // (Through the store, not the server's files: `CURRENT` must get a new ETag.)
    let other = publish_fixture(&env.store, "other", "second").await;
    let (demo, other_id) = (IndexId::new("demo").unwrap(), IndexId::new("other").unwrap());
    let manifest = env
        .store
        .get(&layout::manifest_key(&other_id, &other.version))
        .await
        .unwrap();
    env.store
        .put(&layout::manifest_key(&demo, &other.version), manifest)
        .await
        .unwrap();
    let pointer = json!({"version": other.version, "manifest_sha256": other.manifest_sha256});
    env.store
        .put(
            &layout::current_key(&demo),
            serde_json::to_vec(&pointer).unwrap().into(),
        )
        .await
        .unwrap();

    let url = shard.url.as_str();
    let failures = || metric(url, "trusty_index_load_failures_total{reason=\"corrupt\"}");
    let wait_for = |n: f64| async move {
        let tried = wait::until(wait::PATIENCE, async || failures().await >= n).await;
        assert!(tried, "fewer than {n} failed tries");
    };
    wait_for(1.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // six polls
    assert_eq!(failures().await, 1.0, "one try, then backing off");
    let r: Value = search(&shard.url, "demo", "config").await.json().await.unwrap();
    assert_eq!(r["version"], first.version.as_str(), "the old version still serves");
    let status: Value = get_json(&format!("{}/v1/indexes/demo", shard.url)).await;
    assert!(
        status["owners"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("next try in"),
        "{status}"
    );

    let r = admin(&shard.url, reqwest::Method::POST, "/v1/admin/indexes/demo/reload").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    wait_for(2.0).await;
}

#[tokio::test]
async fn bad_requests_get_clear_client_errors() {
    let env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    let shard = start_shard(&env, "s0", &env.dir.path().join("cache"), &[]).await;
    let c = reqwest::Client::new();
    let post = |path: &str, body: String| {
        c.post(format!("{}{path}", shard.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r = post("/v1/indexes/demo/search", "{not json".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    assert_eq!(body["retryable"], false);

    let r = post("/v1/indexes/demo/search", json!({"query": "x", "bogus": 1}).to_string())
        .await
        .unwrap();
    assert!(r.status().is_client_error());

    let r = post("/v1/indexes/demo/search", json!({"query": ""}).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = post(
        "/v1/indexes/demo/search",
        json!({"query": "x", "top_k": 100000}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A bad filter is refused before the cold index is restored for it, and
    // a fan-out refuses it once rather than failing on every index.
    for query in ["x lang:cobol", "x path:["] {
        let r = post("/v1/indexes/demo/search", json!({"query": query}).to_string())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let r = post("/v1/search", json!({"query": query}).to_string()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    let status: Value = get_json(&format!("{}/v1/indexes/demo", shard.url)).await;
    assert_eq!(status["owners"][0]["state"], "cold", "{status}");
    let r = post("/v1/search", json!({"query": "x", "deadline_ms": 0}).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post(
        "/v1/indexes/demo/search",
        json!({"query": "x", "mode": "graph", "group_by": "file"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Its own client: the server answers 413 before reading the body and
    // closes that connection, which a pooled client would otherwise reuse.
    // A write racing that close can fail on the client side; the answer must be a 413.
    let big = json!({"query": "x".repeat(700_000)}).to_string();
    let mut answer = None;
    for _ in 0..5 {
        let sent = reqwest::Client::new()
            .post(format!("{}/v1/indexes/demo/search", shard.url))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await;
        if let Ok(r) = sent {
            answer = Some(r);
            break;
        }
    }
    let r = answer.expect("an answer to the oversized request");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");

    // Binary junk costs six bytes a character once escaped, and is still a query.
    let junk: String = (0..60_000u32).map(|i| char::from_u32(i % 31 + 1).unwrap()).collect();
    let r = post("/v1/indexes/demo/search", json!({"query": junk}).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = post("/v1/indexes/nope/search", json!({"query": "x"}).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "index_not_found");
    assert_eq!(body["index_id"], "nope");

    for bad in ["..%2Fetc", "UPPER", "a%20b", "a..b", "..x"] {
        let r = post(&format!("/v1/indexes/{bad}/search"), json!({"query": "x"}).to_string())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_index_id", "{bad}");
    }

    let r = c
        .post(format!("{}/v1/admin/indexes/demo/reset", shard.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(format!(
            "{}/v1/indexes/demo/symbols/load_config?rel=sideways",
            shard.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn symbols_and_status_go_through_the_resolver() {
    let env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    let shard = start_shard(&env, "s0", &env.dir.path().join("cache"), &["--warm", "false"]).await;
    let st: Value = get_json(&format!("{}/v1/indexes/demo", shard.url)).await;
    assert_eq!(st["owners"][0]["state"], "cold", "status does not load: {st}");
    assert_eq!(st["owners"][0]["shard"], "s0");
    let r: Value = get_json(&format!(
        "{}/v1/indexes/demo/symbols/load_config?rel=callers",
        shard.url
    ))
    .await;
    let callers: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["symbol"].as_str().unwrap())
        .collect();
    assert!(callers.contains(&"start"), "{r}");
    let list: Value = get_json(&format!("{}/v1/indexes", shard.url)).await;
    assert_eq!(list["indexes"][0]["state"], "hot");
    assert_eq!(
        reqwest::get(format!("{}/v1/indexes/nope", shard.url))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn file_search_reads_a_pasted_issue_and_ranks_files() {
    let env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    let shard = start_shard(&env, "s0", &env.dir.path().join("cache"), &[]).await;
    // Longer than any short query: an issue with a log and a stack frame.
    let issue = format!(
        "load_config panics when the file is missing\n\nSteps: start the server.\n\n{}\n\
         Traceback (most recent call last):\n  File \"/srv/app/src/config.rs\", line 3, in load_config\n",
        "log line with nothing useful in it\n".repeat(300)
    );
    assert!(issue.len() > 8 * 1024);
    let (_, body) = post_json(
        &format!("{}/v1/indexes/demo/search", shard.url),
        json!({"query": issue, "group_by": "file"}),
    )
    .await;
    let files = body["files"].as_array().expect("a grouped answer lists files");
    assert_eq!(files[0]["path"], "src/config.rs", "{body}");
    assert!(body["hits"].as_array().unwrap().is_empty(), "{body}");
    let chunks = files[0]["chunks"].as_array().unwrap();
    assert!(
        chunks.iter().any(|c| c["symbol"] == "load_config"),
        "its best chunks carry their line ranges: {body}"
    );

    // Across indexes, files are merged and say where they came from.
    let (_, body) = post_json(
        &format!("{}/v1/search", shard.url),
        json!({"query": "load config", "group_by": "file", "indexes": ["demo"], "deadline_ms": 10000}),
    )
    .await;
    let files = body["files"].as_array().expect("merged files");
    assert!(!files.is_empty(), "{body}");
    assert!(files.iter().all(|f| f["index_id"] == "demo"), "{body}");
}

#[tokio::test]
async fn chunk_search_reads_a_pasted_issue_by_its_title() {
    let env = env().await;
    publish_fixture(&env.store, "demo", "a").await;
    let shard = start_shard(&env, "s0", &env.dir.path().join("cache"), &[]).await;
    // The title names the bug; the body rambles about the configuration, in
    // more of the index's words than the title has.
    let issue = "handle_request drops the request body when the port is busy\n\n\
        We load the config file from disk with load_config, and parse_config reads its text into \
        the Config struct with the raw string and the flavour. The path is read with \
        fs::read_to_string and the configuration text is parsed again after every load, so the \
        config file, its path and its text are all fine. Loading the configuration works.";
    // The BM25 arm alone: hybrid also fuses the file ranking, which here
    // weighs the three chunks of config.rs against one in server.rs.
    let (status, body) = post_json(
        &format!("{}/v1/indexes/demo/search", shard.url),
        json!({"query": issue, "mode": "bm25", "top_k": 3}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hits"][0]["symbol"], "handle_request", "{body}");
}
