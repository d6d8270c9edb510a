//! The resolver: the only way a handler reaches an index.
//!
//! `get_or_load_index` takes the hot fast path when it can; otherwise it
//! checks storage for ids it has not seen, starts at most one restore per
//! index (the state change Cold → Loading under the slot mutex *is* the
//! loading gate), and waits for the outcome up to `load_wait`. A restore runs
//! as its own task under `load_timeout`, so a request that gives up (503 +
//! `Retry-After`) does not cancel it, and the next request finds it hot.

use super::budget;
use super::config::ShardConfig;
use super::loaded::LoadedIndex;
use super::residency::{Failure, Registry, Slot, SlotState};
use crate::IndexId;
use crate::api::ApiError;
use crate::index::embed::Embedder;
use crate::search::engine::Engine;
use crate::storage::layout;
use crate::storage::open::{OpenError, fetch_version, read_current};
use crate::storage::store::Store;
use crate::telemetry::metrics::{LOAD_DURATION, LOAD_FAILURES, LOADS_STARTED};
use axum::http::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("index {0} does not exist")]
    NotFound(IndexId),
    #[error("index {id} is loading")]
    Loading { id: IndexId, retry_after: Duration },
    #[error("index {id} failed to load ({reason}): {message}")]
    Failed {
        id: IndexId,
        reason: &'static str,
        message: String,
        retry_in: Duration,
    },
    #[error("object store unavailable while looking up {id}: {message}")]
    StoreUnavailable { id: IndexId, message: String },
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> ApiError {
        match &e {
            ResolveError::NotFound(id) => ApiError::not_found(id.as_str()),
            ResolveError::Loading { id, retry_after } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "index_loading", e.to_string())
                    .with_index(id.as_str())
                    .retryable(true)
                    .retry_after(retry_after.as_secs().max(1))
            }
            ResolveError::Failed { id, .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "index_restore_failed", e.to_string())
                    .with_index(id.as_str())
                    .retryable(false)
            }
            ResolveError::StoreUnavailable { id, .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
                    .with_index(id.as_str())
                    .retryable(true)
                    .retry_after(2)
            }
        }
    }
}

/// Why a restore failed, with its metric label.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub reason: &'static str,
    pub message: String,
}

