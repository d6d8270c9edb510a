//! Building one index version: walk → chunk (parallel) → BM25, graph and
//! vectors → a sealed bundle directory with its manifest, ready to publish.

use crate::IndexId;
use crate::bundle::chunks::{ChunksError, write_chunks};
use crate::bundle::graph::GraphError;
use crate::bundle::lexical::Bm25Error;
use crate::bundle::sources::{SourcesError, write_sources};
use crate::bundle::vectors::VectorError;
use crate::embed::{EmbedError, Embedder, Fingerprint, embedding_text};
use crate::index::chunk::{CHUNKER_VERSION, ChunkConfig, chunk_file, normalize};
use crate::index::embed_cache::{CacheStats, EmbedCache, FileRows, TextHash, text_hash};
use crate::index::graph::build_graph;
use crate::index::vectors::write_vectors;
use crate::index::walk::{
    SkipCounts, SkipLog, SkipReason, Source, SourceFile, WalkConfig, WalkError, read_source, walk,
};
use crate::model::{Chunk, Language};
use crate::storage::layout::{self, bundle};
use crate::storage::manifest::{Counts, EmbedderInfo, Manifest, SCHEMA_VERSION, SourceInfo};
use crate::storage::publish::{PublishError, seal_bundle};
use crate::storage::store::Store;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a build failed; every variant keeps the error that caused it.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read the source tree: {0}")]
    Source(#[from] WalkError),
    #[error("cannot create or clear the bundle directory {}: {source}", dir.display())]
    BundleDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the bundle directory {} is not empty (it holds {found}); a build needs an empty or new directory",
        dir.display()
    )]
    BundleDirNotEmpty { dir: PathBuf, found: String },
    #[error("writing chunks: {0}")]
    Chunks(#[from] ChunksError),
    #[error("writing sources: {0}")]
    Sources(#[from] SourcesError),
    #[error("writing the BM25 index: {0}")]
    Bm25(#[from] Bm25Error),
    #[error("writing the graph: {0}")]
    Graph(#[from] GraphError),
    #[error("writing vectors: {0}")]
    Vectors(#[from] VectorError),
    #[error("sealing the bundle: {0}")]
    Seal(#[from] PublishError),
    #[error("embedding chunks: {0}")]
    Embed(#[from] EmbedError),
    #[error("the embedder returned {got} vectors for {expected} texts")]
    EmbedCount { expected: usize, got: usize },
    #[error("the {stage} stage stopped unexpectedly: {source}")]
    Task {
        stage: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

fn task(stage: &'static str) -> impl FnOnce(tokio::task::JoinError) -> BuildError {
    move |source| BuildError::Task { stage, source }
}

pub struct BuildOptions {
    pub walk: WalkConfig,
    pub chunk: ChunkConfig,
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Reuse chunk vectors kept in this store by earlier builds (of any index)
    /// and keep this build's there; see [`crate::index::embed_cache`].
    pub embed_cache: Option<Store>,
    /// Memory for the BM25 writer.
    pub bm25_memory_bytes: usize,
    /// Show progress bars (only when stderr is a terminal).
    pub progress: bool,
    pub source: SourceInfo,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            walk: WalkConfig::default(),
            chunk: ChunkConfig::default(),
            embedder: None,
            embed_cache: None,
            bm25_memory_bytes: 256 * 1024 * 1024,
            progress: false,
            source: SourceInfo::default(),
        }
    }
}

/// Wall time of each build stage, for benchmarks and logs.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageTimings {
    pub walk_ms: f64,
    pub chunk_ms: f64,
    pub bm25_ms: f64,
    pub graph_ms: f64,
    pub embed_ms: f64,
    pub vectors_ms: f64,
    pub seal_ms: f64,
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    pub manifest: Manifest,
    pub dir: PathBuf,
    pub skipped: SkipCounts,
    pub timings: StageTimings,
    /// Vectors reused from the embedding cache and embedded anew.
    pub embedding: CacheStats,
}

/// Builds a sealed bundle for `root` into `out_dir` (created; must be empty
/// or absent, else [`BuildError::BundleDirNotEmpty`] before any work).
pub async fn build_bundle(
    root: &Path,
    id: &IndexId,
    out_dir: &Path,
    opts: BuildOptions,
) -> Result<BuildReport, BuildError> {
    let dir_err = |source| BuildError::BundleDir {
        dir: out_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out_dir).map_err(dir_err)?;
    if let Some(entry) = std::fs::read_dir(out_dir).map_err(dir_err)?.next() {
        return Err(BuildError::BundleDirNotEmpty {
            dir: out_dir.to_path_buf(),
            found: entry.map_err(dir_err)?.file_name().to_string_lossy().into_owned(),
        });
    }
    let mut timings = StageTimings::default();

    let t = Instant::now();
    let root_buf = root.to_path_buf();
    let walk_cfg = opts.walk.clone();
    let walked = tokio::task::spawn_blocking(move || walk(&root_buf, &walk_cfg))
        .await
        .map_err(task("walk"))??;
    timings.walk_ms = ms(t.elapsed());

    let t = Instant::now();
    let chunk_cfg = opts.chunk;
    let walk_cfg = opts.walk.clone();
    let progress = opts.progress;
    let (chunks, skipped, sources, source_bytes) = tokio::task::spawn_blocking(move || {
        let bar = progress_bar(progress, walked.files.len() as u64, "chunking");
        let log = SkipLog::default();
        let results: Vec<_> = walked
            .files
            .par_iter()
            .map(|file| {
                let r = read_and_chunk(file, &walk_cfg, &|path, language, text| {
                    chunk_file(path, language, text, &chunk_cfg)
                });
                if let Err(reason) = &r {
                    log.skipped(&file.rel_path, reason);
                }
                bar.inc(1);
                r
            })
            .collect();
        bar.finish_and_clear();
        log.finish("read");
        let mut skipped = walked.skipped;
        let mut chunks = Vec::new();
        let mut sources = Vec::new();
        let mut files = Vec::new();
        let mut bytes = 0u64;
        for r in results {
            match r {
                Ok((mut c, len, source, lossy)) => {
                    bytes += len;
                    skipped.lossy_utf8 += u64::from(lossy);
                    let start = chunks.len();
                    chunks.append(&mut c);
                    files.push(FileRows {
                        path: source.0.clone(),
                        text_sha: crate::model::sha256_hex(source.1.as_bytes()),
                        rows: start..chunks.len(),
                    });
                    sources.push(source);
                }
                Err(reason) => reason.count(&mut skipped),
            }
        }
        for (i, c) in chunks.iter_mut().enumerate() {
            c.id = i as u32;
        }
        (chunks, skipped, (sources, files), bytes)
    })
    .await
    .map_err(task("chunk"))?;
    let (sources, file_rows) = sources;
    let files = sources.len() as u64;
    let sources_dir = out_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        write_sources(&sources_dir, sources.iter().map(|(p, t)| (p.as_str(), t.as_str())))
    })
    .await
    .map_err(task("sources"))??;
    timings.chunk_ms = ms(t.elapsed());
    let chunks = Arc::new(chunks);

    let chunks_path = out_dir.join(bundle::CHUNKS_FILE);
    write_chunks(&chunks_path, &chunks)?;

    // BM25 and the graph are independent: build them side by side.
    let t = Instant::now();
    let bm25_dir = out_dir.join(bundle::BM25_DIR);
    let graph_path = out_dir.join(bundle::GRAPH_FILE);
    let (c1, c2) = (chunks.clone(), chunks.clone());
    let budget = opts.bm25_memory_bytes;
    let bm25_task = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        crate::index::bm25::write_bm25(&bm25_dir, &c1, budget).map(|_| ms(t.elapsed()))
    });
    let graph_task = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let graph = build_graph(&c2);
        graph
            .write(&graph_path)
            .map(|_| (graph.node_count() as u64, graph.edge_count() as u64, ms(t.elapsed())))
    });
    let bm25_ms = bm25_task.await.map_err(task("bm25"))??;
    let (graph_nodes, graph_edges, graph_ms) = graph_task.await.map_err(task("graph"))??;
    timings.bm25_ms = bm25_ms;
    timings.graph_ms = graph_ms;
    tracing::debug!(total_ms = ms(t.elapsed()), "bm25 and graph written");

    let mut embedding = CacheStats::default();
    let embedder_info = match &opts.embedder {
        // Nothing to embed (an empty tree, or nothing in it indexable): the
        // version has no vector arm, as a lexical build, rather than failing.
        Some(_) if chunks.is_empty() => None,
        Some(embedder) => {
            let t = Instant::now();
            let embedder_id = embedder.id().to_string();
            // Which model this is, for the cache and for the shards that will
            // embed queries against these vectors.
            let fingerprint = match Fingerprint::of_async(embedder.clone()).await {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(embedder = embedder_id, error = %e, "cannot fingerprint the embedder; building without a model probe (and without the embedding cache)");
                    None
                }
            };
            let cache = match (opts.embed_cache.clone(), &fingerprint) {
                (Some(store), Some(f)) => EmbedCache::for_fingerprint(store, id.clone(), &embedder_id, f).await,
                _ => None,
            };
            let (vectors, stats) =
                embed_with_cache(embedder.clone(), chunks.clone(), &file_rows, cache, opts.progress).await?;
            embedding = stats;
            timings.embed_ms = ms(t.elapsed());
            let t = Instant::now();
            let ids: Vec<u32> = chunks.iter().map(|c| c.id).collect();
            write_vectors(&out_dir.join(bundle::VECTORS_DIR), &ids, &vectors).await?;
            timings.vectors_ms = ms(t.elapsed());
            Some(EmbedderInfo {
                id: embedder_id,
                // Read after embedding: an HTTP embedder learns it from its answers.
                dimension: embedder.dimension(),
                probe: fingerprint.map(|f| f.probe),
            })
        }
        None => None,
    };

    let t = Instant::now();
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        index_id: id.to_string(),
        version: layout::new_version(),
        created_at: trusty_core::rfc3339(std::time::SystemTime::now()),
        chunker_version: CHUNKER_VERSION,
        embedder: embedder_info,
        source: opts.source.clone(),
        counts: Counts {
            files,
            chunks: chunks.len() as u64,
            skipped_files: skipped.total(),
            source_bytes,
            graph_nodes,
            graph_edges,
        },
        files: Vec::new(),
        settings: serde_json::json!({
            "include": opts.walk.include,
            "exclude": opts.walk.exclude,
            "languages": opts.walk.languages,
            "max_file_bytes": opts.walk.max_file_bytes,
            "skipped": skipped,
        }),
    };
    let dir = out_dir.to_path_buf();
    let manifest = tokio::task::spawn_blocking(move || seal_bundle(&dir, manifest))
        .await
        .map_err(task("seal"))??;
    timings.seal_ms = ms(t.elapsed());
    Ok(BuildReport {
        manifest,
        dir: out_dir.to_path_buf(),
        skipped,
        timings,
        embedding,
    })
}

