//! Rust: items, impls (named by their self type) and their methods, `use` trees.

use tree_sitter::Node;

use crate::index::chunk::Refs;
use crate::index::chunk::code::{
    Ancestry, Def, Enclosing, Grammar, field, field_text, last_name, rows, text, type_qualifier,
};
use crate::model::SymbolKind;

/// Nesting limit of `use a::{b::{c::{...}}}` trees, against absurd inputs.
const MAX_USE_DEPTH: usize = 32;

pub(super) static GRAMMAR: Grammar = Grammar {
    language,
    classify,
    refs,
    attachable,
};

fn language() -> tree_sitter::Language {
    tree_sitter_rust::LANGUAGE.into()
}

fn attachable(kind: &str) -> bool {
    matches!(kind, "line_comment" | "block_comment" | "attribute_item")
}

fn classify<'n>(node: Node<'n>, src: &str, enclosing: Option<Enclosing>, _up: Ancestry<'_, 'n>) -> Option<Def<'n>> {
    let named = |kind| Some(Def::new(kind, field_text(node, "name", src)?, node));
    match node.kind() {
        "function_item" => {
            let kind = match enclosing {
                Some(e) if e.is_type() => SymbolKind::Method,
                _ => SymbolKind::Function,
            };
            named(kind)
        }
        "struct_item" | "union_item" => named(SymbolKind::Struct),
        "enum_item" => named(SymbolKind::Enum),
        "macro_definition" => named(SymbolKind::Function),
        "const_item" | "static_item" => named(SymbolKind::Constant),
        "type_item" => named(SymbolKind::Type),
        "trait_item" => Some(Def::container(SymbolKind::Trait, field_text(node, "name", src)?, node)),
        "mod_item" if field(node, "body").is_some() => {
            Some(Def::container(SymbolKind::Module, field_text(node, "name", src)?, node))
        }
        "impl_item" => {
            let self_type = last_name(field(node, "type")?, src)?;
            Some(Def::container(SymbolKind::Impl, self_type, node))
        }
        _ => None,
    }
}

fn refs<'t>(node: Node<'_>, src: &'t str, out: &mut Refs<'t>) {
    let row = node.start_position().row;
    match node.kind() {
        "call_expression" => {
            let Some(function) = field(node, "function") else {
                return;
            };
            if let Some(name) = last_name(function, src) {
                out.call(row, name);
            }
            if function.kind() == "scoped_identifier"
                && let Some(ty) = field(function, "path").and_then(|p| type_qualifier(p, src))
            {
                out.call(row, ty);
            }
        }
        "macro_invocation" => {
            if let Some(name) = field(node, "macro").and_then(|m| last_name(m, src)) {
                out.call(row, name);
            }
        }
        "struct_expression" => {
            if let Some(name) = field(node, "name").and_then(|n| last_name(n, src)) {
                out.call(row, name);
            }
        }
        "use_declaration" => {
            if let Some(arg) = field(node, "argument") {
                let mut paths = Vec::new();
                expand_use("", text(arg, src), 0, &mut paths);
                let (first, _) = rows(node);
                for p in paths {
                    out.import(first, p);
                }
            }
        }
        "extern_crate_declaration" => {
            if let Some(name) = field_text(node, "name", src) {
                out.import(row, name);
            }
        }
        _ => {}
    }
}

/// Expands a use tree into full paths: `a::{b, c::{D, self}, e as f, g::*}` →
/// `a::b`, `a::c::D`, `a::c`, `a::e`, `a::g`.
fn expand_use(prefix: &str, item: &str, depth: usize, out: &mut Vec<String>) {
    if depth > MAX_USE_DEPTH {
        return;
    }
    let join = |p: &str, s: &str| match (p.is_empty(), s.is_empty()) {
        (true, _) => s.to_string(),
        (_, true) => p.to_string(),
        _ => format!("{p}::{s}"),
    };
    let item = item.trim();
    if let Some(open) = item.find('{') {
        let head = item[..open].trim().trim_end_matches("::");
        let inner = item[open + 1..].trim_end();
        let inner = inner.strip_suffix('}').unwrap_or(inner);
        let prefix = join(prefix, &squash(head));
        for part in split_top_level(inner) {
            expand_use(&prefix, part, depth + 1, out);
        }
        return;
    }
    // `x as y` imports x; whitespace inside a path is insignificant.
    let path = item.split(" as ").next().unwrap_or(item);
    let path = squash(path);
    let path = path.trim_end_matches('*').trim_end_matches("::");
    match path {
        "" => {}
        "self" if !prefix.is_empty() => out.push(prefix.to_string()),
        _ => out.push(join(prefix, path)),
    }
    if path.is_empty() && !prefix.is_empty() && item.ends_with('*') {
        out.push(prefix.to_string());
    }
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Splits on commas that are not inside braces.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::chunk::test_util::*;
    use crate::index::chunk::{ChunkConfig, chunk_file};
    use crate::model::Language;

    const SRC: &str = r#"//! Server plumbing.
use std::collections::{HashMap, hash_map::Entry};
use crate::model::Chunk as C;
use super::*;

/// A running server.
#[derive(Debug)] // Debug for logs.
pub struct Server {
    routes: HashMap<String, u32>,
}

impl Server {
    /// Builds one.
    pub fn new() -> Self {
        Server { routes: HashMap::new() }
    }

    pub fn run(&self) -> std::io::Result<()> {
        self.routes.get("x").map(|v| handle(*v));
        println!("running");
        Ok(())
    }
}

impl<T: Clone> std::fmt::Display for Wrapper<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "w")
    }
}

