//! The BM25 arm at query time: ranks chunk ids in the tantivy index of a
//! version (format: [`crate::bundle::lexical`]).
//!
//! User text never goes through tantivy's query grammar: it is analyzed with
//! the same code-aware analyzers as the index and turned into a flat OR of
//! term queries over `symbol`, `path` and `content`, with symbol and path
//! matches boosted. No input can therefore be a syntax error, and a flat
//! union of term scorers keeps tantivy's block-WAND pruning (for short
//! queries: a pasted issue's hundreds of clauses are cheaper scored in full).
//!
//! Hits are collected by our own top-k loop over `Weight::for_each_pruning`
//! (or `Weight::for_each`) rather than `TopDocs`, for three reasons: chunk
//! ids are read from the fast field as hits arrive (no `DocAddress` round
//! trip); the caller's `allow` predicate is applied inside the loop, so
//! pruning only counts allowed hits and `k` allowed hits come back whenever
//! `k` exist, without over-fetching; and ties are broken by chunk id, so
//! results do not depend on the order in which writer threads happened to
//! lay out documents.
//!
//! Language filters are pushed down as a term-set filter on the raw `language`
//! field, but skipped when the requested set covers every language the index
//! holds (the common single-language case), which keeps block-WAND on.

use std::path::Path;

use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, EnableScoring, Occur, Query, TermQuery, TermSetQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::{TextAnalyzer, TokenStream};
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher, TantivyError, Term};

pub use crate::bundle::lexical::Bm25Error;
use crate::bundle::lexical::{Bm25Schema, field};
use crate::bundle::tokenize::{self, TokenMode};
use crate::model::Language;
use crate::search::top_k::TopK;

/// Per-field weights multiplied into each field's BM25 score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Boosts {
    pub symbol: f32,
    pub path: f32,
    pub content: f32,
}

/// Chosen on the CoSQA dev split (docs/EVAL.md has the sweep). A symbol
/// name also occurs in its chunk's content, so at 0.5 a symbol match already
/// outranks a content-only mention, while the short `symbol` field scores high
/// per match: weights above 1 let a name match drown everything else. A path
/// match is a file-level signal shared by every chunk of the file, so the path
/// weight is set like the symbol weight.
pub const DEFAULT_BOOSTS: Boosts = Boosts {
    symbol: 0.5,
    path: 0.5,
    content: 1.0,
};

/// At most this many distinct terms per field are taken from a query, so a
/// pasted page of code cannot build a query with thousands of clauses.
pub const MAX_QUERY_TERMS: usize = 128;

/// Unions of more term clauses than this are scored exhaustively rather than
/// with block-max WAND, whose per-document reordering of its scorers grows
/// with their number (a pasted issue makes hundreds; a short query tens).
const MAX_PRUNED_CLAUSES: usize = 64;

/// An opened BM25 index: one mmap-backed index and one searcher reused by
/// every query (the index is immutable, so the searcher never needs reloading).
pub struct Bm25Index {
    fields: Bm25Schema,
    /// Kept alive with the searcher it produced.
    _reader: IndexReader,
    searcher: Searcher,
    /// The id fast field of each segment, by segment ordinal.
    ids: Vec<Column<u64>>,
    /// Languages with at least one document, to skip filters that select everything.
    present_languages: Vec<Language>,
    code_analyzer: TextAnalyzer,
    path_analyzer: TextAnalyzer,
}

// Engines share one index across request threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Bm25Index>();
};

impl std::fmt::Debug for Bm25Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bm25Index")
            .field("num_docs", &self.num_docs())
            .field("segments", &self.ids.len())
            .field("languages", &self.present_languages)
            .finish()
    }
}