impl From<OpenError> for LoadFailure {
    fn from(e: OpenError) -> Self {
        LoadFailure {
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

pub struct Resolver {
    pub cfg: ShardConfig,
    pub store: Store,
    pub registry: Registry,
    pub embedder: Option<Arc<dyn Embedder>>,
}

impl Resolver {
    pub fn new(cfg: ShardConfig, store: Store, embedder: Option<Arc<dyn Embedder>>) -> Arc<Resolver> {
        Arc::new(Resolver {
            cfg,
            store,
            registry: Registry::default(),
            embedder,
        })
    }

    /// The slot for `id`, asking storage about ids not seen yet (with a short
    /// negative cache so a burst of requests for a missing id costs one lookup).
    pub async fn slot(&self, id: &IndexId) -> Result<Arc<Slot>, ResolveError> {
        if let Some(slot) = self.registry.get(id) {
            return Ok(slot);
        }
        if self.registry.recently_absent(id, self.cfg.negative_cache) {
            return Err(ResolveError::NotFound(id.clone()));
        }
        match self.store.exists(&layout::current_key(id)).await {
            Ok(true) => Ok(self.registry.get_or_insert(id)),
            Ok(false) => {
                self.registry.mark_absent(id);
                Err(ResolveError::NotFound(id.clone()))
            }
            Err(e) => Err(ResolveError::StoreUnavailable {
                id: id.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Hot index for `id`, restoring it first if needed.
    pub async fn get_or_load_index(self: &Arc<Self>, id: &IndexId) -> Result<Arc<LoadedIndex>, ResolveError> {
        let slot = self.slot(id).await?;
        slot.touch();
        let deadline = tokio::time::Instant::now() + self.cfg.load_wait;
        loop {
            let mut changed = {
                let mut inner = slot.lock();
                match &inner.state {
                    SlotState::Hot(loaded) => return Ok(loaded.clone()),
                    SlotState::Failed(f) if f.reason == "not_found" => {
                        return Err(ResolveError::NotFound(id.clone()));
                    }
                    SlotState::Failed(f) if Instant::now() < f.retry_at => {
                        return Err(ResolveError::Failed {
                            id: id.clone(),
                            reason: f.reason,
                            message: f.message.clone(),
                            retry_in: f.retry_at.saturating_duration_since(Instant::now()),
                        });
                    }
                    SlotState::Loading { .. } => {}
                    SlotState::Cold | SlotState::Failed(_) => {
                        inner.state = SlotState::Loading {
                            started: Instant::now(),
                        };
                        self.spawn_load(slot.clone());
                    }
                }
                slot.subscribe()
            };
            // Re-check after every change: the load may have just finished or failed.
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                return Err(ResolveError::Loading {
                    id: id.clone(),
                    retry_after: Duration::from_secs(2),
                });
            }
        }
    }

    /// Starts a restore in the background if the index is cold or its retry time has come.
    pub fn load_in_background(self: &Arc<Self>, slot: &Arc<Slot>) -> bool {
        let mut inner = slot.lock();
        let startable = match &inner.state {
            SlotState::Cold => true,
            SlotState::Failed(f) => Instant::now() >= f.retry_at && f.reason != "not_found",
            _ => false,
        };
        if startable {
            inner.state = SlotState::Loading {
                started: Instant::now(),
            };
            self.spawn_load(slot.clone());
        }
        startable
    }

    /// Called with the slot already marked Loading.
    fn spawn_load(self: &Arc<Self>, slot: Arc<Slot>) {
        LOADS_STARTED.inc();
        let this = self.clone();
        tokio::spawn(async move { this.run_load(slot).await });
    }

    async fn run_load(self: Arc<Self>, slot: Arc<Slot>) {
        let id = slot.id.clone();
        let started = Instant::now();
        let span = tracing::info_span!("load", index_id = %id);
        let result = {
            use tracing::Instrument;
            match tokio::time::timeout(self.cfg.load_timeout, self.restore(&id).instrument(span.clone())).await {
                Ok(r) => r,
                Err(_) => {
                    remove_partials(&self.cfg.cache_dir.join(id.as_str()));
                    Err(LoadFailure {
                        reason: "timeout",
                        message: format!("restore did not finish within {:?}", self.cfg.load_timeout),
                    })
                }
            }
        };
        let elapsed = started.elapsed();
        match result {
            Ok(loaded) => {
                LOAD_DURATION.with_label_values(&["ok"]).observe(elapsed.as_secs_f64());
                span.in_scope(
                    || tracing::info!(version = %loaded.version, ms = elapsed.as_millis() as u64, "index hot"),
                );
                budget::admit(&self, &slot, &loaded);
                let stale_copy = {
                    let mut inner = slot.lock();
                    inner.state = SlotState::Hot(loaded.clone());
                    inner.attempts = 0;
                    inner.last_error = None;
                    inner.disk_copy.take().filter(|(v, _, _)| *v != loaded.version)
                };
                if let Some((_, dir, _)) = stale_copy {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Err(failure) => {
                LOAD_DURATION
                    .with_label_values(&["failed"])
                    .observe(elapsed.as_secs_f64());
                LOAD_FAILURES.with_label_values(&[failure.reason]).inc();
                span.in_scope(|| tracing::warn!(reason = failure.reason, error = %failure.message, "restore failed"));
                let mut inner = slot.lock();
                inner.attempts += 1;
                let retry_in = self.cfg.backoff(inner.attempts);
                inner.state = SlotState::Failed(Failure {
                    reason: failure.reason,
                    message: failure.message,
                    at: SystemTime::now(),
                    retry_at: Instant::now() + retry_in,
                });
            }
        }
        if matches!(&slot.lock().state, SlotState::Failed(f) if f.reason == "not_found") {
            self.registry.remove(&id);
        }
        self.registry.refresh_gauges();
        slot.notify();
    }

    /// Downloads (or reuses a verified local copy of) the current version and opens it.
    pub async fn restore(&self, id: &IndexId) -> Result<Arc<LoadedIndex>, LoadFailure> {
        let started = Instant::now();
        let (pointer, etag) = read_current(&self.store, id, None).await?.ok_or_else(|| LoadFailure {
            reason: "io",
            message: "CURRENT unreadable".into(),
        })?;
        let local = fetch_version(
            &self.store,
            id,
            &self.cfg.cache_dir,
            &pointer,
            self.cfg.download_parallelism,
        )
        .await?;
        let engine = Engine::open(&local.dir, local.manifest, self.embedder.clone())
            .await
            .map_err(|e| {
                // Checksums matched but an arm would not open: the bundle itself is bad.
                let _ = std::fs::remove_dir_all(&local.dir);
                LoadFailure {
                    reason: "corrupt",
                    message: e.to_string(),
                }
            })?;
        Ok(Arc::new(LoadedIndex::new(
            engine,
            etag,
            started.elapsed().as_secs_f64() * 1000.0,
        )))
    }

    /// Clears a failure (admin reset): the next request restores at once.
    pub fn reset(&self, slot: &Slot) -> bool {
        let was_failed = {
            let mut inner = slot.lock();
            inner.attempts = 0;
            inner.last_error = None;
            let failed = matches!(inner.state, SlotState::Failed(_));
            if failed {
                inner.state = SlotState::Cold;
            }
            failed
        };
        self.registry.refresh_gauges();
        slot.notify();
        was_failed
    }

    /// Drops a hot index back to Cold, keeping its verified files on disk.
    pub fn evict(&self, slot: &Slot) -> bool {
        let evicted = {
            let mut inner = slot.lock();
            match std::mem::replace(&mut inner.state, SlotState::Cold) {
                SlotState::Hot(l) => {
                    inner.disk_copy = Some((l.version.clone(), l.engine.dir().to_path_buf(), l.disk_bytes));
                    true
                }
                other => {
                    inner.state = other;
                    false
                }
            }
        };
        if evicted {
            crate::telemetry::metrics::CACHE_EVICTIONS.inc();
            self.registry.refresh_gauges();
            slot.notify();
        }
        evicted
    }

    /// Forgets an index: evicts it and removes its cached files.
    pub fn unregister(&self, id: &IndexId) -> bool {
        let Some(slot) = self.registry.remove(id) else {
            return false;
        };
        let mut inner = slot.lock();
        if let SlotState::Hot(l) = &inner.state {
            l.retire();
        }
        inner.state = SlotState::Cold;
        if let Some((_, dir, _)) = inner.disk_copy.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        drop(inner);
        self.registry.mark_absent(id);
        self.registry.refresh_gauges();
        slot.notify();
        true
    }
}

fn remove_partials(index_dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(index_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().contains(".partial-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
