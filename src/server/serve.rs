//! Binding and serving with graceful shutdown on SIGTERM / Ctrl-C, and the
//! operational routes every role exposes.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

/// `/healthz` (process alive), `/readyz` (ready for traffic) and `/metrics`.
pub fn ops_routes(ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Acquire);
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(crate::api::openapi::document()) }),
        )
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics::render(),
    )
}

pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until SIGTERM/SIGINT or until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "listening");
    axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = termination() => {}
            }
        })
        .await
}

async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// Wraps an app with what every role needs in front of its handlers: request
/// metrics, a body limit, load shedding past `max_concurrency` (see [`shed`]),
/// and a per-request deadline.
///
/// `outside` is merged *outside* the limiter and the deadline: probes and
/// metrics, so a saturated process still answers them at once and overload
/// never looks like death to the kubelet or a router, and routes that shed on
/// their own terms.
pub fn harden(
    app: Router,
    outside: Router,
    role: &'static str,
    max_concurrency: usize,
    deadline: Deadline,
    body_limit: usize,
) -> Router {
    shed(app, max_concurrency, deadline)
        .merge(outside)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |req, next| {
            super::metrics_layer::track(role, req, next)
        }))
}

/// How long a request may run.
#[derive(Debug, Clone, Copy)]
pub enum Deadline {
    /// This long.
    Fixed(std::time::Duration),
    /// This long, or less when the caller says it stops listening sooner
    /// ([`super::params::DEADLINE_HEADER`]): for shards, whose callers are routers.
    CallerMayShorten(std::time::Duration),
}

tokio::task_local! {
    /// When the request being served must have its answer (see [`shed`]).
    static REQUEST_DEADLINE: tokio::time::Instant;
}

/// The deadline [`shed`] gave the request this task is serving, if any: a
/// handler that queues for a scarce resource gives up a little before it,
/// answering `overloaded` (nothing done, worth trying elsewhere) rather than
/// letting the deadline answer `request_timeout` (time spent on the work).
pub fn request_deadline() -> Option<tokio::time::Instant> {
    REQUEST_DEADLINE.try_with(|d| *d).ok()
}

/// Answers 503 `overloaded` at once past `max_concurrency` requests in
/// flight (rather than queueing without bound), and 503 `request_timeout`
/// when one runs past its `deadline`; both with `Retry-After`.
pub fn shed(app: Router, max_concurrency: usize, deadline: Deadline) -> Router {
    use crate::api::ApiError;
    let permits = Arc::new(tokio::sync::Semaphore::new(max_concurrency.max(1)));
    let guard = move |req: axum::extract::Request, next: axum::middleware::Next| {
        let permits = permits.clone();
        async move {
            let Ok(_permit) = permits.try_acquire_owned() else {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many requests in flight",
                )
                .retry_after(1)
                .into_response();
            };
            let timeout = match deadline {
                Deadline::Fixed(t) => t,
                Deadline::CallerMayShorten(t) => super::params::caller_deadline(req.headers()).map_or(t, |d| d.min(t)),
            };
            let until = tokio::time::Instant::now() + timeout;
            match tokio::time::timeout_at(until, REQUEST_DEADLINE.scope(until, next.run(req))).await {
                Ok(resp) => resp,
                Err(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "request_timeout",
                    "request deadline exceeded",
                )
                .retry_after(1)
                .into_response(),
            }
        }
    };
    app.layer(axum::middleware::from_fn(guard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use std::time::Duration;
    use tower::ServiceExt;

    /// How long a request to a handler that would answer long after any
    /// caller gave up runs under `deadline`, with `header` as the caller's
    /// deadline; it must end with 503 `request_timeout`.
    async fn ended_after(deadline: Deadline, header: &str) -> Duration {
        let app = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        );
        let req = Request::builder()
            .uri("/slow")
            .header(super::super::params::DEADLINE_HEADER, header)
            .body(Body::empty())
            .unwrap();
        let started = tokio::time::Instant::now();
        let resp = shed(app, 4, deadline).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{header}");
        started.elapsed()
    }

    // Virtual time: each request ends at a deadline, not after the hour's sleep.

    #[tokio::test(start_paused = true)]
    async fn a_caller_deadline_shorter_than_the_timeout_ends_the_request() {
        let took = ended_after(Deadline::CallerMayShorten(Duration::from_secs(7200)), "250").await;
        assert_eq!(took, Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_deadline_never_extends_the_timeout() {
        for header in ["999999999", "junk"] {
            assert_eq!(
                ended_after(Deadline::CallerMayShorten(Duration::from_secs(2)), header).await,
                Duration::from_secs(2)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_deadline_ignores_the_callers() {
        assert_eq!(
            ended_after(Deadline::Fixed(Duration::from_secs(2)), "250").await,
            Duration::from_secs(2)
        );
    }
}
