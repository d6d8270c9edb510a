//! The vector arm at query time: ranks chunk ids by cosine similarity in the
//! lance dataset of a version (format: [`crate::bundle::vectors`]). How it
//! searches depends on what the writer left:
//!
//! * No ANN index (small datasets): [`VectorIndex::open`] loads every vector
//!   into one contiguous f32 matrix and search is an exact dot-product scan
//!   split across rayon threads with lance-linalg's SIMD kernels: no datafusion
//!   plan per query, no I/O, exact results, and a filter applied inline so k
//!   allowed hits always come back when they exist. Time and memory grow
//!   linearly with the rows, which is why large datasets carry an index.
//! * An ANN index: search goes through lance's `nearest`. A filter is honoured
//!   by over-fetching; if that still yields fewer than k allowed hits, an exact
//!   streamed scan of the dataset with the filter inline finishes the job.
//!
//! Scores are cosine similarities (higher is better) in both modes.
//! docs/BENCHMARKS.md has the measured latencies and recall of each.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array};
use arrow_schema::DataType;
use futures::{FutureExt, TryStreamExt};
use lance::Dataset;
use lance::index::DatasetIndexExt;
use lance_linalg::distance::{DistanceType, Dot};
use rayon::prelude::*;

pub use crate::bundle::vectors::{AnnKind, VectorError};
use crate::bundle::vectors::{DISTANCE_COLUMN, ID_COLUMN, INDEX_NAME, VECTOR_COLUMN, normalize, num_partitions, uri};
use crate::search::top_k::TopK;

/// Rows per rayon task in the exact scan (~3 MB of 384-d vectors).
const SCAN_BLOCK: usize = 2048;

/// An opened vector dataset, ready to answer nearest-neighbour queries.
pub struct VectorIndex {
    path: PathBuf,
    dimension: usize,
    len: usize,
    backend: Backend,
}

enum Backend {
    /// Every vector in memory, row-major; exact search.
    Exact { ids: Vec<u32>, matrix: Vec<f32> },
    /// Lance dataset with an ANN index.
    Ann {
        dataset: Arc<Dataset>,
        kind: AnnKind,
        partitions: usize,
    },
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("path", &self.path)
            .field("dimension", &self.dimension)
            .field("len", &self.len)
            .field("ann", &self.ann_kind())
            .finish()
    }
}

