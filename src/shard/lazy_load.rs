//! The resolver: the only way a handler reaches an index.
//!
//! `resolve` takes the hot fast path when it can; otherwise it checks storage
//! for ids it has not seen and starts at most one restore per index (the
//! state change Cold → Loading under the slot mutex *is* the loading gate).
//! A restore runs as its own task: it waits for an admission permit
//! ([`super::admission`]), reads the manifest, reserves its bytes against the
//! budgets ([`super::budget`]), downloads and opens. A request that waits too
//! long gets a retryable 503 while the restore carries on, and the next
//! request finds the index hot. Requests that must not wait (fan-outs, and a
//! router trying a replica first) only start a restore and answer at once.

use super::admission::{Admission, BackgroundTicket, Priority};
use super::budget::{Budget, Need, Reservation};
use super::config::ShardConfig;
use super::disk::VersionDirs;
use super::failure::{LoadFailure, Refusal, RestoreError};
use super::loaded::LoadedIndex;
use super::residency::{DiskCopy, Failure, Refused, Registry, Slot, SlotInner, SlotState};
use crate::IndexId;
use crate::api::ApiError;
use crate::embed::Embedder;
use crate::error_chain::one_line;
use crate::search::engine::{Engine, estimate_memory};
use crate::storage::layout;
use crate::storage::open::{DownloadOptions, download_version, fetch_manifest, local_copy, read_current, version_dir};
use crate::storage::store::Store;
use crate::telemetry::metrics::{LOAD_DURATION, LOAD_FAILURES, LOADS_STARTED, RESTORE_REFUSALS};
use axum::http::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

/// How long a refused restore keeps answering `over_budget` before another is tried.
const REFUSED_FOR: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("index {0} does not exist")]
    NotFound(IndexId),
    #[error("index {id} is loading")]
    Loading { id: IndexId, retry_after: Duration },
    #[error("index {id} is not loaded on this shard ({detail})")]
    Cold { id: IndexId, detail: &'static str },
    #[error("index {id} failed to load ({})", error.reason())]
    Failed {
        id: IndexId,
        #[source]
        error: Arc<LoadFailure>,
        retry_in: Duration,
    },
    #[error("no room to load index {id}: {message}")]
    OverBudget { id: IndexId, message: String },
    #[error("object store unavailable while looking up {id}: {message}")]
    StoreUnavailable { id: IndexId, message: String },
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> ApiError {
        let unavailable = |code: &'static str, id: &IndexId| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, one_line(&e)).with_index(id.as_str())
        };
        match &e {
            ResolveError::NotFound(id) => ApiError::not_found(id.as_str()),
            ResolveError::Loading { id, retry_after } => unavailable("index_loading", id)
                .retryable(true)
                .retry_after(retry_after.as_secs().max(1)),
            ResolveError::Cold { id, .. } => unavailable("index_cold", id).retryable(true).retry_after(1),
            ResolveError::Failed { id, .. } => unavailable("index_restore_failed", id).retryable(false),
            ResolveError::OverBudget { id, .. } => unavailable("over_budget", id)
                .retryable(true)
                .retry_after(REFUSED_FOR.as_secs()),
            ResolveError::StoreUnavailable { id, .. } => {
                unavailable("store_unavailable", id).retryable(true).retry_after(2)
            }
        }
    }
}

fn timed_out(what: &str, after: Duration) -> RestoreError {
    RestoreError::Failed(LoadFailure::TimedOut {
        what: what.to_string(),
        after,
    })
}

/// What a caller of [`Resolver::resolve`] is prepared to do for a cold index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Start (or join) a restore and wait for it up to `load_wait`.
    Load,
    /// Start a restore at this priority if none runs, and answer at once.
    NoWait(Priority),
}

pub struct Resolver {
    pub cfg: ShardConfig,
    pub store: Store,
    pub registry: Registry,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub admission: Admission,
    pub budget: Budget,
    pub dirs: VersionDirs,
    /// Searches computed at once, each on a blocking thread.
    pub search_permits: Arc<Semaphore>,
}

