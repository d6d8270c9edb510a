//! The BM25 arm at query time: ranks chunk ids in a tantivy index written by
//! [`crate::index::bm25::write_bm25`].
//!
//! User text never goes through tantivy's query grammar: it is analyzed with
//! the same code-aware analyzers as the index and turned into a flat OR of
//! term queries over `symbol`, `path` and `content`, with symbol and path
//! matches boosted. No input can therefore be a syntax error, and a flat
//! union of term scorers keeps tantivy's block-WAND pruning.
//!
//! Hits are collected by our own top-k loop over `Weight::for_each_pruning`
//! rather than `TopDocs`, for three reasons: chunk ids are read from the fast
//! field as hits arrive (no `DocAddress` round trip); the caller's `allow`
//! predicate is applied inside the loop, so pruning only counts allowed hits
//! and `k` allowed hits come back whenever `k` exist, without over-fetching;
//! and ties are broken by chunk id, so results do not depend on the order in
//! which writer threads happened to lay out documents.
//!
//! Language filters are pushed down as a term-set filter on the raw `language`
//! field, but skipped when the requested set covers every language the index
//! holds (the common single-language case), which keeps block-WAND on.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, EnableScoring, Occur, Query, QueryParser, TermQuery, TermSetQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::{TextAnalyzer, TokenStream};
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher, TantivyError, Term};

pub use crate::index::bm25::Bm25Error;
use crate::index::bm25::{Bm25Schema, field};
use crate::index::tokenize::{self, Mode};
use crate::model::Language;

/// Per-field weights multiplied into each field's BM25 score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Boosts {
    pub symbol: f32,
    pub path: f32,
    pub content: f32,
}

/// Chosen on the CoSQA evaluation (`eval_cosqa` below), stemmed analyzers:
/// content only 0.395 nDCG@10; symbol 0.25–0.5 0.409 (plateau); symbol 1.0
/// 0.378; symbol 2.0 0.338. Because a symbol name also occurs in its chunk's
/// content, a symbol match already outranks a content-only mention at 0.5, and
/// the short `symbol` field scores high per match, so weights above 1 let a
/// name match drown everything else. Paths are synthetic in CoSQA, so the path
/// weight is set like the symbol weight: a path match is a file-level signal
/// shared by every chunk of the file and must not dominate either.
pub const DEFAULT_BOOSTS: Boosts = Boosts {
    symbol: 0.5,
    path: 0.5,
    content: 1.0,
};

/// At most this many distinct terms per field are taken from a query, so a
/// pasted page of code cannot build a query with thousands of clauses.
pub const MAX_QUERY_TERMS: usize = 128;

/// An opened BM25 index: one mmap-backed index and one searcher reused by
/// every query (the index is immutable, so the searcher never needs reloading).
pub struct Bm25Index {
    index: Index,
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
    boosts: Boosts,
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
            .field("boosts", &self.boosts)
            .finish()
    }
}

impl Bm25Index {
    /// Opens the index in `dir` (memory-mapped) and registers the analyzers on it.
    pub fn open(dir: &Path) -> Result<Self, Bm25Error> {
        Self::open_with(dir, tokenize::STEM_ENGLISH, &[])
    }

