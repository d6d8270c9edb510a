//! Writes the BM25 arm of an index version: one tantivy index over the chunks.
//!
//! The engine keeps chunk bodies itself, so tantivy stores nothing but what
//! ranking and filtering need: the chunk id as a fast field (hits map straight
//! back to chunks without touching a doc store), the searchable text fields
//! and the raw `language` / `kind` terms that filters are pushed down to.
//! The index is written once and never updated, so it is built with every
//! indexing thread the memory budget allows, committed once and merged down
//! to a single segment, which is the fastest shape to query and makes scores
//! independent of how documents happened to be spread over writer threads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tantivy::indexer::NoMergePolicy;
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions};
use tantivy::{Index, IndexWriter, TantivyDocument, TantivyError};

use crate::index::tokenize::{self, CODE_TOKENIZER, PATH_TOKENIZER};
use crate::model::Chunk;

/// Field names of the BM25 schema, shared with the reader in `search::bm25`.
pub mod field {
    /// Chunk id (`u64`, fast + indexed).
    pub const ID: &str = "id";
    /// Symbol name and parent name(s), code analyzer, frequencies.
    pub const SYMBOL: &str = "symbol";
    /// Relative file path, path analyzer, frequencies.
    pub const PATH: &str = "path";
    /// Chunk text, code analyzer, frequencies and positions.
    pub const CONTENT: &str = "content";
    /// `Language::as_str`, raw term.
    pub const LANGUAGE: &str = "language";
    /// `SymbolKind::as_str`, raw term.
    pub const KIND: &str = "kind";
}

/// Smallest per-thread arena tantivy accepts (`MEMORY_BUDGET_NUM_BYTES_MIN`,
/// not exported by tantivy).
pub const MIN_MEMORY_PER_THREAD: usize = 15_000_000;
/// Tantivy's cap on indexing threads.
const MAX_THREADS: usize = 8;
/// Below this many bytes of text per thread, extra threads only add segments to merge.
const MIN_TEXT_BYTES_PER_THREAD: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Bm25Error {
    #[error("bm25 index directory {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("bm25 index at {} cannot be opened: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: TantivyError,
    },
    #[error("bm25 index at {} lacks field {field:?} (built by another schema version?)", path.display())]
    Schema { path: PathBuf, field: &'static str },
    #[error("bm25 target directory {} already holds an index", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("bm25 memory budget of {budget} bytes is below the minimum of {minimum} bytes")]
    MemoryBudget { budget: usize, minimum: usize },
    #[error("io error at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tantivy: {0}")]
    Tantivy(#[from] TantivyError),
}

/// What [`write_bm25`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bm25Stats {
    pub num_docs: u64,
    pub num_segments: usize,
    pub indexing_threads: usize,
    /// Total size of the files in the index directory after merging.
    pub bytes_on_disk: u64,
    pub elapsed_ms: u64,
}

/// The BM25 schema with its field handles.
#[derive(Debug, Clone)]
pub struct Bm25Schema {
    pub schema: Schema,
    pub id: Field,
    pub symbol: Field,
    pub path: Field,
    pub content: Field,
    pub language: Field,
    pub kind: Field,
}

