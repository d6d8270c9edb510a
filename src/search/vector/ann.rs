//! Search through the dataset's ANN index (lance `nearest`), with filters
//! honoured by over-fetching and, for selective ones, an exact streamed scan.

use arrow_array::{Float32Array, UInt32Array};
use lance::Dataset;
use lance::index::DatasetIndexExt;
use lance_linalg::distance::{DistanceType, Dot};

use super::{VectorIndex, column, scan_all};
use crate::bundle::vectors::{AnnKind, DISTANCE_COLUMN, ID_COLUMN, INDEX_NAME, VECTOR_COLUMN, VectorError};
use crate::search::top_k::TopK;

impl VectorIndex {
    pub(super) async fn ann_search(
        &self,
        dataset: &Dataset,
        kind: AnnKind,
        partitions: usize,
        q: &[f32],
        k: usize,
        allow: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> Result<Vec<(u32, f32)>, VectorError> {
        let Some(allow) = allow else {
            return self.ann_query(dataset, kind, partitions, q, k).await;
        };
        // Over-fetch in growing rounds; an ANN result set is a prefix of what a
        // larger fetch would return, so filtering it loses nothing ranked higher.
        let mut fetch = (k * 8).max(64);
        loop {
            let fetch_now = fetch.min(self.len);
            let hits = self.ann_query(dataset, kind, partitions, q, fetch_now).await?;
            let exhausted = hits.len() < fetch_now || fetch_now == self.len;
            let allowed: Vec<(u32, f32)> = hits.into_iter().filter(|(id, _)| allow(*id)).take(k).collect();
            if allowed.len() == k {
                return Ok(allowed);
            }
            if exhausted || fetch >= 8 * (k * 8).max(64) {
                break;
            }
            fetch *= 8;
        }
        // A selective filter: scan everything exactly with the filter inline.
        let mut top = TopK::new(k);
        let dim = self.dimension;
        scan_all(dataset, &self.path, dim, |ids, values| {
            for (row, &id) in ids.iter().enumerate() {
                if allow(id) {
                    top.push(id, f32::dot(q, &values[row * dim..(row + 1) * dim]));
                }
            }
        })
        .await?;
        Ok(top.into_sorted())
    }

    async fn ann_query(
        &self,
        dataset: &Dataset,
        kind: AnnKind,
        partitions: usize,
        q: &[f32],
        k: usize,
    ) -> Result<Vec<(u32, f32)>, VectorError> {
        let lance_err = |source| VectorError::Lance {
            path: self.path.clone(),
            source,
        };
        let query = Float32Array::from(q.to_vec());
        let mut scan = dataset.scan();
        scan.nearest(VECTOR_COLUMN, &query, k).map_err(lance_err)?;
        scan.project(&[ID_COLUMN]).map_err(lance_err)?;
        scan.distance_metric(DistanceType::Cosine);
        match kind {
            AnnKind::IvfHnswSq => {
                scan.minimum_nprobes(partitions.clamp(1, 4));
                scan.ef((k * 10).max(300));
            }
            AnnKind::IvfPq => {
                scan.minimum_nprobes((partitions / 4).clamp(1, 64));
                scan.refine(10);
            }
        }
        let batch = scan.try_into_batch().await.map_err(lance_err)?;
        let ids = column::<UInt32Array>(&batch, ID_COLUMN).map_err(|reason| VectorError::Corrupt {
            path: self.path.clone(),
            reason,
            source: None,
        })?;
        let distances = column::<Float32Array>(&batch, DISTANCE_COLUMN).map_err(|reason| VectorError::Corrupt {
            path: self.path.clone(),
            reason,
            source: None,
        })?;
        let mut hits: Vec<(u32, f32)> = ids
            .values()
            .iter()
            .zip(distances.values().iter())
            .map(|(&id, &d)| (id, 1.0 - d))
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        Ok(hits)
    }
}

/// Which ANN index the writer built, from lance's description of it.
pub(super) async fn describe_kind(dataset: &Dataset) -> Option<AnnKind> {
    let descriptions = dataset.describe_indices(None).await.ok()?;
    let desc = descriptions.iter().find(|d| d.name() == INDEX_NAME)?;
    let ty = desc.index_type().to_ascii_uppercase();
    if ty.contains("HNSW") {
        Some(AnnKind::IvfHnswSq)
    } else if ty.contains("PQ") {
        Some(AnnKind::IvfPq)
    } else {
        None
    }
}