    /// [`Bm25Index::open`] with explicit analyzer choices, for the evaluation.
    pub(crate) fn open_with(dir: &Path, stem: bool, stop_words: &[&str]) -> Result<Self, Bm25Error> {
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
        tokenize::register_with(&index, stem);
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
            code_analyzer: tokenize::query_analyzer(Mode::Code, stem, stop_words),
            path_analyzer: tokenize::query_analyzer(Mode::Path, stem, stop_words),
            index,
            fields,
            _reader: reader,
            searcher,
            ids,
            present_languages,
            boosts: DEFAULT_BOOSTS,
        })
    }

    /// Replaces the field boosts (the defaults are [`DEFAULT_BOOSTS`]).
    pub fn set_boosts(&mut self, boosts: Boosts) {
        self.boosts = boosts;
    }

    pub fn boosts(&self) -> Boosts {
        self.boosts
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
        let Some(mut query) = self.text_query(text) else {
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
        self.collect(query.as_ref(), k, allow)
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
        self.collect(&BooleanQuery::new(clauses), k, allow)
    }

    /// The same text through plain tantivy: a lenient `QueryParser` over the
    /// content field and `TopDocs`, ids read back through the fast field. The
    /// baseline our `search` is benchmarked against.
    pub fn raw_tantivy_search(&self, text: &str, k: usize) -> Result<Vec<(u32, f32)>, Bm25Error> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let parser = QueryParser::for_index(&self.index, vec![self.fields.content]);
        let (query, _errors) = parser.parse_query_lenient(text);
        self.stock_top_docs(query.as_ref(), k)
    }

    /// Stock tantivy doing the same work as [`Bm25Index::search`]: a lenient
    /// `QueryParser` over the symbol, path and content fields with our boosts
    /// (the fields' own tokenizers), `TopDocs`, ids through the fast field. The
    /// peer our own query building and collection is benchmarked against.
    pub fn raw_tantivy_search_all_fields(&self, text: &str, k: usize) -> Result<Vec<(u32, f32)>, Bm25Error> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let f = &self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.symbol, f.path, f.content]);
        for (field, boost) in [
            (f.symbol, self.boosts.symbol),
            (f.path, self.boosts.path),
            (f.content, self.boosts.content),
        ] {
            parser.set_field_boost(field, boost);
        }
        let (query, _errors) = parser.parse_query_lenient(text);
        self.stock_top_docs(query.as_ref(), k)
    }

    /// Stock `TopDocs` collection, chunk ids read back through the fast field.
    fn stock_top_docs(&self, query: &dyn Query, k: usize) -> Result<Vec<(u32, f32)>, Bm25Error> {
        let top = self.searcher.search(query, &TopDocs::with_limit(k).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            if let Some(id) = self.ids[address.segment_ord as usize].first(address.doc_id) {
                hits.push((id as u32, score));
            }
        }
        Ok(hits)
    }

    /// The flat boosted OR over every (field, query term); `None` when the text
    /// has no tokens.
    fn text_query(&self, text: &str) -> Option<Box<dyn Query>> {
        let code_terms = distinct_terms(&self.code_analyzer, text);
        // The path analyzer differs from the code analyzer only in keeping `-`
        // inside identifiers, so without a `-` the code terms are the path terms.
        let path_terms = if text.contains('-') {
            distinct_terms(&self.path_analyzer, text)
        } else {
            code_terms.clone()
        };
        let per_field = [
            (self.fields.symbol, &code_terms, self.boosts.symbol),
            (self.fields.path, &path_terms, self.boosts.path),
            (self.fields.content, &code_terms, self.boosts.content),
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
            Some(Box::new(BooleanQuery::new(clauses)))
        }
    }

    /// Runs `query` segment by segment with block-max pruning, keeping the best
    /// `k` allowed hits. The pruning threshold carries across segments.
    fn collect(
        &self,
        query: &dyn Query,
        k: usize,
        allow: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> Result<Vec<(u32, f32)>, Bm25Error> {
        let weight = query.weight(EnableScoring::enabled_from_searcher(&self.searcher))?;
        let mut top = TopK::new(k);
        for (segment, ids) in self.searcher.segment_readers().iter().zip(&self.ids) {
            let alive = segment.alive_bitset();
            weight.for_each_pruning(top.threshold(), segment, &mut |doc, score| {
                if alive.is_none_or(|a| a.is_alive(doc))
                    && let Some(id) = ids.first(doc)
                {
                    let id = id as u32;
                    if allow.is_none_or(|allow| allow(id)) {
                        top.push(Hit { score, id });
                    }
                }
                top.threshold()
            })?;
        }
        Ok(top.into_sorted().into_iter().map(|h| (h.id, h.score)).collect())
    }
}

/// A scored chunk id. Ordered so that the *worse* hit is the greater one
/// (lower score, then larger id), which makes `BinaryHeap` a min-heap on quality.
#[derive(Debug, Clone, Copy)]
struct Hit {
    score: f32,
    id: u32,
}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then(self.id.cmp(&other.id))
    }
}
impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Hit {}

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

/// Bounded top-k; the heap's top is the worst hit kept.
struct TopK {
    k: usize,
    heap: BinaryHeap<Hit>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    fn push(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && hit < *worst
        {
            *worst = hit;
        }
    }

