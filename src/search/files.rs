//! File-level ranking: which *files* of a repository a query is about.
//!
//! Engineers and agents mostly ask "where is this handled?", often by pasting
//! an issue or a stack trace. A chunk list answers that poorly: tests and
//! examples compete with the implementation, and the evidence that names a
//! file (a path in a traceback, `Class.method`, a symbol defined there) is
//! spread over the text. Here each file collects several kinds of evidence,
//! each normalised by its best file for this query and weighted:
//!
//! - **chunks**: BM25 over chunk contents, a file scoring its best chunks with
//!   a decaying sum (one strong chunk beats many weak ones, several beat one);
//! - **defines**: the file defines a symbol the query names exactly (rarer
//!   names weigh more, names in the title more still);
//! - **members**: the file defines `Class.method` for a dotted name in the query;
//! - **path**: query terms occur in the file's path (rarer path terms weigh more);
//! - **mentions**: the query names the file by path or a stack frame points at it;
//! - **modules**: a dotted name in the query is the file's module path
//!   (`sphinx.ext.autodoc` → `sphinx/ext/autodoc/__init__.py`, or `….py`);
//! - **vectors** (when the index has them and the mode asks for them): the
//!   file's nearest chunk to the query embedding, for the files an issue
//!   describes in words none of them use.
//!
//! Then repository priors: tests, examples, benchmarks, docs and vendored
//! copies are down-weighted, tests and docs less so when the title asks for
//! them. Every weight is a [`FileRankParams`] field;
//! `docs/EVAL.md` gives each one's measured effect.

use std::collections::HashMap;

use crate::bundle::graph::{CodeGraph, NodeKind};
use crate::heap_size;
use crate::model::{Chunk, Language};

use super::query_text::QueryText;

/// The weights and priors of file ranking (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileRankParams {
    /// Weight of chunk BM25 evidence.
    pub chunks: f32,
    /// Weight of exact definitions of query identifiers.
    pub defines: f32,
    /// Weight of `Class.method` definitions of dotted query names.
    pub members: f32,
    /// Weight of query terms found in the file path.
    pub path: f32,
    /// Weight of explicit path mentions and stack frames.
    pub mentions: f32,
    /// What each stack frame counts, from the one nearest the error outwards:
    /// the frame that raised is the likeliest fix site, its callers less so
    /// (1 counts every frame alike).
    pub frame_decay: f32,
    /// Weight of dotted module paths that name the file.
    pub modules: f32,
    /// Weight of the file's nearest chunk to the query embedding.
    pub vectors: f32,
    /// Nearest chunks retrieved for that evidence; the ANN search costs more
    /// the deeper it reads.
    pub vector_hits: usize,
    /// Extra query-term weight for words of the title (first line).
    pub title_boost: f32,
    /// Chunks per file that count, and the decay from one to the next.
    pub chunk_top: usize,
    pub chunk_decay: f32,
    /// BM25 chunk hits aggregated (the best ones).
    pub chunk_hits: usize,
    /// Score multiplier of test files, unless the query mentions tests.
    pub test_prior: f32,
    /// Score multiplier of docs (prose files and documentation directories),
    /// examples, benchmarks and scripts, unless asked for.
    pub doc_prior: f32,
    /// Score multiplier of vendored and minified third-party files.
    pub vendor_prior: f32,
    /// Score multiplier of tests (or docs) when the title asks for them: a
    /// title about tests is as often about the test machinery as about a test.
    pub asked_prior: f32,
    /// A query that is one identifier asks where it is defined: the files
    /// defining it go first, in ranked order (`definers_first=0` turns it off).
    pub definers_first: bool,
    /// Hybrid chunk search weighs each chunk by its file's prior too, so a
    /// test that repeats the query's words does not outrank the code.
    pub chunk_priors: bool,
}

impl Default for FileRankParams {
    fn default() -> Self {
        FileRankParams {
            chunks: 1.0,
            defines: 0.3,
            members: 1.0,
            path: 0.25,
            mentions: 1.0,
            frame_decay: 1.0,
            modules: 0.1,
            vectors: 0.5,
            vector_hits: 100,
            title_boost: 2.0,
            chunk_top: 5,
            chunk_decay: 0.6,
            chunk_hits: 1000,
            test_prior: 0.1,
            doc_prior: 0.3,
            vendor_prior: 0.1,
            asked_prior: 0.5,
            definers_first: true,
            chunk_priors: true,
        }
    }
}

