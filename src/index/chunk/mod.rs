//! Splitting one source file into [`Chunk`]s, the unit every search arm indexes.
//!
//! Code is chunked by symbol with tree-sitter so that a hit lands on a whole
//! function or type, carries its name for navigation, and lists the names it calls
//! and imports for the graph arm. Prose and config files have no symbols, so they
//! are split by headings, top-level keys, or plain line windows.
//!
//! # Rules
//!
//! * Every chunk's `content` is exactly the source lines `start_line..=end_line`
//!   (1-based, inclusive, without the final newline). CRLF line endings and a
//!   leading byte-order mark are normalised away first, so a checkout with
//!   `autocrlf` yields the same chunks and hashes as one without.
//! * One chunk per symbol: functions, methods, classes, structs, enums, traits,
//!   interfaces, impls and modules. Only definitions with a body are symbols
//!   (a trait's `fn f(&self);` stays inside the trait chunk). Constants and type
//!   aliases become symbols only when they span at least two lines; one-liners stay
//!   in the surrounding window so a block of fifty constants is one chunk, not fifty.
//! * A symbol starts at the doc comments, attributes and decorators directly above
//!   it (no blank line in between), so doc text is searchable with the code.
//! * Containers (class, struct, impl, trait, interface, enum, module):
//!   - at most `max_chunk_lines` long: one chunk with the full text, **and** one
//!     chunk per member (methods etc.), so members are navigable symbols too; the
//!     duplication is bounded by the size limit;
//!   - longer: a chunk for the header region (from the container's first line to
//!     the line before its first member), one chunk per member, and `Window`
//!     chunks (parent = the container) for meaningful lines between members such
//!     as fields declared halfway down a class.
//! * A function inside a class/impl/trait/interface/struct/enum is a `Method`
//!   whose `parent` is that type's name; inside a module or namespace it stays a
//!   `Function` whose parent is the module. Rust `impl [Trait for] Foo` is an
//!   `Impl` named `Foo`; Go methods take the receiver type as parent; C++
//!   `Foo::bar` definitions outside the class are methods of `Foo`.
//! * Nested functions and closures belong to their enclosing function. JavaScript
//!   functions bound to a name (`const f = () => ...`, `{ key: function () {} }`)
//!   are functions named by the binding; C/C++ test macros such as
//!   `TEST(Suite, Name)` are functions named `Name` with parent `Suite`.
//! * Lines covered by no symbol (imports, module statements, macro calls) become
//!   `Window` chunks when they contain something alphanumeric; blank-only and
//!   brace-only stretches are dropped.
//! * Any region longer than `max_chunk_lines` (a symbol, a section, a gap) is cut
//!   into windows of `window_lines` lines overlapping by `window_overlap`; each
//!   window keeps the kind, name and parent of what it cuts.
//! * If a grammar cannot parse the file at all, or parsing or walking its tree
//!   takes too long, the file is line-windowed; a syntax error in one part keeps
//!   the symbols of the rest (tree-sitter recovers).
//! * Containers nested more than 64 deep are not symbols: their text stays in
//!   the deepest container chunked, so absurd nesting cannot multiply chunks.
//!
//! Markdown is split at headings (`Section`, symbol = heading text, parent = the
//! enclosing heading). YAML and TOML are split at top-level keys / tables, and
//! consecutive small sections are packed into windows of up to `window_lines`
//! lines; a chunk holding a single key or table carries it as its symbol. JSON,
//! shell and plain text are line-windowed.

pub(super) mod code;
mod text;

use std::borrow::Cow;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::model::{Chunk, Language, SymbolKind, sha256_hex};

/// Bumped whenever a change here changes the chunks produced for the same input,
/// so that indexes built by an older chunker can be recognised and rebuilt.
pub const CHUNKER_VERSION: u32 = 3;

