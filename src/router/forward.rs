//! Sending one index's request to its owners.
//!
//! Placement runs over the *healthy* members, so an ejected shard's indexes
//! fall to their next HRW owner. Among the owners, bounded load picks the
//! first whose in-flight count is near the mean, and an owner that just said
//! the index is cold there goes after the others. While ownership is moving
//! (a shard joined or left in the last `handoff_grace`), the previous owners
//! follow the current ones: they are likely still hot.
//!
//! Every owner is first asked not to wait for a cold index (it starts
//! loading and answers `index_cold` at once), so a cold owner never holds a
//! request that a hot replica could answer. Only when no owner is hot does
//! the request wait, on the first owner that started loading: one restore
//! per cold index, not one per replica; the wait is repeated while the
//! restore is still queued and the request's time allows. An index-level
//! answer (cold, loading, failed, over budget) moves on to the next owner,
//! never to a non-owner: loading the index there would only add a copy. A
//! shard-level failure (unreachable, internal error, shedding load) may also
//! try the next shard past the owners. A request a shard worked on until the
//! deadline it was told is not tried again anywhere: its answer is passed on.

use super::config::RouterConfig;
use super::health::Health;
use super::membership::{Members, ShardEndpoint};
use super::ring;
use crate::api::{ApiError, ErrorBody};
use crate::server::params::{DEADLINE_HEADER, FANOUT_HEADER, NO_WAIT_HEADER};
use crate::telemetry::metrics::{ROUTER_AFFINITY, ROUTER_RETRIES, ROUTER_WAITS};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// Shortest round of waiting on a restoring owner.
const MIN_WAIT_ROUND: std::time::Duration = std::time::Duration::from_millis(500);
/// Time kept back from a request's deadline to answer after the last attempt.
const ANSWER_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);
/// An attempt given less than this is not worth starting.
const MIN_ATTEMPT: std::time::Duration = std::time::Duration::from_millis(100);
/// The margin between an attempt's timeout and the deadline the shard is
/// told: a tenth of the attempt, at most this, so the shard's own
/// `request_timeout` travels back before the router stops listening.
const REPLY_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// The deadline a shard is told for an attempt of `budget`.
fn shard_deadline(budget: std::time::Duration) -> std::time::Duration {
    budget - (budget / 10).min(REPLY_MARGIN)
}

/// A shard's answer, passed through to the client.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub retry_after: Option<HeaderValue>,
    pub body: Bytes,
    pub shard: String,
}

impl Upstream {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The API error code of a failed answer; a successful one has none
    /// and its (possibly large) body is not parsed for it.
    fn error_code(&self) -> Option<String> {
        if self.status.is_success() {
            return None;
        }
        self.json::<ErrorBody>().map(|b| b.error)
    }

    /// The shard is restoring the index (or will on the next ask).
    fn is_restoring(&self) -> bool {
        matches!(self.error_code().as_deref(), Some("index_loading" | "index_cold"))
    }

    /// The index's vectors were made by another model than the one behind
    /// this owner's embedder. Unlike a cold copy, waiting for a restore will
    /// not change that, so this answer is kept over a "loading" one.
    fn is_model_mismatch(&self) -> bool {
        self.error_code().as_deref() == Some("embedder_mismatch")
    }
}

impl IntoResponse for Upstream {
    fn into_response(self) -> Response {
        // The shard's error code rides along, so the router's request
        // metrics count a passed-through cold answer as the shard did.
        let code = self.error_code().map(crate::api::error::ErrorCode);
        let mut resp = (self.status, self.body).into_response();
        if let Some(code) = code {
            resp.extensions_mut().insert(code);
        }
        if let Some(ct) = self.content_type {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        if let Some(ra) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, ra);
        }
        resp
    }
}

pub struct RouterState {
    pub cfg: RouterConfig,
    pub members: Members,
    pub health: Arc<Health>,
    pub client: reqwest::Client,
    /// The member set before the last change, while indexes hand off to new owners.
    pub previous: parking_lot::Mutex<Option<PreviousMembers>>,
}

/// The member sets before the changes of a hand-off still under way, oldest
/// first: after a shard restarts within the grace, the interim owners that
/// loaded its indexes meanwhile are the hot ones, not the first set's.
#[derive(Debug, Clone)]
pub struct PreviousMembers {
    pub sets: Vec<Vec<ShardEndpoint>>,
    pub until: Instant,
}

