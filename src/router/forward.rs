//! Sending one index's request to its owners.
//!
//! Placement runs over the *healthy* members, so an ejected shard's indexes
//! fall to their next HRW owner. Among the owners, bounded load picks the
//! first whose in-flight count is near the mean. A failure worth retrying —
//! the shard unreachable, overloaded or erroring, or the index still loading
//! or failed there — is retried once on the next owner. A `503 loading` is
//! passed through (with `Retry-After`) only when that next owner could not
//! answer either.

use super::config::RouterConfig;
use super::health::Health;
use super::membership::{Members, ShardEndpoint};
use super::ring;
use crate::api::{ApiError, ErrorBody};
use crate::telemetry::metrics::{ROUTER_AFFINITY, ROUTER_RETRIES};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::Arc;

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

    fn error_code(&self) -> Option<String> {
        self.json::<ErrorBody>().map(|b| b.error)
    }
}

impl IntoResponse for Upstream {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body).into_response();
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
}

enum Attempt {
    Done(Upstream),
    /// Worth trying the next owner; the answer (if any) is kept for pass-through.
    Retry(Option<Upstream>, String),
}

impl RouterState {
    pub fn members(&self) -> Vec<ShardEndpoint> {
        self.members.borrow().clone()
    }

    /// Owners of `index_id` over all members (healthy or not), for status reports.
    pub fn owners(&self, index_id: &str) -> Vec<ShardEndpoint> {
        let members = self.members();
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        ring::rank(index_id, &names)
            .into_iter()
            .take(self.cfg.replicas.max(1))
            .filter_map(|n| members.iter().find(|m| m.name == *n).cloned())
            .collect()
    }

    /// Candidates in the order they will be tried, with their HRW rank among healthy members.
    pub fn candidates(&self, index_id: &str) -> Vec<(usize, ShardEndpoint)> {
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
        let window = ranked.len().min(owners + 1);
        let loads: Vec<u64> = ranked[..owners].iter().map(|n| self.health.inflight(n)).collect();
        let total: u64 = names.iter().map(|n| self.health.inflight(n)).sum();
        let mean = total as f64 / names.len().max(1) as f64;
        let first = ring::bounded_pick(&loads, mean, self.cfg.load_slack);
        let mut order: Vec<usize> = vec![first];
        order.extend((0..window).filter(|&i| i != first));
        order
            .into_iter()
            .filter_map(|i| pool.iter().find(|m| m.name == ranked[i]).map(|m| (i, (*m).clone())))
            .collect()
    }

    /// Forwards a request for `index_id` with at most one retry on the next owner.
    pub async fn forward(
        &self,
        index_id: &str,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        admin: bool,
    ) -> Result<Upstream, ApiError> {
        let candidates = self.candidates(index_id);
        if candidates.is_empty() {
            return Err(no_shards());
        }
        let mut kept: Option<Upstream> = None;
        let mut last_reason = String::new();
        for (attempt, (rank, shard)) in candidates.iter().take(2).enumerate() {
            if attempt > 0 {
                ROUTER_RETRIES.inc();
                tracing::debug!(index_id, shard = %shard.name, reason = %last_reason, "retrying on next owner");
            }
            let label = if *rank < self.cfg.replicas.max(1) && *rank < 3 {
                rank.to_string()
            } else {
                "spill".into()
            };
            match self
                .attempt(shard, method.clone(), path_and_query, body.clone(), admin)
                .await
            {
                Attempt::Done(up) => {
                    ROUTER_AFFINITY.with_label_values(&[&label]).inc();
                    return Ok(up);
                }
                Attempt::Retry(up, reason) => {
                    last_reason = reason;
                    // Prefer passing through a "loading" answer: it tells the client when to come back.
                    let loading = up
                        .as_ref()
                        .is_some_and(|u| u.error_code().as_deref() == Some("index_loading"));
                    if kept.is_none() || loading {
                        kept = up.or(kept);
                    }
                }
            }
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

    async fn attempt(
        &self,
        shard: &ShardEndpoint,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        admin: bool,
    ) -> Attempt {
        let _inflight = self.health.begin(&shard.name);
        let mut req = self
            .client
            .request(method, format!("{}{path_and_query}", shard.url))
            .timeout(self.cfg.shard_timeout);
        if let Some(b) = body {
            req = req.header(header::CONTENT_TYPE, "application/json").body(b);
        }
        if admin {
            if let Some(t) = &self.cfg.admin_token {
                req = req.bearer_auth(t);
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.health.record_failure(&shard.name, "request failed");
                return Attempt::Retry(None, format!("{}: {e}", shard.name));
            }
        };
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.health.record_failure(&shard.name, "reading response failed");
                return Attempt::Retry(None, format!("{}: {e}", shard.name));
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
        match code.as_str() {
            // Index-level conditions: the shard is fine, another owner may do better.
            "index_loading" | "index_restore_failed" | "store_unavailable" => {
                self.health.record_success(&shard.name);
                Attempt::Retry(Some(up), format!("{}: {code}", shard.name))
            }
            _ => {
                self.health.record_failure(&shard.name, "server error");
                Attempt::Retry(Some(up), format!("{}: HTTP {status} {code}", shard.name))
            }
        }
    }
}

pub fn no_shards() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_shards",
        "no shards are known to this router",
    )
    .retry_after(2)
}
