//! Turns API responses into the compact text an agent reads.
//!
//! An agent's context window is the scarce resource: each hit gets one header
//! line it can act on directly (`path:start-end`, symbol, kind, score), one
//! line saying *why* it ranked (the per-arm ranks and the graph relation), and
//! a few snippet lines — never whole files. The full JSON still travels as
//! structured content for clients that want it. Errors always state the code,
//! whether retrying makes sense, and how long to wait.

use super::client::BackendError;
use crate::api::{
    Arms, FileContent, FileHit, FileOutline, Hit, IndexFailure, IndexList, IndexStatus, MAX_READ_BYTES,
    MultiSearchResponse, SearchResponse, ShardIndexStatus, SymbolRelation, SymbolResponse,
};
use std::fmt::Write;

/// Snippet lines shown per hit; the rest is elided with a count.
pub const SNIPPET_LINES: usize = 8;
/// Characters kept per snippet line.
const SNIPPET_LINE_CHARS: usize = 160;

/// A search over one index.
pub fn search_text(resp: &SearchResponse) -> String {
    let mut out = format!(
        "index {} · version {} · mode {} · {} hit{} · {:.1} ms\n",
        resp.index_id,
        resp.version,
        resp.mode.as_str(),
        resp.hits.len(),
        plural(resp.hits.len()),
        resp.took_ms
    );
    if !resp.unavailable_arms.is_empty() {
        let _ = writeln!(
            out,
            "note: this index cannot serve the {} arm(s); results come from the others",
            resp.unavailable_arms.join(", ")
        );
    }
    if resp.hits.is_empty() && resp.files.is_empty() {
        out.push_str("no hits; try other words, mode bm25 for exact identifiers, or fewer filters\n");
    }
    for (i, hit) in resp.hits.iter().enumerate() {
        push_hit(&mut out, i + 1, hit);
    }
    for (i, file) in resp.files.iter().enumerate() {
        push_file(&mut out, i + 1, file);
    }
    out
}

/// A ranked file: its path and score, then the line ranges of its best chunks.
fn push_file(out: &mut String, n: usize, file: &FileHit) {
    let index = file.index_id.as_deref().map(|i| format!("[{i}] ")).unwrap_or_default();
    let _ = writeln!(
        out,
        "{n}. {index}{}  ({})  score {:.3}",
        file.path, file.language, file.score
    );
    for c in &file.chunks {
        let _ = writeln!(
            out,
            "   {}-{}  {} ({})",
            c.start_line,
            c.end_line,
            c.symbol.as_deref().unwrap_or("-"),
            c.kind
        );
    }
}

/// A search over many indexes, with the ones that were skipped or failed.
pub fn multi_search_text(resp: &MultiSearchResponse) -> String {
    let mut out = format!(
        "searched {} index{} ({}) · {} hit{} · {:.1} ms\n",
        resp.searched.len(),
        if resp.searched.len() == 1 { "" } else { "es" },
        if resp.searched.is_empty() {
            "none".to_string()
        } else {
            resp.searched.join(", ")
        },
        resp.hits.len(),
        plural(resp.hits.len()),
        resp.took_ms
    );
    push_failures(
        &mut out,
        "skipped (cold, loading or past the deadline; they warm up, retry later)",
        &resp.skipped,
    );
    push_failures(&mut out, "failed", &resp.failed);
    if resp.hits.is_empty() && resp.files.is_empty() {
        out.push_str("no hits\n");
    }
    for (i, hit) in resp.hits.iter().enumerate() {
        push_hit(&mut out, i + 1, hit);
    }
    for (i, file) in resp.files.iter().enumerate() {
        push_file(&mut out, i + 1, file);
    }
    out
}

/// Graph navigation: definition, references, callers or callees; `limit` is
/// what was asked for, so a full page can say there may be more.
pub fn symbols_text(resp: &SymbolResponse, limit: usize) -> String {
    let what = match resp.rel {
        SymbolRelation::Definition => "definition",
        SymbolRelation::References => "references",
        SymbolRelation::Callers => "callers",
        SymbolRelation::Callees => "callees",
    };
    let mut out = format!(
        "{what} of `{}` in index {} (version {}): {} result{}\n",
        resp.symbol,
        resp.index_id,
        resp.version,
        resp.results.len(),
        plural(resp.results.len())
    );
    if resp.results.is_empty() {
        let _ = writeln!(
            out,
            "nothing found; the name is matched exactly (case-insensitive) — try `search` with mode bm25 to find the right spelling"
        );
    }
    for r in &resp.results {
        let _ = write!(
            out,
            "- {}:{}-{}  {} ({})",
            r.path, r.start_line, r.end_line, r.symbol, r.kind
        );
        if resp.rel == SymbolRelation::Callers || resp.rel == SymbolRelation::Callees {
            let _ = write!(out, "  depth {}", r.depth);
            if let Some(via) = &r.via {
                let _ = write!(out, " via {via}");
            }
        }
        out.push('\n');
    }
    if resp.results.len() >= limit {
        let _ = writeln!(out, "… limit of {limit} reached; there may be more (raise `limit`)");
    }
    out
}

