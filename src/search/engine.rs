//! One opened index version and the search pipeline over it.
//!
//! Hybrid search runs BM25 and vector retrieval over the same filter, fuses
//! them (a convex combination of normalised scores by default), then lets the
//! code graph pull in the definitions and callers of the top hits. A pasted
//! issue or stack trace is read differently from a short query: its BM25 arm
//! weighs the title's words, and it fuses with weights of its own. Every hit
//! keeps its per-arm ranks so users (and evaluations) can see why it ranked
//! where it did.

use crate::api::{
    ArmScore, Arms, FileContent, FileHit, FileOutline, GraphReason, GroupBy, Hit, LineRange, MAX_READ_BYTES,
    MAX_READ_LINES, SearchMode, SearchRequest, SearchResponse, SymbolRelation, SymbolResponse,
};
use crate::bundle::chunks::{ChunksError, load_chunks};
use crate::bundle::graph::{CodeGraph, GraphError};
use crate::bundle::lexical::Bm25Error;
use crate::bundle::sources::{Sources, SourcesError};
use crate::bundle::vectors::VectorError;
use crate::embed::Embedder;
use crate::heap_size;
use crate::model::{Chunk, Language};
use crate::search::bm25::Bm25Index;
use crate::search::files::{Asks, ChunkEvidence, FileRankParams, FileTable, definers_first, rank_files};
use crate::search::fusion::{FusionMethod, FusionWeights, definitions_first, weighted_convex, weighted_rrf};
use crate::search::graph::SymbolGraph;
use crate::search::query::{ParsedQuery, QueryError};
pub use crate::search::query_model::EmbedFailure;
use crate::search::query_model::QueryModel;
use crate::search::query_text::{QueryText, Shape};
use crate::search::vector::{self, VectorIndex};
use crate::storage::layout::bundle;
use crate::storage::manifest::Manifest;
use crate::telemetry::metrics::ARM_UNAVAILABLE;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Why a verified bundle could not be opened; each variant keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("chunks: {0}")]
    Chunks(#[from] ChunksError),
    #[error("BM25 index: {0}")]
    Bm25(#[from] Bm25Error),
    #[error("graph in {}: {source}", dir.display())]
    Graph {
        dir: PathBuf,
        #[source]
        source: GraphError,
    },
    #[error("vectors: {0}")]
    Vectors(#[from] VectorError),
    #[error("sources: {0}")]
    Sources(#[from] SourcesError),
    #[error("{} holds {on_disk} chunks, its manifest says {manifest}", dir.display())]
    ChunkCount { dir: PathBuf, on_disk: u64, manifest: u64 },
    #[error("opening the {part} stopped unexpectedly: {source}")]
    Task {
        part: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("bm25 search failed: {0}")]
    Bm25(#[from] Bm25Error),
    #[error("vector search failed: {0}")]
    Vector(#[from] VectorError),
    #[error("the query embedder is unavailable ({0}); vector search cannot answer")]
    EmbedderUnavailable(#[source] EmbedFailure),
    #[error("vector search cannot answer: {}", .0.message)]
    EmbedderMismatch(#[source] EmbedFailure),
}

/// How many candidates each arm contributes before fusion.
const ARM_DEPTH: usize = 100;
/// How many fused hits seed graph expansion.
const GRAPH_SEEDS: usize = 10;
/// Best chunks listed per ranked file.
const FILE_CHUNKS: usize = 3;
/// Files the file arm of issue-shaped chunk search contributes.
const FILE_ARM_FILES: usize = ARM_DEPTH;
/// Lines of a chunk shown as its snippet.
const SNIPPET_LINES: usize = 12;
const SNIPPET_BYTES: usize = 1200;

pub struct Engine {
    pub manifest: Manifest,
    dir: PathBuf,
    chunks: Vec<Chunk>,
    bm25: Bm25Index,
    vectors: Option<VectorIndex>,
    graph: SymbolGraph,
    /// The files' text, read back on request; optional in the format (without
    /// it, reading code asks for a rebuild).
    sources: Option<Sources>,
    query_model: QueryModel,
    weights: FusionWeights,
    /// Fusion for issue-shaped and stack-trace queries, whose BM25 arm reads
    /// hundreds of words and needs another balance than a short phrase.
    long_text_weights: FusionWeights,
    embed_timeout: std::time::Duration,
    files: FileTable,
    file_params: FileRankParams,
}

/// An issue's query terms, see [`Engine::issue_terms`].
struct IssueTerms {
    terms: Vec<String>,
    title: Vec<String>,
    weighted: Vec<(String, f32)>,
}

/// How long a query waits for its embedding unless told otherwise.
pub const DEFAULT_EMBED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("index_id", &self.manifest.index_id)
            .field("version", &self.manifest.version)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl Engine {
    /// Opens a verified bundle directory. `embedder` embeds queries; it is used
    /// only while it is the model the index was built with (see
    /// [`QueryModel`]), otherwise the vector arm is reported unavailable
    /// rather than returning garbage.
    pub async fn open(
        dir: &Path,
        manifest: Manifest,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Engine, EngineError> {
        let task = |part: &'static str| move |source| EngineError::Task { part, source };
        // The four parts are independent files: read them concurrently, each on
        // a blocking thread, so opening costs about the slowest part rather
        // than the sum and never occupies the async workers.
        let chunks_path = dir.join(bundle::CHUNKS_FILE);
        let chunks = tokio::task::spawn_blocking(move || load_chunks(&chunks_path));
        let bm25_dir = dir.join(bundle::BM25_DIR);
        let bm25 = tokio::task::spawn_blocking(move || Bm25Index::open(&bm25_dir));
        let graph_path = dir.join(bundle::GRAPH_FILE);
        let graph = tokio::task::spawn_blocking(move || CodeGraph::read(&graph_path));
        let vectors_dir = dir.join(bundle::VECTORS_DIR);
        // Filling the exact-search matrix is CPU work too: lance is driven from
        // a blocking thread so a restore never stalls the workers serving probes.
        let has_vectors = manifest.embedder.is_some();
        let vectors = tokio::task::spawn_blocking(move || {
            if !has_vectors {
                return Ok(None);
            }
            tokio::runtime::Handle::current()
                .block_on(VectorIndex::open(&vectors_dir))
                .map(Some)
        });
        let sources_dir = dir.to_path_buf();
        let sources = tokio::task::spawn_blocking(move || Sources::open(&sources_dir));
        let (chunks, bm25, graph, vectors, sources) = tokio::join!(chunks, bm25, graph, vectors, sources);
        let sources = sources.map_err(task("sources"))??;
        let chunks = chunks.map_err(task("chunks"))??;
        let bm25 = bm25.map_err(task("bm25 index"))??;
        let graph = graph.map_err(task("graph"))?.map_err(|source| EngineError::Graph {
            dir: dir.to_path_buf(),
            source,
        })?;
        let vectors = vectors.map_err(task("vectors"))??;
        let query_model = QueryModel::new(&manifest, embedder);
        if chunks.len() as u64 != manifest.counts.chunks {
            return Err(EngineError::ChunkCount {
                dir: dir.to_path_buf(),
                on_disk: chunks.len() as u64,
                manifest: manifest.counts.chunks,
            });
        }
        // The file and name tables are CPU work proportional to the repository: off the runtime.
        let (chunks, graph, bm25, files) = tokio::task::spawn_blocking(move || {
            let files = FileTable::build(&chunks, &graph, |path| bm25.terms(path));
            (chunks, SymbolGraph::new(graph), bm25, files)
        })
        .await
        .map_err(task("file table"))?;
        Ok(Engine {
            manifest,
            dir: dir.to_path_buf(),
            chunks,
            bm25,
            vectors,
            graph,
            sources,
            query_model,
            weights: FusionWeights::default(),
            long_text_weights: FusionWeights::long_text(),
            embed_timeout: DEFAULT_EMBED_TIMEOUT,
            files,
            file_params: FileRankParams::default(),
        })
    }

    /// Bounds how long a query waits for its embedding before hybrid search
    /// answers without the vector arm.
    pub fn set_embed_timeout(&mut self, timeout: std::time::Duration) {
        self.embed_timeout = timeout;
    }

    pub fn set_weights(&mut self, weights: FusionWeights) {
        self.weights = weights;
    }

    pub fn weights(&self) -> FusionWeights {
        self.weights
    }

    /// Replaces the fusion weights of issue-shaped queries (evaluation sweeps).
    pub fn set_long_text_weights(&mut self, weights: FusionWeights) {
        self.long_text_weights = weights;
    }

    /// Replaces the file-ranking weights and priors (evaluation sweeps).
    pub fn set_file_params(&mut self, params: FileRankParams) {
        self.file_params = params;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    pub fn bm25(&self) -> &Bm25Index {
        &self.bm25
    }

    pub fn graph(&self) -> &SymbolGraph {
        &self.graph
    }

    /// Can this engine serve vector search (vectors present and a matching query embedder)?
    pub fn has_vectors(&self) -> bool {
        self.vectors.is_some() && self.query_model.usable()
    }

    /// Approximate resident bytes: chunks with their metadata, the graph and
    /// its lookup tables, the file-ranking tables, vectors held in memory, and
    /// the BM25 files (memory mapped: the pages a query touches count towards
    /// the process's memory).
    pub fn memory_bytes(&self) -> u64 {
        let chunks = heap_size::buffer(&self.chunks) as u64 + self.chunks.iter().map(chunk_heap_bytes).sum::<u64>();
        let vectors = self.vectors.as_ref().map(|v| v.memory_bytes()).unwrap_or(0);
        let bm25 = self.manifest.bytes_under(bundle::BM25_DIR);
        let sources = self.sources.as_ref().map_or(0, Sources::heap_bytes);
        chunks + self.graph.heap_bytes() + vectors + bm25 + sources + self.files.heap_bytes()
    }

    /// Embeds a query with the index's embedder (CPU-bound or remote: runs on
    /// the blocking pool) within the embed timeout. `Ok(None)` when the shard
    /// has no query embedder.
    pub async fn embed_query(&self, text: &str) -> Result<Option<Vec<f32>>, EmbedFailure> {
        self.query_model.embed(text, self.embed_timeout).await
    }

    /// Runs a search. In hybrid mode an embedder that is down or slow drops
    /// the vector arm (named in `unavailable_arms`) instead of failing the
    /// query; vector mode has nothing else to answer with and fails.
    pub async fn search(&self, req: &SearchRequest) -> Result<SearchResponse, SearchError> {
        let started = Instant::now();
        req.validate().map_err(SearchError::Invalid)?;
        let parsed = ParsedQuery::parse(&req.query, req.filters.as_ref())?;
        // File ranking reads the raw query's lines (see `search_files`) and
        // embeds it without the environment dumps an issue carries.
        let by_file = req.group_by == Some(GroupBy::File);
        let embed_text = if by_file {
            parsed.read.cleaned.as_str()
        } else {
            parsed.embed_text()
        };
        let wants_vector = matches!(req.mode, SearchMode::Hybrid | SearchMode::Vector)
            && self.vectors.is_some()
            && !embed_text.trim().is_empty();
        let mut degraded = None;
        let query_vec = if wants_vector {
            match self.embed_query(embed_text).await {
                Ok(v) => v,
                Err(f) if req.mode == SearchMode::Hybrid => {
                    ARM_UNAVAILABLE.with_label_values(&["vector", f.reason]).inc();
                    tracing::debug!(reason = f.reason, error = %f.message, "hybrid search without the vector arm");
                    degraded = Some(f);
                    None
                }
                Err(f) => {
                    ARM_UNAVAILABLE.with_label_values(&["vector", f.reason]).inc();
                    return Err(if f.is_mismatch() {
                        SearchError::EmbedderMismatch(f)
                    } else {
                        SearchError::EmbedderUnavailable(f)
                    });
                }
            }
        } else {
            None
        };
        let mut resp = if by_file {
            self.search_files(req.mode, &parsed, req.top_k(), query_vec.as_deref())
                .await?
        } else {
            self.search_parsed(req.mode, req.top_k(), &parsed, query_vec.as_deref())
                .await?
        };
        if degraded.is_some() && !resp.unavailable_arms.iter().any(|a| a == "vector") {
            resp.unavailable_arms.push("vector".to_string());
        }
        resp.took_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(resp)
    }

    /// The search pipeline with the query embedding supplied by the caller
    /// (benchmarks time embedding separately through this). The query's shape
    /// picks the BM25 query and the fusion weights; embed
    /// [`ParsedQuery::embed_text`] to match what [`Engine::search`] does.
    pub async fn search_parsed(
        &self,
        mode: SearchMode,
        top_k: usize,
        parsed: &ParsedQuery,
        query_vec: Option<&[f32]>,
    ) -> Result<SearchResponse, SearchError> {
        let started = Instant::now();
        let mut unavailable = Vec::new();
        let filter = &parsed.filter;
        let allow_fn = |id: u32| self.chunks.get(id as usize).is_some_and(|c| filter.matches(c));
        let allow: Option<&(dyn Fn(u32) -> bool + Sync)> = if filter.is_empty() { None } else { Some(&allow_fn) };
        let text = parsed.text.trim();
        let long_text = parsed.is_long_text();
        let weights = if long_text {
            self.long_text_weights
        } else {
            self.weights
        };

        let mut bm25_hits = Vec::new();
        let mut vec_hits = Vec::new();
        let mut fused: Vec<(u32, f32)>;
        let mut reasons: HashMap<u32, GraphReason> = HashMap::new();

        if text.is_empty() {
            // Only a sym: filter: list that symbol's chunks.
            fused = (0..self.chunks.len() as u32)
                .filter(|&id| allow_fn(id))
                .map(|id| (id, 1.0))
                .collect();
        } else {
            let depth = ARM_DEPTH.max(top_k * 2);
            // A pasted issue in hybrid mode also ranks files (see `file_arm`),
            // which reads deeper candidate lists than the arms fuse.
            let file_arm = long_text && mode == SearchMode::Hybrid && weights.files > 0.0;
            let reads_words = matches!(mode, SearchMode::Hybrid | SearchMode::Bm25);
            let issue = (long_text && reads_words).then(|| self.issue_terms(&parsed.read));
            if reads_words {
                bm25_hits = if let Some(issue) = &issue {
                    let deep = if file_arm {
                        depth.max(self.file_params.chunk_hits)
                    } else {
                        depth
                    };
                    // `allow` carries the language filter here.
                    self.bm25.search_weighted(&issue.weighted, deep, allow)?
                } else {
                    self.bm25.search(text, depth, &filter.languages, allow)?
                };
            }
            if matches!(mode, SearchMode::Hybrid | SearchMode::Vector) {
                let deep = if file_arm {
                    depth.max(self.file_params.vector_hits)
                } else {
                    depth
                };
                match (&self.vectors, query_vec) {
                    (Some(v), Some(q)) => match v.search(q, deep, allow).await {
                        Ok(hits) => vec_hits = hits,
                        // Hybrid answers from the other arms; vector mode has nothing else.
                        Err(e) if mode == SearchMode::Hybrid => {
                            tracing::warn!(error = %e, "vector arm failed; answering without it");
                            ARM_UNAVAILABLE.with_label_values(&["vector", "arm_error"]).inc();
                            unavailable.push("vector".to_string());
                        }
                        Err(e) => {
                            return Err(SearchError::Vector(e));
                        }
                    },
                    _ => unavailable.push("vector".to_string()),
                }
            }
            // What the title asks for, for the chunk priors: an issue's title
            // terms are already analysed (a title may be the whole 64 KiB).
            let asks = (mode == SearchMode::Hybrid && self.file_params.chunk_priors).then(|| match &issue {
                Some(issue) => Asks::of(&issue.title),
                None => Asks::of(&self.bm25.terms(&parsed.read.title)),
            });
            let files_hits = match issue {
                Some(issue) if file_arm => self.file_arm(parsed, issue, &bm25_hits, &vec_hits, allow),
                _ => Vec::new(),
            };
            bm25_hits.truncate(depth);
            vec_hits.truncate(depth);
            fused = match mode {
                SearchMode::Bm25 => bm25_hits.clone(),
                SearchMode::Vector => vec_hits.clone(),
                SearchMode::Hybrid => {
                    let lists: [(&[(u32, f32)], f32); 3] = [
                        (&bm25_hits, weights.bm25),
                        (&vec_hits, weights.vector),
                        (&files_hits, weights.files),
                    ];
                    // With one arm missing, fusion degenerates to that arm's ranking.
                    match weights.method {
                        FusionMethod::Rrf => weighted_rrf(&lists, weights.k),
                        FusionMethod::Convex => weighted_convex(&lists),
                    }
                }
                SearchMode::Graph => self.graph.graph_search(&self.chunks, text, depth, allow),
            };
            if mode == SearchMode::Hybrid && weights.graph > 0.0 {
                self.expand_with_graph(&mut fused, &mut reasons, top_k, allow, weights.graph);
            }
            if let Some(asks) = asks {
                for (id, score) in fused.iter_mut() {
                    *score *= self.files.chunk_prior(*id, asks, &self.file_params);
                }
                // Stable: equal scores keep the fused order.
                fused.sort_by(|a, b| b.1.total_cmp(&a.1));
            }
            if parsed.read.shape == Shape::Identifier && matches!(mode, SearchMode::Hybrid | SearchMode::Bm25) {
                let mut defined = self.graph.chunks_for_symbol(text);
                defined.retain(|&id| allow.is_none_or(|f| f(id)));
                definitions_first(&mut fused, &defined);
            }
        }

        fused.truncate(top_k);
        let bm25_rank = rank_map(&bm25_hits);
        let vec_rank = rank_map(&vec_hits);
        let hits = fused
            .iter()
            .filter_map(|&(id, score)| {
                let chunk = self.chunks.get(id as usize)?;
                let arms = Arms {
                    bm25: bm25_rank.get(&id).copied(),
                    vector: vec_rank.get(&id).copied(),
                    graph: reasons.remove(&id),
                };
                Some(hit(chunk, score, snippet(&chunk.content), arms))
            })
            .collect();
        Ok(SearchResponse {
            index_id: self.manifest.index_id.clone(),
            version: self.manifest.version.clone(),
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
            mode,
            hits,
            files: Vec::new(),
            unavailable_arms: unavailable,
        })
    }

    /// Ranks files rather than chunks (see [`crate::search::files`]): lexical
    /// evidence from the chunks plus what an issue-shaped query names (symbols,
    /// `Class.method`, paths, stack frames), and the nearest chunks to
    /// `query_vec` when the mode includes vectors. Filters keep files whose
    /// chunks they allow (languages and paths; a symbol filter restricts the
    /// chunks). The query was read from the raw text, not the parsed one: its
    /// lines (title, code blocks, environment dumps, stack frames) carry
    /// meaning that the parsed, whitespace-joined text has lost.
    async fn search_files(
        &self,
        mode: SearchMode,
        parsed: &ParsedQuery,
        top_k: usize,
        query_vec: Option<&[f32]>,
    ) -> Result<SearchResponse, SearchError> {
        let params = &self.file_params;
        let query = &parsed.read;
        let filter = &parsed.filter;
        let allow_fn = |id: u32| self.chunks.get(id as usize).is_some_and(|c| filter.matches(c));
        let allow: Option<&(dyn Fn(u32) -> bool + Sync)> = if filter.is_empty() { None } else { Some(&allow_fn) };
        tracing::debug!(
            shape = query.shape.as_str(),
            identifiers = query.idents.len(),
            dotted = query.dotted.len(),
            paths = query.paths.len(),
            frames = query.frames.len(),
            "file search"
        );
        let mut unavailable = Vec::new();
        let mut vector_hits = Vec::new();
        if matches!(mode, SearchMode::Hybrid | SearchMode::Vector) {
            match (&self.vectors, query_vec) {
                (Some(v), Some(q)) => match v.search(q, params.vector_hits, allow).await {
                    Ok(hits) => vector_hits = hits,
                    Err(e) if mode == SearchMode::Hybrid => {
                        tracing::warn!(error = %e, "vector arm failed; ranking files without it");
                        ARM_UNAVAILABLE.with_label_values(&["vector", "arm_error"]).inc();
                        unavailable.push("vector".to_string());
                    }
                    Err(e) => return Err(SearchError::Vector(e)),
                },
                _ => unavailable.push("vector".to_string()),
            }
        }
        let IssueTerms { terms, title, weighted } = self.issue_terms(query);
        let chunk_hits = self.bm25.search_weighted(&weighted, params.chunk_hits, allow)?;
        let evidence = ChunkEvidence {
            terms,
            title_terms: title,
            chunk_hits,
            vector_hits,
        };
        let mut ranked = rank_files(&self.files, query, &evidence, params, usize::MAX, FILE_CHUNKS);
        if let Some(allow) = allow {
            ranked.retain(|r| !r.chunks.is_empty() || self.files.first_chunk(r.file).is_some_and(allow));
        }
        if query.shape == Shape::Identifier && params.definers_first {
            let definers: Vec<u32> = self
                .graph
                .chunks_for_symbol(parsed.text.trim())
                .into_iter()
                .filter(|&id| allow.is_none_or(|f| f(id)))
                .filter_map(|id| self.files.file_of(id))
                .collect();
            definers_first(&mut ranked, &definers);
        }
        ranked.truncate(top_k);
        let files = ranked
            .into_iter()
            .map(|r| {
                let path = self.files.path(r.file).to_string();
                let language = self
                    .files
                    .first_chunk(r.file)
                    .and_then(|c| self.chunks.get(c as usize))
                    .map(|c| c.language.as_str().to_string())
                    .unwrap_or_default();
                let chunks = r
                    .chunks
                    .iter()
                    .enumerate()
                    .filter_map(|(rank, &(id, score))| {
                        let chunk = self.chunks.get(id as usize)?;
                        // Only a file's best chunk carries a snippet.
                        let text = if rank == 0 {
                            snippet(&chunk.content)
                        } else {
                            String::new()
                        };
                        Some(hit(chunk, score, text, Arms::default()))
                    })
                    .collect();
                FileHit {
                    path,
                    language,
                    score: r.score,
                    chunks,
                    index_id: None,
                }
            })
            .collect();
        Ok(SearchResponse {
            index_id: self.manifest.index_id.clone(),
            version: self.manifest.version.clone(),
            took_ms: 0.0,
            mode,
            hits: Vec::new(),
            files,
            unavailable_arms: unavailable,
        })
    }

    /// The file arm of issue-shaped chunk search: files ranked as
    /// [`Engine::search_files`] ranks them, each standing for its best chunk
    /// (its first chunk when only its path or a stack frame pointed at it).
    /// A pasted issue names paths, frames and symbols whose evidence is about
    /// files, and chunk scores alone cannot see it; fused as an arm, a chunk
    /// in a file the issue points at rises above an equally worded one
    /// elsewhere.
    fn file_arm(
        &self,
        parsed: &ParsedQuery,
        issue: IssueTerms,
        bm25_hits: &[(u32, f32)],
        vector_hits: &[(u32, f32)],
        allow: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> Vec<(u32, f32)> {
        let evidence = ChunkEvidence {
            terms: issue.terms,
            title_terms: issue.title,
            chunk_hits: bm25_hits.to_vec(),
            vector_hits: vector_hits.to_vec(),
        };
        // Files with chunk hits passed the filter in the arms; a file only
        // named by the issue is filtered here, so with a filter the cut comes
        // after it rather than leaving fewer files in the arm.
        let depth = if allow.is_some() { usize::MAX } else { FILE_ARM_FILES };
        rank_files(&self.files, &parsed.read, &evidence, &self.file_params, depth, 1)
            .into_iter()
            .filter_map(|r| {
                let best = r.chunks.first().map(|&(id, _)| id);
                let id = best.or_else(|| self.files.first_chunk(r.file).filter(|&id| allow.is_none_or(|f| f(id))))?;
                Some((id, r.score))
            })
            .take(FILE_ARM_FILES)
            .collect()
    }

    /// The analyzed terms of an issue's cleaned text, its title's terms, and
    /// each term weighted by whether the title says it (the title is the
    /// strongest signal in a bug report). File ranking and issue-shaped chunk
    /// search read an issue the same way.
    fn issue_terms(&self, query: &QueryText) -> IssueTerms {
        let terms = self.bm25.terms(&query.cleaned);
        let title: Vec<String> = self.bm25.terms(&query.title);
        let weighted = terms
            .iter()
            .map(|t| {
                let boost = if title.contains(t) {
                    self.file_params.title_boost
                } else {
                    0.0
                };
                (t.clone(), 1.0 + boost)
            })
            .collect();
        IssueTerms { terms, title, weighted }
    }

    /// Adds the graph neighbours of the top hits: a neighbour already in the
    /// list is boosted (by `weight` times the boost the graph gives), a new one
    /// enters just below the hit it was reached from.
    fn expand_with_graph(
        &self,
        fused: &mut Vec<(u32, f32)>,
        reasons: &mut HashMap<u32, GraphReason>,
        top_k: usize,
        allow: Option<&(dyn Fn(u32) -> bool + Sync)>,
        weight: f32,
    ) {
        let seeds: Vec<(u32, f32)> = fused.iter().take(GRAPH_SEEDS).copied().collect();
        if seeds.is_empty() {
            return;
        }
        let mut position: HashMap<u32, usize> = fused.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
        for (id, reason) in self.graph.expand(&seeds, top_k) {
            if allow.is_some_and(|f| !f(id)) {
                continue;
            }
            // The graph scales boosts by the seed's fused score, so they are on the fused scale.
            let bonus = reason.boost * weight;
            match position.get(&id) {
                Some(&i) => fused[i].1 += bonus,
                None => {
                    position.insert(id, fused.len());
                    fused.push((id, bonus));
                }
            }
            reasons.entry(id).or_insert(reason);
        }
        fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    }

    pub fn symbols(&self, name: &str, rel: SymbolRelation, depth: u32, limit: usize) -> SymbolResponse {
        SymbolResponse {
            index_id: self.manifest.index_id.clone(),
            version: self.manifest.version.clone(),
            symbol: name.to_string(),
            rel,
            results: self
                .graph
                .navigate(&self.chunks, name, rel, depth.clamp(1, 5), limit.clamp(1, 500)),
        }
    }

    /// Lines of `path` as this version indexed them.
    pub fn read_file(&self, path: &str, lines: Option<LineRange>) -> Result<FileContent, ReadError> {
        let not_found = || ReadError::NotFound { path: path.to_string() };
        let sources = self.sources.as_ref().ok_or(ReadError::NoSources)?;
        let text = sources
            .read(path)
            .map_err(|source| ReadError::Sources {
                path: path.to_string(),
                source,
            })?
            .ok_or_else(not_found)?;
        let all: Vec<&str> = text.lines().collect();
        let total = all.len() as u32;
        let range = lines.unwrap_or(LineRange { start: 1, end: None });
        if range.start > total.max(1) {
            return Err(ReadError::PastEnd {
                path: path.to_string(),
                start: range.start,
                total,
            });
        }
        let last = range
            .end
            .unwrap_or(u32::MAX)
            .min(total)
            .min(range.start.saturating_add(MAX_READ_LINES - 1));
        let picked = if total == 0 {
            &[][..]
        } else {
            &all[(range.start - 1) as usize..last as usize]
        };
        // Whole lines up to the byte budget: an agent asking for 2,000 lines
        // of a file with a megabyte-long line gets the lines before it.
        let (mut out, mut end, mut truncated) = (String::new(), range.start.saturating_sub(1), false);
        for line in picked {
            if out.len() + line.len() + 1 > MAX_READ_BYTES {
                truncated = true;
                if out.is_empty() {
                    out.push_str(&line[..line.floor_char_boundary(MAX_READ_BYTES - 1)]);
                    out.push('\n');
                    end += 1;
                }
                break;
            }
            out.push_str(line);
            out.push('\n');
            end += 1;
        }
        Ok(FileContent {
            index_id: self.manifest.index_id.clone(),
            version: self.manifest.version.clone(),
            path: path.to_string(),
            language: self.language_of(path),
            start_line: if total == 0 { 0 } else { range.start },
            end_line: end,
            total_lines: total,
            text: out,
            truncated,
        })
    }

    /// The language `path`'s chunks (and so its search hits) say: a `.h`
    /// header may be C++; by name for a file without chunks.
    fn language_of(&self, path: &str) -> String {
        let language = self.files.language(path).or_else(|| Language::from_path(path));
        language.unwrap_or(Language::Text).as_str().to_string()
    }

    /// The symbols `path` defines, from the code graph.
    pub fn outline(&self, path: &str) -> Result<FileOutline, ReadError> {
        let symbols = self
            .graph
            .outline(&self.chunks, path)
            .ok_or_else(|| ReadError::NotFound { path: path.to_string() })?;
        Ok(FileOutline {
            index_id: self.manifest.index_id.clone(),
            version: self.manifest.version.clone(),
            path: path.to_string(),
            language: self.language_of(path),
            symbols,
        })
    }
}

/// Why a file could not be read back from a version.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path} is not a file of this index version")]
    NotFound { path: String },
    #[error("lines from {start} asked of {path}, which has {total} lines")]
    PastEnd { path: String, start: u32, total: u32 },
    #[error("this index version was built without file contents; rebuild it to read code")]
    NoSources,
    #[error("reading {path}: {source}")]
    Sources {
        path: String,
        #[source]
        source: SourcesError,
    },
}

/// A chunk's heap beyond its slot in the chunk vector: each string and list.
fn chunk_heap_bytes(c: &Chunk) -> u64 {
    (heap_size::string(&c.content)
        + heap_size::string(&c.path)
        + heap_size::string(&c.content_hash)
        + heap_size::optional(&c.symbol)
        + heap_size::optional(&c.parent)
        + heap_size::strings(&c.calls)
        + heap_size::strings(&c.imports)) as u64
}

/// What [`Engine::memory_bytes`] will report for a version, from its
/// manifest alone, so a shard can reserve memory before downloading; it errs
/// high, since a reservation short of the charge lets a shard overshoot its
/// budget. Each part is bounded from its file: chunk records take no more in
/// memory than their JSON text plus a fixed per-chunk cost (the record's slot
/// and its allocations: its calls and imports are many short strings, each a
/// slot and an allocation beyond its text), the graph's tables with the name
/// and file-ranking tables built from it about twelve times its compact
/// encoding, vectors
/// `chunks × dimension × 4` (held in memory, or the cap on what lance caches
/// for an ANN index), BM25 its file size. The soak bench prints this
/// estimate against the engine's count and the heap an open really takes.
pub fn estimate_memory(manifest: &Manifest) -> u64 {
    let chunks = manifest.bytes_under(bundle::CHUNKS_FILE) + manifest.counts.chunks * 640;
    let graph = manifest.bytes_under(bundle::GRAPH_FILE) * 12;
    let vectors = manifest
        .embedder
        .as_ref()
        .map(|e| manifest.counts.chunks * (e.dimension as u64 * 4 + 4))
        .unwrap_or(0)
        + vector::ann_metadata_bytes(manifest);
    let bm25 = manifest.bytes_under(bundle::BM25_DIR);
    // The path map of the sources (their text stays on disk), and the paths'
    // suffixes and terms in the file-ranking tables.
    let sources = manifest.bytes_under(bundle::SOURCES_INDEX_FILE) * 8;
    chunks + graph + vectors + bm25 + sources
}

fn rank_map(hits: &[(u32, f32)]) -> HashMap<u32, ArmScore> {
    hits.iter()
        .enumerate()
        .map(|(i, (id, s))| (*id, ArmScore { rank: i + 1, score: *s }))
        .collect()
}

/// A chunk as a search hit (not yet attributed to an index).
fn hit(chunk: &Chunk, score: f32, snippet: String, arms: Arms) -> Hit {
    Hit {
        path: chunk.path.clone(),
        start_line: chunk.start_line,
        end_line: chunk.end_line,
        symbol: chunk.symbol.clone(),
        kind: chunk.kind.as_str().to_string(),
        language: chunk.language.as_str().to_string(),
        snippet,
        score,
        arms,
        index_id: None,
    }
}

fn snippet(content: &str) -> String {
    let mut out = String::new();
    for line in content.lines().take(SNIPPET_LINES) {
        if out.len() + line.len() > SNIPPET_BYTES {
            // A first line longer than the whole budget is shown cut rather
            // than leaving the hit without a snippet.
            if out.is_empty() {
                out.push_str(&line[..line.floor_char_boundary(SNIPPET_BYTES)]);
                out.push('\n');
            }
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_keeps_whole_lines_within_budget_and_cuts_an_overlong_first_line() {
        let lines: String = (0..20).map(|i| format!("line {i}\n")).collect();
        assert_eq!(snippet(&lines).lines().count(), SNIPPET_LINES);

        let long = format!("{}\nnext\n", "é".repeat(SNIPPET_BYTES));
        let shown = snippet(&long);
        assert!(!shown.trim().is_empty());
        assert!(shown.len() <= SNIPPET_BYTES + 1);
        assert!(!shown.contains("next"));
    }
}
