//! What a shard learns from storage on its own: the index list at start, new
//! and deleted indexes, new versions of hot indexes (swapped in while queries
//! keep running), retries of failed restores, and warming at start from the
//! list of recently used indexes it keeps in its cache directory.

use super::admission::Priority;
use super::failure::RestoreError;
use super::lazy_load::Resolver;
use super::residency::{DiskCopy, FailedSwap, Slot, SlotState};
use crate::IndexId;
use crate::error_chain::one_line;
use crate::storage::layout::{self, INDEXES_DIR};
use crate::storage::open::{OpenError, read_current};
use crate::telemetry::metrics::{INDEX_SWAPS, LOAD_FAILURES};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// In the cache directory beside the index directories: the leading dot
/// keeps it (and its `.tmp`) apart from every index id, which cannot start
/// with one.
const RECENT_FILE: &str = ".recent.json";
const LEGACY_RECENT_FILE: &str = "recent.json";

#[derive(Debug, Serialize, Deserialize)]
struct Recent {
    id: String,
    last_used_ms: u64,
}

/// Adds every index in storage that has a `CURRENT` as Cold (a directory
/// without one holds a withdrawn or half-deleted index). Only ids not yet
/// known are checked, so a poll costs one listing, one HEAD per new
/// directory and a bounded number for cold indexes. Returns how many listed
/// indexes are known.
///
/// Cold indexes deleted or withdrawn from storage are then forgotten (see
/// [`forget_deleted`]); nothing else would take them off the shard's list.
pub async fn discover_all(resolver: &Resolver) -> Result<usize, crate::storage::store::StoreError> {
    use futures::{StreamExt, TryStreamExt};
    let names = resolver.store.list_dirs(INDEXES_DIR).await?;
    let (mut known, mut unknown) = (0, Vec::new());
    for name in &names {
        match IndexId::new(name.clone()) {
            Ok(id) if resolver.registry.get(&id).is_some() => known += 1,
            Ok(id) => unknown.push(id),
            Err(e) => tracing::warn!(name, error = %e, "ignoring object-store directory that is not a valid index id"),
        }
    }
    let served: Vec<IndexId> = futures::stream::iter(unknown)
        .map(|id| async move {
            let has_current = resolver.store.exists(&layout::current_key(&id)).await?;
            Ok::<_, crate::storage::store::StoreError>(has_current.then_some(id))
        })
        .buffer_unordered(16)
        .try_filter_map(|id| async move { Ok(id) })
        .try_collect()
        .await?;
    for id in &served {
        resolver.registry.get_or_insert(id).lock().presence_checked = Some(Instant::now());
    }
    forget_deleted(resolver, &names).await;
    Ok(known + served.len())
}

/// Most cold indexes whose `CURRENT` one poll looks for: the listing is
/// free, a HEAD per cold index is not, so they take turns, longest unchecked
/// first.
const PRESENCE_CHECKS: usize = 32;