/// Previous member sets kept at most: the first, and the latest before now.
pub const MAX_PREVIOUS_SETS: usize = 4;

/// Why a shard is a candidate for an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// One of the top-R HRW shards among healthy members.
    Owner,
    /// An owner under the previous member set, still serving during a hand-off.
    Previous,
    /// The next shard past the owners: only for shard-level failures.
    Failover,
}

#[derive(Debug, Clone)]
pub struct Candidate {
    pub shard: ShardEndpoint,
    pub role: Role,
    /// Label of the affinity metric: HRW rank among owners, or "spill".
    pub label: &'static str,
}

/// How patient a forwarded request is with a cold index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardPatience {
    /// Ask every owner without waiting, then wait on the one restoring it.
    Serve,
    /// Never wait: a fan-out reports cold indexes as skipped. No attempt
    /// outlives the fan-out's deadline `until`.
    FanOut { until: Instant },
}

/// What went wrong on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// The index is cold, loading, failed or refused there: try another owner.
    Index,
    /// The shard is shedding load or slow: another owner may answer, but a
    /// non-owner would only add a cold load to a busy cluster.
    Busy,
    /// The shard could not answer at all: any next candidate may.
    Broken,
}

enum Attempt {
    Done(Upstream),
    /// The shard worked on the request until the deadline it was given
    /// (`request_timeout`; one that only queued for a search slot is shed as
    /// `overloaded` instead). Another owner would start the same work over
    /// with less time while the first may still be finishing it, so the
    /// answer is passed through: a slow query never costs the cluster twice.
    Spent(Upstream),
    /// Worth trying the next candidate; the answer (if any) is kept for pass-through.
    Retry(Option<Upstream>, String, Trouble),
}

const INDEX_LEVEL: &[&str] = &[
    "index_loading",
    "index_cold",
    "index_restore_failed",
    "over_budget",
    "store_unavailable",
    "index_data_error",
    "search_failed",
];

impl RouterState {
    pub fn new(cfg: RouterConfig, members: Members, health: Arc<Health>, client: reqwest::Client) -> RouterState {
        RouterState {
            cfg,
            members,
            health,
            client,
            previous: parking_lot::Mutex::new(None),
        }
    }

    pub fn members(&self) -> Vec<ShardEndpoint> {
        self.members.borrow().clone()
    }

    /// Owners of `index_id` over all members (healthy or not), for status reports.
    pub fn owners(&self, index_id: &str) -> Vec<ShardEndpoint> {
        owners_among(index_id, &self.members(), self.cfg.replicas)
    }

    /// The previous member sets, while a hand-off is under way.
    fn previous_members(&self) -> Option<Vec<Vec<ShardEndpoint>>> {
        let mut prev = self.previous.lock();
        match prev.as_ref() {
            Some(p) if Instant::now() < p.until => Some(p.sets.clone()),
            Some(_) => {
                *prev = None;
                None
            }
            None => None,
        }
    }