impl Bm25Schema {
    pub fn build() -> Self {
        let mut builder = Schema::builder();
        let text = |tokenizer: &str, record: IndexRecordOption| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(tokenizer)
                    .set_index_option(record),
            )
        };
        let id = builder.add_u64_field(field::ID, FAST | INDEXED);
        let symbol = builder.add_text_field(field::SYMBOL, text(CODE_TOKENIZER, IndexRecordOption::WithFreqs));
        let path = builder.add_text_field(field::PATH, text(PATH_TOKENIZER, IndexRecordOption::WithFreqs));
        let content = builder.add_text_field(
            field::CONTENT,
            text(CODE_TOKENIZER, IndexRecordOption::WithFreqsAndPositions),
        );
        let language = builder.add_text_field(field::LANGUAGE, STRING);
        let kind = builder.add_text_field(field::KIND, STRING);
        Bm25Schema {
            schema: builder.build(),
            id,
            symbol,
            path,
            content,
            language,
            kind,
        }
    }

    /// Resolves the fields of an existing index's schema, failing on any missing field.
    pub fn from_schema(schema: Schema, dir: &Path) -> Result<Self, Bm25Error> {
        let get = |name: &'static str| {
            schema.get_field(name).map_err(|_| Bm25Error::Schema {
                path: dir.to_path_buf(),
                field: name,
            })
        };
        Ok(Bm25Schema {
            id: get(field::ID)?,
            symbol: get(field::SYMBOL)?,
            path: get(field::PATH)?,
            content: get(field::CONTENT)?,
            language: get(field::LANGUAGE)?,
            kind: get(field::KIND)?,
            schema,
        })
    }
}

/// Text indexed in the `symbol` field: the symbol name followed by its parent,
/// so `Server::run` is found by `run`, `server` and `server run`.
fn symbol_text(chunk: &Chunk) -> String {
    match (&chunk.symbol, &chunk.parent) {
        (Some(s), Some(p)) => format!("{s} {p}"),
        (Some(s), None) => s.clone(),
        (None, Some(p)) => p.clone(),
        (None, None) => String::new(),
    }
}

/// Picks the number of indexing threads: as many as the budget gives each the
/// tantivy minimum arena, no more than the machine's cores or tantivy's cap,
/// and no more than the amount of text makes worthwhile.
fn indexing_threads(memory_budget_bytes: usize, text_bytes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = memory_budget_bytes / MIN_MEMORY_PER_THREAD;
    let by_text = text_bytes / MIN_TEXT_BYTES_PER_THREAD + 1;
    cores.min(MAX_THREADS).min(by_memory).min(by_text).max(1)
}

/// Writes the BM25 index for `chunks` into `dir` (created if missing; must not
/// already hold an index), using at most `memory_budget_bytes` of indexing
/// arena across all writer threads, and merges it to one segment.
pub fn write_bm25(dir: &Path, chunks: &[Chunk], memory_budget_bytes: usize) -> Result<Bm25Stats, Bm25Error> {
    write_bm25_with(dir, chunks, memory_budget_bytes, tokenize::STEM_ENGLISH)
}

