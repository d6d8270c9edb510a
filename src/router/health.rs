//! Shard health: active readiness probes plus passive ejection on request
//! failures. An ejected shard leaves the placement set (its indexes move to
//! their next HRW owner) until its cool-down has passed and a probe succeeds.
//!
//! Only evidence that a shard is broken counts as a failure: a refused or
//! reset connection, a failed probe, an internal error. A shard shedding load
//! (503 `overloaded`, `request_timeout`) or answering slowly is busy, not
//! broken; ejecting it would move its load to the others and cascade.
//!
//! Health also remembers, briefly, which shard said an index was cold there,
//! so routing tries a replica that may be hot first.

use super::config::RouterConfig;
use super::membership::{Members, ShardEndpoint};
use crate::telemetry::metrics::{ROUTER_EJECTIONS, ROUTER_SHARDS};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, Default)]
struct ShardHealth {
    failures: u32,
    ejected_until: Option<Instant>,
    inflight: Arc<AtomicU64>,
}

#[derive(Debug)]
pub struct Health {
    shards: RwLock<HashMap<String, ShardHealth>>,
    eject_after: u32,
    eject_for: std::time::Duration,
    /// (shard, index) pairs recently answered cold or loading, until when.
    cold: parking_lot::Mutex<lru::LruCache<(String, String), Instant>>,
}

/// How long a "cold here" answer steers routing to another owner.
const COLD_HINT_FOR: std::time::Duration = std::time::Duration::from_secs(1);
/// Most (shard, index) cold hints kept; the oldest go first.
const COLD_HINTS: usize = 8192;

