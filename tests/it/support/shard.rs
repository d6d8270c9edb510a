//! One shard process against a real S3-compatible server, for tests that
//! drive a single shard directly.

use super::process::{ADMIN_TOKEN, Proc, shard_args, spawn};
use super::s3::S3Server;
use std::path::Path;

pub use super::s3::S3Env as Env;

/// A fresh bucket on a fresh S3 server.
pub async fn env() -> Env {
    super::s3::env("cluster").await
}

/// The environment a shard process needs: S3 credentials and the admin token.
pub fn shard_env() -> Vec<(&'static str, String)> {
    let mut vars: Vec<(&str, String)> = S3Server::env().iter().map(|(k, v)| (*k, v.to_string())).collect();
    vars.push(("TRUSTY_ADMIN_TOKEN", ADMIN_TOKEN.to_string()));
    vars
}

pub async fn start_shard(env: &Env, name: &str, cache: &Path, extra: &[&str]) -> Proc {
    spawn(name, &shard_args(&env.store_url, cache, name, extra), &shard_env()).await
}

/// An admin call with the test token.
pub async fn admin(url: &str, method: reqwest::Method, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

/// (estimated memory, bytes on disk) of the current version of `id`.
pub async fn sizes(env: &Env, id: &str) -> (u64, u64) {
    let id = trusty_search::IndexId::new(id).unwrap();
    let (pointer, _) = trusty_search::storage::open::read_current(&env.store, &id, None)
        .await
        .unwrap()
        .unwrap();
    let bytes = env
        .store
        .get(&trusty_search::storage::layout::manifest_key(&id, &pointer.version))
        .await
        .unwrap();
    let m: trusty_search::storage::manifest::Manifest = serde_json::from_slice(&bytes).unwrap();
    (trusty_search::search::engine::estimate_memory(&m), m.total_bytes())
}