/// Size limits of chunks, in lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkConfig {
    /// A region (symbol, section, gap) longer than this is split into windows.
    pub max_chunk_lines: usize,
    /// Length of the windows an oversize region is split into.
    pub window_lines: usize,
    /// Lines shared by consecutive windows, so a match across a cut is not lost.
    pub window_overlap: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            max_chunk_lines: 150,
            window_lines: 60,
            window_overlap: 10,
        }
    }
}

impl ChunkConfig {
    /// Clamps nonsense values (zero sizes, an overlap as long as the window) so the
    /// windowing loop always advances.
    fn sanitized(self) -> ChunkConfig {
        let window_lines = self.window_lines.max(1);
        ChunkConfig {
            max_chunk_lines: self.max_chunk_lines.max(1),
            window_lines,
            window_overlap: self.window_overlap.min(window_lines - 1),
        }
    }
}

/// Chunks one file. Never fails and never panics on any input: a file that cannot
/// be parsed is line-windowed, an empty or blank file yields no chunks.
pub fn chunk_file(path: &str, language: Language, text: &str, cfg: &ChunkConfig) -> Vec<Chunk> {
    let text = normalize(text);
    if text.trim().is_empty() {
        return Vec::new();
    }
    let lines = Lines::new(&text);
    let mut out = Emitter::new(path, language, &text, &lines, cfg.sanitized());
    match language {
        Language::Markdown => text::markdown(&mut out, path.to_ascii_lowercase().ends_with(".rst")),
        Language::Yaml => text::yaml(&mut out),
        Language::Toml => text::toml(&mut out),
        Language::Json | Language::Shell | Language::Text => out.whole_file_windows(),
        code_language => {
            if !code::chunk_code(code_language, &mut out) {
                out.whole_file_windows();
            }
        }
    }
    out.finish()
}

/// Drops a leading BOM and turns CRLF into LF; borrows when there is nothing to do.
pub(crate) fn normalize(text: &str) -> Cow<'_, str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.contains("\r\n") {
        Cow::Owned(text.replace("\r\n", "\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Byte offsets of line starts, for slicing whole lines out of the text.
pub(super) struct Lines {
    starts: Vec<usize>,
    /// Byte offset just past the last line's content (before a final newline).
    last_end: usize,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let mut starts = Vec::with_capacity(text.len() / 32 + 1);
        starts.push(0);
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' && i + 1 < text.len() {
                starts.push(i + 1);
            }
        }
        let last_end = if text.ends_with('\n') {
            text.len() - 1
        } else {
            text.len()
        };
        Lines { starts, last_end }
    }

    /// Number of lines (a final newline does not open an extra empty line).
    pub(super) fn count(&self) -> usize {
        self.starts.len()
    }

    fn line_end(&self, row: usize) -> usize {
        match self.starts.get(row + 1) {
            Some(&next) => next - 1,
            None => self.last_end,
        }
    }

    /// Byte range of rows `first..=last` (0-based), without the final newline.
    pub(super) fn span(&self, first: usize, last: usize) -> Range<usize> {
        let last = last.min(self.count() - 1);
        let first = first.min(last);
        self.starts[first]..self.line_end(last)
    }

    pub(super) fn line<'t>(&self, text: &'t str, row: usize) -> &'t str {
        &text[self.span(row, row)]
    }

    pub(super) fn start_of(&self, row: usize) -> usize {
        self.starts[row.min(self.count() - 1)]
    }
}

/// Names referenced from the file, each with the 0-based row it occurs on, so a
/// chunk can pick up exactly the references inside its lines.
#[derive(Default)]
pub(crate) struct Refs<'t> {
    pub(super) calls: Vec<(usize, &'t str)>,
    pub(super) imports: Vec<(usize, String)>,
}

impl<'t> Refs<'t> {
    pub(crate) fn call(&mut self, row: usize, name: &'t str) {
        let name = name.trim();
        if !name.is_empty() && name.len() <= 128 {
            self.calls.push((row, name));
        }
    }

