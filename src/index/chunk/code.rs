//! The tree-sitter half of the chunker: parse once, walk the tree once to find the
//! symbols and the names they reference, then turn the symbol tree into chunks
//! (rules in the parent module). Each language (`index::lang`) contributes a [`Grammar`]: how to
//! recognise a definition, which references to record, and which preceding
//! siblings (doc comments, attributes) belong to the next definition.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use tree_sitter::{Node, ParseOptions, ParseState, Parser, Tree};

use super::{Emitter, Refs};
use crate::model::{Language, SymbolKind};

/// A pathological input must not stall a build worker; past this the file is
/// line-windowed instead.
const PARSE_BUDGET: Duration = Duration::from_secs(5);

/// Guards the small recursive helpers against absurdly nested syntax.
const MAX_NAME_DEPTH: usize = 16;

/// A definition recognised by a grammar.
pub(crate) struct Def<'t> {
    pub kind: SymbolKind,
    pub name: String,
    /// Parent that does not come from lexical nesting: a Go receiver, the `Foo` of
    /// a C++ `Foo::bar` definition.
    pub parent: Option<String>,
    /// The node whose lines the symbol covers: the definition plus wrappers such as
    /// decorators, `export`, `template<...>`.
    pub range: Node<'t>,
    /// Whether definitions nested inside belong to this symbol as members.
    pub container: bool,
}

impl<'t> Def<'t> {
    pub fn new(kind: SymbolKind, name: impl Into<String>, range: Node<'t>) -> Self {
        Def {
            kind,
            name: name.into(),
            parent: None,
            range,
            container: false,
        }
    }

    pub fn container(kind: SymbolKind, name: impl Into<String>, range: Node<'t>) -> Self {
        Def {
            container: true,
            ..Def::new(kind, name, range)
        }
    }
}

/// The innermost container symbol around a node.
#[derive(Clone, Copy)]
pub(crate) struct Enclosing {
    pub kind: SymbolKind,
}

impl Enclosing {
    /// Whether a function defined directly inside is a method of a type.
    pub fn is_type(self) -> bool {
        matches!(
            self.kind,
            SymbolKind::Class
                | SymbolKind::Struct
                | SymbolKind::Impl
                | SymbolKind::Trait
                | SymbolKind::Interface
                | SymbolKind::Enum
        )
    }
}

pub(crate) type ClassifyFn = for<'n, 's> fn(Node<'n>, &'s str, Option<Enclosing>) -> Option<Def<'n>>;
pub(crate) type RefsFn = for<'n, 't> fn(Node<'n>, &'t str, &mut Refs<'t>);

pub(crate) struct Grammar {
    pub language: fn() -> tree_sitter::Language,
    /// Recognises a definition at this node (called outside function bodies only).
    pub classify: ClassifyFn,
    /// Records calls and imports at this node (called on every named node).
    pub refs: RefsFn,
    /// Kinds of preceding siblings that belong to the next definition.
    pub attachable: fn(&str) -> bool,
}

fn grammar(language: Language) -> Option<&'static Grammar> {
    crate::index::lang::support(language).map(|s| s.grammar)
}

thread_local! {
    /// Parsers are cheap to reuse and not meant to be shared across threads: each
    /// rayon worker keeps one per language.
    static PARSERS: RefCell<Vec<(Language, Parser)>> = const { RefCell::new(Vec::new()) };
}

fn parse(language: Language, grammar: &Grammar, text: &str) -> Option<Tree> {
    let run = |parser: &mut Parser| {
        let deadline = Instant::now() + PARSE_BUDGET;
        let mut over_budget = |_: &ParseState| Instant::now() > deadline;
        let bytes = text.as_bytes();
        let tree = parser.parse_with_options(
            &mut |i, _| bytes.get(i..).unwrap_or_default(),
            None,
            Some(ParseOptions::new().progress_callback(&mut over_budget)),
        );
        if tree.is_none() {
            // A cancelled parse would otherwise resume on the next call.
            parser.reset();
        }
        tree
    };
    let new_parser = || {
        let mut parser = Parser::new();
        parser.set_language(&(grammar.language)()).ok().map(|()| parser)
    };
    PARSERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut parsers) => {
            if let Some((_, parser)) = parsers.iter_mut().find(|(l, _)| *l == language) {
                return run(parser);
            }
            let mut parser = new_parser()?;
            let tree = run(&mut parser);
            parsers.push((language, parser));
            tree
        }
        // Only reachable through re-entrance; a throwaway parser is still correct.
        Err(_) => run(&mut new_parser()?),
    })
}

