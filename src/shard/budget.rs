//! Byte budgets: before a restored index goes hot, the least recently used
//! others make room, first in memory (hot → cold, files kept on disk), then on
//! disk (local copies of cold indexes deleted, then hot ones retired).
//! An index larger than a budget on its own is still served, with a warning:
//! refusing it would turn a sizing mistake into an outage.

use super::lazy_load::Resolver;
use super::loaded::LoadedIndex;
use super::residency::{Slot, SlotState};
use crate::telemetry::metrics::{CACHE_BUDGET_BYTES, CACHE_EVICTIONS};
use std::sync::Arc;

struct Usage {
    slot: Arc<Slot>,
    last_used: u64,
    hot_memory: u64,
    hot_disk: u64,
    copy_disk: u64,
}

fn usage(resolver: &Resolver, except: &Slot) -> Vec<Usage> {
    let mut v: Vec<Usage> = resolver
        .registry
        .all()
        .into_iter()
        .filter(|s| !std::ptr::eq(s.as_ref(), except))
        .map(|s| {
            let inner = s.lock();
            let (hot_memory, hot_disk) = match &inner.state {
                SlotState::Hot(l) => (l.memory_bytes, l.disk_bytes),
                _ => (0, 0),
            };
            let copy_disk = inner.disk_copy.as_ref().map(|c| c.2).unwrap_or(0);
            drop(inner);
            let last_used = s.last_used_ms();
            Usage {
                slot: s,
                last_used,
                hot_memory,
                hot_disk,
                copy_disk,
            }
        })
        .collect();
    v.sort_by_key(|u| u.last_used);
    v
}

/// Makes room for `incoming` (about to become hot in `slot`).
pub fn admit(resolver: &Resolver, slot: &Slot, incoming: &LoadedIndex) {
    let cfg = &resolver.cfg;
    CACHE_BUDGET_BYTES
        .with_label_values(&["memory"])
        .set(cfg.memory_budget as i64);
    CACHE_BUDGET_BYTES
        .with_label_values(&["disk"])
        .set(cfg.disk_budget as i64);

    let mut others = usage(resolver, slot);
    let mut memory: u64 = others.iter().map(|u| u.hot_memory).sum::<u64>() + incoming.memory_bytes;
    for u in others.iter_mut().filter(|u| u.hot_memory > 0) {
        if memory <= cfg.memory_budget {
            break;
        }
        if resolver.evict(&u.slot) {
            tracing::info!(index_id = %u.slot.id, bytes = u.hot_memory, "evicted from memory to stay in budget");
            memory -= u.hot_memory;
            u.copy_disk = u.hot_disk;
            u.hot_memory = 0;
            u.hot_disk = 0;
        }
    }

    let mut disk: u64 = others.iter().map(|u| u.hot_disk + u.copy_disk).sum::<u64>() + incoming.disk_bytes;
    for u in others.iter_mut().filter(|u| u.copy_disk > 0) {
        if disk <= cfg.disk_budget {
            break;
        }
        let copy = u.slot.lock().disk_copy.take();
        if let Some((_, dir, bytes)) = copy {
            let _ = std::fs::remove_dir_all(&dir);
            disk -= bytes;
            CACHE_EVICTIONS.inc();
            tracing::info!(index_id = %u.slot.id, bytes, "removed local copy to stay in disk budget");
        }
    }
    for u in others.iter().filter(|u| u.hot_disk > 0) {
        if disk <= cfg.disk_budget {
            break;
        }
        if let Some(l) = u.slot.hot() {
            l.retire();
            if resolver.evict(&u.slot) {
                // The retired files go when the last query drops them; no copy stays.
                u.slot.lock().disk_copy = None;
                disk -= u.hot_disk;
            }
        }
    }
    if memory > cfg.memory_budget || disk > cfg.disk_budget {
        tracing::warn!(
            index_id = %slot.id, memory, disk,
            memory_budget = cfg.memory_budget, disk_budget = cfg.disk_budget,
            "index does not fit the budget even alone; serving it anyway"
        );
    }
    resolver.registry.refresh_gauges();
}
