//! Builds the code graph ([`crate::bundle::graph`]) of one version from its
//! chunks: files, symbols (windows merged), containment, imports and calls.
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
//!    `util.rs`; Go `http.Get` → `Get` in `.../http/`). The language's receiver
//!    names (`self`, `this`, … in `index::lang`) stand for the caller's own parent;
//! 2. the caller's file;
//! 3. the caller's parent type in other files (Rust impls spread over files);
//! 4. files the caller's file imports (resolved `Imports` edges);
//! 5. the caller's directory, in languages where a directory is a package
//!    (Go, Java: same-package calls need no import);
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
//! Each language's resolver lives in its folder under `index::lang`. Rust `crate::`/`self::`/`super::` paths against `src/` module files
//! (`a/b.rs`, `a/b/mod.rs`, longest prefix wins, the next segment is the item);
//! Python dotted and relative (`.x`) modules (`x/y.py`, `x/y/__init__.py`, also
//! under any source root by path suffix, nearest the importer first), where
//! `from m import a` is `m.a`: submodule `a` or item `a` of `m`; JS/TS relative specifiers with the usual
//! extensions and `index.*`; Go import paths by the longest directory suffix
//! (linking up to [`MAX_PACKAGE_FILES`] files of the package); Java `a.b.C` and
//! `a.b.*`; C/C++ `#include "x.h"` relative to the includer, then by suffix.
//! An imported item links to its definition, followed through files that
//! re-export it (a package's `__init__.py`) up to [`MAX_REEXPORT_DEPTH`] deep;
//! aliased re-exports (`import X as Y`) and wildcards are not followed.
//! Anything unresolved becomes an external module node. Not handled: tsconfig
//! path aliases, Cargo workspace crates imported by crate name, Python
//! `sys.path` tricks, Go `replace` directives.

use std::collections::{HashMap, HashSet};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::bundle::graph::{CodeGraph, EdgeKind, NodeKind, SymbolNode};
use crate::model::{Chunk, Language, SymbolKind};

mod calls;
pub(crate) mod imports;
#[cfg(test)]
mod tests;

use calls::{NameIndex, SCAN_MAX};
use imports::{ImportTarget, RepoFiles, expand_braces, resolve_import};

/// Most targets one call name is linked to inside a resolution tier.
pub const MAX_LINKS_PER_CALL: usize = 3;
/// Packages an imported item is followed through to its definition.
const MAX_REEXPORT_DEPTH: usize = 4;
/// A call resolved only by a repository-wide name match is linked when there
/// are at most this many candidates, and skipped otherwise.
pub const MAX_GLOBAL_CANDIDATES: usize = 3;
/// Most files one Go package or Java wildcard import links to.
pub const MAX_PACKAGE_FILES: usize = 16;

/// Builds the graph from every chunk of an index version.
pub fn build_graph(chunks: &[Chunk]) -> CodeGraph {
    Builder::new(chunks).run()
}

struct Builder<'a> {
    chunks: &'a [Chunk],
    graph: DiGraph<NodeKind, EdgeKind>,
    edges: HashSet<(u32, u32, EdgeKind)>,
    files: HashMap<String, NodeIndex>,
    repo: RepoFiles,
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
            repo: RepoFiles::new(chunks),
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
            if let NodeKind::Symbol(s) = &self.graph[n]
                && s.is_target()
            {
                self.targets.entry(s.name.clone()).or_default().push(n);
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
        // Items a file imports from another that does not define them (a
        // package's `__init__.py` re-exporting them): linked once that file's
        // own imports are.
        let mut reexported: Vec<(NodeIndex, String, Vec<String>, String)> = Vec::new();
        for (path, lang, imports) in per_file {
            let from = self.files[&path];
            for raw in &imports {
                for imp in expand_braces(raw) {
                    match resolve_import(&self.repo, &path, lang, &imp) {
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
                                if hits.is_empty() && !files.is_empty() {
                                    reexported.push((from, path.clone(), files.clone(), item));
                                }
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
        self.link_reexports(reexported);
    }

    /// Follows items through the files that re-export them (`from .basic
    /// import Basic` in `core/__init__.py`, imported as `from core import
    /// Basic`): the importer links to the definition and counts its file as
    /// imported, for call resolution. A chain of packages takes a round per
    /// level, up to [`MAX_REEXPORT_DEPTH`].
    fn link_reexports(&mut self, mut pending: Vec<(NodeIndex, String, Vec<String>, String)>) {
        for _ in 0..MAX_REEXPORT_DEPTH {
            let mut linked = Vec::new();
            pending.retain(|(from, path, via, item)| {
                let hits: Vec<NodeIndex> = via
                    .iter()
                    .filter_map(|f| self.files.get(f))
                    .flat_map(|&f| self.graph.edges_directed(f, Direction::Outgoing))
                    .filter(|e| *e.weight() == EdgeKind::Imports)
                    .map(|e| e.target())
                    .filter(|&n| matches!(&self.graph[n], NodeKind::Symbol(s) if s.name == *item))
                    .take(MAX_LINKS_PER_CALL)
                    .collect();
                if hits.is_empty() {
                    return true;
                }
                linked.push((*from, path.clone(), hits));
                false
            });
            if linked.is_empty() {
                break;
            }
            for (from, path, hits) in linked {
                for n in hits {
                    let file = self.sym(n).path.clone();
                    self.edge(from, n, EdgeKind::Imports);
                    if file != path {
                        self.imported_files.entry(path.clone()).or_default().insert(file);
                    }
                }
            }
        }
    }
}

fn file_stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.split('.').next().unwrap_or(name)
}

/// Last directory component: `a/b/c.go` → `b`.
fn dir_name(path: &str) -> &str {
    dir_of(path).rsplit('/').next().unwrap_or("")
}

pub(crate) fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Leading path segments `a` and `b` share: how near two files are.
pub(crate) fn common_prefix_len(a: &str, b: &str) -> usize {
    a.split('/').zip(b.split('/')).take_while(|(x, y)| x == y).count()
}

/// Joins `rel` onto directory `dir`, resolving `.` and `..`; `None` if it escapes the root.
pub(crate) fn join_path(dir: &str, rel: &str) -> Option<String> {
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