/// A symbol found in the tree, with 0-based inclusive rows.
struct Sym {
    kind: SymbolKind,
    name: String,
    parent: Option<String>,
    first: usize,
    last: usize,
    children: Vec<usize>,
}

enum Scope {
    Container(usize),
    /// Inside a non-container definition (a function body): no symbols here.
    Opaque,
}

/// Chunks a code file; false when the language has no grammar or parsing failed,
/// and the caller should fall back to line windows.
pub(crate) fn chunk_code(language: Language, out: &mut Emitter<'_>) -> bool {
    let Some(grammar) = grammar(language) else {
        return false;
    };
    let Some(tree) = parse(language, grammar, out.text) else {
        return false;
    };
    let mut refs = Refs::default();
    let (syms, top) = collect(&tree, out, grammar, &mut refs);
    out.set_refs(refs);

    let mut covered = vec![false; out.lines.count()];
    for &i in &top {
        emit(&syms, i, out);
        covered[syms[i].first..=syms[i].last].iter_mut().for_each(|c| *c = true);
    }
    emit_gaps(&covered, 0, out.lines.count() - 1, None, out);
    true
}

/// Rows of a node, 0-based inclusive; a node ending at column 0 of a line ends on
/// the line before.
pub(crate) fn rows(node: Node<'_>) -> (usize, usize) {
    let first = node.start_position().row;
    let end = node.end_position();
    let last = if end.column == 0 && end.row > first {
        end.row - 1
    } else {
        end.row
    };
    (first, last)
}

/// One depth-first pass: records references at every node and symbols outside
/// function bodies. Iterative, because expression trees can nest thousands deep.
fn collect<'t>(tree: &Tree, out: &Emitter<'t>, grammar: &Grammar, refs: &mut Refs<'t>) -> (Vec<Sym>, Vec<usize>) {
    let src = out.text;
    let mut syms: Vec<Sym> = Vec::new();
    let mut top: Vec<usize> = Vec::new();
    let mut scopes: Vec<(usize, Scope)> = Vec::new();
    let mut cursor = tree.walk();
    let mut depth = 0usize;
    loop {
        let node = cursor.node();
        while scopes.last().is_some_and(|(d, _)| *d >= depth) {
            scopes.pop();
        }
        if node.is_named() {
            (grammar.refs)(node, src, refs);
            let container = match scopes.last() {
                Some((_, Scope::Opaque)) => None,
                Some((_, Scope::Container(i))) => Some(Some(*i)),
                None => Some(None),
            };
            if let Some(container) = container {
                let enclosing = container.map(|i| Enclosing { kind: syms[i].kind });
                if let Some(def) = (grammar.classify)(node, src, enclosing) {
                    let (first, last) = symbol_rows(&def, out, grammar);
                    // Zero-width nodes at the end of input can sit one row past the text.
                    let last = last.min(out.lines.count() - 1);
                    let first = first.min(last);
                    let small_decl = matches!(def.kind, SymbolKind::Constant | SymbolKind::Type) && first == last;
                    if !small_decl && !def.name.is_empty() {
                        let idx = syms.len();
                        let parent = def.parent.or_else(|| container.map(|i| syms[i].name.clone()));
                        syms.push(Sym {
                            kind: def.kind,
                            name: def.name,
                            parent,
                            first,
                            last,
                            children: Vec::new(),
                        });
                        match container {
                            Some(c) => syms[c].children.push(idx),
                            None => top.push(idx),
                        }
                        scopes.push((
                            depth,
                            if def.container {
                                Scope::Container(idx)
                            } else {
                                Scope::Opaque
                            },
                        ));
                    }
                }
            }
        }
        if cursor.goto_first_child() {
            depth += 1;
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return (syms, top);
            }
            depth -= 1;
        }
    }
}