/// One file read and chunked: its chunks, size, `(path, stored text)` and
/// whether it was read lossily.
type ChunkedFile = (Vec<Chunk>, u64, (String, String), bool);

/// Reads and chunks one file with `chunk`. A panic (a bug a grammar or the
/// chunker trips on with this input) skips the file, not the whole build.
fn read_and_chunk(
    file: &SourceFile,
    walk_cfg: &WalkConfig,
    chunk: &(dyn Fn(&str, Language, &str) -> Vec<Chunk> + Sync),
) -> Result<ChunkedFile, SkipReason> {
    let Source { text, language, lossy } = read_source(file, walk_cfg)?;
    let chunks = std::panic::catch_unwind(AssertUnwindSafe(|| chunk(&file.rel_path, language, &text)))
        .map_err(|payload| SkipReason::Panicked(crate::panic_message(payload.as_ref()).to_string()))?;
    let len = text.len() as u64;
    // Stored as the chunker saw it, so line numbers agree with the chunks.
    let text = normalize(&text).into_owned();
    Ok((chunks, len, (file.rel_path.clone(), text), lossy))
}

/// Empties a bundle directory an earlier build left (one that failed
/// part-way, e.g. while embedding), so the next build can use it. Refuses,
/// deleting nothing, when it holds anything a build does not write: a
/// mistyped `--work-dir` may name a directory of the user's.
pub fn clear_bundle_dir(dir: &Path) -> Result<(), BuildError> {
    const BUNDLE_ENTRIES: [&str; 7] = [
        bundle::CHUNKS_FILE,
        bundle::BM25_DIR,
        bundle::VECTORS_DIR,
        bundle::GRAPH_FILE,
        bundle::SOURCES_FILE,
        bundle::SOURCES_INDEX_FILE,
        layout::MANIFEST_FILE,
    ];
    let dir_err = |source| BuildError::BundleDir {
        dir: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect::<Result<Vec<_>, _>>().map_err(dir_err)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(dir_err(e)),
    };
    if let Some(foreign) = entries
        .iter()
        .find(|e| !BUNDLE_ENTRIES.iter().any(|b| e.file_name() == *b))
    {
        return Err(BuildError::BundleDirNotEmpty {
            dir: dir.to_path_buf(),
            found: foreign.file_name().to_string_lossy().into_owned(),
        });
    }
    for entry in &entries {
        let path = entry.path();
        let removed = if entry.file_type().map_err(dir_err)?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(dir_err)?;
    }
    if !entries.is_empty() {
        tracing::info!(dir = %dir.display(), "cleared the bundle an earlier build left");
    }
    Ok(())
}