impl FileRankParams {
    /// Sets one parameter by its field name (`test_prior=1` turns that prior off),
    /// for evaluation sweeps from the command line.
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (key, value) = super::param::split(assignment)?;
        let number = super::param::weight(key, value)?;
        let count = || number as usize;
        match key {
            "chunks" => self.chunks = number,
            "defines" => self.defines = number,
            "members" => self.members = number,
            "path" => self.path = number,
            "mentions" => self.mentions = number,
            "frame_decay" => self.frame_decay = number.min(1.0),
            "modules" => self.modules = number,
            "vectors" => self.vectors = number,
            "vector_hits" => self.vector_hits = count(),
            "title_boost" => self.title_boost = number,
            "chunk_top" => self.chunk_top = count(),
            "chunk_decay" => self.chunk_decay = number,
            "chunk_hits" => self.chunk_hits = count(),
            "test_prior" => self.test_prior = number,
            "doc_prior" => self.doc_prior = number,
            "vendor_prior" => self.vendor_prior = number,
            "asked_prior" => self.asked_prior = number,
            "definers_first" => self.definers_first = number != 0.0,
            "chunk_priors" => self.chunk_priors = number != 0.0,
            other => return Err(format!("unknown file-ranking parameter {other:?}")),
        }
        Ok(())
    }

    /// The score multiplier of a file in `role` for a query asking `asks`.
    fn prior(&self, role: FileRole, asks: Asks) -> f32 {
        match role {
            FileRole::Test if asks.tests => self.asked_prior,
            FileRole::Test => self.test_prior,
            FileRole::Docs if asks.docs => self.asked_prior,
            FileRole::Docs => self.doc_prior,
            FileRole::Vendored => self.vendor_prior,
            FileRole::Source => 1.0,
        }
    }
}

/// Whether a query asks for the files the priors push down, read from its
/// title's analyzed terms (deeper in an issue, "the tests pass" is incidental).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Asks {
    tests: bool,
    docs: bool,
}

impl Asks {
    pub(crate) fn of(title_terms: &[String]) -> Asks {
        let asks = |words: &[&str]| title_terms.iter().any(|t| words.contains(&t.as_str()));
        Asks {
            tests: asks(ASKS_FOR_TESTS),
            docs: asks(ASKS_FOR_DOCS),
        }
    }
}

/// Identifiers shorter than this are too ambiguous for an exact lookup.
const MIN_IDENT_LEN: usize = 3;
/// Segments of a path or dotted name tried against the index: resolving one
/// costs the square of its segments, and a 64 KiB mention could have 30,000.
const MAX_MENTION_SEGMENTS: usize = 32;
/// Identifiers of prose and of every Python snippet: not worth a lookup.
const PROSE_STOP: &[&str] = &[
    "self",
    "cls",
    "none",
    "true",
    "false",
    "print",
    "return",
    "import",
    "from",
    "def",
    "class",
    "lambda",
    "pass",
    "raise",
    "try",
    "except",
    "else",
    "elif",
    "while",
    "for",
    "with",
    "yield",
    "assert",
    "del",
    "global",
    "nonlocal",
    "async",
    "await",
    "object",
    "str",
    "int",
    "float",
    "list",
    "dict",
    "tuple",
    "set",
    "type",
    "len",
    "range",
    "value",
    "values",
    "data",
    "name",
    "names",
    "example",
    "issue",
    "bug",
    "error",
    "expected",
    "actual",
    "result",
    "output",
    "code",
    "version",
    "python",
    "version_info",
];
const TEST_DIRS: &[&str] = &["test", "tests", "testing"];
/// Top-level directories of material other than the product's code.
const DOC_TOP_DIRS: &[&str] = &[
    "doc",
    "docs",
    "example",
    "examples",
    "benchmarks",
    "benchmark",
    "bench",
    "asv_bench",
    "scripts",
    "tools",
    "release",
    "bin",
    "ci",
    "devtools",
];
/// The same, at any depth (narrower: these names are unambiguous).
const DOC_ANY_DIRS: &[&str] = &["doc", "docs", "examples", "benchmarks", "asv_bench"];
/// Files of prose whatever their extension.
const PROSE_NAMES: &[&str] = &[
    "readme",
    "license",
    "licence",
    "copying",
    "notice",
    "authors",
    "changelog",
    "changes",
];
/// Directories of code copied in from elsewhere.
const VENDOR_DIRS: &[&str] = &[
    "vendor",
    "vendored",
    "_vendor",
    "third_party",
    "thirdparty",
    "node_modules",
    "extern",
];
/// Query terms that ask for the files the priors would push down.
const ASKS_FOR_TESTS: &[&str] = &["test", "tests", "testing", "pytest", "unittest", "fixture", "conftest"];
const ASKS_FOR_DOCS: &[&str] = &[
    "doc",
    "docs",
    "documentation",
    "example",
    "examples",
    "benchmark",
    "benchmarks",
];

/// What a file is, for the priors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileRole {
    Source,
    Test,
    Docs,
    Vendored,
}

