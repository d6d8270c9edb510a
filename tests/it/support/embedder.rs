//! An OpenAI-compatible embeddings server on 127.0.0.1 whose availability the
//! test controls: up, hanging (accepts and never answers), erroring, or
//! serving another model under the same name. Its vectors are hashed bags of
//! words, so similar texts get similar vectors.

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

pub const DIMENSION: usize = 64;
pub const MODEL: &str = "stub-bow";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Up = 0,
    Hang = 1,
    Error = 2,
    /// Another model's vectors (other hashing) under the same model name.
    Other = 3,
}

pub struct EmbedStub {
    pub url: String,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl EmbedStub {
    pub async fn start() -> EmbedStub {
        let mode = Arc::new(AtomicU8::new(Mode::Up as u8));
        let app = axum::Router::new()
            .route("/v1/embeddings", post(embed))
            .with_state(mode.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EmbedStub { url, mode, task }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }
}

impl Drop for EmbedStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A unit vector: each lower-cased word adds 1 to a dimension its hash
/// (seeded: one seed, one model) picks.
fn hashed_words(text: &str, seed: u64) -> Vec<f32> {
    let mut v = vec![0f32; DIMENSION];
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let h = w
            .to_lowercase()
            .bytes()
            .fold(seed, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        v[(h % DIMENSION as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

async fn embed(State(mode): State<Arc<AtomicU8>>, Json(body): Json<Value>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match mode.load(Ordering::Relaxed) {
        1 => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            unreachable!("the client gives up first")
        }
        2 => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "embedder down").into_response(),
        m => {
            let seed = if m == Mode::Other as u8 {
                0x84222325cbf29ce4
            } else {
                0xcbf29ce484222325
            };
            let inputs: Vec<String> = match &body["input"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect(),
                _ => Vec::new(),
            };
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"index": i, "embedding": hashed_words(t, seed)}))
                .collect();
            Json(json!({"data": data, "model": MODEL})).into_response()
        }
    }
}
