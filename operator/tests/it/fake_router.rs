//! A stand-in for the trusty-search router's admin and status API, on
//! 127.0.0.1:0. It records every call and answers status from per-index owner
//! lists the test controls. A real router+shards cluster can replace it: the
//! operator only sees the base URL.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use trusty_search::api::types::{IndexCounts, IndexStatus, ResidencyState, ShardIndexStatus};

pub use crate::support::process::ADMIN_TOKEN as TOKEN;

/// The version every owner serves unless a test says otherwise.
pub const VERSION: &str = "v20250101-abc";

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Option<Value>,
    pub authorized: bool,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    registered: BTreeMap<String, i64>,
    /// Owner states per index; defaults to every owner hot.
    owners: BTreeMap<String, Vec<(ResidencyState, Option<String>)>>,
    /// Version each owner serves, per index; defaults to [`VERSION`].
    versions: BTreeMap<String, Vec<String>>,
    /// Like the real router's replication factor: every index gets this
    /// many owners whatever `replicas` it was registered with. `None`: as
    /// many owners as registered replicas.
    replication: Option<i64>,
}

#[derive(Clone, Default)]
pub struct FakeRouter {
    inner: Arc<Mutex<Inner>>,
    pub addr: Option<SocketAddr>,
}

impl FakeRouter {
    pub async fn start() -> FakeRouter {
        Self::start_inner(None).await
    }

    /// Places every index on `r` owners, as a router started with `--replicas r`.
    pub async fn start_with_replication(r: i64) -> FakeRouter {
        Self::start_inner(Some(r)).await
    }

    async fn start_inner(replication: Option<i64>) -> FakeRouter {
        let mut router = FakeRouter::default();
        router.inner.lock().unwrap().replication = replication;
        let app = Router::new()
            .route("/v1/admin/indexes/{id}", post(register).delete(unregister))
            .route("/v1/admin/indexes/{id}/{action}", post(action))
            .route("/v1/indexes/{id}", get(status))
            .with_state(router.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        router.addr = Some(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        router
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr.expect("started"))
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// `METHOD path` of every call, in order.
    pub fn call_lines(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| format!("{} {}", c.method, c.path))
            .collect()
    }

    pub fn is_registered(&self, id: &str) -> bool {
        self.inner.lock().unwrap().registered.contains_key(id)
    }

    /// Sets what `GET /v1/indexes/{id}` reports per owner.
    pub fn set_owners(&self, id: &str, owners: Vec<(ResidencyState, Option<&str>)>) {
        self.inner.lock().unwrap().owners.insert(
            id.into(),
            owners.into_iter().map(|(s, e)| (s, e.map(String::from))).collect(),
        );
    }

    /// Sets the version each owner of `id` reports, in owner order.
    pub fn set_owner_versions(&self, id: &str, versions: &[&str]) {
        self.inner
            .lock()
            .unwrap()
            .versions
            .insert(id.into(), versions.iter().map(|v| v.to_string()).collect());
    }

    fn record(&self, method: Method, path: String, headers: &HeaderMap, body: &Bytes) {
        let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
        let body = if body.is_empty() {
            None
        } else {
            serde_json::from_slice(body).ok()
        };
        self.inner.lock().unwrap().calls.push(Call {
            method: method.to_string(),
            path,
            body,
            authorized,
        });
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "unauthorized", "retryable": false})),
    )
        .into_response()
}

fn authorized(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn register(State(r): State<FakeRouter>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    r.record(Method::POST, format!("/v1/admin/indexes/{id}"), &headers, &body);
    if !authorized(&headers) {
        return unauthorized();
    }
    let replicas = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["replicas"].as_i64())
        .unwrap_or(1);
    let mut inner = r.inner.lock().unwrap();
    match inner.registered.insert(id.clone(), replicas) {
        None => (StatusCode::CREATED, Json(json!({"index_id": id}))).into_response(),
        Some(_) => (
            StatusCode::CONFLICT,
            Json(json!({"error": "already_registered", "index_id": id, "retryable": false})),
        )
            .into_response(),
    }
}

async fn unregister(State(r): State<FakeRouter>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    r.record(Method::DELETE, format!("/v1/admin/indexes/{id}"), &headers, &body);
    if !authorized(&headers) {
        return unauthorized();
    }
    match r.inner.lock().unwrap().registered.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "index_not_found", "index_id": id, "retryable": false})),
        )
            .into_response(),
    }
}

async fn action(
    State(r): State<FakeRouter>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    r.record(
        Method::POST,
        format!("/v1/admin/indexes/{id}/{action}"),
        &headers,
        &body,
    );
    if !authorized(&headers) {
        return unauthorized();
    }
    if !r.is_registered(&id) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "index_not_found", "index_id": id, "retryable": false})),
        )
            .into_response();
    }
    StatusCode::OK.into_response()
}

async fn status(State(r): State<FakeRouter>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    r.record(Method::GET, format!("/v1/indexes/{id}"), &headers, &Bytes::new());
    let inner = r.inner.lock().unwrap();
    let Some(replicas) = inner.registered.get(&id).copied() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "index_not_found", "index_id": id, "retryable": false})),
        )
            .into_response();
    };
    let states = inner.owners.get(&id).cloned().unwrap_or_else(|| {
        let owners = inner.replication.unwrap_or(replicas);
        (0..owners).map(|_| (ResidencyState::Hot, None)).collect()
    });
    let counts = IndexCounts {
        files: 12,
        chunks: 345,
        ..Default::default()
    };
    let version_of = |i: usize| {
        let set = inner.versions.get(&id).and_then(|v| v.get(i));
        set.map_or(VERSION, String::as_str).to_string()
    };
    let owners: Vec<ShardIndexStatus> = states
        .into_iter()
        .enumerate()
        .map(|(i, (state, err))| ShardIndexStatus {
            index_id: id.clone(),
            shard: format!("trusty-shard-{i}"),
            state,
            version: Some(version_of(i)),
            counts: Some(counts.clone()),
            bytes: Some(1024),
            last_error: err,
            failed_attempts: None,
            last_loaded_at: Some("2025-01-01T00:00:00Z".into()),
            next_retry_at: None,
        })
        .collect();
    // As the real router: the newest version a hot owner serves.
    let served = owners
        .iter()
        .filter(|o| o.state == ResidencyState::Hot)
        .filter_map(|o| o.version.clone())
        .max();
    Json(IndexStatus {
        index_id: id,
        version: served.or_else(|| Some(VERSION.into())),
        counts: Some(counts),
        owners,
    })
    .into_response()
}
