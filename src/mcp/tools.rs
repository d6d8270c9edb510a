//! The MCP tools: search, cross-index search, graph navigation and status.
//!
//! Each tool is one API call through [`McpBackend`]; the tool's job is to
//! pick the right route, validate what the schema cannot express, and hand
//! back a result an agent can act on. A failed call is never a protocol
//! error: it becomes a tool result with `is_error` set whose text carries the
//! API's error code, message and `retryable` flag (plus `retry_after_secs`),
//! because agents read tool results but usually only see an opaque failure
//! for JSON-RPC errors. Successful results carry the API's JSON as structured
//! content (with a declared output schema) next to the concise text; a
//! failed call carries its error body in `_meta` instead, because clients
//! check structured content against the tool's output schema even on errors.
//! Arguments a tool does not know are refused, not ignored: an agent that
//! sends `lines` or `language` where they mean nothing would otherwise act
//! on results it believes were narrowed.

use super::client::{BackendError, McpBackend};
use super::format;
use crate::api::{
    FileContent, FileOutline, Filters, GroupBy, IndexList, IndexStatus, LineRange, MAX_READ_LINES, MAX_TOP_K,
    MultiSearchRequest, MultiSearchResponse, SearchMode, SearchRequest, SearchResponse, SymbolRelation, SymbolResponse,
};
use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The tool names, in the order they are listed.
pub const TOOL_NAMES: [&str; 9] = [
    "search",
    "search_all",
    "find_definition",
    "find_references",
    "call_graph",
    "read_code",
    "file_outline",
    "list_indexes",
    "index_status",
];

/// Results returned by `find_references` and `call_graph` unless asked otherwise.
pub const DEFAULT_SYMBOL_LIMIT: usize = 50;
/// The API's cap on symbol results.
pub const MAX_SYMBOL_LIMIT: usize = 500;
/// The API's cap on call-graph depth.
pub const MAX_DEPTH: u32 = 5;
/// Lines `read_code` returns when the caller names no last line: enough for
/// most definitions, small enough for an agent's tool-output budget.
pub const DEFAULT_READ_LINES: u32 = 400;
/// Symbols `file_outline` lists; a generated file can define thousands.
pub const MAX_OUTLINE_SYMBOLS: usize = 500;
/// The `_meta` key under which a failed call carries its error body.
pub const ERROR_META_KEY: &str = "search.trusty.dev/error";
/// The `_meta` key under which `file_outline` says how many symbols the
/// file defines, listed or not.
pub const TOTAL_SYMBOLS_META_KEY: &str = "search.trusty.dev/total_symbols";

