//! Router settings.

use crate::server::flags::parse_duration;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct RouterConfig {
    #[arg(long, env = "TRUSTY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Static shard list: `name=url,...`.
    #[arg(long, env = "TRUSTY_SHARDS", conflicts_with_all = ["shards_dns", "shards_k8s"])]
    pub shards: Option<String>,
    /// Headless Service `host:port` resolved by DNS (SRV records give pod names).
    #[arg(long, env = "TRUSTY_SHARDS_DNS", conflicts_with = "shards_k8s")]
    pub shards_dns: Option<String>,
    /// `namespace/service` whose EndpointSlices are watched.
    #[arg(long, env = "TRUSTY_SHARDS_K8S")]
    pub shards_k8s: Option<String>,
    /// Owners per index.
    #[arg(long, env = "TRUSTY_REPLICAS", default_value_t = 2)]
    pub replicas: usize,
    #[arg(long, env = "TRUSTY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Deadline for one forwarded request to a shard; the shard is told it
    /// (less a margin) and answers 503 `request_timeout` by then.
    #[arg(long, env = "TRUSTY_SHARD_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub shard_timeout: Duration,
    /// Active health probe period.
    #[arg(long, env = "TRUSTY_PROBE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub probe_interval: Duration,
    /// A probe slower than this counts as a failure.
    #[arg(long, env = "TRUSTY_PROBE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub probe_timeout: Duration,
    /// Consecutive failures (probes or requests) that eject a shard.
    #[arg(long, env = "TRUSTY_EJECT_AFTER", default_value_t = 2)]
    pub eject_after: u32,
    /// Minimum time an ejected shard stays out before a passing probe re-admits it.
    #[arg(long, env = "TRUSTY_EJECT_FOR", default_value = "3s", value_parser = parse_duration)]
    pub eject_for: Duration,
    /// Bounded-load slack above the mean in-flight load before spilling to the next owner.
    #[arg(long, env = "TRUSTY_LOAD_SLACK", default_value_t = 0.25)]
    pub load_slack: f64,
    /// Concurrent per-index searches in a cross-index search.
    #[arg(long, env = "TRUSTY_FANOUT_CONCURRENCY", default_value_t = 16)]
    pub fanout_concurrency: usize,
    /// Most indexes one cross-index search may name or imply.
    #[arg(long, env = "TRUSTY_MAX_FANOUT_INDEXES", default_value_t = 256)]
    pub max_fanout_indexes: usize,
    /// After shards join or leave, how long the previous owners keep serving
    /// an index while its new owners warm it.
    #[arg(long, env = "TRUSTY_HANDOFF_GRACE", default_value = "5m", value_parser = parse_duration)]
    pub handoff_grace: Duration,
    /// Requests served at once; more are answered 503.
    #[arg(long, env = "TRUSTY_MAX_CONCURRENCY", default_value_t = 1024)]
    pub max_concurrency: usize,
    /// Deadline for one client request.
    #[arg(long, env = "TRUSTY_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
}

impl RouterConfig {
    pub fn local(shards: &str) -> RouterConfig {
        RouterConfig {
            listen: "127.0.0.1:0".into(),
            shards: Some(shards.to_string()),
            shards_dns: None,
            shards_k8s: None,
            replicas: 2,
            admin_token: None,
            shard_timeout: Duration::from_secs(25),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            eject_after: 2,
            eject_for: Duration::from_secs(3),
            load_slack: 0.25,
            fanout_concurrency: 16,
            max_fanout_indexes: 256,
            handoff_grace: Duration::from_secs(300),
            max_concurrency: 1024,
            request_timeout: Duration::from_secs(60),
        }
    }
}
