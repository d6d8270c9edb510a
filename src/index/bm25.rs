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

use std::path::Path;
use std::time::Instant;

use tantivy::indexer::NoMergePolicy;
use tantivy::{Index, IndexWriter, TantivyDocument, TantivyError};

use crate::bundle::lexical::{Bm25Error, Bm25Schema};
use crate::bundle::tokenize;
use crate::model::Chunk;

/// Smallest per-thread arena tantivy accepts (`MEMORY_BUDGET_NUM_BYTES_MIN`,
/// not exported by tantivy).
pub const MIN_MEMORY_PER_THREAD: usize = 15_000_000;
/// Tantivy's cap on indexing threads.
const MAX_THREADS: usize = 8;
/// Below this many bytes of text per thread, extra threads only add segments to merge.
const MIN_TEXT_BYTES_PER_THREAD: usize = 4 << 20;

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
    tokenize::register(&index);

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
mod tests {
    use super::*;
    use crate::test_support::content_chunk as chunk;

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
