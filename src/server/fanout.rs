//! Searching many indexes at once, one path for shards and routers alike:
//! the request is validated, its ids checked and deduplicated and capped,
//! and the per-index searches run with bounded concurrency under one
//! deadline for the whole request. Whatever has answered by then is
//! returned; an index that was cold, loading, refused or too slow is listed
//! in `skipped` with the reason, one that errored in `failed`. Shards search
//! their local indexes, routers their indexes' owners.

use crate::api::{
    ApiError, FileHit, Hit, IndexFailure, MultiSearchRequest, MultiSearchResponse, SearchRequest, SearchResponse,
};
use crate::telemetry::metrics::{FANOUT_INDEXES, FANOUT_PARTIAL};
use futures::StreamExt;
use std::future::Future;
use std::time::{Duration, Instant};

pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// The shortest deadline a fan-out accepts: below it every index would be
/// skipped, which is a mistake, not a search.
pub const MIN_DEADLINE_MS: u64 = 10;
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);
/// The `skipped` reason of an index whose turn came after the deadline, or
/// that had not answered by then.
pub const DEADLINE: &str = "deadline";

/// The longest deadline a request may set: a fifth of the request's time
/// stays for what comes before the fan-out (a router's status lookups) and
/// for answering, so a long deadline returns its partial results instead of
/// losing them all to the request timeout.
fn longest_deadline(request_timeout: Duration) -> Duration {
    MAX_DEADLINE.min(request_timeout - request_timeout / 5)
}

/// A validated cross-index search, before its index list is known.
#[derive(Debug, Clone)]
pub struct MultiSearch {
    /// What each index is asked.
    pub request: SearchRequest,
    /// The indexes the request named (validated, deduplicated), or `None` for all.
    pub named: Option<Vec<String>>,
    /// For the whole request, not per index: from when it was parsed, so
    /// finding the indexes to search (a router's listing) counts against it.
    pub deadline: Duration,
    started: Instant,
    max_indexes: usize,
}

impl MultiSearch {
    /// Checks the request: the query as for one index, every named id, and at
    /// most `max_indexes` distinct ids. The deadline is cut to fit well
    /// within `request_timeout`, the time the whole request is given.
    pub fn parse(
        req: MultiSearchRequest,
        max_indexes: usize,
        request_timeout: Duration,
    ) -> Result<MultiSearch, ApiError> {
        let request = SearchRequest {
            query: req.query,
            mode: req.mode,
            top_k: req.top_k,
            filters: req.filters,
            group_by: req.group_by,
        };
        request.validate().map_err(ApiError::bad_request)?;
        if req.deadline_ms.is_some_and(|ms| ms < MIN_DEADLINE_MS) {
            return Err(ApiError::bad_request(format!(
                "deadline_ms must be at least {MIN_DEADLINE_MS}"
            )));
        }
        let named = match req.indexes {
            Some(ids) if ids.is_empty() => {
                return Err(ApiError::bad_request(
                    "`indexes` is empty: name at least one index, or leave it out to search all",
                ));
            }
            Some(ids) => {
                for id in &ids {
                    super::params::parse_id(id)?;
                }
                Some(dedup(ids))
            }
            None => None,
        };
        let deadline = req
            .deadline_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_DEADLINE)
            .min(longest_deadline(request_timeout));
        let search = MultiSearch {
            request,
            named,
            deadline,
            started: Instant::now(),
            max_indexes,
        };
        if let Some(ids) = &search.named {
            search.check_count(ids.len(), "names")?;
        }
        Ok(search)
    }

    /// The ids to search: the named ones, or `all` (deduplicated and capped).
    pub fn ids(&self, all: impl FnOnce() -> Vec<String>) -> Result<Vec<String>, ApiError> {
        match &self.named {
            Some(ids) => Ok(ids.clone()),
            None => {
                let ids = dedup(all());
                self.check_count(ids.len(), "would search")?;
                Ok(ids)
            }
        }
    }

    fn check_count(&self, n: usize, verb: &str) -> Result<(), ApiError> {
        if n > self.max_indexes {
            return Err(ApiError::bad_request(format!(
                "this request {verb} {n} indexes; one search may cover at most {}: name the indexes to search",
                self.max_indexes
            )));
        }
        Ok(())
    }

    /// When the whole request's time is up.
    pub fn until(&self) -> Instant {
        self.started + self.deadline
    }

    /// Runs `search_one` over `ids`, at most `concurrency` at a time, and
    /// returns what answered within the deadline.
    pub async fn run<F, Fut>(&self, ids: Vec<String>, concurrency: usize, search_one: F) -> MultiSearchResponse
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<SearchResponse, ApiError>>,
    {
        let mut resp = fan_out(ids, concurrency, self.until(), self.request.top_k(), search_one).await;
        resp.took_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        resp
    }
}

