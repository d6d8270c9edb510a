//! The process-wide metrics registry, and the metrics of the storage layer.
//! Services register their own metrics here too, so one `/metrics` page
//! shows everything a process does.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use std::sync::LazyLock;

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Adds `c` to [`REGISTRY`] and hands it back, for `LazyLock` initialisers.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    REGISTRY.register(Box::new(c.clone())).expect("metric registered twice");
    c
}

pub static OBJECT_STORE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "trusty_object_store_requests_total",
                "Object store requests by operation.",
            ),
            &["op"],
        )
        .expect("valid metric"),
    )
});

pub static OBJECT_STORE_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "trusty_object_store_bytes_total",
                "Bytes moved to or from object storage.",
            ),
            &["direction"],
        )
        .expect("valid metric"),
    )
});

pub static OBJECT_STORE_RESUMES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "trusty_object_store_resumes_total",
            "Downloads resumed with a range request after a break or stall.",
        )
        .expect("valid metric"),
    )
});