impl Bm25Index {
    /// Opens the index in `dir` (memory-mapped) and registers the analyzers on it.
    pub fn open(dir: &Path) -> Result<Self, Bm25Error> {
        if !dir.is_dir() {
            return Err(Bm25Error::Missing {
                path: dir.to_path_buf(),
            });
        }
        let corrupt = |source: TantivyError| Bm25Error::Corrupt {
            path: dir.to_path_buf(),
            source,
        };
        let index = Index::open_in_dir(dir).map_err(corrupt)?;
        tokenize::register(&index);
        let fields = Bm25Schema::from_schema(index.schema(), dir)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(corrupt)?;
        let searcher = reader.searcher();
        let ids = searcher
            .segment_readers()
            .iter()
            .map(|segment| segment.fast_fields().u64(field::ID))
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        let mut present_languages = Vec::new();
        for language in Language::ALL {
            let term = Term::from_field_text(fields.language, language.as_str());
            if searcher.doc_freq(&term).map_err(corrupt)? > 0 {
                present_languages.push(language);
            }
        }
        Ok(Bm25Index {
            // Queries are analysed exactly as the indexed text was.
            code_analyzer: tokenize::analyzer_with(TokenMode::Code, tokenize::STEM_ENGLISH),
            path_analyzer: tokenize::analyzer_with(TokenMode::Path, tokenize::STEM_ENGLISH),
            fields,
            _reader: reader,
            searcher,
            ids,
            present_languages,
        })
    }

    pub fn num_docs(&self) -> u64 {
        self.searcher.num_docs()
    }

    /// Top-`k` chunk ids by BM25 over symbol, path and content (boosted by
    /// field), OR semantics, best first; ties broken by smaller chunk id.
    /// `languages`, when non-empty, restricts hits to those languages;
    /// `allow`, when given, to the chunk ids it accepts. Any text is accepted:
    /// text without a single token returns no hits.
    pub fn search(
        &self,
        text: &str,
        k: usize,
        languages: &[Language],
        allow: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> Result<Vec<(u32, f32)>, Bm25Error> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let Some((mut query, clauses)) = self.text_query(text) else {
            return Ok(Vec::new());
        };
        if !languages.is_empty() {
            let wanted: Vec<Language> = self
                .present_languages
                .iter()
                .copied()
                .filter(|l| languages.contains(l))
                .collect();
            if wanted.is_empty() {
                return Ok(Vec::new());
            }
            if wanted.len() < self.present_languages.len() {
                let terms = wanted
                    .iter()
                    .map(|l| Term::from_field_text(self.fields.language, l.as_str()));
                let filter = ConstScoreQuery::new(Box::new(TermSetQuery::new(terms)), 0.0);
                query = Box::new(BooleanQuery::new(vec![
                    (Occur::Must, query),
                    (Occur::Must, Box::new(filter)),
                ]));
            }
        }
        self.collect(query.as_ref(), k, allow, clauses <= MAX_PRUNED_CLAUSES)
    }

    /// The distinct terms of `text` under the content analyzer, in order of
    /// first occurrence, at most [`MAX_QUERY_TERMS`].
    pub(crate) fn terms(&self, text: &str) -> Vec<String> {
        distinct_terms(&self.code_analyzer, text)
    }

    /// Top-`k` chunk ids by BM25 over `content` alone, each term with its own
    /// weight (file ranking weighs an issue's title words more). Terms are
    /// already analyzed ([`Bm25Index::terms`]).
    pub(crate) fn search_weighted(
        &self,
        terms: &[(String, f32)],
        k: usize,
        allow: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> Result<Vec<(u32, f32)>, Bm25Error> {
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|(text, weight)| {
                let term = Term::from_field_text(self.fields.content, text);
                let q: Box<dyn Query> = Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                let q: Box<dyn Query> = if *weight == 1.0 {
                    q
                } else {
                    Box::new(BoostQuery::new(q, *weight))
                };
                (Occur::Should, q)
            })
            .collect();
        if clauses.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let prune = clauses.len() <= MAX_PRUNED_CLAUSES;
        self.collect(&BooleanQuery::new(clauses), k, allow, prune)
    }

