//! Starting a shard: clean leftovers of a killed process, discover indexes,
//! become ready, then warm and poll in the background.

use super::config::ShardConfig;
use super::discovery;
use super::http::{BODY_LIMIT, routes};
use super::lazy_load::Resolver;
use crate::index::embed::Embedder;
use crate::server::serve;
use crate::storage::open::clean_partials;
use crate::storage::store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A running shard, for tests and the local cluster.
pub struct ShardHandle {
    pub addr: std::net::SocketAddr,
    pub resolver: Arc<Resolver>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: tokio::task::JoinHandle<()>,
}

impl ShardHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        self.background.abort();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }

    /// Serves until SIGTERM / Ctrl-C.
    pub async fn wait(self) -> std::io::Result<()> {
        let r = self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        self.background.abort();
        r
    }
}

/// The full router with middleware: metrics, body limit, concurrency limit, deadline.
pub fn app(resolver: Arc<Resolver>, ready: Arc<AtomicBool>) -> axum::Router {
    let cfg = resolver.cfg.clone();
    serve::harden(
        routes(resolver).merge(serve::ops_routes(ready)),
        "shard",
        cfg.max_concurrency,
        cfg.request_timeout,
        BODY_LIMIT,
    )
}

/// Starts a shard in this process and returns once it is listening.
pub async fn start(cfg: ShardConfig, embedder: Option<Arc<dyn Embedder>>) -> anyhow::Result<ShardHandle> {
    crate::telemetry::metrics::touch_all();
    crate::telemetry::metrics::set_build_info("shard");
    std::fs::create_dir_all(&cfg.cache_dir)?;
    match clean_partials(&cfg.cache_dir) {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed partial downloads left by an earlier process"),
        Err(e) => tracing::warn!(error = %e, "could not clean partial downloads"),
    }
    let store = Store::open(&cfg.store)?;
    let listener = serve::bind(&cfg.listen).await?;
    let addr = listener.local_addr()?;
    let resolver = Resolver::new(cfg, store, embedder);
    let ready = Arc::new(AtomicBool::new(false));
    let app = app(resolver.clone(), ready.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve::serve(listener, app, async move {
        let _ = rx.await;
    }));

    let bg = resolver.clone();
    let background = tokio::spawn(async move {
        match discovery::discover_all(&bg).await {
            Ok(n) => tracing::info!(indexes = n, shard = %bg.cfg.shard_id, "discovered indexes"),
            Err(e) => tracing::warn!(error = %e, "initial index listing failed; will retry while polling"),
        }
        bg.registry.refresh_gauges();
        ready.store(true, Ordering::Release);
        if bg.cfg.warm {
            tokio::spawn(discovery::warm(bg.clone()));
        }
        discovery::poll_loop(bg).await;
    });
    Ok(ShardHandle {
        addr,
        resolver,
        shutdown: Some(tx),
        task,
        background,
    })
}
