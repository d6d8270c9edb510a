//! The code knowledge graph of one index version: files, symbols and external
//! modules as nodes; containment, definition, imports, calls and references as
//! edges. It is built once from the chunks at index time, written into the
//! bundle as `graph.bin` ([`codec`]), and loaded by shards for symbol
//! navigation and for the graph arm of search. This module is the model and
//! its format; how edges are resolved from chunks is the builder's business
//! (`index::graph`).
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
//! # File format
//!
//! `graph.bin` is a small hand-rolled little-endian format rather than JSON: it
//! is versioned and checksummed (so a truncated or bit-flipped download is a
//! typed [`GraphError`], not a panic or a silently wrong graph), interns every
//! string once (paths repeat for every symbol), and loads with one pass and no
//! per-field allocation beyond the strings. Layout: magic `TSGRAPH\0`, format
//! version (u32), payload length (u64), xxh3-64 of the payload (u64), payload =
//! string table, nodes, edges. Lookup tables are rebuilt on load, not stored.

use std::collections::HashMap;
use std::path::PathBuf;

use petgraph::Direction;
use petgraph::graph::{DiGraph, Edge, Node, NodeIndex};
use petgraph::visit::EdgeRef;

mod codec;
mod names;

pub use codec::GRAPH_FORMAT_VERSION;

use crate::heap_size;
use crate::model::SymbolKind;
pub(crate) use names::split_call;

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

/// The code graph plus the chunk and path lookups every reader needs
/// (rebuilt on load). Search adds its own name tables on top.
#[derive(Debug, Clone)]
pub struct CodeGraph {
    graph: DiGraph<NodeKind, EdgeKind>,
    /// Chunk id (every window) → its symbol node.
    by_chunk: HashMap<u32, NodeIndex>,
    by_path: HashMap<String, NodeIndex>,
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
    /// chunk and path lookups built on load.
    pub fn heap_bytes(&self) -> u64 {
        use heap_size::{buffer, optional, string, string_map, table};
        let (node_slots, edge_slots) = self.graph.capacity();
        let slots = node_slots * std::mem::size_of::<Node<NodeKind>>()
            + edge_slots * std::mem::size_of::<Edge<EdgeKind>>()
            + 2 * heap_size::ALLOC;
        let nodes: usize = self
            .graph
            .node_weights()
            .map(|n| match n {
                NodeKind::File { path, .. } => string(path),
                NodeKind::Symbol(s) => string(&s.name) + string(&s.path) + optional(&s.parent) + buffer(&s.more_chunks),
                NodeKind::External { name } => string(name),
            })
            .sum();
        let by_path = string_map(&self.by_path, |_| 0);
        let by_chunk = table(&self.by_chunk);
        (slots + nodes + by_path + by_chunk) as u64
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

    /// Rebuilds the lookup tables from the graph (after build or load).
    pub(crate) fn from_graph(graph: DiGraph<NodeKind, EdgeKind>) -> CodeGraph {
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
                }
                NodeKind::External { .. } => {}
            }
        }
        CodeGraph {
            graph,
            by_chunk,
            by_path,
        }
    }
}
