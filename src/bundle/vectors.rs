//! The vector arm's format: a lance dataset (`<bundle>/vectors.lance`) with
//! columns `id: u32` (chunk id) and `vector: fixed_size_list<f32>[d]`, every
//! vector L2-normalised so a dot product is a cosine similarity. Large
//! datasets also carry one ANN index named [`INDEX_NAME`] on the vector column.
//! The writer is `index::vectors`, the reader `search::vector`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use lance_linalg::distance::Dot;

pub(crate) const ID_COLUMN: &str = "id";
pub(crate) const VECTOR_COLUMN: &str = "vector";
/// The column lance adds to nearest-neighbour results.
pub(crate) const DISTANCE_COLUMN: &str = "_distance";
pub(crate) const INDEX_NAME: &str = "vector_idx";

/// Why vectors could not be written, opened or searched.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("no vector dataset at {0}")]
    NotFound(PathBuf),
    /// `source` is set when lance reported the problem; `reason` says what
    /// was being read (or, without a source, what is wrong with it).
    #[error("vector dataset {} is unreadable or corrupt: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<lance::Error>,
    },
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
    #[error("assembling the vector batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
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

/// The dataset schema: `id: u32`, `vector: fixed_size_list<f32>[dimension]`.
pub(crate) fn schema(dimension: usize) -> Schema {
    Schema::new(vec![
        Field::new(ID_COLUMN, DataType::UInt32, false),
        Field::new(
            VECTOR_COLUMN,
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dimension as i32),
            false,
        ),
    ])
}

/// Lance wants an absolute, UTF-8 location.
pub(crate) fn uri(dir: &Path) -> Result<String, VectorError> {
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

/// L2-normalises in place, so a dot product is a cosine.
pub(crate) fn normalize(v: &mut [f32]) {
    let norm = f32::dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// IVF partitions for `rows`: about one per 25k rows for HNSW (each partition
/// holds a graph, so few large ones), about sqrt(rows) for PQ.
pub(crate) fn num_partitions(kind: AnnKind, rows: usize) -> usize {
    match kind {
        AnnKind::IvfHnswSq => (rows / 25_000).clamp(1, 256),
        AnnKind::IvfPq => ((rows as f64).sqrt() as usize).clamp(1, 4096),
    }
}
