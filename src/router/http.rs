//! The router's public API: the same routes and bodies as a shard, answered
//! by forwarding to owners, aggregating status across them, and fanning out.

use super::forward::{ForwardPatience, RouterState, Upstream, no_shards};
use super::membership::ShardEndpoint;
use crate::api::{
    ApiError, IndexList, IndexStatus, MultiSearchRequest, MultiSearchResponse, ResidencyState, SearchRequest,
    ShardIndexStatus,
};
use crate::error_chain::one_line;
use crate::server::auth::require_admin;
use crate::server::fanout::{MultiSearch, refused_by_all};
use crate::server::index_api::IndexApi;
use crate::server::params::{FileParams, SymbolParams, parse_file_path, parse_id, parse_symbol_name};
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub type AppState = Arc<RouterState>;

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

async fn search(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Upstream, ApiError> {
    let id = parse_id(&id)?;
    // Validate here so bad requests never cost a shard round trip.
    let Json(req) = body?;
    req.validate()
        .map_err(|m| ApiError::bad_request(m).with_index(id.as_str()))?;
    let bytes = Bytes::from(serde_json::to_vec(&req).expect("request serialises"));
    s.forward(
        id.as_str(),
        Method::POST,
        &format!("/v1/indexes/{id}/search"),
        Some(bytes),
        ForwardPatience::Serve,
    )
    .await
}

async fn symbols(
    State(s): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    params: Result<Query<SymbolParams>, axum::extract::rejection::QueryRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Upstream, ApiError> {
    let id = parse_id(&id)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    params.parse()?;
    parse_symbol_name(&name)?;
    let name_enc = urlencode(&name);
    let q = raw.map(|q| format!("?{q}")).unwrap_or_default();
    s.forward(
        id.as_str(),
        Method::GET,
        &format!("/v1/indexes/{id}/symbols/{name_enc}{q}"),
        None,
        ForwardPatience::Serve,
    )
    .await
}

async fn read_file(
    State(s): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    params: Result<Query<FileParams>, axum::extract::rejection::QueryRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Upstream, ApiError> {
    let id = parse_id(&id)?;
    let path = parse_file_path(&path)?;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    params.lines()?;
    let q = raw.map(|q| format!("?{q}")).unwrap_or_default();
    let path = encode_path(&path);
    s.forward(
        id.as_str(),
        Method::GET,
        &format!("/v1/indexes/{id}/files/{path}{q}"),
        None,
        ForwardPatience::Serve,
    )
    .await
}

async fn outline(State(s): State<AppState>, Path((id, path)): Path<(String, String)>) -> Result<Upstream, ApiError> {
    let id = parse_id(&id)?;
    let path = encode_path(&parse_file_path(&path)?);
    s.forward(
        id.as_str(),
        Method::GET,
        &format!("/v1/indexes/{id}/outline/{path}"),
        None,
        ForwardPatience::Serve,
    )
    .await
}

/// A relative file path with each segment percent-encoded, slashes kept.
fn encode_path(path: &str) -> String {
    path.split('/').map(urlencode).collect::<Vec<_>>().join("/")
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The longest a status or listing call waits for one shard.
pub(crate) const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// The least time a search-all's listing gets, however little is left of
/// its deadline.
const LISTING_FLOOR: Duration = Duration::from_secs(1);

/// Asks one shard directly (no retry), for status aggregation.
async fn ask(s: &RouterState, shard: &ShardEndpoint, path: &str, within: Duration) -> Result<Upstream, reqwest::Error> {
    let resp = s
        .client
        .get(format!("{}{path}", shard.url))
        .timeout(within.min(s.cfg.shard_timeout).min(STATUS_TIMEOUT))
        .send()
        .await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    Ok(Upstream {
        status,
        content_type: None,
        retry_after: None,
        body,
        shard: shard.name.clone(),
    })
}

/// Status of an index on each of its owners (an unreachable owner is reported, not hidden).
async fn status(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<IndexStatus>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(owner_status(&s, id.as_str()).await?))
}

pub async fn owner_status(s: &RouterState, id: &str) -> Result<IndexStatus, ApiError> {
    let owners = s.owners(id);
    if owners.is_empty() {
        return Err(no_shards());
    }
    let path = format!("/v1/indexes/{id}");
    let answers = futures::future::join_all(owners.iter().map(|o| ask(s, o, &path, STATUS_TIMEOUT))).await;
    let mut out = IndexStatus {
        index_id: id.to_string(),
        version: None,
        counts: None,
        owners: Vec::new(),
    };
    let mut not_found = 0;
    for (owner, answer) in owners.iter().zip(answers) {
        match answer {
            Ok(up) if up.status.is_success() => match up.json::<IndexStatus>() {
                Some(st) => out.owners.extend(st.owners),
                None => out.owners.push(unknown(id, owner, "unreadable status".into())),
            },
            Ok(up) if up.status == StatusCode::NOT_FOUND => not_found += 1,
            Ok(up) => out.owners.push(unknown(id, owner, format!("HTTP {}", up.status))),
            Err(e) => out
                .owners
                .push(unknown(id, owner, format!("unreachable: {}", one_line(&e)))),
        }
    }
    if not_found == owners.len() {
        return Err(ApiError::not_found(id));
    }
    let hot = out.owners.iter().filter(|o| o.state == ResidencyState::Hot);
    if let Some(best) = hot.max_by(|a, b| a.version.cmp(&b.version)) {
        out.version = best.version.clone();
        out.counts = best.counts.clone();
    } else if let Some(any) = out.owners.iter().find(|o| o.version.is_some()) {
        out.version = any.version.clone();
    }
    Ok(out)
}

fn unknown(id: &str, owner: &ShardEndpoint, error: String) -> ShardIndexStatus {
    ShardIndexStatus {
        index_id: id.to_string(),
        shard: owner.name.clone(),
        state: ResidencyState::Unknown,
        version: None,
        counts: None,
        bytes: None,
        last_error: Some(error),
        failed_attempts: None,
        last_loaded_at: None,
        next_retry_at: None,
    }
}

/// Every index, with the state on each of its owners.
async fn list(State(s): State<AppState>) -> Result<Json<IndexList>, ApiError> {
    Ok(Json(IndexList {
        indexes: all_statuses(&s).await?,
    }))
}

/// Every healthy shard's list of indexes (each lists every index in
/// storage, with its own state), from the shards that answered within
/// `within` (at most [`STATUS_TIMEOUT`]). When none answers, that is a 503,
/// not an empty cluster: a listing or a search of "all" must not answer 200
/// with nothing while every shard sheds load.
pub(crate) async fn shard_lists(s: &RouterState, within: Duration) -> Result<Vec<ShardIndexStatus>, ApiError> {
    let members = s.members();
    let healthy: Vec<ShardEndpoint> = s.health.healthy(&members).into_iter().cloned().collect();
    if healthy.is_empty() {
        return Err(no_shards());
    }
    let answers = futures::future::join_all(healthy.iter().map(|m| ask(s, m, "/v1/indexes", within))).await;
    let mut answered = 0;
    let mut out = Vec::new();
    for up in answers.into_iter().flatten() {
        if let Some(list) = up.status.is_success().then(|| up.json::<IndexList>()).flatten() {
            answered += 1;
            out.extend(list.indexes);
        }
    }
    if answered == 0 {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shard_unavailable",
            format!("none of {} shards listed its indexes", healthy.len()),
        )
        .retry_after(1));
    }
    Ok(out)
}

/// Each index's entries from its owners (or one other shard's, when no
/// owner listed it).
pub(crate) async fn all_statuses(s: &RouterState) -> Result<Vec<ShardIndexStatus>, ApiError> {
    let mut by_index: BTreeMap<String, Vec<ShardIndexStatus>> = BTreeMap::new();
    for st in shard_lists(s, STATUS_TIMEOUT).await? {
        by_index.entry(st.index_id.clone()).or_default().push(st);
    }
    let mut out = Vec::new();
    for (id, entries) in by_index {
        let owners: Vec<String> = s.owners(&id).into_iter().map(|o| o.name).collect();
        let (mine, others): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| owners.contains(&e.shard));
        if mine.is_empty() {
            out.extend(others.into_iter().take(1));
        } else {
            out.extend(mine);
        }
    }
    Ok(out)
}

