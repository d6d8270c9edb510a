//! Code-aware tokenizers for the BM25 arm.
//!
//! Stock text analyzers treat `parseHTTPResponse` or `read_file` as one opaque
//! word, so a user typing `http response` or `read file` never finds them. The
//! analyzers here emit, for every identifier, the whole identifier lowercased
//! *and* its parts split on snake_case, camelCase, PascalCase (with acronym
//! runs such as `HTTPResponse` → `http`, `response`) and letter/digit
//! boundaries. Both the whole and the parts are indexed: the whole identifier
//! is a rare, high-IDF term that rewards exact-name queries, the parts make
//! natural-language queries work.
//!
//! # Positions
//!
//! The whole identifier and its first part share the identifier's position;
//! each further part takes the next position, and the following identifier
//! starts after the last part. So `read_file(path)` is
//! `read_file@0 read@0 file@1 path@2`: a phrase query `"read file"` matches the
//! parts, and because queries go through the same analyzer, a phrase of whole
//! identifiers lines up the same way on both sides.
//!
//! # Two analyzers
//!
//! * [`CODE_TOKENIZER`] for symbol names and source text: an identifier is a
//!   run of Unicode alphanumerics and `_`; everything else (including `-`,
//!   which is subtraction in most languages) separates.
//! * [`PATH_TOKENIZER`] for file paths: `-` is also an identifier character so
//!   that `my-crate` is kept whole as well as split into `my`, `crate`; `/`,
//!   `.` and every other non-alphanumeric separate.
//!
//! Tokens longer than [`MAX_TOKEN_BYTES`] are dropped (they are hashes, blobs
//! or minified code, and would only bloat the term dictionary); runs longer than
//! [`MAX_SPLIT_BYTES`] are not split either, for the same reason. English
//! stemming then runs over every token ([`STEM_ENGLISH`], chosen by measurement).

use tantivy::Index;
use tantivy::tokenizer::{Language as StemLanguage, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer};

/// Name under which the code analyzer is registered on every index.
pub(crate) const CODE_TOKENIZER: &str = "code";
/// Name under which the path analyzer is registered on every index.
pub(crate) const PATH_TOKENIZER: &str = "code_path";

/// Tokens (whole identifiers or parts) longer than this many bytes are dropped.
pub(crate) const MAX_TOKEN_BYTES: usize = 64;
/// Identifier runs longer than this are treated as data, not names: neither
/// the whole nor its parts are emitted.
pub(crate) const MAX_SPLIT_BYTES: usize = 256;

/// Whether the analyzers registered by [`register`] stem English words:
/// docstrings say "returns" where queries say "return" (measured in
/// docs/EVAL.md). Identifiers are stemmed too, consistently on both sides.
pub(crate) const STEM_ENGLISH: bool = true;

/// Registers [`CODE_TOKENIZER`] and [`PATH_TOKENIZER`] on `index`. Must be
/// called on every index that is created or opened, before indexing or
/// building queries: tantivy resolves analyzers by name at use time.
pub fn register(index: &Index) {
    let manager = index.tokenizers();
    manager.register(CODE_TOKENIZER, analyzer_with(TokenMode::Code, STEM_ENGLISH));
    manager.register(PATH_TOKENIZER, analyzer_with(TokenMode::Path, STEM_ENGLISH));
}

/// Which characters, besides Unicode alphanumerics and `_`, belong to an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenMode {
    /// Source text and symbol names: `-` separates.
    Code,
    /// File paths: `-` joins (kebab-case file names are kept whole too).
    Path,
}

/// Builds an analyzer for `mode`, optionally followed by an English stemmer.
pub(crate) fn analyzer_with(mode: TokenMode, stem: bool) -> TextAnalyzer {
    let builder = TextAnalyzer::builder(CodeTokenizer { mode });
    if stem {
        builder.filter(Stemmer::new(StemLanguage::English)).build()
    } else {
        builder.build()
    }
}

/// The tokenizer behind both analyzers. Lowercases itself, so no `LowerCaser`
/// filter is needed (and case is needed here, before lowercasing, to split).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodeTokenizer {
    pub(crate) mode: TokenMode,
}

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = CodeTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CodeTokenStream<'a> {
        CodeTokenStream {
            text,
            mode: self.mode,
            cursor: 0,
            next_position: 0,
            pending: Vec::new(),
            pending_at: 0,
            token: Token::default(),
        }
    }
}

/// A token waiting to be emitted: byte range in the source text and position.
#[derive(Debug, Clone, Copy)]
struct Pending {
    from: usize,
    to: usize,
    position: usize,
}

/// Streams tokens lazily, one identifier at a time: the whole identifier and its
/// parts are computed when the identifier is reached and drained from `pending`.
pub(crate) struct CodeTokenStream<'a> {
    text: &'a str,
    mode: TokenMode,
    /// Byte offset where scanning for the next identifier resumes.
    cursor: usize,
    /// Position the next identifier starts at.
    next_position: usize,
    pending: Vec<Pending>,
    pending_at: usize,
    token: Token,
}

