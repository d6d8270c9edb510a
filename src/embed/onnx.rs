//! The MiniLM encoder run by ONNX Runtime, loaded from a shared library at run time.
//!
//! Why: on a CPU the embedder is compute-bound, and ONNX Runtime's kernels
//! (MLAS GEMMs, fused softmax and layer norm, no per-op allocation) run the same
//! fp32 graph much faster than candle (docs/BENCHMARKS.md). The graph is
//! `scripts/export-minilm-onnx.py`'s export of the same safetensors weights and
//! ends in sentence-transformers' pooling, so its vectors equal candle's to
//! float rounding and both backends share one embedder id.
//!
//! The runtime is not linked: `scripts/fetch-minilm.sh` puts PyPI's
//! `libonnxruntime.so` beside the model, so the build needs no C++ toolchain
//! or download, and a machine without it falls back to candle.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use parking_lot::Mutex;

use super::EmbedError;

/// The exported graph, inside the model directory.
pub(super) const ONNX_MODEL_FILE: &str = "model.onnx";
/// The runtime library `scripts/fetch-minilm.sh` installs beside the model.
const RUNTIME_FILE: &str = "libonnxruntime.so";

/// The runtime library to load: `$ORT_DYLIB_PATH` (ort's own convention), else
/// the one beside the model; `None` when there is none beside the model.
pub(super) fn runtime_library(model_dir: &Path) -> Result<Option<PathBuf>, EmbedError> {
    library_from(std::env::var_os("ORT_DYLIB_PATH"), model_dir)
}

/// A path the operator named that holds no library is an error, not a
/// reason to quietly embed far slower with candle.
fn library_from(named: Option<std::ffi::OsString>, model_dir: &Path) -> Result<Option<PathBuf>, EmbedError> {
    match named.filter(|v| !v.is_empty()).map(PathBuf::from) {
        Some(path) if path.is_file() => Ok(Some(path)),
        Some(path) => Err(EmbedError::OnnxRuntimeMissing { path }),
        None => Ok(Some(model_dir.join(RUNTIME_FILE)).filter(|p| p.is_file())),
    }
}

/// ONNX Runtime allows one environment per process, and the library can only
/// be loaded once: every session shares this one (or its load error).
fn environment(library: &Path) -> Result<ort::environment::Environment, EmbedError> {
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    static ENV: OnceLock<Result<ort::environment::Environment, Shared>> = OnceLock::new();
    ENV.get_or_init(|| {
        let builder = ort::init_from(library).map_err(|e| Arc::new(e) as Shared)?;
        let env = builder
            .with_name("trusty-search")
            .build()
            .map_err(|e| Arc::new(e) as Shared)?;
        // The runtime's info level narrates every allocation; keep warnings and errors.
        env.set_log_level(ort::logging::LogLevel::Warning);
        Ok(env)
    })
    .clone()
    .map_err(|source| EmbedError::OnnxRuntime {
        path: library.to_path_buf(),
        source,
    })
}

/// One loaded ONNX session. `Session::run` takes `&mut self`, so calls are
/// serialised; each already uses every core through the intra-op pool.
pub(super) struct OnnxEncoder {
    session: Mutex<Session>,
}

impl OnnxEncoder {
    pub(super) fn load(model_dir: &Path, library: &Path) -> Result<Self, EmbedError> {
        let env = environment(library)?;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let mut builder = Session::builder(&env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort::Error::from)?
            .with_intra_threads(threads)
            .map_err(ort::Error::from)?
            // Idle intra-op threads would otherwise spin and take CPU from searches.
            .with_intra_op_spinning(false)
            .map_err(ort::Error::from)?;
        let session = builder.commit_from_file(model_dir.join(ONNX_MODEL_FILE))?;
        Ok(Self {
            session: Mutex::new(session),
        })
    }

    /// Embeds one padded batch (`ids` and `mask` are `batch × len`, row-major);
    /// the graph pools and normalises, so rows come back as unit vectors.
    pub(super) fn forward(
        &self,
        ids: Vec<i64>,
        mask: Vec<i64>,
        batch: usize,
        len: usize,
        dimension: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let ids = Tensor::from_array(([batch, len], ids))?;
        let mask = Tensor::from_array(([batch, len], mask))?;
        let mut session = self.session.lock();
        let outputs = session.run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])?;
        let (shape, data) = outputs["embedding"].try_extract_tensor::<f32>()?;
        if shape.len() != 2 || shape[0] as usize != batch || shape[1] as usize != dimension {
            return Err(EmbedError::DimensionMismatch {
                expected: dimension,
                got: shape.last().copied().unwrap_or(0) as usize,
            });
        }
        Ok(data.chunks_exact(dimension).map(<[f32]>::to_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_runtime_must_exist_and_the_model_dir_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(library_from(None, dir.path()), Ok(None)));
        let missing = dir.path().join("nowhere.so");
        let err = library_from(Some(missing.clone().into()), dir.path()).unwrap_err();
        assert!(
            matches!(&err, EmbedError::OnnxRuntimeMissing { path } if *path == missing),
            "{err}"
        );
        std::fs::write(dir.path().join(RUNTIME_FILE), b"").unwrap();
        assert_eq!(
            library_from(Some("".into()), dir.path()).unwrap(),
            Some(dir.path().join(RUNTIME_FILE))
        );
        let named = dir.path().join("other.so");
        std::fs::write(&named, b"").unwrap();
        assert_eq!(
            library_from(Some(named.clone().into()), dir.path()).unwrap(),
            Some(named)
        );
    }
}