/// A file's role from its path and language: prose (Markdown, reStructuredText,
/// `.txt`) is documentation wherever it lives, since an issue's prose matches
/// prose far better than the code it is about.
fn file_role(path: &str, language: Language) -> FileRole {
    let mut parts: Vec<&str> = path.split('/').collect();
    let name = parts.pop().unwrap_or_default();
    let dirs: Vec<String> = parts.iter().map(|d| d.to_ascii_lowercase()).collect();
    if dirs.iter().any(|d| VENDOR_DIRS.contains(&d.as_str())) || is_packaged_library(name) {
        return FileRole::Vendored;
    }
    let is_test = dirs.iter().any(|d| TEST_DIRS.contains(&d.as_str()))
        || name.starts_with("test_")
        || name.ends_with("_test.py")
        || name.ends_with("_test.go")
        || name.ends_with(".test.ts")
        || name.ends_with(".test.js")
        || name.ends_with(".spec.ts")
        || name.ends_with(".spec.js")
        || name == "conftest.py";
    if is_test {
        return FileRole::Test;
    }
    let top_doc = dirs.first().is_some_and(|d| DOC_TOP_DIRS.contains(&d.as_str()));
    let any_doc = dirs.len() > 1 && dirs.iter().any(|d| DOC_ANY_DIRS.contains(&d.as_str()));
    let lower = name.to_ascii_lowercase();
    let prose = language == Language::Markdown
        || lower.ends_with(".txt")
        || PROSE_NAMES.contains(&lower.split('.').next().unwrap_or_default());
    if top_doc || any_doc || prose {
        FileRole::Docs
    } else {
        FileRole::Source
    }
}

/// Test code that lives in a source file: Rust's unit tests, in a `tests`
/// module or marked `#[test]` (`#[tokio::test]`, `#[cfg(test)]`). Other
/// languages keep their tests in test files, which [`file_role`] knows.
fn is_inline_test(c: &Chunk) -> bool {
    if c.language != Language::Rust {
        return false;
    }
    if matches!(c.parent.as_deref(), Some("tests" | "test")) {
        return true;
    }
    // The attributes and comments the chunker attached above the item.
    c.content
        .lines()
        .map(str::trim_start)
        .take_while(|l| l.starts_with("#[") || l.starts_with("//"))
        .any(|l| l.starts_with("#[") && (l.contains("test]") || l.contains("cfg(test)")))
}