    /// The flat boosted OR over every (field, query term) and its number of
    /// clauses; `None` when the text has no tokens.
    fn text_query(&self, text: &str) -> Option<(Box<dyn Query>, usize)> {
        let code_terms = distinct_terms(&self.code_analyzer, text);
        // The path analyzer differs from the code analyzer only in keeping `-`
        // inside identifiers, so without a `-` the code terms are the path terms.
        let path_terms = if text.contains('-') {
            distinct_terms(&self.path_analyzer, text)
        } else {
            code_terms.clone()
        };
        let per_field = [
            (self.fields.symbol, &code_terms, DEFAULT_BOOSTS.symbol),
            (self.fields.path, &path_terms, DEFAULT_BOOSTS.path),
            (self.fields.content, &code_terms, DEFAULT_BOOSTS.content),
        ];
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, terms, boost) in per_field {
            if boost <= 0.0 {
                continue;
            }
            for text in terms {
                let term = Term::from_field_text(field, text);
                let term_query: Box<dyn Query> = Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                let clause = if boost == 1.0 {
                    term_query
                } else {
                    Box::new(BoostQuery::new(term_query, boost))
                };
                clauses.push((Occur::Should, clause));
            }
        }
        if clauses.is_empty() {
            None
        } else {
            let n = clauses.len();
            Some((Box::new(BooleanQuery::new(clauses)), n))
        }
    }

    /// Runs `query` segment by segment, keeping the best `k` allowed hits.
    /// With `prune`, block-max WAND skips what cannot enter the top `k` (the
    /// threshold carries across segments); without, every match is scored by
    /// tantivy's buffered union, which is far cheaper than WAND once the union
    /// has hundreds of term scorers to keep ordered.
    fn collect(
        &self,
        query: &dyn Query,
        k: usize,
        allow: Option<&(dyn Fn(u32) -> bool + Sync)>,
        prune: bool,
    ) -> Result<Vec<(u32, f32)>, Bm25Error> {
        let weight = query.weight(EnableScoring::enabled_from_searcher(&self.searcher))?;
        let mut top = TopK::new(k);
        for (segment, ids) in self.searcher.segment_readers().iter().zip(&self.ids) {
            let alive = segment.alive_bitset();
            let keep = |top: &mut TopK, doc, score| {
                if alive.is_none_or(|a| a.is_alive(doc))
                    && let Some(id) = ids.first(doc)
                {
                    let id = id as u32;
                    if allow.is_none_or(|allow| allow(id)) {
                        top.push(id, score);
                    }
                }
            };
            if prune {
                weight.for_each_pruning(top.threshold(), segment, &mut |doc, score| {
                    keep(&mut top, doc, score);
                    top.threshold()
                })?;
            } else {
                weight.for_each(segment, &mut |doc, score| keep(&mut top, doc, score))?;
            }
        }
        Ok(top.into_sorted())
    }
}

