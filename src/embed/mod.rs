//! Turning chunks into dense vectors for the vector arm.
//!
//! Two backends sit behind one [`Embedder`] trait so that the indexer and the
//! query path do not care where vectors come from:
//!
//! * [`MiniLm`]: sentence-transformers/all-MiniLM-L6-v2 run in-process on the
//!   CPU (ONNX Runtime, or candle). No service to deploy, 384 dimensions, good enough for
//!   code search, and the default for self-contained clusters.
//! * [`HttpEmbedder`]: any OpenAI-compatible `/v1/embeddings` endpoint
//!   (text-embeddings-inference, Ollama, vLLM, OpenAI) for larger models.
//!
//! The embedder id is recorded in the manifest with the model's [`Fingerprint`]
//! probe: vectors built with one model are meaningless to another, so a shard
//! only uses an index's vectors when its query embedder has the same id (and
//! dimension) and answers the probe texts alike. Every backend returns L2-normalised
//! vectors so that cosine similarity is a plain dot product downstream.

mod breaker;
mod fingerprint;
mod http;
mod minilm;
mod onnx;

use std::path::PathBuf;
use std::sync::Arc;

pub use breaker::Breaker;
pub(crate) use fingerprint::same_model;
#[cfg(test)]
pub(crate) use fingerprint::tests::Salted;
pub use fingerprint::{Fingerprint, PROBE_TEXTS};
pub use http::{HttpEmbedder, HttpEmbedderOptions};
pub use minilm::{MINILM_DIMENSION, MINILM_ID, MINILM_MAX_TOKENS, MiniLm, MiniLmBackend, default_minilm_dir};

use crate::error_chain::one_line;
use crate::model::{Chunk, split_identifier};

/// A text → vector model. Implementations are synchronous and may be slow
/// (tens of milliseconds per batch): call them from `spawn_blocking` or rayon,
/// never directly on an async worker.
pub trait Embedder: Send + Sync {
    /// Stable id recorded in the manifest, e.g. `minilm-l6-v2` or `openai:<model>`;
    /// a shard only uses an index's vectors with the same id.
    fn id(&self) -> &str;
    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;
    /// Embeds `texts` in order. Returns L2-normalised vectors, one per text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// How many texts a caller should pass per `embed` call.
    fn max_batch(&self) -> usize {
        32
    }
    /// Where the vectors come from beyond the id (an endpoint, a weights
    /// digest), so the embedding cache never mixes two sources' vectors.
    fn provenance(&self) -> String {
        String::new()
    }
}