/// Embeds every chunk the cache has no vector for, and keeps the new ones there.
async fn embed_with_cache(
    embedder: Arc<dyn Embedder>,
    chunks: Arc<Vec<Chunk>>,
    files: &[FileRows],
    cache: Option<EmbedCache>,
    progress: bool,
) -> Result<(Vec<Vec<f32>>, CacheStats), BuildError> {
    let texts: Vec<String> = chunks.par_iter().map(embedding_text).collect();
    let Some(cache) = cache else {
        let bar = progress_bar(progress, texts.len() as u64, "embedding");
        let vectors = embed_texts(embedder, texts, bar.clone()).await?;
        bar.finish_and_clear();
        let embedded = vectors.len();
        return Ok((
            vectors,
            CacheStats {
                embedded,
                ..Default::default()
            },
        ));
    };
    let hashes: Vec<TextHash> = texts.par_iter().map(|t| text_hash(t)).collect();
    let recalled = cache.recall(files).await;
    // Rows still empty after recall are embedded below; every row ends filled.
    let mut vectors: Vec<Vec<f32>> = hashes
        .iter()
        .map(|h| recalled.vectors.get(h).cloned().unwrap_or_default())
        .collect();
    let todo: Vec<usize> = (0..vectors.len()).filter(|&i| vectors[i].is_empty()).collect();
    // Files whose pack is still to write: new text, or chunks to embed now.
    let mut unwritten: Vec<bool> = files
        .iter()
        .map(|f| !recalled.present.contains(&f.path) || f.rows.clone().any(|r| vectors[r].is_empty()))
        .collect();
    // Packs are written as their files complete (those needing no embedding
    // at once, the rest a checkpoint at a time), so a build that fails
    // part-way keeps what it embedded for the next one.
    let bar = progress_bar(progress, todo.len() as u64, "embedding");
    let mut packs_written = write_complete(&cache, files, &mut unwritten, &hashes, &vectors).await;
    for part in todo.chunks(EMBED_CHECKPOINT_ROWS) {
        let part_texts: Vec<String> = part.iter().map(|&i| texts[i].clone()).collect();
        let fresh = embed_texts(embedder.clone(), part_texts, bar.clone()).await?;
        for (&row, v) in part.iter().zip(fresh) {
            vectors[row] = v;
        }
        packs_written += write_complete(&cache, files, &mut unwritten, &hashes, &vectors).await;
    }
    bar.finish_and_clear();
    cache.record_paths(files).await;
    let stats = CacheStats {
        reused: vectors.len() - todo.len(),
        embedded: todo.len(),
        files_hit: recalled.present.len(),
        packs_written,
    };
    tracing::info!(?stats, "embedding cache");
    Ok((vectors, stats))
}