/// Lines of a file, numbered like an editor shows them.
pub fn file_text(f: &FileContent) -> String {
    let mut out = format!(
        "{} lines {}-{} of {} ({}, index {} version {})\n",
        f.path, f.start_line, f.end_line, f.total_lines, f.language, f.index_id, f.version
    );
    let width = f.end_line.max(1).to_string().len();
    for (i, line) in f.text.lines().enumerate() {
        let _ = writeln!(out, "{:>width$} | {line}", f.start_line as usize + i);
    }
    if f.truncated {
        let _ = writeln!(
            out,
            "… stopped at {} KiB of text (a line longer than that is cut)",
            MAX_READ_BYTES / 1024
        );
    }
    if f.end_line < f.total_lines {
        let _ = writeln!(
            out,
            "… {} more lines; read from line {} to continue",
            f.total_lines - f.end_line,
            f.end_line + 1
        );
    }
    out
}

/// A file's symbols, one line each as `start-end  symbol (kind)`, members
/// indented under their parent; `total` counts those left out of `o`.
pub fn outline_text(o: &FileOutline, total: usize) -> String {
    let mut out = format!(
        "outline of {} ({}, index {} version {}): {} symbol{}\n",
        o.path,
        o.language,
        o.index_id,
        o.version,
        total,
        plural(total)
    );
    for s in &o.symbols {
        let indent = if s.parent.is_some() { "  " } else { "" };
        let _ = write!(
            out,
            "{indent}- {}-{}  {} ({})",
            s.start_line, s.end_line, s.symbol, s.kind
        );
        if let Some(p) = &s.parent {
            let _ = write!(out, " in {p}");
        }
        out.push('\n');
    }
    if total > o.symbols.len() {
        let _ = writeln!(
            out,
            "… {} more symbols not listed; `read_code` from line {} to see the rest",
            total - o.symbols.len(),
            o.symbols.last().map_or(1, |s| s.end_line + 1)
        );
    }
    out
}

/// Every index the API knows, one line each.
pub fn index_list_text(list: &IndexList) -> String {
    if list.indexes.is_empty() {
        return "no indexes are registered\n".to_string();
    }
    let mut out = format!(
        "{} index entr{}:\n",
        list.indexes.len(),
        if list.indexes.len() == 1 { "y" } else { "ies" }
    );
    for s in &list.indexes {
        let _ = write!(out, "- {}: ", s.index_id);
        push_owner(&mut out, s);
        out.push('\n');
    }
    out
}

/// One index: version, counts, and its state on each owning shard.
pub fn index_status_text(st: &IndexStatus) -> String {
    let mut out = format!(
        "index {} · version {}\n",
        st.index_id,
        st.version.as_deref().unwrap_or("none published")
    );
    if let Some(c) = &st.counts {
        let _ = writeln!(
            out,
            "{} files ({} skipped), {} chunks, {} source bytes, graph {} nodes / {} edges",
            c.files, c.skipped_files, c.chunks, c.source_bytes, c.graph_nodes, c.graph_edges
        );
    }
    if st.owners.is_empty() {
        out.push_str("no shard owns it right now\n");
    }
    for o in &st.owners {
        let _ = write!(out, "- shard {}: ", o.shard);
        push_owner(&mut out, o);
        out.push('\n');
    }
    out
}

/// The text of a failed call: code, message, index, and the retry advice.
pub fn error_text(err: &BackendError) -> String {
    let mut out = format!("error: {}", err.code());
    if let Some(status) = err.status() {
        let _ = write!(out, " (HTTP {status})");
    }
    let _ = write!(out, ": {}", err.message());
    if let Some(id) = err.index_id() {
        let _ = write!(out, "\nindex: {id}");
    }
    let _ = write!(out, "\nretryable: {}", err.retryable());
    if let Some(secs) = err.retry_after_secs() {
        let _ = write!(out, "\nretry_after_secs: {secs}");
    }
    if err.code() == "index_not_found" {
        out.push_str("\nhint: call list_indexes for the ids that exist");
    }
    out.push('\n');
    out
}

