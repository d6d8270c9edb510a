//! Exact search over every vector held in memory: a dot-product scan split
//! across rayon threads with lance-linalg's SIMD kernels, the filter inline.

use lance_linalg::distance::Dot;
use rayon::prelude::*;

use crate::search::top_k::TopK;

/// Rows per rayon task in the exact scan (~3 MB of 384-d vectors).
const SCAN_BLOCK: usize = 2048;

/// Exact top-k over an in-memory row-major matrix, split across rayon threads.
pub(super) fn top_k(
    q: &[f32],
    ids: &[u32],
    matrix: &[f32],
    dim: usize,
    k: usize,
    allow: Option<&(dyn Fn(u32) -> bool + Sync)>,
) -> Vec<(u32, f32)> {
    let blocks: Vec<TopK> = ids
        .par_chunks(SCAN_BLOCK)
        .zip(matrix.par_chunks(SCAN_BLOCK * dim))
        .map(|(block_ids, block)| {
            let mut top = TopK::new(k);
            match allow {
                None => {
                    let mut scores = vec![0.0f32; block_ids.len()];
                    f32::dot_batch_into(q, block, dim, &mut scores);
                    for (&id, &s) in block_ids.iter().zip(&scores) {
                        top.push(id, s);
                    }
                }
                Some(allow) => {
                    for (row, &id) in block_ids.iter().enumerate() {
                        if allow(id) {
                            top.push(id, f32::dot(q, &block[row * dim..(row + 1) * dim]));
                        }
                    }
                }
            }
            top
        })
        .collect();
    let mut all = TopK::new(k);
    for block in blocks {
        all.merge(block);
    }
    all.into_sorted()
}
