//! A bounded top-k of `(chunk id, score)`, shared by the BM25 collector and
//! the exact vector scan. Higher scores are better; equal scores break
//! towards the smaller id, so results do not depend on visiting order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A scored chunk id, ordered so that the *worse* hit is the greater one
/// (lower score, then larger id): the heap's top is the worst hit kept.
#[derive(Debug, Clone, Copy)]
struct Hit {
    score: f32,
    id: u32,
}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then(self.id.cmp(&other.id))
    }
}
impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Hit {}

#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Hit>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    pub(crate) fn push(&mut self, id: u32, score: f32) {
        let hit = Hit { score, id };
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && hit < *worst
        {
            *worst = hit;
        }
    }

    /// Scores must exceed this to be offered. Just below the worst kept score,
    /// so an equal score with a smaller chunk id can still displace it.
    pub(crate) fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::MIN
        } else {
            self.heap.peek().map_or(f32::MIN, |w| w.score.next_down())
        }
    }

    /// Folds in another top-k (e.g. one per scanned block).
    pub(crate) fn merge(&mut self, other: TopK) {
        for h in other.heap {
            self.push(h.id, h.score);
        }
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<(u32, f32)> {
        // `into_sorted_vec` is ascending by `Ord`, i.e. best first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|h| (h.id, h.score))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_k_with_ties_to_the_smaller_id() {
        let mut top = TopK::new(3);
        for (i, s) in [1.0, 5.0, 3.0, 4.0, 4.0, 2.0].into_iter().enumerate() {
            top.push(i as u32, s);
        }
        assert_eq!(top.threshold(), 4.0f32.next_down());
        assert_eq!(top.into_sorted(), vec![(1, 5.0), (3, 4.0), (4, 4.0)]);
    }

    #[test]
    fn merges_blocks_and_handles_k_zero() {
        let mut a = TopK::new(2);
        a.push(7, 1.0);
        a.push(8, 3.0);
        let mut b = TopK::new(2);
        b.push(2, 3.0);
        b.push(3, 0.5);
        a.merge(b);
        assert_eq!(a.into_sorted(), vec![(2, 3.0), (8, 3.0)]);
        let mut none = TopK::new(0);
        none.push(1, 1.0);
        assert!(none.into_sorted().is_empty());
        assert_eq!(TopK::new(0).threshold(), f32::MIN);
    }
}