/// Fans out to each index's owners without ever waiting for a cold one:
/// cold indexes are warmed in the background on their owners and reported
/// as skipped, so one request cannot start a restore of everything.
async fn search_many(
    State(s): State<AppState>,
    body: Result<Json<MultiSearchRequest>, JsonRejection>,
) -> Result<Json<MultiSearchResponse>, ApiError> {
    let Json(req) = body?;
    let plan = MultiSearch::parse(req, s.cfg.max_fanout_indexes, s.cfg.request_timeout)?;
    let all = match plan.named {
        Some(_) => Vec::new(),
        // Listing is part of the search and spends the fan-out's time; but
        // without the list there is no answer at all, so it gets at least
        // LISTING_FLOOR, and a deadline spent on it skips every index.
        None => shard_lists(
            &s,
            plan.until()
                .saturating_duration_since(std::time::Instant::now())
                .max(LISTING_FLOOR),
        )
        .await?
        .into_iter()
        .map(|st| st.index_id)
        .collect(),
    };
    let ids = plan.ids(|| all)?;
    let body = Bytes::from(serde_json::to_vec(&plan.request).expect("request serialises"));
    let until = plan.until();
    let resp = plan
        .run(ids, s.cfg.fanout_concurrency, |id| {
            let (s, body) = (s.clone(), body.clone());
            async move {
                let up = s
                    .forward(
                        &id,
                        Method::POST,
                        &format!("/v1/indexes/{id}/search"),
                        Some(body),
                        ForwardPatience::FanOut { until },
                    )
                    .await?;
                if up.status.is_success() {
                    up.json()
                        .ok_or_else(|| ApiError::internal(format!("unreadable answer from {}", up.shard)))
                } else {
                    let mut err = ApiError::new(up.status, "upstream_error", format!("HTTP {}", up.status));
                    if let Some(b) = up.json::<crate::api::ErrorBody>() {
                        err.body = b;
                    }
                    Err(err)
                }
            }
        })
        .await;
    // Filters are checked where the engine is: a query every shard refused
    // is the client's error, not a partial answer.
    if let Some(e) = refused_by_all(&resp) {
        return Err(e);
    }
    Ok(Json(resp))
}

