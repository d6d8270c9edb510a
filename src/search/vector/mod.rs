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
use lance::dataset::builder::DatasetBuilder;
use lance::index::DatasetIndexExt;

mod ann;
mod exact;
#[cfg(test)]
mod tests;

pub use crate::bundle::vectors::{AnnKind, VectorError};
use crate::bundle::vectors::{ID_COLUMN, INDEX_NAME, VECTOR_COLUMN, normalize, num_partitions, uri};
use crate::heap_size;
use crate::storage::layout::bundle;
use crate::storage::manifest::Manifest;

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
        /// The most lance may cache for it: [`ann_cache_caps`].
        cache_bytes: u64,
    },
}

/// Metadata lance may cache for one dataset: its manifest, file footers and
/// index descriptions, small for a single vectors table.
const METADATA_CACHE_BYTES: usize = 1 << 20;

/// The metadata cache an ANN index adds to its reservation: a version whose
/// vectors table holds index files gets one.
pub(crate) fn ann_metadata_bytes(manifest: &Manifest) -> u64 {
    let indices = format!("{}/_indices", bundle::VECTORS_DIR);
    if manifest.bytes_under(&indices) > 0 {
        METADATA_CACHE_BYTES as u64
    } else {
        0
    }
}

/// What lance may cache for an ANN dataset: the index partitions queries read,
/// up to what exact search would hold for the same rows (full-precision
/// vectors, which the memory estimate reserves and which is larger than the
/// compressed index), plus its metadata. Lance's own defaults (6 GiB and
/// 1 GiB per dataset) would let a hot index outgrow the shard's budget.
fn ann_cache_caps(rows: usize, dimension: usize) -> (usize, usize) {
    (rows * dimension * 4, METADATA_CACHE_BYTES)
}

/// Opens the dataset at `uri` with bounded caches.
async fn open_dataset(uri: &str, (index_cache, metadata_cache): (usize, usize)) -> lance::Result<Dataset> {
    DatasetBuilder::from_uri(uri)
        .with_index_cache_size_bytes(index_cache)
        .with_metadata_cache_size_bytes(metadata_cache)
        .load()
        .await
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
                let reason = crate::panic_message(panic.as_ref());
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
        let uri = uri(dir)?;
        // Read the schema and indices without caching partitions; an ANN
        // dataset is reopened below with caches sized to its rows.
        let dataset = open_dataset(&uri, (0, METADATA_CACHE_BYTES))
            .await
            .map_err(lance_corrupt("opening"))?;
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
        let backend = if ann {
            let caps = ann_cache_caps(len, dimension);
            drop(dataset);
            let dataset = Arc::new(open_dataset(&uri, caps).await.map_err(lance_corrupt("opening"))?);
            // The kind is informational (search parameters differ slightly); read it from the index description.
            let kind = ann::describe_kind(&dataset).await.unwrap_or(AnnKind::IvfHnswSq);
            Backend::Ann {
                partitions: num_partitions(kind, len),
                dataset,
                kind,
                cache_bytes: (caps.0 + caps.1) as u64,
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

    /// Bytes held in memory: the whole matrix for exact search; with an ANN
    /// index (read on demand), the most lance may cache for it.
    pub fn memory_bytes(&self) -> u64 {
        match &self.backend {
            Backend::Exact { ids, matrix } => (heap_size::buffer(ids) + heap_size::buffer(matrix)) as u64,
            Backend::Ann { cache_bytes, .. } => *cache_bytes,
        }
    }

    /// What lance holds in its caches for this index now (0 for exact search).
    #[cfg(test)]
    fn cached_bytes(&self) -> u64 {
        match &self.backend {
            Backend::Exact { .. } => 0,
            Backend::Ann { dataset, .. } => dataset.session().size_bytes(),
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
            Backend::Exact { ids, matrix } => Ok(exact::top_k(&q, ids, matrix, self.dimension, k, allow)),
            Backend::Ann {
                dataset,
                kind,
                partitions,
                ..
            } => self.ann_search(dataset, *kind, *partitions, &q, k, allow).await,
        }
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