    pub(crate) fn import(&mut self, row: usize, path: impl Into<String>) {
        let path = path.into();
        let path = path.trim();
        if !path.is_empty() && path.len() <= 512 {
            self.imports.push((row, path.to_string()));
        }
    }
}

/// Collects the chunks of one file; all row arguments are 0-based and inclusive.
pub(super) struct Emitter<'a> {
    path: &'a str,
    language: Language,
    pub(super) text: &'a str,
    pub(super) lines: &'a Lines,
    pub(super) cfg: ChunkConfig,
    refs: Refs<'a>,
    chunks: Vec<Chunk>,
}

impl<'a> Emitter<'a> {
    fn new(path: &'a str, language: Language, text: &'a str, lines: &'a Lines, cfg: ChunkConfig) -> Self {
        Emitter {
            path,
            language,
            text,
            lines,
            cfg,
            refs: Refs::default(),
            chunks: Vec::new(),
        }
    }

    pub(super) fn set_refs(&mut self, mut refs: Refs<'a>) {
        refs.calls.sort_by_key(|r| r.0);
        refs.imports.sort_by_key(|r| r.0);
        self.refs = refs;
    }

    pub(super) fn is_blank(&self, row: usize) -> bool {
        self.lines.line(self.text, row).trim().is_empty()
    }

    /// A line worth indexing: it has a letter or digit (not only braces or blanks).
    pub(super) fn is_meaningful(&self, row: usize) -> bool {
        self.lines.line(self.text, row).chars().any(char::is_alphanumeric)
    }

    /// Exactly one chunk for rows `first..=last`.
    pub(super) fn chunk(
        &mut self,
        kind: SymbolKind,
        symbol: Option<&str>,
        parent: Option<&str>,
        first: usize,
        last: usize,
    ) {
        let content = &self.text[self.lines.span(first, last)];
        let calls = collect_rows(&self.refs.calls, first, last, |s| (*s).to_string());
        let imports = collect_rows(&self.refs.imports, first, last, Clone::clone);
        self.chunks.push(Chunk {
            id: 0,
            path: self.path.to_string(),
            language: self.language,
            symbol: symbol.map(str::to_string),
            kind,
            parent: parent.map(str::to_string),
            start_line: row_to_line(first),
            end_line: row_to_line(last),
            content: content.to_string(),
            content_hash: sha256_hex(content.as_bytes()),
            calls,
            imports,
        });
    }

    /// Rows `first..=last` as one chunk, or as overlapping windows when longer than
    /// `max_chunk_lines`. With `skip_empty`, windows without meaningful lines are dropped.
    pub(super) fn region(
        &mut self,
        kind: SymbolKind,
        symbol: Option<&str>,
        parent: Option<&str>,
        first: usize,
        last: usize,
        skip_empty: bool,
    ) {
        if last < first {
            return;
        }
        let keep = |me: &Self, a: usize, b: usize| !skip_empty || (a..=b).any(|r| me.is_meaningful(r));
        if last - first < self.cfg.max_chunk_lines {
            if keep(self, first, last) {
                self.chunk(kind, symbol, parent, first, last);
            }
            return;
        }
        let step = self.cfg.window_lines - self.cfg.window_overlap;
        let mut start = first;
        loop {
            let end = (start + self.cfg.window_lines - 1).min(last);
            if keep(self, start, end) {
                self.chunk(kind, symbol, parent, start, end);
            }
            if end == last {
                break;
            }
            start += step;
        }
    }

    /// Lines of code not covered by any symbol. Leading lines of closing brackets
    /// only (the `}` closing a container, a stray `});` tree-sitter could not
    /// attribute) are trimmed before the usual [`Emitter::gap`] rules apply.
    pub(super) fn code_gap(&mut self, parent: Option<&str>, mut first: usize, last: usize) {
        let closing_only = |line: &str| line.trim().chars().all(|c| "})];,".contains(c));
        while first <= last && closing_only(self.lines.line(self.text, first)) {
            first += 1;
        }
        self.gap(parent, first, last);
    }