    /// Candidates in the order they will be tried.
    pub fn candidates(&self, index_id: &str) -> Vec<Candidate> {
        let members = self.members();
        let healthy = self.health.healthy(&members);
        let pool: Vec<&ShardEndpoint> = if healthy.is_empty() {
            members.iter().collect()
        } else {
            healthy
        };
        let names: Vec<&str> = pool.iter().map(|m| m.name.as_str()).collect();
        let ranked: Vec<&str> = ring::rank(index_id, &names).into_iter().copied().collect();
        // Load spreads only among the owners (where the index is, or will be,
        // resident); the next shard past them is a failover target, never a
        // load-balancing one, since sending it traffic would mean a cold load.
        let owners = ranked.len().min(self.cfg.replicas.max(1));
        if owners == 0 {
            // No shard known yet (discovery has not answered) or none left.
            return Vec::new();
        }
        let loads: Vec<u64> = ranked[..owners].iter().map(|n| self.health.inflight(n)).collect();
        let total: u64 = names.iter().map(|n| self.health.inflight(n)).sum();
        let mean = total as f64 / names.len().max(1) as f64;
        let first = ring::bounded_pick(&loads, mean, self.cfg.load_slack);
        let mut order: Vec<usize> = vec![first];
        order.extend((0..owners).filter(|&i| i != first));
        // An owner that just said "cold" goes after the others (stable otherwise).
        order.sort_by_key(|&i| self.health.seems_cold(ranked[i], index_id));
        let find = |name: &str| pool.iter().find(|m| m.name == name).map(|m| (*m).clone());
        let mut out: Vec<Candidate> = order
            .into_iter()
            .filter_map(|i| {
                find(ranked[i]).map(|shard| Candidate {
                    shard,
                    role: Role::Owner,
                    label: ["0", "1", "2"].get(i).copied().unwrap_or("spill"),
                })
            })
            .collect();
        let previous = self.previous_members().unwrap_or_default();
        for set in previous.iter().rev() {
            for p in owners_among(index_id, set, self.cfg.replicas) {
                if out.iter().all(|c| c.shard.name != p.name)
                    && let Some(shard) = find(&p.name)
                {
                    out.push(Candidate {
                        shard,
                        role: Role::Previous,
                        label: "spill",
                    });
                }
            }
        }
        if let Some(next) = ranked.get(owners)
            && out.iter().all(|c| c.shard.name != *next)
            && let Some(shard) = find(next)
        {
            out.push(Candidate {
                shard,
                role: Role::Failover,
                label: "spill",
            });
        }
        out
    }