/// Writes the packs of the `unwritten` files whose rows are all embedded by
/// now and marks them written; returns how many it wrote.
async fn write_complete(
    cache: &EmbedCache,
    files: &[FileRows],
    unwritten: &mut [bool],
    hashes: &[TextHash],
    vectors: &[Vec<f32>],
) -> usize {
    let complete: Vec<bool> = files
        .iter()
        .zip(unwritten.iter())
        .map(|(f, &u)| u && f.rows.clone().all(|r| !vectors[r].is_empty()))
        .collect();
    for (u, c) in unwritten.iter_mut().zip(&complete) {
        *u &= !c;
    }
    cache.write_packs(files, &complete, hashes, vectors).await
}

/// Chunks embedded between two writes of the embedding cache (a handful in
/// unit tests, so a small tree crosses several).
const EMBED_CHECKPOINT_ROWS: usize = if cfg!(test) { 2 } else { 2048 };

/// Embeds `texts` in order, in batches on the blocking pool, advancing `bar`.
async fn embed_texts(
    embedder: Arc<dyn Embedder>,
    texts: Vec<String>,
    bar: ProgressBar,
) -> Result<Vec<Vec<f32>>, BuildError> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(embedder.max_batch().max(1)) {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            let mut v = embedder.embed(&refs)?;
            if v.len() != refs.len() {
                return Err(BuildError::EmbedCount {
                    expected: refs.len(),
                    got: v.len(),
                });
            }
            out.append(&mut v);
            bar.inc(refs.len() as u64);
        }
        Ok(out)
    })
    .await
    .map_err(task("embed"))?
}