pub trait Handler {
    fn handle(&self, id: u32);
    fn name(&self) -> &str {
        "h"
    }
}

pub enum Mode {
    Fast,
    Slow,
}

fn handle(id: u32) -> u32 {
    id
}

macro_rules! square {
    ($x:expr) => {
        $x * $x
    };
}

mod tests {
    fn helper() {}
}
"#;

    #[test]
    fn rust_symbols_kinds_parents_and_lines() {
        let chunks = chunk_file("src/server.rs", Language::Rust, SRC, &ChunkConfig::default());
        assert_content_matches_lines(SRC, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 4),
                (Some("Server"), Struct, None, 6, 10),
                (Some("Server"), Impl, None, 12, 23),
                (Some("new"), Method, Some("Server"), 13, 16),
                (Some("run"), Method, Some("Server"), 18, 22),
                (Some("Wrapper"), Impl, None, 25, 29),
                (Some("fmt"), Method, Some("Wrapper"), 26, 28),
                (Some("Handler"), Trait, None, 31, 36),
                (Some("name"), Method, Some("Handler"), 33, 35),
                (Some("Mode"), Enum, None, 38, 41),
                (Some("handle"), Function, None, 43, 45),
                (Some("square"), Function, None, 47, 51),
                (Some("tests"), Module, None, 53, 55),
                (Some("helper"), Function, Some("tests"), 54, 54),
            ]
        );
        assert_eq!(
            chunks[0].imports,
            vec![
                "crate::model::Chunk",
                "std::collections::HashMap",
                "std::collections::hash_map::Entry",
                "super"
            ]
        );
        assert_eq!(
            find(&chunks, "new", SymbolKind::Method).calls,
            vec!["HashMap", "Server", "new"]
        );
        assert_eq!(
            find(&chunks, "run", SymbolKind::Method).calls,
            vec!["Ok", "get", "handle", "map", "println"]
        );
        assert_eq!(find(&chunks, "fmt", SymbolKind::Method).calls, vec!["write"]);
    }

    #[test]
    fn rust_syntax_error_keeps_valid_symbols() {
        let src = "fn before() -> u32 {\n    1\n}\n\nfn broken( {\n    let = ;\n\nstruct After {\n    x: u32,\n}\n\nfn after() {\n    before();\n}\n";
        let chunks = chunk_file("bad.rs", Language::Rust, src, &ChunkConfig::default());
        assert_content_matches_lines(src, &chunks);
        assert_eq!(find(&chunks, "before", SymbolKind::Function).start_line, 1);
        let after = find(&chunks, "after", SymbolKind::Function);
        assert_eq!((after.start_line, after.end_line), (12, 14));
        assert_eq!(after.calls, vec!["before"]);
        // Every line with content is indexed by some chunk.
        for (i, line) in src.lines().enumerate() {
            let n = i as u32 + 1;
            let covered = chunks.iter().any(|c| (c.start_line..=c.end_line).contains(&n));
            assert!(
                line.trim().is_empty() || line.trim() == "}" || covered,
                "line {n} lost: {line}"
            );
        }
    }

    #[test]
    fn use_trees_expand() {
        let mut out = Vec::new();
        expand_use("", "a::{b, c::{D, self}, e as f, g::*}", 0, &mut out);
        assert_eq!(out, vec!["a::b", "a::c::D", "a::c", "a::e", "a::g"]);
        out.clear();
        expand_use("", "std::io::*", 0, &mut out);
        assert_eq!(out, vec!["std::io"]);
        out.clear();
        let deep = format!("{}x{}", "a::{".repeat(10_000), "}".repeat(10_000));
        expand_use("", &deep, 0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn large_impl_is_split_into_header_members_and_between_member_windows() {
        let mut src = String::from("impl Big {\n    const A: u32 = 1;\n\n");
        for i in 0..40 {
            src.push_str(&format!("    fn m{i}(&self) {{\n        work({i});\n    }}\n\n"));
            if i == 10 {
                src.push_str("    const MIDDLE: u32 = 2;\n\n");
            }
        }
        src.push_str("}\n");
        let chunks = chunk_file("big.rs", Language::Rust, &src, &ChunkConfig::default());
        assert_content_matches_lines(&src, &chunks);
        let impls: Vec<_> = chunks.iter().filter(|c| c.kind == SymbolKind::Impl).collect();
        assert_eq!(impls.len(), 1);
        assert_eq!((impls[0].start_line, impls[0].end_line), (1, 2));
        let methods = chunks.iter().filter(|c| c.kind == SymbolKind::Method).count();
        assert_eq!(methods, 40);
        assert!(
            chunks
                .iter()
                .all(|c| c.kind != SymbolKind::Method || c.parent.as_deref() == Some("Big"))
        );
        let between: Vec<_> = chunks.iter().filter(|c| c.kind == SymbolKind::Window).collect();
        assert_eq!(between.len(), 1, "{:#?}", outline(&chunks));
        assert_eq!(between[0].content.trim(), "const MIDDLE: u32 = 2;");
        assert_eq!(between[0].parent.as_deref(), Some("Big"));
        // No chunk holds the whole impl.
        assert!(chunks.iter().all(|c| c.end_line - c.start_line < 150));
    }
}
