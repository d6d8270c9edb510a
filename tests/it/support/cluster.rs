//! A real cluster on 127.0.0.1: an S3-compatible server, N shard processes,
//! each keeping the port it first bound (so a killed shard can come back at
//! the same address), and a router process with a static shard list.

use super::process::{ADMIN_TOKEN, Proc, START_PATIENCE, shard_args, spawn, try_spawn};
use super::s3::{S3Env, S3Server};
use std::path::PathBuf;
use std::time::Duration;
use trusty_search::storage::store::Store;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub s3: S3Server,
    pub store_url: String,
    pub store: Store,
    pub shards: Vec<Option<Proc>>,
    pub ports: Vec<u16>,
    pub router: Proc,
    /// Extra shard flags, kept so restarted shards run with the same ones.
    shard_extra: Vec<String>,
}

/// The port a process listens on, from the URL it printed.
pub fn port_of(proc: &Proc) -> u16 {
    proc.url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("URL ends with its port")
}

pub fn shard_name(i: usize) -> String {
    format!("trusty-shard-{i}")
}

fn env_vars() -> Vec<(&'static str, String)> {
    let mut v: Vec<(&str, String)> = S3Server::env().iter().map(|(k, v)| (*k, v.to_string())).collect();
    v.push(("TRUSTY_ADMIN_TOKEN", ADMIN_TOKEN.to_string()));
    v
}

impl Cluster {
    pub async fn start(shards: usize, replicas: usize, router_extra: &[&str]) -> Cluster {
        Self::start_with(shards, replicas, &[], router_extra).await
    }

    /// Like [`Cluster::start`], with flags for every shard (they replace the test defaults).
    pub async fn start_with(shards: usize, replicas: usize, shard_extra: &[&str], router_extra: &[&str]) -> Cluster {
        let shard_extra: Vec<String> = shard_extra.iter().map(|s| s.to_string()).collect();
        let S3Env {
            s3,
            store_url,
            store,
            dir,
        } = super::s3::env("cluster").await;
        // Each shard picks its own port: a port chosen here and bound later
        // may be taken in between by any process the parallel tests start.
        let mut procs = Vec::new();
        let mut ports = Vec::new();
        for i in 0..shards {
            let cache = dir.path().join(format!("cache-{i}"));
            let proc = Self::spawn_shard(&store_url, cache, i, 0, &shard_extra, START_PATIENCE)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            ports.push(port_of(&proc));
            procs.push(Some(proc));
        }
        let list: Vec<String> = (0..shards)
            .map(|i| format!("{}=http://127.0.0.1:{}", shard_name(i), ports[i]))
            .collect();
        let mut args: Vec<String> = vec![
            "router".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--shards".into(),
            list.join(","),
            "--replicas".into(),
            replicas.to_string(),
            "--probe-interval".into(),
            "200ms".into(),
            "--eject-for".into(),
            "1s".into(),
        ];
        args.extend(router_extra.iter().map(|s| s.to_string()));
        let router = spawn("router", &args, &env_vars()).await;
        Cluster {
            dir,
            s3,
            store_url,
            store,
            shards: procs,
            ports,
            router,
            shard_extra,
        }
    }

    async fn spawn_shard(
        store_url: &str,
        cache: PathBuf,
        i: usize,
        port: u16,
        extra: &[String],
        patience: Duration,
    ) -> Result<Proc, String> {
        let listen = format!("127.0.0.1:{port}");
        let mut flags: Vec<&str> = vec!["--listen", &listen];
        flags.extend(extra.iter().map(String::as_str));
        let args = shard_args(store_url, &cache, &shard_name(i), &flags);
        try_spawn(&shard_name(i), &args, &env_vars(), patience).await
    }

    pub fn kill_shard(&mut self, i: usize) {
        if let Some(mut p) = self.shards[i].take() {
            p.kill();
        }
    }

    /// Restarts shard `i` on its old port, which the router knows it by. An
    /// outgoing connection of another test may hold that port for a moment
    /// after the kill, so a failed start is retried for up to a minute in all.
    pub async fn restart_shard(&mut self, i: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let patience = deadline.saturating_duration_since(tokio::time::Instant::now());
            let started = Self::spawn_shard(
                &self.store_url,
                self.cache_dir(i),
                i,
                self.ports[i],
                &self.shard_extra,
                patience,
            );
            match started.await {
                Ok(proc) => {
                    self.shards[i] = Some(proc);
                    return;
                }
                Err(e) if tokio::time::Instant::now() >= deadline => panic!("{e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Local cache directory of shard `i`.
    pub fn cache_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("cache-{i}"))
    }

    pub fn shard_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }
}
