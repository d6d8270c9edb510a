//! The shard's HTTP API: the same routes and bodies as the router, served
//! from this shard's own indexes. Every route that touches an index goes
//! through the resolver.

use super::lazy_load::Resolver;
use super::residency::SlotState;
use crate::IndexId;
use crate::api::{
    ApiError, IndexList, IndexStatus, MultiSearchRequest, MultiSearchResponse, SearchRequest, SearchResponse,
    SymbolRelation, SymbolResponse,
};
use crate::search::engine::SearchError;
use crate::search::fanout::{DEFAULT_DEADLINE, MAX_DEADLINE, fan_out};
use crate::server::auth::require_admin;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub type AppState = Arc<Resolver>;

/// Request bodies are small JSON documents; anything larger is refused early.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/indexes", get(list))
        .route("/v1/indexes/{id}", get(status))
        .route("/v1/indexes/{id}/search", post(search))
        .route("/v1/indexes/{id}/symbols/{name}", get(symbols))
        .route("/v1/search", post(search_many))
        .route("/v1/admin/indexes/{id}", post(register).delete(unregister))
        .route("/v1/admin/indexes/{id}/reset", post(reset))
        .route("/v1/admin/indexes/{id}/evict", post(evict))
        .route("/v1/admin/indexes/{id}/reload", post(reload))
        .with_state(state)
}

pub fn parse_id(raw: &str) -> Result<IndexId, ApiError> {
    IndexId::new(raw)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_index_id", e.to_string()).retryable(false))
}

pub fn search_error(id: &IndexId, e: SearchError) -> ApiError {
    match e {
        SearchError::Query(_) | SearchError::Invalid(_) => ApiError::bad_request(e.to_string()).with_index(id.as_str()),
        SearchError::Arm { .. } => ApiError::internal(e.to_string()).with_index(id.as_str()),
    }
}

async fn search(
    State(r): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let id = parse_id(&id)?;
    let Json(req) = body?;
    req.validate()
        .map_err(|m| ApiError::bad_request(m).with_index(id.as_str()))?;
    let loaded = r.get_or_load_index(&id).await?;
    let resp = loaded.engine.search(&req).await.map_err(|e| search_error(&id, e))?;
    Ok(Json(resp))
}

async fn search_many(
    State(r): State<AppState>,
    body: Result<Json<MultiSearchRequest>, JsonRejection>,
) -> Result<Json<MultiSearchResponse>, ApiError> {
    let Json(req) = body?;
    let single = SearchRequest {
        query: req.query.clone(),
        mode: req.mode,
        top_k: req.top_k,
        filters: req.filters.clone(),
    };
    single.validate().map_err(ApiError::bad_request)?;
    let ids: Vec<String> = match &req.indexes {
        Some(ids) => {
            for id in ids {
                parse_id(id)?;
            }
            ids.clone()
        }
        None => r.registry.all().iter().map(|s| s.id.to_string()).collect(),
    };
    let deadline = req
        .deadline_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_DEADLINE)
        .min(MAX_DEADLINE);
    let resp = fan_out(ids, 8, deadline, single.top_k(), |id| {
        let (r, single) = (r.clone(), single.clone());
        async move {
            let id = parse_id(&id)?;
            let loaded = r.get_or_load_index(&id).await?;
            loaded.engine.search(&single).await.map_err(|e| search_error(&id, e))
        }
    })
    .await;
    Ok(Json(resp))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolParams {
    #[serde(default)]
    pub rel: Option<String>,
    #[serde(default)]
    pub depth: Option<u32>,
    #[serde(default)]
    pub limit: Option<usize>,
}

impl SymbolParams {
    pub fn parse(&self) -> Result<(SymbolRelation, u32, usize), ApiError> {
        let rel = match &self.rel {
            Some(r) => r.parse().map_err(ApiError::bad_request)?,
            None => SymbolRelation::Definition,
        };
        let depth = self.depth.unwrap_or(1);
        if !(1..=5).contains(&depth) {
            return Err(ApiError::bad_request("depth must be between 1 and 5"));
        }
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::bad_request("limit must be between 1 and 500"));
        }
        Ok((rel, depth, limit))
    }
}

async fn symbols(
    State(r): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    params: Result<Query<SymbolParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SymbolResponse>, ApiError> {
    let id = parse_id(&id)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (rel, depth, limit) = params.parse()?;
    if name.is_empty() || name.len() > 256 {
        return Err(ApiError::bad_request("symbol name must be 1 to 256 bytes"));
    }
    let loaded = r.get_or_load_index(&id).await?;
    Ok(Json(loaded.engine.symbols(&name, rel, depth, limit)))
}

async fn list(State(r): State<AppState>) -> Json<IndexList> {
    let shard = r.cfg.shard_id.clone();
    Json(IndexList {
        indexes: r.registry.all().iter().map(|s| s.status(&shard)).collect(),
    })
}

async fn status(State(r): State<AppState>, Path(id): Path<String>) -> Result<Json<IndexStatus>, ApiError> {
    let id = parse_id(&id)?;
    // Through the resolver's lookup (storage is asked about unseen ids), without loading.
    let slot = r.slot(&id).await?;
    let owner = slot.status(&r.cfg.shard_id);
    Ok(Json(IndexStatus {
        index_id: id.to_string(),
        version: owner.version.clone(),
        counts: owner.counts.clone(),
        owners: vec![owner],
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// Start loading now instead of on first use.
    #[serde(default)]
    pub preload: bool,
    /// Accepted for symmetry with the router; a shard holds one copy.
    #[serde(default)]
    pub replicas: Option<u32>,
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
    if body.preload {
        r.load_in_background(&slot);
    }
    let owner = slot.status(&r.cfg.shard_id);
    let status = IndexStatus {
        index_id: id.to_string(),
        version: owner.version.clone(),
        counts: owner.counts.clone(),
        owners: vec![owner],
    };
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

async fn admin_slot(r: &AppState, headers: &HeaderMap, id: &str) -> Result<Arc<super::residency::Slot>, ApiError> {
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
    r.load_in_background(&slot);
    let owner = slot.status(&r.cfg.shard_id);
    Ok(Json(IndexStatus {
        index_id: id,
        version: owner.version.clone(),
        counts: owner.counts.clone(),
        owners: vec![owner],
    }))
}

async fn evict(State(r): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let slot = admin_slot(&r, &headers, &id).await?;
    r.evict(&slot);
    Ok(StatusCode::NO_CONTENT)
}

async fn reload(
    State(r): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<IndexStatus>, ApiError> {
    let slot = admin_slot(&r, &headers, &id).await?;
    if slot.hot().is_some() {
        super::discovery::refresh(&r, &slot, true).await;
    } else {
        r.reset(&slot);
        r.load_in_background(&slot);
    }
    let owner = slot.status(&r.cfg.shard_id);
    Ok(Json(IndexStatus {
        index_id: id,
        version: owner.version.clone(),
        counts: owner.counts.clone(),
        owners: vec![owner],
    }))
}
