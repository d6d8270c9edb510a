//! The shard's HTTP API: the same routes and bodies as the router, served
//! from this shard's own indexes. Every route that touches an index goes
//! through the resolver; searches are computed on blocking threads, a
//! bounded number at a time, so ranking never stalls the async workers that
//! answer probes and accept connections.

use super::admission::Priority;
use super::lazy_load::{ResolveError, Resolver, Wait};
use super::loaded::LoadedIndex;
use super::residency::{Slot, SlotState};
use crate::IndexId;
use crate::api::{
    ApiError, FileContent, FileOutline, IndexList, IndexStatus, MultiSearchRequest, MultiSearchResponse, SearchRequest,
    SearchResponse, SymbolResponse,
};
use crate::search::engine::{ReadError, SearchError};
use crate::search::query::ParsedQuery;
use crate::server::auth::require_admin;
use crate::server::fanout::MultiSearch;
use crate::server::index_api::IndexApi;
use crate::server::params::{
    FileParams, Patience, SymbolParams, caller_deadline, parse_file_path, parse_id, parse_symbol_name,
};
use crate::server::serve::request_deadline;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub type AppState = Arc<Resolver>;

pub fn routes(state: AppState) -> Router {
    IndexApi {
        list: get(list),
        status: get(status),
        search: post(search),
        symbols: get(symbols),
        read_file: get(read_file),
        outline: get(outline),
        search_many: post(search_many),
        register: post(register),
        unregister: delete(unregister),
        reset: post(reset),
        reload: post(reload),
        evict: post(evict),
    }
    .into_router()
    .with_state(state)
}

/// Checks a search request as far as it can be without its index: size,
/// `top_k`, mode, and its filters (an unknown language, a bad glob), so a
/// bad query is refused before a cold index is restored for it, and a
/// fan-out refuses it once instead of failing on every index.
fn check_search(req: &SearchRequest) -> Result<(), ApiError> {
    req.validate().map_err(ApiError::bad_request)?;
    ParsedQuery::parse(&req.query, req.filters.as_ref()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(())
}

pub fn search_error(id: &IndexId, e: SearchError) -> ApiError {
    match e {
        SearchError::Query(_) | SearchError::Invalid(_) => ApiError::bad_request(e.to_string()).with_index(id.as_str()),
        SearchError::EmbedderUnavailable(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "embedder_unavailable", e.to_string())
                .with_index(id.as_str())
                .retryable(true)
                .retry_after(2)
        }
        // The shard's embedder is not the index's model: no wait or retry
        // helps, a rebuild or the shard's configuration does.
        SearchError::EmbedderMismatch(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "embedder_mismatch", e.to_string())
                .with_index(id.as_str())
                .retryable(false)
        }
        // This copy's data could not be read: the index's trouble, not the
        // shard's, so the router tries another owner without a strike.
        SearchError::Bm25(_) | SearchError::Vector(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "index_data_error", e.to_string()).with_index(id.as_str())
        }
    }
}

/// How long before the request's deadline a wait for a search permit gives
/// up, so that its `overloaded` answer goes out before the deadline's own.
const QUEUE_MARGIN: Duration = Duration::from_millis(20);

/// Runs `work` on a blocking thread once a search permit is free. The permit
/// and the index handle travel with the work, so a request that times out
/// never leaves more of it running than there are permits. A request whose
/// deadline comes while it waits for a permit answers `overloaded`: it did
/// no work, so its router may try another owner.
async fn on_search_pool<T: Send + 'static>(
    r: &Resolver,
    id: &IndexId,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let acquire = r.search_permits.clone().acquire_owned();
    let permit = match request_deadline() {
        Some(deadline) => tokio::time::timeout_at(deadline - QUEUE_MARGIN, acquire)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "no search slot came free before the deadline",
                )
                .retry_after(1)
            })?,
        None => acquire.await,
    }
    .map_err(|_| ApiError::internal("search pool closed"))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        super::cpu_priority::lower_this_thread();
        work()
    })
    .await
    .map_err(|e| {
        // One query's failure (a panic) says nothing about the shard's health.
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "search_failed",
            format!("search task failed: {e}"),
        )
        .with_index(id.as_str())
    })
}

