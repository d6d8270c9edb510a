//! HTTP calls every role's tests make: a search, a JSON POST, a `/metrics` scrape.

use reqwest::StatusCode;
use serde_json::{Value, json};

/// `POST {url}/v1/indexes/{id}/search` with a plain query, on a router or a shard.
pub async fn search(url: &str, id: &str, query: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/indexes/{id}/search"))
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap()
}

/// `POST url` with a JSON body: the status and the JSON answer (`Null` when it is not JSON).
pub async fn post_json(url: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The Prometheus text exposition at `{url}/metrics`.
/// `GET url` answered with JSON, whatever the status (tests assert on the body).
pub async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

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
    sample(&scrape(url).await, series)
}

/// One sample of `series` in a Prometheus text exposition; 0 when absent.
pub fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