/// [`write_bm25`] with an explicit stemming choice, for the evaluation that picks it.
pub(crate) fn write_bm25_with(
    dir: &Path,
    chunks: &[Chunk],
    memory_budget_bytes: usize,
    stem: bool,
) -> Result<Bm25Stats, Bm25Error> {
    let started = Instant::now();
    if memory_budget_bytes < MIN_MEMORY_PER_THREAD {
        return Err(Bm25Error::MemoryBudget {
            budget: memory_budget_bytes,
            minimum: MIN_MEMORY_PER_THREAD,
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| Bm25Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let fields = Bm25Schema::build();
    let index = match Index::create_in_dir(dir, fields.schema.clone()) {
        Ok(index) => index,
        Err(TantivyError::IndexAlreadyExists) => {
            return Err(Bm25Error::AlreadyExists {
                path: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    tokenize::register_with(&index, stem);

    let text_bytes: usize = chunks.iter().map(|c| c.content.len()).sum();
    let threads = indexing_threads(memory_budget_bytes, text_bytes);
    let mut writer: IndexWriter = index.writer_with_num_threads(threads, memory_budget_bytes)?;
    // One explicit merge at the end instead of background merges while indexing.
    writer.set_merge_policy(Box::new(NoMergePolicy));

    for chunk in chunks {
        let mut doc = TantivyDocument::default();
        doc.add_u64(fields.id, u64::from(chunk.id));
        let symbol = symbol_text(chunk);
        if !symbol.is_empty() {
            doc.add_text(fields.symbol, &symbol);
        }
        doc.add_text(fields.path, &chunk.path);
        doc.add_text(fields.content, &chunk.content);
        doc.add_text(fields.language, chunk.language.as_str());
        doc.add_text(fields.kind, chunk.kind.as_str());
        writer.add_document(doc)?;
    }
    writer.commit()?;

    let segment_ids = index.searchable_segment_ids()?;
    if segment_ids.len() > 1 {
        writer.merge(&segment_ids).wait()?;
    }
    writer.garbage_collect_files().wait()?;
    writer.wait_merging_threads()?;

    let num_segments = index.searchable_segment_ids()?.len();
    let bytes_on_disk = dir_size(dir)?;
    Ok(Bm25Stats {
        num_docs: chunks.len() as u64,
        num_segments,
        indexing_threads: threads,
        bytes_on_disk,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

fn dir_size(dir: &Path) -> Result<u64, Bm25Error> {
    let io = |source| Bm25Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let meta = entry.map_err(io)?.metadata().map_err(io)?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Language, SymbolKind};

    /// A one-symbol (or window) chunk at `path`, for BM25 tests here and in `search::bm25`.
    pub(crate) fn chunk(id: u32, path: &str, symbol: Option<&str>, content: &str) -> Chunk {
        Chunk {
            id,
            path: path.to_string(),
            language: Language::from_path(path).unwrap_or(Language::Text),
            symbol: symbol.map(str::to_string),
            kind: if symbol.is_some() {
                SymbolKind::Function
            } else {
                SymbolKind::Window
            },
            parent: None,
            start_line: 1,
            end_line: 1 + content.lines().count() as u32,
            content: content.to_string(),
            content_hash: crate::model::sha256_hex(content.as_bytes()),
            calls: Vec::new(),
            imports: Vec::new(),
        }
    }

    #[test]
    fn writes_one_segment_and_counts_docs() {
        let dir = tempfile::tempdir().unwrap();
        let chunks: Vec<Chunk> = (0..500)
            .map(|i| {
                chunk(
                    i,
                    &format!("src/m{}.rs", i % 7),
                    Some(&format!("func{i}")),
                    &format!("fn func{i}() {{ call{} }}", i / 3),
                )
            })
            .collect();
        let stats = write_bm25(dir.path(), &chunks, 200 << 20).unwrap();
        assert_eq!(stats.num_docs, 500);
        assert_eq!(stats.num_segments, 1);
        assert!(stats.bytes_on_disk > 0);
        let index = Index::open_in_dir(dir.path()).unwrap();
        assert_eq!(index.reader().unwrap().searcher().num_docs(), 500);
        // No stale segment files survive the merge: exactly one segment's files are listed.
        let meta = index.load_metas().unwrap();
        assert_eq!(meta.segments.len(), 1);
    }

    #[test]
    fn empty_chunk_list_gives_an_empty_index() {
        let dir = tempfile::tempdir().unwrap();
        let stats = write_bm25(dir.path(), &[], 50 << 20).unwrap();
        assert_eq!(stats.num_docs, 0);
        assert_eq!(stats.num_segments, 0);
    }

    #[test]
    fn rejects_small_budget_and_existing_index() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = [chunk(0, "a.rs", None, "x")];
        assert!(matches!(
            write_bm25(dir.path(), &chunks, 1 << 20),
            Err(Bm25Error::MemoryBudget { .. })
        ));
        write_bm25(dir.path(), &chunks, 50 << 20).unwrap();
        assert!(matches!(
            write_bm25(dir.path(), &chunks, 50 << 20),
            Err(Bm25Error::AlreadyExists { .. })
        ));
    }

    #[test]
    fn thread_choice_respects_budget() {
        assert_eq!(indexing_threads(MIN_MEMORY_PER_THREAD, usize::MAX / 2), 1);
        assert!(indexing_threads(3 * MIN_MEMORY_PER_THREAD, usize::MAX / 2) <= 3);
        assert_eq!(indexing_threads(1 << 30, 1000), 1);
    }
}