/// The rows a definition covers, extended upward over attached comments and
/// attributes that start their own line and are not separated by a blank line.
fn symbol_rows(def: &Def<'_>, out: &Emitter<'_>, grammar: &Grammar) -> (usize, usize) {
    let (mut first, last) = rows(def.range);
    let mut prev = def.range.prev_sibling();
    while let Some(p) = prev {
        if !(grammar.attachable)(p.kind()) {
            break;
        }
        let (p_first, p_last) = rows(p);
        if p_last + 1 < first {
            break;
        }
        // A comment trailing code on its line belongs to that code, unless the code
        // is itself attached (`#[allow(x)] // why`).
        let line_start = out.lines.start_of(p_first);
        let before = out.text.get(line_start..p.start_byte()).unwrap_or("");
        let shares_line_with_attached = p
            .prev_sibling()
            .is_some_and(|pp| (grammar.attachable)(pp.kind()) && rows(pp).1 == p_first);
        if !before.trim().is_empty() && !shares_line_with_attached {
            break;
        }
        first = p_first.min(first);
        prev = p.prev_sibling();
    }
    (first, last)
}

fn emit(syms: &[Sym], idx: usize, out: &mut Emitter<'_>) {
    let s = &syms[idx];
    let (kind, name, parent) = (s.kind, Some(s.name.as_str()), s.parent.as_deref());
    if s.children.is_empty() || s.last - s.first < out.cfg.max_chunk_lines {
        out.region(kind, name, parent, s.first, s.last, false);
    } else {
        // Large container: header, members, and what lies between members.
        let first_member = s.children.iter().map(|&c| syms[c].first).min().unwrap_or(s.first);
        let mut header_last = first_member.saturating_sub(1).max(s.first);
        while header_last > s.first && out.is_blank(header_last) {
            header_last -= 1;
        }
        out.region(kind, name, parent, s.first, header_last, false);
        let mut covered = vec![false; s.last - s.first + 1];
        covered[..=header_last - s.first].iter_mut().for_each(|c| *c = true);
        for &c in &s.children {
            let (a, b) = (syms[c].first.max(s.first), syms[c].last.min(s.last));
            if a <= b {
                covered[a - s.first..=b - s.first].iter_mut().for_each(|c| *c = true);
            }
        }
        emit_gaps(&covered, s.first, s.last, name, out);
    }
    for &c in &s.children {
        emit(syms, c, out);
    }
}

/// Emits a window chunk for each maximal run of uncovered rows in `first..=last`;
/// `covered[i]` is row `first + i`.
fn emit_gaps(covered: &[bool], first: usize, last: usize, parent: Option<&str>, out: &mut Emitter<'_>) {
    let mut row = first;
    while row <= last {
        if covered[row - first] {
            row += 1;
            continue;
        }
        let start = row;
        while row <= last && !covered[row - first] {
            row += 1;
        }
        out.code_gap(parent, start, row - 1);
    }
}

// ---------------------------------------------------------------------------
// Helpers shared by the grammars.

/// Source text of a node ("" if the range is somehow not on a char boundary).
pub(crate) fn text<'t>(node: Node<'_>, src: &'t str) -> &'t str {
    src.get(node.byte_range()).unwrap_or("")
}

pub(crate) fn field<'n>(node: Node<'n>, name: &str) -> Option<Node<'n>> {
    node.child_by_field_name(name)
}

pub(crate) fn field_text<'t>(node: Node<'_>, name: &str, src: &'t str) -> Option<&'t str> {
    field(node, name).map(|n| text(n, src))
}

fn is_identifier_kind(kind: &str) -> bool {
    kind.ends_with("identifier") || kind == "identifier" || kind == "constant" || kind == "name"
}