/// Why an embedder could not be loaded or could not embed.
///
/// Messages that reach an HTTP answer or a log line spell out their causes
/// (only the top message travels there); each keeps its source as well.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("model directory {dir} is missing {file} (install the weights with scripts/fetch-minilm.sh)")]
    ModelFileMissing { dir: PathBuf, file: &'static str },
    #[error(
        "no MiniLM model found locally (looked in {searched}) and the Hugging Face hub is unreachable: {}; install the weights with scripts/fetch-minilm.sh or set TRUSTY_MODEL_DIR",
        one_line(source)
    )]
    HubUnavailable {
        searched: String,
        #[source]
        source: HubError,
    },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid model config {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} describes a model with hidden size {hidden_size}, not MiniLM's {expected}")]
    NotMiniLm {
        path: PathBuf,
        hidden_size: usize,
        expected: usize,
    },
    #[error("tokenizer: {what}: {source}")]
    Tokenizer {
        what: String,
        #[source]
        source: tokenizers::Error,
    },
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    #[error("ORT_DYLIB_PATH names no file: {path} (install ONNX Runtime with scripts/fetch-minilm.sh)")]
    OnnxRuntimeMissing { path: PathBuf },
    #[error("loading ONNX Runtime from {path}: {source} (install it with scripts/fetch-minilm.sh)")]
    OnnxRuntime {
        path: PathBuf,
        /// Shared: the runtime loads once per process and every later
        /// session gets the same failure.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    #[error("onnx runtime: {0}")]
    Onnx(#[from] ort::Error),
    #[error("embedding request to {url} failed with HTTP {status}: {body}")]
    Http { url: String, status: u16, body: String },
    #[error("embedding request to {url} failed: {}", one_line(source))]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("embedding response from {url} is invalid: {reason}")]
    InvalidResponse { url: String, reason: String },
    #[error("embedding response from {url} is not an embeddings response: {source}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("embedding dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("the embedder's answer to the fingerprint probe is unusable: {0}")]
    InvalidProbe(String),
    #[error("embedder configuration: {0}")]
    InvalidConfig(String),
    #[error("embedding URL {url:?} is not a URL: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("building the embedder's HTTP client: {}", one_line(.0))]
    HttpClient(#[source] reqwest::Error),
    #[error("encoding the embedding request: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("starting the embedder's {what}: {source}")]
    Runtime {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the embedder's {0} stopped before answering")]
    TaskLost(&'static str),
    #[error("embedder {id} is unavailable after a recent failure; trying again in {retry_in:?}")]
    Unavailable { id: String, retry_in: std::time::Duration },
}

/// Why the Hugging Face hub could not supply the model.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("starting the download runtime")]
    Runtime(#[source] std::io::Error),
    #[error("creating the hub client")]
    Client(#[source] hf_hub::HFError),
    #[error("timed out downloading {file}")]
    Timeout { file: &'static str },
    #[error("downloading {file}")]
    Download {
        file: &'static str,
        #[source]
        source: hf_hub::HFError,
    },
    #[error("the hub returned no file path")]
    NoPath,
}

impl EmbedError {
    /// True for failures worth retrying: overload, rate limits, server errors, timeouts.
    pub fn is_transient(&self) -> bool {
        match self {
            EmbedError::Http { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            EmbedError::Transport { .. } | EmbedError::Unavailable { .. } => true,
            _ => false,
        }
    }
}

/// Which embedder an index uses (from the CLI or the Index CR).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EmbedderConfig {
    /// Lexical-only index: no vectors.
    #[default]
    None,
    /// all-MiniLM-L6-v2 in-process. `model_dir: None` looks in `$TRUSTY_MODEL_DIR`,
    /// then `~/.cache/trusty-search/models/all-MiniLM-L6-v2`, then the HF hub.
    MiniLm { model_dir: Option<PathBuf> },
    /// An OpenAI-compatible embeddings service at `url` (`{url}/v1/embeddings`).
    /// `dimension: None` is discovered with one probe request at load.
    Http {
        url: String,
        model: String,
        api_key: Option<String>,
        dimension: Option<usize>,
    },
}

/// Builds the embedder `cfg` names, or `None` for a lexical-only index.
///
/// Blocking (it may read 90 MB of weights or make a network request): call it
/// from `spawn_blocking` when on an async runtime.
pub fn load_embedder(cfg: &EmbedderConfig) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    match cfg {
        EmbedderConfig::None => Ok(None),
        EmbedderConfig::MiniLm { model_dir: Some(dir) } => {
            Ok(Some(Arc::new(MiniLm::load(&minilm::model_dir_in(dir))?)))
        }
        EmbedderConfig::MiniLm { model_dir: None } => match default_minilm_dir() {
            Some(dir) => Ok(Some(Arc::new(MiniLm::load(&dir)?))),
            None => Ok(Some(Arc::new(MiniLm::from_hub()?))),
        },
        EmbedderConfig::Http {
            url,
            model,
            api_key,
            dimension,
        } => {
            let embedder = HttpEmbedder::new(HttpEmbedderOptions {
                url: url.clone(),
                model: model.clone(),
                api_key: api_key.clone(),
                dimension: *dimension,
                ..HttpEmbedderOptions::default()
            })?;
            if dimension.is_none() {
                embedder.probe_dimension()?;
            }
            Ok(Some(Arc::new(embedder)))
        }
    }
}

/// Longest text (in bytes) embedded for one chunk. MiniLM reads 256 tokens
/// (~1 KB of code) anyway; the margin lets larger HTTP models see more while
/// bounding request size.
pub const MAX_EMBED_CHARS: usize = 4096;

/// The text embedded for a chunk: a one-line header naming what the chunk is
/// (kind, qualified symbol, the symbol split into words, path, language), then
/// the content with blank lines dropped and indentation removed.
///
/// The header matters: a query like "parse config file" should match a function
/// `parse_config` in `src/config.rs` even when its body never says so, and the
/// model's 256-token window means the header must come first. Identifier words
/// are spelled out because `readFile`/`read_file` tokenise poorly.
pub fn embedding_text(chunk: &Chunk) -> String {
    let mut out = String::with_capacity(chunk.content.len().min(MAX_EMBED_CHARS) + 128);
    out.push_str(chunk.kind.as_str());
    if let Some(symbol) = &chunk.symbol {
        out.push(' ');
        if let Some(parent) = &chunk.parent {
            out.push_str(parent);
            out.push_str("::");
        }
        out.push_str(symbol);
        let words = split_identifier(symbol).join(" ");
        if !words.is_empty() && words != symbol.to_lowercase() {
            out.push_str(" (");
            out.push_str(&words);
            out.push(')');
        }
    }
    out.push_str(" in ");
    out.push_str(&chunk.path);
    out.push_str(" (");
    out.push_str(chunk.language.as_str());
    out.push_str(")\n");
    for line in chunk.content.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if out.len() + line.len() + 1 > MAX_EMBED_CHARS {
            let room = MAX_EMBED_CHARS.saturating_sub(out.len());
            out.push_str(&line[..line.floor_char_boundary(room)]);
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

/// Scales `v` to unit length in place (a zero vector stays zero).
pub(crate) fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Language, SymbolKind};

    fn chunk(symbol: Option<&str>, parent: Option<&str>, content: &str) -> Chunk {
        Chunk {
            id: 0,
            path: "src/fs/read.rs".into(),
            language: Language::Rust,
            symbol: symbol.map(Into::into),
            kind: SymbolKind::Function,
            parent: parent.map(Into::into),
            start_line: 1,
            end_line: 3,
            content: content.into(),
            content_hash: String::new(),
            calls: vec![],
            imports: vec![],
        }
    }

    #[test]
    fn identifiers_split_into_words() {
        let words = |s| split_identifier(s).join(" ");
        assert_eq!(words("read_file"), "read file");
        assert_eq!(words("parseHTTPResponse_v2"), "parse http response v2");
        assert_eq!(words("Server"), "server");
        assert_eq!(words("__init__"), "init");
    }

    #[test]
    fn embedding_text_has_header_then_compacted_content() {
        let c = chunk(
            Some("readFile"),
            Some("Loader"),
            "fn readFile() {\n\n    let x = 1;\n}\n",
        );
        let text = embedding_text(&c);
        assert_eq!(
            text,
            "function Loader::readFile (read file) in src/fs/read.rs (rust)\nfn readFile() {\nlet x = 1;\n}"
        );
        let anon = chunk(None, None, "hello");
        assert_eq!(embedding_text(&anon), "function in src/fs/read.rs (rust)\nhello");
    }

    #[test]
    fn embedding_text_is_bounded_and_utf8_safe() {
        let long = "é".repeat(10_000);
        let text = embedding_text(&chunk(Some("x"), None, &long));
        assert!(text.len() <= MAX_EMBED_CHARS, "{}", text.len());
        assert!(text.len() > MAX_EMBED_CHARS - 8);
    }

    #[test]
    fn normalize_gives_unit_length() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0, 0.0];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
    }

    #[test]
    fn none_config_loads_nothing() {
        assert!(load_embedder(&EmbedderConfig::None).unwrap().is_none());
    }
}
