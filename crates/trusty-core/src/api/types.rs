//! Request and response bodies of the search, symbol and status routes.

use serde::{Deserialize, Serialize};

/// Which ranking arms a search uses. `Hybrid` fuses BM25 and vectors and then
/// applies graph expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    #[default]
    Hybrid,
    Bm25,
    Vector,
    Graph,
}

impl std::str::FromStr for SearchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hybrid" => Ok(SearchMode::Hybrid),
            "bm25" => Ok(SearchMode::Bm25),
            "vector" => Ok(SearchMode::Vector),
            "graph" => Ok(SearchMode::Graph),
            other => Err(format!(
                "unknown mode {other:?} (expected hybrid, bm25, vector or graph)"
            )),
        }
    }
}

impl SearchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Bm25 => "bm25",
            SearchMode::Vector => "vector",
            SearchMode::Graph => "graph",
        }
    }
}

/// How search results are grouped. `file` ranks files (issue text, stack
/// traces and names count as file-level evidence), each with its best chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    File,
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(GroupBy::File),
            other => Err(format!("unknown group_by {other:?} (expected file)")),
        }
    }
}

/// Structured filters; the same can be written inline in a short query
/// (`lang:rust path:src/** sym:parse`), not in a pasted issue, which keeps
/// such words as text. At most 32 distinct values of each kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// Glob patterns over the repository-relative path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Symbol names (exact, case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
}

pub const DEFAULT_TOP_K: usize = 10;
pub const MAX_TOP_K: usize = 200;
/// Longest accepted query: a whole pasted issue or log. The engine decides
/// how much of it to use (distinct terms, extracted names and paths are capped).
pub const MAX_QUERY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub query: String,
    #[serde(default)]
    pub mode: SearchMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
    /// `file`: rank files instead of chunks (answers in `files`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>) -> Self {
        SearchRequest {
            query: query.into(),
            mode: SearchMode::Hybrid,
            top_k: None,
            filters: None,
            group_by: None,
        }
    }

    pub fn top_k(&self) -> usize {
        self.top_k.unwrap_or(DEFAULT_TOP_K).clamp(1, MAX_TOP_K)
    }

    /// Checks what serde cannot: an empty query, an absurd `top_k`, or a
    /// mode that file grouping cannot honour (files are ranked from BM25,
    /// what the text names and, in `hybrid` and `vector`, vectors).
    pub fn validate(&self) -> Result<(), String> {
        if self.group_by == Some(GroupBy::File) && self.mode == SearchMode::Graph {
            return Err("group_by \"file\" does not combine with mode \"graph\"; use hybrid, bm25 or vector".into());
        }
        if self.query.trim().is_empty() {
            return Err("query must not be empty".into());
        }
        if self.query.len() > MAX_QUERY_BYTES {
            return Err(format!("query must be at most {MAX_QUERY_BYTES} bytes"));
        }
        if let Some(k) = self.top_k
            && (k == 0 || k > MAX_TOP_K)
        {
            return Err(format!("top_k must be between 1 and {MAX_TOP_K}"));
        }
        Ok(())
    }
}

/// Rank (1-based) and raw score of a hit in one arm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArmScore {
    pub rank: usize,
    pub score: f32,
}

/// Why the graph arm touched a hit: which top hit it is connected to, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GraphReason {
    /// `calls`, `called_by`, `defines`, `imports`.
    pub relation: String,
    /// The symbol of the hit it was reached from.
    pub via: String,
    pub boost: f32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Arms {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bm25: Option<ArmScore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<ArmScore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Hit {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub symbol: Option<String>,
    pub kind: String,
    pub language: String,
    pub snippet: String,
    pub score: f32,
    pub arms: Arms,
    /// Set by cross-index search so merged hits say where they came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchResponse {
    pub index_id: String,
    pub version: String,
    pub took_ms: f64,
    pub mode: SearchMode,
    pub hits: Vec<Hit>,
    /// With `group_by: file`: ranked files (then `hits` is empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileHit>,
    /// Arms the mode asked for that this index cannot serve (e.g. `vector` on a lexical-only index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable_arms: Vec<String>,
}

/// A ranked file and the chunks that put it there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileHit {
    pub path: String,
    pub language: String,
    pub score: f32,
    /// Its best-matching chunks, best first (may be empty when only its path
    /// or a stack frame pointed at it).
    pub chunks: Vec<Hit>,
    /// Set by cross-index search so merged files say where they came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_id: Option<String>,
}

/// Many or all indexes at once; per-index failures do not fail the whole request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiSearchRequest {
    pub query: String,
    #[serde(default)]
    pub mode: SearchMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
    /// Indexes to search; all known indexes when absent. An empty list is
    /// refused (400) rather than searching nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexes: Option<Vec<String>>,
    /// Deadline of the whole request in milliseconds (default 5 s; at most
    /// 60 s and four fifths of the server's request timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// `file`: rank files instead of chunks (answers in `files`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IndexFailure {
    pub index_id: String,
    pub error: String,
    pub retryable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MultiSearchResponse {
    pub took_ms: f64,
    pub hits: Vec<Hit>,
    /// With `group_by: file`: ranked files of every index searched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileHit>,
    pub searched: Vec<String>,
    /// Indexes not searched within the deadline (still loading, or too slow).
    pub skipped: Vec<IndexFailure>,
    /// Indexes whose search failed.
    pub failed: Vec<IndexFailure>,
}

/// Longest symbol name navigation accepts.
pub const MAX_SYMBOL_BYTES: usize = 256;

