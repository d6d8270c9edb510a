//! Every metric the services export, in one place so the Helm chart's alerts
//! and dashboards have one list to agree with. Labels are bounded enums —
//! never raw index ids — so cardinality stays fixed however many indexes exist.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    TextEncoder,
};
use std::sync::LazyLock;
use trusty_core::metrics::register;

/// One registry per process; the storage layer's metrics (object-store
/// traffic) live in `trusty-core` and register there too.
pub use trusty_core::metrics::{OBJECT_STORE_BYTES, OBJECT_STORE_REQUESTS, OBJECT_STORE_RESUMES, REGISTRY};

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    register(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric"))
}

/// Up to two minutes: requests may run to the router's 60 s deadline, and a
/// quantile past the last bucket only reads as that bucket's bound.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const LOAD_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

pub static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "trusty_build_info",
        "Build information; value is always 1.",
        &["version", "role"],
    )
});

pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "trusty_http_requests_total",
        "HTTP requests by route template and outcome.",
        &["role", "route", "outcome"],
    )
});

pub static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "trusty_http_request_duration_seconds",
        "HTTP request latency by route template and outcome.",
        &["role", "route", "outcome"],
        LATENCY_BUCKETS.to_vec(),
    )
});

pub static INDEXES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "trusty_indexes",
        "Indexes known to this shard by residency state.",
        &["state"],
    )
});

pub static LOAD_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "trusty_index_load_duration_seconds",
        "Time to restore an index version from object storage.",
        &["outcome"],
        LOAD_BUCKETS.to_vec(),
    )
});

pub static LOAD_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "trusty_index_load_failures_total",
        "Index restores that failed, by reason.",
        &["reason"],
    )
});

pub static LOADS_STARTED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new("trusty_index_loads_total", "Index restores started.").expect("valid metric"))
});

pub static UNKNOWN_IDS: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "trusty_unknown_ids_remembered",
            "Index ids storage said do not exist, remembered to spare store lookups (bounded).",
        )
        .expect("valid metric"),
    )
});

pub static RESTORES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "trusty_restores",
        "Restores admitted and running, or waiting for an admission slot.",
        &["state"],
    )
});

pub static RESTORE_REFUSALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "trusty_restore_refusals_total",
        "Restores refused for lack of budget, by reason (too_large, full) and priority.",
        &["reason", "priority"],
    )
});

pub static ARM_UNAVAILABLE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "trusty_search_arm_unavailable_total",
        "Searches answered without an arm they asked for, by arm and reason.",
        &["arm", "reason"],
    )
});

pub static CACHE_BYTES: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec("trusty_cache_bytes", "Bytes held by hot indexes, by tier.", &["tier"]));

pub static CACHE_BUDGET_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "trusty_cache_budget_bytes",
        "Configured residency budget, by tier.",
        &["tier"],
    )
});

pub static CACHE_EVICTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "trusty_cache_evictions_total",
            "Hot indexes dropped from memory (to stay in the memory budget, or by an admin); their local copies stay.",
        )
        .expect("valid"),
    )
});

/// Apart from memory evictions: a thrashing memory cache and a full disk are
/// different problems with different fixes.
pub static CACHE_COPIES_REMOVED: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "trusty_cache_copies_removed_total",
            "Local copies of indexes deleted to stay in the disk budget.",
        )
        .expect("valid"),
    )
});

pub static INDEX_SWAPS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "trusty_index_swaps_total",
            "New index versions swapped in while serving.",
        )
        .expect("valid"),
    )
});

pub static ROUTER_SHARDS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "trusty_router_shards",
        "Shards known to the router, by health.",
        &["health"],
    )
});

pub static ROUTER_RETRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "trusty_router_retries_total",
            "Requests sent on to the next shard after one could not serve them.",
        )
        .expect("valid"),
    )
});

/// Apart from retries: waiting on a restoring owner is how a cold index is
/// served, not a sign of failing shards.
pub static ROUTER_WAITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "trusty_router_waits_total",
            "Requests sent again to an owner restoring the index, to wait for it.",
        )
        .expect("valid"),
    )
});

pub static ROUTER_EJECTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new("trusty_router_ejections_total", "Shards ejected as unhealthy.").expect("valid"))
});

pub static ROUTER_AFFINITY: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "trusty_router_affinity_rank_total",
        "Requests served by the owner at this HRW rank (\"spill\" past the owners).",
        &["rank"],
    )
});

pub static FANOUT_INDEXES: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new("trusty_fanout_indexes", "Indexes searched per cross-index request.")
                .buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]),
        )
        .expect("valid metric"),
    )
});

pub static FANOUT_PARTIAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "trusty_fanout_partial_total",
        "Indexes left out of cross-index results.",
        &["kind"],
    )
});

pub static HEAP_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "trusty_heap_bytes",
        "What the process's allocator holds, by state: allocated (objects not freed, including those parked in thread caches), thread_caches (freed objects parked in per-thread caches for reuse), active (pages of allocated objects), resident (pages it maps), retained (address space kept, not resident). Absent where the allocator keeps no statistics.",
        &["state"],
    )
});

