//! Byte budgets for memory and local disk, reserved *before* a restore downloads.
//!
//! A restore first reads the version's manifest, which names every file and
//! its size, and reserves what the version will take: its download on disk and
//! an estimate of its resident memory ([`crate::search::engine::estimate_memory`]).
//! Usage counts hot indexes, local copies of cold ones and the reservations of
//! restores in flight, so two restores can never both count on the same free
//! bytes.
//!
//! To make room, a demand restore evicts the least recently used others:
//! first from memory (hot → cold, files kept), then from disk (copies of
//! cold indexes, then retired hot ones). A background restore evicts
//! nothing. When even that cannot make room the restore is refused: an index
//! that needs more than the *whole* budget fails as `too_large` (serving it
//! would break the bound that keeps every other index alive); otherwise the
//! room is held by other restores in flight and the answer is a retryable
//! `over_budget`.

use super::admission::Priority;
use super::failure::Refusal;
use super::lazy_load::Resolver;
use super::residency::{Slot, SlotState};
use crate::telemetry::metrics::{CACHE_BUDGET_BYTES, CACHE_COPIES_REMOVED};
use parking_lot::Mutex;
use std::sync::Arc;

/// What a restore will add: resident memory, and bytes it will download.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    pub memory: u64,
    /// New bytes on disk: 0 when a verified local copy is reused.
    pub disk: u64,
    /// The version's full size on disk, for the too-large check.
    pub disk_total: u64,
}

#[derive(Debug, Default)]
struct Reserved {
    memory: u64,
    disk: u64,
}

/// The shard's budgets and the bytes reserved by restores in flight.
#[derive(Debug)]
pub struct Budget {
    pub memory: u64,
    pub disk: u64,
    reserved: Arc<Mutex<Reserved>>,
    /// Serialises reserve decisions: usage is summed and evictions made under it.
    decide: Mutex<()>,
}

/// Bytes held for a restore in flight; released when dropped (after the
/// index is hot and counted as such, or when the restore fails).
#[derive(Debug)]
pub struct Reservation {
    reserved: Arc<Mutex<Reserved>>,
    memory: u64,
    disk: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut r = self.reserved.lock();
        r.memory -= self.memory;
        r.disk -= self.disk;
    }
}

struct Usage {
    slot: Arc<Slot>,
    last_used: u64,
    hot_memory: u64,
    hot_disk: u64,
    copy_disk: u64,
    /// Restoring now: its local copy may be what the restore opens.
    loading: bool,
}

fn usage(resolver: &Resolver) -> Vec<Usage> {
    let mut v: Vec<Usage> = resolver
        .registry
        .all()
        .into_iter()
        .map(|s| {
            let inner = s.lock();
            let (hot_memory, hot_disk) = match &inner.state {
                SlotState::Hot(l) => (l.memory_bytes, l.disk_bytes),
                _ => (0, 0),
            };
            let copy_disk = inner.disk_copy.as_ref().map(|c| c.bytes).unwrap_or(0);
            let loading = matches!(inner.state, SlotState::Loading { .. });
            drop(inner);
            let last_used = s.last_used_ms();
            Usage {
                slot: s,
                last_used,
                hot_memory,
                hot_disk,
                copy_disk,
                loading,
            }
        })
        .collect();
    v.sort_by_key(|u| u.last_used);
    v
}

impl Budget {
    pub fn new(memory: u64, disk: u64) -> Budget {
        CACHE_BUDGET_BYTES.with_label_values(&["memory"]).set(memory as i64);
        CACHE_BUDGET_BYTES.with_label_values(&["disk"]).set(disk as i64);
        Budget {
            memory,
            disk,
            reserved: Arc::default(),
            decide: Mutex::new(()),
        }
    }

    /// Bytes reserved by restores in flight: (memory, disk).
    pub fn reserved(&self) -> (u64, u64) {
        let r = self.reserved.lock();
        (r.memory, r.disk)
    }

    /// Whether `need` could fit in the free budget without evicting anything,
    /// from the totals of the last state change (a cheap pre-check; `reserve`
    /// decides for real).
    pub fn might_fit_free(&self, used: (u64, u64), need: Need) -> bool {
        let (res_memory, res_disk) = self.reserved();
        used.0 + res_memory + need.memory <= self.memory && used.1 + res_disk + need.disk <= self.disk
    }

