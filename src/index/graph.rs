//! The code knowledge graph of one index version: files, symbols and external
//! modules as nodes; containment, definition, imports, calls and references as
//! edges. It is built once from the chunks at index time, written into the
//! bundle as `graph.bin`, and loaded by shards for symbol navigation and for the
//! graph arm of search ([`crate::search::graph`]).
//!
//! # Nodes
//!
//! - [`NodeKind::File`]: one per distinct chunk path.
//! - [`NodeKind::Symbol`]: one per symbol of a code file. The windows of one
//!   oversize symbol (several chunks with the same path, parent and name, whose
//!   kinds are equal or `window`) are **merged into one node**: `chunk_id` is the
//!   first window, `more_chunks` the rest, and the calls of all windows become the
//!   node's edges. Navigation then reports the symbol once with its full line
//!   range, and expansion returns its first window. Overloads (Java methods with
//!   the same name in one class) merge the same way, which is what name-level
//!   resolution can tell apart anyway. A code chunk without a symbol that still
//!   calls something (module-level script code) gets an anonymous node (empty
//!   name) so its calls are not lost; anonymous nodes are never a name match.
//!   Prose (markdown, yaml, …) chunks get no symbol node.
//! - [`NodeKind::External`]: an import target outside the repository, named by
//!   its package (Rust crate, Python top-level package, npm package, Go import
//!   path, Java package, C header).
//!
//! # Edges
//!
//! - `Defines`: file → every symbol whose chunk lives in it (flat, one hop).
//! - `Contains`: parent symbol → member (`impl`/class/trait → method), when the
//!   parent is defined in the same file. (File → symbol is `Defines`, so the two
//!   never duplicate each other.)
//! - `Imports`: file → repository file when the import resolves, file → external
//!   module otherwise, and additionally file → symbol when the import names an
//!   item defined at the resolved file (`use crate::a::Foo`, `from a import foo`).
//! - `Calls`: symbol → function, method, class (constructor) or window symbol.
//! - `References`: symbol → any other definition it names (struct, enum, trait,
//!   type, constant, …): the same resolution as calls, another edge kind so that
//!   callers/callees stay a call graph.
//!
//! # Call resolution (by name, best effort)
//!
//! The chunker gives each chunk the *names* it calls (`foo`, `Foo::new`,
//! `self.bar`, `pkg.Func`), not resolved targets, so calls are resolved here by
//! name within the repository. The last path segment is the name, the one before
//! it the qualifier. Candidates are the definitions with that name (the caller
//! itself excluded: recursion is not an edge). The first non-empty tier wins:
//!
//! 1. qualifier match: the candidate's parent, file stem or directory name equals
//!    the qualifier (`Foo::new` → `new` in `Foo`; `util::parse` → `parse` in
//!    `util.rs`; Go `http.Get` → `Get` in `.../http/`). `self`/`this`/`Self`
//!    stand for the caller's own parent;
//! 2. the caller's file;
//! 3. the caller's parent type in other files (Rust impls spread over files);
//! 4. files the caller's file imports (resolved `Imports` edges);
//! 5. the caller's directory, for Go and Java only (a directory is a package
//!    there, so same-package calls need no import);
//! 6. anywhere in the repository, **only if there are at most
//!    [`MAX_GLOBAL_CANDIDATES`] candidates**; otherwise the call is skipped.
//!
//! Within a tier, candidates sharing the caller's parent are kept if there are
//! any, and at most [`MAX_LINKS_PER_CALL`] are linked (closest path first). So a
//! bare `new()`/`get()`/`len()` with hundreds of definitions is linked only when
//! something local explains it, and is otherwise dropped rather than flooding
//! expansion. Limits: no type inference (`x.get()` on a local variable resolves
//! by name only), no trait dispatch, macros and dynamic calls are only as good as
//! the names the chunker extracted, and calls into dependencies are not edges.
//!
//! # Import resolution
//!
//! Rust `crate::`/`self::`/`super::` paths against `src/` module files
//! (`a/b.rs`, `a/b/mod.rs`, longest prefix wins, the next segment is the item);
//! Python dotted and relative (`.x`) modules (`x/y.py`, `x/y/__init__.py`, also
//! under any source root by path suffix); JS/TS relative specifiers with the usual
//! extensions and `index.*`; Go import paths by the longest directory suffix
//! (linking up to [`MAX_PACKAGE_FILES`] files of the package); Java `a.b.C` and
//! `a.b.*`; C/C++ `#include "x.h"` relative to the includer, then by suffix.
//! Anything unresolved becomes an external module node. Not handled: tsconfig
//! path aliases, Cargo workspace crates imported by crate name, Python
//! `sys.path` tricks, Go `replace` directives.
//!
//! # File format
//!
//! `graph.bin` is a small hand-rolled little-endian format rather than JSON: it
//! is versioned and checksummed (so a truncated or bit-flipped download is a
//! typed [`GraphError`], not a panic or a silently wrong graph), interns every
//! string once (paths repeat for every symbol), and loads with one pass and no
//! per-field allocation beyond the strings. Layout: magic `TSGRAPH\0`, format
//! version (u32), payload length (u64), xxh3-64 of the payload (u64), payload =
//! string table, nodes, edges. Lookup tables are rebuilt on load, not stored.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::model::{Chunk, Language, SymbolKind};

/// Version of the `graph.bin` layout; bump on any incompatible change.
pub const GRAPH_FORMAT_VERSION: u32 = 1;
/// File name of the graph inside a bundle.
pub const GRAPH_FILE_NAME: &str = "graph.bin";
/// Most targets one call name is linked to inside a resolution tier.
pub const MAX_LINKS_PER_CALL: usize = 3;
/// A call resolved only by a repository-wide name match is linked when there
/// are at most this many candidates, and skipped otherwise.
pub const MAX_GLOBAL_CANDIDATES: usize = 3;
/// Most files one Go package or Java wildcard import links to.
pub const MAX_PACKAGE_FILES: usize = 16;

const MAGIC: &[u8; 8] = b"TSGRAPH\0";
const HEADER_LEN: usize = 8 + 4 + 8 + 8;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("graph file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a trusty-search graph file (bad magic)")]
    BadMagic,
    #[error("graph format version {found} is not supported (this build reads {expected})")]
    UnsupportedVersion { found: u32, expected: u32 },
    #[error("graph file truncated: expected {expected} bytes, found {found}")]
    Truncated { expected: u64, found: u64 },
    #[error("graph checksum mismatch (stored {stored:016x}, computed {computed:016x})")]
    Checksum { stored: u64, computed: u64 },
    #[error("corrupt graph file: {0}")]
    Corrupt(String),
}

/// A node of the code graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    File {
        path: String,
    },
    Symbol(SymbolNode),
    /// An import target outside the repository.
    External {
        name: String,
    },
}

/// A symbol defined in a repository file; see the module doc for how windows merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolNode {
    /// The first chunk of the symbol.
    pub chunk_id: u32,
    /// Further windows of the same symbol, in chunk order.
    pub more_chunks: Vec<u32>,
    /// Empty for anonymous top-level code.
    pub name: String,
    pub kind: SymbolKind,
    pub path: String,
    pub parent: Option<String>,
}

