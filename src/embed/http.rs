//! Embeddings from an OpenAI-compatible HTTP service.
//!
//! `POST {url}/v1/embeddings` with `{"model", "input": [...]}` is spoken by
//! OpenAI, text-embeddings-inference, Ollama and vLLM, so one client covers
//! hosted APIs and self-hosted GPU servers. The [`Embedder`] trait is
//! synchronous (indexing runs on rayon / `spawn_blocking`), so the embedder owns
//! a one-thread tokio runtime and hands each request to it; this works from any
//! thread, inside or outside another runtime. Transient failures (429, 408, 5xx,
//! connection errors, timeouts) are retried with jittered exponential backoff;
//! anything else fails at once with the URL and the server's message.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};

use super::{EmbedError, Embedder, l2_normalize};

/// How to reach and call an embeddings service.
#[derive(Debug, Clone)]
pub struct HttpEmbedderOptions {
    /// Base URL (`http://tei:8080`), or the full `.../v1/embeddings` URL.
    pub url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Expected dimension; `None` takes it from the first response.
    pub dimension: Option<usize>,
    /// Per-request timeout (connect + response).
    pub timeout: Duration,
    /// Retries after the first attempt for transient failures.
    pub max_retries: usize,
    /// First backoff delay; doubles per retry up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Texts per request.
    pub max_batch: usize,
}

impl Default for HttpEmbedderOptions {
    fn default() -> Self {
        Self {
            url: String::new(),
            model: String::new(),
            api_key: None,
            dimension: None,
            timeout: Duration::from_secs(60),
            max_retries: 4,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_batch: 32,
        }
    }
}

/// A client for `POST {url}/v1/embeddings`.
pub struct HttpEmbedder {
    endpoint: String,
    id: String,
    opts: HttpEmbedderOptions,
    dimension: OnceLock<usize>,
    /// The longest text (bytes) the server has taken since it refused a
    /// longer one: later texts are cut to it before sending.
    max_text: AtomicUsize,
    client: reqwest::Client,
    runtime: OwnedRuntime,
}

/// Shortest a refused text is cut to before giving up on it.
const MIN_SHORTENED: usize = 256;

/// Whether the server refused an input for its length: TEI answers 413
/// ("must have less than 512 tokens"), OpenAI-style servers 400 naming the
/// context length.
fn refused_as_too_long(e: &EmbedError) -> bool {
    match e {
        EmbedError::Http { status: 413, .. } => true,
        EmbedError::Http {
            status: 400 | 422,
            body,
            ..
        } => {
            // Phrases about length, not any mention of a token ("invalid token").
            let body = body.to_ascii_lowercase();
            [
                "context length",
                "too long",
                "too many tokens",
                "must have less than",
                "maximum input length",
            ]
            .iter()
            .any(|w| body.contains(w))
        }
        _ => false,
    }
}

