//! Per-index residency state and the registry of every index a shard knows.
//!
//! A slot's state only changes under its mutex, and every change is announced
//! on a `watch` channel. Waiters subscribe *while holding the mutex*, so a
//! change cannot slip between their check and their wait.

use super::admission::Priority;
use super::failure::LoadFailure;
use super::loaded::LoadedIndex;
use crate::IndexId;
use crate::api::{ResidencyState, ShardIndexStatus};
use crate::error_chain::one_line;
use crate::telemetry::metrics::{CACHE_BYTES, INDEXES, UNKNOWN_IDS};
use parking_lot::{Mutex, MutexGuard, RwLock};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Failure {
    pub error: Arc<LoadFailure>,
    pub at: SystemTime,
    pub retry_at: Instant,
}

#[derive(Debug, Clone)]
pub enum SlotState {
    Cold,
    Loading { started: Instant },
    Hot(Arc<LoadedIndex>),
    Failed(Failure),
}

impl SlotState {
    pub fn residency(&self) -> ResidencyState {
        match self {
            SlotState::Cold => ResidencyState::Cold,
            SlotState::Loading { .. } => ResidencyState::Loading,
            SlotState::Hot(_) => ResidencyState::Hot,
            SlotState::Failed(_) => ResidencyState::Failed,
        }
    }
}

/// A verified version left on local disk while its index is not hot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCopy {
    pub version: String,
    pub dir: PathBuf,
    pub bytes: u64,
}

/// A restore refused for lack of room: requests are answered `over_budget`
/// until `until` instead of queueing another restore straight away.
#[derive(Debug, Clone)]
pub struct Refused {
    pub until: Instant,
    pub message: String,
}

#[derive(Debug)]
pub struct SlotInner {
    pub state: SlotState,
    /// Consecutive failed restores; reset by success or an admin reset.
    pub attempts: u32,
    /// Last error that did not change the state (a failed version swap while hot).
    pub last_error: Option<String>,
    /// A verified version left on local disk after eviction from memory.
    pub disk_copy: Option<DiskCopy>,
    pub refused: Option<Refused>,
    /// What the last restore of this index needed, from its manifest: a
    /// background restore that clearly cannot fit is not even started.
    pub last_need: Option<super::budget::Need>,
    /// Consecutive looks that found no `CURRENT`, hot or cold: the index is
    /// dropped on the second, so one passing glitch cannot unregister it.
    /// Loading a version proves `CURRENT` was there and starts it afresh.
    pub absent_checks: u32,
    /// When the discovery poll last looked for a cold index's `CURRENT`.
    pub presence_checked: Option<Instant>,
    /// A new version that failed to load while an older one served.
    pub failed_swap: Option<FailedSwap>,
}

/// A new version that could not be swapped in: polls leave it alone until
/// `retry_at` (unless `CURRENT` moves on, or an admin reload asks), rather
/// than download it again every poll.
#[derive(Debug, Clone)]
pub struct FailedSwap {
    pub version: String,
    pub attempts: u32,
    pub retry_at: Instant,
}