/// A minified or version-stamped copy of a library (`jquery.min.js`,
/// `jquery-3.4.1.js`, `underscore-1.3.1.js`): shipped with the product, not part of it.
fn is_packaged_library(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.contains(".min.") {
        return true;
    }
    let stem = lower.rsplit_once('.').map_or(lower.as_str(), |(stem, _)| stem);
    stem.rsplit_once('-').is_some_and(|(_, version)| {
        version.contains('.')
            && version
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The per-file tables file ranking reads, built once when an index opens.
#[derive(Debug, Default)]
pub(crate) struct FileTable {
    paths: Vec<String>,
    /// Chunk id → file ordinal.
    chunk_file: Vec<u32>,
    /// Chunk id → test code inside a source file (see [`is_inline_test`]).
    inline_test: Vec<bool>,
    /// File ordinal → its first chunk.
    first_chunk: Vec<u32>,
    roles: Vec<FileRole>,
    /// File ordinal → its language, as chunking decided it from the text
    /// (a `.h` header may be C++).
    languages: Vec<Language>,
    /// File ordinals sorted by path, to find a file by its path.
    by_path: Vec<u32>,
    /// Exact symbol name → files defining it (sorted, distinct).
    defines: HashMap<String, Vec<u32>>,
    /// (parent, member) → files defining that member.
    members: HashMap<(String, String), Vec<u32>>,
    /// Analyzed path term → files whose path holds it.
    path_terms: HashMap<String, Vec<u32>>,
    /// Every `/`-suffix of every path ("b.py", "a/b.py") → the first file with it.
    suffixes: HashMap<String, u32>,
}

impl FileTable {
    /// Builds the tables from the chunks and the graph; `analyze` turns a path
    /// into the same terms the lexical index uses.
    pub(crate) fn build(chunks: &[Chunk], graph: &CodeGraph, mut analyze: impl FnMut(&str) -> Vec<String>) -> Self {
        let mut t = FileTable::default();
        let mut ordinal: HashMap<&str, u32> = HashMap::new();
        for c in chunks {
            let next = t.paths.len() as u32;
            let f = *ordinal.entry(c.path.as_str()).or_insert_with(|| {
                t.paths.push(c.path.clone());
                t.first_chunk.push(c.id);
                t.languages.push(c.language);
                next
            });
            t.chunk_file.push(f);
            t.inline_test.push(is_inline_test(c));
        }
        t.by_path = (0..t.paths.len() as u32).collect();
        t.by_path
            .sort_unstable_by(|&a, &b| t.paths[a as usize].cmp(&t.paths[b as usize]));
        for (f, path) in t.paths.iter().enumerate() {
            let f = f as u32;
            t.roles.push(file_role(path, t.languages[f as usize]));
            let mut terms = analyze(path);
            terms.sort();
            terms.dedup();
            for term in terms {
                t.path_terms.entry(term).or_default().push(f);
            }
            let segments: Vec<&str> = path.split('/').collect();
            for k in 1..=segments.len() {
                t.suffixes.entry(segments[segments.len() - k..].join("/")).or_insert(f);
            }
        }
        for node in graph.graph().node_weights() {
            let NodeKind::Symbol(s) = node else { continue };
            if s.name.is_empty() || !s.kind.is_definition() {
                continue;
            }
            let Some(&f) = ordinal.get(s.path.as_str()) else {
                continue;
            };
            t.defines.entry(s.name.clone()).or_default().push(f);
            if let Some(parent) = &s.parent {
                t.members.entry((parent.clone(), s.name.clone())).or_default().push(f);
            }
        }
        for files in t.defines.values_mut().chain(t.members.values_mut()) {
            files.sort_unstable();
            files.dedup();
        }
        t
    }

    pub(crate) fn len(&self) -> usize {
        self.paths.len()
    }

    /// Approximate heap bytes, for the shard's memory budget: every string,
    /// list and hash-map table.
    pub(crate) fn heap_bytes(&self) -> u64 {
        use heap_size::{buffer, string, string_map, strings, table};
        let paths = strings(&self.paths);
        let per_file = buffer(&self.chunk_file)
            + buffer(&self.inline_test)
            + buffer(&self.first_chunk)
            + buffer(&self.roles)
            + buffer(&self.languages)
            + buffer(&self.by_path);
        let defines = string_map(&self.defines, buffer);
        let members: usize = table(&self.members)
            + self
                .members
                .iter()
                .map(|((a, b), v)| string(a) + string(b) + buffer(v))
                .sum::<usize>();
        let path_terms = string_map(&self.path_terms, buffer);
        let suffixes = string_map(&self.suffixes, |_| 0);
        (paths + per_file + defines + members + path_terms + suffixes) as u64
    }

    pub(crate) fn path(&self, file: u32) -> &str {
        &self.paths[file as usize]
    }

    /// The language `path`'s chunks were made as; `None` for a path with no chunks.
    pub(crate) fn language(&self, path: &str) -> Option<Language> {
        let i = self
            .by_path
            .binary_search_by(|&f| self.paths[f as usize].as_str().cmp(path))
            .ok()?;
        Some(self.languages[self.by_path[i] as usize])
    }

    pub(crate) fn first_chunk(&self, file: u32) -> Option<u32> {
        self.first_chunk.get(file as usize).copied()
    }

    pub(crate) fn file_of(&self, chunk: u32) -> Option<u32> {
        self.chunk_file.get(chunk as usize).copied()
    }

    /// The prior of `chunk`: its file's, or a test's when it is test code
    /// inside a source file (1 for an unknown chunk).
    pub(crate) fn chunk_prior(&self, chunk: u32, asks: Asks, params: &FileRankParams) -> f32 {
        let Some(f) = self.file_of(chunk) else { return 1.0 };
        let role = match self.roles[f as usize] {
            FileRole::Source if self.inline_test[chunk as usize] => FileRole::Test,
            role => role,
        };
        params.prior(role, asks)
    }

    /// The file whose module path is the longest prefix (of two or more
    /// segments) of the dotted name `a.b.c…`: `a/b/c.py` or `a/b/c/__init__.py`
    /// as a path suffix. One segment (`sphinx`) names a whole package: too broad.
    fn resolve_module(&self, dotted: &str) -> Option<u32> {
        let parts: Vec<&str> = dotted.split('.').take(MAX_MENTION_SEGMENTS).collect();
        (2..=parts.len()).rev().find_map(|k| {
            let path = parts[..k].join("/");
            self.suffixes
                .get(&format!("{path}.py"))
                .or_else(|| self.suffixes.get(&format!("{path}/__init__.py")))
                .copied()
        })
    }

    /// The file named by `mention` (a path as written in an issue or a frame):
    /// the longest suffix of it that is a suffix of an indexed path, with the
    /// number of segments matched.
    fn resolve(&self, mention: &str) -> Option<(u32, usize)> {
        let clean = mention.trim_start_matches("./").trim_start_matches('/');
        let mut segments: Vec<&str> = clean.split('/').filter(|s| !s.is_empty()).collect();
        // Every suffix of an indexed path is a key, so the last segments suffice.
        segments.drain(..segments.len().saturating_sub(MAX_MENTION_SEGMENTS));
        (1..=segments.len()).rev().find_map(|k| {
            self.suffixes
                .get(&segments[segments.len() - k..].join("/"))
                .map(|&f| (f, k))
        })
    }
}

/// A ranked file with the chunks that put it there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RankedFile {
    pub(crate) file: u32,
    pub(crate) score: f32,
    /// Its best chunk hits, best first.
    pub(crate) chunks: Vec<(u32, f32)>,
}

/// Puts the files in `definers` ahead of the others, in ranked order, with
/// scores kept descending: for a query that names one symbol, the file that
/// defines it before the files that call or test it.
pub(crate) fn definers_first(ranked: &mut Vec<RankedFile>, definers: &[u32]) {
    if definers.is_empty() {
        return;
    }
    let top = ranked.first().map_or(0.0, |r| r.score);
    let (mut first, rest): (Vec<_>, Vec<_>) = ranked.drain(..).partition(|r| definers.contains(&r.file));
    for r in &mut first {
        r.score += top;
    }
    first.extend(rest);
    *ranked = first;
}

/// What the indexes give file ranking: the query's terms and the chunks that match them.
pub(crate) struct ChunkEvidence {
    /// Distinct analyzed terms of the query text, in order.
    pub(crate) terms: Vec<String>,
    /// The analyzed terms of its title (first line): where a query asks for
    /// tests or docs. Deeper in an issue, "the tests pass" or "see the docs"
    /// is incidental.
    pub(crate) title_terms: Vec<String>,
    /// BM25 chunk hits, best first.
    pub(crate) chunk_hits: Vec<(u32, f32)>,
    /// Nearest chunks to the query embedding (cosine), best first; empty
    /// without vectors.
    pub(crate) vector_hits: Vec<(u32, f32)>,
}

/// Ranks the files of `table` for `query`; at most `top_k` files, each with
/// up to `chunks_per_file` of its best chunks.
pub(crate) fn rank_files(
    table: &FileTable,
    query: &QueryText,
    evidence: &ChunkEvidence,
    params: &FileRankParams,
    top_k: usize,
    chunks_per_file: usize,
) -> Vec<RankedFile> {
    let n = table.len();
    if n == 0 {
        return Vec::new();
    }
    let mut best_chunks: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    for &(chunk, score) in evidence.chunk_hits.iter().take(params.chunk_hits) {
        if let Some(f) = table.file_of(chunk) {
            best_chunks[f as usize].push((chunk, score));
        }
    }
    let chunk_part: Vec<f32> = best_chunks
        .iter()
        .map(|hits| {
            let mut w = 1.0;
            let mut sum = 0.0;
            for &(_, s) in hits.iter().take(params.chunk_top) {
                sum += w * s;
                w *= params.chunk_decay;
            }
            sum
        })
        .collect();

    let vector_part = vector_part(table, &evidence.vector_hits, &mut best_chunks);

    let files_f = n as f32;
    let mut define_part = vec![0f32; n];
    let mut looked_up = 0;
    for ident in &query.idents {
        if ident.name.len() < MIN_IDENT_LEN || PROSE_STOP.contains(&ident.name.to_ascii_lowercase().as_str()) {
            continue;
        }
        looked_up += 1;
        if looked_up > super::query_text::MAX_IDENTS {
            break;
        }
        let Some(files) = table.defines.get(&ident.name) else {
            continue;
        };
        let title = if ident.in_title { 2.0 } else { 0.0 };
        let w = (1.0 + files_f / files.len() as f32).ln() * (1.0 + title);
        for &f in files {
            define_part[f as usize] += w;
        }
    }

    let mut member_part = vec![0f32; n];
    for dotted in &query.dotted {
        let parts: Vec<&str> = dotted.split('.').collect();
        for pair in parts.windows(2) {
            if let Some(files) = table.members.get(&(pair[0].to_string(), pair[1].to_string())) {
                for &f in files {
                    member_part[f as usize] += 1.0;
                }
            }
        }
    }

    let mut path_part = vec![0f32; n];
    for term in &evidence.terms {
        if let Some(files) = table.path_terms.get(term) {
            let w = (1.0 + files_f / files.len() as f32).ln();
            for &f in files {
                path_part[f as usize] += w;
            }
        }
    }

    let mut mention_part = vec![0f32; n];
    for p in &query.paths {
        // A bare file name counts; a partial path must match two segments.
        if let Some((f, k)) = table.resolve(p)
            && (k >= 2 || !p.contains('/'))
        {
            mention_part[f as usize] += 1.0;
        }
    }
    // Frames come nearest the error first; only those in this repository count.
    let mut frame_weight = 1.0;
    for p in &query.frames {
        if let Some((f, k)) = table.resolve(p)
            && k >= 2
        {
            mention_part[f as usize] += frame_weight;
            frame_weight *= params.frame_decay;
        }
    }

    let mut module_part = vec![0f32; n];
    for dotted in &query.dotted {
        if let Some(f) = table.resolve_module(dotted) {
            module_part[f as usize] += 1.0;
        }
    }

    let mut score = vec![0f32; n];
    for (weight, part) in [
        (params.chunks, &chunk_part),
        (params.defines, &define_part),
        (params.members, &member_part),
        (params.path, &path_part),
        (params.mentions, &mention_part),
        (params.modules, &module_part),
        (params.vectors, &vector_part),
    ] {
        let max = part.iter().copied().fold(0f32, f32::max);
        if weight > 0.0 && max > 0.0 {
            for (s, x) in score.iter_mut().zip(part) {
                *s += weight * x / max;
            }
        }
    }
    let asks = Asks::of(&evidence.title_terms);
    for (s, &role) in score.iter_mut().zip(&table.roles) {
        *s *= params.prior(role, asks);
    }

    let mut order: Vec<u32> = (0..n as u32).filter(|&f| score[f as usize] > 0.0).collect();
    // Ties: index order, which is the build's sorted path walk.
    order.sort_by(|&a, &b| score[b as usize].total_cmp(&score[a as usize]).then(a.cmp(&b)));
    order.truncate(top_k);
    order
        .into_iter()
        .map(|f| {
            let mut chunks = std::mem::take(&mut best_chunks[f as usize]);
            chunks.truncate(chunks_per_file);
            RankedFile {
                file: f,
                score: score[f as usize],
                chunks,
            }
        })
        .collect()
}

/// Each file's best cosine similarity among the nearest chunks, above the
/// similarity of the last one retrieved: cosines of one model crowd into a
/// narrow band, so the band's floor, not zero, is what "unrelated" means.
/// A file found by vectors alone lists its nearest chunk.
fn vector_part(table: &FileTable, hits: &[(u32, f32)], best_chunks: &mut [Vec<(u32, f32)>]) -> Vec<f32> {
    let mut part = vec![0f32; best_chunks.len()];
    let Some(floor) = hits.iter().map(|&(_, s)| s).reduce(f32::min) else {
        return part;
    };
    for &(chunk, similarity) in hits {
        let Some(f) = table.file_of(chunk) else {
            continue;
        };
        let f = f as usize;
        part[f] = part[f].max(similarity - floor);
        if best_chunks[f].is_empty() {
            best_chunks[f].push((chunk, similarity));
        }
    }
    part
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::SymbolKind;
    use crate::test_support::{build_graph, content_chunk, symbol_chunk};

    #[test]
    fn definers_go_first_in_ranked_order() {
        let file = |file, score| RankedFile {
            file,
            score,
            chunks: Vec::new(),
        };
        let mut ranked = vec![file(1, 3.0), file(2, 2.0), file(3, 1.0)];
        definers_first(&mut ranked, &[3, 7]);
        let order: Vec<(u32, f32)> = ranked.iter().map(|r| (r.file, r.score)).collect();
        assert_eq!(order, [(3, 4.0), (1, 3.0), (2, 2.0)]);
        definers_first(&mut ranked, &[]);
        assert_eq!(ranked[0].file, 3, "no definers: unchanged");
    }

    /// A Python symbol with no calls (`Language` follows the path).
    fn chunk(id: u32, path: &str, symbol: &str, kind: SymbolKind, parent: Option<&str>) -> Chunk {
        symbol_chunk(id, path, Some(symbol), kind, parent, &[], &[])
    }

    fn table() -> (Vec<Chunk>, FileTable) {
        let chunks = vec![
            chunk(0, "src/pkg/core.py", "Parser", SymbolKind::Class, None),
            chunk(1, "src/pkg/core.py", "parse", SymbolKind::Method, Some("Parser")),
            chunk(2, "tests/test_core.py", "test_parse", SymbolKind::Function, None),
            chunk(3, "docs/conf.py", "setup", SymbolKind::Function, None),
            chunk(4, "src/pkg/util.py", "helper", SymbolKind::Function, None),
            chunk(5, "src/pkg/sub/__init__.py", "setup_sub", SymbolKind::Function, None),
        ];
        let graph = build_graph(&chunks);
        let words = |text: &str| -> Vec<String> {
            text.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect()
        };
        let t = FileTable::build(&chunks, &graph, words);
        (chunks, t)
    }

    #[test]
    fn a_mention_is_resolved_on_its_last_segments_however_deep_it_is() {
        let (_, t) = table();
        let deep = format!("{}src/pkg/core.py", "a/".repeat(30_000));
        let core = t.resolve("src/pkg/core.py").unwrap();
        assert_eq!(t.resolve(&deep), Some(core));
        assert_eq!(t.resolve(&"a/".repeat(30_000)), None);
        assert_eq!(
            t.resolve_module(&format!("src.pkg.sub.{}", "a.".repeat(30_000))),
            t.resolve_module("src.pkg.sub")
        );
        assert!(t.resolve_module("src.pkg.sub").is_some());
    }

    fn ranked_paths(t: &FileTable, query: &str, hits: &[(u32, f32)], params: &FileRankParams) -> Vec<String> {
        let q = super::super::query_text::understand(query);
        let words = |text: &str| text.split_whitespace().map(str::to_lowercase).collect();
        let evidence = ChunkEvidence {
            terms: words(&q.cleaned),
            title_terms: words(&q.title),
            chunk_hits: hits.to_vec(),
            vector_hits: Vec::new(),
        };
        rank_files(t, &q, &evidence, params, 10, 3)
            .iter()
            .map(|r| t.path(r.file).to_string())
            .collect()
    }

    #[test]
    fn issue_evidence_and_priors_put_the_implementation_first() {
        let (_, t) = table();
        let issue = "Parser.parse fails on empty input\n\nTraceback (most recent call last):\n  \
                     File \"/home/me/src/pkg/util.py\", line 3, in helper\n";
        // Lexically the test file matches best.
        let hits = [(2, 5.0), (1, 3.0)];
        let ranked = ranked_paths(&t, issue, &hits, &FileRankParams::default());
        assert_eq!(ranked[0], "src/pkg/core.py", "{ranked:?}");
        assert!(
            ranked.contains(&"src/pkg/util.py".to_string()),
            "found by its stack frame alone"
        );
        let test_rank = ranked.iter().position(|p| p == "tests/test_core.py").unwrap();
        assert!(test_rank > 1, "{ranked:?}");

        // With the evidence and priors off, only chunk BM25 is left.
        let bare = FileRankParams {
            defines: 0.0,
            members: 0.0,
            path: 0.0,
            mentions: 0.0,
            modules: 0.0,
            test_prior: 1.0,
            doc_prior: 1.0,
            ..FileRankParams::default()
        };
        let ranked = ranked_paths(&t, issue, &hits, &bare);
        assert_eq!(ranked, vec!["tests/test_core.py", "src/pkg/core.py"]);
    }

    /// Rust unit tests live in source files: the chunks of a `tests` module
    /// and `#[test]` functions carry the test prior, the code beside them
    /// does not, and a Python function is never read as one.
    #[test]
    fn rust_unit_tests_in_a_source_file_carry_the_test_prior() {
        let mut chunks = vec![
            content_chunk(0, "src/pool.rs", Some("spawn_blocking"), "pub fn spawn_blocking() {}"),
            content_chunk(1, "src/pool.rs", Some("helper"), "fn helper() {}"),
            content_chunk(
                2,
                "src/pool.rs",
                Some("runs"),
                "/// Runs.\n#[tokio::test]\nasync fn runs() {}",
            ),
            content_chunk(3, "src/pool.rs", Some("gated"), "#[cfg(test)]\nfn gated() {}"),
            content_chunk(4, "pkg/pool.py", Some("helper"), "def helper(): pass"),
            content_chunk(5, "src/pool.rs", Some("attested"), "#[derive(Debug)]\nstruct Attested;"),
        ];
        chunks[1].parent = Some("tests".into());
        let t = FileTable::build(&chunks, &build_graph(&chunks), |_| Vec::new());
        let p = FileRankParams::default();
        let prior = |id| t.chunk_prior(id, Asks::default(), &p);
        assert_eq!(
            (0..6).map(prior).collect::<Vec<_>>(),
            [1.0, p.test_prior, p.test_prior, p.test_prior, 1.0, 1.0]
        );
        let asked = Asks {
            tests: true,
            docs: false,
        };
        assert_eq!(t.chunk_prior(2, asked, &p), p.asked_prior);
    }

    /// A file's language is its chunks', which the text decided: a C++
    /// `.h` header is `cpp`, as its search hits say, though its name says C.
    #[test]
    fn a_file_has_the_language_of_its_chunks() {
        let mut header = chunk(0, "ui/widget.h", "Widget", SymbolKind::Class, None);
        header.language = Language::Cpp;
        let chunks = vec![
            chunk(1, "src/ui/widget.h", "other", SymbolKind::Function, None),
            header,
            chunk(2, "a.py", "f", SymbolKind::Function, None),
        ];
        let t = FileTable::build(&chunks, &build_graph(&chunks), |_| Vec::new());
        assert_eq!(t.language("ui/widget.h"), Some(Language::Cpp));
        assert_eq!(t.language("src/ui/widget.h"), Some(Language::C));
        assert_eq!(t.language("a.py"), Some(Language::Python));
        assert_eq!(t.language("widget.h"), None);
    }

    #[test]
    fn dotted_module_paths_name_their_file() {
        let (_, t) = table();
        let ranked = ranked_paths(&t, "importing pkg.util.helper breaks", &[], &FileRankParams::default());
        assert_eq!(ranked[0], "src/pkg/util.py", "{ranked:?}");
        let ranked = ranked_paths(&t, "extensions = ['pkg.sub']", &[], &FileRankParams::default());
        assert_eq!(ranked, vec!["src/pkg/sub/__init__.py"]);
        let off = FileRankParams {
            modules: 0.0,
            ..FileRankParams::default()
        };
        assert!(ranked_paths(&t, "extensions = ['pkg.sub']", &[], &off).is_empty());
        // One segment names a whole package, not a file.
        assert!(t.resolve_module("pkg").is_none());
    }

    #[test]
    fn the_frame_nearest_the_error_counts_most() {
        let (_, t) = table();
        // Python prints the innermost call last: util.py raised, core.py called it.
        let trace = "Traceback (most recent call last):\n  File \"/site/pkg/core.py\", line 9, in parse\n  \
                     File \"/site/pkg/util.py\", line 3, in helper\nValueError: boom";
        let decayed = FileRankParams {
            frame_decay: 0.5,
            ..FileRankParams::default()
        };
        assert_eq!(
            ranked_paths(&t, trace, &[], &decayed),
            ["src/pkg/util.py", "src/pkg/core.py"]
        );
        // Every frame alike: a tie, which index order breaks the other way.
        let flat = FileRankParams {
            frame_decay: 1.0,
            ..FileRankParams::default()
        };
        assert_eq!(
            ranked_paths(&t, trace, &[], &flat),
            ["src/pkg/core.py", "src/pkg/util.py"]
        );
        let mut p = FileRankParams::default();
        p.set("frame_decay=3").unwrap();
        assert_eq!(
            p.frame_decay, 1.0,
            "a frame never counts more than the one nearer the error"
        );
    }

    #[test]
    fn a_query_about_tests_lifts_the_test_prior() {
        let (_, t) = table();
        let hits = [(2, 5.0), (1, 3.0)];
        let asked = FileRankParams {
            asked_prior: 1.0,
            ..FileRankParams::default()
        };
        let ranked = ranked_paths(&t, "the parse test fails", &hits, &asked);
        assert_eq!(ranked[0], "tests/test_core.py", "{ranked:?}");
        // Not asked: the test prior holds the test file back.
        let ranked = ranked_paths(&t, "the parse fails", &hits, &asked);
        assert_eq!(ranked[0], "src/pkg/core.py", "{ranked:?}");
    }

    #[test]
    fn parameters_are_set_by_name() {
        let mut p = FileRankParams::default();
        p.set("test_prior=1").unwrap();
        p.set("chunk_top = 3").unwrap();
        assert_eq!((p.test_prior, p.chunk_top), (1.0, 3));
        p.set("definers_first=0").unwrap();
        assert!(!p.definers_first);
        assert!(p.set("nope=1").unwrap_err().contains("unknown"));
        assert!(p.set("path").unwrap_err().contains("NAME=VALUE"));
        assert!(p.set("path=x").unwrap_err().contains("not a non-negative number"));
        assert!(
            p.set("defines=NaN").is_err(),
            "a NaN weight would make scores incomparable"
        );
        assert!(p.set("chunk_top=-1").is_err());
    }

    #[test]
    fn roles_follow_repository_conventions() {
        let role = |path: &str| file_role(path, Language::from_path(path).unwrap_or(Language::Text));
        assert_eq!(role("src/_pytest/python.py"), FileRole::Source);
        assert_eq!(role("testing/test_python.py"), FileRole::Test);
        assert_eq!(role("sympy/core/tests/test_basic.py"), FileRole::Test);
        assert_eq!(role("lib/conftest.py"), FileRole::Test);
        assert_eq!(role("pkg/server_test.go"), FileRole::Test);
        assert_eq!(role("doc/conf.py"), FileRole::Docs);
        assert_eq!(role("examples/plot.py"), FileRole::Docs);
        assert_eq!(role("astropy/io/docs/x.py"), FileRole::Docs);
        // A top-level-only name deeper down is code (`sphinx/util/tools.py`-like).
        assert_eq!(role("sphinx/tools/build.py"), FileRole::Source);
        // Prose is documentation wherever it lives; configuration is not.
        assert_eq!(role("README.rst"), FileRole::Docs);
        assert_eq!(role("CONTRIBUTING.md"), FileRole::Docs);
        assert_eq!(role("requirements.txt"), FileRole::Docs);
        assert_eq!(role("LICENSE"), FileRole::Docs);
        assert_eq!(role("setup.cfg"), FileRole::Source);
        // Copies of other projects' code.
        assert_eq!(role("sphinx/themes/basic/static/jquery-3.4.1.js"), FileRole::Vendored);
        assert_eq!(role("web/static/app.min.js"), FileRole::Vendored);
        assert_eq!(role("src/_vendor/six.py"), FileRole::Vendored);
        assert_eq!(role("lib/node_modules/x/index.js"), FileRole::Vendored);
        assert_eq!(role("astropy/extern/ply/lex.py"), FileRole::Vendored);
        assert_eq!(role("pkg/py-3/setup.py"), FileRole::Source);
        assert_eq!(role("pkg/v1-2.py"), FileRole::Source);
    }

    #[test]
    fn only_the_title_asks_for_tests() {
        let (_, t) = table();
        let hits = [(2, 5.0), (1, 3.0)];
        let issue = "parse fails on empty input\n\nThe existing tests pass, but this breaks.";
        let ranked = ranked_paths(&t, issue, &hits, &FileRankParams::default());
        assert_eq!(ranked[0], "src/pkg/core.py", "{ranked:?}");
    }

    #[test]
    fn nearest_chunks_bring_in_files_the_words_miss() {
        let (_, t) = table();
        let q = super::super::query_text::understand("numbers come out wrong");
        let evidence = ChunkEvidence {
            terms: vec!["numbers".into(), "wrong".into()],
            title_terms: Vec::new(),
            chunk_hits: Vec::new(),
            // Cosines crowd into a band: the last one retrieved is the floor.
            vector_hits: vec![(4, 0.62), (1, 0.55), (2, 0.50)],
        };
        let ranked = rank_files(&t, &q, &evidence, &FileRankParams::default(), 10, 3);
        let paths: Vec<&str> = ranked.iter().map(|r| t.path(r.file)).collect();
        assert_eq!(
            paths,
            vec!["src/pkg/util.py", "src/pkg/core.py"],
            "the floor itself is no evidence"
        );
        assert_eq!(
            ranked[0].chunks,
            vec![(4, 0.62)],
            "a file found by vectors lists its nearest chunk"
        );
        let off = FileRankParams {
            vectors: 0.0,
            ..FileRankParams::default()
        };
        assert!(rank_files(&t, &q, &evidence, &off, 10, 3).is_empty());
    }
}
