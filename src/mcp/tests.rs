//! End-to-end tests of the tools through the mountable `/mcp` service and
//! rmcp's own streamable-HTTP client, against a fake API on 127.0.0.1:0 that
//! answers with the real JSON bodies (including error bodies and
//! `Retry-After`) and records what it was asked.

use super::{McpBackend, TOOL_NAMES, mcp_http_service};
use crate::api::{
    ApiError, ArmScore, Arms, Hit, IndexList, MultiSearchRequest, MultiSearchResponse, ResidencyState, SearchMode,
    SearchRequest, SearchResponse, ShardIndexStatus, SymbolHit, SymbolRelation, SymbolResponse,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// What the fake API received, for asserting on the requests tools make.
#[derive(Default)]
struct Seen {
    search: Vec<(String, SearchRequest)>,
    multi: Vec<MultiSearchRequest>,
    symbols: Vec<(String, String, HashMap<String, String>)>,
}

type Shared = Arc<Mutex<Seen>>;

fn demo_hit() -> Hit {
    Hit {
        path: "src/config.rs".into(),
        start_line: 4,
        end_line: 7,
        symbol: Some("load_config".into()),
        kind: "function".into(),
        language: "rust".into(),
        snippet: "pub fn load_config(path: &str) -> Config {".into(),
        score: 0.5,
        arms: Arms {
            bm25: Some(ArmScore { rank: 1, score: 3.5 }),
            vector: None,
            graph: None,
        },
        index_id: None,
    }
}

async fn fake_search(State(seen): State<Shared>, Path(id): Path<String>, Json(req): Json<SearchRequest>) -> Response {
    seen.lock().search.push((id.clone(), req.clone()));
    match id.as_str() {
        "demo" => Json(SearchResponse {
            index_id: id,
            version: "v1".into(),
            took_ms: 1.5,
            mode: req.mode,
            hits: vec![demo_hit()],
            files: vec![],
            unavailable_arms: vec![],
        })
        .into_response(),
        "cold" => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "index_loading",
            "index \"cold\" is loading",
        )
        .with_index("cold")
        .retry_after(7)
        .into_response(),
        "proxy" => (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response(),
        other => ApiError::not_found(other).into_response(),
    }
}

async fn fake_multi(State(seen): State<Shared>, Json(req): Json<MultiSearchRequest>) -> Response {
    seen.lock().multi.push(req.clone());
    let mut hit = demo_hit();
    hit.index_id = Some("demo".into());
    Json(MultiSearchResponse {
        took_ms: 2.0,
        hits: vec![hit],
        files: vec![],
        searched: req.indexes.unwrap_or_else(|| vec!["demo".into()]),
        skipped: vec![],
        failed: vec![],
    })
    .into_response()
}

async fn fake_symbols(
    State(seen): State<Shared>,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    seen.lock().symbols.push((id.clone(), name.clone(), q.clone()));
    if id != "demo" {
        return ApiError::not_found(&id).into_response();
    }
    let rel: SymbolRelation = q["rel"].parse().unwrap();
    Json(SymbolResponse {
        index_id: id,
        version: "v1".into(),
        symbol: name.clone(),
        rel,
        results: vec![SymbolHit {
            symbol: name,
            kind: "function".into(),
            path: "src/config.rs".into(),
            start_line: 4,
            end_line: 7,
            depth: 1,
            via: None,
        }],
    })
    .into_response()
}

async fn fake_list() -> Json<IndexList> {
    Json(IndexList {
        indexes: vec![ShardIndexStatus {
            index_id: "demo".into(),
            shard: "s0".into(),
            state: ResidencyState::Hot,
            version: Some("v1".into()),
            counts: None,
            bytes: None,
            last_error: None,
            failed_attempts: None,
            last_loaded_at: None,
            next_retry_at: None,
        }],
    })
}

/// The fake API and, mounted like the router does, the `/mcp` service in
/// front of it — both on one listener.
async fn start() -> (String, Shared) {
    let seen = Shared::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = Router::new()
        .route("/v1/indexes", get(fake_list))
        .route("/v1/indexes/{id}/search", post(fake_search))
        .route("/v1/indexes/{id}/symbols/{name}", get(fake_symbols))
        .route("/v1/search", post(fake_multi))
        .with_state(seen.clone())
        .nest_service("/mcp", mcp_http_service(base.clone()).unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
    (base, seen)
}

async fn connect(base: &str) -> RunningService<RoleClient, ()> {
    ().serve(StreamableHttpClientTransport::from_uri(format!("{base}/mcp")))
        .await
        .unwrap()
}

async fn call(client: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap()
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn lists_every_tool_with_schemas() {
    let (base, _) = start().await;
    let client = connect(&base).await;
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    let mut expected = TOOL_NAMES.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    let search = tools.iter().find(|t| t.name == "search").unwrap();
    let props = search.input_schema["properties"].as_object().unwrap();
    for p in ["index", "query", "mode", "top_k", "language", "path"] {
        assert!(props.contains_key(p), "search lacks {p}: {props:?}");
    }
    let required: Vec<&str> = search.input_schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["index", "query"]);
    assert!(search.output_schema.is_some());
    let cg = tools.iter().find(|t| t.name == "call_graph").unwrap();
    let direction = serde_json::to_string(&cg.input_schema).unwrap();
    assert!(
        direction.contains("callers") && direction.contains("callees"),
        "{direction}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn search_forwards_filters_and_returns_text_and_json() {
    let (base, seen) = start().await;
    let client = connect(&base).await;
    let r = call(
        &client,
        "search",
        json!({"index": "demo", "query": "load config", "mode": "bm25", "top_k": 3,
               "language": "rust", "path": "src/**"}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let t = text(&r);
    assert!(
        t.contains("1. src/config.rs:4-7  load_config (function, rust)  score 0.5000"),
        "{t}"
    );
    assert!(t.contains("why: bm25 #1 (3.500)"), "{t}");
    let sc = r.structured_content.unwrap();
    assert_eq!(sc["hits"][0]["symbol"], "load_config");
    assert_eq!(sc["mode"], "bm25");

    let (id, req) = seen.lock().search.pop().unwrap();
    assert_eq!(id, "demo");
    assert_eq!(req.mode, SearchMode::Bm25);
    assert_eq!(req.top_k, Some(3));
    let f = req.filters.unwrap();
    assert_eq!(f.languages, ["rust"]);
    assert_eq!(f.paths, ["src/**"]);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn api_errors_become_tool_errors_with_retry_advice() {
    let (base, _) = start().await;
    let client = connect(&base).await;

    let r = call(&client, "search", json!({"index": "nope", "query": "x"})).await;
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(t.starts_with("error: index_not_found (HTTP 404)"), "{t}");
    assert!(t.contains("retryable: false"), "{t}");
    let sc = r.structured_content.unwrap();
    assert_eq!(sc["error"], "index_not_found");
    assert_eq!(sc["index_id"], "nope");
    assert_eq!(sc["retryable"], false);

    let r = call(&client, "search", json!({"index": "cold", "query": "x"})).await;
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(t.contains("index_loading"), "{t}");
    assert!(t.contains("retryable: true"), "{t}");
    assert!(t.contains("retry_after_secs: 7"), "{t}");
    assert_eq!(r.structured_content.unwrap()["retry_after_secs"], 7);

    let r = call(&client, "search", json!({"index": "proxy", "query": "x"})).await;
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(t.contains("bad_backend_response (HTTP 502)"), "{t}");
    assert!(t.contains("retryable: true"), "{t}");

    let r = call(&client, "find_definition", json!({"index": "nope", "symbol": "f"})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("index_not_found"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn graph_tools_pick_the_relation_depth_and_limit() {
    let (base, seen) = start().await;
    let client = connect(&base).await;

    let r = call(
        &client,
        "find_definition",
        json!({"index": "demo", "symbol": "Server::start"}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert!(
        text(&r).contains("definition of `Server::start` in index demo"),
        "{}",
        text(&r)
    );
    let r = call(
        &client,
        "find_references",
        json!({"index": "demo", "symbol": "load_config"}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let r = call(
        &client,
        "call_graph",
        json!({"index": "demo", "symbol": "parse_config", "direction": "callers", "depth": 3, "limit": 20}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert!(text(&r).contains("depth 1"), "{}", text(&r));

    let seen = std::mem::take(&mut seen.lock().symbols);
    let asked: Vec<(&str, &str, &str, &str)> = seen
        .iter()
        .map(|(_, name, q)| {
            (
                name.as_str(),
                q["rel"].as_str(),
                q["depth"].as_str(),
                q["limit"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        asked,
        [
            ("Server::start", "definition", "1", "50"),
            ("load_config", "references", "1", "50"),
            ("parse_config", "callers", "3", "20"),
        ]
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn out_of_range_arguments_are_rejected_before_calling_the_api() {
    let (base, seen) = start().await;
    let client = connect(&base).await;
    for (tool, args) in [
        (
            "call_graph",
            json!({"index": "demo", "symbol": "f", "direction": "callees", "depth": 9}),
        ),
        (
            "call_graph",
            json!({"index": "demo", "symbol": "f", "direction": "callees", "depth": 0}),
        ),
        ("search", json!({"index": "demo", "query": "x", "top_k": 0})),
        ("search_all", json!({"query": "x", "top_k": 500})),
        ("find_references", json!({"index": "demo", "symbol": "f", "limit": 501})),
        ("find_definition", json!({"index": "demo", "symbol": "  "})),
        // Dot segments would be dropped from the URL and reach another route.
        ("find_definition", json!({"index": "demo", "symbol": ".."})),
        ("find_definition", json!({"index": "..", "symbol": "f"})),
        ("search", json!({"index": "..", "query": "x"})),
        ("read_code", json!({"index": ".", "path": "src/lib.rs"})),
        ("file_outline", json!({"index": "..", "path": "src/lib.rs"})),
        ("index_status", json!({"index": "."})),
    ] {
        let r = call(&client, tool, args.clone()).await;
        assert_eq!(r.is_error, Some(true), "{tool} {args}");
        let t = text(&r);
        assert!(t.starts_with("error: bad_request: "), "{t}");
        assert!(t.contains("retryable: false"), "{t}");
    }
    let s = seen.lock();
    assert!(s.symbols.is_empty() && s.search.is_empty() && s.multi.is_empty());
}

#[tokio::test]
async fn search_all_and_list_indexes() {
    let (base, seen) = start().await;
    let client = connect(&base).await;
    let r = call(
        &client,
        "search_all",
        json!({"query": "config", "indexes": ["demo", "other"]}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let t = text(&r);
    assert!(t.starts_with("searched 2 indexes (demo, other)"), "{t}");
    assert!(t.contains("1. [demo] src/config.rs:4-7"), "{t}");
    assert_eq!(
        seen.lock().multi[0].indexes.as_deref(),
        Some(&["demo".to_string(), "other".to_string()][..])
    );

    let r = call(&client, "list_indexes", json!({})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert!(text(&r).contains("- demo: hot, version v1 (shard s0)"), "{}", text(&r));
    assert_eq!(r.structured_content.unwrap()["indexes"][0]["index_id"], "demo");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_api_is_a_retryable_tool_error() {
    // Bind and drop to get a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tools = super::SearchTools::new(McpBackend::new(&format!("http://127.0.0.1:{port}")).unwrap());
    let r = tools.list_indexes().await;
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(t.starts_with("error: backend_unreachable: "), "{t}");
    assert!(t.to_lowercase().contains("refused"), "the cause is named: {t}");
    assert!(t.contains("retryable: true"), "{t}");
}

#[test]
fn an_invalid_backend_url_is_an_error_not_a_panic() {
    let Err(err) = mcp_http_service("not a url".into()) else {
        panic!("an invalid URL was accepted")
    };
    assert!(err.to_string().contains("invalid search API URL"), "{err}");
}
