//! MCP end to end with a client nobody here wrote: the official Python `mcp`
//! SDK, over stdio (`trusty-search mcp --router URL` as a child of the Python
//! client) and over streamable HTTP (the `/mcp` service mounted in an axum
//! server the way the router mounts it), both in front of a real shard
//! process serving a fixture published to a real S3-compatible server.

use crate::support::fixtures::publish_fixture;
use crate::support::process::{ADMIN_TOKEN, binary, shard_args, spawn};
use crate::support::s3::{S3Server, set_process_env};
use std::time::Duration;
use trusty_search::mcp::mcp_http_service;
use trusty_search::storage::store::Store;

/// The version of the Python SDK the check is written against.
const PYTHON_MCP_VERSION: &str = "2.3.0";
const CHECK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client_check.py");

/// Installs the Python SDK unless that exact version is already importable.
async fn ensure_python_mcp() {
    let probe =
        format!("import importlib.metadata as m, mcp, sys; sys.exit(m.version('mcp') != '{PYTHON_MCP_VERSION}')");
    let have = tokio::process::Command::new("python3")
        .args(["-c", &probe])
        .status()
        .await
        .expect("python3 must be installed for the MCP client check");
    if have.success() {
        return;
    }
    let out = tokio::process::Command::new("python3")
        .args(["-m", "pip", "install", "-q", &format!("mcp=={PYTHON_MCP_VERSION}")])
        .output()
        .await
        .expect("run pip");
    assert!(
        out.status.success(),
        "pip install mcp=={PYTHON_MCP_VERSION} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the Python check and fails the test with its output unless it exits 0.
async fn run_check(args: &[&str]) {
    let run = tokio::process::Command::new("python3")
        .arg(CHECK_SCRIPT)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .unwrap_or_else(|_| panic!("client_check.py {} timed out", args[0]))
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("client_check.py {}:\n{stderr}", args[0]);
    assert!(
        out.status.success(),
        "client_check.py {} failed ({}):\n{stderr}\n{}",
        args[0],
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_mcp_sdk_over_stdio_and_streamable_http() {
    ensure_python_mcp().await;
    set_process_env();
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let store_url = s3.url("cluster");
    let store = Store::open(&store_url).unwrap();
    publish_fixture(&store, "demo", "a").await;

    let mut vars: Vec<(&str, String)> = S3Server::env().iter().map(|(k, v)| (*k, v.to_string())).collect();
    vars.push(("TRUSTY_ADMIN_TOKEN", ADMIN_TOKEN.to_string()));
    let shard = spawn(
        "s0",
        &shard_args(&store_url, &dir.path().join("cache"), "s0", &[]),
        &vars,
    )
    .await;

    // The `/mcp` endpoint in front of the shard, mounted as the router does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mcp_url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = axum::Router::new().nest_service("/mcp", mcp_http_service(shard.url.clone()).unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let bin = binary();
    let bin = bin.to_str().unwrap();
    run_check(&["stdio", bin, &shard.url, "demo", "load_config", "load config"]).await;
    run_check(&["http", &mcp_url, "demo", "load_config", "load config"]).await;
    server.abort();
    drop(s3);
}
