//! Restore admission: how many restores a shard runs at once, and in what order.
//!
//! Every restore (a first load, a reload after eviction, a new version) takes
//! one of `max_restores` permits before it touches storage. Tokio's semaphore
//! hands permits out first come, first served, so a burst of cold requests
//! forms a fair queue instead of downloading everything at once and
//! overshooting the budgets.
//!
//! Restores come at two priorities. *Demand* restores serve a request for
//! that index and may evict the least recently used others to make room.
//! *Background* restores (fan-out warming, preloads) only fill free budget
//! and have a bounded queue: when it is full the index simply stays cold
//! until someone asks for it, so background work can never churn the cache
//! or pile up. Background restores also pass through a narrower lane (one
//! permit fewer than the shard runs), so one permit is always left for a
//! waiting request and a burst of warm-ups never queues ahead of it.

use crate::telemetry::metrics::RESTORES;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a restore runs, which decides what it may displace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A request is waiting for this index: evict least recently used others if needed.
    Demand,
    /// Nobody is waiting: load only into free budget.
    Background,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Demand => "demand",
            Priority::Background => "background",
        }
    }
}

#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    /// Background restores take one of these before a permit.
    background_lane: Arc<Semaphore>,
    max_background_waiting: usize,
    background_waiting: Arc<AtomicUsize>,
}

/// A running restore's permit; the next queued restore starts when it drops.
#[derive(Debug)]
pub struct RestorePermit {
    _permit: OwnedSemaphorePermit,
    _lane: Option<OwnedSemaphorePermit>,
}

impl Drop for RestorePermit {
    fn drop(&mut self) {
        RESTORES.with_label_values(&["running"]).dec();
    }
}

/// A place in the background queue, taken before the restore task is spawned.
#[derive(Debug)]
pub struct BackgroundTicket {
    waiting: Arc<AtomicUsize>,
}

impl Drop for BackgroundTicket {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(max_restores: usize, max_background_waiting: usize) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(max_restores.max(1))),
            background_lane: Arc::new(Semaphore::new(max_restores.saturating_sub(1).max(1))),
            max_background_waiting,
            background_waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A place for one more background restore, or `None` when the queue is full.
    pub fn background_ticket(&self) -> Option<BackgroundTicket> {
        let mut now = self.background_waiting.load(Ordering::Acquire);
        loop {
            if now >= self.max_background_waiting {
                return None;
            }
            match self
                .background_waiting
                .compare_exchange(now, now + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Some(BackgroundTicket {
                        waiting: self.background_waiting.clone(),
                    });
                }
                Err(actual) => now = actual,
            }
        }
    }

    /// Waits for a restore slot, in arrival order within each priority;
    /// background restores first wait for their lane.
    pub async fn acquire(&self, priority: Priority) -> RestorePermit {
        self.acquire_or_promote(priority, std::future::pending()).await
    }

    /// As [`Admission::acquire`], but a background restore leaves its lane
    /// for the demand queue if `demanded` resolves first (a request came to
    /// wait on it).
    pub async fn acquire_or_promote(&self, priority: Priority, demanded: impl Future<Output = ()>) -> RestorePermit {
        RESTORES.with_label_values(&["queued"]).inc();
        let lane = match priority {
            Priority::Demand => None,
            Priority::Background => tokio::select! {
                lane = self.background_lane.clone().acquire_owned() => {
                    Some(lane.expect("the background lane is never closed"))
                }
                () = demanded => None,
            },
        };
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the admission semaphore is never closed");
        RESTORES.with_label_values(&["queued"]).dec();
        RESTORES.with_label_values(&["running"]).inc();
        RestorePermit {
            _permit: permit,
            _lane: lane,
        }
    }

    /// Restores running now.
    pub fn running(&self, max_restores: usize) -> usize {
        max_restores.max(1) - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn at_most_the_limit_run_and_the_rest_wait_in_order() {
        let a = Arc::new(Admission::new(2, 4));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (a, running, peak, order) = (a.clone(), running.clone(), peak.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = a.acquire(Priority::Demand).await;
                order.lock().push(i);
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }));
            // Arrival order is the spawn order.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(*order.lock(), (0..8).collect::<Vec<_>>(), "first come, first served");
    }

    #[tokio::test]
    async fn background_restores_leave_a_permit_for_demand() {
        let a = Admission::new(2, 8);
        let first = a.acquire(Priority::Background).await;
        // A second warm-up waits for the lane although a permit is free...
        let waiting = tokio::time::timeout(Duration::from_millis(50), a.acquire(Priority::Background)).await;
        assert!(
            waiting.is_err(),
            "background restores use one permit fewer than the shard runs"
        );
        // ...which a request takes at once.
        let demand = tokio::time::timeout(Duration::from_millis(50), a.acquire(Priority::Demand)).await;
        assert!(demand.is_ok(), "a request never queues behind warm-ups");
        drop(first);
        let _ = demand;
        // With one permit in all, background work still runs.
        let one = Admission::new(1, 8);
        let _p = tokio::time::timeout(Duration::from_millis(50), one.acquire(Priority::Background))
            .await
            .expect("a lone permit serves background work too");
    }

    #[tokio::test]
    async fn a_demanded_background_restore_leaves_the_lane() {
        let a = Admission::new(2, 8);
        let _first = a.acquire(Priority::Background).await;
        let demanded = Arc::new(tokio::sync::Notify::new());
        let waiting = {
            let demanded = demanded.clone();
            a.acquire_or_promote(Priority::Background, async move { demanded.notified().await })
        };
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "still a warm-up: it waits for the lane"
        );
        demanded.notify_one();
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("once a request waits on it, it takes the free permit");
    }

    #[test]
    fn the_background_queue_is_bounded() {
        let a = Admission::new(1, 2);
        let t1 = a.background_ticket().expect("room");
        let _t2 = a.background_ticket().expect("room");
        assert!(a.background_ticket().is_none(), "full");
        drop(t1);
        assert!(a.background_ticket().is_some(), "room again");
    }
}
