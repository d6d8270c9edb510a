//! The vector arm: chunk embeddings stored in a lance dataset, ranked by cosine.
//!
//! The lance dataset (`<bundle>/vectors.lance`, columns `id: u32`,
//! `vector: fixed_size_list<f32>[d]`, vectors L2-normalised) is the data of
//! record: it is what the indexer writes, what object storage holds and what a
//! shard opens. How a shard *searches* it depends on size:
//!
//! * Below [`DEFAULT_ANN_THRESHOLD`] rows the writer builds no index and
//!   [`VectorIndex::open`] loads every vector into one contiguous f32 matrix.
//!   Search is then an exact dot-product scan split across rayon threads using
//!   lance-linalg's SIMD kernels: no datafusion plan per query, no I/O, exact
//!   results, and a filter is applied inline so k allowed hits always come back
//!   when they exist. Measured at 100k × 384 on a (loaded) 2-core box: 14 ms
//!   p50, bound by memory bandwidth (150 MB per scan); the matrix costs 150 MB of
//!   RAM. Both grow linearly, which is what the threshold is for.
//! * At or above it the writer builds an ANN index (IVF_HNSW_SQ by default,
//!   cosine) and search goes through lance's `nearest` (measured at 100k × 384:
//!   5 ms p50 including the datafusion plan, recall@20 0.96 against exact; the
//!   index takes ~22 s to build). A filter is honoured by over-fetching; if that
//!   still yields fewer than k allowed hits, an exact streamed scan of the
//!   dataset with the filter inline finishes the job.
//!
//! Scores are cosine similarities (higher is better) in both modes.

use std::cmp::Ordering;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch, RecordBatchIterator, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use futures::{FutureExt, TryStreamExt};
use lance::Dataset;
use lance::dataset::{WriteMode, WriteParams};
use lance::index::DatasetIndexExt;
use lance::index::vector::VectorIndexParams;
use lance_index::IndexType;
use lance_index::vector::hnsw::builder::HnswBuildParams;
use lance_index::vector::ivf::IvfBuildParams;
use lance_index::vector::pq::PQBuildParams;
use lance_index::vector::sq::builder::SQBuildParams;
use lance_linalg::distance::{DistanceType, Dot};
use rayon::prelude::*;

/// Rows at which the writer builds an ANN index instead of relying on exact search.
pub const DEFAULT_ANN_THRESHOLD: usize = 50_000;
const ID_COLUMN: &str = "id";
const VECTOR_COLUMN: &str = "vector";
const DISTANCE_COLUMN: &str = "_distance";
const INDEX_NAME: &str = "vector_idx";
/// Rows per rayon task in the exact scan (~3 MB of 384-d vectors).
const SCAN_BLOCK: usize = 2048;

/// Why vectors could not be written, opened or searched.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("no vector dataset at {0}")]
    NotFound(PathBuf),
    #[error("vector dataset {path} is unreadable or corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("lance error on {path}: {source}")]
    Lance {
        path: PathBuf,
        #[source]
        source: lance::Error,
    },
    #[error("vector dimension mismatch: index has {expected}, got {got}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("invalid vectors: {0}")]
    InvalidInput(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which ANN index to build above the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnKind {
    /// IVF partitions, each an HNSW graph over 8-bit scalar-quantised vectors:
    /// high recall without a refine step.
    IvfHnswSq,
    /// IVF with product quantisation and an exact re-rank of the candidates.
    IvfPq,
}

impl AnnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnKind::IvfHnswSq => "IVF_HNSW_SQ",
            AnnKind::IvfPq => "IVF_PQ",
        }
    }
}

/// How [`write_vectors_with`] lays out the dataset.
#[derive(Debug, Clone)]
pub struct VectorWriteOptions {
    /// Build an ANN index when there are at least this many rows.
    pub ann_threshold: usize,
    pub ann_kind: AnnKind,
}

impl Default for VectorWriteOptions {
    fn default() -> Self {
        Self {
            ann_threshold: DEFAULT_ANN_THRESHOLD,
            ann_kind: AnnKind::IvfHnswSq,
        }
    }
}

/// What was written, for the manifest and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorStats {
    pub rows: usize,
    pub dimension: usize,
    /// The ANN index built, if any (`None`: exact search).
    pub ann_index: Option<AnnKind>,
    pub write_ms: u64,
    pub index_ms: u64,
}