#[derive(Serialize)]
struct EmbeddingRequest<'a> {
    model: &'a str,
    input: &'a [&'a str],
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl HttpEmbedder {
    /// Validates the options and builds the client; makes no request.
    pub fn new(opts: HttpEmbedderOptions) -> Result<Self, EmbedError> {
        let endpoint = endpoint_url(&opts.url)?;
        if opts.model.trim().is_empty() {
            return Err(EmbedError::InvalidConfig("the embedding model name is empty".into()));
        }
        if opts.max_batch == 0 {
            return Err(EmbedError::InvalidConfig("max_batch must be at least 1".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(EmbedError::HttpClient)?;
        let runtime = OwnedRuntime::new()?;
        let dimension = OnceLock::new();
        if let Some(d) = opts.dimension {
            if d == 0 {
                return Err(EmbedError::InvalidConfig("dimension must be positive".into()));
            }
            let _ = dimension.set(d);
        }
        Ok(Self {
            id: format!("openai:{}", opts.model),
            endpoint,
            opts,
            dimension,
            max_text: AtomicUsize::new(usize::MAX),
            client,
            runtime,
        })
    }

    /// Embeds one short text to learn the dimension when it was not configured.
    pub fn probe_dimension(&self) -> Result<usize, EmbedError> {
        if let Some(&d) = self.dimension.get() {
            return Ok(d);
        }
        self.embed(&["dimension probe"])?;
        self.dimension
            .get()
            .copied()
            .ok_or_else(|| EmbedError::InvalidResponse {
                url: self.endpoint.clone(),
                reason: "no embedding returned".into(),
            })
    }

    /// One request with retries; returns vectors in input order, normalised and dimension-checked.
    fn request(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = serde_json::to_vec(&EmbeddingRequest {
            model: &self.opts.model,
            input: texts,
        })
        .map_err(EmbedError::Encode)?;
        let client = self.client.clone();
        let url = self.endpoint.clone();
        let api_key = self.opts.api_key.clone();
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.opts.min_backoff)
            .with_max_delay(self.opts.max_backoff)
            .with_max_times(self.opts.max_retries)
            .with_jitter();
        let attempt = move || {
            let (client, url, api_key, body) = (client.clone(), url.clone(), api_key.clone(), body.clone());
            async move { send_once(&client, &url, api_key.as_deref(), body).await }
        };
        let fut = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(EmbedError::is_transient)
            .notify(|err, dur| tracing::warn!(error = %err, retry_in = ?dur, "embedding request failed; retrying"));
        let raw = self.runtime.run(fut)??;
        self.decode(texts.len(), &raw)
    }

    fn decode(&self, expected: usize, raw: &[u8]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let invalid = |reason: String| EmbedError::InvalidResponse {
            url: self.endpoint.clone(),
            reason,
        };
        let resp: EmbeddingResponse = serde_json::from_slice(raw).map_err(|source| EmbedError::Decode {
            url: self.endpoint.clone(),
            source,
        })?;
        if resp.data.len() != expected {
            return Err(invalid(format!("{} embeddings for {expected} inputs", resp.data.len())));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
        for (pos, item) in resp.data.into_iter().enumerate() {
            let index = item.index.unwrap_or(pos);
            let slot = out
                .get_mut(index)
                .ok_or_else(|| invalid(format!("index {index} out of range")))?;
            if slot.is_some() {
                return Err(invalid(format!("index {index} appears twice")));
            }
            let got = item.embedding.len();
            if got == 0 {
                return Err(invalid(format!("empty embedding at index {index}")));
            }
            let expected_dim = *self.dimension.get_or_init(|| got);
            if got != expected_dim {
                return Err(EmbedError::DimensionMismatch {
                    expected: expected_dim,
                    got,
                });
            }
            let mut v = item.embedding;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(invalid(format!("non-finite value in embedding {index}")));
            }
            l2_normalize(&mut v);
            *slot = Some(v);
        }
        Ok(out
            .into_iter()
            .map(|v| v.expect("every slot filled: counts match and indices are unique"))
            .collect())
    }
}

async fn send_once(
    client: &reqwest::Client,
    url: &str,
    api_key: Option<&str>,
    body: Vec<u8>,
) -> Result<Vec<u8>, EmbedError> {
    let mut req = client.post(url).header("content-type", "application/json").body(body);
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let transport = |source| EmbedError::Transport {
        url: url.to_string(),
        source,
    };
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(transport)?;
    if !status.is_success() {
        let mut body = String::from_utf8_lossy(&bytes).into_owned();
        body.truncate(body.floor_char_boundary(512));
        return Err(EmbedError::Http {
            url: url.to_string(),
            status: status.as_u16(),
            body,
        });
    }
    Ok(bytes.to_vec())
}

/// `http://h:1` → `http://h:1/v1/embeddings`; `.../v1` → `.../v1/embeddings`; a full URL is kept.
fn endpoint_url(base: &str) -> Result<String, EmbedError> {
    let trimmed = base.trim().trim_end_matches('/');
    let parsed = url::Url::parse(trimmed).map_err(|source| EmbedError::InvalidUrl {
        url: base.to_string(),
        source,
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(EmbedError::InvalidConfig(format!(
            "embedding URL {base:?} must be http or https"
        )));
    }
    Ok(if trimmed.ends_with("/embeddings") {
        trimmed.to_string()
    } else if trimmed.ends_with("/v1") {
        format!("{trimmed}/embeddings")
    } else {
        format!("{trimmed}/v1/embeddings")
    })
}

impl Embedder for HttpEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    /// The configured or discovered dimension; 0 until the first response when
    /// neither (`load_embedder` probes, so embedders it returns always know it).
    fn dimension(&self) -> usize {
        self.dimension.get().copied().unwrap_or(0)
    }

    fn max_batch(&self) -> usize {
        self.opts.max_batch
    }

    /// The endpoint without credentials, in the URL's normal form: another
    /// server is another source even when it serves a model of the same name.
    fn provenance(&self) -> String {
        match url::Url::parse(&self.endpoint) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            Err(_) => self.endpoint.clone(),
        }
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let max = self.max_text.load(Ordering::Relaxed);
        let texts: Vec<&str> = texts.iter().map(|t| cut(t, max)).collect();
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.opts.max_batch) {
            out.extend(self.embed_batch(batch)?);
        }
        Ok(out)
    }
}