/// Sends an admin call to `targets` and returns each owner's status.
async fn admin_each(
    s: &RouterState,
    targets: &[ShardEndpoint],
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Vec<(ShardEndpoint, Result<Upstream, reqwest::Error>)> {
    let calls = targets.iter().map(|t| {
        let mut req = s
            .client
            .request(method.clone(), format!("{}{path}", t.url))
            .timeout(s.cfg.shard_timeout);
        if let Some(token) = &s.cfg.admin_token {
            req = req.bearer_auth(token);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        async move {
            let r = async {
                let resp = req.send().await?;
                let status = resp.status();
                let retry_after = resp.headers().get(axum::http::header::RETRY_AFTER).cloned();
                let body = resp.bytes().await?;
                Ok(Upstream {
                    status,
                    content_type: None,
                    retry_after,
                    body,
                    shard: t.name.clone(),
                })
            }
            .await;
            (t.clone(), r)
        }
    });
    futures::future::join_all(calls).await
}

async fn admin_on_owners(
    s: &RouterState,
    headers: &HeaderMap,
    id: &str,
    method: Method,
    suffix: &str,
    body: Option<serde_json::Value>,
) -> Result<(StatusCode, Json<IndexStatus>), ApiError> {
    require_admin(headers, s.cfg.admin_token.as_deref())?;
    let id = parse_id(id)?;
    let owners = s.owners(id.as_str());
    if owners.is_empty() {
        return Err(no_shards());
    }
    let results = admin_each(s, &owners, method, &format!("/v1/admin/indexes/{id}{suffix}"), body).await;
    let mut st = IndexStatus {
        index_id: id.to_string(),
        version: None,
        counts: None,
        owners: Vec::new(),
    };
    let (mut ok, mut not_found, mut created, mut accepted) = (0, 0, false, false);
    let mut first_error: Option<ApiError> = None;
    for (owner, r) in results {
        match r {
            Ok(up) if up.status.is_success() => {
                ok += 1;
                created |= up.status == StatusCode::CREATED;
                accepted |= up.status == StatusCode::ACCEPTED;
                match up.json::<IndexStatus>() {
                    Some(s2) => st.owners.extend(s2.owners),
                    None => st
                        .owners
                        .push(unknown(id.as_str(), &owner, "no status returned".into())),
                }
            }
            Ok(up) if up.status == StatusCode::NOT_FOUND => not_found += 1,
            Ok(up) => {
                let mut e = ApiError::new(
                    up.status,
                    "upstream_error",
                    format!("{}: HTTP {}", owner.name, up.status),
                );
                if let Some(b) = up.json::<crate::api::ErrorBody>() {
                    e.body = b;
                }
                // The shard's advice on when to come back survives the hop;
                // a 503 without any still carries one.
                let after = up
                    .retry_after
                    .as_ref()
                    .and_then(|v| v.to_str().ok()?.trim().parse().ok());
                if let Some(secs) = after.or((up.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1)) {
                    e = e.retry_after(secs);
                }
                first_error.get_or_insert(e);
                st.owners
                    .push(unknown(id.as_str(), &owner, format!("HTTP {}", up.status)));
            }
            Err(e) => st
                .owners
                .push(unknown(id.as_str(), &owner, format!("unreachable: {}", one_line(&e)))),
        }
    }
    if ok == 0 {
        if not_found > 0 {
            return Err(ApiError::not_found(id.as_str()));
        }
        return Err(first_error.unwrap_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shard_unavailable",
                "no owner answered",
            )
            .retry_after(1)
        }));
    }
    st.version = st.owners.iter().find_map(|o| o.version.clone());
    let status = if accepted {
        StatusCode::ACCEPTED
    } else if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(st)))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    #[serde(default)]
    replicas: Option<u32>,
    #[serde(default)]
    preload: Option<bool>,
}