impl CodeTokenStream<'_> {
    fn is_ident_char(&self, c: char) -> bool {
        c.is_alphanumeric() || c == '_' || (self.mode == TokenMode::Path && c == '-')
    }

    /// Finds the next identifier run after `cursor` and fills `pending` with
    /// its tokens. Returns false at the end of the text.
    fn fill(&mut self) -> bool {
        self.pending.clear();
        self.pending_at = 0;
        while self.pending.is_empty() {
            let rest = &self.text[self.cursor..];
            let Some((start_rel, _)) = rest.char_indices().find(|&(_, c)| self.is_ident_char(c)) else {
                self.cursor = self.text.len();
                return false;
            };
            let start = self.cursor + start_rel;
            let end = self.text[start..]
                .char_indices()
                .find(|&(_, c)| !self.is_ident_char(c))
                .map_or(self.text.len(), |(i, _)| start + i);
            self.cursor = end;
            if end - start > MAX_SPLIT_BYTES {
                continue;
            }
            let position = self.next_position;
            let mut parts = Vec::new();
            split_identifier(self.text, start, end, &mut parts);
            if end - start <= MAX_TOKEN_BYTES {
                self.pending.push(Pending {
                    from: start,
                    to: end,
                    position,
                });
            }
            // A single part equal to the whole identifier adds nothing.
            let single_whole = parts.len() == 1 && parts[0] == (start, end);
            if !single_whole {
                for (i, &(from, to)) in parts.iter().enumerate() {
                    if to - from <= MAX_TOKEN_BYTES {
                        self.pending.push(Pending {
                            from,
                            to,
                            position: position + i,
                        });
                    }
                }
            }
            // Identifiers made only of separators (`_`, `-`) yield no parts and
            // are only indexed whole; they still occupy one position.
            self.next_position = position + parts.len().max(1);
        }
        true
    }
}

impl TokenStream for CodeTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.pending_at >= self.pending.len() && !self.fill() {
            return false;
        }
        let p = self.pending[self.pending_at];
        self.pending_at += 1;
        self.token.offset_from = p.from;
        self.token.offset_to = p.to;
        self.token.position = p.position;
        self.token.position_length = 1;
        self.token.text.clear();
        for c in self.text[p.from..p.to].chars() {
            self.token.text.extend(c.to_lowercase());
        }
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// Character classes that decide word boundaries inside an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Upper,
    /// Lowercase letters and letters without case (CJK, etc.).
    Lower,
    Digit,
    Separator,
}

fn class(c: char) -> Class {
    if c == '_' || c == '-' {
        Class::Separator
    } else if c.is_numeric() {
        Class::Digit
    } else if c.is_uppercase() {
        Class::Upper
    } else {
        Class::Lower
    }
}