    /// Scores must exceed this to be offered. Just below the worst kept score,
    /// so an equal score with a smaller chunk id can still displace it.
    fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::MIN
        } else {
            self.heap.peek().map_or(f32::MIN, |w| w.score.next_down())
        }
    }

    fn into_sorted(self) -> Vec<Hit> {
        // `into_sorted_vec` is ascending by `Ord`, i.e. best first.
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::index::bm25::tests::chunk;
    use crate::index::bm25::write_bm25;
    use crate::model::Chunk;

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
        let allow = |id: u32| id % 50 >= 40 && id % 3 == 0;
        let hits = index.search("token", 20, &[], Some(&allow)).unwrap();
        assert_eq!(hits.len(), 20);
        assert!(ids(&hits).iter().all(|&id| allow(id)));
        assert!(ids(&hits).iter().all(|id| !ids(&unfiltered).contains(id)));
        // Fewer allowed docs than k: all of them come back.
        let few = |id: u32| id < 5;
        assert_eq!(index.search("token", 20, &[], Some(&few)).unwrap().len(), 5);
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
            index
                .raw_tantivy_search(text, 5)
                .unwrap_or_else(|e| panic!("raw {text:?}: {e}"));
        }
        assert!(index.search("::", 5, &[], None).unwrap().is_empty());
        // Query syntax is not interpreted: "AND" is a word and "parse" still matches.
        assert!(!index.search("parse AND (http", 5, &[], None).unwrap().is_empty());
    }

    #[test]
    fn raw_tantivy_baseline_finds_content() {
        let (_dir, index) = build(&corpus());
        let hits = index.raw_tantivy_search("configure", 5).unwrap();
        assert_eq!(ids(&hits), [13]);
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

    #[test]
    fn top_k_keeps_best() {
        let mut top = TopK::new(3);
        for (i, s) in [1.0, 5.0, 3.0, 5.0, 0.5, 4.0].into_iter().enumerate() {
            top.push(Hit { score: s, id: i as u32 });
        }
        assert_eq!(top.threshold(), 4.0f32.next_down());
        let got: Vec<(u32, f32)> = top.into_sorted().into_iter().map(|h| (h.id, h.score)).collect();
        assert_eq!(got, [(1, 5.0), (3, 5.0), (5, 4.0)]);
    }

    mod eval {
        //! CoSQA evaluation (BEIR layout) used to choose boosts and analyzer
        //! options. Run with
        //! `cargo test --lib search::bm25::tests::eval -- --ignored --nocapture`.

        use std::collections::HashMap;
        use std::time::Instant;

        use super::*;
        use crate::index::bm25::write_bm25_with;
        use crate::model::SymbolKind;

        const DIR: &str = "/work/shared/eval/cosqa";

        /// Query stop words tried by the evaluation: English function and
        /// question words. They cost 0.005–0.01 nDCG@10 on CoSQA (IDF already
        /// discounts them), so production queries keep every word.
        const EVAL_STOP_WORDS: &[&str] = &[
            "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how", "i", "in",
            "into", "is", "it", "me", "my", "of", "on", "or", "that", "the", "there", "this", "to", "using", "was",
            "way", "what", "when", "where", "which", "with", "you",
        ];

        fn load() -> (Vec<Chunk>, Vec<(String, String)>, HashMap<String, HashSet<u32>>) {
            let mut corpus_ids = HashMap::new();
            let mut chunks = Vec::new();
            for line in std::fs::read_to_string(format!("{DIR}/corpus.jsonl")).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let text = v["text"].as_str().unwrap().to_string();
                let id = chunks.len() as u32;
                corpus_ids.insert(v["_id"].as_str().unwrap().to_string(), id);
                let symbol = text.find("def ").map(|at| {
                    text[at + 4..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                });
                let mut c = chunk(
                    id,
                    &format!("c{id}.py"),
                    symbol.as_deref().filter(|s| !s.is_empty()),
                    &text,
                );
                c.kind = SymbolKind::Function;
                chunks.push(c);
            }
            let mut qrels: HashMap<String, HashSet<u32>> = HashMap::new();
            for line in std::fs::read_to_string(format!("{DIR}/qrels/dev.tsv"))
                .unwrap()
                .lines()
                .skip(1)
            {
                let cols: Vec<&str> = line.split('\t').collect();
                if cols.len() == 3 && cols[2].trim() != "0" {
                    qrels
                        .entry(cols[0].to_string())
                        .or_default()
                        .insert(corpus_ids[cols[1]]);
                }
            }
            let mut queries = Vec::new();
            for line in std::fs::read_to_string(format!("{DIR}/queries.jsonl")).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let id = v["_id"].as_str().unwrap().to_string();
                if qrels.contains_key(&id) {
                    queries.push((id, v["text"].as_str().unwrap().to_string()));
                }
            }
            (chunks, queries, qrels)
        }

        fn ndcg10(index: &Bm25Index, queries: &[(String, String)], qrels: &HashMap<String, HashSet<u32>>) -> f64 {
            let mut total = 0.0;
            for (qid, text) in queries {
                let relevant = &qrels[qid];
                let hits = index.search(text, 10, &[], None).unwrap();
                let dcg: f64 = hits
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| relevant.contains(&h.0))
                    .map(|(rank, _)| 1.0 / (rank as f64 + 2.0).log2())
                    .sum();
                let ideal: f64 = (0..relevant.len().min(10))
                    .map(|rank| 1.0 / (rank as f64 + 2.0).log2())
                    .sum();
                total += dcg / ideal;
            }
            total / queries.len() as f64
        }

        #[test]
        #[ignore = "needs /work/shared/eval/cosqa; prints nDCG@10 for analyzer and boost choices"]
        fn eval_cosqa() {
            let (chunks, queries, qrels) = load();
            println!("corpus {} docs, {} queries", chunks.len(), queries.len());
            for stem in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                write_bm25_with(dir.path(), &chunks, 200 << 20, stem).unwrap();
                for (stop_name, stop) in [("no-stop", &[][..]), ("stop", EVAL_STOP_WORDS)] {
                    let mut index = Bm25Index::open_with(dir.path(), stem, stop).unwrap();
                    for (symbol, path, content) in [
                        (0.0, 0.0, 1.0),
                        (0.25, 1.0, 1.0),
                        (0.4, 1.0, 1.0),
                        (0.5, 1.0, 1.0),
                        (0.6, 1.0, 1.0),
                        (0.75, 1.0, 1.0),
                        (1.0, 1.0, 1.0),
                        (2.0, 1.5, 1.0),
                        (0.5, 0.5, 1.0),
                    ] {
                        index.set_boosts(Boosts { symbol, path, content });
                        let score = ndcg10(&index, &queries, &qrels);
                        println!(
                            "stem={stem} {stop_name} symbol={symbol} path={path} content={content}: nDCG@10 = {score:.4}"
                        );
                    }
                }
            }
            // The production configuration must stay at or above the target.
            let dir = tempfile::tempdir().unwrap();
            write_bm25(dir.path(), &chunks, 200 << 20).unwrap();
            let index = Bm25Index::open(dir.path()).unwrap();
            let score = ndcg10(&index, &queries, &qrels);
            println!("default ({:?}): nDCG@10 = {score:.4}", index.boosts());
            assert!(score >= 0.35, "nDCG@10 {score} below the 0.35 target");
        }

        #[test]
        #[ignore = "needs /work/shared/eval/cosqa; compares query latency with raw tantivy"]
        fn latency_vs_raw_tantivy() {
            let (chunks, queries, _) = load();
            let dir = tempfile::tempdir().unwrap();
            write_bm25(dir.path(), &chunks, 200 << 20).unwrap();
            let index = Bm25Index::open(dir.path()).unwrap();
            // Interleaved rounds, best round of each kept: robust to other
            // processes competing for the CPU.
            let (mut best_raw, mut best_ours) = (std::time::Duration::MAX, std::time::Duration::MAX);
            for _ in 0..30 {
                let started = Instant::now();
                for (_, text) in &queries {
                    std::hint::black_box(index.raw_tantivy_search(text, 10).unwrap());
                }
                best_raw = best_raw.min(started.elapsed());
                let started = Instant::now();
                for (_, text) in &queries {
                    std::hint::black_box(index.search(text, 10, &[], None).unwrap());
                }
                best_ours = best_ours.min(started.elapsed());
            }
            let n = queries.len() as u32;
            let ratio = best_ours.as_secs_f64() / best_raw.as_secs_f64();
            println!(
                "raw tantivy {:?}/query, ours {:?}/query, ratio {ratio:.2}",
                best_raw / n,
                best_ours / n
            );
            // Our crate is built without optimisation in the test profile while
            // tantivy is optimised, which penalises only our side: judge optimised runs.
            if cfg!(debug_assertions) {
                println!("debug-assertions build: ratio reported, not judged (judge with --release)");
            } else {
                assert!(ratio < 1.5, "search is {ratio:.2}x raw tantivy");
            }
        }
    }
}