async fn register(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<RegisterBody>>,
) -> Result<(StatusCode, Json<IndexStatus>), ApiError> {
    let body = body.map(|b| b.0).unwrap_or_default();
    if let Some(r) = body.replicas
        && r as usize > s.cfg.replicas
    {
        tracing::info!(index_id = %id, requested = r, configured = s.cfg.replicas, "replicas above the router's replication factor are capped");
    }
    // Preloading is a background warm-up on each owner: it fills free budget
    // and never evicts, so re-registering costs nothing when indexes do not fit.
    let preload = serde_json::json!({ "preload": body.preload.unwrap_or(true) });
    admin_on_owners(&s, &headers, &id, Method::POST, "", Some(preload)).await
}

async fn reset(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IndexStatus>), ApiError> {
    admin_on_owners(&s, &headers, &id, Method::POST, "/reset", None).await
}

async fn reload(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IndexStatus>), ApiError> {
    admin_on_owners(&s, &headers, &id, Method::POST, "/reload", None).await
}

async fn evict(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    admin_on_every_shard(&s, &headers, &id, Method::POST, "/evict").await
}

/// Unregisters everywhere (not only on current owners: placement may have moved).
async fn unregister(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin_on_every_shard(&s, &headers, &id, Method::DELETE, "").await
}

/// An admin call sent to every member, not only the owners, answered as
/// [`done_on_some_shard`] decides.
async fn admin_on_every_shard(
    s: &RouterState,
    headers: &HeaderMap,
    id: &str,
    method: Method,
    suffix: &str,
) -> Result<StatusCode, ApiError> {
    require_admin(headers, s.cfg.admin_token.as_deref())?;
    let id = parse_id(id)?;
    let members = s.members();
    if members.is_empty() {
        return Err(no_shards());
    }
    let results = admin_each(s, &members, method, &format!("/v1/admin/indexes/{id}{suffix}"), None).await;
    done_on_some_shard(&id, &results)
}

/// What an admin call sent to every shard comes to: done if any shard did
/// it; not found only if every shard said so; otherwise (shards down or
/// failing, none done) a retryable 503, as the index may be on one that did
/// not answer.
fn done_on_some_shard(
    id: &crate::IndexId,
    results: &[(ShardEndpoint, Result<Upstream, reqwest::Error>)],
) -> Result<StatusCode, ApiError> {
    let done = |r: &Result<Upstream, reqwest::Error>| matches!(r, Ok(up) if up.status.is_success());
    let absent = |r: &Result<Upstream, reqwest::Error>| matches!(r, Ok(up) if up.status == StatusCode::NOT_FOUND);
    if results.iter().any(|(_, r)| done(r)) {
        return Ok(StatusCode::NO_CONTENT);
    }
    if results.iter().all(|(_, r)| absent(r)) {
        return Err(ApiError::not_found(id.as_str()));
    }
    let unanswered: Vec<String> = results
        .iter()
        .filter(|(_, r)| !absent(r))
        .map(|(shard, r)| match r {
            Ok(up) => format!("{} answered {}", shard.name, up.status),
            Err(e) => format!("{}: {}", shard.name, one_line(e)),
        })
        .collect();
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shard_unavailable",
        format!("not every shard answered for {id}: {}", unanswered.join("; ")),
    )
    .with_index(id.as_str())
    .retryable(true)
    .retry_after(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: StatusCode) -> (ShardEndpoint, Result<Upstream, reqwest::Error>) {
        let shard = ShardEndpoint {
            name: format!("s{}", status.as_u16()),
            url: String::new(),
        };
        let up = Upstream {
            status,
            content_type: None,
            retry_after: None,
            body: Bytes::new(),
            shard: shard.name.clone(),
        };
        (shard, Ok(up))
    }

    #[test]
    fn an_admin_call_is_not_found_only_when_every_shard_says_so() {
        let id = crate::IndexId::new("repo").unwrap();
        let (gone, failing, done) = (
            StatusCode::NOT_FOUND,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::NO_CONTENT,
        );
        assert_eq!(
            done_on_some_shard(&id, &[answered(gone), answered(done)]).unwrap(),
            StatusCode::NO_CONTENT
        );
        let err = done_on_some_shard(&id, &[answered(gone), answered(gone)]).unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        let err = done_on_some_shard(&id, &[answered(gone), answered(failing)]).unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.body.retryable, "the index may be on the shard that failed");
        assert!(err.body.message.contains("s500 answered 500"), "{}", err.body.message);
    }
}