fn refresh_heap_stats() {
    let Some(stats) = crate::allocator::heap_stats() else {
        return;
    };
    for (state, bytes) in [
        ("allocated", stats.allocated),
        ("active", stats.active),
        ("resident", stats.resident),
        ("retained", stats.retained),
        ("thread_caches", stats.thread_caches),
    ] {
        HEAP_BYTES
            .with_label_values(&[state])
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

/// Marks this process's role and version; call once at start.
pub fn set_build_info(role: &str) {
    BUILD_INFO.with_label_values(&[env!("CARGO_PKG_VERSION"), role]).set(1);
}

/// Text exposition of everything registered.
pub fn render() -> String {
    refresh_heap_stats();
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// The request outcome label for an HTTP status and the answer's error code.
/// "cold" is a 503 saying the index is not loaded yet: a shard's normal first
/// answer for a cold index (it starts restoring it), not unavailability.
pub fn outcome(status: u16, error: Option<&str>) -> &'static str {
    match (status, error) {
        (503, Some("index_cold" | "index_loading")) => "cold",
        (200..=399, _) => "ok",
        (503 | 504, _) => "unavailable",
        (400..=499, _) => "client_error",
        _ => "server_error",
    }
}

/// Which service a process runs: each exports only its own series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Shard,
    Router,
}

/// Touches every series `role` exports so a scrape lists them all from the
/// start, even before the first event (alerts and dashboards can then rely on
/// the series existing), and none it never exports.
pub fn touch(role: Role) {
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_DURATION);
    // Both roles answer cross-index searches.
    for k in ["skipped", "failed"] {
        FANOUT_PARTIAL.with_label_values(&[k]);
    }
    LazyLock::force(&FANOUT_INDEXES);
    match role {
        Role::Shard => touch_shard(),
        Role::Router => touch_router(),
    }
}

fn touch_shard() {
    for state in ["cold", "loading", "hot", "failed"] {
        INDEXES.with_label_values(&[state]);
    }
    for reason in [
        "not_found",
        "corrupt",
        "incompatible_schema",
        "store_unavailable",
        "timeout",
        "io",
    ] {
        LOAD_FAILURES.with_label_values(&[reason]);
    }
    for state in ["running", "queued"] {
        RESTORES.with_label_values(&[state]);
    }
    for reason in ["too_large", "full"] {
        for priority in ["demand", "background"] {
            RESTORE_REFUSALS.with_label_values(&[reason, priority]);
        }
    }
    for reason in ["embedder_down", "embedder_timeout", "embedder_mismatch", "arm_error"] {
        ARM_UNAVAILABLE.with_label_values(&["vector", reason]);
    }
    for outcome in ["ok", "failed"] {
        LOAD_DURATION.with_label_values(&[outcome]);
    }
    for op in ["get", "head", "list", "put", "delete"] {
        OBJECT_STORE_REQUESTS.with_label_values(&[op]);
    }
    for d in ["read", "written"] {
        OBJECT_STORE_BYTES.with_label_values(&[d]);
    }
    for tier in ["memory", "disk"] {
        CACHE_BYTES.with_label_values(&[tier]);
        CACHE_BUDGET_BYTES.with_label_values(&[tier]);
    }
    LazyLock::force(&LOADS_STARTED);
    LazyLock::force(&CACHE_EVICTIONS);
    LazyLock::force(&CACHE_COPIES_REMOVED);
    LazyLock::force(&INDEX_SWAPS);
    LazyLock::force(&OBJECT_STORE_RESUMES);
    LazyLock::force(&UNKNOWN_IDS);
}

fn touch_router() {
    for h in ["healthy", "ejected"] {
        ROUTER_SHARDS.with_label_values(&[h]);
    }
    for r in ["0", "1", "2", "spill"] {
        ROUTER_AFFINITY.with_label_values(&[r]);
    }
    LazyLock::force(&ROUTER_RETRIES);
    LazyLock::force(&ROUTER_WAITS);
    LazyLock::force(&ROUTER_EJECTIONS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lists_every_family() {
        touch(Role::Shard);
        touch(Role::Router);
        set_build_info("test");
        let text = render();
        for name in [
            "trusty_build_info",
            "trusty_indexes",
            "trusty_index_load_failures_total",
            "trusty_object_store_requests_total",
            "trusty_cache_bytes",
            "trusty_router_affinity_rank_total",
            "trusty_fanout_partial_total",
            "trusty_cache_evictions_total",
            "trusty_cache_copies_removed_total",
            "trusty_router_retries_total",
            "trusty_router_waits_total",
        ] {
            assert!(text.contains(name), "{name} missing from exposition");
        }
    }

    #[test]
    fn heap_series_come_from_the_installed_allocator_hooks() {
        crate::allocator::install(crate::allocator::Hooks {
            heap_stats: || {
                Some(crate::allocator::HeapStats {
                    allocated: 1_000,
                    active: 2_000,
                    resident: 3_000,
                    retained: 4_000,
                    thread_caches: 5_000,
                })
            },
            release_thread_cache: || {},
        });
        let text = render();
        assert!(text.contains("trusty_heap_bytes{state=\"allocated\"} 1000"), "{text}");
        assert!(text.contains("trusty_heap_bytes{state=\"retained\"} 4000"), "{text}");
    }

    #[test]
    fn outcome_classes() {
        assert_eq!(outcome(200, None), "ok");
        assert_eq!(outcome(404, Some("index_not_found")), "client_error");
        assert_eq!(outcome(503, None), "unavailable");
        assert_eq!(outcome(503, Some("over_budget")), "unavailable");
        assert_eq!(outcome(503, Some("index_cold")), "cold");
        assert_eq!(outcome(503, Some("index_loading")), "cold");
        assert_eq!(
            outcome(504, Some("index_loading")),
            "unavailable",
            "a timeout is not a cold answer"
        );
        assert_eq!(outcome(500, None), "server_error");
    }
}
