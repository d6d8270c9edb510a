//! Writes the vector arm of a version (format: [`crate::bundle::vectors`]).
//! Small datasets get no index (shards scan them exactly, in memory); from
//! [`DEFAULT_ANN_THRESHOLD`] rows an ANN index is built, cosine distance.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{FixedSizeListArray, Float32Array, RecordBatch, RecordBatchIterator, UInt32Array};
use arrow_schema::{DataType, Field};
use lance::Dataset;
use lance::dataset::{WriteMode, WriteParams};
use lance::index::DatasetIndexExt;
use lance::index::vector::VectorIndexParams;
use lance_index::IndexType;
use lance_index::vector::hnsw::builder::HnswBuildParams;
use lance_index::vector::ivf::IvfBuildParams;
use lance_index::vector::pq::PQBuildParams;
use lance_index::vector::sq::builder::SQBuildParams;
use lance_linalg::distance::DistanceType;

use crate::bundle::vectors::{AnnKind, INDEX_NAME, VECTOR_COLUMN, VectorError, normalize, num_partitions, schema, uri};

/// Rows at which the writer builds an ANN index instead of relying on exact search.
pub const DEFAULT_ANN_THRESHOLD: usize = 50_000;

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
    )?;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(UInt32Array::from(ids.to_vec())), Arc::new(vector_array)],
    )?;
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
            let sub_vectors = (1..=target).rev().find(|s| dimension.is_multiple_of(*s)).unwrap_or(1);
            let pq = PQBuildParams {
                num_sub_vectors: sub_vectors,
                num_bits: 8,
                ..Default::default()
            };
            VectorIndexParams::with_ivf_pq_params(DistanceType::Cosine, ivf, pq)
        }
    }
}
