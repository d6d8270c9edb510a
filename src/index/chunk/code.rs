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

/// Chunking one parsed file past this falls back to line windows too: a
/// pathological tree must not stall a build worker after it parsed in time.
const CHUNK_BUDGET: Duration = Duration::from_secs(5);

/// Guards the small recursive helpers against absurdly nested syntax.
const MAX_NAME_DEPTH: usize = 16;

/// Containers nested deeper than this are not symbols of their own; their
/// text stays in the enclosing one, so chunk counts and emission stay bounded.
const MAX_CONTAINER_DEPTH: usize = 64;

/// How far up the walk's path [`Ancestry`] looks for a node: wrappers and
/// bindings sit a few levels above the definition.
const MAX_ANCESTRY_LOOKUP: usize = 16;

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

/// The nodes from the root down to the one being classified (that one last),
/// as the walk keeps them: `Node::parent` searches down from the root, so
/// calling it at every node of a deep tree costs time quadratic in its depth.
#[derive(Clone, Copy)]
pub(crate) struct Ancestry<'a, 'n> {
    path: &'a [Node<'n>],
}

impl<'a, 'n> Ancestry<'a, 'n> {
    /// Where `node` is on the path, when it is one of its last few nodes.
    fn position(self, node: Node<'n>) -> Option<usize> {
        let low = self.path.len().saturating_sub(MAX_ANCESTRY_LOOKUP);
        (low..self.path.len()).rev().find(|&i| self.path[i].id() == node.id())
    }