#[derive(Debug)]
pub struct Slot {
    pub id: IndexId,
    inner: Mutex<SlotInner>,
    changed: watch::Sender<u64>,
    last_used_ms: AtomicU64,
    /// A background version swap is running.
    pub upgrading: AtomicBool,
    /// A request came to wait on a restore that started in the background:
    /// it leaves the background lane, and when it reserves its bytes it may
    /// evict as a demand restore does.
    demanded: AtomicBool,
    /// Wakes a restore waiting in the background lane when it is demanded.
    demand_signal: tokio::sync::Notify,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Slot {
    /// The priority a restore started at `started_as` runs at now: demand
    /// once a request has come to wait on it.
    pub fn priority(&self, started_as: Priority) -> Priority {
        if self.demanded.load(Ordering::Acquire) {
            Priority::Demand
        } else {
            started_as
        }
    }

    /// A request is waiting on this slot's restore.
    pub fn demand(&self) {
        self.demanded.store(true, Ordering::Release);
        self.demand_signal.notify_one();
    }

    /// A new restore starts: nobody has come to wait on it yet.
    pub fn clear_demand(&self) {
        self.demanded.store(false, Ordering::Release);
    }

    /// Resolves once a request has come to wait on the current restore.
    pub async fn demanded(&self) {
        // A wake-up stored for an earlier restore finds the flag cleared and waits on.
        while !self.demanded.load(Ordering::Acquire) {
            self.demand_signal.notified().await;
        }
    }

    pub fn new(id: IndexId) -> Slot {
        Slot {
            id,
            inner: Mutex::new(SlotInner {
                state: SlotState::Cold,
                attempts: 0,
                last_error: None,
                disk_copy: None,
                refused: None,
                last_need: None,
                absent_checks: 0,
                presence_checked: None,
                failed_swap: None,
            }),
            changed: watch::channel(0).0,
            last_used_ms: AtomicU64::new(0),
            upgrading: AtomicBool::new(false),
            demanded: AtomicBool::new(false),
            demand_signal: tokio::sync::Notify::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SlotInner> {
        self.inner.lock()
    }

    /// A receiver that fires on the next state change; call it while holding the lock.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wakes everyone waiting on this slot; call after releasing the lock.
    pub fn notify(&self) {
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub fn touch(&self) {
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    pub fn set_last_used_ms(&self, ms: u64) {
        self.last_used_ms.store(ms, Ordering::Relaxed);
    }

    pub fn hot(&self) -> Option<Arc<LoadedIndex>> {
        match &self.lock().state {
            SlotState::Hot(l) => Some(l.clone()),
            _ => None,
        }
    }

    pub fn status(&self, shard: &str) -> ShardIndexStatus {
        let inner = self.lock();
        let mut s = ShardIndexStatus {
            index_id: self.id.to_string(),
            shard: shard.to_string(),
            state: inner.state.residency(),
            version: None,
            counts: None,
            bytes: None,
            last_error: inner.last_error.clone(),
            failed_attempts: (inner.attempts > 0).then_some(inner.attempts),
            last_loaded_at: None,
            next_retry_at: None,
        };
        match &inner.state {
            SlotState::Hot(l) => {
                s.version = Some(l.version.clone());
                s.counts = Some((&l.engine().manifest.counts).into());
                s.bytes = Some(l.memory_bytes);
                s.last_loaded_at = Some(trusty_core::rfc3339(l.loaded_at));
            }
            SlotState::Failed(f) => {
                s.last_error = Some(format!("{}: {}", f.error.reason(), one_line(f.error.as_ref())));
                let wait = f.retry_at.saturating_duration_since(Instant::now());
                s.next_retry_at = Some(trusty_core::rfc3339(SystemTime::now() + wait));
            }
            SlotState::Cold | SlotState::Loading { .. } => {
                s.version = inner.disk_copy.as_ref().map(|c| c.version.clone());
                if let Some(r) = inner.refused.as_ref().filter(|r| Instant::now() < r.until) {
                    s.last_error = Some(format!("over_budget: {}", r.message));
                }
            }
        }
        s
    }
}

/// Every index this shard knows, plus a short, bounded memory of ids storage
/// said do not exist (so random unknown ids cannot grow it without limit).
#[derive(Debug)]
pub struct Registry {
    slots: RwLock<HashMap<IndexId, Arc<Slot>>>,
    absent: Mutex<lru::LruCache<IndexId, Instant>>,
    /// Totals as of the last state change: (hot memory, disk incl. copies).
    used: (AtomicU64, AtomicU64),
}

impl Registry {
    pub fn new(absent_entries: usize) -> Registry {
        let cap = std::num::NonZeroUsize::new(absent_entries.max(1)).expect("at least one entry");
        Registry {
            slots: RwLock::default(),
            absent: Mutex::new(lru::LruCache::new(cap)),
            used: (AtomicU64::new(0), AtomicU64::new(0)),
        }
    }

    pub fn get(&self, id: &IndexId) -> Option<Arc<Slot>> {
        self.slots.read().get(id).cloned()
    }

    /// The slot for `id`, created Cold if new (idempotent under races).
    pub fn get_or_insert(&self, id: &IndexId) -> Arc<Slot> {
        if let Some(s) = self.get(id) {
            return s;
        }
        self.absent.lock().pop(id);
        let slot = self
            .slots
            .write()
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Slot::new(id.clone())))
            .clone();
        self.refresh_gauges();
        slot
    }

    pub fn remove(&self, id: &IndexId) -> Option<Arc<Slot>> {
        let s = self.slots.write().remove(id);
        self.refresh_gauges();
        s
    }

    /// Removes `slot`'s entry only if it is still that slot, not a newer one
    /// registered under the same id since.
    pub fn remove_slot(&self, slot: &Arc<Slot>) -> bool {
        let mut slots = self.slots.write();
        let same = slots.get(&slot.id).is_some_and(|s| Arc::ptr_eq(s, slot));
        if same {
            slots.remove(&slot.id);
        }
        drop(slots);
        self.refresh_gauges();
        same
    }

    pub fn all(&self) -> Vec<Arc<Slot>> {
        let mut v: Vec<_> = self.slots.read().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn mark_absent(&self, id: &IndexId) {
        let mut absent = self.absent.lock();
        absent.put(id.clone(), Instant::now());
        UNKNOWN_IDS.set(absent.len() as i64);
    }

    /// Bytes used as of the last state change: (hot memory, disk incl. local copies).
    pub fn used(&self) -> (u64, u64) {
        (self.used.0.load(Ordering::Relaxed), self.used.1.load(Ordering::Relaxed))
    }

    /// True when storage said `id` does not exist less than `ttl` ago.
    pub fn recently_absent(&self, id: &IndexId, ttl: Duration) -> bool {
        let mut absent = self.absent.lock();
        match absent.peek(id) {
            Some(at) if at.elapsed() < ttl => true,
            Some(_) => {
                absent.pop(id);
                false
            }
            None => false,
        }
    }

    /// Recomputes the per-state gauge and cache byte gauges from the slots.
    pub fn refresh_gauges(&self) {
        let mut counts = [0i64; 4];
        let (mut mem, mut disk) = (0u64, 0u64);
        for slot in self.slots.read().values() {
            let inner = slot.lock();
            let i = match &inner.state {
                SlotState::Cold => 0,
                SlotState::Loading { .. } => 1,
                SlotState::Hot(l) => {
                    mem += l.memory_bytes;
                    disk += l.disk_bytes;
                    2
                }
                SlotState::Failed(_) => 3,
            };
            if !matches!(inner.state, SlotState::Hot(_)) {
                disk += inner.disk_copy.as_ref().map(|c| c.bytes).unwrap_or(0);
            }
            counts[i] += 1;
        }
        self.used.0.store(mem, Ordering::Relaxed);
        self.used.1.store(disk, Ordering::Relaxed);
        for (state, n) in ["cold", "loading", "hot", "failed"].iter().zip(counts) {
            INDEXES.with_label_values(&[state]).set(n);
        }
        CACHE_BYTES.with_label_values(&["memory"]).set(mem as i64);
        CACHE_BYTES.with_label_values(&["disk"]).set(disk as i64);
    }
}
