//! Query parsing: free text plus inline filters `lang:`, `path:` (glob) and
//! `sym:`, merged with the structured `filters` of a request into one
//! [`ChunkFilter`] that every arm applies, and the raw text read for its
//! shape (a short phrase and a pasted issue are searched differently).

use crate::api::Filters;
use crate::model::{Chunk, Language};
use crate::search::query_text::{self, QueryText, Shape};
use globset::{Glob, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown language {0:?} in filter")]
    UnknownLanguage(String),
    #[error("invalid path pattern {pattern:?}: {reason}")]
    InvalidGlob { pattern: String, reason: String },
    #[error("query has no search text and no sym: filter")]
    Empty,
    #[error("at most {max} distinct {kind} filters")]
    TooManyFilters { kind: &'static str, max: usize },
}

/// Distinct values one filter kind may hold: every candidate of every arm is
/// checked against each of them.
pub const MAX_FILTER_VALUES: usize = 32;

/// A query split into the text the arms rank and the filter they must honour.
#[derive(Debug, Clone)]
pub struct ParsedQuery {
    pub text: String,
    pub filter: ChunkFilter,
    /// The raw query read line by line: its shape, title and cleaned text
    /// (whitespace-joined `text` has lost the lines that carry them).
    pub(crate) read: QueryText,
}

#[derive(Debug, Clone, Default)]
pub struct ChunkFilter {
    pub languages: Vec<Language>,
    paths: Option<PathMatcher>,
    /// Lowercased symbol names.
    pub symbols: Vec<String>,
}

#[derive(Debug, Clone)]
struct PathMatcher {
    globs: GlobSet,
    /// Patterns without glob syntax match a run of whole path segments
    /// (`index` matches `src/index/a.rs` and `src/index.rs`, not
    /// `src/index_cmd.rs`), kept trimmed of slashes.
    literals: Vec<String>,
}

/// Whether `literal` occurs in `path` starting at a segment and ending at a
/// segment's end or its extension.
fn matches_segments(path: &str, literal: &str) -> bool {
    path.match_indices(literal).any(|(at, _)| {
        let starts = at == 0 || path.as_bytes()[at - 1] == b'/';
        let end = at + literal.len();
        starts && matches!(path.as_bytes().get(end), None | Some(b'/' | b'.'))
    })
}

impl ChunkFilter {
    pub fn is_empty(&self) -> bool {
        self.languages.is_empty() && self.paths.is_none() && self.symbols.is_empty()
    }

    pub fn matches(&self, chunk: &Chunk) -> bool {
        if !self.languages.is_empty() && !self.languages.contains(&chunk.language) {
            return false;
        }
        if !self.symbols.is_empty() {
            let Some(sym) = &chunk.symbol else { return false };
            // Filter values are lowercased whole (Unicode), so a non-ASCII
            // name is compared the same way.
            let matches = |s: &String| s.eq_ignore_ascii_case(sym) || (!sym.is_ascii() && sym.to_lowercase() == *s);
            if !self.symbols.iter().any(matches) {
                return false;
            }
        }
        match &self.paths {
            None => true,
            Some(m) => m.globs.is_match(&chunk.path) || m.literals.iter().any(|l| matches_segments(&chunk.path, l)),
        }
    }
}

impl ParsedQuery {
    /// Parses inline filters out of `query` and merges the structured ones.
    /// A pasted issue or log keeps its `lang:` or `path:` words as text: they
    /// are what it says, not filters its author typed. A key followed by
    /// `::` is a path (`path::Path`, `lang::support`), not a filter.
    pub fn parse(query: &str, filters: Option<&Filters>) -> Result<ParsedQuery, QueryError> {
        let mut read = query_text::understand(query);
        let inline = !matches!(read.shape, Shape::Issue | Shape::StackTrace);
        let mut text = Vec::new();
        let mut langs: Vec<String> = Vec::new();
        let mut paths: Vec<String> = Vec::new();
        let mut syms: Vec<String> = Vec::new();
        let tokens = split_respecting_quotes(query);
        let token_count = tokens.len();
        for token in tokens {
            let (key, value) = match token.split_once(':') {
                Some((k, v))
                    if inline && !v.is_empty() && !v.starts_with(':') && matches!(k, "lang" | "path" | "sym") =>
                {
                    (k, v)
                }
                _ => {
                    text.push(token);
                    continue;
                }
            };
            let value = value.trim_matches('"').to_string();
            match key {
                "lang" => langs.extend(value.split(',').map(str::to_string)),
                "path" => paths.push(value),
                _ => syms.push(value),
            }
        }
        if let Some(f) = filters {
            langs.extend(f.languages.iter().cloned());
            paths.extend(f.paths.iter().cloned());
            syms.extend(f.symbols.iter().cloned());
        }
        let langs = distinct("lang", langs)?;
        let paths = distinct("path", paths)?;
        let syms = distinct("sym", syms.into_iter().map(|s| s.to_lowercase()).collect())?;
        let mut languages = Vec::new();
        for l in langs.iter().filter(|l| !l.is_empty()) {
            let lang = Language::parse(l).ok_or_else(|| QueryError::UnknownLanguage(l.clone()))?;
            if !languages.contains(&lang) {
                languages.push(lang);
                // `typescript` should also find .tsx files.
                if lang == Language::TypeScript && !languages.contains(&Language::Tsx) {
                    languages.push(Language::Tsx);
                }
            }
        }
        let paths = build_path_matcher(&paths)?;
        let symbols = syms.into_iter().filter(|s| !s.is_empty()).collect();
        let filtered = text.len() < token_count;
        let text = text.join(" ");
        // The shape and names are read from what is searched for: filter words
        // would make `load_config lang:rust` a phrase and `rust` a name.
        if inline && filtered {
            read = query_text::understand(&text);
        }
        let parsed = ParsedQuery {
            text,
            filter: ChunkFilter {
                languages,
                paths,
                symbols,
            },
            read,
        };
        if parsed.text.trim().is_empty() && parsed.filter.symbols.is_empty() {
            return Err(QueryError::Empty);
        }
        Ok(parsed)
    }

    /// A pasted issue or stack trace rather than a name or a phrase: searched
    /// with its title words weighted and its own fusion weights.
    pub fn is_long_text(&self) -> bool {
        matches!(self.read.shape, Shape::Issue | Shape::StackTrace)
    }

    /// The text to embed: long texts lose their environment dumps and
    /// template comments first; short ones are embedded as parsed.
    pub fn embed_text(&self) -> &str {
        if self.is_long_text() {
            &self.read.cleaned
        } else {
            &self.text
        }
    }
}

fn build_path_matcher(patterns: &[String]) -> Result<Option<PathMatcher>, QueryError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    let mut literals = Vec::new();
    for p in patterns {
        if p.contains(['*', '?', '[', '{']) {
            let glob = Glob::new(p).map_err(|e| QueryError::InvalidGlob {
                pattern: p.clone(),
                reason: e.kind().to_string(),
            })?;
            builder.add(glob);
        } else {
            literals.push(p.trim_matches('/').to_string());
        }
    }
    let globs = builder.build().map_err(|e| QueryError::InvalidGlob {
        pattern: patterns.join(" "),
        reason: e.to_string(),
    })?;
    Ok(Some(PathMatcher { globs, literals }))
}