impl VectorIndex {
    /// Opens the dataset at `dir`. Without an ANN index, loads all vectors into memory.
    pub async fn open(dir: &Path) -> Result<Self, VectorError> {
        // lance panics on some malformed files (e.g. an arithmetic overflow on a
        // truncated manifest); a bad object in storage must fail the load, not the shard.
        match AssertUnwindSafe(Self::open_inner(dir)).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("lance panicked");
                Err(VectorError::Corrupt {
                    path: dir.to_path_buf(),
                    reason: format!("reading the dataset panicked: {reason}"),
                    source: None,
                })
            }
        }
    }

    async fn open_inner(dir: &Path) -> Result<Self, VectorError> {
        match tokio::fs::metadata(dir).await {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(VectorError::Corrupt {
                    path: dir.to_path_buf(),
                    reason: "not a directory".into(),
                    source: None,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VectorError::NotFound(dir.to_path_buf()));
            }
            Err(source) => {
                return Err(VectorError::Io {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
        let corrupt = |reason: String| VectorError::Corrupt {
            path: dir.to_path_buf(),
            reason,
            source: None,
        };
        let lance_corrupt = |what: &str| {
            let reason = what.to_string();
            move |source: lance::Error| VectorError::Corrupt {
                path: dir.to_path_buf(),
                reason: format!("{reason}: {source}"),
                source: Some(source),
            }
        };
        let dataset = Dataset::open(&uri(dir)?).await.map_err(lance_corrupt("opening"))?;
        let schema = dataset.schema();
        let id_field = schema
            .field(ID_COLUMN)
            .ok_or_else(|| corrupt("no `id` column".into()))?;
        if id_field.data_type() != DataType::UInt32 {
            return Err(corrupt(format!("`id` column is {}, not UInt32", id_field.data_type())));
        }
        let vector_field = schema
            .field(VECTOR_COLUMN)
            .ok_or_else(|| corrupt("no `vector` column".into()))?;
        let dimension = match vector_field.data_type() {
            DataType::FixedSizeList(item, d) if item.data_type() == &DataType::Float32 && d > 0 => d as usize,
            other => {
                return Err(corrupt(format!("`vector` column is {other}, not fixed_size_list<f32>")));
            }
        };
        let len = dataset.count_rows(None).await.map_err(lance_corrupt("counting rows"))?;
        let indices = dataset.load_indices().await.map_err(lance_corrupt("listing indices"))?;
        let vector_field_id = vector_field.id;
        let ann = indices
            .iter()
            .find(|i| i.fields.contains(&vector_field_id) && i.name == INDEX_NAME)
            .is_some();
        let dataset = Arc::new(dataset);

        let backend = if ann {
            // The kind is informational (search parameters differ slightly); read it from the index description.
            let kind = describe_kind(&dataset).await.unwrap_or(AnnKind::IvfHnswSq);
            Backend::Ann {
                partitions: num_partitions(kind, len),
                dataset,
                kind,
            }
        } else {
            let mut ids = Vec::with_capacity(len);
            let mut matrix = Vec::with_capacity(len * dimension);
            scan_all(&dataset, dir, dimension, |batch_ids, values| {
                ids.extend_from_slice(batch_ids);
                matrix.extend_from_slice(values);
            })
            .await?;
            if ids.len() != len {
                return Err(corrupt(format!("read {} rows, dataset claims {len}", ids.len())));
            }
            Backend::Exact { ids, matrix }
        };
        Ok(Self {
            path: dir.to_path_buf(),
            dimension,
            len,
            backend,
        })
    }

    pub fn dimension(&self) -> usize {
        self.dimension
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held in memory: the whole matrix for exact search, nothing
    /// (lance reads on demand) with an ANN index.
    pub fn memory_bytes(&self) -> u64 {
        match &self.backend {
            Backend::Exact { ids, matrix } => (ids.len() * 4 + matrix.len() * 4) as u64,
            Backend::Ann { .. } => 0,
        }
    }

    /// The ANN index searched, or `None` for exact in-memory search.
    pub fn ann_kind(&self) -> Option<AnnKind> {
        match &self.backend {
            Backend::Exact { .. } => None,
            Backend::Ann { kind, .. } => Some(*kind),
        }
    }

    /// Top-k chunk ids by cosine similarity, highest first; `allow` filters by chunk id.
    pub async fn search(
        &self,
        query: &[f32],
        k: usize,
        allow: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> Result<Vec<(u32, f32)>, VectorError> {
        if query.len() != self.dimension {
            return Err(VectorError::DimensionMismatch {
                expected: self.dimension,
                got: query.len(),
            });
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(VectorError::InvalidInput("query vector has a non-finite value".into()));
        }
        if k == 0 || self.len == 0 {
            return Ok(Vec::new());
        }
        let mut q = query.to_vec();
        normalize(&mut q);
        match &self.backend {
            Backend::Exact { ids, matrix } => Ok(exact_top_k(&q, ids, matrix, self.dimension, k, allow)),
            Backend::Ann {
                dataset,
                kind,
                partitions,
            } => self.ann_search(dataset, *kind, *partitions, &q, k, allow).await,
        }
    }

    async fn ann_search(
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

async fn describe_kind(dataset: &Dataset) -> Option<AnnKind> {
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

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("result has no usable `{name}` column"))
}

/// Streams every (id, vector) batch of the dataset to `f` (values row-major).
async fn scan_all(
    dataset: &Dataset,
    path: &Path,
    dimension: usize,
    mut f: impl FnMut(&[u32], &[f32]),
) -> Result<(), VectorError> {
    let corrupt = |reason: String| VectorError::Corrupt {
        path: path.to_path_buf(),
        reason,
        source: None,
    };
    let lance_err = |source| VectorError::Lance {
        path: path.to_path_buf(),
        source,
    };
    let mut scan = dataset.scan();
    scan.project(&[ID_COLUMN, VECTOR_COLUMN]).map_err(lance_err)?;
    let mut stream = scan.try_into_stream().await.map_err(lance_err)?;
    while let Some(batch) = stream.try_next().await.map_err(lance_err)? {
        let ids = column::<UInt32Array>(&batch, ID_COLUMN).map_err(corrupt)?;
        let vectors = column::<FixedSizeListArray>(&batch, VECTOR_COLUMN).map_err(corrupt)?;
        if vectors.null_count() > 0 || ids.null_count() > 0 {
            return Err(corrupt("null ids or vectors".into()));
        }
        let values = vectors
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or_else(|| corrupt("vector values are not f32".into()))?;
        // A sliced batch may start at an offset into the child array.
        let start = vectors.offset() * dimension;
        let values = &values.values()[start..start + ids.len() * dimension];
        f(ids.values(), values);
    }
    Ok(())
}

/// Exact top-k over an in-memory row-major matrix, split across rayon threads.
fn exact_top_k(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{VectorWriteOptions, write_vectors, write_vectors_with};
    use std::collections::HashSet;
    use std::time::Instant;

    /// splitmix64: deterministic test data without a rand dependency.
    struct Rng(u64);
    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Roughly normal(0, 1): sum of uniforms.
        fn gauss(&mut self) -> f32 {
            (0..4)
                .map(|_| (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
                .sum::<f32>()
                - 2.0
        }
    }

    /// `n` vectors around `clusters` random centres, like real embeddings (which cluster by topic).
    fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = Rng(seed);
        let centres: Vec<Vec<f32>> = (0..clusters).map(|_| (0..dim).map(|_| rng.gauss()).collect()).collect();
        (0..n)
            .map(|i| centres[i % clusters].iter().map(|c| c + 0.6 * rng.gauss()).collect())
            .collect()
    }

    fn ids_for(n: usize) -> Vec<u32> {
        (0..n as u32).map(|i| i * 3 + 1).collect()
    }

    fn brute_force(
        q: &[f32],
        ids: &[u32],
        vectors: &[Vec<f32>],
        k: usize,
        allow: impl Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let unit = |v: &[f32]| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let q = unit(q);
        let mut all: Vec<(u32, f32)> = ids
            .iter()
            .zip(vectors)
            .filter(|(id, _)| allow(**id))
            .map(|(&id, v)| (id, unit(v).iter().zip(&q).map(|(a, b)| a * b).sum()))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    fn assert_same_ranking(got: &[(u32, f32)], want: &[(u32, f32)]) {
        assert_eq!(got.len(), want.len(), "got {got:?}\nwant {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g.1 - w.1).abs() < 1e-4, "score {g:?} vs {w:?}");
        }
        // Ids must agree except where scores tie within float noise.
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            if g.0 != w.0 {
                let tie = want.iter().any(|x| x.0 == g.0 && (x.1 - w.1).abs() < 1e-5);
                assert!(tie, "rank {i}: {g:?} vs {w:?}");
            }
        }
    }

    #[tokio::test]
    async fn exact_top_k_matches_brute_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.lance");
        let (n, dim) = (3000, 48);
        let vectors = clustered(n, dim, 20, 1);
        let ids = ids_for(n);
        let stats = write_vectors(&path, &ids, &vectors).await.unwrap();
        assert_eq!((stats.rows, stats.dimension, stats.ann_index), (n, dim, None));

        let index = VectorIndex::open(&path).await.unwrap();
        assert_eq!((index.len(), index.dimension(), index.ann_kind()), (n, dim, None));
        let queries = clustered(15, dim, 7, 99);
        for q in &queries {
            let got = index.search(q, 10, None).await.unwrap();
            assert_same_ranking(&got, &brute_force(q, &ids, &vectors, 10, |_| true));
        }
        // A stored vector finds itself first with cosine 1.
        let got = index.search(&vectors[123], 1, None).await.unwrap();
        assert_eq!(got[0].0, ids[123]);
        assert!((got[0].1 - 1.0).abs() < 1e-5);
        // k larger than the index returns everything, sorted.
        let all = index.search(&queries[0], n + 50, None).await.unwrap();
        assert_eq!(all.len(), n);
        assert!(all.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(index.search(&queries[0], 0, None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn exact_filter_returns_k_allowed_hits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.lance");
        let (n, dim) = (2500, 16);
        let vectors = clustered(n, dim, 10, 2);
        let ids = ids_for(n);
        write_vectors(&path, &ids, &vectors).await.unwrap();
        let index = VectorIndex::open(&path).await.unwrap();
        let q = &clustered(1, dim, 1, 5)[0];

        let every_seventh = |id: u32| id.is_multiple_of(7);
        let got = index.search(q, 10, Some(&every_seventh)).await.unwrap();
        assert!(got.iter().all(|(id, _)| every_seventh(*id)));
        assert_same_ranking(&got, &brute_force(q, &ids, &vectors, 10, every_seventh));

        // Only 4 allowed ids exist: all 4 come back, even though they rank low overall.
        let rare = |id: u32| [4u32, 1000, 4003, 7498].contains(&id);
        let got = index.search(q, 10, Some(&rare)).await.unwrap();
        assert_eq!(
            got.iter().map(|h| h.0).collect::<HashSet<_>>(),
            HashSet::from([4, 1000, 4003, 7498])
        );

        let none = |_: u32| false;
        assert!(index.search(q, 10, Some(&none)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn ann_index_has_high_recall_and_honours_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.lance");
        let (n, dim) = (6000, 64);
        let vectors = clustered(n, dim, 40, 3);
        let ids = ids_for(n);
        let opts = VectorWriteOptions {
            ann_threshold: 1000,
            ..Default::default()
        };
        let stats = write_vectors_with(&path, &ids, &vectors, &opts).await.unwrap();
        assert_eq!(stats.ann_index, Some(AnnKind::IvfHnswSq));

        let index = VectorIndex::open(&path).await.unwrap();
        assert_eq!(index.ann_kind(), Some(AnnKind::IvfHnswSq));
        assert_eq!(index.len(), n);
        let queries = clustered(40, dim, 40, 77);
        let (mut found, mut total) = (0, 0);
        for q in &queries {
            let got = index.search(q, 10, None).await.unwrap();
            assert_eq!(got.len(), 10);
            assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "{got:?}");
            let want: HashSet<u32> = brute_force(q, &ids, &vectors, 10, |_| true)
                .iter()
                .map(|h| h.0)
                .collect();
            found += got.iter().filter(|h| want.contains(&h.0)).count();
            total += 10;
        }
        let recall = found as f64 / total as f64;
        assert!(recall >= 0.9, "recall@10 {recall}");

        // A broad filter is served by over-fetching, a selective one by the exact fallback.
        let q = &queries[0];
        let half = |id: u32| id.is_multiple_of(2);
        let got = index.search(q, 10, Some(&half)).await.unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|(id, _)| half(*id)));
        let rare = |id: u32| id < 60; // 20 allowed rows
        let got = index.search(q, 10, Some(&rare)).await.unwrap();
        assert_same_ranking(&got, &brute_force(q, &ids, &vectors, 10, rare));
    }

    #[tokio::test]
    async fn ivf_pq_is_supported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.lance");
        let (n, dim) = (4000, 32);
        let vectors = clustered(n, dim, 30, 4);
        let ids = ids_for(n);
        let opts = VectorWriteOptions {
            ann_threshold: 1000,
            ann_kind: AnnKind::IvfPq,
        };
        write_vectors_with(&path, &ids, &vectors, &opts).await.unwrap();
        let index = VectorIndex::open(&path).await.unwrap();
        assert_eq!(index.ann_kind(), Some(AnnKind::IvfPq));
        let queries = clustered(20, dim, 30, 8);
        let (mut found, mut total) = (0, 0);
        for q in &queries {
            let got = index.search(q, 10, None).await.unwrap();
            let want: HashSet<u32> = brute_force(q, &ids, &vectors, 10, |_| true)
                .iter()
                .map(|h| h.0)
                .collect();
            found += got.iter().filter(|h| want.contains(&h.0)).count();
            total += 10;
        }
        let recall = found as f64 / total as f64;
        // PQ is lossy and its k-means is seeded randomly: 0.89–0.95 is typical
        // here; chance would be ~0.01.
        assert!(recall >= 0.8, "IVF_PQ recall@10 {recall}");
    }

    #[tokio::test]
    async fn rewriting_replaces_the_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.lance");
        write_vectors(&path, &[1, 2], &[vec![1.0, 0.0], vec![0.0, 1.0]])
            .await
            .unwrap();
        write_vectors(
            &path,
            &[7, 8, 9],
            &[vec![1.0, 0.0, 0.0], vec![0.0, 2.0, 0.0], vec![0.0, 0.0, 3.0]],
        )
        .await
        .unwrap();
        let index = VectorIndex::open(&path).await.unwrap();
        assert_eq!((index.len(), index.dimension()), (3, 3));
        let got = index.search(&[0.0, 5.0, 0.0], 2, None).await.unwrap();
        assert_eq!(got[0].0, 8);
        assert!((got[0].1 - 1.0).abs() < 1e-6, "stored vectors are normalised: {got:?}");
    }

    #[tokio::test]
    async fn bad_input_and_bad_datasets_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.lance");
        assert!(matches!(
            write_vectors(&path, &[1], &[]).await,
            Err(VectorError::InvalidInput(_))
        ));
        assert!(matches!(
            write_vectors(&path, &[], &[]).await,
            Err(VectorError::InvalidInput(_))
        ));
        assert!(matches!(
            write_vectors(&path, &[1, 2], &[vec![1.0, 0.0], vec![1.0]]).await,
            Err(VectorError::DimensionMismatch { expected: 2, got: 1 })
        ));
        assert!(matches!(
            write_vectors(&path, &[1], &[vec![f32::NAN, 0.0]]).await,
            Err(VectorError::InvalidInput(_))
        ));

        let missing = VectorIndex::open(&dir.path().join("nope.lance")).await.unwrap_err();
        assert!(matches!(missing, VectorError::NotFound(_)), "{missing}");

        let garbage = dir.path().join("garbage.lance");
        std::fs::create_dir_all(garbage.join("_versions")).unwrap();
        std::fs::write(garbage.join("_versions/1.manifest"), b"not a lance manifest").unwrap();
        let err = VectorIndex::open(&garbage).await.unwrap_err();
        assert!(matches!(err, VectorError::Corrupt { .. }), "{err}");

        let empty = dir.path().join("empty.lance");
        std::fs::create_dir_all(&empty).unwrap();
        let err = VectorIndex::open(&empty).await.unwrap_err();
        assert!(matches!(err, VectorError::Corrupt { .. }), "{err}");

        let file = dir.path().join("file.lance");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            VectorIndex::open(&file).await.unwrap_err(),
            VectorError::Corrupt { .. }
        ));

        write_vectors(&path, &[1], &[vec![1.0, 0.0]]).await.unwrap();
        let index = VectorIndex::open(&path).await.unwrap();
        assert!(matches!(
            index.search(&[1.0, 0.0, 0.0], 1, None).await,
            Err(VectorError::DimensionMismatch { expected: 2, got: 3 })
        ));
    }

    /// Latency at 100k × 384; run with `--ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark"]
    async fn bench_100k() {
        let dir = tempfile::tempdir().unwrap();
        let (n, dim) = (100_000, 384);
        let vectors = clustered(n, dim, 500, 11);
        let ids: Vec<u32> = (0..n as u32).collect();
        let queries = clustered(50, dim, 500, 12);
        let time = |label: &str, mut samples: Vec<f64>| {
            samples.sort_by(f64::total_cmp);
            eprintln!(
                "{label}: p50 {:.2} ms, p95 {:.2} ms",
                samples[samples.len() / 2],
                samples[samples.len() * 95 / 100]
            );
        };
        let exact_path = dir.path().join("exact.lance");
        let exact_opts = VectorWriteOptions {
            ann_threshold: usize::MAX,
            ..Default::default()
        };
        let stats = write_vectors_with(&exact_path, &ids, &vectors, &exact_opts)
            .await
            .unwrap();
        let started = Instant::now();
        let exact = VectorIndex::open(&exact_path).await.unwrap();
        assert_eq!(exact.ann_kind(), None);
        eprintln!(
            "exact: write {} ms, open {} ms",
            stats.write_ms,
            started.elapsed().as_millis()
        );
        let allow = |id: u32| id.is_multiple_of(3);
        for (label, filter) in [
            ("exact", None),
            ("exact filtered", Some(&allow as &(dyn Fn(u32) -> bool + Sync))),
        ] {
            let mut samples = Vec::new();
            for q in &queries {
                let t = Instant::now();
                exact.search(q, 20, filter).await.unwrap();
                samples.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            time(label, samples);
        }
        // IVF_PQ is left out: its build takes ~85 s here and its recall on this data is poor.
        for kind in [AnnKind::IvfHnswSq] {
            let path = dir.path().join(format!("{}.lance", kind.as_str()));
            let opts = VectorWriteOptions {
                ann_threshold: 50_000,
                ann_kind: kind,
            };
            let stats = write_vectors_with(&path, &ids, &vectors, &opts).await.unwrap();
            let ann = VectorIndex::open(&path).await.unwrap();
            let mut samples = Vec::new();
            let (mut found, mut total) = (0, 0);
            for q in &queries {
                let t = Instant::now();
                let got = ann.search(q, 20, None).await.unwrap();
                samples.push(t.elapsed().as_secs_f64() * 1000.0);
                let want: HashSet<u32> = exact.search(q, 20, None).await.unwrap().iter().map(|h| h.0).collect();
                found += got.iter().filter(|h| want.contains(&h.0)).count();
                total += 20;
            }
            eprintln!(
                "{}: index build {} ms, recall@20 {:.3}",
                kind.as_str(),
                stats.index_ms,
                found as f64 / total as f64
            );
            time(kind.as_str(), samples);
        }
    }
}
