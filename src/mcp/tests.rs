//! End-to-end tests of the tools through the mountable `/mcp` service and
//! rmcp's own streamable-HTTP client, against a fake API on 127.0.0.1:0 that
//! answers with the real JSON bodies (including error bodies and
//! `Retry-After`) and records what it was asked.

use super::{McpBackend, TOOL_NAMES, mcp_http_service};
use crate::api::{
    ApiError, ArmScore, Arms, FileContent, FileOutline, Hit, IndexList, LineRange, MultiSearchRequest,
    MultiSearchResponse, OutlineSymbol, ResidencyState, SearchMode, SearchRequest, SearchResponse, ShardIndexStatus,
    SymbolHit, SymbolRelation, SymbolResponse,
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
    /// The `lines` asked of the files route.
    reads: Vec<Option<String>>,
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

/// A 5000-line file, cut to the range asked for.
async fn fake_read(
    State(seen): State<Shared>,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<FileContent> {
    seen.lock().reads.push(q.get("lines").cloned());
    let range: LineRange = q.get("lines").map_or("1-", String::as_str).parse().unwrap();
    let end = range.end.unwrap_or(5000).min(5000);
    Json(FileContent {
        index_id: id,
        version: "v1".into(),
        path,
        language: "rust".into(),
        start_line: range.start,
        end_line: end,
        total_lines: 5000,
        text: (range.start..=end).map(|n| format!("line {n}\n")).collect(),
        truncated: false,
    })
}

/// A generated file's outline: 600 symbols.
async fn fake_outline(Path((id, path)): Path<(String, String)>) -> Json<FileOutline> {
    Json(FileOutline {
        index_id: id,
        version: "v1".into(),
        path,
        language: "rust".into(),
        symbols: (1..=600)
            .map(|n| OutlineSymbol {
                symbol: format!("f{n}"),
                kind: "function".into(),
                parent: None,
                start_line: n,
                end_line: n,
            })
            .collect(),
    })
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
        .route("/v1/indexes/{id}/files/{*path}", get(fake_read))
        .route("/v1/indexes/{id}/outline/{*path}", get(fake_outline))
        .with_state(seen.clone())
        .nest_service(
            "/mcp",
            mcp_http_service(base.clone(), crate::mcp::DEFAULT_REQUEST_TIMEOUT).unwrap(),
        );
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

fn error_meta(r: &CallToolResult) -> Value {
    r.meta.as_ref().expect("an error carries _meta").0[super::tools::ERROR_META_KEY].clone()
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
    // Clients check structured content against the output schema even on
    // errors, so the error body travels in `_meta`.
    assert_eq!(r.structured_content, None);
    let body = error_meta(&r);
    assert_eq!(body["error"], "index_not_found");
    assert_eq!(body["index_id"], "nope");
    assert_eq!(body["retryable"], false);

    let r = call(&client, "search", json!({"index": "cold", "query": "x"})).await;
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(t.contains("index_loading"), "{t}");
    assert!(t.contains("retryable: true"), "{t}");
    assert!(t.contains("retry_after_secs: 7"), "{t}");
    assert_eq!(error_meta(&r)["retry_after_secs"], 7);

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
        "find_definition",
        json!({"index": "demo", "symbol": "new", "limit": 1}),
    )
    .await;
    assert!(text(&r).contains("limit of 1 reached"), "{}", text(&r));
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
            ("new", "definition", "1", "1"),
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
    // An argument the tool does not know is refused, not silently ignored.
    for (tool, args) in [
        ("search_all", json!({"query": "x", "lang": "rust"})),
        (
            "read_code",
            json!({"index": "demo", "path": "src/lib.rs", "lines": "10-20"}),
        ),
    ] {
        let r = call(&client, tool, args.clone()).await;
        assert_eq!(r.is_error, Some(true), "{tool} {args}");
        assert!(text(&r).contains("unknown field"), "{}", text(&r));
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
        json!({"query": "config", "indexes": ["demo", "other"], "language": "rust", "path": "src/**"}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let t = text(&r);
    assert!(t.starts_with("searched 2 indexes (demo, other)"), "{t}");
    assert!(t.contains("1. [demo] src/config.rs:4-7"), "{t}");
    let multi = seen.lock().multi[0].clone();
    assert_eq!(
        multi.indexes.as_deref(),
        Some(&["demo".to_string(), "other".to_string()][..])
    );
    let f = multi.filters.expect("filters forwarded");
    assert_eq!(
        (f.languages, f.paths),
        (vec!["rust".to_string()], vec!["src/**".to_string()])
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
    let Err(err) = mcp_http_service("not a url".into(), crate::mcp::DEFAULT_REQUEST_TIMEOUT) else {
        panic!("an invalid URL was accepted")
    };
    assert!(err.to_string().contains("invalid search API URL"), "{err}");
}

#[tokio::test]
async fn reads_stay_within_an_agents_budget_and_say_how_to_go_on() {
    let (base, seen) = start().await;
    let client = connect(&base).await;
    let read = |args: Value| call(&client, "read_code", args);

    let r = read(json!({"index": "demo", "path": "src/gen.rs"})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert!(text(&r).contains("read from line 401 to continue"), "{}", text(&r));
    read(json!({"index": "demo", "path": "src/gen.rs", "start_line": 10})).await;
    // A long definition's whole range is cut to what one read returns.
    let r = read(json!({"index": "demo", "path": "src/gen.rs", "start_line": 10, "end_line": 4000})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert!(text(&r).contains("read from line 2010 to continue"), "{}", text(&r));
    assert_eq!(
        std::mem::take(&mut seen.lock().reads),
        [Some("1-400".to_string()), Some("10-409".into()), Some("10-2009".into())]
    );

    let r = call(&client, "file_outline", json!({"index": "demo", "path": "src/gen.rs"})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let t = text(&r);
    assert!(t.contains(": 600 symbols"), "{t}");
    assert!(
        t.contains("100 more symbols not listed; `read_code` from line 501"),
        "{t}"
    );
    assert_eq!(t.matches("src/gen.rs").count(), 1, "the path is named once: {t}");
    assert_eq!(r.meta.as_ref().unwrap().0[super::tools::TOTAL_SYMBOLS_META_KEY], 600);
    let listed = r.structured_content.unwrap()["symbols"].as_array().unwrap().len();
    assert_eq!(listed, super::tools::MAX_OUTLINE_SYMBOLS);
    client.cancel().await.unwrap();
}
