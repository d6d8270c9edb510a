//! Router end to end: real router and shard processes, a real S3-compatible
//! server, real HTTP, and shards killed with SIGKILL.

use crate::support::cluster::{Cluster, shard_name};
use crate::support::fixtures::publish_fixture;
use crate::support::http::{get_json, metric, post_json, search};
use crate::support::process::ADMIN_TOKEN;
use crate::support::wait;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use trusty_search::router::ring;

/// The first owner of `id` among shards 0..n by the specified ring.
fn first_owner(id: &str, n: usize) -> usize {
    let names: Vec<String> = (0..n).map(shard_name).collect();
    let owner = ring::rank(id, &names)[0].clone();
    names.iter().position(|s| *s == owner).unwrap()
}

#[tokio::test]
async fn searches_route_to_owners_and_status_shows_each_owner() {
    let c = Cluster::start(3, 2, &[]).await;
    publish_fixture(&c.store, "demo", "a").await;
    let r = search(&c.router.url, "demo", "load config").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["hits"][0]["symbol"], "load_config");

    let st: Value = get_json(&format!("{}/v1/indexes/demo", c.router.url)).await;
    let owners = st["owners"].as_array().unwrap();
    assert_eq!(owners.len(), 2, "{st}");
    let names: Vec<String> = (0..3).map(shard_name).collect();
    let expected: Vec<&String> = ring::rank("demo", &names).into_iter().take(2).collect();
    for (o, e) in owners.iter().zip(expected) {
        assert_eq!(o["shard"].as_str().unwrap(), e.as_str());
    }
    assert_eq!(owners[0]["state"], "hot", "the first owner served the query: {st}");
    assert_eq!(st["version"], owners[0]["version"]);

    let list: Value = get_json(&format!("{}/v1/indexes", c.router.url)).await;
    assert!(
        list["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["index_id"] == "demo")
    );
    assert_eq!(
        metric(&c.router.url, "trusty_router_affinity_rank_total{rank=\"0\"}").await,
        1.0
    );
}

/// Label pairs appear in name order in the exposition.
const SHARD_SEARCH_OK: &str =
    "trusty_http_requests_total{outcome=\"ok\",role=\"shard\",route=\"/v1/indexes/{id}/search\"}";