fn progress_bar(enabled: bool, len: u64, what: &'static str) -> ProgressBar {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what);
    bar
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The commit checked out at `root`, when it is a git work tree.
pub fn git_commit(root: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::chunks::load_chunks;
    use crate::test_support::CountingEmbedder;
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;

    /// A build can be spawned: its future is `Send` for any borrow of its
    /// arguments. A stream closure over borrowed items breaks that, and only
    /// a caller that spawns it would notice; this does not compile then.
    #[test]
    fn the_build_future_can_be_spawned() {
        fn spawnable<T: Send + 'static>(_: T) {}
        let (src, id, out) = (
            PathBuf::from("src"),
            IndexId::new("spawned").unwrap(),
            PathBuf::from("out"),
        );
        spawnable(async move { build_bundle(&src, &id, &out, BuildOptions::default()).await });
    }

    const A_V1: &str =
        "def parse(text):\n    return text.split()\n\n\ndef render(items):\n    return ' '.join(items)\n";
    const A_V2: &str =
        "def parse(text):\n    return text.split()\n\n\ndef render(items):\n    return ', '.join(sorted(items))\n";
    const B: &str = "class Store:\n    def get(self, key):\n        return self.items[key]\n";

    async fn build(src: &Path, store: &Store, embedder: &Arc<CountingEmbedder>) -> (BuildReport, tempfile::TempDir) {
        let out = tempfile::tempdir().unwrap();
        let report = build_bundle(
            src,
            &IndexId::new("cached").unwrap(),
            &out.path().join("b"),
            BuildOptions {
                embedder: Some(embedder.clone()),
                embed_cache: Some(store.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        (report, out)
    }

    fn texts(report: &BuildReport) -> HashSet<String> {
        let chunks = load_chunks(&report.dir.join(bundle::CHUNKS_FILE)).unwrap();
        chunks.iter().map(embedding_text).collect()
    }

    /// A tree with nothing to index still builds, with an embedder too: one
    /// such directory must not fail a build (or `up` over many).
    #[tokio::test]
    async fn a_tree_with_nothing_to_index_builds_without_vectors() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("logo.png"), [0u8, 1, 2, 0, 255]).unwrap();
        let store = Store::open("memory://empty-tree").unwrap();
        let embedder = Arc::new(CountingEmbedder::new());
        let (report, _keep) = build(src.path(), &store, &embedder).await;
        assert_eq!(report.manifest.counts.chunks, 0);
        assert!(report.manifest.embedder.is_none());
        assert_eq!(embedder.embedded.load(Ordering::Relaxed), 0);
    }

    /// A file the chunker panics on is skipped and counted; the build goes on.
    #[test]
    fn a_panic_chunking_one_file_skips_that_file() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.py"), A_V1).unwrap();
        let walked = walk(src.path(), &WalkConfig::default()).unwrap();
        let cfg = WalkConfig::default();
        let panicking = |_: &str, _: Language, _: &str| -> Vec<Chunk> { panic!("grammar bug") };
        let err = read_and_chunk(&walked.files[0], &cfg, &panicking).unwrap_err();
        assert!(matches!(&err, SkipReason::Panicked(m) if m == "grammar bug"), "{err}");
        let mut counts = SkipCounts::default();
        err.count(&mut counts);
        assert_eq!((counts.panicked, counts.total()), (1, 1));
        let chunking = |p: &str, l: Language, t: &str| chunk_file(p, l, t, &ChunkConfig::default());
        let (chunks, ..) = read_and_chunk(&walked.files[0], &cfg, &chunking).unwrap();
        assert_eq!(chunks.len(), 2);
    }

    /// A build refuses a bundle directory holding anything; one an earlier
    /// build left is cleared for the next, anything else is left alone.
    #[tokio::test]
    async fn a_bundle_dir_left_by_an_earlier_build_is_cleared_and_others_refused() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.py"), A_V1).unwrap();
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("bundle");
        let id = IndexId::new("work-dir").unwrap();
        build_bundle(src.path(), &id, &out, BuildOptions::default())
            .await
            .unwrap();
        let again = build_bundle(src.path(), &id, &out, BuildOptions::default()).await;
        assert!(matches!(again, Err(BuildError::BundleDirNotEmpty { .. })), "{again:?}");

        clear_bundle_dir(&out).unwrap();
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
        build_bundle(src.path(), &id, &out, BuildOptions::default())
            .await
            .unwrap();

        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let err = clear_bundle_dir(&out).unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert!(out.join(bundle::CHUNKS_FILE).exists(), "nothing deleted");
        clear_bundle_dir(&work.path().join("absent")).unwrap();
    }

    /// A build whose embedder fails part-way keeps the vectors of the files
    /// it finished: the next build embeds only the rest.
    #[tokio::test]
    async fn a_failed_build_keeps_what_it_embedded_for_the_next() {
        let src = tempfile::tempdir().unwrap();
        for i in 0..6 {
            std::fs::write(
                src.path().join(format!("m{i}.py")),
                format!("def f{i}(x):\n    return x + {i}\n\n\ndef g{i}(y):\n    return y * {i}\n"),
            )
            .unwrap();
        }
        let store = Store::open("memory://failed-build").unwrap();
        let whole = {
            let counting = Arc::new(CountingEmbedder::new());
            let (report, _keep) = build(src.path(), &Store::open("memory://count-only").unwrap(), &counting).await;
            report.manifest.counts.chunks as usize
        };
        assert!(whole >= 6, "{whole} chunks");

        let failing = Arc::new(CountingEmbedder::failing_after(whole - 2));
        let out = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            embedder: Some(failing.clone()),
            embed_cache: Some(store.clone()),
            ..Default::default()
        };
        let failed = build_bundle(
            src.path(),
            &IndexId::new("cached").unwrap(),
            &out.path().join("b"),
            opts,
        )
        .await;
        assert!(failed.is_err(), "the embedder went down");
        let kept = failing.embedded.load(Ordering::Relaxed);
        assert!(kept >= 2, "{kept}");

        let counting = Arc::new(CountingEmbedder::new());
        let (report, _keep) = build(src.path(), &store, &counting).await;
        assert_eq!(report.embedding.embedded + report.embedding.reused, whole);
        assert!(report.embedding.reused >= 2, "{:?}", report.embedding);
        assert_eq!(
            counting.embedded.load(Ordering::Relaxed),
            whole - report.embedding.reused
        );
    }

    /// Another model behind the same embedder id and dimension (another
    /// server at the URL, other weights in the model directory) gets none of
    /// the first model's cached vectors.
    #[tokio::test]
    async fn a_rebuild_with_another_model_of_the_same_id_reuses_no_vector() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.py"), A_V1).unwrap();
        std::fs::write(src.path().join("b.py"), B).unwrap();
        let store = Store::open("memory://build-embed-swapped").unwrap();
        let build_with = |salt| {
            let (src, store) = (src.path().to_path_buf(), store.clone());
            async move {
                let out = tempfile::tempdir().unwrap();
                let opts = BuildOptions {
                    embedder: Some(Arc::new(crate::embed::Salted::new(salt))),
                    embed_cache: Some(store),
                    ..Default::default()
                };
                let id = IndexId::new("cached").unwrap();
                build_bundle(&src, &id, &out.path().join("b"), opts).await.unwrap()
            }
        };
        let first = build_with(1).await;
        let n = first.manifest.counts.chunks as usize;
        assert_eq!(build_with(1).await.embedding.reused, n, "the same model reuses all");
        let swapped = build_with(2).await;
        let (before, after) = (first.manifest.embedder.unwrap(), swapped.manifest.embedder.unwrap());
        assert_eq!((&after.id, after.dimension), (&before.id, before.dimension));
        assert_eq!((swapped.embedding.embedded, swapped.embedding.reused), (n, 0));
        // What tells the two apart travels with each version, for the shards.
        let model = |salt| crate::embed::Fingerprint::of(&crate::embed::Salted::new(salt)).unwrap();
        use crate::embed::same_model;
        assert!(same_model(&model(1).probe, before.probe.as_deref().unwrap()));
        assert!(same_model(&model(2).probe, after.probe.as_deref().unwrap()));
        assert!(!same_model(&model(1).probe, after.probe.as_deref().unwrap()));
    }

    #[tokio::test]
    async fn a_rebuild_embeds_only_the_chunks_that_changed() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.py"), A_V1).unwrap();
        std::fs::write(src.path().join("b.py"), B).unwrap();
        let store = Store::open("memory://build-embed-cache").unwrap();
        let embedder = Arc::new(CountingEmbedder::new());

        let (first, _keep1) = build(src.path(), &store, &embedder).await;
        let n = first.manifest.counts.chunks as usize;
        assert!(n >= 3, "{n} chunks");
        assert_eq!(embedder.embedded.load(Ordering::Relaxed), n);
        assert_eq!((first.embedding.embedded, first.embedding.reused), (n, 0));

        let (same, _keep2) = build(src.path(), &store, &embedder).await;
        assert_eq!(
            embedder.embedded.load(Ordering::Relaxed),
            n,
            "an unchanged tree embeds nothing"
        );
        assert_eq!((same.embedding.embedded, same.embedding.reused), (0, n));
        assert_eq!(same.embedding.files_hit, 2);

        std::fs::write(src.path().join("a.py"), A_V2).unwrap();
        let (changed, _keep3) = build(src.path(), &store, &embedder).await;
        let new_texts = texts(&changed).difference(&texts(&first)).count();
        assert!(new_texts >= 1);
        assert_eq!(
            changed.embedding.embedded, new_texts,
            "only the changed chunks are embedded"
        );
        assert_eq!(embedder.embedded.load(Ordering::Relaxed), n + new_texts);
        assert_eq!(
            changed.embedding.reused,
            changed.manifest.counts.chunks as usize - new_texts
        );
    }
}