const INSTRUCTIONS: &str = "Code search over indexed repositories. Start with `list_indexes` to learn the index ids. \
`search` ranks code chunks in one index (mode hybrid by default; bm25 is best for exact identifiers, vector for \
concepts); the query may carry inline filters `lang:rust path:src/** sym:name`. `search_all` searches several or all \
indexes. With `group_by: \"file\"` both rank files instead of chunks: use it for \"where is this handled?\" and to \
paste a whole issue, error message or stack trace as the query. `find_definition`, `find_references` and `call_graph` navigate the code graph by exact symbol name. Results \
give path:start-end: `read_code` returns those lines as indexed, `file_outline` the symbols a file defines. Errors state `retryable: true|false`; when true, wait \
`retry_after_secs` (if given) and call again.";

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Index id to search (see `list_indexes`).
    pub index: String,
    /// What to look for: words, an identifier, or a question. May include inline
    /// filters `lang:<language>`, `path:<glob>`, `sym:<name>`.
    pub query: String,
    /// Ranking: `hybrid` (default: BM25 + vectors + graph expansion), `bm25`
    /// (exact words and identifiers), `vector` (meaning), `graph`.
    #[serde(default)]
    pub mode: Option<SearchMode>,
    /// Number of hits (default 10, at most 200).
    #[serde(default)]
    #[schemars(range(min = 1, max = 200))]
    pub top_k: Option<usize>,
    /// Only hits in this language (e.g. `rust`, `python`).
    #[serde(default)]
    pub language: Option<String>,
    /// Only hits whose repository-relative path matches this glob (e.g. `src/**/*.rs`).
    #[serde(default)]
    pub path: Option<String>,
    /// `file`: rank files instead of chunks, each with its best line ranges.
    /// Best for "where is this handled?" and for pasting a whole issue or
    /// stack trace as the query.
    #[serde(default)]
    pub group_by: Option<GroupBy>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchAllParams {
    /// What to look for; the same syntax as `search`.
    pub query: String,
    /// Index ids to search; all indexes when omitted or empty.
    #[serde(default)]
    pub indexes: Option<Vec<String>>,
    /// Ranking mode, as for `search`.
    #[serde(default)]
    pub mode: Option<SearchMode>,
    /// Number of merged hits (default 10, at most 200).
    #[serde(default)]
    #[schemars(range(min = 1, max = 200))]
    pub top_k: Option<usize>,
    /// Only hits in this language (e.g. `rust`, `python`).
    #[serde(default)]
    pub language: Option<String>,
    /// Only hits whose repository-relative path matches this glob.
    #[serde(default)]
    pub path: Option<String>,
    /// `file`: rank files instead of chunks, as for `search`.
    #[serde(default)]
    pub group_by: Option<GroupBy>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefinitionParams {
    /// Index id (see `list_indexes`).
    pub index: String,
    /// Exact symbol name (case-insensitive), e.g. `load_config` or `Server`.
    pub symbol: String,
    /// Maximum results (default 50, at most 500).
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferencesParams {
    /// Index id (see `list_indexes`).
    pub index: String,
    /// Exact symbol name (case-insensitive).
    pub symbol: String,
    /// Maximum results (default 50, at most 500).
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<usize>,
}

/// Which way to walk the call graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Who calls the symbol.
    Callers,
    /// What the symbol calls.
    Callees,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallGraphParams {
    /// Index id (see `list_indexes`).
    pub index: String,
    /// Exact symbol name (case-insensitive).
    pub symbol: String,
    /// `callers` (who calls it) or `callees` (what it calls).
    pub direction: Direction,
    /// How many hops to follow (1 to 5, default 1).
    #[serde(default)]
    #[schemars(range(min = 1, max = 5))]
    pub depth: Option<u32>,
    /// Maximum results (default 50, at most 500).
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadCodeParams {
    /// Index id (see `list_indexes`).
    pub index: String,
    /// Repository-relative file path, as results show it (e.g. `src/lib.rs`).
    pub path: String,
    /// First line (1-based; default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub start_line: Option<u32>,
    /// Last line (default: 400 lines on; a range over 2000 lines is cut to
    /// 2000, and the answer says where to continue).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub end_line: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileParams {
    /// Index id (see `list_indexes`).
    pub index: String,
    /// Repository-relative file path (e.g. `src/lib.rs`).
    pub path: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IndexParams {
    /// Index id.
    pub index: String,
}

/// The MCP server: one instance per session, cheap to clone (the HTTP client
/// inside the backend is shared).
#[derive(Debug, Clone)]
pub struct SearchTools {
    backend: McpBackend,
    tool_router: ToolRouter<Self>,
}

impl SearchTools {
    pub fn new(backend: McpBackend) -> Self {
        SearchTools {
            backend,
            tool_router: Self::tool_router(),
        }
    }

    pub fn backend(&self) -> &McpBackend {
        &self.backend
    }
}

#[tool_router]
impl SearchTools {
    #[tool(
        description = "Search one code index. Returns ranked chunks as `path:start-end  symbol (kind, language)  score`, \
                       why each ranked (per-arm ranks, graph relation) and a snippet.",
        output_schema = schema_for_output::<SearchResponse>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn search(&self, Parameters(p): Parameters<SearchParams>) -> CallToolResult {
        if let Err(e) = check_top_k(p.top_k) {
            return invalid(e);
        }
        let filters = Filters {
            languages: nonempty(p.language),
            paths: nonempty(p.path),
            symbols: vec![],
        };
        let req = SearchRequest {
            query: p.query,
            mode: p.mode.unwrap_or_default(),
            top_k: p.top_k,
            filters: (filters != Filters::default()).then_some(filters),
            group_by: p.group_by,
        };
        respond(self.backend.search(p.index.trim(), &req).await, format::search_text)
    }

    #[tool(
        description = "Search several indexes (or all, when `indexes` is omitted) and merge the hits; each hit names its \
                       index. Indexes that were skipped or failed are listed with whether retrying helps.",
        output_schema = schema_for_output::<MultiSearchResponse>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn search_all(&self, Parameters(p): Parameters<SearchAllParams>) -> CallToolResult {
        if let Err(e) = check_top_k(p.top_k) {
            return invalid(e);
        }
        let filters = Filters {
            languages: nonempty(p.language),
            paths: nonempty(p.path),
            symbols: vec![],
        };
        let req = MultiSearchRequest {
            query: p.query,
            mode: p.mode.unwrap_or_default(),
            top_k: p.top_k,
            filters: (filters != Filters::default()).then_some(filters),
            // An empty list is read as "all": an agent sending one means nothing narrower.
            indexes: p
                .indexes
                .filter(|ids| !ids.is_empty())
                .map(|ids| ids.into_iter().map(|s| s.trim().to_string()).collect()),
            deadline_ms: None,
            group_by: p.group_by,
        };
        respond(self.backend.search_all(&req).await, format::multi_search_text)
    }

    #[tool(
        description = "Where a symbol (function, method, type, ...) is defined: `path:start-end` per definition.",
        output_schema = schema_for_output::<SymbolResponse>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn find_definition(&self, Parameters(p): Parameters<DefinitionParams>) -> CallToolResult {
        let limit = match check_limit(p.limit) {
            Ok(l) => l,
            Err(e) => return invalid(e),
        };
        self.symbols(&p.index, &p.symbol, SymbolRelation::Definition, 1, limit)
            .await
    }

    #[tool(
        description = "Where a symbol is used (calls, imports, mentions): one `path:start-end  enclosing symbol` per use.",
        output_schema = schema_for_output::<SymbolResponse>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn find_references(&self, Parameters(p): Parameters<ReferencesParams>) -> CallToolResult {
        let limit = match check_limit(p.limit) {
            Ok(l) => l,
            Err(e) => return invalid(e),
        };
        self.symbols(&p.index, &p.symbol, SymbolRelation::References, 1, limit)
            .await
    }

    #[tool(
        description = "Walk the call graph from a symbol: its `callers` or `callees`, up to `depth` hops (1-5); \
                       results beyond depth 1 say which symbol they were reached through.",
        output_schema = schema_for_output::<SymbolResponse>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn call_graph(&self, Parameters(p): Parameters<CallGraphParams>) -> CallToolResult {
        let depth = p.depth.unwrap_or(1);
        if !(1..=MAX_DEPTH).contains(&depth) {
            return invalid(format!("depth must be between 1 and {MAX_DEPTH}, got {depth}"));
        }
        let limit = match check_limit(p.limit) {
            Ok(l) => l,
            Err(e) => return invalid(e),
        };
        let rel = match p.direction {
            Direction::Callers => SymbolRelation::Callers,
            Direction::Callees => SymbolRelation::Callees,
        };
        self.symbols(&p.index, &p.symbol, rel, depth, limit).await
    }

    #[tool(
        description = "Read lines of a file as the index holds it (the version that was searched, not a live checkout), \
                       with line numbers. `start_line` alone reads 400 lines from there; a range reads up to 2000 \
                       lines. The answer says where to continue when the file goes on.",
        output_schema = schema_for_output::<FileContent>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn read_code(&self, Parameters(p): Parameters<ReadCodeParams>) -> CallToolResult {
        let start = p.start_line.unwrap_or(1);
        let end = match p.end_line {
            // A long definition's whole range is a natural thing to ask for:
            // cut it, and let the answer say where to continue.
            Some(end) => end.min(start.saturating_add(MAX_READ_LINES - 1)),
            None => start.saturating_add(DEFAULT_READ_LINES - 1),
        };
        let range = format!("{start}-{end}");
        if let Err(e) = range.parse::<LineRange>() {
            return invalid(e);
        }
        respond(
            self.backend
                .read_file(p.index.trim(), p.path.trim(), Some(&range))
                .await,
            format::file_text,
        )
    }

    #[tool(
        description = "The symbols a file defines (functions, types, methods with their parent), in line order, \
                       each with its line range.",
        output_schema = schema_for_output::<FileOutline>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn file_outline(&self, Parameters(p): Parameters<FileParams>) -> CallToolResult {
        let mut outline = self.backend.outline(p.index.trim(), p.path.trim()).await;
        let total = outline.as_ref().map_or(0, |o| o.symbols.len());
        if let Ok(o) = &mut outline {
            o.symbols.truncate(MAX_OUTLINE_SYMBOLS);
        }
        let mut result = respond(outline, |o| format::outline_text(o, total));
        if result.is_error != Some(true) {
            // The structured list may be cut too: say how long it was.
            result.meta = Some(meta(TOTAL_SYMBOLS_META_KEY, total.into()));
        }
        result
    }

    #[tool(
        description = "List the index ids you can search, with their state (hot, loading, cold, failed), version and size.",
        output_schema = schema_for_output::<IndexList>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn list_indexes(&self) -> CallToolResult {
        respond(self.backend.list_indexes().await, format::index_list_text)
    }

    #[tool(
        description = "Status of one index: published version, file/chunk/graph counts, and its state on each shard \
                       (with the last load error, if any).",
        output_schema = schema_for_output::<IndexStatus>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn index_status(&self, Parameters(p): Parameters<IndexParams>) -> CallToolResult {
        respond(
            self.backend.index_status(p.index.trim()).await,
            format::index_status_text,
        )
    }
}

impl SearchTools {
    async fn symbols(
        &self,
        index: &str,
        symbol: &str,
        rel: SymbolRelation,
        depth: u32,
        limit: usize,
    ) -> CallToolResult {
        let symbol = symbol.trim();
        if symbol.is_empty() {
            return invalid("symbol must not be empty".to_string());
        }
        respond(
            self.backend.symbols(index.trim(), symbol, rel, depth, limit).await,
            |r| format::symbols_text(r, limit),
        )
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SearchTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("trusty-search", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

/// A successful result: the concise text plus the raw JSON as structured content.
pub fn success_result<T: Serialize>(value: &T, text: String) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    // Serializing our own API types cannot fail (no maps with non-string keys).
    result.structured_content = serde_json::to_value(value).ok();
    result
}

/// A failed call as a tool error: text for the agent, the error body (plus
/// status and retry-after) in `_meta` under [`ERROR_META_KEY`].
pub fn error_result(err: &BackendError) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format::error_text(err))]);
    let mut body = json!({
        "error": err.code(),
        "message": err.message(),
        "retryable": err.retryable(),
    });
    if let Some(id) = err.index_id() {
        body["index_id"] = Value::from(id);
    }
    if let Some(status) = err.status() {
        body["status"] = Value::from(status);
    }
    if let Some(secs) = err.retry_after_secs() {
        body["retry_after_secs"] = Value::from(secs);
    }
    result.meta = Some(meta(ERROR_META_KEY, body));
    result
}

/// A `_meta` object holding one value.
fn meta(key: &str, value: Value) -> rmcp::model::MetaObject {
    let mut meta = rmcp::model::MetaObject::default();
    meta.0.insert(key.to_string(), value);
    meta
}

fn respond<T: Serialize>(res: Result<T, BackendError>, text: impl FnOnce(&T) -> String) -> CallToolResult {
    match res {
        Ok(v) => {
            let t = text(&v);
            success_result(&v, t)
        }
        Err(e) => {
            tracing::debug!(code = e.code(), retryable = e.retryable(), "mcp tool call failed: {e}");
            error_result(&e)
        }
    }
}

/// Arguments the schema allows but the API would reject, caught before the call.
fn invalid(message: String) -> CallToolResult {
    error_result(&BackendError::InvalidArgument(message))
}

fn check_top_k(top_k: Option<usize>) -> Result<(), String> {
    match top_k {
        Some(k) if k == 0 || k > MAX_TOP_K => Err(format!("top_k must be between 1 and {MAX_TOP_K}, got {k}")),
        _ => Ok(()),
    }
}

fn check_limit(limit: Option<usize>) -> Result<usize, String> {
    let limit = limit.unwrap_or(DEFAULT_SYMBOL_LIMIT);
    if (1..=MAX_SYMBOL_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(format!("limit must be between 1 and {MAX_SYMBOL_LIMIT}, got {limit}"))
    }
}

fn nonempty(v: Option<String>) -> Vec<String> {
    v.map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .into_iter()
        .collect()
}