#[tokio::test]
async fn killing_a_shard_under_load_fails_no_queries_and_it_comes_back() {
    let mut c = Cluster::start(3, 2, &[]).await;
    // An index whose first owner we will kill.
    let victim = 1;
    let id = (0..200)
        .map(|i| format!("idx-{i}"))
        .find(|id| first_owner(id, 3) == victim)
        .unwrap();
    publish_fixture(&c.store, &id, "a").await;
    assert_eq!(search(&c.router.url, &id, "config").await.status(), StatusCode::OK);

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let last_failure = Arc::new(parking_lot::Mutex::new(None::<Instant>));
    let client = {
        let (url, id, stop, failed, ok, last_failure) = (
            c.router.url.clone(),
            id.clone(),
            stop.clone(),
            failed.clone(),
            ok.clone(),
            last_failure.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = search(&url, &id, "config").await;
                if r.status() == StatusCode::OK {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    *last_failure.lock() = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    c.kill_shard(victim);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ok_after_kill = ok.load(Ordering::Relaxed);
    wait::until(wait::PATIENCE, async || ok.load(Ordering::Relaxed) > ok_after_kill).await;
    assert!(
        ok.load(Ordering::Relaxed) > ok_after_kill,
        "queries keep succeeding after the kill"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no failed queries (retry on the next owner)"
    );
    let served_elsewhere = killed_at.elapsed();
    eprintln!(
        "killed shard: {} queries ok, 0 failed, served elsewhere throughout ({served_elsewhere:?})",
        ok.load(Ordering::Relaxed)
    );

    // Restart under the same name: its indexes come back to it.
    // It comes back cold, and the router keeps the traffic on the hot
    // replica until it has warmed: how long that takes depends on the machine.
    c.restart_shard(victim).await;
    let before = metric(&c.shard_url(victim), SHARD_SEARCH_OK).await;
    wait::until(wait::PATIENCE, async || {
        metric(&c.shard_url(victim), SHARD_SEARCH_OK).await > before
    })
    .await;
    let after = metric(&c.shard_url(victim), SHARD_SEARCH_OK).await;
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    assert!(
        after > before,
        "the restarted first owner serves its index again ({before} -> {after})"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no failures across the restart either"
    );
    assert!(metric(&c.router.url, "trusty_router_retries_total").await >= 1.0);
}

#[tokio::test]
async fn fan_out_over_fifty_indexes_with_an_owner_down_returns_partial_results() {
    let mut c = Cluster::start(3, 1, &[]).await;
    let ids: Vec<String> = (0..50).map(|i| format!("fan-{i:02}")).collect();
    for id in &ids {
        publish_fixture(&c.store, id, "a").await;
    }
    // A fan-out never waits for cold indexes: it skips them and warms them
    // through each shard's restore queue, so repeating it warms all fifty.
    let mut warm = Value::Null;
    wait::until(wait::PATIENCE, async || {
        warm = post_json(
            &format!("{}/v1/search", c.router.url),
            json!({"query": "config", "deadline_ms": 5000, "indexes": ids}),
        )
        .await
        .1;
        warm["searched"].as_array().unwrap().len() == 50
    })
    .await;
    assert_eq!(warm["searched"].as_array().unwrap().len(), 50, "{warm}");
    // Shards discover new indexes by polling storage; then "all" means all 50.
    let mut listed = 0;
    wait::until(wait::PATIENCE, async || {
        let list: Value = get_json(&format!("{}/v1/indexes", c.router.url)).await;
        let mut names: Vec<&str> = list["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index_id"].as_str().unwrap())
            .collect();
        names.dedup();
        listed = names.len();
        listed == 50
    })
    .await;
    assert_eq!(listed, 50);

    let down = 2;
    let owned_by_down: Vec<&String> = ids.iter().filter(|id| first_owner(id, 3) == down).collect();
    assert!(!owned_by_down.is_empty());
    c.kill_shard(down);
    // Their new owners must download them, slowly: they cannot make the deadline.
    c.s3.set_delay(Duration::from_millis(800));
    let started = Instant::now();
    let (_, r) = post_json(
        &format!("{}/v1/search", c.router.url),
        json!({"query": "config", "deadline_ms": 5000, "top_k": 100}),
    )
    .await;
    let took = started.elapsed();
    c.s3.set_delay(Duration::ZERO);
    let searched = r["searched"].as_array().unwrap().len();
    let skipped: Vec<&str> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index_id"].as_str().unwrap())
        .collect();
    let failed = r["failed"].as_array().unwrap().len();
    assert_eq!(searched + skipped.len() + failed, 50, "every index accounted for: {r}");
    assert_eq!(failed, 0, "{r}");
    // Only indexes of the dead shard can be missing (bounded-load spill during
    // the warm-up may have made a few of them hot on their second owner too).
    assert!(!skipped.is_empty(), "{r}");
    for id in &skipped {
        assert!(
            owned_by_down.iter().any(|o| o == id),
            "{id} skipped but its owner is alive: {r}"
        );
    }
    assert!(searched >= 50 - owned_by_down.len(), "{r}");
    assert!(
        took < Duration::from_secs(15),
        "answered within the deadline (+ margin): {took:?}"
    );
    assert!(metric(&c.router.url, "trusty_fanout_partial_total{kind=\"skipped\"}").await >= owned_by_down.len() as f64);
    // The shortest deadline still gets the list of indexes (its listing has a
    // floor): an answer that names every index, not a 503 without them.
    let (status, r) = post_json(
        &format!("{}/v1/search", c.router.url),
        json!({"query": "config", "deadline_ms": 10}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let named = ["searched", "skipped", "failed"]
        .iter()
        .map(|k| r[k].as_array().unwrap().len())
        .sum::<usize>();
    assert_eq!(named, 50, "{r}");
}

#[tokio::test]
async fn router_refuses_bad_input_clearly() {
    let c = Cluster::start(2, 2, &[]).await;
    publish_fixture(&c.store, "demo", "a").await;
    let client = reqwest::Client::new();
    let url = &c.router.url;
    let r = client
        .post(format!("{url}/v1/indexes/demo/search"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_request");
    assert_eq!(search(url, "nope", "x").await.status(), StatusCode::NOT_FOUND);
    let r = search(url, "a..b", "x").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client
        .post(format!("{url}/v1/admin/indexes/demo/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client
        .post(format!("{url}/v1/admin/indexes/demo/reset"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client
        .post(format!("{url}/v1/admin/indexes/demo/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    // Reload downloads in the background: accepted, not awaited.
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);
    let r = client
        .post(format!("{url}/v1/search"))
        .json(&json!({"query": "x", "indexes": ["../etc"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A filter the shards refuse is one 400, not a failure per index.
    let r = client
        .post(format!("{url}/v1/search"))
        .json(&json!({"query": "x lang:cobol"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("cobol"), "{body}");
    let r = client
        .get(format!("{url}/v1/indexes/demo/symbols/x?depth=99"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let doc: Value = client
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["paths"]["/v1/indexes/{id}/search"]["post"]["requestBody"].is_object(),
        "{doc}"
    );
}

#[tokio::test]
async fn code_reads_back_through_the_router_as_indexed() {
    let c = Cluster::start(2, 2, &[]).await;
    publish_fixture(&c.store, "demo", "a").await;
    let url = &c.router.url;
    let get = |path: String| async move {
        let r = reqwest::get(format!("{url}{path}")).await.unwrap();
        let status = r.status();
        (status, r.json::<Value>().await.unwrap())
    };

    let (status, f) = get("/v1/indexes/demo/files/src/config.rs?lines=3-4".into()).await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(
        f["text"], "/// Loads the configuration file from disk.\npub fn load_config(path: &str) -> Config {\n",
        "{f}"
    );
    assert_eq!((f["start_line"].as_u64(), f["end_line"].as_u64()), (Some(3), Some(4)));
    assert_eq!(f["language"], "rust");
    let (_, whole) = get("/v1/indexes/demo/files/src/config.rs".into()).await;
    let total = whole["total_lines"].as_u64().unwrap();
    assert_eq!(whole["end_line"].as_u64(), Some(total));
    assert!(whole["text"].as_str().unwrap().contains("flavour: \"a\""), "{whole}");
    let (_, tail) = get(format!("/v1/indexes/demo/files/src/config.rs?lines={}-", total - 1)).await;
    assert_eq!(tail["text"].as_str().unwrap().lines().count(), 2, "{tail}");

    let (status, o) = get("/v1/indexes/demo/outline/src/server.rs".into()).await;
    assert_eq!(status, StatusCode::OK, "{o}");
    let symbols: Vec<(&str, Option<&str>)> = o["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["symbol"].as_str().unwrap(), s["parent"].as_str()))
        .collect();
    for want in [
        ("Server", None),
        ("start", Some("Server")),
        ("handle_request", Some("Server")),
    ] {
        assert!(symbols.contains(&want), "{want:?} missing from {o}");
    }
    let starts: Vec<u64> = o["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["start_line"].as_u64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "outline in line order: {o}");

    // Unknown files, paths out of the repository, and nonsense or huge ranges: clear 4xx.
    let (status, e) = get("/v1/indexes/demo/files/src/nope.rs".into()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("file_not_found"))
    );
    let (status, e) = get("/v1/indexes/demo/outline/src/nope.rs".into()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("file_not_found"))
    );
    for bad in [
        "/v1/indexes/demo/files/src%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/indexes/demo/files/%2Fetc%2Fpasswd",
        "/v1/indexes/demo/files/src/config.rs?lines=9-3",
        "/v1/indexes/demo/files/src/config.rs?lines=1-100000",
        "/v1/indexes/demo/files/src/config.rs?lines=abc",
        "/v1/indexes/demo/files/src/config.rs?lines=900-901",
        "/v1/indexes/demo/files/src/config.rs?bogus=1",
    ] {
        let (status, e) = get(bad.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {e}");
    }
    let (status, _) = get("/v1/indexes/nope/files/src/config.rs".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_register_preloads_and_delete_unregisters_everywhere() {
    let c = Cluster::start(3, 2, &[]).await;
    publish_fixture(&c.store, "demo", "a").await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/admin/indexes/demo", c.router.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"replicas": 2}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    // Both owners load it in the background.
    let mut hot = 0;
    wait::until(wait::PATIENCE, async || {
        let st: Value = get_json(&format!("{}/v1/indexes/demo", c.router.url)).await;
        hot = st["owners"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["state"] == "hot")
            .count();
        hot == 2
    })
    .await;
    assert_eq!(hot, 2, "both owners preloaded the index");
    let r = client
        .delete(format!("{}/v1/admin/indexes/demo", c.router.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// A stand-in shard whose behaviour the test flips: healthy, erroring (500) or slow.
async fn flaky_shard(mode: Arc<AtomicU64>) -> String {
    use axum::routing::any;
    let app = axum::Router::new().fallback(any(move || {
        let mode = mode.clone();
        async move {
            match mode.load(Ordering::Relaxed) {
                0 => (axum::http::StatusCode::OK, "ok").into_response(),
                1 => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
                _ => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    (axum::http::StatusCode::OK, "slow").into_response()
                }
            }
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

use axum::response::IntoResponse;

#[tokio::test]
async fn erroring_or_slow_shards_are_ejected_and_readmitted() {
    use crate::support::process::spawn;
    let mode = Arc::new(AtomicU64::new(0));
    let fake = flaky_shard(mode.clone()).await;
    let args: Vec<String> = [
        "router",
        "--listen",
        "127.0.0.1:0",
        "--shards",
        &format!("fake={fake}"),
        "--probe-interval",
        "200ms",
        "--probe-timeout",
        "500ms",
        "--eject-after",
        "2",
        "--eject-for",
        "500ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let router = spawn("router", &args, &[]).await;
    let ejected = |url: String| async move { metric(&url, "trusty_router_shards{health=\"ejected\"}").await };
    let wait_for = |want: f64| {
        let url = router.url.clone();
        async move { wait::until(Duration::from_secs(30), async || ejected(url.clone()).await == want).await }
    };
    assert!(wait_for(0.0).await, "healthy at first");
    mode.store(1, Ordering::Relaxed);
    assert!(wait_for(1.0).await, "5xx shard ejected");
    mode.store(0, Ordering::Relaxed);
    assert!(wait_for(0.0).await, "re-admitted once healthy");
    mode.store(2, Ordering::Relaxed);
    assert!(wait_for(1.0).await, "slow shard ejected");
    mode.store(0, Ordering::Relaxed);
    assert!(wait_for(0.0).await, "re-admitted once fast");
    assert!(metric(&router.url, "trusty_router_ejections_total").await >= 2.0);
}