fn push_hit(out: &mut String, n: usize, hit: &Hit) {
    let _ = write!(out, "\n{n}. ");
    if let Some(index) = &hit.index_id {
        let _ = write!(out, "[{index}] ");
    }
    let _ = write!(out, "{}:{}-{}", hit.path, hit.start_line, hit.end_line);
    match &hit.symbol {
        Some(sym) => {
            let _ = write!(out, "  {sym} ({}, {})", hit.kind, hit.language);
        }
        None => {
            let _ = write!(out, "  ({}, {})", hit.kind, hit.language);
        }
    }
    let _ = writeln!(out, "  score {:.4}", hit.score);
    if let Some(why) = reasons(&hit.arms) {
        let _ = writeln!(out, "   why: {why}");
    }
    push_snippet(out, &hit.snippet);
}

/// `bm25 #1 (7.21) · vector #3 (0.612) · graph: called_by load_config (+0.100)`.
pub fn reasons(arms: &Arms) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(a) = &arms.bm25 {
        parts.push(format!("bm25 #{} ({:.3})", a.rank, a.score));
    }
    if let Some(a) = &arms.vector {
        parts.push(format!("vector #{} ({:.3})", a.rank, a.score));
    }
    if let Some(g) = &arms.graph {
        parts.push(format!("graph: {} {} (+{:.3})", g.relation, g.via, g.boost));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

fn push_snippet(out: &mut String, snippet: &str) {
    let lines: Vec<&str> = snippet.trim_end().lines().collect();
    for line in lines.iter().take(SNIPPET_LINES) {
        let mut shown: String = line.chars().take(SNIPPET_LINE_CHARS).collect();
        if shown.len() < line.len() {
            shown.push('…');
        }
        let _ = writeln!(out, "   | {shown}");
    }
    if lines.len() > SNIPPET_LINES {
        let _ = writeln!(out, "   | … {} more lines", lines.len() - SNIPPET_LINES);
    }
}

fn push_failures(out: &mut String, label: &str, list: &[IndexFailure]) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "{label}:");
    for f in list {
        let _ = writeln!(out, "- {}: {} (retryable: {})", f.index_id, f.error, f.retryable);
    }
}

