//! Shard settings: flags, each with an environment variable for containers.

use std::path::PathBuf;
use std::time::Duration;

use crate::server::flags::{parse_bytes, parse_duration};

#[derive(Debug, Clone, clap::Args)]
pub struct ShardConfig {
    /// Object store URL holding the indexes.
    #[arg(long, env = "TRUSTY_STORE")]
    pub store: String,
    /// Local directory for downloaded versions.
    #[arg(long, env = "TRUSTY_CACHE_DIR", default_value = "/var/cache/trusty-search")]
    pub cache_dir: PathBuf,
    /// Address to serve HTTP on.
    #[arg(long, env = "TRUSTY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Stable identity of this shard (the StatefulSet pod name).
    #[arg(long, env = "TRUSTY_SHARD_ID")]
    pub shard_id: String,
    /// Bearer token for admin routes; admin routes are disabled without one.
    #[arg(long, env = "TRUSTY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Bytes of hot indexes held in memory before the least recently used is evicted.
    #[arg(long, env = "TRUSTY_MEMORY_BUDGET", default_value = "4GiB", value_parser = parse_bytes)]
    pub memory_budget: u64,
    /// Bytes of downloaded versions kept on local disk.
    #[arg(long, env = "TRUSTY_DISK_BUDGET", default_value = "20GiB", value_parser = parse_bytes)]
    pub disk_budget: u64,
    /// Time allowed for a restore before its download starts, and the base of
    /// its whole deadline, which grows with the version's size (see `min_download_rate`).
    #[arg(long, env = "TRUSTY_LOAD_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub load_timeout: Duration,
    /// Slowest download rate a restore is allowed: its deadline is
    /// `load_timeout + bytes / min_download_rate`, so a large index is not failed by a fixed timeout.
    #[arg(long, env = "TRUSTY_MIN_DOWNLOAD_RATE", default_value = "2MiB", value_parser = parse_bytes)]
    pub min_download_rate: u64,
    /// A download that receives no bytes for this long is resumed with a range request.
    #[arg(long, env = "TRUSTY_DOWNLOAD_STALL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub download_stall_timeout: Duration,
    /// Restores that may run at once on this shard; more wait in a first-come, first-served queue.
    #[arg(long, env = "TRUSTY_MAX_RESTORES", default_value_t = 2)]
    pub max_restores: usize,
    /// Background warm-ups (fan-outs, preloads, hand-offs) that may wait for a restore slot;
    /// beyond this they are dropped and the index stays cold until it is asked for.
    #[arg(long, env = "TRUSTY_WARM_QUEUE", default_value_t = 16)]
    pub warm_queue: usize,
    /// Searches computed at once (each on a blocking thread); 0 = one per CPU.
    #[arg(long, env = "TRUSTY_SEARCH_THREADS", default_value_t = 0)]
    pub search_threads: usize,
    /// Most indexes one cross-index search may name or imply.
    #[arg(long, env = "TRUSTY_MAX_FANOUT_INDEXES", default_value_t = 256)]
    pub max_fanout_indexes: usize,
    /// How long a query waits for its embedding before hybrid search answers without vectors.
    #[arg(long, env = "TRUSTY_EMBED_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub embed_timeout: Duration,
    /// How long a request waits for a loading index before answering 503 + Retry-After.
    #[arg(long, env = "TRUSTY_LOAD_WAIT", default_value = "20s", value_parser = parse_duration)]
    pub load_wait: Duration,
    /// First retry delay after a failed restore; doubles per attempt.
    #[arg(long, env = "TRUSTY_RETRY_BASE", default_value = "5s", value_parser = parse_duration)]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[arg(long, env = "TRUSTY_RETRY_MAX", default_value = "5m", value_parser = parse_duration)]
    pub retry_max: Duration,
    /// How often `CURRENT` pointers and the index list are polled.
    #[arg(long, env = "TRUSTY_POLL_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How long "no such index" answers from storage are remembered.
    #[arg(long, env = "TRUSTY_NEGATIVE_CACHE", default_value = "5s", value_parser = parse_duration)]
    pub negative_cache: Duration,
    /// Most "no such index" answers remembered at once (least recently asked forgotten first).
    #[arg(long, env = "TRUSTY_NEGATIVE_CACHE_ENTRIES", default_value_t = 4096)]
    pub negative_cache_entries: usize,
    /// Requests served at once; more are answered 503.
    #[arg(long, env = "TRUSTY_MAX_CONCURRENCY", default_value_t = 256)]
    pub max_concurrency: usize,
    /// Deadline for one request.
    #[arg(long, env = "TRUSTY_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Concurrent object downloads per restore.
    #[arg(long, env = "TRUSTY_DOWNLOAD_PARALLELISM", default_value_t = 8)]
    pub download_parallelism: usize,
    /// Warm recently used indexes at start (without blocking readiness).
    #[arg(long, env = "TRUSTY_WARM", default_value_t = true, action = clap::ArgAction::Set)]
    pub warm: bool,
}

impl ShardConfig {
    /// A config for tests and the local cluster: small budgets, fast polling.
    pub fn local(store: &str, cache_dir: PathBuf, shard_id: &str) -> ShardConfig {
        ShardConfig {
            store: store.to_string(),
            cache_dir,
            listen: "127.0.0.1:0".into(),
            shard_id: shard_id.to_string(),
            admin_token: None,
            memory_budget: 2 << 30,
            disk_budget: 8 << 30,
            load_timeout: Duration::from_secs(120),
            min_download_rate: 2 << 20,
            download_stall_timeout: Duration::from_secs(30),
            max_restores: 2,
            warm_queue: 16,
            search_threads: 0,
            max_fanout_indexes: 256,
            embed_timeout: crate::search::engine::DEFAULT_EMBED_TIMEOUT,
            load_wait: Duration::from_secs(20),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            negative_cache: Duration::from_secs(2),
            negative_cache_entries: 4096,
            max_concurrency: 256,
            request_timeout: Duration::from_secs(30),
            download_parallelism: 8,
            warm: true,
        }
    }

    /// Deadline of a restore whose download is `bytes` long.
    pub fn restore_deadline(&self, bytes: u64) -> Duration {
        let rate = self.min_download_rate.max(1);
        let download = Duration::try_from_secs_f64(bytes as f64 / rate as f64).unwrap_or(Duration::MAX);
        self.load_timeout.saturating_add(download)
    }

    /// Searches computed at once.
    pub fn search_parallelism(&self) -> usize {
        match self.search_threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        }
    }

    /// Delay before retry number `attempts` (1-based) of a failed restore.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32.checked_shl(attempts.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = ShardConfig::local("memory://x", "/tmp".into(), "s0");
        assert_eq!(c.backoff(1), Duration::from_secs(2));
        assert_eq!(c.backoff(2), Duration::from_secs(4));
        assert_eq!(c.backoff(3), Duration::from_secs(8));
        assert_eq!(c.backoff(40), Duration::from_secs(60));
    }

    /// Sizes come from a manifest in storage: an absurd one must not panic.
    #[test]
    fn the_restore_deadline_saturates() {
        let c = ShardConfig {
            min_download_rate: 1,
            ..ShardConfig::local("memory://x", "/tmp".into(), "s0")
        };
        assert_eq!(c.restore_deadline(u64::MAX), Duration::MAX);
        assert!(c.restore_deadline(10) > c.load_timeout);
    }
}