    /// The parent of `node` (the classified node or one of its near ancestors).
    pub fn parent(self, node: Node<'n>) -> Option<Node<'n>> {
        let i = self.position(node)?;
        i.checked_sub(1).map(|i| self.path[i])
    }

    /// The parent of `node` when it is of one of `kinds`.
    pub fn parent_of_kind(self, node: Node<'n>, kinds: &[&str]) -> Option<Node<'n>> {
        self.parent(node).filter(|p| kinds.contains(&p.kind()))
    }

    /// Extends a definition node outward through wrapper parents (decorators,
    /// `export`, `template<...>`) so the symbol covers them.
    pub fn widen(self, node: Node<'n>, wrappers: &[&str]) -> Node<'n> {
        let Some(mut i) = self.position(node) else {
            return node;
        };
        while i > 0 && wrappers.contains(&self.path[i - 1].kind()) {
            i -= 1;
        }
        self.path[i]
    }
}

pub(crate) type ClassifyFn =
    for<'n, 's, 'a> fn(Node<'n>, &'s str, Option<Enclosing>, Ancestry<'a, 'n>) -> Option<Def<'n>>;
pub(crate) type RefsFn = for<'n, 't> fn(Node<'n>, &'t str, &mut Refs<'t>);

pub(crate) struct Grammar {
    pub language: fn() -> tree_sitter::Language,
    /// Recognises a definition at this node (called outside function bodies
    /// only); looks upward through the [`Ancestry`], never `Node::parent`.
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
    chunk_tree(&tree, grammar, out, Instant::now() + CHUNK_BUDGET)
}

/// Chunks a parsed file, or returns false (having emitted nothing) when the
/// walk of its tree runs past `deadline`.
fn chunk_tree(tree: &Tree, grammar: &Grammar, out: &mut Emitter<'_>, deadline: Instant) -> bool {
    let mut refs = Refs::default();
    let Some((syms, top)) = collect(tree, out, grammar, &mut refs, deadline) else {
        tracing::debug!(path = out.path, "chunking ran out of time; line-windowed instead");
        return false;
    };
    out.set_refs(refs);

    let mut covered = vec![false; out.lines.count()];
    for &i in &top {
        covered[syms[i].first..=syms[i].last].iter_mut().for_each(|c| *c = true);
    }
    emit(&syms, &top, out);
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

/// Nodes looked at between two checks of the deadline.
const DEADLINE_STRIDE: u32 = 1024;

/// One depth-first pass: records references at every node and symbols outside
/// function bodies; `None` past `deadline`. Iterative, because expression
/// trees can nest thousands deep, and it keeps the path from the root and
/// the comments and attributes before each node on it, which tree-sitter
/// could only find again by searching down from the root.
fn collect<'t>(
    tree: &Tree,
    out: &Emitter<'t>,
    grammar: &Grammar,
    refs: &mut Refs<'t>,
    deadline: Instant,
) -> Option<(Vec<Sym>, Vec<usize>)> {
    let src = out.text;
    let mut syms: Vec<Sym> = Vec::new();
    let mut top: Vec<usize> = Vec::new();
    let mut scopes: Vec<(usize, Scope)> = Vec::new();
    let mut cursor = tree.walk();
    let mut depth = 0usize;
    // `path[d]` is the node at depth `d`; `attached[d]` the run of attachable
    // siblings right before it, nearest last.
    let mut path: Vec<Node<'_>> = Vec::new();
    let mut attached: Vec<Vec<Node<'_>>> = vec![Vec::new()];
    let mut steps = 0u32;
    loop {
        if steps.is_multiple_of(DEADLINE_STRIDE) && Instant::now() >= deadline {
            return None;
        }
        steps = steps.wrapping_add(1);
        let node = cursor.node();
        path.truncate(depth);
        path.push(node);
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
                let ancestry = Ancestry { path: &path };
                if let Some(def) = (grammar.classify)(node, src, enclosing, ancestry) {
                    if def.container && scopes.len() >= MAX_CONTAINER_DEPTH {
                        scopes.push((depth, Scope::Opaque));
                    } else {
                        let before = ancestry.position(def.range).map(|d| attached[d].as_slice());
                        let (first, last) = symbol_rows(&def, before, out, grammar);
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
        }
        if cursor.goto_first_child() {
            depth += 1;
            attached.truncate(depth);
            attached.push(Vec::new());
            continue;
        }
        loop {
            let left = path[depth];
            if cursor.goto_next_sibling() {
                if (grammar.attachable)(left.kind()) {
                    attached[depth].push(left);
                } else {
                    attached[depth].clear();
                }
                break;
            }
            if !cursor.goto_parent() {
                return Some((syms, top));
            }
            depth -= 1;
        }
    }
}

/// The rows a definition covers, extended upward over attached comments and
/// attributes that start their own line and are not separated by a blank line.
/// `before` is the run of attachable siblings right before `def.range` (nearest
/// last) when the walk kept it.
fn symbol_rows(def: &Def<'_>, before: Option<&[Node<'_>]>, out: &Emitter<'_>, grammar: &Grammar) -> (usize, usize) {
    let (first, last) = rows(def.range);
    let first = match before {
        Some(run) => attach_upward(first, run.iter().rev().copied(), out, grammar),
        None => attach_upward(
            first,
            std::iter::successors(def.range.prev_sibling(), Node::prev_sibling),
            out,
            grammar,
        ),
    };
    (first, last)
}

/// Moves `first` up over the preceding siblings `prevs` (nearest first) that attach.
fn attach_upward<'n>(
    mut first: usize,
    prevs: impl Iterator<Item = Node<'n>>,
    out: &Emitter<'_>,
    grammar: &Grammar,
) -> usize {
    let mut prevs = prevs.peekable();
    while let Some(p) = prevs.next() {
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
        let shares_line_with_attached = prevs
            .peek()
            .is_some_and(|pp| (grammar.attachable)(pp.kind()) && rows(*pp).1 == p_first);
        if !before.trim().is_empty() && !shares_line_with_attached {
            break;
        }
        first = p_first.min(first);
    }
    first
}

/// Emits the symbols `top` and, depth first, their members. Iterative: the
/// nesting is bounded by [`MAX_CONTAINER_DEPTH`], the stack need not be.
fn emit(syms: &[Sym], top: &[usize], out: &mut Emitter<'_>) {
    let mut todo: Vec<usize> = top.iter().rev().copied().collect();
    while let Some(idx) = todo.pop() {
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
        todo.extend(s.children.iter().rev());
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

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{ChunkConfig, Emitter, chunk_file};
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

    /// Runs `f` on a thread with a rayon worker's default stack.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("chunking finished without panicking")
    }

    /// Nesting deeper than [`MAX_CONTAINER_DEPTH`] stays inside the deepest
    /// container chunked, so neither the stack nor the chunk count grows with it.
    #[test]
    fn deeply_nested_containers_are_bounded() {
        let depth = 40_000;
        let src = format!("{}fn inner() {{}}\n{}", "mod m {\n".repeat(depth), "}\n".repeat(depth));
        let lines = 2 * depth + 1;
        let chunks = on_small_stack({
            let src = src.clone();
            move || chunk_file("deep.rs", Language::Rust, &src, &ChunkConfig::default())
        });
        let cfg = ChunkConfig::default();
        let windows = lines / (cfg.window_lines - cfg.window_overlap) + 1;
        assert!(
            chunks.len() <= windows + MAX_CONTAINER_DEPTH + 1,
            "{} chunks",
            chunks.len()
        );
        assert!(
            chunks.iter().all(|c| c.kind == SymbolKind::Module),
            "{:?}",
            &outline(&chunks)[..3]
        );
        assert!(!chunks.iter().any(|c| c.symbol.as_deref() == Some("inner")));
        let headers = chunks.iter().filter(|c| c.start_line == c.end_line).count();
        assert_eq!(
            headers,
            MAX_CONTAINER_DEPTH - 1,
            "one header per large container but the deepest"
        );
        // Every `mod` line is still in some chunk.
        let mut covered = vec![false; lines];
        for c in &chunks {
            covered[(c.start_line - 1) as usize..c.end_line as usize].fill(true);
        }
        assert!(covered[..=depth].iter().all(|&c| c));
    }

    #[test]
    fn a_deep_module_level_expression_keeps_the_definitions_after_it() {
        let src = format!("X = {}1\n\n\ndef f():\n    return X\n", "1 + ".repeat(40_000));
        let chunks = on_small_stack(move || chunk_file("deep.py", Language::Python, &src, &ChunkConfig::default()));
        assert_eq!(
            outline(&chunks),
            vec![
                (None, SymbolKind::Window, None, 1, 1),
                (Some("f"), SymbolKind::Function, None, 4, 5),
            ]
        );
    }

    /// A walk past its deadline emits nothing, for the caller to line-window the file.
    #[test]
    fn chunking_past_the_deadline_gives_up_cleanly() {
        let src = "fn a() {}\n\nfn b() {}\n";
        let grammar = grammar(Language::Rust).expect("rust grammar");
        let tree = parse(Language::Rust, grammar, src).expect("parses");
        let lines = super::super::Lines::new(src);
        let cfg = ChunkConfig::default();
        let mut out = Emitter::new("a.rs", Language::Rust, src, &lines, cfg);
        assert!(!chunk_tree(&tree, grammar, &mut out, Instant::now()));
        assert!(out.chunks.is_empty());
        assert!(chunk_tree(&tree, grammar, &mut out, Instant::now() + CHUNK_BUDGET));
        assert_eq!(out.chunks.len(), 2);
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