fn push_owner(out: &mut String, s: &ShardIndexStatus) {
    let _ = write!(out, "{}", s.state.as_str());
    if let Some(v) = &s.version {
        let _ = write!(out, ", version {v}");
    }
    if let Some(c) = &s.counts {
        let _ = write!(out, ", {} files, {} chunks", c.files, c.chunks);
    }
    if !s.shard.is_empty() {
        let _ = write!(out, " (shard {})", s.shard);
    }
    if let Some(e) = &s.last_error {
        let _ = write!(out, "; last error: {e}");
    }
    if let Some(n) = s.failed_attempts.filter(|n| *n > 0) {
        let _ = write!(out, "; {n} failed attempt{}", plural(n as usize));
    }
    if let Some(t) = &s.next_retry_at {
        let _ = write!(out, "; next retry at {t}");
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        ArmScore, ErrorBody, GraphReason, IndexCounts, OutlineSymbol, ResidencyState, SearchMode, SymbolHit,
    };

    fn hit(symbol: Option<&str>, snippet: &str) -> Hit {
        Hit {
            path: "src/config.rs".into(),
            start_line: 4,
            end_line: 7,
            symbol: symbol.map(str::to_string),
            kind: "function".into(),
            language: "rust".into(),
            snippet: snippet.into(),
            score: 0.8123,
            arms: Arms {
                bm25: Some(ArmScore { rank: 1, score: 7.2106 }),
                vector: None,
                graph: Some(GraphReason {
                    relation: "called_by".into(),
                    via: "start".into(),
                    boost: 0.1,
                }),
            },
            index_id: None,
        }
    }

    #[test]
    fn search_hits_show_location_symbol_score_reasons_and_snippet() {
        let resp = SearchResponse {
            index_id: "demo".into(),
            version: "v1".into(),
            took_ms: 3.25,
            mode: SearchMode::Hybrid,
            hits: vec![hit(
                Some("load_config"),
                "pub fn load_config(path: &str) -> Config {\n    parse(path)\n}\n",
            )],
            files: vec![],
            unavailable_arms: vec!["vector".into()],
        };
        let text = search_text(&resp);
        assert!(
            text.starts_with("index demo · version v1 · mode hybrid · 1 hit · 3.2 ms\n"),
            "{text}"
        );
        assert!(text.contains("cannot serve the vector arm"), "{text}");
        assert!(
            text.contains("1. src/config.rs:4-7  load_config (function, rust)  score 0.8123\n"),
            "{text}"
        );
        assert!(
            text.contains("   why: bm25 #1 (7.211) · graph: called_by start (+0.100)\n"),
            "{text}"
        );
        assert!(
            text.contains("   | pub fn load_config(path: &str) -> Config {\n   |     parse(path)\n   | }\n"),
            "{text}"
        );
    }

    #[test]
    fn long_snippets_are_cut_and_counted() {
        let snippet: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let long_line = "x".repeat(400);
        let resp = SearchResponse {
            index_id: "demo".into(),
            version: "v1".into(),
            took_ms: 1.0,
            mode: SearchMode::Bm25,
            hits: vec![hit(None, &snippet), hit(Some("f"), &long_line)],
            files: vec![],
            unavailable_arms: vec![],
        };
        let text = search_text(&resp);
        assert!(text.contains("line 7\n"), "{text}");
        assert!(!text.contains("line 8\n"), "{text}");
        assert!(text.contains("… 12 more lines"), "{text}");
        assert!(text.contains(&format!("   | {}…\n", "x".repeat(SNIPPET_LINE_CHARS))));
        assert!(text.contains("1. src/config.rs:4-7  (function, rust)"), "{text}");
    }

    #[test]
    fn empty_search_says_so() {
        let resp = SearchResponse {
            index_id: "demo".into(),
            version: "v1".into(),
            took_ms: 1.0,
            mode: SearchMode::Hybrid,
            hits: vec![],
            files: vec![],
            unavailable_arms: vec![],
        };
        assert!(search_text(&resp).contains("0 hits"));
        assert!(search_text(&resp).contains("no hits"));
    }

    #[test]
    fn multi_search_names_indexes_and_failures() {
        let mut h = hit(Some("load_config"), "fn x() {}");
        h.index_id = Some("demo".into());
        let resp = MultiSearchResponse {
            took_ms: 9.0,
            hits: vec![h],
            files: vec![],
            searched: vec!["demo".into(), "other".into()],
            skipped: vec![IndexFailure {
                index_id: "cold".into(),
                error: "index_loading".into(),
                retryable: true,
            }],
            failed: vec![IndexFailure {
                index_id: "broken".into(),
                error: "internal".into(),
                retryable: false,
            }],
        };
        let text = multi_search_text(&resp);
        assert!(text.starts_with("searched 2 indexes (demo, other) · 1 hit"), "{text}");
        assert!(
            text.contains("skipped (cold, loading or past the deadline; they warm up, retry later):\n- cold: index_loading (retryable: true)"),
            "{text}"
        );
        assert!(
            text.contains("failed:\n- broken: internal (retryable: false)"),
            "{text}"
        );
        assert!(text.contains("1. [demo] src/config.rs:4-7  load_config"), "{text}");
    }

    #[test]
    fn call_graph_results_show_depth_and_via() {
        let resp = SymbolResponse {
            index_id: "demo".into(),
            version: "v1".into(),
            symbol: "parse_config".into(),
            rel: SymbolRelation::Callers,
            results: vec![
                SymbolHit {
                    symbol: "load_config".into(),
                    kind: "function".into(),
                    path: "src/config.rs".into(),
                    start_line: 4,
                    end_line: 7,
                    depth: 1,
                    via: None,
                },
                SymbolHit {
                    symbol: "start".into(),
                    kind: "method".into(),
                    path: "src/server.rs".into(),
                    start_line: 6,
                    end_line: 9,
                    depth: 2,
                    via: Some("load_config".into()),
                },
            ],
        };
        let text = symbols_text(&resp, 50);
        assert!(!text.contains("limit of"), "{text}");
        assert!(symbols_text(&resp, 2).contains("limit of 2 reached"));
        assert!(
            text.starts_with("callers of `parse_config` in index demo (version v1): 2 results\n"),
            "{text}"
        );
        assert!(
            text.contains("- src/config.rs:4-7  load_config (function)  depth 1\n"),
            "{text}"
        );
        assert!(
            text.contains("- src/server.rs:6-9  start (method)  depth 2 via load_config\n"),
            "{text}"
        );
        let def = SymbolResponse {
            rel: SymbolRelation::Definition,
            results: vec![],
            ..resp
        };
        let text = symbols_text(&def, 50);
        assert!(text.contains("definition of `parse_config`"), "{text}");
        assert!(text.contains("nothing found"), "{text}");
    }

    fn owner(state: ResidencyState) -> ShardIndexStatus {
        ShardIndexStatus {
            index_id: "demo".into(),
            shard: "s0".into(),
            state,
            version: Some("v1".into()),
            counts: Some(IndexCounts {
                files: 4,
                chunks: 12,
                ..Default::default()
            }),
            bytes: None,
            last_error: None,
            failed_attempts: None,
            last_loaded_at: None,
            next_retry_at: None,
        }
    }

    #[test]
    fn file_text_numbers_lines_and_says_how_to_continue() {
        let f = FileContent {
            index_id: "demo".into(),
            version: "v1".into(),
            path: "src/lib.rs".into(),
            language: "rust".into(),
            start_line: 9,
            end_line: 10,
            total_lines: 12,
            text: "fn a() {}\nfn b() {}\n".into(),
            truncated: false,
        };
        let text = file_text(&f);
        assert!(text.starts_with("src/lib.rs lines 9-10 of 12 (rust"), "{text}");
        assert!(text.contains(" 9 | fn a() {}\n10 | fn b() {}\n"), "{text}");
        assert!(text.contains("2 more lines; read from line 11"), "{text}");
        let o = FileOutline {
            index_id: "demo".into(),
            version: "v1".into(),
            path: "src/lib.rs".into(),
            language: "rust".into(),
            symbols: vec![
                OutlineSymbol {
                    symbol: "Server".into(),
                    kind: "impl".into(),
                    parent: None,
                    start_line: 1,
                    end_line: 9,
                },
                OutlineSymbol {
                    symbol: "run".into(),
                    kind: "method".into(),
                    parent: Some("Server".into()),
                    start_line: 2,
                    end_line: 8,
                },
            ],
        };
        let text = outline_text(&o, 2);
        assert!(
            text.contains("- 1-9  Server (impl)\n  - 2-8  run (method) in Server\n"),
            "{text}"
        );
        assert!(!text.contains("more symbols"), "{text}");
        let text = outline_text(&o, 7);
        assert!(text.contains(": 7 symbols\n"), "{text}");
        assert!(
            text.contains("5 more symbols not listed; `read_code` from line 9"),
            "{text}"
        );
    }

    #[test]
    fn index_list_and_status() {
        let mut failed = owner(ResidencyState::Failed);
        failed.index_id = "bad".into();
        failed.last_error = Some("checksum mismatch".into());
        failed.failed_attempts = Some(2);
        let list = IndexList {
            indexes: vec![owner(ResidencyState::Hot), failed],
        };
        let text = index_list_text(&list);
        assert!(
            text.contains("- demo: hot, version v1, 4 files, 12 chunks (shard s0)\n"),
            "{text}"
        );
        assert!(
            text.contains("- bad: failed, version v1, 4 files, 12 chunks (shard s0); last error: checksum mismatch; 2 failed attempts\n"),
            "{text}"
        );
        assert_eq!(
            index_list_text(&IndexList { indexes: vec![] }),
            "no indexes are registered\n"
        );

        let st = IndexStatus {
            index_id: "demo".into(),
            version: Some("v1".into()),
            counts: Some(IndexCounts {
                files: 4,
                chunks: 12,
                skipped_files: 1,
                source_bytes: 900,
                graph_nodes: 7,
                graph_edges: 5,
            }),
            owners: vec![owner(ResidencyState::Cold)],
        };
        let text = index_status_text(&st);
        assert!(text.starts_with("index demo · version v1\n"), "{text}");
        assert!(
            text.contains("4 files (1 skipped), 12 chunks, 900 source bytes, graph 7 nodes / 5 edges"),
            "{text}"
        );
        assert!(text.contains("- shard s0: cold, version v1"), "{text}");
    }

    #[test]
    fn errors_carry_code_retryability_and_retry_after() {
        let err = BackendError::Api {
            status: 503,
            body: ErrorBody {
                error: "index_loading".into(),
                message: "index \"demo\" is loading".into(),
                index_id: Some("demo".into()),
                retryable: true,
            },
            retry_after_secs: Some(2),
        };
        assert_eq!(
            error_text(&err),
            "error: index_loading (HTTP 503): index \"demo\" is loading\nindex: demo\nretryable: true\nretry_after_secs: 2\n"
        );
        let err = BackendError::Api {
            status: 404,
            body: ErrorBody {
                error: "index_not_found".into(),
                message: "index \"nope\" does not exist".into(),
                index_id: Some("nope".into()),
                retryable: false,
            },
            retry_after_secs: None,
        };
        let text = error_text(&err);
        assert!(text.contains("retryable: false"), "{text}");
        assert!(!text.contains("retry_after"), "{text}");
        assert!(text.contains("hint: call list_indexes"), "{text}");
    }
}