/// The distinct token texts of `text` under `analyzer`, in order of first
/// occurrence, at most [`MAX_QUERY_TERMS`].
fn distinct_terms(analyzer: &TextAnalyzer, text: &str) -> Vec<String> {
    let mut analyzer = analyzer.clone();
    let mut stream = analyzer.token_stream(text);
    let mut terms: Vec<String> = Vec::new();
    while terms.len() < MAX_QUERY_TERMS
        && let Some(token) = stream.next()
    {
        // Linear search: queries are short and the list is capped.
        if !terms.contains(&token.text) {
            terms.push(token.text.clone());
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::model::Chunk;
    use crate::test_support::content_chunk as chunk;
    use crate::test_support::write_bm25;

    fn build(chunks: &[Chunk]) -> (tempfile::TempDir, Bm25Index) {
        let dir = tempfile::tempdir().unwrap();
        write_bm25(dir.path(), chunks, 50 << 20).unwrap();
        let index = Bm25Index::open(dir.path()).unwrap();
        (dir, index)
    }

    fn ids(hits: &[(u32, f32)]) -> Vec<u32> {
        hits.iter().map(|h| h.0).collect()
    }

    fn corpus() -> Vec<Chunk> {
        vec![
            chunk(
                10,
                "src/net/client.rs",
                Some("parse_http_response"),
                "fn parse_http_response(buf: &[u8]) -> Response { todo() }",
            ),
            chunk(
                11,
                "src/util.rs",
                Some("helper"),
                "fn helper() { // later we parse http response bodies\n}",
            ),
            chunk(
                12,
                "src/config/loader.py",
                Some("load"),
                "def load(path):\n    return open(path).read()",
            ),
            chunk(13, "src/other.py", Some("configure"), "def configure():\n    pass"),
            chunk(
                14,
                "docs/readme.md",
                None,
                "This project parses HTTP responses quickly.",
            ),
            chunk(
                15,
                "src/lib.go",
                Some("ReadFile"),
                "func ReadFile(name string) ([]byte, error) { return nil, nil }",
            ),
        ]
    }

    #[test]
    fn round_trip_and_symbol_beats_content_mention() {
        let (_dir, index) = build(&corpus());
        assert_eq!(index.num_docs(), 6);
        let hits = index.search("parse http response", 10, &[], None).unwrap();
        assert_eq!(hits[0].0, 10, "{hits:?}");
        assert!(ids(&hits).contains(&11));
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "sorted by score: {hits:?}");
        // Exact identifier query, camelCase split on the query side too.
        let hits = index.search("parseHttpResponse", 3, &[], None).unwrap();
        assert_eq!(hits[0].0, 10);
        let hits = index.search("read_file", 3, &[], None).unwrap();
        assert_eq!(hits[0].0, 15, "{hits:?}");
    }

    #[test]
    fn path_match_is_boosted() {
        // Same-length content mentioning "config" once; only chunk 1 has it in its path.
        let chunks = vec![
            chunk(1, "src/config/loader.py", Some("load"), "def load(p):\n    config = p"),
            chunk(2, "src/other/thing.py", Some("save"), "def save(p):\n    config = p"),
        ];
        let (_dir, index) = build(&chunks);
        let hits = index.search("config", 2, &[], None).unwrap();
        assert_eq!(ids(&hits), [1, 2]);
        assert!(hits[0].1 > hits[1].1);
    }

    #[test]
    fn language_filter_is_pushed_down() {
        let (_dir, index) = build(&corpus());
        let hits = index
            .search("load configure read file parse", 10, &[Language::Python], None)
            .unwrap();
        assert_eq!(
            ids(&hits).iter().copied().collect::<HashSet<_>>(),
            HashSet::from([12, 13])
        );
        let hits = index
            .search("read file", 10, &[Language::Go, Language::Rust], None)
            .unwrap();
        assert!(ids(&hits).iter().all(|id| [10, 11, 15].contains(id)) && ids(&hits).contains(&15));
        // A language absent from the index selects nothing.
        assert!(
            index
                .search("read file", 10, &[Language::Java], None)
                .unwrap()
                .is_empty()
        );
        // Every present language selects the same as no filter.
        let all: Vec<Language> = Language::ALL.to_vec();
        assert_eq!(
            index.search("parse http", 10, &all, None).unwrap(),
            index.search("parse http", 10, &[], None).unwrap()
        );
    }

    #[test]
    fn allow_filter_still_returns_k_hits() {
        // 300 matching docs; the best-scoring ones (short content) are all disallowed.
        let chunks: Vec<Chunk> = (0..300)
            .map(|i| {
                let padding = "x ".repeat(i as usize % 50);
                chunk(
                    i,
                    &format!("src/f{i}.rs"),
                    None,
                    &format!("fn f() {{ token {padding} }}"),
                )
            })
            .collect();
        let (_dir, index) = build(&chunks);
        let unfiltered = index.search("token", 20, &[], None).unwrap();
        assert_eq!(unfiltered.len(), 20);
        let allow = |id: u32| id % 50 >= 40 && id.is_multiple_of(3);
        let hits = index.search("token", 20, &[], Some(&allow)).unwrap();
        assert_eq!(hits.len(), 20);
        assert!(ids(&hits).iter().all(|&id| allow(id)));
        assert!(ids(&hits).iter().all(|id| !ids(&unfiltered).contains(id)));
        // Fewer allowed docs than k: all of them come back.
        let few = |id: u32| id < 5;
        assert_eq!(index.search("token", 20, &[], Some(&few)).unwrap().len(), 5);
    }

    #[test]
    fn long_queries_are_scored_in_full_with_the_same_answer_as_pruning() {
        // 400 chunks over a vocabulary of 120 words, each chunk a different mix.
        let words: Vec<String> = (0..120).map(|w| format!("word{w}")).collect();
        let chunks: Vec<Chunk> = (0..400u32)
            .map(|i| {
                let text: Vec<&str> = (0..12)
                    .map(|j| words[((i * 7 + j * j * 13) % 120) as usize].as_str())
                    .collect();
                chunk(i, &format!("src/f{}.rs", i % 40), None, &text.join(" "))
            })
            .collect();
        let (_dir, index) = build(&chunks);
        let text = words.join(" ");
        let (query, clauses) = index.text_query(&text).unwrap();
        assert!(
            clauses > MAX_PRUNED_CLAUSES,
            "{clauses} clauses take the exhaustive path"
        );
        for k in [5, 50, 1000] {
            let full = index.collect(query.as_ref(), k, None, false).unwrap();
            let pruned = index.collect(query.as_ref(), k, None, true).unwrap();
            assert_eq!(full.len(), k.min(400));
            // The same hits with the same scores, up to the order WAND adds
            // clause scores in (identical chunks may differ in the last bit).
            let by_id = |hits: &[(u32, f32)]| {
                let mut v = hits.to_vec();
                v.sort_by_key(|h| h.0);
                v
            };
            let (a, b) = (by_id(&full), by_id(&pruned));
            assert_eq!(ids(&a), ids(&b), "k={k}");
            assert!(a.iter().zip(&b).all(|(x, y)| (x.1 - y.1).abs() <= 1e-4 * x.1), "k={k}");
            assert!(full.windows(2).all(|w| w[0].1 >= w[1].1));
            assert_eq!(index.search(&text, k, &[], None).unwrap(), full);
        }
    }

    #[test]
    fn ties_break_by_chunk_id_and_k_is_respected() {
        let chunks: Vec<Chunk> = (0..50)
            .rev()
            .map(|i| chunk(i, "a.rs", None, "same words here"))
            .collect();
        let (_dir, index) = build(&chunks);
        let hits = index.search("words", 5, &[], None).unwrap();
        assert_eq!(ids(&hits), [0, 1, 2, 3, 4]);
        assert!(index.search("words", 0, &[], None).unwrap().is_empty());
    }

    #[test]
    fn weird_input_never_errors() {
        let (_dir, index) = build(&corpus());
        for text in [
            "",
            " ",
            "\"",
            "(",
            ")",
            "AND",
            "OR NOT",
            "*",
            "::",
            "🦀",
            "a:b",
            "path:\"x",
            "[1 TO",
            "+-!^~",
            "\\",
            "{}",
            "\0",
            "title:(",
            "ß∂ƒ©",
            "parse AND (http",
            &"x".repeat(10_000),
            &"word ".repeat(5_000),
        ] {
            index
                .search(text, 5, &[], None)
                .unwrap_or_else(|e| panic!("{text:?}: {e}"));
            index
                .search(text, 5, &[Language::Rust], None)
                .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
        assert!(index.search("::", 5, &[], None).unwrap().is_empty());
        // Query syntax is not interpreted: "AND" is a word and "parse" still matches.
        assert!(!index.search("parse AND (http", 5, &[], None).unwrap().is_empty());
    }

    #[test]
    fn open_errors_are_typed() {
        let missing = Path::new("/nonexistent/trusty-search/bm25");
        assert!(matches!(Bm25Index::open(missing), Err(Bm25Error::Missing { .. })));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(Bm25Index::open(empty.path()), Err(Bm25Error::Corrupt { .. })));
        let (dir, index) = build(&corpus());
        drop(index);
        std::fs::write(dir.path().join("meta.json"), b"{ not json").unwrap();
        assert!(matches!(Bm25Index::open(dir.path()), Err(Bm25Error::Corrupt { .. })));
        // A tantivy index with another schema is rejected by field.
        let other = tempfile::tempdir().unwrap();
        let mut builder = tantivy::schema::Schema::builder();
        builder.add_text_field("body", tantivy::schema::TEXT);
        Index::create_in_dir(other.path(), builder.build()).unwrap();
        assert!(matches!(
            Bm25Index::open(other.path()),
            Err(Bm25Error::Schema { field: "id", .. })
        ));
    }
}