/// Decrements a shard's in-flight count when a forwarded request ends.
pub struct InflightGuard(Arc<AtomicU64>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Health {
    pub fn new(cfg: &RouterConfig) -> Health {
        Health {
            shards: RwLock::new(HashMap::new()),
            eject_after: cfg.eject_after.max(1),
            eject_for: cfg.eject_for,
            cold: parking_lot::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(COLD_HINTS).expect("non-zero"),
            )),
        }
    }

    /// Notes that `shard` answered cold or loading for `index`.
    pub fn note_cold(&self, shard: &str, index: &str) {
        self.cold
            .lock()
            .put((shard.to_string(), index.to_string()), Instant::now() + COLD_HINT_FOR);
    }

    /// Notes that `shard` served `index`.
    pub fn note_hot(&self, shard: &str, index: &str) {
        self.cold.lock().pop(&(shard.to_string(), index.to_string()));
    }

    /// True while `shard` recently said `index` is not hot there.
    pub fn seems_cold(&self, shard: &str, index: &str) -> bool {
        let key = (shard.to_string(), index.to_string());
        let mut cold = self.cold.lock();
        match cold.peek(&key) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                cold.pop(&key);
                false
            }
            None => false,
        }
    }

    pub fn is_healthy(&self, name: &str) -> bool {
        self.shards.read().get(name).is_none_or(|h| h.ejected_until.is_none())
    }

    /// Healthy members, in name order.
    pub fn healthy<'a>(&self, members: &'a [ShardEndpoint]) -> Vec<&'a ShardEndpoint> {
        members.iter().filter(|m| self.is_healthy(&m.name)).collect()
    }

    pub fn inflight(&self, name: &str) -> u64 {
        self.shards
            .read()
            .get(name)
            .map(|h| h.inflight.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    pub fn begin(&self, name: &str) -> InflightGuard {
        let counter = {
            let mut shards = self.shards.write();
            shards.entry(name.to_string()).or_default().inflight.clone()
        };
        counter.fetch_add(1, Ordering::Relaxed);
        InflightGuard(counter)
    }

    pub fn record_success(&self, name: &str) {
        let mut shards = self.shards.write();
        let h = shards.entry(name.to_string()).or_default();
        h.failures = 0;
        if h.ejected_until.is_some_and(|t| Instant::now() >= t) {
            h.ejected_until = None;
            tracing::info!(shard = name, "shard re-admitted");
        }
    }

    pub fn record_failure(&self, name: &str, why: &str) {
        let mut shards = self.shards.write();
        let h = shards.entry(name.to_string()).or_default();
        h.failures += 1;
        if h.failures >= self.eject_after {
            let newly = h.ejected_until.is_none();
            h.ejected_until = Some(Instant::now() + self.eject_for);
            if newly {
                ROUTER_EJECTIONS.inc();
                tracing::warn!(shard = name, failures = h.failures, why, "shard ejected");
            }
        }
    }

    /// Drops what is known of shards that left, unless a request to one is
    /// still in flight: members named by address would otherwise add an
    /// entry per pod IP ever seen.
    pub fn forget_departed(&self, members: &[ShardEndpoint]) {
        self.shards
            .write()
            .retain(|name, h| members.iter().any(|m| &m.name == name) || h.inflight.load(Ordering::Relaxed) > 0);
    }

    pub fn publish_gauges(&self, members: &[ShardEndpoint]) {
        let healthy = members.iter().filter(|m| self.is_healthy(&m.name)).count();
        ROUTER_SHARDS.with_label_values(&["healthy"]).set(healthy as i64);
        ROUTER_SHARDS
            .with_label_values(&["ejected"])
            .set((members.len() - healthy) as i64);
    }
}

/// Probes every member's `/readyz` each interval.
pub async fn probe_loop(health: Arc<Health>, members: Members, client: reqwest::Client, cfg: RouterConfig) {
    let mut tick = tokio::time::interval(cfg.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current = members.borrow().clone();
        let probes = current.iter().map(|m| {
            let client = client.clone();
            let url = format!("{}/readyz", m.url);
            let timeout = cfg.probe_timeout;
            async move {
                let ok = matches!(
                    tokio::time::timeout(timeout, client.get(&url).send()).await,
                    Ok(Ok(r)) if r.status().is_success()
                );
                (m.name.clone(), ok)
            }
        });
        for (name, ok) in futures::future::join_all(probes).await {
            if ok {
                health.record_success(&name);
            } else {
                health.record_failure(&name, "readiness probe failed");
            }
        }
        // The members now, not those probed: one that joined during the
        // round keeps what is known of it.
        let now = members.borrow().clone();
        health.forget_departed(&now);
        health.publish_gauges(&current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn departed_shards_are_forgotten_unless_a_request_is_in_flight() {
        let h = Health::new(&RouterConfig::local(""));
        let member = |name: &str| ShardEndpoint {
            name: name.into(),
            url: format!("http://{name}"),
        };
        for name in ["s0", "s1", "s2"] {
            h.record_success(name);
        }
        let busy = h.begin("s2");
        h.forget_departed(&[member("s0")]);
        assert_eq!(h.shards.read().len(), 2, "s1 forgotten, s2 kept while busy");
        drop(busy);
        h.forget_departed(&[member("s0")]);
        assert_eq!(h.shards.read().keys().collect::<Vec<_>>(), ["s0"]);
    }

    #[test]
    fn ejection_and_readmission() {
        let mut cfg = RouterConfig::local("");
        cfg.eject_after = 2;
        // Far longer than any pause of this thread: the cool-down cannot pass
        // by itself between the checks below.
        cfg.eject_for = Duration::from_secs(3600);
        let h = Health::new(&cfg);
        assert!(h.is_healthy("s0"));
        h.record_failure("s0", "x");
        assert!(h.is_healthy("s0"), "one failure is tolerated");
        h.record_failure("s0", "x");
        assert!(!h.is_healthy("s0"));
        h.record_success("s0");
        assert!(!h.is_healthy("s0"), "stays out for the cool-down");
        // The cool-down ends (now, not after a sleep).
        h.shards.write().get_mut("s0").unwrap().ejected_until = Some(Instant::now());
        assert!(!h.is_healthy("s0"), "out until a success re-admits it");
        h.record_success("s0");
        assert!(h.is_healthy("s0"));
    }

    #[test]
    fn cold_hints_expire_and_are_bounded() {
        let h = Health::new(&RouterConfig::local(""));
        h.note_cold("s0", "a");
        assert!(h.seems_cold("s0", "a"));
        assert!(!h.seems_cold("s1", "a"));
        h.note_hot("s0", "a");
        assert!(!h.seems_cold("s0", "a"));
        for i in 0..(COLD_HINTS + 10) {
            h.note_cold("s0", &format!("i{i}"));
        }
        assert_eq!(h.cold.lock().len(), COLD_HINTS);
    }

    #[test]
    fn inflight_is_counted() {
        let h = Health::new(&RouterConfig::local(""));
        let g1 = h.begin("s0");
        let _g2 = h.begin("s0");
        assert_eq!(h.inflight("s0"), 2);
        drop(g1);
        assert_eq!(h.inflight("s0"), 1);
    }
}
