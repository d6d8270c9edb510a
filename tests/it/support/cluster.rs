//! A real cluster on 127.0.0.1: an S3-compatible server, N shard processes on
//! fixed ports (so a killed shard can come back at the same address) and a
//! router process with a static shard list.

use super::process::{ADMIN_TOKEN, Proc, shard_args, spawn};
use super::s3::{S3Env, S3Server};
use std::path::PathBuf;
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        let ports: Vec<u16> = (0..shards).map(|_| free_port()).collect();
        let mut procs = Vec::new();
        for (i, &port) in ports.iter().enumerate() {
            let cache = dir.path().join(format!("cache-{i}"));
            procs.push(Some(Self::spawn_shard(&store_url, cache, i, port, &shard_extra).await));
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

    async fn spawn_shard(store_url: &str, cache: PathBuf, i: usize, port: u16, extra: &[String]) -> Proc {
        let listen = format!("127.0.0.1:{port}");
        let mut flags: Vec<&str> = vec!["--listen", &listen];
        flags.extend(extra.iter().map(String::as_str));
        let args = shard_args(store_url, &cache, &shard_name(i), &flags);
        spawn(&shard_name(i), &args, &env_vars()).await
    }

    pub fn kill_shard(&mut self, i: usize) {
        if let Some(mut p) = self.shards[i].take() {
            p.kill();
        }
    }

    pub async fn restart_shard(&mut self, i: usize) {
        let cache = self.cache_dir(i);
        self.shards[i] = Some(Self::spawn_shard(&self.store_url, cache, i, self.ports[i], &self.shard_extra).await);
    }

    /// Local cache directory of shard `i`.
    pub fn cache_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("cache-{i}"))
    }

    pub fn shard_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }
}
