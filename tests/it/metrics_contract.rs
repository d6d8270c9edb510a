//! Every metric the Helm chart's dashboards and alerts use must exist in a
//! real scrape of the running services (operator metrics are checked in the
//! operator crate's tests; `up` is Prometheus' own).

use crate::support::cluster::Cluster;
use crate::support::fixtures::publish_fixture;
use crate::support::http::scrape;
use serde_json::json;
use std::collections::BTreeSet;

fn series_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn dashboards_and_alerts_only_use_real_metrics() {
    let c = Cluster::start(2, 2, &[]).await;
    publish_fixture(&c.store, "demo", "a").await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/indexes/demo/search", c.router.url))
        .json(&json!({"query": "config"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = client
        .post(format!("{}/v1/search", c.router.url))
        .json(&json!({"query": "config", "indexes": ["demo"]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let mut scraped = BTreeSet::new();
    for url in [c.router.url.clone(), c.shard_url(0), c.shard_url(1)] {
        scraped.extend(series_names(&scrape(&url).await));
    }
    let used = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/trusty-search/metrics-used.txt"
    ))
    .unwrap();
    let missing: Vec<&str> = used
        .lines()
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != "up" && !m.starts_with("trusty_operator_"))
        .filter(|m| !scraped.contains(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "used by the chart but not exported: {missing:?}\nexported: {scraped:?}"
    );
}

/// Each role exports its own series only: a router listing shard series at
/// zero would be drawn as an empty shard by anything selecting on the name.
#[tokio::test]
async fn each_role_exports_only_its_own_series() {
    let c = Cluster::start(1, 1, &[]).await;
    let router = series_names(&scrape(&c.router.url).await);
    let shard = series_names(&scrape(&c.shard_url(0)).await);
    for name in [
        "trusty_indexes",
        "trusty_cache_bytes",
        "trusty_cache_evictions_total",
        "trusty_restore_refusals_total",
        "trusty_index_load_failures_total",
    ] {
        assert!(shard.contains(name), "the shard does not export {name}");
        assert!(!router.contains(name), "the router exports the shard's {name}");
    }
    for name in [
        "trusty_router_shards",
        "trusty_router_retries_total",
        "trusty_router_waits_total",
        "trusty_router_affinity_rank_total",
    ] {
        assert!(router.contains(name), "the router does not export {name}");
        assert!(!shard.contains(name), "the shard exports the router's {name}");
    }
}