/// Writes `vectors` (row i has chunk id `ids[i]`) as a fresh lance dataset at
/// `dir`, replacing whatever was there, with the default options.
pub async fn write_vectors(dir: &Path, ids: &[u32], vectors: &[Vec<f32>]) -> Result<VectorStats, VectorError> {
    write_vectors_with(dir, ids, vectors, &VectorWriteOptions::default()).await
}

/// [`write_vectors`] with an explicit ANN threshold and index kind.
pub async fn write_vectors_with(
    dir: &Path,
    ids: &[u32],
    vectors: &[Vec<f32>],
    opts: &VectorWriteOptions,
) -> Result<VectorStats, VectorError> {
    if ids.len() != vectors.len() {
        return Err(VectorError::InvalidInput(format!(
            "{} ids for {} vectors",
            ids.len(),
            vectors.len()
        )));
    }
    let Some(first) = vectors.first() else {
        return Err(VectorError::InvalidInput("no vectors to write".into()));
    };
    let dimension = first.len();
    if dimension == 0 {
        return Err(VectorError::InvalidInput("vectors have dimension 0".into()));
    }
    let mut values = Vec::with_capacity(vectors.len() * dimension);
    for (i, v) in vectors.iter().enumerate() {
        if v.len() != dimension {
            return Err(VectorError::DimensionMismatch {
                expected: dimension,
                got: v.len(),
            });
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(VectorError::InvalidInput(format!(
                "vector for id {} has a non-finite value",
                ids[i]
            )));
        }
        let start = values.len();
        values.extend_from_slice(v);
        normalize(&mut values[start..]);
    }

    let started = Instant::now();
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(VectorError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    let schema = Arc::new(schema(dimension));
    let vector_array = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        dimension as i32,
        Arc::new(Float32Array::from(values)),
        None,
    )
    .map_err(|e| VectorError::InvalidInput(e.to_string()))?;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(UInt32Array::from(ids.to_vec())), Arc::new(vector_array)],
    )
    .map_err(|e| VectorError::InvalidInput(e.to_string()))?;
    let reader = RecordBatchIterator::new(vec![Ok(batch)], schema);
    let params = WriteParams {
        mode: WriteMode::Create,
        ..Default::default()
    };
    let uri = uri(dir)?;
    let lance_err = |source| VectorError::Lance {
        path: dir.to_path_buf(),
        source,
    };
    let mut dataset = Dataset::write(reader, uri.as_str(), Some(params))
        .await
        .map_err(lance_err)?;
    let write_ms = started.elapsed().as_millis() as u64;

    let rows = ids.len();
    let started = Instant::now();
    let ann_index = if rows >= opts.ann_threshold.max(1) {
        let params = index_params(opts.ann_kind, rows, dimension);
        dataset
            .create_index(
                &[VECTOR_COLUMN],
                IndexType::Vector,
                Some(INDEX_NAME.into()),
                &params,
                true,
            )
            .await
            .map_err(lance_err)?;
        Some(opts.ann_kind)
    } else {
        None
    };
    Ok(VectorStats {
        rows,
        dimension,
        ann_index,
        write_ms,
        index_ms: started.elapsed().as_millis() as u64,
    })
}

/// IVF partitions for `rows`: about one per 25k rows for HNSW (each partition
/// holds a graph, so few large ones), about sqrt(rows) for PQ.
fn num_partitions(kind: AnnKind, rows: usize) -> usize {
    match kind {
        AnnKind::IvfHnswSq => (rows / 25_000).clamp(1, 256),
        AnnKind::IvfPq => ((rows as f64).sqrt() as usize).clamp(1, 4096),
    }
}

fn index_params(kind: AnnKind, rows: usize, dimension: usize) -> VectorIndexParams {
    let ivf = IvfBuildParams::new(num_partitions(kind, rows));
    match kind {
        AnnKind::IvfHnswSq => VectorIndexParams::with_ivf_hnsw_sq_params(
            DistanceType::Cosine,
            ivf,
            HnswBuildParams::default(),
            SQBuildParams::default(),
        ),
        AnnKind::IvfPq => {
            // 8 dims per sub-vector when it divides, else the largest divisor ≤ dimension/8.
            let target = (dimension / 8).max(1);
            let sub_vectors = (1..=target).rev().find(|s| dimension % s == 0).unwrap_or(1);
            let pq = PQBuildParams {
                num_sub_vectors: sub_vectors,
                num_bits: 8,
                ..Default::default()
            };
            VectorIndexParams::with_ivf_pq_params(DistanceType::Cosine, ivf, pq)
        }
    }
}

