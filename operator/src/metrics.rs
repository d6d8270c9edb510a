//! Prometheus metrics and the `/metrics`, `/healthz` and `/readyz` endpoint.
//!
//! Ready means the operator can do its job: the process only serves after it
//! reached the API server and found the CRD, and it stays ready while its
//! leader-election rounds keep reaching the API server, as leader or standby.
//!
//! Labels are bounded (outcome, failure reason): index names never become
//! label values, so cardinality does not grow with the number of Indexes.

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_duration: Histogram,
    pub failures: IntCounterVec,
    pub leader: IntGauge,
    /// Indexes whose build of their current inputs failed: a failed build
    /// returns the reconcile successfully, so no failure counter sees it.
    pub indexes_failed: IntGauge,
    /// Unix time of the last leader-election round that reached the API server.
    pub election_round: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "trusty_operator_reconciles_total",
                "Reconciles of Index resources by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "trusty_operator_reconcile_duration_seconds",
                "Duration of one Index reconcile",
            )
            .buckets(vec![0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "trusty_operator_reconcile_failures_total",
                "Failed reconciles by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let leader = IntGauge::new("trusty_operator_leader", "1 while this replica holds the leader lease")
            .expect("valid metric");
        let indexes_failed = IntGauge::new(
            "trusty_operator_indexes_failed",
            "Indexes whose build of their current inputs failed, while this replica leads",
        )
        .expect("valid metric");
        let election_round = IntGauge::new(
            "trusty_operator_election_round_timestamp_seconds",
            "Unix time of the last leader-election round that reached the API server",
        )
        .expect("valid metric");
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(failures.clone()),
            Box::new(leader.clone()),
            Box::new(indexes_failed.clone()),
            Box::new(election_round.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            reconciles,
            reconcile_duration,
            failures,
            leader,
            indexes_failed,
            election_round,
        }
    }

    /// Records a leader-election round that reached the API server.
    pub fn note_election_round(&self) {
        self.election_round.set(unix_now() as i64);
    }

    /// Why the operator is not ready, if it is not: no election round has
    /// reached the API server within `window`.
    pub fn not_ready(&self, window: Duration) -> Option<String> {
        let last = self.election_round.get();
        if last == 0 {
            return Some("no leader-election round has reached the API server yet".into());
        }
        let age = unix_now().saturating_sub(last as u64);
        (age > window.as_secs()).then(|| format!("no leader-election round has reached the API server for {age}s"))
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is utf-8")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Clone)]
struct Endpoint {
    metrics: Arc<Metrics>,
    ready_window: Duration,
}

/// The probe and metrics routes; `ready_window` is how long the operator
/// stays ready without an election round reaching the API server.
pub fn router(metrics: Arc<Metrics>, ready_window: Duration) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(serve_readyz))
        .with_state(Endpoint { metrics, ready_window })
}

async fn serve_readyz(State(e): State<Endpoint>) -> impl IntoResponse {
    match e.metrics.not_ready(e.ready_window) {
        None if e.metrics.leader.get() == 1 => (StatusCode::OK, "ready: leader".to_string()),
        None => (StatusCode::OK, "ready: standby".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn serve_metrics(State(e): State<Endpoint>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        e.metrics.render(),
    )
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process exits.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, ready_window: Duration) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(metrics, ready_window)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart's dashboards and alerts use only operator metrics that exist.
    #[test]
    fn chart_uses_only_real_operator_metrics() {
        let m = Metrics::new();
        m.reconciles.with_label_values(&["success"]).inc();
        m.failures.with_label_values(&["router"]).inc();
        m.reconcile_duration.observe(0.2);
        let text = m.render();
        let exported: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let used = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/trusty-search/metrics-used.txt"
        ))
        .expect("charts/trusty-search/metrics-used.txt");
        let missing: Vec<&str> = used
            .lines()
            .filter(|n| n.starts_with("trusty_operator_"))
            .filter(|n| !exported.contains(n))
            .collect();
        assert!(
            missing.is_empty(),
            "chart uses operator metrics that do not exist: {missing:?}"
        );
    }

    #[tokio::test]
    async fn metrics_endpoint_exposes_the_operator_series() {
        let m = Arc::new(Metrics::new());
        m.reconciles.with_label_values(&["success"]).inc();
        m.failures.with_label_values(&["router"]).inc();
        m.reconcile_duration.observe(0.2);
        m.leader.set(1);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let probe = m.clone();
        tokio::spawn(async move { axum::serve(listener, router(m, Duration::from_secs(45))).await });
        let body = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("trusty_operator_reconciles_total{outcome=\"success\"} 1"),
            "{body}"
        );
        assert!(body.contains("trusty_operator_reconcile_failures_total{reason=\"router\"} 1"));
        assert!(body.contains("trusty_operator_reconcile_duration_seconds_count 1"));
        assert!(body.contains("trusty_operator_leader 1"));
        assert!(body.contains("trusty_operator_indexes_failed 0"), "{body}");
        let health = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);

        // Ready once an election round reached the API server, stale after the window.
        let ready = |addr| async move { reqwest::get(format!("http://{addr}/readyz")).await.unwrap() };
        let r = ready(addr).await;
        assert_eq!(r.status(), 503);
        assert!(r.text().await.unwrap().contains("yet"));
        probe.note_election_round();
        let r = ready(addr).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ready: leader");
        probe.election_round.set(unix_now() as i64 - 600);
        let r = ready(addr).await;
        assert_eq!(r.status(), 503);
        assert!(r.text().await.unwrap().contains("for 6"), "stale by ten minutes");
    }
}
