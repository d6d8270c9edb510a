//! Searching many indexes at once: bounded concurrency, a deadline per index,
//! and partial results. An index that is still loading or too slow is
//! `skipped`; one that errors is `failed`; neither fails the whole request.
//! Shards use this over their local indexes, routers over remote owners.

use crate::api::{ApiError, Hit, IndexFailure, MultiSearchResponse, SearchResponse};
use crate::telemetry::metrics::{FANOUT_INDEXES, FANOUT_PARTIAL};
use futures::StreamExt;
use std::future::Future;
use std::time::{Duration, Instant};

pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);

pub async fn fan_out<F, Fut>(
    ids: Vec<String>,
    concurrency: usize,
    deadline: Duration,
    top_k: usize,
    search_one: F,
) -> MultiSearchResponse
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<SearchResponse, ApiError>>,
{
    let started = Instant::now();
    FANOUT_INDEXES.observe(ids.len() as f64);
    let results: Vec<(String, Result<SearchResponse, Option<ApiError>>)> =
        futures::stream::iter(ids.into_iter().map(|id| {
            let fut = search_one(id.clone());
            async move {
                match tokio::time::timeout(deadline, fut).await {
                    Ok(r) => (id, r.map_err(Some)),
                    Err(_) => (id, Err(None)),
                }
            }
        }))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

    let mut hits: Vec<Hit> = Vec::new();
    let (mut searched, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for (id, r) in results {
        match r {
            Ok(resp) => {
                hits.extend(resp.hits.into_iter().map(|mut h| {
                    h.index_id = Some(resp.index_id.clone());
                    h
                }));
                searched.push(id);
            }
            Err(None) => skipped.push(IndexFailure {
                index_id: id,
                error: format!("no answer within {} ms", deadline.as_millis()),
                retryable: true,
            }),
            Err(Some(e)) if e.body.retryable => skipped.push(IndexFailure {
                index_id: id,
                error: e.body.error.clone(),
                retryable: true,
            }),
            Err(Some(e)) => failed.push(IndexFailure {
                index_id: id,
                error: format!("{}: {}", e.body.error, e.body.message),
                retryable: false,
            }),
        }
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.index_id.cmp(&b.index_id)));
    hits.truncate(top_k);
    searched.sort();
    skipped.sort_by(|a, b| a.index_id.cmp(&b.index_id));
    failed.sort_by(|a, b| a.index_id.cmp(&b.index_id));
    FANOUT_PARTIAL
        .with_label_values(&["skipped"])
        .inc_by(skipped.len() as u64);
    FANOUT_PARTIAL
        .with_label_values(&["failed"])
        .inc_by(failed.len() as u64);
    MultiSearchResponse {
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
        hits,
        searched,
        skipped,
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Arms, SearchMode};
    use axum::http::StatusCode;

    fn resp(id: &str, score: f32) -> SearchResponse {
        SearchResponse {
            index_id: id.into(),
            version: "v".into(),
            took_ms: 0.0,
            mode: SearchMode::Hybrid,
            hits: vec![Hit {
                path: format!("{id}.rs"),
                start_line: 1,
                end_line: 2,
                symbol: None,
                kind: "function".into(),
                language: "rust".into(),
                snippet: String::new(),
                score,
                arms: Arms::default(),
                index_id: None,
            }],
            unavailable_arms: vec![],
        }
    }

    #[tokio::test]
    async fn partial_results_name_what_is_missing() {
        let ids = vec![
            "a".to_string(),
            "b".into(),
            "slow".into(),
            "loading".into(),
            "broken".into(),
        ];
        let out = fan_out(ids, 2, Duration::from_millis(200), 10, |id| async move {
            match id.as_str() {
                "a" => Ok(resp("a", 0.5)),
                "b" => Ok(resp("b", 0.9)),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(resp("slow", 1.0))
                }
                "loading" => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "index_loading",
                    "loading",
                )),
                _ => {
                    Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "index_restore_failed", "bad").retryable(false))
                }
            }
        })
        .await;
        assert_eq!(out.searched, vec!["a", "b"]);
        assert_eq!(out.hits[0].index_id.as_deref(), Some("b"), "merged by score");
        assert_eq!(
            out.skipped.iter().map(|f| f.index_id.as_str()).collect::<Vec<_>>(),
            vec!["loading", "slow"]
        );
        assert_eq!(out.failed.len(), 1);
        assert_eq!(out.failed[0].index_id, "broken");
        assert!(
            out.took_ms < 2000.0,
            "the slow index did not hold the request: {}",
            out.took_ms
        );
    }
}