async fn run_search(
    r: &Resolver,
    id: &IndexId,
    loaded: Arc<LoadedIndex>,
    req: SearchRequest,
) -> Result<SearchResponse, ApiError> {
    let handle = tokio::runtime::Handle::current();
    on_search_pool(r, id, move || handle.block_on(loaded.engine().search(&req)))
        .await?
        .map_err(|e| search_error(id, e))
}

/// Resolves `id` as patiently as the router's headers ask, ending a wait for
/// a restore a little before the caller's deadline, or the shard's own if
/// that comes first, so that the answer is `index_loading` (with when to come
/// back), not the request timeout: the router passes that one on as work
/// spent, while nothing was done yet. A storage lookup still unanswered by
/// then is `store_unavailable`, which the router also takes to another owner.
async fn resolve_for(r: &AppState, id: &IndexId, headers: &HeaderMap) -> Result<Arc<LoadedIndex>, ApiError> {
    let caller = caller_deadline(headers)
        .map(|d| tokio::time::Instant::now() + d.saturating_sub((d / 10).min(Duration::from_millis(200))));
    let own = request_deadline().map(|d| d - QUEUE_MARGIN);
    let until = [caller, own.map(|d| d - QUEUE_MARGIN)].into_iter().flatten().min();
    let resolve = r.resolve_until(id, wait_for(Patience::from_headers(headers)), until);
    let resolved = match own {
        Some(own) => tokio::time::timeout_at(own, resolve).await.unwrap_or_else(|_| {
            Err(ResolveError::StoreUnavailable {
                id: id.clone(),
                message: "storage did not answer before the deadline".into(),
            })
        }),
        None => resolve.await,
    };
    Ok(resolved?)
}

fn wait_for(patience: Patience) -> Wait {
    match patience {
        Patience::Wait => Wait::Load,
        Patience::NoWait => Wait::NoWait(Priority::Demand),
        Patience::FanOut => Wait::NoWait(Priority::Background),
    }
}

async fn search(
    State(r): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let id = parse_id(&id)?;
    let Json(req) = body?;
    check_search(&req).map_err(|e| e.with_index(id.as_str()))?;
    let loaded = resolve_for(&r, &id, &headers).await?;
    Ok(Json(run_search(&r, &id, loaded, req).await?))
}

/// Searches this shard's own hot indexes; cold ones are warmed in the
/// background (free budget only) and reported as skipped.
async fn search_many(
    State(r): State<AppState>,
    body: Result<Json<MultiSearchRequest>, JsonRejection>,
) -> Result<Json<MultiSearchResponse>, ApiError> {
    let Json(req) = body?;
    let plan = MultiSearch::parse(req, r.cfg.max_fanout_indexes, r.cfg.request_timeout)?;
    check_search(&plan.request)?;
    let ids = plan.ids(|| r.registry.all().iter().map(|s| s.id.to_string()).collect())?;
    let resp = plan
        .run(ids, r.cfg.search_parallelism(), |id| {
            let (r, single) = (r.clone(), plan.request.clone());
            async move {
                let id = parse_id(&id)?;
                let loaded = r.resolve(&id, Wait::NoWait(Priority::Background)).await?;
                run_search(&r, &id, loaded, single).await
            }
        })
        .await;
    Ok(Json(resp))
}

