//! MCP end to end with a client nobody here wrote: the official Python `mcp`
//! SDK, over stdio (`trusty-search mcp --router URL` as a child of the Python
//! client) and over streamable HTTP (the router's `/mcp`), both against a
//! real cluster (router and shard processes, a real S3-compatible server).

use crate::support::fixtures::publish_fixture;
use crate::support::process::binary;
use std::time::Duration;

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
    // A real cluster: the router serves `/mcp` and the stdio bridge talks to the router.
    let c = crate::support::cluster::Cluster::start(2, 2, &[]).await;
    publish_fixture(&c.store, "demo", "a").await;
    let mcp_url = format!("{}/mcp", c.router.url);

    let bin = binary();
    let bin = bin.to_str().unwrap();
    run_check(&["stdio", bin, &c.router.url, "demo", "load_config", "load config"]).await;
    run_check(&["http", &mcp_url, "demo", "load_config", "load config"]).await;
}