    /// Forwards a request for `index_id`: owners first, with the retries
    /// described in the module doc.
    pub async fn forward(
        &self,
        index_id: &str,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        patience: ForwardPatience,
    ) -> Result<Upstream, ApiError> {
        let started = Instant::now();
        let candidates = self.candidates(index_id);
        if candidates.is_empty() {
            return Err(no_shards());
        }
        // Every owner, or one owner and the failover; plus the previous owner
        // during a hand-off.
        let owners = candidates.iter().filter(|c| c.role == Role::Owner).count();
        let handing_off = candidates.iter().any(|c| c.role == Role::Previous);
        let max_attempts = owners.max(2) + usize::from(handing_off);
        let mut kept: Option<Upstream> = None;
        let mut last_reason = String::new();
        let mut last_trouble = Trouble::Broken;
        let mut attempts = 0;
        // Owners that answered "cold" or "loading", in that order: they are restoring now.
        let mut restoring: Vec<&Candidate> = Vec::new();
        for c in &candidates {
            if attempts == max_attempts {
                break;
            }
            if c.role == Role::Failover && (attempts == 0 || last_trouble != Trouble::Broken) {
                continue;
            }
            // A previous owner no longer owns the index: where it is cold
            // there, it may warm it into free room, never evict for it.
            let header = match patience {
                _ if c.role == Role::Previous => FANOUT_HEADER,
                ForwardPatience::FanOut { .. } => FANOUT_HEADER,
                ForwardPatience::Serve => NO_WAIT_HEADER,
            };
            let Some(budget) = self.attempt_budget(started, patience) else {
                break;
            };
            if attempts > 0 {
                ROUTER_RETRIES.inc();
                tracing::debug!(index_id, shard = %c.shard.name, reason = %last_reason, "retrying on next owner");
            }
            attempts += 1;
            match self
                .attempt(
                    &c.shard,
                    method.clone(),
                    path_and_query,
                    body.clone(),
                    Some(header),
                    budget,
                )
                .await
            {
                Attempt::Done(up) => return Ok(self.served(c, index_id, up)),
                Attempt::Spent(up) => return Ok(up),
                Attempt::Retry(up, reason, trouble) => {
                    if trouble == Trouble::Index {
                        self.health.note_cold(&c.shard.name, index_id);
                    }
                    last_reason = reason;
                    last_trouble = trouble;
                    // Prefer passing through a "loading" answer: it tells the client when to come back.
                    let loading = up.as_ref().is_some_and(Upstream::is_restoring);
                    // Waiting asks without a header, which would make a
                    // previous owner restore (and evict for) an index it no
                    // longer owns: only owners are waited on.
                    if loading && c.role != Role::Previous {
                        restoring.push(c);
                    }
                    let replaces = match (&up, &kept) {
                        (None, _) => false,
                        (Some(_), None) => true,
                        (Some(up), Some(kept)) => up.is_model_mismatch() || (loading && !kept.is_model_mismatch()),
                    };
                    if replaces {
                        kept = up;
                    }
                }
            }
        }
        // An owner already answered that the index's model is not its
        // embedder's: no restore elsewhere is worth the client's wait.
        if patience == ForwardPatience::Serve && !kept.as_ref().is_some_and(Upstream::is_model_mismatch) {
            // Each wait is bounded by the shard's own load wait; while the
            // restore is still queued or running, wait again as long as another
            // full wait fits in the request's time, rather than hand the client
            // a "loading" it would have to retry itself. An owner that stops
            // answering hands the wait to the next one that is restoring.
            let mut waiting = restoring.into_iter();
            let mut current = waiting.next();
            while let Some(c) = current {
                if started.elapsed() + self.cfg.shard_timeout > self.cfg.request_timeout {
                    break;
                }
                ROUTER_WAITS.inc();
                let waited = Instant::now();
                let Some(budget) = self.attempt_budget(started, patience) else {
                    break;
                };
                match self
                    .attempt(&c.shard, method.clone(), path_and_query, body.clone(), None, budget)
                    .await
                {
                    Attempt::Done(up) => return Ok(self.served(c, index_id, up)),
                    Attempt::Spent(up) => return Ok(up),
                    Attempt::Retry(None, reason, _) => {
                        last_reason = reason;
                        current = waiting.next();
                    }
                    Attempt::Retry(Some(up), reason, _) => {
                        last_reason = reason;
                        let still_loading = up.is_restoring();
                        // A "loading" answer says when to come back; a busy
                        // shard's answer after it says less.
                        if up.is_model_mismatch() || still_loading || !kept.as_ref().is_some_and(Upstream::is_restoring)
                        {
                            kept = Some(up);
                        }
                        if !still_loading {
                            current = waiting.next();
                        } else if waited.elapsed() < MIN_WAIT_ROUND {
                            // A shard configured not to wait answers at once: do not spin on it.
                            tokio::time::sleep(MIN_WAIT_ROUND).await;
                        }
                    }
                }
            }
        }
        if let Some(up) = &kept {
            tracing::debug!(
                index_id,
                shard = %up.shard,
                status = %up.status,
                code = up.error_code().unwrap_or_default(),
                last = %last_reason,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "no owner served the request; passing its answer through"
            );
        }
        match kept {
            Some(up) => Ok(up),
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shard_unavailable",
                format!("no owner of {index_id} answered: {last_reason}"),
            )
            .with_index(index_id)
            .retry_after(1)),
        }
    }

    /// Books an answer from `c`: its affinity rank, and that the index is hot there.
    fn served(&self, c: &Candidate, index_id: &str, up: Upstream) -> Upstream {
        ROUTER_AFFINITY.with_label_values(&[c.label]).inc();
        self.health.note_hot(&c.shard.name, index_id);
        up
    }

    /// How long the next attempt may take: the shard timeout, cut to what is
    /// left of the request's own deadline (less a margin to answer in), so the
    /// router's answer names the index rather than a bare request timeout,
    /// and to what is left of a fan-out's. `None` when too little is left to try.
    fn attempt_budget(&self, started: Instant, patience: ForwardPatience) -> Option<std::time::Duration> {
        let mut left = self
            .cfg
            .request_timeout
            .checked_sub(started.elapsed() + ANSWER_MARGIN)?;
        if let ForwardPatience::FanOut { until } = patience {
            left = left.min(until.saturating_duration_since(Instant::now()));
        }
        (left >= MIN_ATTEMPT).then(|| left.min(self.cfg.shard_timeout))
    }

    async fn attempt(
        &self,
        shard: &ShardEndpoint,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        header: Option<&'static str>,
        timeout: std::time::Duration,
    ) -> Attempt {
        let _inflight = self.health.begin(&shard.name);
        let mut req = self
            .client
            .request(method, format!("{}{path_and_query}", shard.url))
            .timeout(timeout)
            .header(DEADLINE_HEADER, shard_deadline(timeout).as_millis().to_string());
        if let Some(b) = body {
            req = req.header(header::CONTENT_TYPE, "application/json").body(b);
        }
        if let Some(h) = header {
            req = req.header(h, "1");
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                // A slow answer is a busy shard, not a broken one. It was told
                // to answer before now and did not even say it ran out, so it
                // is stalled rather than working: another owner may answer.
                if e.is_timeout() {
                    return Attempt::Retry(None, format!("{}: {e}", shard.name), Trouble::Busy);
                }
                self.health.record_failure(&shard.name, "request failed");
                return Attempt::Retry(None, format!("{}: {e}", shard.name), Trouble::Broken);
            }
        };
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                if e.is_timeout() {
                    return Attempt::Retry(None, format!("{}: {e}", shard.name), Trouble::Busy);
                }
                self.health.record_failure(&shard.name, "reading response failed");
                return Attempt::Retry(None, format!("{}: {e}", shard.name), Trouble::Broken);
            }
        };
        let up = Upstream {
            status,
            content_type,
            retry_after,
            body,
            shard: shard.name.clone(),
        };
        if !status.is_server_error() {
            self.health.record_success(&shard.name);
            return Attempt::Done(up);
        }
        let code = up.error_code().unwrap_or_default();
        if INDEX_LEVEL.contains(&code.as_str()) {
            // The shard is fine; another owner may do better.
            self.health.record_success(&shard.name);
            return Attempt::Retry(Some(up), format!("{}: {code}", shard.name), Trouble::Index);
        }
        if code == "request_timeout" {
            return Attempt::Spent(up);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::GATEWAY_TIMEOUT {
            // Shedding load (`overloaded`, `embedder_unavailable`): busy, not
            // broken, so no strike against it. `embedder_mismatch` lands here
            // too: another owner's embedder may be the index's model (during a
            // rolling change of it), so it is asked as well.
            return Attempt::Retry(Some(up), format!("{}: HTTP {status} {code}", shard.name), Trouble::Busy);
        }
        self.health.record_failure(&shard.name, "server error");
        Attempt::Retry(
            Some(up),
            format!("{}: HTTP {status} {code}", shard.name),
            Trouble::Broken,
        )
    }
}

