//! Starting a shard: clean leftovers of a killed process, discover indexes,
//! become ready, then warm and poll in the background.

use super::config::ShardConfig;
use super::discovery;
use super::disk::{self, CachedVersion};
use super::http::routes;
use super::lazy_load::Resolver;
use super::residency::{DiskCopy, SlotState};
use crate::IndexId;
use crate::embed::Embedder;
use crate::server::serve;
use crate::storage::open::is_complete;
use crate::storage::store::{Store, StoreError};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a shard could not start; each keeps the error underneath it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("preparing the cache directory {}", path.display())]
    CacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the index store")]
    Store(#[source] StoreError),
    #[error("listening on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

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
        routes(resolver),
        serve::ops_routes(ready),
        "shard",
        cfg.max_concurrency,
        serve::Deadline::CallerMayShorten(cfg.request_timeout),
        crate::server::params::BODY_LIMIT,
    )
}

/// Starts a shard in this process and returns once it is listening.
pub async fn start(cfg: ShardConfig, embedder: Option<Arc<dyn Embedder>>) -> Result<ShardHandle, StartError> {
    crate::telemetry::metrics::touch(crate::telemetry::metrics::Role::Shard);
    crate::telemetry::metrics::set_build_info("shard");
    let cache_error = |source| StartError::CacheDir {
        path: cfg.cache_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&cfg.cache_dir).map_err(cache_error)?;
    // What an earlier process left: partial downloads and older versions go,
    // verified versions stay and count against the disk budget.
    let cached = disk::inventory(&cfg.cache_dir, is_complete).map_err(cache_error)?;
    let store = Store::open(&cfg.store).map_err(StartError::Store)?;
    let listen_error = |source| StartError::Listen {
        addr: cfg.listen.clone(),
        source,
    };
    let listener = serve::bind(&cfg.listen).await.map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
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
        adopt_cache(&bg, cached);
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

/// Attaches the verified versions found on disk to their indexes as local
/// copies (so they count against the disk budget and a restore can reuse
/// them), restores last-used times, and trims the copies to the disk budget.
fn adopt_cache(resolver: &Resolver, cached: Vec<CachedVersion>) {
    let found = cached.len();
    for c in cached {
        let Ok(id) = IndexId::new(c.index_id.clone()) else {
            resolver.dirs.doom(&c.dir);
            continue;
        };
        let slot = resolver.registry.get_or_insert(&id);
        let mut inner = slot.lock();
        // The server already answers while this runs: a query may have
        // loaded the index meanwhile. Only a cold slot adopts the copy; a hot
        // one serving another version leaves it unused, so it goes.
        match &inner.state {
            SlotState::Cold if inner.disk_copy.is_none() => {
                inner.disk_copy = Some(DiskCopy {
                    version: c.version,
                    dir: c.dir,
                    bytes: c.bytes,
                });
            }
            SlotState::Hot(l) if l.version != c.version => {
                drop(inner);
                resolver.dirs.doom(&c.dir);
            }
            _ => {}
        }
    }
    for (id, last_used) in discovery::load_recent(&resolver.cfg.cache_dir) {
        if let Some(slot) = resolver.registry.get(&id) {
            slot.set_last_used_ms(last_used);
        }
    }
    let trimmed = resolver.budget.trim_disk(resolver);
    if found > 0 {
        tracing::info!(
            found,
            trimmed,
            "local copies from an earlier process counted against the disk budget"
        );
    }
}