/// Checks a symbol name for `GET /v1/indexes/{id}/symbols/{name}`: 1 to
/// [`MAX_SYMBOL_BYTES`] bytes, and not `.` or `..`, which HTTP clients drop
/// from a URL path as dot segments (the request would reach another route).
pub fn check_symbol_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_SYMBOL_BYTES {
        return Err(format!("symbol name must be 1 to {MAX_SYMBOL_BYTES} bytes"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a symbol name"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SymbolRelation {
    Definition,
    References,
    Callers,
    Callees,
}

impl std::str::FromStr for SymbolRelation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "definition" => Ok(SymbolRelation::Definition),
            "references" => Ok(SymbolRelation::References),
            "callers" => Ok(SymbolRelation::Callers),
            "callees" => Ok(SymbolRelation::Callees),
            other => Err(format!(
                "unknown rel {other:?} (expected definition, references, callers or callees)"
            )),
        }
    }
}

/// One symbol reached by graph navigation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SymbolHit {
    pub symbol: String,
    pub kind: String,
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    /// Distance from the queried symbol (1 = direct).
    pub depth: u32,
    /// The symbol it was reached through (for depth > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SymbolResponse {
    pub index_id: String,
    pub version: String,
    pub symbol: String,
    pub rel: SymbolRelation,
    pub results: Vec<SymbolHit>,
}

/// Most lines one `files/{path}` read returns; a wider range is refused.
pub const MAX_READ_LINES: u32 = 2000;
/// Most text one file read returns (whole lines, but for one longer than this).
pub const MAX_READ_BYTES: usize = 256 * 1024;

/// `GET /v1/indexes/{id}/files/{path}?lines=a-b`: lines of a file as indexed
/// (from the index version, not the live repository).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileContent {
    pub index_id: String,
    pub version: String,
    pub path: String,
    pub language: String,
    /// First and last line returned (1-based, inclusive); the range asked
    /// for is cut at the end of the file.
    pub start_line: u32,
    pub end_line: u32,
    pub total_lines: u32,
    pub text: String,
    /// The text stopped at [`MAX_READ_BYTES`] before the range asked for
    /// ended; if a single line was longer than that, its start is shown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One symbol of a file's outline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutlineSymbol {
    pub symbol: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub start_line: u32,
    pub end_line: u32,
}

/// `GET /v1/indexes/{id}/outline/{path}`: the symbols a file defines, in line order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileOutline {
    pub index_id: String,
    pub version: String,
    pub path: String,
    pub language: String,
    pub symbols: Vec<OutlineSymbol>,
}

/// A `lines=a-b` range: `a-b`, `a-` (to the end) or `a` (one line), 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRange {
    pub start: u32,
    pub end: Option<u32>,
}

impl std::str::FromStr for LineRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("lines must be `a-b`, `a-` or `a` with 1 <= a <= b, got {s:?}");
        let num = |t: &str| t.trim().parse::<u32>().ok().filter(|&n| n >= 1);
        let range = match s.split_once('-') {
            Some((a, "")) => LineRange {
                start: num(a).ok_or_else(bad)?,
                end: None,
            },
            Some((a, b)) => LineRange {
                start: num(a).ok_or_else(bad)?,
                end: Some(num(b).ok_or_else(bad)?),
            },
            None => {
                let a = num(s).ok_or_else(bad)?;
                LineRange { start: a, end: Some(a) }
            }
        };
        match range.end {
            Some(end) if end < range.start => Err(bad()),
            Some(end) if end - range.start >= MAX_READ_LINES => Err(format!(
                "lines {s} spans more than {MAX_READ_LINES} lines; read it in parts"
            )),
            _ => Ok(range),
        }
    }
}

/// Residency of an index on one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResidencyState {
    Unknown,
    Cold,
    Loading,
    Hot,
    Failed,
}

impl ResidencyState {
    pub fn as_str(self) -> &'static str {
        match self {
            ResidencyState::Unknown => "unknown",
            ResidencyState::Cold => "cold",
            ResidencyState::Loading => "loading",
            ResidencyState::Hot => "hot",
            ResidencyState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IndexCounts {
    pub files: u64,
    pub chunks: u64,
    pub skipped_files: u64,
    pub source_bytes: u64,
    pub graph_nodes: u64,
    pub graph_edges: u64,
}

impl From<&crate::storage::manifest::Counts> for IndexCounts {
    fn from(c: &crate::storage::manifest::Counts) -> Self {
        IndexCounts {
            files: c.files,
            chunks: c.chunks,
            skipped_files: c.skipped_files,
            source_bytes: c.source_bytes,
            graph_nodes: c.graph_nodes,
            graph_edges: c.graph_edges,
        }
    }
}

/// An index as one shard sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShardIndexStatus {
    pub index_id: String,
    pub shard: String,
    pub state: ResidencyState,
    /// Version being served (hot) or last known in storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<IndexCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<u32>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_loaded_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<String>,
}

/// An index as the cluster sees it: one entry per owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IndexStatus {
    pub index_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<IndexCounts>,
    pub owners: Vec<ShardIndexStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IndexList {
    pub indexes: Vec<ShardIndexStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ranges_parse_and_refuse_nonsense() {
        let r = |s: &str| s.parse::<LineRange>();
        assert_eq!(r("3-9"), Ok(LineRange { start: 3, end: Some(9) }));
        assert_eq!(r("7-"), Ok(LineRange { start: 7, end: None }));
        assert_eq!(
            r("12"),
            Ok(LineRange {
                start: 12,
                end: Some(12)
            })
        );
        for bad in ["", "0-3", "9-3", "a-b", "-5", "1-2-3", "4294967296"] {
            assert!(r(bad).is_err(), "{bad:?} accepted");
        }
        let huge = r(&format!("1-{}", MAX_READ_LINES + 1)).unwrap_err();
        assert!(huge.contains("read it in parts"), "{huge}");
        assert!(r(&format!("1-{MAX_READ_LINES}")).is_ok());
    }
}
