//! HTTP calls every role's tests make: a search, a `/metrics` scrape.

use serde_json::json;

/// `POST {url}/v1/indexes/{id}/search` with a plain query, on a router or a shard.
pub async fn search(url: &str, id: &str, query: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/indexes/{id}/search"))
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap()
}

/// The Prometheus text exposition at `{url}/metrics`.
pub async fn scrape(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Reads one sample from a Prometheus text exposition (`name{labels} value`).
pub async fn metric(url: &str, series: &str) -> f64 {
    scrape(url)
        .await
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