fn dedup(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids.dedup();
    ids
}

/// What an index said when it refused the query itself (`bad_request`),
/// from the `code: message` its failure entry records.
fn refusal(f: &IndexFailure) -> Option<&str> {
    f.error.strip_prefix("bad_request: ")
}

/// When no index was searched and every one refused the query itself, the
/// one client error they agree on, rather than a response of failures.
pub fn refused_by_all(resp: &MultiSearchResponse) -> Option<ApiError> {
    if !resp.searched.is_empty() {
        return None;
    }
    let mut refusals = resp.failed.iter().map(refusal);
    let first = refusals.next()??;
    refusals
        .all(|r| r.is_some())
        .then(|| ApiError::bad_request(first.to_string()))
}

/// Searches `ids` with bounded concurrency; every search shares one deadline.
pub async fn fan_out<F, Fut>(
    ids: Vec<String>,
    concurrency: usize,
    until: Instant,
    top_k: usize,
    search_one: F,
) -> MultiSearchResponse
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<SearchResponse, ApiError>>,
{
    let started = Instant::now();
    let until = tokio::time::Instant::from_std(until);
    FANOUT_INDEXES.observe(ids.len() as f64);
    let search_one = &search_one;
    let results: Vec<(String, Result<SearchResponse, Option<ApiError>>)> =
        futures::stream::iter(ids.into_iter().map(|id| async move {
            // An index whose turn comes after the deadline is not asked at all.
            if tokio::time::Instant::now() >= until {
                return (id, Err(None));
            }
            match tokio::time::timeout_at(until, search_one(id.clone())).await {
                Ok(r) => (id, r.map_err(Some)),
                Err(_) => (id, Err(None)),
            }
        }))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

    let mut hits: Vec<Hit> = Vec::new();
    let mut files: Vec<FileHit> = Vec::new();
    let (mut searched, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for (id, r) in results {
        match r {
            Ok(resp) => {
                hits.extend(resp.hits.into_iter().map(|mut h| {
                    h.index_id = Some(resp.index_id.clone());
                    h
                }));
                files.extend(resp.files.into_iter().map(|mut f| {
                    f.index_id = Some(resp.index_id.clone());
                    f
                }));
                searched.push(id);
            }
            Err(None) => skipped.push(IndexFailure {
                index_id: id,
                error: DEADLINE.to_string(),
                retryable: true,
            }),
            // The index ran out of the time it was given: the fan-out's deadline.
            Err(Some(e)) if e.body.error == "request_timeout" => skipped.push(IndexFailure {
                index_id: id,
                error: DEADLINE.to_string(),
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
    // File scores are normalised per index (each evidence kind by its best
    // file), so they compare across indexes like fused chunk scores do.
    files.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.index_id.cmp(&b.index_id)));
    files.truncate(top_k);
    searched.sort();
    skipped.sort_by(|a, b| a.index_id.cmp(&b.index_id));
    failed.sort_by(|a, b| a.index_id.cmp(&b.index_id));
    FANOUT_PARTIAL
        .with_label_values(&["skipped"])
        .inc_by(skipped.len() as u64);
    // An index refusing the query itself (a filter it cannot honour) is the
    // client's mistake, not a partial answer: it does not count as failed.
    let failed_here = failed.iter().filter(|f| refusal(f).is_none()).count();
    FANOUT_PARTIAL.with_label_values(&["failed"]).inc_by(failed_here as u64);
    MultiSearchResponse {
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
        hits,
        files,
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
            files: vec![],
            unavailable_arms: vec![],
        }
    }

    /// The deadline `fan_out` takes (a std `Instant`) on tokio's clock, which
    /// these tests pause: time moves only when every task waits on a timer,
    /// so a loaded machine cannot make a search miss it or a deadline pass early.
    fn paused_deadline(after: Duration) -> Instant {
        (tokio::time::Instant::now() + after).into_std()
    }

    #[tokio::test(start_paused = true)]
    async fn partial_results_name_what_is_missing() {
        let ids = vec![
            "a".to_string(),
            "b".into(),
            "slow".into(),
            "loading".into(),
            "broken".into(),
        ];
        let started = tokio::time::Instant::now();
        let out = fan_out(
            ids,
            2,
            paused_deadline(Duration::from_millis(200)),
            10,
            |id| async move {
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
                    _ => Err(
                        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "index_restore_failed", "bad").retryable(false),
                    ),
                }
            },
        )
        .await;
        assert_eq!(out.searched, vec!["a", "b"]);
        assert_eq!(out.hits[0].index_id.as_deref(), Some("b"), "merged by score");
        assert_eq!(
            out.skipped.iter().map(|f| f.index_id.as_str()).collect::<Vec<_>>(),
            vec!["loading", "slow"]
        );
        assert_eq!(out.failed.len(), 1);
        assert_eq!(out.failed[0].index_id, "broken");
        // On the paused clock, which waiting for the 5 s search would have moved past 5 s.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the slow index did not hold the request: {:?}",
            started.elapsed()
        );
        assert_eq!(out.skipped[1].error, DEADLINE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_covers_the_whole_request_not_each_index() {
        // Twenty 100 ms searches one at a time take 2 s; a 350 ms deadline
        // must answer with the first three and skip the rest (the fourth is
        // cut off half-way).
        let ids: Vec<String> = (0..20).map(|i| format!("i{i:02}")).collect();
        let started = tokio::time::Instant::now();
        let out = fan_out(
            ids,
            1,
            paused_deadline(Duration::from_millis(350)),
            100,
            |id| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(resp(&id, 1.0))
            },
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(out.searched, vec!["i00", "i01", "i02"]);
        assert_eq!(out.searched.len() + out.skipped.len(), 20);
        assert!(out.skipped.iter().all(|s| s.error == DEADLINE));
    }

    #[tokio::test]
    async fn an_index_that_timed_out_is_skipped_for_the_deadline() {
        let until = Instant::now() + Duration::from_secs(30);
        let out = fan_out(vec!["slow".into()], 1, until, 10, |_| async {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "request_timeout", "deadline exceeded").retry_after(1))
        })
        .await;
        assert_eq!(out.skipped.len(), 1);
        assert_eq!(out.skipped[0].error, DEADLINE);
    }

    #[tokio::test]
    async fn time_spent_before_the_fan_out_counts_against_its_deadline() {
        let req = MultiSearchRequest {
            query: "q".into(),
            mode: SearchMode::Hybrid,
            top_k: None,
            filters: None,
            indexes: None,
            deadline_ms: Some(50),
            group_by: None,
        };
        let plan = MultiSearch::parse(req, 10, Duration::from_secs(30)).unwrap();
        // A slow listing of the indexes to search uses up the whole deadline.
        tokio::time::sleep(Duration::from_millis(80)).await;
        let out = plan
            .run(vec!["a".into(), "b".into()], 2, |id| async move { Ok(resp(&id, 1.0)) })
            .await;
        assert!(out.searched.is_empty(), "{:?}", out.searched);
        assert_eq!(out.skipped.len(), 2);
        assert!(out.took_ms >= 80.0, "{}", out.took_ms);
    }

    #[test]
    fn requests_are_validated_deduplicated_and_capped() {
        let req = |ids: Option<Vec<&str>>| MultiSearchRequest {
            query: "q".into(),
            mode: SearchMode::Hybrid,
            top_k: None,
            filters: None,
            indexes: ids.map(|v| v.into_iter().map(String::from).collect()),
            deadline_ms: Some(120_000),
            group_by: None,
        };
        let long = Duration::from_secs(600);
        let m = MultiSearch::parse(req(Some(vec!["b", "a", "b"])), 2, long).unwrap();
        assert_eq!(m.named.as_deref(), Some(&["a".to_string(), "b".to_string()][..]));
        assert_eq!(m.deadline, MAX_DEADLINE, "capped");
        let within = MultiSearch::parse(req(None), 2, Duration::from_secs(30)).unwrap();
        assert_eq!(
            within.deadline,
            Duration::from_secs(24),
            "ends well before the request does"
        );
        let e = MultiSearch::parse(req(Some(vec!["a", "b", "c"])), 2, long).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.body.message.contains("at most 2"), "{}", e.body.message);
        let e = MultiSearch::parse(req(Some(vec!["../x"])), 2, long).unwrap_err();
        assert_eq!(e.body.error, "invalid_index_id");
        let e = MultiSearch::parse(req(Some(vec![])), 2, long).unwrap_err();
        assert!(
            e.body.message.contains("leave it out to search all"),
            "{}",
            e.body.message
        );
        let all = MultiSearch::parse(req(None), 2, long).unwrap();
        assert_eq!(all.ids(|| vec!["x".into(), "x".into()]).unwrap(), vec!["x"]);
        let e = all.ids(|| vec!["x".into(), "y".into(), "z".into()]).unwrap_err();
        assert!(e.body.message.contains("would search 3 indexes"), "{}", e.body.message);
    }
}