    /// Reserves `need` for a restore of `slot`, evicting least recently used
    /// others first when `priority` allows it. `reusing_copy` says the slot's
    /// own local copy is what will be opened (so it must not be deleted).
    pub fn reserve(
        &self,
        resolver: &Resolver,
        slot: &Slot,
        need: Need,
        priority: Priority,
        reusing_copy: bool,
    ) -> Result<Reservation, Refusal> {
        if need.memory > self.memory {
            return Err(Refusal::TooLarge {
                tier: "memory",
                need: need.memory,
                budget: self.memory,
            });
        }
        if need.disk_total > self.disk {
            return Err(Refusal::TooLarge {
                tier: "disk",
                need: need.disk_total,
                budget: self.disk,
            });
        }
        let _decide = self.decide.lock();
        let (res_memory, res_disk) = self.reserved();
        let mut others = usage(resolver);
        let mut memory = others.iter().map(|u| u.hot_memory).sum::<u64>() + res_memory + need.memory;
        let mut disk = others.iter().map(|u| u.hot_disk + u.copy_disk).sum::<u64>() + res_disk + need.disk;
        let may_evict = priority == Priority::Demand;
        let mine = |u: &Usage| std::ptr::eq(u.slot.as_ref(), slot);
        // Plan before acting: a restore that would not fit even after every
        // eviction it may make is refused with nothing evicted, rather than
        // flushing the hot set and then failing anyway. Bytes reserved by
        // restores in flight cannot be evicted.
        if may_evict {
            let evictable_memory: u64 = others.iter().filter(|u| !mine(u)).map(|u| u.hot_memory).sum();
            if memory.saturating_sub(evictable_memory) > self.memory {
                return Err(Refusal::Full { tier: "memory" });
            }
            let freeable_disk: u64 = others
                .iter()
                .map(|u| match (mine(u), reusing_copy) {
                    (true, true) => 0,
                    (true, false) => u.copy_disk,
                    // Another restore's copy is not removed from under it.
                    (false, _) if u.loading => 0,
                    (false, _) => u.copy_disk + u.hot_disk,
                })
                .sum();
            if disk.saturating_sub(freeable_disk) > self.disk {
                return Err(Refusal::Full { tier: "disk" });
            }
        }

        if memory > self.memory && may_evict {
            for u in others.iter_mut().filter(|u| u.hot_memory > 0 && !mine(u)) {
                if memory <= self.memory {
                    break;
                }
                if resolver.evict(&u.slot) {
                    tracing::info!(index_id = %u.slot.id, bytes = u.hot_memory, for_index = %slot.id, "evicted from memory to make room");
                    memory -= u.hot_memory;
                    u.copy_disk = u.hot_disk;
                    u.hot_memory = 0;
                    u.hot_disk = 0;
                }
            }
        }
        if memory > self.memory {
            return Err(Refusal::Full { tier: "memory" });
        }

        if disk > self.disk && may_evict {
            for u in others.iter_mut().filter(|u| u.copy_disk > 0) {
                if disk <= self.disk {
                    break;
                }
                if mine(u) && reusing_copy {
                    continue;
                }
                if let Some(bytes) = resolver.drop_disk_copy(&u.slot, mine(u)) {
                    disk -= bytes;
                    u.copy_disk = 0;
                    CACHE_COPIES_REMOVED.inc();
                    tracing::info!(index_id = %u.slot.id, bytes, for_index = %slot.id, "removed local copy to make room on disk");
                }
            }
            for u in others.iter().filter(|u| u.hot_disk > 0 && !mine(u)) {
                if disk <= self.disk {
                    break;
                }
                if resolver.evict(&u.slot) && resolver.drop_disk_copy(&u.slot, false).is_some() {
                    disk -= u.hot_disk;
                    CACHE_COPIES_REMOVED.inc();
                    tracing::info!(index_id = %u.slot.id, bytes = u.hot_disk, for_index = %slot.id, "evicted and removed from disk to make room");
                }
            }
        }
        if disk > self.disk {
            return Err(Refusal::Full { tier: "disk" });
        }
        let mut r = self.reserved.lock();
        r.memory += need.memory;
        r.disk += need.disk;
        Ok(Reservation {
            reserved: self.reserved.clone(),
            memory: need.memory,
            disk: need.disk,
        })
    }

    /// After `slot` went hot with its measured size: if the estimate was low
    /// and memory is over budget, the least recently used others go cold.
    pub fn settle(&self, resolver: &Resolver, slot: &Slot) {
        let _decide = self.decide.lock();
        let (res_memory, _) = self.reserved();
        let others = usage(resolver);
        let mut memory = others.iter().map(|u| u.hot_memory).sum::<u64>() + res_memory;
        for u in others.iter().filter(|u| u.hot_memory > 0) {
            if memory <= self.memory {
                break;
            }
            if std::ptr::eq(u.slot.as_ref(), slot) {
                continue;
            }
            if resolver.evict(&u.slot) {
                tracing::info!(index_id = %u.slot.id, bytes = u.hot_memory, "evicted: a restore measured larger than estimated");
                memory -= u.hot_memory;
            }
        }
        resolver.registry.refresh_gauges();
    }

    /// Removes least recently used local copies of cold indexes until disk
    /// usage is within budget (at start, after the cache inventory).
    pub fn trim_disk(&self, resolver: &Resolver) -> usize {
        let _decide = self.decide.lock();
        let others = usage(resolver);
        let mut disk: u64 = others.iter().map(|u| u.hot_disk + u.copy_disk).sum();
        let mut removed = 0;
        for u in others.iter().filter(|u| u.copy_disk > 0) {
            if disk <= self.disk {
                break;
            }
            if let Some(bytes) = resolver.drop_disk_copy(&u.slot, false) {
                disk -= bytes;
                removed += 1;
                CACHE_COPIES_REMOVED.inc();
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_released_when_dropped() {
        let b = Budget::new(100, 100);
        let r = Reservation {
            reserved: b.reserved.clone(),
            memory: 30,
            disk: 40,
        };
        b.reserved.lock().memory += 30;
        b.reserved.lock().disk += 40;
        assert_eq!(b.reserved(), (30, 40));
        drop(r);
        assert_eq!(b.reserved(), (0, 0));
    }
}