impl HttpEmbedder {
    /// One batch; a batch the server refuses as too long is split until the
    /// texts it refuses are alone, and those are shortened (the start of a
    /// chunk carries its name and signature), so one long chunk neither
    /// fails a build nor leaves its neighbours without vectors.
    fn embed_batch(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self.request(batch) {
            Err(e) if refused_as_too_long(&e) && batch.len() > 1 => {
                let (a, b) = batch.split_at(batch.len() / 2);
                let mut out = self.embed_batch(a)?;
                out.extend(self.embed_batch(b)?);
                Ok(out)
            }
            Err(e) if refused_as_too_long(&e) => self.embed_shortened(batch[0], e),
            other => other,
        }
    }

    fn embed_shortened(&self, text: &str, mut refused: EmbedError) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut text = text;
        while text.len() > MIN_SHORTENED {
            text = cut(text, text.len() / 2);
            match self.request(&[text]) {
                Err(e) if refused_as_too_long(&e) => refused = e,
                Ok(v) => {
                    if self.max_text.fetch_min(text.len(), Ordering::Relaxed) > text.len() {
                        tracing::info!(url = %self.endpoint, bytes = text.len(), "the embedding server refuses longer texts; cutting them to this");
                    }
                    return Ok(v);
                }
                Err(e) => return Err(e),
            }
        }
        Err(refused)
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    &text[..text.floor_char_boundary(max)]
}