/// Finds cold and failed indexes gone from storage: deleted, or withdrawn
/// (listed without a `CURRENT`). Each poll looks for the `CURRENT` of a
/// bounded number of them, those missing from the listing `names` first; one
/// found gone on two checks in a row is unregistered, one found present
/// counts afresh. The listing alone decides nothing: an empty one (a store
/// briefly unmounted, a prefix changed) must not drop every index. Hot and
/// restoring indexes are left to [`refresh`] and their restore, which read
/// `CURRENT` themselves.
async fn forget_deleted(resolver: &Resolver, names: &[String]) {
    use futures::StreamExt;
    let listed: HashSet<&str> = names.iter().map(String::as_str).collect();
    let idle = |state: &SlotState| matches!(state, SlotState::Cold | SlotState::Failed(_));
    let mut to_check = Vec::new();
    for slot in resolver.registry.all() {
        let inner = slot.lock();
        if !idle(&inner.state) {
            continue;
        }
        let key = (listed.contains(slot.id.as_str()), inner.presence_checked);
        drop(inner);
        to_check.push((key, slot));
    }
    to_check.sort_by_key(|(key, _)| *key);
    to_check.truncate(PRESENCE_CHECKS);
    let checked: Vec<_> = futures::stream::iter(to_check)
        .map(|(_, slot)| async move {
            let present = resolver.store.exists(&layout::current_key(&slot.id)).await;
            (slot, present)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut verdicts = Vec::new();
    for (slot, present) in checked {
        slot.lock().presence_checked = Some(Instant::now());
        match present {
            Ok(present) => verdicts.push((slot, present)),
            Err(e) => tracing::debug!(index_id = %slot.id, error = %e, "could not check CURRENT; no verdict this poll"),
        }
    }
    for (slot, present) in verdicts {
        let gone = {
            let mut inner = slot.lock();
            if !idle(&inner.state) {
                continue;
            }
            inner.absent_checks = if present { 0 } else { inner.absent_checks + 1 };
            inner.absent_checks >= 2
        };
        if gone {
            tracing::info!(index_id = %slot.id, "index deleted or withdrawn from storage; unregistering");
            resolver.unregister(&slot.id);
        }
    }
}

/// Checks a hot index for a new version and swaps it in; returns true if swapped.
/// A new version that fails to load leaves the old one serving. `CURRENT`
/// must be missing on two polls in a row before a hot index is dropped, so a
/// passing listing glitch cannot unregister it everywhere.
pub async fn refresh(resolver: &Arc<Resolver>, slot: &Arc<Slot>, force: bool) -> bool {
    let Some(current) = slot.hot() else { return false };
    if slot.upgrading.swap(true, Ordering::AcqRel) {
        return false;
    }
    let _guard = scopeguard(slot.clone());
    let etag = if force { None } else { current.current_etag.clone() };
    let pointer = match read_current(&resolver.store, &slot.id, etag.as_deref()).await {
        Ok(None) => {
            slot.lock().absent_checks = 0;
            return false;
        }
        Ok(Some((p, _))) => {
            slot.lock().absent_checks = 0;
            p
        }
        Err(OpenError::NotFound { .. }) => {
            let missing = {
                let mut inner = slot.lock();
                inner.absent_checks += 1;
                inner.absent_checks
            };
            if missing >= 2 {
                tracing::info!(index_id = %slot.id, "index deleted from storage; unregistering");
                resolver.unregister(&slot.id);
            } else {
                tracing::info!(index_id = %slot.id, "CURRENT is missing; dropping the index if it still is on the next poll");
            }
            return false;
        }
        Err(e) => {
            slot.lock().last_error = Some(format!("polling CURRENT: {e}"));
            return false;
        }
    };
    if pointer.version == current.version {
        return false;
    }
    let backing_off = slot
        .lock()
        .failed_swap
        .as_ref()
        .is_some_and(|f| f.version == pointer.version && Instant::now() < f.retry_at);
    if backing_off && !force {
        return false;
    }
    let started = Instant::now();
    // A new version is a restore like any other: it waits its turn and reserves its bytes.
    let permit = resolver.admission.acquire(Priority::Demand).await;
    let restored = resolver.restore(slot, Priority::Demand).await;
    drop(permit);
    match restored {
        Ok((next, reservation)) => {
            let (swapped, next_dir_in_use) = {
                let mut inner = slot.lock();
                match &inner.state {
                    SlotState::Hot(old) if Arc::ptr_eq(old, &current) && old.version != next.version => {
                        old.retire();
                        inner.state = SlotState::Hot(next.clone());
                        inner.last_error = None;
                        inner.failed_swap = None;
                        (true, true)
                    }
                    // The slot holds this very version (loaded again since, or
                    // CURRENT moved back): same directory, so it stays.
                    SlotState::Hot(l) if l.version == next.version => (false, true),
                    // Evicted meanwhile and being restored again: that
                    // restore may be opening this very directory, so it
                    // stays, counted as the slot's local copy if it has none.
                    SlotState::Loading { .. } => {
                        if inner.disk_copy.is_none() {
                            inner.disk_copy = Some(DiskCopy {
                                version: next.version.clone(),
                                dir: next.engine().dir().to_path_buf(),
                                bytes: next.disk_bytes,
                            });
                        }
                        (false, true)
                    }
                    _ => (
                        false,
                        inner.disk_copy.as_ref().is_some_and(|c| c.version == next.version),
                    ),
                }
            };
            drop(reservation);
            if swapped {
                INDEX_SWAPS.inc();
                tracing::info!(
                    index_id = %slot.id, from = %current.version, to = %next.version,
                    ms = started.elapsed().as_millis() as u64, "swapped in new version"
                );
                resolver.budget.settle(resolver, slot);
                resolver.registry.refresh_gauges();
                slot.notify();
            } else if !next_dir_in_use {
                next.retire();
            }
            swapped
        }
        Err(RestoreError::Failed(f)) => {
            let error = one_line(&f);
            LOAD_FAILURES.with_label_values(&[f.reason()]).inc();
            let retry_in = back_off_swap(resolver, slot, &pointer.version);
            tracing::warn!(
                index_id = %slot.id, reason = f.reason(), %error, retry_in_s = retry_in.as_secs(),
                "new version failed to load; keeping the old one"
            );
            slot.lock().last_error = Some(format!(
                "new version {} failed ({}), next try in {}: {error}",
                pointer.version,
                f.reason(),
                humantime::format_duration(retry_in)
            ));
            false
        }
        Err(RestoreError::Refused(r)) => {
            let retry_in = back_off_swap(resolver, slot, &pointer.version);
            tracing::warn!(index_id = %slot.id, error = %r, "no room for the new version; keeping the old one");
            slot.lock().last_error = Some(format!(
                "new version {} not loaded, next try in {}: {r}",
                pointer.version,
                humantime::format_duration(retry_in)
            ));
            false
        }
    }
}

/// Records another failed try of `version` and returns how long the polls
/// leave it alone: the restore backoff, counted per version.
fn back_off_swap(resolver: &Resolver, slot: &Slot, version: &str) -> std::time::Duration {
    let mut inner = slot.lock();
    let attempts = match &inner.failed_swap {
        Some(f) if f.version == version => f.attempts + 1,
        _ => 1,
    };
    let retry_in = resolver.cfg.backoff(attempts);
    inner.failed_swap = Some(FailedSwap {
        version: version.to_string(),
        attempts,
        retry_at: Instant::now() + retry_in,
    });
    retry_in
}

struct UpgradeGuard(Arc<Slot>);
impl Drop for UpgradeGuard {
    fn drop(&mut self) {
        self.0.upgrading.store(false, Ordering::Release);
    }
}
fn scopeguard(slot: Arc<Slot>) -> UpgradeGuard {
    UpgradeGuard(slot)
}

/// One round of background upkeep: new/deleted indexes, new versions, retries, recents.
pub async fn poll_once(resolver: &Arc<Resolver>) {
    if let Err(e) = discover_all(resolver).await {
        tracing::warn!(error = %e, "listing indexes failed");
    }
    for slot in resolver.registry.all() {
        let (hot, retry_due) = {
            let inner = slot.lock();
            match &inner.state {
                SlotState::Hot(_) => (true, false),
                SlotState::Failed(f) => (false, Instant::now() >= f.retry_at),
                _ => (false, false),
            }
        };
        if hot {
            let (r, s) = (resolver.clone(), slot.clone());
            tokio::spawn(async move { refresh(&r, &s, false).await });
        } else if retry_due {
            resolver.load_in_background(&slot, Priority::Background);
        }
    }
    save_recent(resolver).await;
}

/// Polls forever (until the task is dropped).
pub async fn poll_loop(resolver: Arc<Resolver>) {
    let mut tick = tokio::time::interval(resolver.cfg.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        poll_once(&resolver).await;
    }
}

/// Saves the recently used list for the next process's warm start; the write
/// and rename run on a blocking thread, as filesystem calls can wait on the
/// journal behind other writers.
async fn save_recent(resolver: &Resolver) {
    let recent: Vec<Recent> = resolver
        .registry
        .all()
        .iter()
        .filter(|s| s.last_used_ms() > 0)
        .map(|s| Recent {
            id: s.id.to_string(),
            last_used_ms: s.last_used_ms(),
        })
        .collect();
    let path = resolver.cfg.cache_dir.join(RECENT_FILE);
    let (tmp, target) = (path.with_extension("json.tmp"), path.clone());
    let legacy = resolver.cfg.cache_dir.join(LEGACY_RECENT_FILE);
    let saved = tokio::task::spawn_blocking(move || {
        let saved = serde_json::to_vec(&recent)
            .ok()
            .and_then(|b| std::fs::write(&tmp, b).ok())
            .is_some()
            && std::fs::rename(&tmp, &target).is_ok();
        if saved && legacy.is_file() {
            let _ = std::fs::remove_file(&legacy);
        }
        saved
    })
    .await;
    if !matches!(saved, Ok(true)) {
        tracing::debug!(path = %path.display(), "could not save recently used indexes");
    }
}

/// Reads the recently used list saved by an earlier process: (id, last used ms).
pub fn load_recent(cache_dir: &std::path::Path) -> Vec<(IndexId, u64)> {
    // A cache written without the leading dot still warms this start; the
    // next save writes the new name.
    let Ok(bytes) =
        std::fs::read(cache_dir.join(RECENT_FILE)).or_else(|_| std::fs::read(cache_dir.join(LEGACY_RECENT_FILE)))
    else {
        return Vec::new();
    };
    let Ok(mut recent) = serde_json::from_slice::<Vec<Recent>>(&bytes) else {
        return Vec::new();
    };
    recent.sort_by_key(|r| std::cmp::Reverse(r.last_used_ms));
    recent
        .into_iter()
        .filter_map(|r| IndexId::new(r.id).ok().map(|id| (id, r.last_used_ms)))
        .collect()
}

/// Loads recently used indexes, most recent first, one at a time, as
/// background restores: they fill free budget and stop at the first that no
/// longer fits. Runs in the background; readiness does not wait.
pub async fn warm(resolver: Arc<Resolver>) {
    for (id, _) in load_recent(&resolver.cfg.cache_dir) {
        let Ok(slot) = resolver.slot(&id).await else { continue };
        let mut changed = {
            let _inner = slot.lock();
            slot.subscribe()
        };
        if !resolver.load_in_background(&slot, Priority::Background) {
            continue;
        }
        while matches!(slot.lock().state, SlotState::Loading { .. }) {
            if changed.changed().await.is_err() {
                return;
            }
        }
        match &slot.lock().state {
            SlotState::Hot(_) => tracing::info!(index_id = %id, "warmed"),
            SlotState::Cold => {
                tracing::info!(index_id = %id, "warming stopped: the budget is full");
                return;
            }
            other => tracing::info!(index_id = %id, state = ?other.residency(), "warming skipped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::config::ShardConfig;
    use crate::storage::store::Store;
    use bytes::Bytes;

    /// An index deleted from storage (its directory gone) or withdrawn (its
    /// `CURRENT` gone) leaves the shard's list on the second poll that finds
    /// it so, not on the first; found again in between, it counts afresh.
    #[tokio::test]
    async fn cold_indexes_deleted_or_withdrawn_from_storage_are_forgotten_on_the_second_poll() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::open(&format!("file://{}", root.display())).unwrap();
        let resolver = Resolver::new(
            ShardConfig::local("file:///unused", dir.path().join("cache"), "s0"),
            store,
            None,
        );
        let ids = ["deleted", "kept", "withdrawn"].map(|id| IndexId::new(id).unwrap());
        for id in &ids {
            let key = layout::current_key(id);
            resolver.store.put(&key, Bytes::from_static(b"{}")).await.unwrap();
        }
        let listed = || -> Vec<String> { resolver.registry.all().iter().map(|s| s.id.to_string()).collect() };
        assert_eq!(discover_all(&resolver).await.unwrap(), 3);
        assert_eq!(listed(), ["deleted", "kept", "withdrawn"]);

        std::fs::remove_dir_all(root.join(layout::index_prefix(&ids[0]))).unwrap();
        resolver.store.delete(&layout::current_key(&ids[2])).await.unwrap();
        discover_all(&resolver).await.unwrap();
        assert_eq!(
            listed(),
            ["deleted", "kept", "withdrawn"],
            "found gone once is not enough"
        );

        resolver
            .store
            .put(&layout::current_key(&ids[2]), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        discover_all(&resolver).await.unwrap();
        assert_eq!(listed(), ["kept", "withdrawn"], "deleted on two polls in a row");
        resolver.store.delete(&layout::current_key(&ids[2])).await.unwrap();
        discover_all(&resolver).await.unwrap();
        assert_eq!(
            listed(),
            ["kept", "withdrawn"],
            "published again in between: the count starts over"
        );
        discover_all(&resolver).await.unwrap();
        assert_eq!(listed(), ["kept"]);
    }
}