/// The top-`replicas` HRW shards of `index_id` among `members`.
pub fn owners_among(index_id: &str, members: &[ShardEndpoint], replicas: usize) -> Vec<ShardEndpoint> {
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    ring::rank(index_id, &names)
        .into_iter()
        .take(replicas.max(1))
        .filter_map(|n| members.iter().find(|m| m.name == *n).cloned())
        .collect()
}

pub fn no_shards() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_shards",
        "no shards are known to this router",
    )
    .retry_after(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use tokio::sync::watch;

    fn state(members: Vec<ShardEndpoint>, replicas: usize) -> RouterState {
        let mut cfg = RouterConfig::local("");
        cfg.replicas = replicas;
        let health = Arc::new(Health::new(&cfg));
        // A closed channel still holds its last value: a fixed member set.
        let (_, members) = watch::channel(members);
        RouterState::new(cfg, members, health, reqwest::Client::new())
    }

    #[tokio::test]
    async fn with_no_shard_known_a_request_is_refused_not_a_panic() {
        let s = state(Vec::new(), 2);
        assert!(s.candidates("repo").is_empty());
        let err = s
            .forward("repo", Method::GET, "/v1/indexes/repo", None, ForwardPatience::Serve)
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.body.error, "no_shards");
    }

    /// Three owners, two of them cold: the hot one is asked too, whatever
    /// its place in the order.
    #[tokio::test]
    async fn every_owner_is_asked_before_waiting_on_a_cold_one() {
        let hot = Arc::new(parking_lot::Mutex::new(String::new()));
        let mut members = Vec::new();
        for name in ["s0", "s1", "s2"] {
            let hot = hot.clone();
            let app = axum::Router::new().route(
                "/v1/indexes/repo/search",
                post(move || async move {
                    if *hot.lock() == name {
                        Ok(name)
                    } else {
                        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "index_cold", "cold").retryable(true))
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            members.push(ShardEndpoint { name: name.into(), url });
        }
        let s = state(members, 3);
        let order = s.candidates("repo");
        assert_eq!(order.iter().filter(|c| c.role == Role::Owner).count(), 3);
        *hot.lock() = order[2].shard.name.clone();
        let up = s
            .forward(
                "repo",
                Method::POST,
                "/v1/indexes/repo/search",
                Some(Bytes::from_static(b"{}")),
                ForwardPatience::FanOut {
                    until: Instant::now() + std::time::Duration::from_secs(30),
                },
            )
            .await
            .unwrap();
        assert_eq!(up.status, StatusCode::OK);
        assert_eq!(up.shard, order[2].shard.name);
    }
    /// Two owners that both answer `code` (503) and count what they are asked.
    async fn refusing_owners(code: &'static str) -> (RouterState, Arc<parking_lot::Mutex<Vec<String>>>) {
        owners_answering([code, code]).await
    }

    /// Two owners, `s0` and `s1`, answering 503 with their code, counting what they are asked.
    async fn owners_answering(codes: [&'static str; 2]) -> (RouterState, Arc<parking_lot::Mutex<Vec<String>>>) {
        let asked = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut members = Vec::new();
        for (name, code) in ["s0", "s1"].into_iter().zip(codes) {
            let asked = asked.clone();
            let app = axum::Router::new().route(
                "/v1/indexes/repo/search",
                post(move || async move {
                    asked.lock().push(name.to_string());
                    Err::<(), _>(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, code).retry_after(1))
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            members.push(ShardEndpoint { name: name.into(), url });
        }
        (state(members, 2), asked)
    }

    async fn search(s: &RouterState) -> Upstream {
        let body = Some(Bytes::from_static(b"{}"));
        s.forward(
            "repo",
            Method::POST,
            "/v1/indexes/repo/search",
            body,
            ForwardPatience::Serve,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_request_that_ran_out_of_time_on_one_owner_is_not_run_on_another() {
        let (s, asked) = refusing_owners("request_timeout").await;
        let up = search(&s).await;
        assert_eq!(up.error_code().as_deref(), Some("request_timeout"));
        assert_eq!(asked.lock().len(), 1, "asked: {:?}", asked.lock());
    }

    /// One owner's embedder is not the index's model, the other's copy is
    /// cold: whichever is asked first, the client learns of the mismatch
    /// (not retryable) rather than "loading", and no restore is waited on.
    #[tokio::test]
    async fn a_model_mismatch_is_not_hidden_behind_another_owners_cold_copy() {
        for codes in [["embedder_mismatch", "index_cold"], ["index_cold", "embedder_mismatch"]] {
            let (s, asked) = owners_answering(codes).await;
            let up = search(&s).await;
            assert_eq!(up.error_code().as_deref(), Some("embedder_mismatch"), "{codes:?}");
            assert_eq!(asked.lock().len(), 2, "{codes:?} asked: {:?}", asked.lock());
        }
    }

    #[tokio::test]
    async fn a_request_shed_by_one_owner_is_tried_on_the_other() {
        let (s, asked) = refusing_owners("overloaded").await;
        let up = search(&s).await;
        assert_eq!(up.error_code().as_deref(), Some("overloaded"));
        assert_eq!(asked.lock().len(), 2, "asked: {:?}", asked.lock());
    }

    /// A shard that records the deadline each attempt tells it.
    async fn recording_shard(seen: Arc<parking_lot::Mutex<Vec<u64>>>) -> ShardEndpoint {
        let app = axum::Router::new().route(
            "/v1/indexes/repo/search",
            post(move |headers: axum::http::HeaderMap| async move {
                let ms = crate::server::params::caller_deadline(&headers).map(|d| d.as_millis() as u64);
                seen.lock().push(ms.unwrap_or(u64::MAX));
                "{}"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        ShardEndpoint { name: "s0".into(), url }
    }

    #[tokio::test]
    async fn every_attempt_tells_the_shard_when_the_router_stops_listening() {
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let s = state(vec![recording_shard(seen.clone()).await], 1);
        let body = || Some(Bytes::from_static(b"{}"));
        let path = "/v1/indexes/repo/search";
        s.forward("repo", Method::POST, path, body(), ForwardPatience::Serve)
            .await
            .unwrap();
        let until = Instant::now() + std::time::Duration::from_secs(2);
        s.forward("repo", Method::POST, path, body(), ForwardPatience::FanOut { until })
            .await
            .unwrap();
        let seen = seen.lock().clone();
        let timeout = s.cfg.shard_timeout.as_millis() as u64;
        assert!(
            seen[0] < timeout && seen[0] > timeout / 2,
            "a search is told a little less than the shard timeout: {seen:?}"
        );
        assert!(
            seen[1] < 2000,
            "a fan-out's search is told the fan-out's deadline: {seen:?}"
        );
    }
}