/// The final identifier of a callee or type expression: `self.foo.bar` → `bar`,
/// `a::b::c` → `c`, `Vec<T>` → `Vec`, `*Foo` → `Foo`.
pub(crate) fn last_name<'t>(node: Node<'_>, src: &'t str) -> Option<&'t str> {
    let mut node = node;
    for _ in 0..MAX_NAME_DEPTH {
        let kind = node.kind();
        if is_identifier_kind(kind) && node.named_child_count() == 0 {
            return Some(text(node, src));
        }
        let next = match kind {
            // Generic instantiations: the name is the type, not its arguments.
            "generic_type" | "template_type" | "template_function" | "template_method" | "generic_function" => {
                field(node, "name")
                    .or_else(|| field(node, "type"))
                    .or_else(|| field(node, "function"))
                    .or_else(|| node.named_child(0))
            }
            _ => [
                "name",
                "field",
                "property",
                "attribute",
                "function",
                "type",
                "constructor",
            ]
            .iter()
            .find_map(|f| field(node, f))
            .or_else(|| node.named_child(node.named_child_count().checked_sub(1)?)),
        };
        node = next?;
    }
    None
}

/// The type name a qualified call goes through, when it looks like a type
/// (`Foo::new` → `Foo`, but not `std::mem::take` → `mem`).
pub(crate) fn type_qualifier<'t>(qualifier: Node<'_>, src: &'t str) -> Option<&'t str> {
    let name = last_name(qualifier, src)?;
    name.chars().next().is_some_and(char::is_uppercase).then_some(name)
}

/// Strips the quotes of a string literal (`"x"`, `'x'`, `` `x` ``, `<x>`).
pub(crate) fn unquote(s: &str) -> &str {
    let s = s.trim();
    let s = s.strip_prefix(['"', '\'', '`', '<']).unwrap_or(s);
    s.strip_suffix(['"', '\'', '`', '>']).unwrap_or(s)
}

/// Whether a node's parent is of one of `kinds`, returning the parent.
pub(crate) fn parent_of_kind<'n>(node: Node<'n>, kinds: &[&str]) -> Option<Node<'n>> {
    node.parent().filter(|p| kinds.contains(&p.kind()))
}

/// Extends a definition node outward through wrapper parents (decorators,
/// `export`, `template<...>`) so the symbol covers them.
pub(crate) fn widen<'n>(mut node: Node<'n>, wrappers: &[&str]) -> Node<'n> {
    while let Some(p) = parent_of_kind(node, wrappers) {
        node = p;
    }
    node
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{ChunkConfig, chunk_file};
    use super::*;

    #[test]
    fn parsers_are_reused_per_thread_and_work_across_threads() {
        let src = "fn a() { b(); }\n";
        let first = chunk_file("a.rs", Language::Rust, src, &ChunkConfig::default());
        let again = chunk_file("a.rs", Language::Rust, src, &ChunkConfig::default());
        assert_eq!(first, again);
        PARSERS.with(|p| assert_eq!(p.borrow().iter().filter(|(l, _)| *l == Language::Rust).count(), 1));
        let other = std::thread::spawn(move || chunk_file("a.rs", Language::Rust, src, &ChunkConfig::default()))
            .join()
            .expect("worker thread");
        assert_eq!(first, other);
    }

    #[test]
    fn deeply_nested_expressions_do_not_overflow() {
        let mut src = String::from("fn deep() -> u32 {\n    let x = ");
        for _ in 0..20_000 {
            src.push_str("1 + ");
        }
        src.push_str("1;\n    x\n}\n");
        let chunks = chunk_file("deep.rs", Language::Rust, &src, &ChunkConfig::default());
        assert_eq!(outline(&chunks), vec![(Some("deep"), SymbolKind::Function, None, 1, 4)]);
    }

    #[test]
    fn every_code_language_survives_garbage() {
        let garbage = "}{ ))( fn class def func <<< \"unterminated\n\0 \u{1F600} ;;; #include <\n";
        for lang in Language::ALL.into_iter().filter(|l| l.is_code()) {
            let chunks = chunk_file("g", lang, garbage, &ChunkConfig::default());
            assert!(!chunks.is_empty(), "{lang}");
            assert_content_matches_lines(garbage, &chunks);
        }
    }
}
