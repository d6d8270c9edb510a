//! Per-request metrics keyed by the matched route template (never the raw
//! path, which would carry index ids and explode label cardinality).

use crate::api::error::ErrorCode;
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
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0.as_str());
    let outcome = outcome(status, code);
    let elapsed = started.elapsed().as_secs_f64();
    HTTP_REQUESTS.with_label_values(&[role, &route, outcome]).inc();
    HTTP_DURATION
        .with_label_values(&[role, &route, outcome])
        .observe(elapsed);
    span.in_scope(|| tracing::debug!(status, elapsed_ms = elapsed * 1000.0, "request finished"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiError;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_cold_index_answer_is_counted_apart_from_unavailability() {
        // A role of its own: the registry is shared with every other test.
        let role = "metrics-layer-test";
        let app = Router::new()
            .route(
                "/cold/{id}",
                get(|| async { ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "index_cold", "cold") }),
            )
            .route(
                "/busy",
                get(|| async { ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "busy") }),
            )
            .layer(axum::middleware::from_fn(move |req, next| track(role, req, next)));
        for uri in ["/cold/a", "/cold/b", "/busy"] {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        let count = |route, outcome| HTTP_REQUESTS.with_label_values(&[role, route, outcome]).get();
        assert_eq!(count("/cold/{id}", "cold"), 2);
        assert_eq!(count("/cold/{id}", "unavailable"), 0);
        assert_eq!(count("/busy", "unavailable"), 1);
    }
}