impl Resolver {
    pub fn new(cfg: ShardConfig, store: Store, embedder: Option<Arc<dyn Embedder>>) -> Arc<Resolver> {
        Arc::new(Resolver {
            admission: Admission::new(cfg.max_restores, cfg.warm_queue),
            budget: Budget::new(cfg.memory_budget, cfg.disk_budget),
            registry: Registry::new(cfg.negative_cache_entries),
            dirs: VersionDirs::default(),
            search_permits: Arc::new(Semaphore::new(cfg.search_parallelism())),
            cfg,
            store,
            embedder,
        })
    }

    /// The slot for `id`, asking storage about ids not seen yet (with a short,
    /// bounded negative cache so a burst of requests for a missing id costs one lookup).
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
                message: one_line(&e),
            }),
        }
    }

    /// Hot index for `id`, restoring it first if needed.
    pub async fn get_or_load_index(self: &Arc<Self>, id: &IndexId) -> Result<Arc<LoadedIndex>, ResolveError> {
        self.resolve(id, Wait::Load).await
    }

    /// Hot index for `id`; for a cold one, what `wait` allows.
    pub async fn resolve(self: &Arc<Self>, id: &IndexId, wait: Wait) -> Result<Arc<LoadedIndex>, ResolveError> {
        self.resolve_until(id, wait, None).await
    }

    /// As [`Resolver::resolve`], but a wait for a restore also ends at
    /// `until` (the caller's own deadline), answering "loading" while the
    /// caller still listens rather than leaving it to time out.
    pub async fn resolve_until(
        self: &Arc<Self>,
        id: &IndexId,
        wait: Wait,
        until: Option<tokio::time::Instant>,
    ) -> Result<Arc<LoadedIndex>, ResolveError> {
        let slot = self.slot(id).await?;
        if wait == Wait::Load {
            slot.touch();
        }
        let waited = tokio::time::Instant::now() + self.cfg.load_wait;
        let deadline = until.map_or(waited, |u| u.min(waited));
        loop {
            let mut changed = {
                let mut inner = slot.lock();
                match &inner.state {
                    SlotState::Hot(loaded) => {
                        if wait != Wait::Load {
                            slot.touch();
                        }
                        return Ok(loaded.clone());
                    }
                    SlotState::Failed(f) if f.error.is_not_found() => {
                        return Err(ResolveError::NotFound(id.clone()));
                    }
                    SlotState::Failed(f) if Instant::now() < f.retry_at => {
                        return Err(ResolveError::Failed {
                            id: id.clone(),
                            error: f.error.clone(),
                            retry_in: f.retry_at.saturating_duration_since(Instant::now()),
                        });
                    }
                    SlotState::Loading { .. } => {
                        if matches!(wait, Wait::Load | Wait::NoWait(Priority::Demand)) {
                            slot.demand();
                        }
                        if let Wait::NoWait(_) = wait {
                            return Err(ResolveError::Loading {
                                id: id.clone(),
                                retry_after: Duration::from_secs(1),
                            });
                        }
                    }
                    SlotState::Cold | SlotState::Failed(_) => {
                        // A recent refusal stands until it expires (it is also how
                        // the requests waiting on a refused restore learn of it).
                        if let Some(r) = inner.refused.as_ref().filter(|r| Instant::now() < r.until) {
                            return Err(ResolveError::OverBudget {
                                id: id.clone(),
                                message: r.message.clone(),
                            });
                        }
                        let priority = match wait {
                            Wait::Load => Priority::Demand,
                            Wait::NoWait(p) => p,
                        };
                        let started = self.start_load_locked(&slot, &mut inner, priority);
                        if let Wait::NoWait(_) = wait {
                            let detail = if started {
                                "load queued"
                            } else {
                                "no room to warm it now"
                            };
                            return Err(ResolveError::Cold { id: id.clone(), detail });
                        }
                    }
                }
                slot.subscribe()
            };
            // Re-check after every change: the load may have just finished, failed or been refused.
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                return Err(ResolveError::Loading {
                    id: id.clone(),
                    retry_after: Duration::from_secs(2),
                });
            }
        }
    }

    /// Starts a restore in the background if the index is cold or its retry time has come.
    pub fn load_in_background(self: &Arc<Self>, slot: &Arc<Slot>, priority: Priority) -> bool {
        let mut inner = slot.lock();
        let startable = match &inner.state {
            SlotState::Cold => true,
            SlotState::Failed(f) => Instant::now() >= f.retry_at && !f.error.is_not_found(),
            _ => false,
        };
        startable && self.start_load_locked(slot, &mut inner, priority)
    }

    /// Marks the slot Loading and spawns its restore; a background restore
    /// needs a place in the bounded warm queue, and is not started when its
    /// last known size clearly does not fit the free budget. Called with the
    /// slot locked.
    fn start_load_locked(self: &Arc<Self>, slot: &Arc<Slot>, inner: &mut SlotInner, priority: Priority) -> bool {
        let ticket = match priority {
            Priority::Demand => None,
            Priority::Background => {
                if let Some(need) = inner.last_need
                    && !self.budget.might_fit_free(self.registry.used(), need)
                {
                    return false;
                }
                match self.admission.background_ticket() {
                    Some(t) => Some(t),
                    None => return false,
                }
            }
        };
        inner.state = SlotState::Loading {
            started: Instant::now(),
        };
        slot.clear_demand();
        LOADS_STARTED.inc();
        let (this, slot) = (self.clone(), slot.clone());
        tokio::spawn(async move { this.run_load(slot, priority, ticket).await });
        true
    }

    async fn run_load(self: Arc<Self>, slot: Arc<Slot>, priority: Priority, ticket: Option<BackgroundTicket>) {
        let id = slot.id.clone();
        let span = tracing::info_span!("load", index_id = %id, priority = priority.as_str());
        // Loading was set under the slot's lock, where the gauges cannot be
        // recounted (they take every slot's lock); recounted here instead.
        self.registry.refresh_gauges();
        let permit = self.admission.acquire_or_promote(priority, slot.demanded()).await;
        drop(ticket);
        let started = Instant::now();
        let result = {
            use tracing::Instrument;
            self.restore(&slot, priority).instrument(span.clone()).await
        };
        drop(permit);
        let elapsed = started.elapsed();
        // A request that came to wait made this a demand restore (see `restore`).
        let priority = slot.priority(priority);
        match result {
            Ok((loaded, reservation)) => {
                LOAD_DURATION.with_label_values(&["ok"]).observe(elapsed.as_secs_f64());
                let stale_copy = {
                    let mut inner = slot.lock();
                    if !matches!(inner.state, SlotState::Loading { .. }) {
                        // Unregistered while it loaded: nobody may reach it now.
                        drop(inner);
                        span.in_scope(
                            || tracing::info!(version = %loaded.version, "unregistered while it loaded; discarded"),
                        );
                        loaded.retire();
                        slot.notify();
                        return;
                    }
                    span.in_scope(
                        || tracing::info!(version = %loaded.version, ms = elapsed.as_millis() as u64, "index hot"),
                    );
                    inner.state = SlotState::Hot(loaded.clone());
                    inner.attempts = 0;
                    inner.absent_checks = 0;
                    inner.last_error = None;
                    inner.refused = None;
                    inner.disk_copy.take().filter(|c| c.version != loaded.version)
                };
                // Counted as hot now: the reservation can go.
                drop(reservation);
                // A preloaded index has not been queried, but is not first in line for eviction.
                slot.touch();
                if let Some(copy) = stale_copy {
                    self.dirs.doom(&copy.dir);
                }
                self.budget.settle(&self, &slot);
            }
            Err(RestoreError::Refused(refusal)) => {
                RESTORE_REFUSALS
                    .with_label_values(&[refusal.label(), priority.as_str()])
                    .inc();
                span.in_scope(|| tracing::info!(error = %refusal, "restore refused"));
                let mut inner = slot.lock();
                match refusal {
                    Refusal::TooLarge { .. } => {
                        // Nothing changes until the index or the budget does: retry rarely.
                        inner.attempts += 1;
                        let retry_in = self.cfg.retry_max;
                        inner.state = SlotState::Failed(Failure {
                            error: Arc::new(LoadFailure::TooLarge(refusal)),
                            at: SystemTime::now(),
                            retry_at: Instant::now() + retry_in,
                        });
                    }
                    Refusal::Full { .. } => {
                        inner.state = SlotState::Cold;
                        // Only a demand restore had someone waiting: tell them (and the
                        // next few) why, instead of queueing another restore at once.
                        if priority == Priority::Demand {
                            inner.refused = Some(Refused {
                                until: Instant::now() + REFUSED_FOR,
                                message: refusal.to_string(),
                            });
                        }
                    }
                }
            }
            Err(RestoreError::Failed(failure)) => {
                LOAD_DURATION
                    .with_label_values(&["failed"])
                    .observe(elapsed.as_secs_f64());
                LOAD_FAILURES.with_label_values(&[failure.reason()]).inc();
                span.in_scope(
                    || tracing::warn!(reason = failure.reason(), error = %one_line(&failure), "restore failed"),
                );
                let mut inner = slot.lock();
                inner.attempts += 1;
                let retry_in = self.cfg.backoff(inner.attempts);
                inner.state = SlotState::Failed(Failure {
                    error: Arc::new(failure),
                    at: SystemTime::now(),
                    retry_at: Instant::now() + retry_in,
                });
            }
        }
        let gone = matches!(&slot.lock().state, SlotState::Failed(f) if f.error.is_not_found());
        if gone {
            // Forget the index and any local copy; the slot keeps saying not_found to its waiters.
            if self.registry.remove_slot(&slot) {
                self.registry.mark_absent(&id);
            }
            let copy = slot.lock().disk_copy.take();
            if let Some(copy) = copy {
                self.dirs.doom(&copy.dir);
            }
        }
        self.registry.refresh_gauges();
        slot.notify();
    }

    /// Reads the current version's manifest, reserves its bytes, then downloads
    /// (or reuses a verified local copy) and opens it. The caller holds an
    /// admission permit. Each phase has its own deadline: reading pointers under
    /// `load_timeout`, the download under one that grows with its size.
    pub async fn restore(
        &self,
        slot: &Slot,
        priority: Priority,
    ) -> Result<(Arc<LoadedIndex>, Reservation), RestoreError> {
        let id = &slot.id;
        let started = Instant::now();
        let base = self.cfg.load_timeout;
        let (pointer, etag) = tokio::time::timeout(base, read_current(&self.store, id, None))
            .await
            .map_err(|_| timed_out("reading CURRENT", base))??
            .ok_or(RestoreError::Failed(LoadFailure::CurrentNotModified))?;
        let dir = version_dir(&self.cfg.cache_dir, id, &pointer.version);
        // Leased before it is looked at: nothing may remove it from here on.
        let lease = self.dirs.lease(&dir);
        let local = local_copy(id, &dir, &pointer).await?;
        let (manifest, manifest_bytes) = match &local {
            Some(l) => (l.manifest.clone(), None),
            None => {
                let (m, b) = tokio::time::timeout(base, fetch_manifest(&self.store, id, &pointer))
                    .await
                    .map_err(|_| timed_out("reading the manifest", base))??;
                (m, Some(b))
            }
        };
        let total = manifest.total_bytes();
        let need = Need {
            memory: estimate_memory(&manifest),
            disk: if local.is_some() { 0 } else { total },
            disk_total: total,
        };
        slot.lock().last_need = Some(need);
        let priority = slot.priority(priority);
        let reservation = self
            .budget
            .reserve(self, slot, need, priority, local.is_some())
            .map_err(RestoreError::Refused)?;
        let local = match (local, manifest_bytes) {
            (Some(l), _) => l,
            (None, Some(bytes)) => {
                let deadline = self.cfg.restore_deadline(total);
                let opts = DownloadOptions {
                    parallelism: self.cfg.download_parallelism,
                    stall: self.cfg.download_stall_timeout,
                };
                let download =
                    download_version(&self.store, id, &self.cfg.cache_dir, &pointer, &manifest, &bytes, opts);
                tokio::time::timeout(deadline, download)
                    .await
                    .map_err(|_| timed_out(&format!("downloading {total} bytes"), deadline))??
            }
            (None, None) => unreachable!("a manifest read from storage keeps its bytes"),
        };
        let mut engine = Engine::open(&local.dir, local.manifest, self.embedder.clone())
            .await
            .map_err(|e| {
                // Checksums matched but an arm would not open: the bundle itself is bad.
                self.dirs.doom(&local.dir);
                RestoreError::Failed(LoadFailure::Bundle(e))
            })?;
        engine.set_embed_timeout(self.cfg.embed_timeout);
        let loaded = LoadedIndex::new(
            engine,
            lease,
            self.dirs.clone(),
            etag,
            started.elapsed().as_secs_f64() * 1000.0,
        );
        Ok((Arc::new(loaded), reservation))
    }

    /// Clears a failure (admin reset): the next request restores at once.
    pub fn reset(&self, slot: &Slot) -> bool {
        let was_failed = {
            let mut inner = slot.lock();
            inner.attempts = 0;
            inner.last_error = None;
            inner.refused = None;
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
                    inner.disk_copy = Some(DiskCopy {
                        version: l.version.clone(),
                        dir: l.engine().dir().to_path_buf(),
                        bytes: l.disk_bytes,
                    });
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

    /// Removes a cold index's local copy (when no reader holds it; else when the
    /// last one finishes). Returns the bytes it accounted for. A restoring
    /// index keeps its copy, which it may be about to open, unless `own` says
    /// the caller is that very restore (which is not opening it).
    pub fn drop_disk_copy(&self, slot: &Slot, own: bool) -> Option<u64> {
        let copy = {
            let mut inner = slot.lock();
            match inner.state {
                SlotState::Hot(_) => return None,
                SlotState::Loading { .. } if !own => return None,
                _ => {}
            }
            inner.disk_copy.take()?
        };
        self.dirs.doom(&copy.dir);
        self.registry.refresh_gauges();
        Some(copy.bytes)
    }

    /// Forgets an index: evicts it and removes its cached files.
    pub fn unregister(&self, id: &IndexId) -> bool {
        let Some(slot) = self.registry.remove(id) else {
            return false;
        };
        let copy = {
            let mut inner = slot.lock();
            if let SlotState::Hot(l) = &inner.state {
                l.retire();
            }
            // Not Cold: its waiters must not start a restore of a slot the
            // registry no longer holds, and one in flight is discarded.
            inner.state = SlotState::Failed(Failure {
                error: Arc::new(LoadFailure::Unregistered),
                at: SystemTime::now(),
                retry_at: Instant::now(),
            });
            inner.disk_copy.take()
        };
        if let Some(copy) = copy {
            self.dirs.doom(&copy.dir);
        }
        self.registry.mark_absent(id);
        self.registry.refresh_gauges();
        slot.notify();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::store::Store;

    /// A restoring index may be about to open its local copy: another
    /// restore making room must not take it, but its own restore may.
    #[tokio::test]
    async fn a_restoring_index_keeps_its_local_copy_from_other_restores() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().join("store").display())).unwrap();
        let cache = dir.path().join("cache");
        let resolver = Resolver::new(ShardConfig::local("file:///unused", cache.clone(), "s0"), store, None);
        let slot = resolver.registry.get_or_insert(&IndexId::new("copy").unwrap());
        let copy_dir = cache.join("copy-v1");
        std::fs::create_dir_all(&copy_dir).unwrap();
        let give_copy = || {
            slot.lock().disk_copy = Some(DiskCopy {
                version: "v1".into(),
                dir: copy_dir.clone(),
                bytes: 100,
            })
        };
        give_copy();
        slot.lock().state = SlotState::Loading {
            started: Instant::now(),
        };
        assert_eq!(resolver.drop_disk_copy(&slot, false), None, "another restore's room");
        assert!(slot.lock().disk_copy.is_some());
        assert_eq!(
            resolver.drop_disk_copy(&slot, true),
            Some(100),
            "its own restore's room"
        );
        give_copy();
        slot.lock().state = SlotState::Cold;
        assert_eq!(resolver.drop_disk_copy(&slot, false), Some(100), "a cold index's copy");
    }
}
