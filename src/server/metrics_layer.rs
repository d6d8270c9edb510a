//! Per-request metrics keyed by the matched route template (never the raw
//! path, which would carry index ids and explode label cardinality).

use crate::telemetry::metrics::{HTTP_DURATION, HTTP_REQUESTS, outcome};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// Axum middleware; `role` is "shard" or "router".
pub async fn track(role: &'static str, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().clone();
    let span = tracing::info_span!("request", role, %method, route = %route);
    let started = Instant::now();
    let resp = {
        use tracing::Instrument;
        next.run(req).instrument(span.clone()).await
    };
    let status = resp.status().as_u16();
    let outcome = outcome(status);
    let elapsed = started.elapsed().as_secs_f64();
    HTTP_REQUESTS.with_label_values(&[role, &route, outcome]).inc();
    HTTP_DURATION
        .with_label_values(&[role, &route, outcome])
        .observe(elapsed);
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed * 1000.0, "request finished"));
    resp
}