fn schema(dimension: usize) -> Schema {
    Schema::new(vec![
        Field::new(ID_COLUMN, DataType::UInt32, false),
        Field::new(
            VECTOR_COLUMN,
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dimension as i32),
            false,
        ),
    ])
}

fn uri(dir: &Path) -> Result<String, VectorError> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|source| VectorError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .join(dir)
    };
    abs.to_str()
        .map(str::to_string)
        .ok_or_else(|| VectorError::InvalidInput(format!("path {} is not UTF-8", dir.display())))
}

fn normalize(v: &mut [f32]) {
    let norm = f32::dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// An opened vector dataset, ready to answer nearest-neighbour queries.
pub struct VectorIndex {
    path: PathBuf,
    dimension: usize,
    len: usize,
    mode: Mode,
}

enum Mode {
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
        };
        let dataset = Dataset::open(&uri(dir)?).await.map_err(|e| corrupt(e.to_string()))?;
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
        let len = dataset.count_rows(None).await.map_err(|e| corrupt(e.to_string()))?;
        let indices = dataset.load_indices().await.map_err(|e| corrupt(e.to_string()))?;
        let vector_field_id = vector_field.id;
        let ann = indices
            .iter()
            .find(|i| i.fields.contains(&vector_field_id) && i.name == INDEX_NAME)
            .is_some();
        let dataset = Arc::new(dataset);

        let mode = if ann {
            // The kind is informational (search parameters differ slightly); read it from the index description.
            let kind = describe_kind(&dataset).await.unwrap_or(AnnKind::IvfHnswSq);
            Mode::Ann {
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
            Mode::Exact { ids, matrix }
        };
        Ok(Self {
            path: dir.to_path_buf(),
            dimension,
            len,
            mode,
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
        match &self.mode {
            Mode::Exact { ids, matrix } => (ids.len() * 4 + matrix.len() * 4) as u64,
            Mode::Ann { .. } => 0,
        }
    }

    /// The ANN index searched, or `None` for exact in-memory search.
    pub fn ann_kind(&self) -> Option<AnnKind> {
        match &self.mode {
            Mode::Exact { .. } => None,
            Mode::Ann { kind, .. } => Some(*kind),
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
        match &self.mode {
            Mode::Exact { ids, matrix } => Ok(exact_top_k(&q, ids, matrix, self.dimension, k, allow)),
            Mode::Ann {
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
        })?;
        let distances = column::<Float32Array>(&batch, DISTANCE_COLUMN).map_err(|reason| VectorError::Corrupt {
            path: self.path.clone(),
            reason,
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
        for (id, s) in block.items {
            all.push(id, s);
        }
    }
    all.into_sorted()
}

/// A bounded min-heap of the k best (id, score) pairs. Ties break towards the
/// smaller id so results are deterministic.
struct TopK {
    k: usize,
    items: Vec<(u32, f32)>,
    /// Score of the worst kept item once full; anything not better is skipped cheaply.
    floor: f32,
}

fn better(a: (u32, f32), b: (u32, f32)) -> bool {
    match a.1.total_cmp(&b.1) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => a.0 < b.0,
    }
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(k + 1),
            floor: f32::NEG_INFINITY,
        }
    }

    fn push(&mut self, id: u32, score: f32) {
        if self.items.len() < self.k {
            self.items.push((id, score));
            if self.items.len() == self.k {
                self.floor = self.worst().1;
            }
            return;
        }
        if score < self.floor {
            return;
        }
        let worst_at = self.worst_index();
        if better((id, score), self.items[worst_at]) {
            self.items[worst_at] = (id, score);
            self.floor = self.worst().1;
        }
    }

    fn worst_index(&self) -> usize {
        let mut w = 0;
        for i in 1..self.items.len() {
            if better(self.items[w], self.items[i]) {
                w = i;
            }
        }
        w
    }

    fn worst(&self) -> (u32, f32) {
        self.items[self.worst_index()]
    }

    fn into_sorted(mut self) -> Vec<(u32, f32)> {
        self.items.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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

        let every_seventh = |id: u32| id % 7 == 0;
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
        let half = |id: u32| id % 2 == 0;
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
        let allow = |id: u32| id % 3 == 0;
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