/// A one-worker tokio runtime owned by the embedder. Futures are spawned onto it
/// and awaited through a std channel, so callers may be plain threads, rayon
/// workers or `spawn_blocking` tasks; it shuts down in the background on drop
/// so dropping it inside an async context does not panic.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    fn new() -> Result<Self, EmbedError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("http-embedder")
            .enable_all()
            .build()
            .map_err(|source| EmbedError::Runtime {
                what: "HTTP runtime",
                source,
            })?;
        Ok(Self(Some(rt)))
    }

    fn run<F>(&self, fut: F) -> Result<F::Output, EmbedError>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.0.as_ref().expect("runtime lives until drop");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| EmbedError::TaskLost("embedding request"))
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What the fake server does on the n-th request (0-based).
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Answers with `dim`-d vectors, data listed in reverse order.
        Reversed { dim: usize },
        /// 500 for the first `failures` requests, then answers.
        FailThenOk { failures: usize, dim: usize },
        /// Always 400 with a message.
        BadRequest,
        /// Returns vectors whose length grows with the input position.
        RaggedDims,
        /// 413 as TEI does when any input is longer than `max` bytes.
        TooLong { max: usize },
    }

    struct Fake {
        behaviour: Behaviour,
        calls: AtomicUsize,
    }

    /// Vector for `text`: deterministic, non-normalised, with the text length in component 0.
    fn vector_for(text: &str, dim: usize) -> Vec<f32> {
        (0..dim)
            .map(|i| {
                if i == 0 {
                    text.len() as f32
                } else {
                    (i as f32) * 0.5 + 1.0
                }
            })
            .collect()
    }

    async fn handler(State(fake): State<Arc<Fake>>, Json(req): Json<serde_json::Value>) -> Response {
        let n = fake.calls.fetch_add(1, Ordering::SeqCst);
        let inputs: Vec<String> = req["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(req["model"], "test-model");
        let dim = match fake.behaviour {
            Behaviour::BadRequest => {
                return (StatusCode::BAD_REQUEST, "model test-model is not served here").into_response();
            }
            Behaviour::TooLong { max } if inputs.iter().any(|t| t.len() > max) => {
                let msg = r#"{"error":"Input validation error: `inputs` must have less than 512 tokens","error_type":"Validation"}"#;
                return (StatusCode::PAYLOAD_TOO_LARGE, msg).into_response();
            }
            Behaviour::TooLong { .. } => 4,
            Behaviour::FailThenOk { failures, .. } if n < failures => {
                return (StatusCode::INTERNAL_SERVER_ERROR, "warming up").into_response();
            }
            Behaviour::FailThenOk { dim, .. } | Behaviour::Reversed { dim } => dim,
            Behaviour::RaggedDims => 0,
        };
        let mut data: Vec<serde_json::Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let d = if dim == 0 { 4 + i } else { dim };
                serde_json::json!({"object": "embedding", "index": i, "embedding": vector_for(t, d)})
            })
            .collect();
        data.reverse();
        Json(serde_json::json!({"object": "list", "data": data, "model": "test-model"})).into_response()
    }

    /// Starts the fake server on a private runtime thread; returns its base URL and call counter.
    fn serve(behaviour: Behaviour) -> (String, Arc<Fake>) {
        let fake = Arc::new(Fake {
            behaviour,
            calls: AtomicUsize::new(0),
        });
        let state = fake.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new()
                    .route("/v1/embeddings", post(handler))
                    .with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        (format!("http://{addr}"), fake)
    }

    fn embedder(url: &str, dimension: Option<usize>) -> HttpEmbedder {
        HttpEmbedder::new(HttpEmbedderOptions {
            url: url.to_string(),
            model: "test-model".into(),
            api_key: Some("secret".into()),
            dimension,
            timeout: Duration::from_secs(5),
            max_retries: 3,
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_batch: 3,
        })
        .unwrap()
    }

    #[test]
    fn happy_path_orders_by_index_and_normalises() {
        let (url, fake) = serve(Behaviour::Reversed { dim: 8 });
        let e = embedder(&url, None);
        assert_eq!(e.dimension(), 0);
        assert_eq!(e.id(), "openai:test-model");
        let texts = ["a", "bbbb", "cc", "ddddddddd", "e"];
        let out = e.embed(&texts).unwrap();
        assert_eq!(out.len(), texts.len());
        assert_eq!(e.dimension(), 8);
        // max_batch 3 → two requests.
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
        for (t, v) in texts.iter().zip(&out) {
            let mut expected = vector_for(t, 8);
            l2_normalize(&mut expected);
            assert!(v.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6), "{t}: {v:?}");
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
        assert!(e.embed(&[]).unwrap().is_empty());
    }

    #[test]
    fn load_embedder_probes_dimension() {
        let (url, _fake) = serve(Behaviour::Reversed { dim: 6 });
        let cfg = super::super::EmbedderConfig::Http {
            url: format!("{url}/"),
            model: "test-model".into(),
            api_key: None,
            dimension: None,
        };
        let e = super::super::load_embedder(&cfg).unwrap().unwrap();
        assert_eq!(e.dimension(), 6);
    }

    #[test]
    fn retries_server_errors_then_succeeds() {
        let (url, fake) = serve(Behaviour::FailThenOk { failures: 2, dim: 4 });
        let e = embedder(&url, Some(4));
        let out = e.embed(&["x", "yy"]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn gives_up_after_max_retries() {
        let (url, fake) = serve(Behaviour::FailThenOk { failures: 100, dim: 4 });
        let e = embedder(&url, Some(4));
        let err = e.embed(&["x"]).unwrap_err();
        assert!(matches!(err, EmbedError::Http { status: 500, .. }), "{err}");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn client_error_is_not_retried_and_names_the_url() {
        let (url, fake) = serve(Behaviour::BadRequest);
        let e = embedder(&url, None);
        let err = e.embed(&["x"]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EmbedError::Http { status: 400, .. }), "{msg}");
        assert!(msg.contains(&format!("{url}/v1/embeddings")), "{msg}");
        assert!(msg.contains("not served here"), "{msg}");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    /// A server that refuses long inputs (TEI without --auto-truncate): the
    /// batch is split, the long text shortened until taken, and later long
    /// texts are cut to what was taken before they are sent.
    #[test]
    fn texts_refused_as_too_long_are_shortened_not_fatal() {
        let (url, fake) = serve(Behaviour::TooLong { max: 1000 });
        let e = embedder(&url, Some(4));
        let long = "x".repeat(3000);
        let out = e.embed(&["a", &long, "b"]).unwrap();
        assert_eq!(out.len(), 3);
        // The batch, its halves ["a"] and [long, "b"], that one's halves, then
        // the long text at 1500 and at 750 bytes.
        assert_eq!(fake.calls.load(Ordering::SeqCst), 7);
        let before = fake.calls.load(Ordering::SeqCst);
        assert_eq!(e.embed(&[&long, "c"]).unwrap().len(), 2);
        assert_eq!(fake.calls.load(Ordering::SeqCst), before + 1, "cut before sending");
    }

    #[test]
    fn dimension_mismatch_is_an_error() {
        let (url, _fake) = serve(Behaviour::Reversed { dim: 8 });
        let e = embedder(&url, Some(16));
        let err = e.embed(&["x"]).unwrap_err();
        assert!(
            matches!(err, EmbedError::DimensionMismatch { expected: 16, got: 8 }),
            "{err}"
        );

        let (url, _fake) = serve(Behaviour::RaggedDims);
        let e = embedder(&url, None);
        let err = e.embed(&["x", "y"]).unwrap_err();
        assert!(matches!(err, EmbedError::DimensionMismatch { .. }), "{err}");
    }

    #[test]
    fn unreachable_server_is_a_transport_error_with_the_url() {
        // Bind then drop a listener to get a local port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut opts = HttpEmbedderOptions {
            url: format!("http://127.0.0.1:{port}"),
            model: "m".into(),
            ..Default::default()
        };
        opts.max_retries = 1;
        opts.min_backoff = Duration::from_millis(1);
        let e = HttpEmbedder::new(opts).unwrap();
        let err = e.embed(&["x"]).unwrap_err();
        assert!(matches!(err, EmbedError::Transport { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}/v1/embeddings")),
            "{err}"
        );
        // The message names the actual cause, and the typed source is kept.
        let source = std::error::Error::source(&err).expect("the reqwest error is the source");
        assert!(
            source
                .downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_connect)
        );
        assert!(err.to_string().to_lowercase().contains("connect"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usable_from_inside_a_runtime() {
        let (url, _fake) = serve(Behaviour::Reversed { dim: 4 });
        let e = Arc::new(embedder(&url, None));
        let e2 = e.clone();
        let out = tokio::task::spawn_blocking(move || e2.embed(&["a"]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), 1);
        drop(e); // dropping the owned runtime inside an async context must not panic
    }

    #[test]
    fn provenance_is_the_endpoint_in_normal_form_without_credentials() {
        let of = |url: &str| {
            HttpEmbedder::new(HttpEmbedderOptions {
                url: url.into(),
                model: "m".into(),
                ..HttpEmbedderOptions::default()
            })
            .unwrap()
            .provenance()
        };
        assert_eq!(of("HTTP://User:Secret@TEI:80/"), "http://tei/v1/embeddings");
        assert_eq!(of("http://tei"), of("http://tei:80/v1"));
        assert_ne!(of("http://tei"), of("http://tei-large"));
    }

    #[test]
    fn endpoint_urls() {
        assert_eq!(endpoint_url("http://h:8080").unwrap(), "http://h:8080/v1/embeddings");
        assert_eq!(endpoint_url("http://h:8080/").unwrap(), "http://h:8080/v1/embeddings");
        assert_eq!(endpoint_url("https://api.x/v1").unwrap(), "https://api.x/v1/embeddings");
        assert_eq!(
            endpoint_url("http://h/v1/embeddings").unwrap(),
            "http://h/v1/embeddings"
        );
        assert!(endpoint_url("ftp://h").is_err());
        assert!(endpoint_url("not a url").is_err());
    }
}