impl SymbolNode {
    /// Every chunk of the symbol, first window first.
    pub fn chunk_ids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.chunk_id).chain(self.more_chunks.iter().copied())
    }

    /// True for symbols other code can call or name.
    pub fn is_target(&self) -> bool {
        !self.name.is_empty() && (self.kind.is_definition() || self.kind == SymbolKind::Window)
    }

    /// Targets reached by a call edge rather than a reference edge.
    pub fn is_callable(&self) -> bool {
        matches!(
            self.kind,
            SymbolKind::Function | SymbolKind::Method | SymbolKind::Class | SymbolKind::Window
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EdgeKind {
    /// Parent symbol → member.
    Contains = 0,
    /// File → symbol defined in it.
    Defines = 1,
    /// File → file, external module or imported symbol.
    Imports = 2,
    /// Symbol → callable symbol.
    Calls = 3,
    /// Symbol → non-callable definition it names.
    References = 4,
}

impl EdgeKind {
    fn from_u8(v: u8) -> Option<EdgeKind> {
        Some(match v {
            0 => EdgeKind::Contains,
            1 => EdgeKind::Defines,
            2 => EdgeKind::Imports,
            3 => EdgeKind::Calls,
            4 => EdgeKind::References,
            _ => return None,
        })
    }
}

/// Name lookup entry: one per distinct lower-cased symbol name, with its
/// identifier parts precomputed for graph search.
#[derive(Debug, Clone)]
pub(crate) struct NameEntry {
    pub(crate) lower: String,
    /// `lower` without underscores, so "parse query" finds `parse_query`.
    pub(crate) compact: String,
    pub(crate) parts: Vec<String>,
    pub(crate) nodes: Vec<NodeIndex>,
}

/// The code graph plus the lookup tables navigation needs (rebuilt on load).
#[derive(Debug, Clone)]
pub struct CodeGraph {
    pub(crate) graph: DiGraph<NodeKind, EdgeKind>,
    /// Exact symbol name → symbol nodes.
    pub(crate) by_name: HashMap<String, Vec<NodeIndex>>,
    /// Lower-cased symbol name → index into `names`.
    pub(crate) by_lower: HashMap<String, usize>,
    pub(crate) names: Vec<NameEntry>,
    /// Chunk id (every window) → its symbol node.
    pub(crate) by_chunk: HashMap<u32, NodeIndex>,
    pub(crate) by_path: HashMap<String, NodeIndex>,
    /// Incoming `Calls` edges per node (by node index), and their maximum over
    /// named symbols: ranking reads them for every candidate, so they are
    /// counted once here.
    pub(crate) calls_in: Vec<u32>,
    pub(crate) max_calls_in: u32,
}

impl PartialEq for CodeGraph {
    /// Same nodes in the same order and the same edges in the same order.
    fn eq(&self, other: &Self) -> bool {
        self.graph.node_count() == other.graph.node_count()
            && self.graph.edge_count() == other.graph.edge_count()
            && self.graph.node_weights().eq(other.graph.node_weights())
            && self
                .graph
                .edge_references()
                .map(|e| (e.source(), e.target(), *e.weight()))
                .eq(other
                    .graph
                    .edge_references()
                    .map(|e| (e.source(), e.target(), *e.weight())))
    }
}

impl CodeGraph {
    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// Approximate heap bytes: nodes with their strings, edges, and the
    /// lookup tables built on load (names, chunk and path maps, call counts).
    pub fn heap_bytes(&self) -> u64 {
        const ENTRY: usize = 48; // hash-map slot plus key/value headers
        let nodes: usize = self
            .graph
            .node_weights()
            .map(|n| {
                std::mem::size_of::<NodeKind>()
                    + match n {
                        NodeKind::File { path, .. } => path.len(),
                        NodeKind::Symbol(s) => {
                            s.name.len()
                                + s.path.len()
                                + s.parent.as_ref().map_or(0, String::len)
                                + s.more_chunks.len() * 4
                        }
                        NodeKind::External { name } => name.len(),
                    }
            })
            .sum();
        let edges = self.graph.edge_count() * 24;
        let names: usize = self
            .names
            .iter()
            .map(|n| n.lower.len() * 2 + n.parts.iter().map(|p| p.len() + 24).sum::<usize>() + n.nodes.len() * 4 + 96)
            .sum();
        let by_name: usize = self.by_name.iter().map(|(k, v)| k.len() + v.len() * 4 + ENTRY).sum();
        let by_lower: usize = self.by_lower.keys().map(|k| k.len() + ENTRY).sum();
        let by_path: usize = self.by_path.keys().map(|k| k.len() + ENTRY).sum();
        let by_chunk = self.by_chunk.len() * ENTRY;
        (nodes + edges + names + by_name + by_lower + by_path + by_chunk + self.calls_in.len() * 4) as u64
    }

    /// The underlying petgraph graph, for callers that want their own traversal.
    pub fn graph(&self) -> &DiGraph<NodeKind, EdgeKind> {
        &self.graph
    }

    pub fn node(&self, n: NodeIndex) -> &NodeKind {
        &self.graph[n]
    }

    pub(crate) fn symbol(&self, n: NodeIndex) -> Option<&SymbolNode> {
        match &self.graph[n] {
            NodeKind::Symbol(s) => Some(s),
            _ => None,
        }
    }

    /// The symbol node a chunk belongs to.
    pub fn node_for_chunk(&self, chunk_id: u32) -> Option<NodeIndex> {
        self.by_chunk.get(&chunk_id).copied()
    }

    pub fn file_node(&self, path: &str) -> Option<NodeIndex> {
        self.by_path.get(path).copied()
    }

    /// Edges of `kind` leaving (`Outgoing`) or entering (`Incoming`) `n`.
    pub(crate) fn neighbors(&self, n: NodeIndex, dir: Direction, kind: EdgeKind) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> = self
            .graph
            .edges_directed(n, dir)
            .filter(|e| *e.weight() == kind)
            .map(|e| match dir {
                Direction::Outgoing => e.target(),
                Direction::Incoming => e.source(),
            })
            .collect();
        // petgraph lists edges newest first; sort for deterministic results.
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Builds the graph from every chunk of an index version.
    pub fn build(chunks: &[Chunk]) -> CodeGraph {
        Builder::new(chunks).run()
    }

    /// Rebuilds the lookup tables from the graph (after build or load).
    fn from_graph(graph: DiGraph<NodeKind, EdgeKind>) -> CodeGraph {
        let mut by_name: HashMap<String, Vec<NodeIndex>> = HashMap::new();
        let mut by_lower: HashMap<String, usize> = HashMap::new();
        let mut names: Vec<NameEntry> = Vec::new();
        let mut by_chunk = HashMap::new();
        let mut by_path = HashMap::new();
        for n in graph.node_indices() {
            match &graph[n] {
                NodeKind::File { path } => {
                    by_path.insert(path.clone(), n);
                }
                NodeKind::Symbol(s) => {
                    for id in s.chunk_ids() {
                        by_chunk.insert(id, n);
                    }
                    if s.name.is_empty() {
                        continue;
                    }
                    by_name.entry(s.name.clone()).or_default().push(n);
                    let lower = s.name.to_lowercase();
                    let slot = *by_lower.entry(lower.clone()).or_insert_with(|| {
                        names.push(NameEntry {
                            parts: split_identifier(&s.name),
                            compact: lower.replace('_', ""),
                            lower,
                            nodes: Vec::new(),
                        });
                        names.len() - 1
                    });
                    names[slot].nodes.push(n);
                }
                NodeKind::External { .. } => {}
            }
        }
        // Edges are unique per (source, target, kind), so counting them counts callers.
        let mut calls_in = vec![0u32; graph.node_count()];
        for e in graph.edge_references() {
            if *e.weight() == EdgeKind::Calls {
                calls_in[e.target().index()] += 1;
            }
        }
        let max_calls_in = names
            .iter()
            .flat_map(|e| e.nodes.iter())
            .map(|n| calls_in[n.index()])
            .max()
            .unwrap_or(0);
        CodeGraph {
            graph,
            by_name,
            by_lower,
            names,
            by_chunk,
            by_path,
            calls_in,
            max_calls_in,
        }
    }

    /// Writes `graph.bin` atomically (temp file + rename in the same directory).
    pub fn write(&self, path: &Path) -> Result<(), GraphError> {
        let bytes = self.encode();
        let io = |source| GraphError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("bin.tmp");
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a graph written by [`CodeGraph::write`], verifying version and checksum.
    pub fn read(path: &Path) -> Result<CodeGraph, GraphError> {
        let bytes = std::fs::read(path).map_err(|source| GraphError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        CodeGraph::decode(&bytes)
    }

    /// Serialises the graph into the `graph.bin` layout.
    pub fn encode(&self) -> Vec<u8> {
        // String table: every distinct name, path and parent once.
        let mut strings: Vec<&str> = Vec::new();
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let graph = &self.graph;
        for w in graph.node_weights() {
            match w {
                NodeKind::File { path } => add_str(&mut ids, &mut strings, path),
                NodeKind::External { name } => add_str(&mut ids, &mut strings, name),
                NodeKind::Symbol(s) => {
                    add_str(&mut ids, &mut strings, &s.name);
                    add_str(&mut ids, &mut strings, &s.path);
                    if let Some(p) = &s.parent {
                        add_str(&mut ids, &mut strings, p);
                    }
                }
            }
        }

        let mut out = Vec::with_capacity(HEADER_LEN + strings.iter().map(|s| s.len() + 4).sum::<usize>() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&GRAPH_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // payload length, patched below
        out.extend_from_slice(&0u64.to_le_bytes()); // checksum, patched below
        let mut w = Writer(out);
        w.u32(strings.len() as u32);
        for s in &strings {
            w.u32(s.len() as u32);
            w.0.extend_from_slice(s.as_bytes());
        }
        w.u32(graph.node_count() as u32);
        for node in graph.node_weights() {
            match node {
                NodeKind::File { path } => {
                    w.u8(0);
                    w.u32(ids[path.as_str()]);
                }
                NodeKind::External { name } => {
                    w.u8(2);
                    w.u32(ids[name.as_str()]);
                }
                NodeKind::Symbol(s) => {
                    w.u8(1);
                    w.u32(s.chunk_id);
                    w.u8(kind_to_u8(s.kind));
                    w.u32(ids[s.name.as_str()]);
                    w.u32(ids[s.path.as_str()]);
                    w.u32(s.parent.as_ref().map_or(0, |p| ids[p.as_str()] + 1));
                    w.u32(s.more_chunks.len() as u32);
                    for id in &s.more_chunks {
                        w.u32(*id);
                    }
                }
            }
        }
        w.u32(graph.edge_count() as u32);
        for e in graph.edge_references() {
            w.u32(e.source().index() as u32);
            w.u32(e.target().index() as u32);
            w.u8(*e.weight() as u8);
        }
        let mut out = w.0;
        let payload_len = (out.len() - HEADER_LEN) as u64;
        let checksum = xxhash_rust::xxh3::xxh3_64(&out[HEADER_LEN..]);
        out[12..20].copy_from_slice(&payload_len.to_le_bytes());
        out[20..28].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Parses the `graph.bin` layout.
    pub fn decode(bytes: &[u8]) -> Result<CodeGraph, GraphError> {
        if bytes.len() < 8 {
            return Err(GraphError::Truncated {
                expected: HEADER_LEN as u64,
                found: bytes.len() as u64,
            });
        }
        if &bytes[..8] != MAGIC {
            return Err(GraphError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(GraphError::Truncated {
                expected: HEADER_LEN as u64,
                found: bytes.len() as u64,
            });
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != GRAPH_FORMAT_VERSION {
            return Err(GraphError::UnsupportedVersion {
                found: version,
                expected: GRAPH_FORMAT_VERSION,
            });
        }
        let payload_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let stored = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
        let expected = HEADER_LEN as u64 + payload_len;
        if (bytes.len() as u64) < expected {
            return Err(GraphError::Truncated {
                expected,
                found: bytes.len() as u64,
            });
        }
        if bytes.len() as u64 > expected {
            return Err(GraphError::Corrupt(format!(
                "{} trailing bytes after the payload",
                bytes.len() as u64 - expected
            )));
        }
        let payload = &bytes[HEADER_LEN..];
        let computed = xxhash_rust::xxh3::xxh3_64(payload);
        if computed != stored {
            return Err(GraphError::Checksum { stored, computed });
        }

        let mut r = Reader { buf: payload, pos: 0 };
        let n_strings = r.u32()? as usize;
        let mut strings: Vec<&str> = Vec::with_capacity(n_strings.min(payload.len() / 4));
        for _ in 0..n_strings {
            let len = r.u32()? as usize;
            let raw = r.take(len)?;
            let s = std::str::from_utf8(raw).map_err(|e| GraphError::Corrupt(format!("string is not UTF-8: {e}")))?;
            strings.push(s);
        }
        let string = |id: u32| -> Result<String, GraphError> {
            strings
                .get(id as usize)
                .map(|s| s.to_string())
                .ok_or_else(|| GraphError::Corrupt(format!("string id {id} out of range")))
        };
        let n_nodes = r.u32()? as usize;
        let mut graph: DiGraph<NodeKind, EdgeKind> = DiGraph::with_capacity(n_nodes.min(payload.len() / 5), 0);
        for _ in 0..n_nodes {
            let node = match r.u8()? {
                0 => NodeKind::File {
                    path: string(r.u32()?)?,
                },
                2 => NodeKind::External {
                    name: string(r.u32()?)?,
                },
                1 => {
                    let chunk_id = r.u32()?;
                    let kind_byte = r.u8()?;
                    let kind = kind_from_u8(kind_byte)
                        .ok_or_else(|| GraphError::Corrupt(format!("unknown symbol kind {kind_byte}")))?;
                    let name = string(r.u32()?)?;
                    let path = string(r.u32()?)?;
                    let parent = match r.u32()? {
                        0 => None,
                        p => Some(string(p - 1)?),
                    };
                    let n_more = r.u32()? as usize;
                    if n_more > r.remaining() / 4 {
                        return Err(GraphError::Corrupt(format!("{n_more} windows exceed the payload")));
                    }
                    let mut more_chunks = Vec::with_capacity(n_more);
                    for _ in 0..n_more {
                        more_chunks.push(r.u32()?);
                    }
                    NodeKind::Symbol(SymbolNode {
                        chunk_id,
                        more_chunks,
                        name,
                        kind,
                        path,
                        parent,
                    })
                }
                tag => return Err(GraphError::Corrupt(format!("unknown node tag {tag}"))),
            };
            graph.add_node(node);
        }
        let n_edges = r.u32()? as usize;
        if n_edges > r.remaining() / 9 {
            return Err(GraphError::Corrupt(format!("{n_edges} edges exceed the payload")));
        }
        graph.reserve_edges(n_edges);
        for _ in 0..n_edges {
            let (a, b, k) = (r.u32()? as usize, r.u32()? as usize, r.u8()?);
            if a >= n_nodes || b >= n_nodes {
                return Err(GraphError::Corrupt(format!("edge {a}→{b} names a missing node")));
            }
            let kind = EdgeKind::from_u8(k).ok_or_else(|| GraphError::Corrupt(format!("unknown edge kind {k}")))?;
            graph.add_edge(NodeIndex::new(a), NodeIndex::new(b), kind);
        }
        if r.remaining() != 0 {
            return Err(GraphError::Corrupt(format!("{} unread payload bytes", r.remaining())));
        }
        Ok(CodeGraph::from_graph(graph))
    }
}

fn add_str<'a>(ids: &mut HashMap<&'a str, u32>, strings: &mut Vec<&'a str>, s: &'a str) {
    if !ids.contains_key(s) {
        ids.insert(s, strings.len() as u32);
        strings.push(s);
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], GraphError> {
        if n > self.remaining() {
            return Err(GraphError::Corrupt(format!(
                "payload ends early at byte {} (wanted {n} more)",
                self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, GraphError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, GraphError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
}

const KINDS: [SymbolKind; 13] = [
    SymbolKind::Function,
    SymbolKind::Method,
    SymbolKind::Class,
    SymbolKind::Struct,
    SymbolKind::Enum,
    SymbolKind::Trait,
    SymbolKind::Interface,
    SymbolKind::Impl,
    SymbolKind::Module,
    SymbolKind::Type,
    SymbolKind::Constant,
    SymbolKind::Section,
    SymbolKind::Window,
];

fn kind_to_u8(k: SymbolKind) -> u8 {
    KINDS.iter().position(|x| *x == k).expect("every kind is listed") as u8
}

fn kind_from_u8(v: u8) -> Option<SymbolKind> {
    KINDS.get(v as usize).copied()
}

// ---------------------------------------------------------------------------
// Names

/// Splits a call expression into (qualifier, name): `Foo::new` → (`Foo`, `new`),
/// `self.client.get()` → (`client`, `get`), `parse` → (None, `parse`).
/// Generic arguments and call parentheses are dropped; `None` when no
/// identifier is left.
pub(crate) fn split_call(call: &str) -> Option<(Option<&str>, &str)> {
    let call = call
        .trim()
        .trim_start_matches("new ")
        .trim_start_matches(['&', '*', '!']);
    let mut segs = call
        .split(|c: char| c == '.' || c == ':' || c == '>' || c == '-')
        .map(|s| s.split(['<', '(', '[', ' ', '!']).next().unwrap_or("").trim())
        .filter(|s| !s.is_empty());
    let mut last = None;
    let mut prev = None;
    for s in segs.by_ref() {
        prev = last;
        last = Some(s);
    }
    let name = last?;
    if !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$') {
        return None;
    }
    Some((prev, name))
}

/// Identifier parts, lower-cased: `parseHTTPRequest_v2` → `parse`, `http`, `request`, `v2`.
pub(crate) fn split_identifier(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut parts = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_uppercase() && !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_lower) {
                parts.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

fn file_stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.split('.').next().unwrap_or(name)
}

/// Last directory component: `a/b/c.go` → `b`.
fn dir_name(path: &str) -> &str {
    dir_of(path).rsplit('/').next().unwrap_or("")
}

fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

fn common_prefix_len(a: &str, b: &str) -> usize {
    a.split('/').zip(b.split('/')).take_while(|(x, y)| x == y).count()
}

/// Joins `rel` onto directory `dir`, resolving `.` and `..`; `None` if it escapes the root.
fn join_path(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

// ---------------------------------------------------------------------------
// Build

enum ImportTarget {
    /// Repository files, with the imported item name when the import names one.
    Files(Vec<String>, Option<String>),
    External(String),
}

struct Builder<'a> {
    chunks: &'a [Chunk],
    graph: DiGraph<NodeKind, EdgeKind>,
    edges: HashSet<(u32, u32, EdgeKind)>,
    files: HashMap<String, NodeIndex>,
    /// Language of each file (from its first chunk).
    file_lang: HashMap<String, Language>,
    /// Path suffix (`c.rs`, `b/c.rs`, `a/b/c.rs`) → files.
    suffixes: HashMap<String, Vec<String>>,
    /// Directory → files directly in it.
    dirs: HashMap<String, Vec<String>>,
    /// Directory suffix → directories.
    dir_suffixes: HashMap<String, Vec<String>>,
    externals: HashMap<String, NodeIndex>,
    /// Symbol node of each chunk index (position in `chunks`).
    chunk_node: Vec<Option<NodeIndex>>,
    /// Per file: symbol nodes in it.
    file_symbols: HashMap<String, Vec<NodeIndex>>,
    /// Target symbols by exact name.
    targets: HashMap<String, Vec<NodeIndex>>,
    /// Indexes of target names with more than [`SCAN_MAX`] candidates.
    popular: HashMap<String, NameIndex>,
    /// Per file: files it imports.
    imported_files: HashMap<String, HashSet<String>>,
}

impl<'a> Builder<'a> {
    fn new(chunks: &'a [Chunk]) -> Self {
        Builder {
            chunks,
            graph: DiGraph::with_capacity(chunks.len() + chunks.len() / 8, chunks.len() * 4),
            edges: HashSet::new(),
            files: HashMap::new(),
            file_lang: HashMap::new(),
            suffixes: HashMap::new(),
            dirs: HashMap::new(),
            dir_suffixes: HashMap::new(),
            externals: HashMap::new(),
            chunk_node: vec![None; chunks.len()],
            file_symbols: HashMap::new(),
            targets: HashMap::new(),
            popular: HashMap::new(),
            imported_files: HashMap::new(),
        }
    }

    fn edge(&mut self, a: NodeIndex, b: NodeIndex, kind: EdgeKind) {
        if a != b && self.edges.insert((a.index() as u32, b.index() as u32, kind)) {
            self.graph.add_edge(a, b, kind);
        }
    }

    fn sym(&self, n: NodeIndex) -> &SymbolNode {
        match &self.graph[n] {
            NodeKind::Symbol(s) => s,
            _ => unreachable!("symbol index points at a symbol node"),
        }
    }

    fn run(mut self) -> CodeGraph {
        self.add_files();
        self.add_symbols();
        self.add_containment();
        self.add_imports();
        self.add_calls();
        CodeGraph::from_graph(self.graph)
    }

    fn add_files(&mut self) {
        for c in self.chunks {
            if self.files.contains_key(&c.path) {
                continue;
            }
            let n = self.graph.add_node(NodeKind::File { path: c.path.clone() });
            self.files.insert(c.path.clone(), n);
            self.file_lang.insert(c.path.clone(), c.language);
            let segs: Vec<&str> = c.path.split('/').collect();
            for i in 0..segs.len() {
                self.suffixes
                    .entry(segs[i..].join("/"))
                    .or_default()
                    .push(c.path.clone());
            }
            let dir = dir_of(&c.path).to_string();
            let entry = self.dirs.entry(dir.clone()).or_default();
            if entry.is_empty() {
                let dsegs: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
                for i in 0..dsegs.len() {
                    self.dir_suffixes
                        .entry(dsegs[i..].join("/"))
                        .or_default()
                        .push(dir.clone());
                }
            }
            self.dirs.get_mut(&dir).expect("just inserted").push(c.path.clone());
        }
    }

    fn add_symbols(&mut self) {
        let chunks = self.chunks;
        // (path, parent, name) → nodes, for merging windows of one symbol.
        let mut groups: HashMap<(&str, Option<&str>, &str), Vec<NodeIndex>> = HashMap::new();
        for (i, c) in chunks.iter().enumerate() {
            if !c.language.is_code() {
                continue;
            }
            let name = c.symbol.as_deref().unwrap_or("");
            if name.is_empty() && c.calls.is_empty() {
                continue;
            }
            if !name.is_empty() {
                let key = (c.path.as_str(), c.parent.as_deref(), name);
                let merged = groups.get(&key).and_then(|nodes| {
                    nodes.iter().copied().find(|&n| {
                        let k = self.sym(n).kind;
                        k == c.kind || k == SymbolKind::Window || c.kind == SymbolKind::Window
                    })
                });
                if let Some(n) = merged {
                    if let NodeKind::Symbol(s) = &mut self.graph[n] {
                        s.more_chunks.push(c.id);
                        if s.kind == SymbolKind::Window {
                            s.kind = c.kind;
                        }
                    }
                    self.chunk_node[i] = Some(n);
                    continue;
                }
            }
            let n = self.graph.add_node(NodeKind::Symbol(SymbolNode {
                chunk_id: c.id,
                more_chunks: Vec::new(),
                name: name.to_string(),
                kind: c.kind,
                path: c.path.clone(),
                parent: c.parent.clone(),
            }));
            if !name.is_empty() {
                groups
                    .entry((c.path.as_str(), c.parent.as_deref(), name))
                    .or_default()
                    .push(n);
            }
            self.chunk_node[i] = Some(n);
            self.file_symbols.entry(c.path.clone()).or_default().push(n);
            let file = self.files[&c.path];
            self.edge(file, n, EdgeKind::Defines);
        }
        for n in self.graph.node_indices() {
            if let NodeKind::Symbol(s) = &self.graph[n] {
                if s.is_target() {
                    self.targets.entry(s.name.clone()).or_default().push(n);
                }
            }
        }
        for (name, nodes) in &self.targets {
            if nodes.len() > SCAN_MAX {
                let mut ix = NameIndex::default();
                for &n in nodes {
                    ix.add(n, self.sym(n));
                }
                self.popular.insert(name.clone(), ix);
            }
        }
    }

    fn add_containment(&mut self) {
        let mut links = Vec::new();
        for nodes in self.file_symbols.values() {
            let mut by_name: HashMap<&str, Vec<NodeIndex>> = HashMap::new();
            for &n in nodes {
                by_name.entry(self.sym(n).name.as_str()).or_default().push(n);
            }
            for &n in nodes {
                let Some(parent) = self.sym(n).parent.as_deref() else {
                    continue;
                };
                let Some(cands) = by_name.get(parent) else {
                    continue;
                };
                // Prefer the type definition over an impl block of the same name.
                let best = cands
                    .iter()
                    .copied()
                    .filter(|&p| p != n)
                    .min_by_key(|&p| (self.sym(p).kind == SymbolKind::Impl, p.index()));
                if let Some(p) = best {
                    links.push((p, n));
                }
            }
        }
        for (p, n) in links {
            self.edge(p, n, EdgeKind::Contains);
        }
    }

    fn add_imports(&mut self) {
        // Union of the imports of every chunk of a file.
        let mut per_file: Vec<(String, Language, Vec<String>)> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for c in self.chunks {
            if c.imports.is_empty() {
                continue;
            }
            let slot = *seen.entry(c.path.as_str()).or_insert_with(|| {
                per_file.push((c.path.clone(), c.language, Vec::new()));
                per_file.len() - 1
            });
            for imp in &c.imports {
                if !per_file[slot].2.contains(imp) {
                    per_file[slot].2.push(imp.clone());
                }
            }
        }
        for (path, lang, imports) in per_file {
            let from = self.files[&path];
            for raw in &imports {
                for imp in expand_braces(raw) {
                    match self.resolve_import(&path, lang, &imp) {
                        Some(ImportTarget::Files(files, item)) => {
                            for f in &files {
                                if *f == path {
                                    continue;
                                }
                                let to = self.files[f];
                                self.edge(from, to, EdgeKind::Imports);
                                self.imported_files.entry(path.clone()).or_default().insert(f.clone());
                            }
                            if let Some(item) = item {
                                let hits: Vec<NodeIndex> = files
                                    .iter()
                                    .filter_map(|f| self.file_symbols.get(f))
                                    .flatten()
                                    .copied()
                                    .filter(|&n| self.sym(n).name == item && self.sym(n).is_target())
                                    .take(MAX_LINKS_PER_CALL)
                                    .collect();
                                for n in hits {
                                    self.edge(from, n, EdgeKind::Imports);
                                }
                            }
                        }
                        Some(ImportTarget::External(name)) => {
                            let to = match self.externals.get(&name) {
                                Some(&n) => n,
                                None => {
                                    let n = self.graph.add_node(NodeKind::External { name: name.clone() });
                                    self.externals.insert(name, n);
                                    n
                                }
                            };
                            self.edge(from, to, EdgeKind::Imports);
                        }
                        None => {}
                    }
                }
            }
        }
    }

    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Files whose path ends with `suffix`, closest to `importer` first.
    fn by_suffix(&self, importer: &str, suffix: &str) -> Vec<String> {
        let mut v = self.suffixes.get(suffix).cloned().unwrap_or_default();
        v.sort_by_key(|p| (std::cmp::Reverse(common_prefix_len(p, importer)), p.len(), p.clone()));
        v
    }

    fn package_files(&self, dir: &str, ext: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .dirs
            .get(dir)
            .map(|fs| {
                fs.iter()
                    .filter(|f| f.ends_with(ext) && !f.ends_with("_test.go"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.truncate(MAX_PACKAGE_FILES);
        v
    }

    fn resolve_import(&self, importer: &str, lang: Language, raw: &str) -> Option<ImportTarget> {
        let imp = raw.trim().trim_end_matches(';').trim();
        if imp.is_empty() {
            return None;
        }
        match lang {
            Language::Rust => self.resolve_rust(importer, imp),
            Language::Python => self.resolve_python(importer, imp),
            Language::JavaScript | Language::TypeScript | Language::Tsx => self.resolve_js(importer, imp),
            Language::Go => self.resolve_go(imp),
            Language::Java => self.resolve_java(importer, imp),
            Language::C | Language::Cpp => self.resolve_c(importer, imp),
            _ => {
                let spec = imp.trim_matches(['"', '\'', '<', '>']);
                match self.by_suffix(importer, spec).into_iter().next() {
                    Some(f) => Some(ImportTarget::Files(vec![f], None)),
                    None => Some(ImportTarget::External(spec.to_string())),
                }
            }
        }
    }

    fn resolve_rust(&self, importer: &str, imp: &str) -> Option<ImportTarget> {
        let imp = imp.trim_start_matches("pub ").trim_start_matches("use ").trim();
        let imp = imp.split(" as ").next().unwrap_or(imp).trim().trim_end_matches("::*");
        let segs: Vec<&str> = imp.split("::").map(str::trim).filter(|s| !s.is_empty()).collect();
        let first = *segs.first()?;
        // The module directory of the importing file: where its child modules live.
        let crate_root = importer
            .find("src/")
            .map_or(String::new(), |i| importer[..i + 4].to_string());
        let file_name = importer.rsplit('/').next().unwrap_or(importer);
        let self_dir = if matches!(file_name, "mod.rs" | "lib.rs" | "main.rs") {
            dir_of(importer).to_string()
        } else {
            importer.trim_end_matches(".rs").to_string()
        };
        let (mut base, mut rest) = match first {
            "crate" => (crate_root.trim_end_matches('/').to_string(), &segs[1..]),
            "self" => (self_dir, &segs[1..]),
            "super" => (dir_of(&self_dir).to_string(), &segs[1..]),
            _ => return Some(ImportTarget::External(first.to_string())),
        };
        while rest.first() == Some(&"super") {
            base = dir_of(&base).to_string();
            rest = &rest[1..];
        }
        let prefix = if base.is_empty() {
            String::new()
        } else {
            format!("{base}/")
        };
        for i in (1..=rest.len()).rev() {
            let p = format!("{prefix}{}", rest[..i].join("/"));
            for cand in [format!("{p}.rs"), format!("{p}/mod.rs")] {
                if self.exists(&cand) {
                    return Some(ImportTarget::Files(vec![cand], rest.get(i).map(|s| s.to_string())));
                }
            }
        }
        // `crate::Foo`: an item of the crate root.
        for root in ["lib.rs", "main.rs", "mod.rs"] {
            let cand = format!("{prefix}{root}");
            if self.exists(&cand) && cand != importer {
                return Some(ImportTarget::Files(vec![cand], rest.first().map(|s| s.to_string())));
            }
        }
        Some(ImportTarget::External(imp.to_string()))
    }

    fn resolve_python(&self, importer: &str, imp: &str) -> Option<ImportTarget> {
        let imp = imp.split(" as ").next().unwrap_or(imp).trim();
        let imp = imp.strip_prefix("import ").unwrap_or(imp).trim();
        let dots = imp.chars().take_while(|&c| c == '.').count();
        let body = &imp[dots..];
        let segs: Vec<&str> = body.split('.').filter(|s| !s.is_empty() && *s != "*").collect();
        if dots > 0 {
            let mut dir = dir_of(importer).to_string();
            for _ in 1..dots {
                dir = dir_of(&dir).to_string();
            }
            let prefix = if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            };
            for i in (1..=segs.len()).rev() {
                let p = format!("{prefix}{}", segs[..i].join("/"));
                for cand in [format!("{p}.py"), format!("{p}/__init__.py")] {
                    if self.exists(&cand) {
                        return Some(ImportTarget::Files(vec![cand], segs.get(i).map(|s| s.to_string())));
                    }
                }
            }
            let init = format!("{prefix}__init__.py");
            if self.exists(&init) {
                return Some(ImportTarget::Files(vec![init], segs.first().map(|s| s.to_string())));
            }
            return None;
        }
        let first = *segs.first()?;
        for i in (1..=segs.len()).rev() {
            let p = segs[..i].join("/");
            for cand in [format!("{p}.py"), format!("{p}/__init__.py")] {
                if let Some(f) = self.by_suffix(importer, &cand).into_iter().next() {
                    return Some(ImportTarget::Files(vec![f], segs.get(i).map(|s| s.to_string())));
                }
            }
        }
        Some(ImportTarget::External(first.to_string()))
    }

    fn resolve_js(&self, importer: &str, imp: &str) -> Option<ImportTarget> {
        let spec = imp.trim_matches(['"', '\'', '`']);
        if !spec.starts_with('.') {
            // Bare specifier: an npm package (`@scope/pkg/sub` → `@scope/pkg`).
            let mut parts = spec.split('/');
            let first = parts.next()?;
            let name = if first.starts_with('@') {
                format!("{first}/{}", parts.next().unwrap_or(""))
            } else {
                first.to_string()
            };
            return Some(ImportTarget::External(name));
        }
        let joined = join_path(dir_of(importer), spec)?;
        const EXTS: [&str; 8] = ["ts", "tsx", "js", "jsx", "mjs", "cjs", "mts", "d.ts"];
        let mut cands = vec![joined.clone()];
        cands.extend(EXTS.iter().map(|e| format!("{joined}.{e}")));
        cands.extend(EXTS.iter().map(|e| format!("{joined}/index.{e}")));
        cands
            .into_iter()
            .find(|c| self.exists(c))
            .map(|f| ImportTarget::Files(vec![f], None))
            .or_else(|| Some(ImportTarget::External(spec.to_string())))
    }

    fn resolve_go(&self, imp: &str) -> Option<ImportTarget> {
        let spec = imp.split_whitespace().last()?.trim_matches(['"', '`']);
        let segs: Vec<&str> = spec.split('/').filter(|s| !s.is_empty()).collect();
        // Standard library paths (`fmt`, `net/http`) have no dot in the first
        // segment; only module paths can live in this repository.
        if segs.first().is_some_and(|s| s.contains('.')) {
            for start in 1..segs.len() {
                let suffix = segs[start..].join("/");
                if let Some(dirs) = self.dir_suffixes.get(&suffix) {
                    if dirs.len() == 1 {
                        let files = self.package_files(&dirs[0], ".go");
                        if !files.is_empty() {
                            return Some(ImportTarget::Files(files, None));
                        }
                    }
                }
            }
        }
        Some(ImportTarget::External(spec.to_string()))
    }

    fn resolve_java(&self, importer: &str, imp: &str) -> Option<ImportTarget> {
        let imp = imp.trim_start_matches("import ").trim_start_matches("static ").trim();
        let segs: Vec<&str> = imp.split('.').filter(|s| !s.is_empty()).collect();
        if segs.is_empty() {
            return None;
        }
        if segs.last() == Some(&"*") {
            let pkg = segs[..segs.len() - 1].join("/");
            if let Some(dirs) = self.dir_suffixes.get(&pkg) {
                let files = self.package_files(&dirs[0], ".java");
                if !files.is_empty() {
                    return Some(ImportTarget::Files(files, None));
                }
            }
        } else {
            for i in (1..=segs.len()).rev() {
                let cand = format!("{}.java", segs[..i].join("/"));
                if let Some(f) = self.by_suffix(importer, &cand).into_iter().next() {
                    let item = segs.get(i).or(segs.get(i - 1)).map(|s| s.to_string());
                    return Some(ImportTarget::Files(vec![f], item));
                }
            }
        }
        let pkg_len = segs.len().saturating_sub(1).max(1);
        Some(ImportTarget::External(segs[..pkg_len.min(segs.len())].join(".")))
    }

    fn resolve_c(&self, importer: &str, imp: &str) -> Option<ImportTarget> {
        let spec = imp.trim_start_matches("#include").trim();
        let system = spec.starts_with('<');
        let spec = spec.trim_matches(['"', '<', '>']).trim();
        if spec.is_empty() {
            return None;
        }
        if !system {
            if let Some(rel) = join_path(dir_of(importer), spec).filter(|p| self.exists(p)) {
                return Some(ImportTarget::Files(vec![rel], None));
            }
        }
        match self
            .by_suffix(importer, spec.trim_start_matches("./"))
            .into_iter()
            .next()
        {
            Some(f) => Some(ImportTarget::Files(vec![f], None)),
            None => Some(ImportTarget::External(spec.to_string())),
        }
    }

    fn add_calls(&mut self) {
        // Calls of every window, per node.
        let chunks = self.chunks;
        let mut calls: HashMap<NodeIndex, Vec<&'a str>> = HashMap::new();
        for (i, c) in chunks.iter().enumerate() {
            let Some(n) = self.chunk_node[i] else {
                continue;
            };
            let entry = calls.entry(n).or_default();
            for call in &c.calls {
                if !entry.contains(&call.as_str()) {
                    entry.push(call.as_str());
                }
            }
        }
        let mut callers: Vec<NodeIndex> = calls.keys().copied().collect();
        callers.sort_unstable();
        for caller in callers {
            for call in &calls[&caller] {
                let Some((qual, name)) = split_call(call) else {
                    continue;
                };
                for target in self.resolve_call(caller, qual, name) {
                    let kind = if self.sym(target).is_callable() {
                        EdgeKind::Calls
                    } else {
                        EdgeKind::References
                    };
                    self.edge(caller, target, kind);
                }
            }
        }
    }

    /// The tiers of the module doc, first non-empty wins. Names with few
    /// candidates are scanned; popular ones (`new`, `get`) use their
    /// [`NameIndex`] so that resolution stays linear in the number of calls.
    fn resolve_call(&self, caller: NodeIndex, qual: Option<&str>, name: &str) -> Vec<NodeIndex> {
        let Some(all) = self.targets.get(name) else {
            return Vec::new();
        };
        let me = self.sym(caller);
        let self_qual = matches!(qual, Some("self" | "this" | "Self" | "cls"));
        let qual = if self_qual { me.parent.as_deref() } else { qual };
        let ctx = TierContext {
            me,
            qual,
            package_dirs: matches!(Language::from_path(&me.path), Some(Language::Go | Language::Java)),
            imported: self.imported_files.get(&me.path),
        };
        let popular = self.popular.get(name);
        for tier in Tier::ALL {
            let mut hits: Vec<NodeIndex> = match popular {
                Some(ix) => ix.tier(tier, &ctx),
                None => all.iter().copied().filter(|&n| ctx.admits(tier, self.sym(n))).collect(),
            };
            hits.retain(|&n| n != caller);
            if !hits.is_empty() {
                return self.best_links(me, hits);
            }
        }
        let cands: Vec<NodeIndex> = all.iter().copied().filter(|&n| n != caller).collect();
        if !cands.is_empty() && cands.len() <= MAX_GLOBAL_CANDIDATES {
            return self.best_links(me, cands);
        }
        Vec::new()
    }

    /// Keeps candidates sharing the caller's parent if any, then the closest few.
    fn best_links(&self, me: &SymbolNode, mut hits: Vec<NodeIndex>) -> Vec<NodeIndex> {
        if me.parent.is_some() && hits.iter().any(|&n| self.sym(n).parent == me.parent) {
            hits.retain(|&n| self.sym(n).parent == me.parent);
        }
        hits.sort_by_key(|&n| {
            (
                std::cmp::Reverse(common_prefix_len(&self.sym(n).path, &me.path)),
                n.index(),
            )
        });
        hits.truncate(MAX_LINKS_PER_CALL);
        hits
    }
}

/// Resolution tiers before the repository-wide fallback, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Qualifier,
    SameFile,
    SameParent,
    ImportedFile,
    SamePackage,
}

impl Tier {
    const ALL: [Tier; 5] = [
        Tier::Qualifier,
        Tier::SameFile,
        Tier::SameParent,
        Tier::ImportedFile,
        Tier::SamePackage,
    ];
}

/// What the tiers need to know about one call site.
struct TierContext<'a> {
    me: &'a SymbolNode,
    /// The qualifier with `self`/`this` already replaced by the caller's parent.
    qual: Option<&'a str>,
    /// Whether a directory is a package in the caller's language (Go, Java).
    package_dirs: bool,
    imported: Option<&'a HashSet<String>>,
}

impl TierContext<'_> {
    fn admits(&self, tier: Tier, s: &SymbolNode) -> bool {
        match tier {
            Tier::Qualifier => self
                .qual
                .is_some_and(|q| s.parent.as_deref() == Some(q) || file_stem(&s.path) == q || dir_name(&s.path) == q),
            Tier::SameFile => s.path == self.me.path,
            Tier::SameParent => self.me.parent.is_some() && s.parent == self.me.parent,
            Tier::ImportedFile => self.imported.is_some_and(|fs| fs.contains(&s.path)),
            Tier::SamePackage => self.package_dirs && dir_of(&s.path) == dir_of(&self.me.path),
        }
    }
}

/// Names with more candidates than this get a [`NameIndex`] instead of a scan.
const SCAN_MAX: usize = 32;

/// The candidates of one popular name, keyed the way the tiers look them up.
#[derive(Default)]
struct NameIndex {
    by_parent: HashMap<String, Vec<NodeIndex>>,
    by_path: HashMap<String, Vec<NodeIndex>>,
    by_stem: HashMap<String, Vec<NodeIndex>>,
    by_dir: HashMap<String, Vec<NodeIndex>>,
    by_dir_name: HashMap<String, Vec<NodeIndex>>,
}

impl NameIndex {
    fn add(&mut self, n: NodeIndex, s: &SymbolNode) {
        if let Some(p) = &s.parent {
            self.by_parent.entry(p.clone()).or_default().push(n);
        }
        self.by_path.entry(s.path.clone()).or_default().push(n);
        self.by_stem.entry(file_stem(&s.path).to_string()).or_default().push(n);
        self.by_dir.entry(dir_of(&s.path).to_string()).or_default().push(n);
        self.by_dir_name
            .entry(dir_name(&s.path).to_string())
            .or_default()
            .push(n);
    }

    /// Same answer as filtering every candidate with [`TierContext::admits`].
    fn tier(&self, tier: Tier, ctx: &TierContext<'_>) -> Vec<NodeIndex> {
        fn get<'m>(m: &'m HashMap<String, Vec<NodeIndex>>, k: &str) -> &'m [NodeIndex] {
            m.get(k).map_or(&[][..], Vec::as_slice)
        }
        let mut v: Vec<NodeIndex> = match tier {
            Tier::Qualifier => match ctx.qual {
                Some(q) => [
                    get(&self.by_parent, q),
                    get(&self.by_stem, q),
                    get(&self.by_dir_name, q),
                ]
                .concat(),
                None => Vec::new(),
            },
            Tier::SameFile => get(&self.by_path, &ctx.me.path).to_vec(),
            Tier::SameParent => ctx
                .me
                .parent
                .as_deref()
                .map_or(Vec::new(), |p| get(&self.by_parent, p).to_vec()),
            Tier::ImportedFile => ctx.imported.map_or(Vec::new(), |fs| {
                fs.iter().flat_map(|f| get(&self.by_path, f)).copied().collect()
            }),
            Tier::SamePackage if ctx.package_dirs => get(&self.by_dir, dir_of(&ctx.me.path)).to_vec(),
            Tier::SamePackage => Vec::new(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// `crate::a::{b, c::D}` → `crate::a::b`, `crate::a::c::D`; other imports unchanged.
fn expand_braces(imp: &str) -> Vec<String> {
    match (imp.find('{'), imp.rfind('}')) {
        (Some(open), Some(close)) if open < close => {
            let head = &imp[..open];
            imp[open + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty() && !s.contains('{'))
                .map(|s| {
                    if s == "self" {
                        head.trim_end_matches("::").to_string()
                    } else {
                        format!("{head}{s}")
                    }
                })
                .collect()
        }
        _ => vec![imp.to_string()],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A chunk with the fields the graph reads; lines derive from the id.
    pub(crate) fn chunk(
        id: u32,
        path: &str,
        symbol: Option<&str>,
        kind: SymbolKind,
        parent: Option<&str>,
        calls: &[&str],
        imports: &[&str],
    ) -> Chunk {
        Chunk {
            id,
            path: path.to_string(),
            language: Language::from_path(path).unwrap_or(Language::Text),
            symbol: symbol.map(str::to_string),
            kind,
            parent: parent.map(str::to_string),
            start_line: id * 10 + 1,
            end_line: id * 10 + 9,
            content: String::new(),
            content_hash: String::new(),
            calls: calls.iter().map(|s| s.to_string()).collect(),
            imports: imports.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub(crate) fn f(id: u32, path: &str, name: &str, calls: &[&str]) -> Chunk {
        chunk(id, path, Some(name), SymbolKind::Function, None, calls, &[])
    }

    fn sym_node(g: &CodeGraph, chunk_id: u32) -> NodeIndex {
        g.node_for_chunk(chunk_id).expect("chunk has a node")
    }

    fn has_edge(g: &CodeGraph, a: NodeIndex, b: NodeIndex, kind: EdgeKind) -> bool {
        g.graph.edges_connecting(a, b).any(|e| *e.weight() == kind)
    }

    fn targets(g: &CodeGraph, chunk_id: u32, kind: EdgeKind) -> Vec<u32> {
        let mut v: Vec<u32> = g
            .neighbors(sym_node(g, chunk_id), Direction::Outgoing, kind)
            .into_iter()
            .filter_map(|n| g.symbol(n).map(|s| s.chunk_id))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn contains_defines_calls_and_references_edges() {
        let chunks = vec![
            chunk(0, "src/server.rs", Some("Server"), SymbolKind::Struct, None, &[], &[]),
            chunk(1, "src/server.rs", Some("Server"), SymbolKind::Impl, None, &[], &[]),
            chunk(
                2,
                "src/server.rs",
                Some("run"),
                SymbolKind::Method,
                Some("Server"),
                &["self.bind", "Config"],
                &[],
            ),
            chunk(
                3,
                "src/server.rs",
                Some("bind"),
                SymbolKind::Method,
                Some("Server"),
                &[],
                &[],
            ),
            chunk(4, "src/config.rs", Some("Config"), SymbolKind::Struct, None, &[], &[]),
        ];
        let g = CodeGraph::build(&chunks);
        let file = g.file_node("src/server.rs").unwrap();
        for id in 0..4 {
            assert!(has_edge(&g, file, sym_node(&g, id), EdgeKind::Defines), "defines {id}");
        }
        // Members hang under the struct, not the impl block.
        assert!(has_edge(&g, sym_node(&g, 0), sym_node(&g, 2), EdgeKind::Contains));
        assert!(has_edge(&g, sym_node(&g, 0), sym_node(&g, 3), EdgeKind::Contains));
        assert!(!has_edge(&g, sym_node(&g, 1), sym_node(&g, 2), EdgeKind::Contains));
        assert_eq!(targets(&g, 2, EdgeKind::Calls), vec![3]);
        assert_eq!(targets(&g, 2, EdgeKind::References), vec![4]);
        // 2 files + 5 symbols; 5 defines + 2 contains + 1 call + 1 reference.
        assert_eq!(g.node_count(), 7);
        assert_eq!(g.edge_count(), 9);
    }

    #[test]
    fn same_file_candidate_wins_over_others() {
        let chunks = vec![
            f(0, "src/a.rs", "main", &["helper"]),
            f(1, "src/a.rs", "helper", &[]),
            f(2, "src/b.rs", "helper", &[]),
            f(3, "src/c.rs", "helper", &[]),
        ];
        let g = CodeGraph::build(&chunks);
        assert_eq!(targets(&g, 0, EdgeKind::Calls), vec![1]);
    }

    #[test]
    fn qualifier_and_imports_pick_the_right_candidate() {
        let chunks = vec![
            chunk(
                0,
                "src/main.rs",
                Some("main"),
                SymbolKind::Function,
                None,
                &["Parser::new", "tokenize"],
                &["crate::lex::tokenize"],
            ),
            chunk(
                1,
                "src/parser.rs",
                Some("new"),
                SymbolKind::Method,
                Some("Parser"),
                &[],
                &[],
            ),
            chunk(
                2,
                "src/lexer.rs",
                Some("new"),
                SymbolKind::Method,
                Some("Lexer"),
                &[],
                &[],
            ),
            f(3, "src/lex.rs", "tokenize", &[]),
            f(4, "src/other/lex2.rs", "tokenize", &[]),
        ];
        let g = CodeGraph::build(&chunks);
        assert_eq!(targets(&g, 0, EdgeKind::Calls), vec![1, 3]);
        let main = g.file_node("src/main.rs").unwrap();
        let lex = g.file_node("src/lex.rs").unwrap();
        assert!(has_edge(&g, main, lex, EdgeKind::Imports));
        assert!(
            has_edge(&g, main, sym_node(&g, 3), EdgeKind::Imports),
            "import names the item"
        );
    }

    #[test]
    fn ambiguous_common_names_are_capped_or_skipped() {
        // 40 `len` methods (more than SCAN_MAX: the indexed path) in other
        // directories and nothing local: skipped.
        let mut chunks = vec![f(0, "src/app.rs", "start", &["len"])];
        for i in 1..=40u32 {
            let path = format!("src/m{i}/len.rs");
            let parent = format!("T{i}");
            chunks.push(chunk(
                i,
                &path,
                Some("len"),
                SymbolKind::Method,
                Some(&parent),
                &[],
                &[],
            ));
        }
        let g = CodeGraph::build(&chunks);
        assert!(targets(&g, 0, EdgeKind::Calls).is_empty());
        // With a local definition, only that one is linked.
        chunks.push(f(41, "src/app.rs", "len", &[]));
        let g = CodeGraph::build(&chunks);
        assert_eq!(targets(&g, 0, EdgeKind::Calls), vec![41]);
        // A qualifier picks one of them, by type or by module (file stem).
        chunks[0] = f(0, "src/app.rs", "start", &["T7::len", "self.len"]);
        let g = CodeGraph::build(&chunks);
        assert_eq!(targets(&g, 0, EdgeKind::Calls), vec![7, 41]);
        chunks.push(f(42, "src/start.rs", "run", &["m9::len"]));
        chunks.push(chunk(
            43,
            "src/m9/mod.rs",
            Some("len"),
            SymbolKind::Function,
            None,
            &[],
            &[],
        ));
        let g = CodeGraph::build(&chunks);
        assert_eq!(targets(&g, 42, EdgeKind::Calls), vec![9, 43]);

        // Go: five `Get`s in the caller's package match one tier; at most 3 are linked.
        let mut go = vec![f(0, "app/main.go", "start", &["Get"])];
        for i in 1..=5u32 {
            let path = format!("app/g{i}.go");
            let parent = format!("G{i}");
            go.push(chunk(
                i,
                &path,
                Some("Get"),
                SymbolKind::Method,
                Some(&parent),
                &[],
                &[],
            ));
        }
        let g = CodeGraph::build(&go);
        assert_eq!(targets(&g, 0, EdgeKind::Calls).len(), MAX_LINKS_PER_CALL);

        // Few global candidates (unique, or up to the cap) are linked from anywhere.
        let chunks = vec![
            f(0, "x/a.rs", "start", &["solo", "pair"]),
            f(1, "y/b.rs", "solo", &[]),
            f(2, "y/c.rs", "pair", &[]),
            f(3, "z/d.rs", "pair", &[]),
        ];
        assert_eq!(targets(&CodeGraph::build(&chunks), 0, EdgeKind::Calls), vec![1, 2, 3]);
    }

    #[test]
    fn windows_of_one_symbol_merge_into_one_node() {
        let chunks = vec![
            chunk(0, "src/big.rs", Some("huge"), SymbolKind::Function, None, &["a"], &[]),
            chunk(1, "src/big.rs", Some("huge"), SymbolKind::Window, None, &["b"], &[]),
            f(2, "src/big.rs", "a", &[]),
            f(3, "src/big.rs", "b", &["huge"]),
        ];
        let g = CodeGraph::build(&chunks);
        assert_eq!(sym_node(&g, 0), sym_node(&g, 1));
        assert_eq!(targets(&g, 0, EdgeKind::Calls), vec![2, 3]);
        assert_eq!(targets(&g, 3, EdgeKind::Calls), vec![0]);
        assert_eq!(g.chunks_for_symbol("huge"), vec![0, 1]);
    }

    #[test]
    fn imports_resolve_across_languages() {
        let chunks = vec![
            chunk(
                0,
                "pkg/app.py",
                Some("run"),
                SymbolKind::Function,
                None,
                &[],
                &["pkg.util.helper", "numpy", ".models"],
            ),
            f(1, "pkg/util.py", "helper", &[]),
            chunk(
                2,
                "pkg/models/__init__.py",
                Some("Model"),
                SymbolKind::Class,
                None,
                &[],
                &[],
            ),
            chunk(
                3,
                "web/src/app.ts",
                Some("main"),
                SymbolKind::Function,
                None,
                &[],
                &["./lib/api", "react"],
            ),
            f(4, "web/src/lib/api.ts", "fetchAll", &[]),
            chunk(
                5,
                "cmd/main.go",
                Some("main"),
                SymbolKind::Function,
                None,
                &[],
                &["github.com/acme/tool/internal/store", "fmt"],
            ),
            f(6, "internal/store/store.go", "Open", &[]),
            f(7, "internal/store/db.go", "Close", &[]),
            chunk(
                8,
                "src/main/java/com/acme/App.java",
                Some("App"),
                SymbolKind::Class,
                None,
                &[],
                &["com.acme.util.Strings", "java.util.List"],
            ),
            chunk(
                9,
                "src/main/java/com/acme/util/Strings.java",
                Some("Strings"),
                SymbolKind::Class,
                None,
                &[],
                &[],
            ),
            chunk(
                10,
                "csrc/main.c",
                Some("main"),
                SymbolKind::Function,
                None,
                &[],
                &["\"util.h\"", "<stdio.h>"],
            ),
            f(11, "csrc/util.h", "util_init", &[]),
            chunk(
                12,
                "src/index/mod.rs",
                Some("build"),
                SymbolKind::Function,
                None,
                &[],
                &["super::model::Chunk", "serde::Serialize"],
            ),
            chunk(13, "src/model.rs", Some("Chunk"), SymbolKind::Struct, None, &[], &[]),
        ];
        let g = CodeGraph::build(&chunks);
        let imports = |path: &str| -> Vec<String> {
            let n = g.file_node(path).unwrap();
            let mut v: Vec<String> = g
                .neighbors(n, Direction::Outgoing, EdgeKind::Imports)
                .into_iter()
                .map(|m| match g.node(m) {
                    NodeKind::File { path } => path.clone(),
                    NodeKind::External { name } => format!("ext:{name}"),
                    NodeKind::Symbol(s) => format!("sym:{}", s.name),
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            imports("pkg/app.py"),
            ["ext:numpy", "pkg/models/__init__.py", "pkg/util.py", "sym:helper"]
        );
        assert_eq!(imports("web/src/app.ts"), ["ext:react", "web/src/lib/api.ts"]);
        assert_eq!(
            imports("cmd/main.go"),
            ["ext:fmt", "internal/store/db.go", "internal/store/store.go"]
        );
        assert_eq!(
            imports("src/main/java/com/acme/App.java"),
            [
                "ext:java.util",
                "src/main/java/com/acme/util/Strings.java",
                "sym:Strings"
            ]
        );
        assert_eq!(imports("csrc/main.c"), ["csrc/util.h", "ext:stdio.h"]);
        assert_eq!(imports("src/index/mod.rs"), ["ext:serde", "src/model.rs", "sym:Chunk"]);
    }

    #[test]
    fn call_names_and_identifier_parts() {
        assert_eq!(split_call("Foo::new"), Some((Some("Foo"), "new")));
        assert_eq!(split_call("self.client.get()"), Some((Some("client"), "get")));
        assert_eq!(
            split_call("Vec::<u8>::with_capacity"),
            Some((Some("Vec"), "with_capacity"))
        );
        assert_eq!(split_call("p->next"), Some((Some("p"), "next")));
        assert_eq!(split_call("parse"), Some((None, "parse")));
        assert_eq!(split_call("()"), None);
        assert_eq!(
            split_identifier("parseHTTPRequest_v2"),
            ["parse", "http", "request", "v2"]
        );
        assert_eq!(split_identifier("CodeGraph"), ["code", "graph"]);
        assert_eq!(expand_braces("crate::a::{b, c::D}"), ["crate::a::b", "crate::a::c::D"]);
    }

    fn sample() -> CodeGraph {
        let chunks = vec![
            chunk(
                0,
                "src/main.rs",
                Some("main"),
                SymbolKind::Function,
                None,
                &["Server::run"],
                &["crate::server::Server", "std::io"],
            ),
            chunk(1, "src/server.rs", Some("Server"), SymbolKind::Struct, None, &[], &[]),
            chunk(
                2,
                "src/server.rs",
                Some("run"),
                SymbolKind::Method,
                Some("Server"),
                &["helper"],
                &[],
            ),
            chunk(
                3,
                "src/server.rs",
                Some("run"),
                SymbolKind::Window,
                Some("Server"),
                &[],
                &[],
            ),
            f(4, "src/server.rs", "helper", &[]),
            chunk(5, "README.md", Some("Usage"), SymbolKind::Section, None, &[], &[]),
        ];
        CodeGraph::build(&chunks)
    }

    #[test]
    fn write_read_round_trip() {
        let g = sample();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GRAPH_FILE_NAME);
        g.write(&path).unwrap();
        let back = CodeGraph::read(&path).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.node_count(), g.node_count());
        assert_eq!(back.chunks_for_symbol("run"), vec![2, 3]);
        assert!(!dir.path().join("graph.bin.tmp").exists());
    }

    #[test]
    fn corrupt_truncated_and_foreign_files_are_typed_errors() {
        let bytes = sample().encode();
        assert!(matches!(
            CodeGraph::decode(&bytes[..bytes.len() - 3]),
            Err(GraphError::Truncated { .. })
        ));
        assert!(matches!(
            CodeGraph::decode(&bytes[..10]),
            Err(GraphError::Truncated { .. })
        ));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(CodeGraph::decode(&flipped), Err(GraphError::Checksum { .. })));
        let mut version = bytes.clone();
        version[8..12].copy_from_slice(&99u32.to_le_bytes());
        assert!(matches!(
            CodeGraph::decode(&version),
            Err(GraphError::UnsupportedVersion {
                found: 99,
                expected: GRAPH_FORMAT_VERSION
            })
        ));
        assert!(matches!(
            CodeGraph::decode(b"{\"nodes\": []}  ........................"),
            Err(GraphError::BadMagic)
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(CodeGraph::decode(&longer), Err(GraphError::Corrupt(_))));
        // A well-checksummed payload with an invalid node tag is still rejected.
        let mut bad_tag = bytes.clone();
        let strings_end = {
            let mut r = Reader {
                buf: &bytes[HEADER_LEN..],
                pos: 0,
            };
            for _ in 0..r.u32().unwrap() {
                let n = r.u32().unwrap() as usize;
                r.take(n).unwrap();
            }
            HEADER_LEN + r.pos
        };
        bad_tag[strings_end + 4] = 7;
        let sum = xxhash_rust::xxh3::xxh3_64(&bad_tag[HEADER_LEN..]);
        bad_tag[20..28].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(CodeGraph::decode(&bad_tag), Err(GraphError::Corrupt(m)) if m.contains("node tag")));
        let missing = CodeGraph::read(Path::new("/nonexistent/graph.bin"));
        assert!(matches!(missing, Err(GraphError::Io { .. })));
    }

    /// Synthetic repository of `n` chunks: 100 symbols per file in 50
    /// directories; every 15th symbol is a `new` method of its own type (a
    /// popular name), each symbol calls a neighbour, a far symbol, `new`, a
    /// qualified method and `len` (defined nowhere), and every file imports the
    /// next one and `std::fmt`.
    pub(crate) fn synthetic(n: u32) -> Vec<Chunk> {
        let per_file = 100;
        (0..n)
            .map(|i| {
                let file = i / per_file;
                let path = format!("src/m{}/f{file}.rs", file % 50);
                let method = i % 15 == 0;
                let name = if method { "new".to_string() } else { format!("fn_{i}") };
                let parent = method.then(|| format!("Type{i}"));
                let mut c = chunk(i, &path, Some(&name), SymbolKind::Function, parent.as_deref(), &[], &[]);
                if method {
                    c.kind = SymbolKind::Method;
                }
                c.calls = vec![
                    format!("fn_{}", (i * 7919 + 3) % n),
                    format!("fn_{}", i.saturating_sub(1)),
                    "new".to_string(),
                    format!("Type{}::new", (i / 15) * 15),
                    "self.len".to_string(),
                ];
                c.imports = vec![
                    format!("crate::m{}::f{}::fn_{}", (file + 1) % 50, file + 1, i + 1),
                    "std::fmt".to_string(),
                ];
                c
            })
            .collect()
    }

    #[test]
    #[ignore = "timing: cargo test --lib graph -- --ignored --nocapture"]
    fn timing_100k_chunks() {
        let chunks = synthetic(100_000);
        let t = std::time::Instant::now();
        let g = CodeGraph::build(&chunks);
        let build = t.elapsed();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GRAPH_FILE_NAME);
        let t = std::time::Instant::now();
        g.write(&path).unwrap();
        let write = t.elapsed();
        let t = std::time::Instant::now();
        let back = CodeGraph::read(&path).unwrap();
        let read = t.elapsed();
        let size = std::fs::metadata(&path).unwrap().len();
        println!(
            "100k chunks: {} nodes, {} edges; build {build:?}, write {write:?}, read {read:?}, {} KiB",
            g.node_count(),
            g.edge_count(),
            size / 1024
        );
        assert_eq!(back, g);
    }
}