/// `values` without repeats, or an error when more than [`MAX_FILTER_VALUES`] remain.
fn distinct(kind: &'static str, mut values: Vec<String>) -> Result<Vec<String>, QueryError> {
    let mut seen = std::collections::HashSet::new();
    values.retain(|v| seen.insert(v.clone()));
    if values.len() > MAX_FILTER_VALUES {
        return Err(QueryError::TooManyFilters {
            kind,
            max: MAX_FILTER_VALUES,
        });
    }
    Ok(values)
}

/// Splits on whitespace, keeping `key:"a b"` together.
fn split_respecting_quotes(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    for c in s.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                cur.push(c);
            }
            c if c.is_whitespace() && !in_quotes => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SymbolKind;

    fn chunk(path: &str, lang: Language, sym: &str) -> Chunk {
        Chunk {
            id: 0,
            path: path.into(),
            language: lang,
            symbol: Some(sym.into()),
            kind: SymbolKind::Function,
            parent: None,
            start_line: 1,
            end_line: 2,
            content: String::new(),
            content_hash: String::new(),
            calls: vec![],
            imports: vec![],
        }
    }

    #[test]
    fn inline_filters_are_extracted() {
        let q = ParsedQuery::parse("parse config lang:rust path:src/** sym:load", None).unwrap();
        assert_eq!(q.text, "parse config");
        assert_eq!(q.filter.languages, vec![Language::Rust]);
        assert_eq!(q.filter.symbols, vec!["load"]);
        assert!(q.filter.matches(&chunk("src/a.rs", Language::Rust, "load")));
        assert!(!q.filter.matches(&chunk("tests/a.rs", Language::Rust, "load")));
        assert!(!q.filter.matches(&chunk("src/a.py", Language::Python, "load")));
        assert!(!q.filter.matches(&chunk("src/a.rs", Language::Rust, "save")));
    }

    #[test]
    fn structured_filters_merge_with_inline_ones() {
        let f = Filters {
            languages: vec!["py".into()],
            paths: vec![],
            symbols: vec![],
        };
        let q = ParsedQuery::parse("read file lang:go", Some(&f)).unwrap();
        assert_eq!(q.filter.languages, vec![Language::Go, Language::Python]);
    }

    #[test]
    fn literal_paths_match_prefixes_and_segments() {
        let q = ParsedQuery::parse("x path:index", None).unwrap();
        assert!(q.filter.matches(&chunk("index/build.rs", Language::Rust, "a")));
        assert!(q.filter.matches(&chunk("src/index/build.rs", Language::Rust, "a")));
        assert!(!q.filter.matches(&chunk("src/search/x.rs", Language::Rust, "a")));
        assert!(q.filter.matches(&chunk("src/index.rs", Language::Rust, "a")));
        // A segment matches whole: not a longer name that starts with it.
        assert!(!q.filter.matches(&chunk("src/index_cmd.rs", Language::Rust, "a")));
        assert!(!q.filter.matches(&chunk("reindex/a.rs", Language::Rust, "a")));
        let q = ParsedQuery::parse("x path:src/index", None).unwrap();
        assert!(q.filter.matches(&chunk("src/index/build.rs", Language::Rust, "a")));
        assert!(!q.filter.matches(&chunk("srcgen/index/a.rs", Language::Rust, "a")));
    }

    #[test]
    fn rust_paths_that_start_with_a_filter_key_stay_text() {
        for query in ["lang::support", "path::Path", "how does path::Path normalize"] {
            let q = ParsedQuery::parse(query, None).unwrap();
            assert_eq!(q.text, query);
            assert!(q.filter.is_empty(), "{query}");
        }
    }

    #[test]
    fn filter_words_do_not_change_the_query_shape() {
        let plain = ParsedQuery::parse("load_config", None).unwrap();
        let filtered = ParsedQuery::parse("load_config lang:rust path:src", None).unwrap();
        assert_eq!(filtered.read.shape, plain.read.shape);
    }

    #[test]
    fn symbol_filters_match_non_ascii_names_in_any_case() {
        let q = ParsedQuery::parse("x sym:Ärger", None).unwrap();
        assert!(q.filter.matches(&chunk("a.rs", Language::Rust, "ärger")));
        assert!(q.filter.matches(&chunk("a.rs", Language::Rust, "ÄRGER")));
        assert!(!q.filter.matches(&chunk("a.rs", Language::Rust, "arger")));
    }

    #[test]
    fn bad_filters_are_reported() {
        assert_eq!(
            ParsedQuery::parse("x lang:cobol", None).unwrap_err(),
            QueryError::UnknownLanguage("cobol".into())
        );
        assert!(matches!(
            ParsedQuery::parse("x path:[", None),
            Err(QueryError::InvalidGlob { .. })
        ));
        assert_eq!(ParsedQuery::parse("lang:rust", None).unwrap_err(), QueryError::Empty);
        assert!(ParsedQuery::parse("sym:main", None).is_ok());
    }

    #[test]
    fn a_pasted_issue_keeps_its_filter_words_as_text() {
        let issue = "Date picker breaks with lang:de\n\nSetting lang:de in the config and opening the \
                     picker raises an error in path:a[ handling; sym:foo is not involved. It worked in \
                     the previous release and the changelog says nothing about locales. Steps: open \
                     the settings page, choose German, open the date picker, see the traceback.";
        let q = ParsedQuery::parse(issue, None).unwrap();
        assert!(q.is_long_text());
        assert!(q.filter.is_empty(), "{:?}", q.filter);
        assert!(q.text.contains("lang:de") && q.text.contains("sym:foo"), "{}", q.text);
        let f = Filters {
            languages: vec!["python".into()],
            paths: vec![],
            symbols: vec![],
        };
        let q = ParsedQuery::parse(issue, Some(&f)).unwrap();
        assert_eq!(
            q.filter.languages,
            vec![Language::Python],
            "structured filters still apply"
        );
    }

    #[test]
    fn filters_are_counted_without_repeats_and_capped() {
        let repeated = format!("x {}", "path:src ".repeat(100));
        assert!(ParsedQuery::parse(&repeated, None).is_ok());
        let many: String = (0..=MAX_FILTER_VALUES).map(|i| format!(" path:p{i}")).collect();
        assert_eq!(
            ParsedQuery::parse(&format!("x{many}"), None).unwrap_err(),
            QueryError::TooManyFilters {
                kind: "path",
                max: MAX_FILTER_VALUES
            }
        );
        let f = Filters {
            languages: vec![],
            paths: vec![],
            symbols: (0..=MAX_FILTER_VALUES).map(|i| format!("s{i}")).collect(),
        };
        assert!(matches!(
            ParsedQuery::parse("x", Some(&f)),
            Err(QueryError::TooManyFilters { kind: "sym", .. })
        ));
    }

    #[test]
    fn colons_in_free_text_stay_text() {
        let q = ParsedQuery::parse("std::fs::read http://x", None).unwrap();
        assert_eq!(q.text, "std::fs::read http://x");
        assert!(q.filter.is_empty());
    }

    #[test]
    fn long_texts_are_embedded_without_their_environment_dump() {
        let short = ParsedQuery::parse("parse the config lang:rust", None).unwrap();
        assert!(!short.is_long_text());
        assert_eq!(short.embed_text(), "parse the config");

        let issue = "Plot fails with dask arrays\n\nThe plot call raises a ValueError when the data is \
                     backed by dask, although the same array loaded in memory plots fine. Expected the \
                     plot to compute the array first, as the docs describe for every other method. \
                     Passing `compute=True` does not help either; the error names the chunk sizes.\n\n\
                     INSTALLED VERSIONS\ncommit: None\npython: 3.8.5\npython-bits: 64\nOS: Linux\nxarray: 0.16.0\n";
        let q = ParsedQuery::parse(issue, None).unwrap();
        assert!(q.is_long_text());
        assert!(q.embed_text().starts_with("Plot fails with dask arrays"));
        assert!(!q.embed_text().contains("python-bits"), "{}", q.embed_text());
        assert!(q.text.contains("python-bits"), "the parsed text keeps every word");
    }

    #[test]
    fn typescript_includes_tsx() {
        let q = ParsedQuery::parse("x lang:ts", None).unwrap();
        assert!(q.filter.matches(&chunk("a.tsx", Language::Tsx, "a")));
    }
}