    /// A stretch of lines outside any symbol or section: trimmed of blank lines at
    /// both ends and kept only when something alphanumeric is in it.
    pub(super) fn gap(&mut self, parent: Option<&str>, mut first: usize, mut last: usize) {
        while first <= last && self.is_blank(first) {
            first += 1;
        }
        while last > first && self.is_blank(last) {
            last -= 1;
        }
        if first > last {
            return;
        }
        self.region(SymbolKind::Window, None, parent, first, last, true);
    }

    pub(super) fn whole_file_windows(&mut self) {
        let last = self.lines.count() - 1;
        self.gap(None, 0, last);
    }

    fn finish(mut self) -> Vec<Chunk> {
        // Stable: a container emitted before its members keeps its place on ties.
        self.chunks.sort_by_key(|c| c.start_line);
        self.chunks
    }
}

fn row_to_line(row: usize) -> u32 {
    u32::try_from(row + 1).unwrap_or(u32::MAX)
}

/// The sorted, deduplicated values of `refs` whose row lies in `first..=last`.
fn collect_rows<T>(refs: &[(usize, T)], first: usize, last: usize, f: impl Fn(&T) -> String) -> Vec<String> {
    let lo = refs.partition_point(|r| r.0 < first);
    let hi = refs.partition_point(|r| r.0 <= last);
    let mut out: Vec<String> = refs[lo..hi].iter().map(|r| f(&r.1)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
pub(super) mod test_util {
    use super::*;

    /// `(symbol, kind, parent, start_line, end_line)` of every chunk, for compact assertions.
    pub(crate) type Outline<'c> = (Option<&'c str>, SymbolKind, Option<&'c str>, u32, u32);

    pub(crate) fn outline(chunks: &[Chunk]) -> Vec<Outline<'_>> {
        chunks
            .iter()
            .map(|c| {
                (
                    c.symbol.as_deref(),
                    c.kind,
                    c.parent.as_deref(),
                    c.start_line,
                    c.end_line,
                )
            })
            .collect()
    }

    pub(crate) fn find<'c>(chunks: &'c [Chunk], symbol: &str, kind: SymbolKind) -> &'c Chunk {
        chunks
            .iter()
            .find(|c| c.symbol.as_deref() == Some(symbol) && c.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} chunk named {symbol}: {:#?}", outline(chunks)))
    }

    /// Every chunk's content must be exactly its line range of the (normalised) source.
    pub(crate) fn assert_content_matches_lines(text: &str, chunks: &[Chunk]) {
        let text = normalize(text);
        let lines: Vec<&str> = text.split('\n').collect();
        for c in chunks {
            let expected = lines[(c.start_line - 1) as usize..c.end_line as usize].join("\n");
            assert_eq!(
                c.content, expected,
                "chunk {:?} {}..{}",
                c.symbol, c.start_line, c.end_line
            );
            assert_eq!(c.content_hash, sha256_hex(c.content.as_bytes()));
            assert_eq!(c.id, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    fn small_cfg() -> ChunkConfig {
        ChunkConfig {
            max_chunk_lines: 20,
            window_lines: 8,
            window_overlap: 3,
        }
    }

    #[test]
    fn empty_and_blank_files_have_no_chunks() {
        for lang in Language::ALL {
            assert!(chunk_file("x", lang, "", &ChunkConfig::default()).is_empty(), "{lang}");
            assert!(
                chunk_file("x", lang, "\n  \n\t\n", &ChunkConfig::default()).is_empty(),
                "{lang}"
            );
        }
    }

    #[test]
    fn oversize_symbol_is_windowed_with_overlap_and_full_coverage() {
        let mut src = String::from("fn big() {\n");
        for i in 0..48 {
            src.push_str(&format!("    step_{i}(x);\n"));
        }
        src.push_str("}\n");
        let chunks = chunk_file("big.rs", Language::Rust, &src, &small_cfg());
        assert_content_matches_lines(&src, &chunks);
        assert!(chunks.len() > 1);
        assert!(
            chunks
                .iter()
                .all(|c| c.symbol.as_deref() == Some("big") && c.kind == SymbolKind::Function)
        );
        assert_eq!(chunks[0].start_line, 1);
        assert_eq!(chunks.last().map(|c| c.end_line), Some(50));
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end_line - pair[0].start_line + 1, 8);
            // Consecutive windows share exactly `window_overlap` lines: no gap, no jump.
            assert_eq!(pair[0].end_line + 1 - pair[1].start_line, 3);
        }
        // Calls are attributed per window.
        assert!(chunks[0].calls.contains(&"step_0".to_string()));
        assert!(!chunks[0].calls.contains(&"step_40".to_string()));
        assert!(chunks.last().is_some_and(|c| c.calls.contains(&"step_47".to_string())));
    }

    #[test]
    fn uncovered_top_level_code_becomes_windows() {
        let src = "use std::io;\nuse crate::model::Chunk;\n\n\nfn a() {\n    b();\n}\n\n}\n\nconst X: u32 = 1;\n";
        let chunks = chunk_file("w.rs", Language::Rust, src, &ChunkConfig::default());
        assert_content_matches_lines(src, &chunks);
        assert_eq!(
            outline(&chunks),
            vec![
                (None, SymbolKind::Window, None, 1, 2),
                (Some("a"), SymbolKind::Function, None, 5, 7),
                (None, SymbolKind::Window, None, 11, 11),
            ]
        );
        assert_eq!(chunks[0].imports, vec!["crate::model::Chunk", "std::io"]);
        assert!(chunks[0].calls.is_empty());
    }

    #[test]
    fn long_plain_text_is_windowed_and_covers_every_line() {
        let src: String = (1..=50).map(|i| format!("line {i}\n")).collect();
        let chunks = chunk_file("notes.txt", Language::Text, &src, &small_cfg());
        assert_content_matches_lines(&src, &chunks);
        let mut covered = [false; 50];
        for c in &chunks {
            assert_eq!(c.kind, SymbolKind::Window);
            assert!(c.end_line - c.start_line < 8);
            for l in c.start_line..=c.end_line {
                covered[(l - 1) as usize] = true;
            }
        }
        assert!(covered.iter().all(|&c| c));
        let short = chunk_file("short.txt", Language::Text, "hello\nworld", &small_cfg());
        assert_eq!(outline(&short), vec![(None, SymbolKind::Window, None, 1, 2)]);
    }

    #[test]
    fn crlf_and_bom_yield_the_same_chunks_as_lf() {
        let lf = "//! Doc.\nuse std::fmt;\n\n/// Adds.\nfn add(a: u32) -> u32 {\n    a + one()\n}\n";
        let crlf = format!("\u{feff}{}", lf.replace('\n', "\r\n"));
        let a = chunk_file("a.rs", Language::Rust, lf, &ChunkConfig::default());
        let b = chunk_file("a.rs", Language::Rust, &crlf, &ChunkConfig::default());
        assert_eq!(a, b);
        assert!(b.iter().all(|c| !c.content.contains('\r')));
        assert_eq!(find(&b, "add", SymbolKind::Function).start_line, 4);
    }

    #[test]
    fn nonsense_config_does_not_hang() {
        let cfg = ChunkConfig {
            max_chunk_lines: 0,
            window_lines: 0,
            window_overlap: 5,
        };
        let chunks = chunk_file("t.txt", Language::Text, "a\nb\nc\n", &cfg);
        assert_eq!(
            outline(&chunks).iter().map(|o| (o.3, o.4)).collect::<Vec<_>>(),
            vec![(1, 1), (2, 2), (3, 3)]
        );
    }

    #[test]
    fn text_without_final_newline_keeps_last_line() {
        let chunks = chunk_file("t.sh", Language::Shell, "echo hi\necho bye", &ChunkConfig::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].content, "echo hi\necho bye");
    }
}