/// Splits `text[start..end]` into word parts (byte ranges into `text`):
/// on `_`/`-`, lower→upper (`parseHttp`), the end of an acronym run before a
/// capitalised word (`HTTPResponse` → `HTTP`, `Response`) and letter↔digit.
fn split_identifier(text: &str, start: usize, end: usize, parts: &mut Vec<(usize, usize)>) {
    let ident = &text[start..end];
    let chars: Vec<(usize, char, Class)> = ident.char_indices().map(|(i, c)| (start + i, c, class(c))).collect();
    let mut part_start: Option<usize> = None;
    for (idx, &(offset, _, cls)) in chars.iter().enumerate() {
        if cls == Class::Separator {
            if let Some(s) = part_start.take() {
                parts.push((s, offset));
            }
            continue;
        }
        let Some(s) = part_start else {
            part_start = Some(offset);
            continue;
        };
        let prev = chars[idx - 1].2;
        let boundary = match (prev, cls) {
            (Class::Lower, Class::Upper) => true,
            (Class::Digit, Class::Upper | Class::Lower) | (Class::Upper | Class::Lower, Class::Digit) => true,
            // `HTTPResponse`: split before `R` because it starts a capitalised word.
            (Class::Upper, Class::Upper) => chars.get(idx + 1).is_some_and(|&(_, _, next)| next == Class::Lower),
            _ => false,
        };
        if boundary {
            parts.push((s, offset));
            part_start = Some(offset);
        }
    }
    if let Some(s) = part_start {
        parts.push((s, end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_texts(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stream = analyzer.token_stream(text);
        while let Some(token) = stream.next() {
            out.push(token.text.clone());
        }
        out
    }

    fn plain(text: &str) -> Vec<String> {
        token_texts(&mut analyzer_with(TokenMode::Code, false), text)
    }

    fn positions(mode: TokenMode, text: &str) -> Vec<(String, usize)> {
        let mut analyzer = analyzer_with(mode, false);
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while let Some(t) = stream.next() {
            out.push((t.text.clone(), t.position));
        }
        out
    }

    #[test]
    fn camel_acronym_and_digits() {
        assert_eq!(
            plain("parseHTTPResponse2"),
            ["parsehttpresponse2", "parse", "http", "response", "2"]
        );
        assert_eq!(plain("XMLHttpRequest"), ["xmlhttprequest", "xml", "http", "request"]);
        assert_eq!(plain("getX"), ["getx", "get", "x"]);
        assert_eq!(plain("IOError"), ["ioerror", "io", "error"]);
        assert_eq!(plain("sha256sum"), ["sha256sum", "sha", "256", "sum"]);
    }

    #[test]
    fn snake_and_kebab() {
        assert_eq!(plain("read_file"), ["read_file", "read", "file"]);
        assert_eq!(plain("__init__"), ["__init__", "init"]);
        assert_eq!(plain("MAX_TOKEN_BYTES"), ["max_token_bytes", "max", "token", "bytes"]);
        // In code `-` separates (it is subtraction), so kebab words come out as parts.
        assert_eq!(plain("dry-run"), ["dry", "run"]);
        assert_eq!(
            token_texts(&mut analyzer_with(TokenMode::Path, false), "src/my-crate/fooBar.rs"),
            ["src", "my-crate", "my", "crate", "foobar", "foo", "bar", "rs"]
        );
    }

    #[test]
    fn simple_words_are_not_duplicated() {
        assert_eq!(plain("fn main() { x + 1 }"), ["fn", "main", "x", "1"]);
        assert_eq!(plain("Server::run"), ["server", "run"]);
    }

    #[test]
    fn positions_follow_parts() {
        assert_eq!(
            positions(TokenMode::Code, "read_file(path) done"),
            [
                ("read_file".to_string(), 0),
                ("read".to_string(), 0),
                ("file".to_string(), 1),
                ("path".to_string(), 2),
                ("done".to_string(), 3)
            ]
        );
    }

    #[test]
    fn edge_cases() {
        assert!(plain("").is_empty());
        assert!(plain("  ::(){}[]\"' \n\t").is_empty());
        assert_eq!(plain("___"), ["___"]);
        assert_eq!(plain("12345"), ["12345"]);
        assert_eq!(plain("v1_2"), ["v1_2", "v", "1", "2"]);
        // Unicode letters are identifier characters; uncased scripts stay whole.
        assert_eq!(plain("größe_Öffnen"), ["größe_öffnen", "größe", "öffnen"]);
        assert_eq!(plain("数据Loader"), ["数据loader", "数据", "loader"]);
        assert_eq!(plain("🦀 crab🦀"), ["crab"]);
        // Overlong: the whole identifier is dropped, its parts are kept.
        let long = format!("{}_tail", "a".repeat(70));
        assert_eq!(plain(&long), ["tail"]);
        // A blob beyond MAX_SPLIT_BYTES is dropped entirely.
        let blob = "aB".repeat(200);
        assert_eq!(plain(&format!("x {blob} y")), ["x", "y"]);
    }

    #[test]
    fn offsets_point_at_source() {
        let text = "let ÄbcDef = 1;";
        let mut analyzer = analyzer_with(TokenMode::Code, false);
        let mut stream = analyzer.token_stream(text);
        while let Some(t) = stream.next() {
            assert_eq!(text[t.offset_from..t.offset_to].to_lowercase(), t.text);
        }
    }

    #[test]
    fn stemming_applies_to_whole_and_parts() {
        let mut analyzer = analyzer_with(TokenMode::Code, true);
        assert_eq!(token_texts(&mut analyzer, "parseFiles"), ["parsefil", "pars", "file"]);
    }

    /// Property-style fuzz: random strings drawn from a mix of ASCII, separators,
    /// multi-byte and astral characters never panic, and every token is non-empty,
    /// within the length limit, lowercase, has valid offsets and non-decreasing positions.
    #[test]
    fn fuzz_random_strings() {
        const ALPHABET: &[char] = &[
            'a', 'Z', 'q', 'X', '0', '9', '_', '-', '/', '.', ' ', '\n', '(', '"', 'é', 'É', 'ß', 'ǅ', 'İ', '数', '🦀',
            '\u{0301}', '\u{200d}', 'Ⅻ', '٣', '\0',
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for mode in [TokenMode::Code, TokenMode::Path] {
            for stem in [false, true] {
                let mut analyzer = analyzer_with(mode, stem);
                for _ in 0..2_000 {
                    let len = (next() % 120) as usize;
                    let text: String = (0..len)
                        .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                        .collect();
                    let mut stream = analyzer.token_stream(&text);
                    let mut last_position = 0;
                    while let Some(t) = stream.next() {
                        assert!(!t.text.is_empty(), "{text:?}");
                        assert!(t.offset_from < t.offset_to && t.offset_to <= text.len(), "{text:?}");
                        assert!(text.is_char_boundary(t.offset_from) && text.is_char_boundary(t.offset_to));
                        assert!(t.offset_to - t.offset_from <= MAX_TOKEN_BYTES);
                        assert!(t.position >= last_position, "{text:?}");
                        last_position = t.position;
                        if !stem {
                            assert_eq!(t.text, text[t.offset_from..t.offset_to].to_lowercase());
                        }
                    }
                }
            }
        }
    }
}