async fn symbols(
    State(r): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    params: Result<Query<SymbolParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SymbolResponse>, ApiError> {
    let id = parse_id(&id)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (rel, depth, limit) = params.parse()?;
    parse_symbol_name(&name)?;
    let loaded = resolve_for(&r, &id, &headers).await?;
    let resp = on_search_pool(&r, &id, move || loaded.engine().symbols(&name, rel, depth, limit)).await?;
    Ok(Json(resp))
}

/// `GET /v1/indexes/{id}/files/{path}?lines=a-b`: code as the version indexed it.
async fn read_file(
    State(r): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    headers: HeaderMap,
    params: Result<Query<FileParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FileContent>, ApiError> {
    let id = parse_id(&id)?;
    let path = parse_file_path(&path)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let lines = params.lines()?;
    let loaded = resolve_for(&r, &id, &headers).await?;
    let result = on_search_pool(&r, &id, move || loaded.engine().read_file(&path, lines)).await?;
    result.map(Json).map_err(|e| read_error(&id, e))
}

/// `GET /v1/indexes/{id}/outline/{path}`: the symbols a file defines.
async fn outline(
    State(r): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<FileOutline>, ApiError> {
    let id = parse_id(&id)?;
    let path = parse_file_path(&path)?;
    let loaded = resolve_for(&r, &id, &headers).await?;
    let result = on_search_pool(&r, &id, move || loaded.engine().outline(&path)).await?;
    result.map(Json).map_err(|e| read_error(&id, e))
}

fn read_error(id: &IndexId, e: ReadError) -> ApiError {
    let (status, code) = match e {
        ReadError::NotFound { .. } => (StatusCode::NOT_FOUND, "file_not_found"),
        ReadError::NoSources => (StatusCode::NOT_FOUND, "file_contents_not_indexed"),
        ReadError::PastEnd { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
        // This copy's sources are unreadable: the index's trouble, not the
        // shard's, and another owner's copy may read fine.
        ReadError::Sources { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "index_data_error"),
    };
    ApiError::new(status, code, e.to_string()).with_index(id.as_str())
}

async fn list(State(r): State<AppState>) -> Json<IndexList> {
    let shard = r.cfg.shard_id.clone();
    Json(IndexList {
        indexes: r.registry.all().iter().map(|s| s.status(&shard)).collect(),
    })
}

fn status_of(r: &Resolver, id: &str, slot: &Slot) -> IndexStatus {
    let owner = slot.status(&r.cfg.shard_id);
    IndexStatus {
        index_id: id.to_string(),
        version: owner.version.clone(),
        counts: owner.counts.clone(),
        owners: vec![owner],
    }
}

async fn status(State(r): State<AppState>, Path(id): Path<String>) -> Result<Json<IndexStatus>, ApiError> {
    let id = parse_id(&id)?;
    // Through the resolver's lookup (storage is asked about unseen ids), without loading.
    let slot = r.slot(&id).await?;
    Ok(Json(status_of(&r, id.as_str(), &slot)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// Warm the index now (in the background, into free budget only) instead of on first use.
    #[serde(default)]
    pub preload: bool,
    /// Accepted for symmetry with the router and ignored: a shard holds one copy.
    #[serde(default, rename = "replicas")]
    _replicas: Option<u32>,
    /// Load now even if that evicts less recently used indexes: the router
    /// asks this of a shard that has just become an index's owner.
    #[serde(default)]
    pub handoff: bool,
}

async fn register(
    State(r): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<RegisterBody>>,
) -> Result<(StatusCode, Json<IndexStatus>), ApiError> {
    require_admin(&headers, r.cfg.admin_token.as_deref())?;
    let id = parse_id(&id)?;
    let body = body.map(|b| b.0).unwrap_or_default();
    r.registry.get_or_insert(&id); // drop any negative-cache entry first
    let slot = r.slot(&id).await?;
    let fresh = matches!(slot.lock().state, SlotState::Cold);
    if body.handoff {
        r.load_in_background(&slot, Priority::Demand);
    } else if body.preload {
        r.load_in_background(&slot, Priority::Background);
    }
    let status = status_of(&r, id.as_str(), &slot);
    Ok((if fresh { StatusCode::CREATED } else { StatusCode::OK }, Json(status)))
}

async fn unregister(
    State(r): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&headers, r.cfg.admin_token.as_deref())?;
    let id = parse_id(&id)?;
    if r.unregister(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(id.as_str()))
    }
}

async fn admin_slot(r: &AppState, headers: &HeaderMap, id: &str) -> Result<Arc<Slot>, ApiError> {
    require_admin(headers, r.cfg.admin_token.as_deref())?;
    let id = parse_id(id)?;
    Ok(r.slot(&id).await?)
}

async fn reset(
    State(r): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<IndexStatus>, ApiError> {
    let slot = admin_slot(&r, &headers, &id).await?;
    r.reset(&slot);
    r.load_in_background(&slot, Priority::Background);
    Ok(Json(status_of(&r, &id, &slot)))
}

async fn evict(State(r): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let slot = admin_slot(&r, &headers, &id).await?;
    r.evict(&slot);
    Ok(StatusCode::NO_CONTENT)
}

/// Picks up a new version without holding the request: a hot index checks
/// `CURRENT` and swaps in the background (queries keep the old version until
/// then), a cold one is simply loaded fresh next time. Answers 202 with the
/// status at the moment of asking; the index's status shows the outcome.
async fn reload(
    State(r): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IndexStatus>), ApiError> {
    let slot = admin_slot(&r, &headers, &id).await?;
    if slot.hot().is_some() {
        let (r2, s2) = (r.clone(), slot.clone());
        tokio::spawn(async move { super::discovery::refresh(&r2, &s2, true).await });
    } else {
        r.reset(&slot);
    }
    Ok((StatusCode::ACCEPTED, Json(status_of(&r, &id, &slot))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::serve::{Deadline, shed};
    use crate::shard::ShardConfig;
    use crate::storage::store::Store;
    use tower::ServiceExt;

    /// A request whose deadline comes while every search permit is taken did
    /// no work: it is shed (`overloaded`, which a router tries elsewhere), not
    /// timed out (`request_timeout`, which it passes on).
    #[tokio::test(start_paused = true)]
    async fn waiting_past_the_deadline_for_a_search_slot_is_shedding_not_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        let mut cfg = ShardConfig::local("file:///unused", dir.path().join("cache"), "s0");
        cfg.search_threads = 1;
        let r = Arc::new(Resolver::new(cfg, store, None));
        let _busy = r.search_permits.clone().acquire_owned().await.unwrap();
        let app = Router::new().route(
            "/work",
            get(move || async move {
                let id = IndexId::new("repo").unwrap();
                on_search_pool(&r, &id, || "done").await
            }),
        );
        let req = axum::http::Request::builder()
            .uri("/work")
            .body(axum::body::Body::empty())
            .unwrap();
        let body = unavailable(app, Deadline::Fixed(Duration::from_secs(5)), req).await;
        assert_eq!(body["error"], "overloaded", "{body}");
    }

    /// The 503 body `app` answers `req` with under [`shed`] and `deadline`.
    async fn unavailable(
        app: Router,
        deadline: Deadline,
        req: axum::http::Request<axum::body::Body>,
    ) -> serde_json::Value {
        let resp = shed(app, 4, deadline).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// The shard's own deadline comes before the router's while a request
    /// waits for a restore: the wait did no work, so it answers
    /// `index_loading` (the router waits or tries elsewhere), not
    /// `request_timeout` (which the router passes on as work spent).
    #[tokio::test(start_paused = true)]
    async fn a_restore_wait_cut_by_the_shards_own_deadline_answers_loading() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        let mut cfg = ShardConfig::local("file:///unused", dir.path().join("cache"), "s0");
        cfg.load_wait = Duration::from_secs(60);
        let r = Arc::new(Resolver::new(cfg, store, None));
        let id = IndexId::new("repo").unwrap();
        // A restore that is under way and will not finish within the request.
        r.registry.get_or_insert(&id).lock().state = SlotState::Loading {
            started: std::time::Instant::now(),
        };
        let app = Router::new().route(
            "/wait",
            get(move |headers: HeaderMap| async move { resolve_for(&r, &id, &headers).await.map(|_| "hot") }),
        );
        let req = axum::http::Request::builder()
            .uri("/wait")
            .header(crate::server::params::DEADLINE_HEADER, "30000")
            .body(axum::body::Body::empty())
            .unwrap();
        let body = unavailable(app, Deadline::CallerMayShorten(Duration::from_secs(2)), req).await;
        assert_eq!(body["error"], "index_loading", "{body}");
    }
}
