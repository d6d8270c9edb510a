//! Running `trusty-search` roles as real child processes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The `trusty-search` binary. Cargo names it for this package's own tests;
/// the operator's tests share this module and find it beside their test
/// binary (`target/debug/deps/..`), where `cargo test --workspace` builds it.
pub fn binary() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_trusty-search") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current test binary");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("trusty-search"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p trusty-search`, or run the whole suite with scripts/test.sh)",
        bin.display()
    );
    bin
}

/// A child process that is killed when dropped.
pub struct Proc {
    pub child: Child,
    pub url: String,
}

impl Proc {
    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a process may take to print its URL.
pub const START_PATIENCE: Duration = Duration::from_secs(60);

/// Starts a process whose first stdout line ends with its URL
/// (`... listening on http://127.0.0.1:PORT`), and waits until `/readyz` answers 200.
pub async fn spawn(name: &str, args: &[String], env: &[(&str, String)]) -> Proc {
    try_spawn(name, args, env, START_PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`spawn`], answering an error instead of panicking when the process exits
/// (or stays silent for `patience`) before printing its URL: for a restart on
/// a fixed port, which another process may hold for a moment.
pub async fn try_spawn(
    name: &str,
    args: &[String],
    env: &[(&str, String)],
    patience: Duration,
) -> Result<Proc, String> {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env("TRUSTY_EMBEDDER", "none")
        .env("RUST_LOG", "info,trusty_search=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn trusty-search");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {} // keep draining so the child never blocks on stdout
    });
    // Awaited, not blocked on: the test's S3 server and stubs share this
    // runtime, and a starting shard may need them.
    let line = match tokio::time::timeout(patience, rx).await {
        Ok(Ok(line)) => line,
        Ok(Err(_)) | Err(_) => {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(format!("{name} did not start ({status}; its log is above)"));
        }
    };
    let url = line.rsplit(' ').next().unwrap().trim().to_string();
    let proc = Proc { child, url };
    wait_ready(&proc.url).await;
    Ok(proc)
}

pub async fn wait_ready(url: &str) {
    let client = reqwest::Client::new();
    // Generous: start-up on a loaded 2-core machine; returns as soon as ready.
    let until = std::time::Instant::now() + START_PATIENCE;
    while std::time::Instant::now() < until {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became ready");
}

/// Shard arguments with fast polling and short backoff, for tests; a flag in
/// `extra` replaces the default of the same name (clap refuses repeated flags).
pub fn shard_args(store: &str, cache: &Path, shard_id: &str, extra: &[&str]) -> Vec<String> {
    let cache = cache.display().to_string();
    let defaults: [(&str, &str); 7] = [
        ("--store", store),
        ("--cache-dir", &cache),
        ("--shard-id", shard_id),
        ("--listen", "127.0.0.1:0"),
        ("--poll-interval", "500ms"),
        ("--retry-base", "500ms"),
        ("--retry-max", "2s"),
    ];
    let mut v = vec!["shard".to_string()];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            v.push(flag.to_string());
            v.push(value.to_string());
        }
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}
