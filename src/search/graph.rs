//! The graph arm: symbol navigation (definition, references, callers, callees),
//! expansion of fused search hits along call and containment edges, and a
//! graph-only ranking for `mode: graph`.
//!
//! All three read a [`SymbolGraph`]: the version's [`CodeGraph`] plus name
//! tables built on load. The graph was resolved by name at build time (the
//! builder's module doc says what that can and cannot tell apart), so everything here is a neighbourhood walk with caps,
//! never an unbounded traversal: a request costs at most a few thousand node
//! visits however popular the symbol.
//!
//! **Expansion** follows the edges of the top hits so that search returns the
//! code a hit depends on and the code that uses it, which lexical and vector
//! arms cannot see. The boost a neighbour gets is proportional to its seed's
//! fused score and decays with the seed's rank, so fusion can add it to (or
//! create) a candidate on the same scale. Relations, named by the edge followed
//! *from the seed*:
//!
//! | relation    | the new hit is …                                     | weight |
//! |-------------|------------------------------------------------------|--------|
//! | `calls`     | a function/method the seed calls (callee definition) | 0.50   |
//! | `called_by` | a symbol that calls the seed (caller)                | 0.35   |
//! | `defines`   | the seed's parent type, or a member of the seed type | 0.30   |
//! | `imports`   | a symbol the seed's file imports by name             | 0.15   |
//!
//! **Graph search** ranks chunks for free text by symbol name alone. It is good
//! for navigational queries that name (part of) a symbol, `CodeGraph`,
//! `parse query`, `get_or_load_index`, and poor for descriptive ones ("where do
//! we retry failed downloads"), which are the lexical and vector arms' job.

use std::collections::{HashMap, HashSet};

use petgraph::Direction;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

use crate::api::{GraphReason, OutlineSymbol, SymbolHit, SymbolRelation};
use crate::bundle::graph::{CodeGraph, EdgeKind, NodeKind, SymbolNode, split_call};
use crate::heap_size;
use crate::model::{Chunk, SymbolKind, split_identifier};

/// Deepest caller/callee walk a request may ask for.
pub const MAX_DEPTH: u32 = 5;
/// Most results of one navigation request.
pub const MAX_NAVIGATE_RESULTS: usize = 500;
/// Seeds of one expansion (the rest of the ranking is too far down to matter).
pub const MAX_EXPAND_SEEDS: usize = 20;
/// Most distinct query terms graph search matches against the name table.
pub const MAX_GRAPH_TERMS: usize = 32;
/// Neighbours taken per seed and relation, so one hub seed cannot flood the list.
pub const MAX_NEIGHBOURS_PER_RELATION: usize = 5;

const W_CALLS: f32 = 0.50;
const W_CALLED_BY: f32 = 0.35;
const W_DEFINES: f32 = 0.30;
const W_IMPORTS: f32 = 0.15;
/// Score of a 1-hop neighbour of a graph-search match, relative to the match.
const NEIGHBOUR_DECAY: f32 = 0.25;

/// Name shown for anonymous (module-level) code.
const TOP_LEVEL: &str = "(top level)";

/// The chunk with id `id`: chunk ids are dense ordinals, so the slot is tried
/// first, then a binary search (chunks sorted by id), then a scan.
fn chunk_by_id(chunks: &[Chunk], id: u32) -> Option<&Chunk> {
    if let Some(c) = chunks.get(id as usize).filter(|c| c.id == id) {
        return Some(c);
    }
    if let Ok(i) = chunks.binary_search_by_key(&id, |c| c.id) {
        return Some(&chunks[i]);
    }
    chunks.iter().find(|c| c.id == id)
}

fn display_name(s: &SymbolNode) -> &str {
    if s.name.is_empty() { TOP_LEVEL } else { &s.name }
}

/// One entry per distinct lower-cased symbol name, with its identifier parts
/// precomputed for graph search.
#[derive(Debug, Clone)]
struct NameEntry {
    lower: String,
    /// `lower` without underscores, so "parse query" finds `parse_query`.
    compact: String,
    parts: Vec<String>,
    nodes: Vec<NodeIndex>,
}

/// A loaded code graph with the lookup tables search needs: symbols by exact
/// and lower-cased name, and call in-degrees. Derefs to the [`CodeGraph`].
#[derive(Debug, Clone)]
pub struct SymbolGraph {
    graph: CodeGraph,
    /// Exact symbol name → symbol nodes.
    by_name: HashMap<String, Vec<NodeIndex>>,
    /// Lower-cased symbol name → index into `names`.
    by_lower: HashMap<String, usize>,
    names: Vec<NameEntry>,
    /// Incoming `Calls` edges per node (by node index), and their maximum over
    /// named symbols: ranking reads them for every candidate, so they are
    /// counted once here.
    calls_in: Vec<u32>,
    max_calls_in: u32,
}

impl std::ops::Deref for SymbolGraph {
    type Target = CodeGraph;

    fn deref(&self) -> &CodeGraph {
        &self.graph
    }
}

impl SymbolGraph {
    pub fn new(graph: CodeGraph) -> SymbolGraph {
        let mut by_name: HashMap<String, Vec<NodeIndex>> = HashMap::new();
        let mut by_lower: HashMap<String, usize> = HashMap::new();
        let mut names: Vec<NameEntry> = Vec::new();
        let g = graph.graph();
        for n in g.node_indices() {
            let NodeKind::Symbol(s) = &g[n] else { continue };
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
        // Edges are unique per (source, target, kind), so counting them counts callers.
        let mut calls_in = vec![0u32; g.node_count()];
        for e in g.edge_references() {
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
        SymbolGraph {
            graph,
            by_name,
            by_lower,
            names,
            calls_in,
            max_calls_in,
        }
    }

    /// The graph's heap bytes plus the name tables'.
    pub fn heap_bytes(&self) -> u64 {
        use heap_size::{buffer, string, string_map, strings};
        let names: usize = buffer(&self.names)
            + self
                .names
                .iter()
                .map(|n| string(&n.lower) + string(&n.compact) + strings(&n.parts) + buffer(&n.nodes))
                .sum::<usize>();
        let by_name = string_map(&self.by_name, buffer);
        let by_lower = string_map(&self.by_lower, |_| 0);
        self.graph.heap_bytes() + (names + by_name + by_lower + buffer(&self.calls_in)) as u64
    }

    /// Symbol nodes for a name: `Parent::name` / `Parent.name` narrow by parent
    /// (or file stem); otherwise exact case first, then case-insensitive.
    fn find_symbols(&self, name: &str) -> Vec<NodeIndex> {
        let name = name.trim();
        let (qual, base) = match name.rsplit_once("::").or_else(|| name.rsplit_once('.')) {
            Some((q, b)) if !q.is_empty() && !b.is_empty() => (Some(q.rsplit(['.', ':']).next().unwrap_or(q)), b),
            _ => (None, name),
        };
        let narrow = |nodes: Vec<NodeIndex>, ci: bool| -> Vec<NodeIndex> {
            let Some(q) = qual else { return nodes };
            let eq = |a: &str, b: &str| {
                if ci { a.eq_ignore_ascii_case(b) } else { a == b }
            };
            nodes
                .into_iter()
                .filter(|&n| {
                    self.symbol(n).is_some_and(|s| {
                        s.parent.as_deref().is_some_and(|p| eq(p, q))
                            || eq(
                                s.path.rsplit('/').next().unwrap_or("").split('.').next().unwrap_or(""),
                                q,
                            )
                    })
                })
                .collect()
        };
        let exact = narrow(self.by_name.get(base).cloned().unwrap_or_default(), false);
        let mut found = if exact.is_empty() {
            let ci = self
                .by_lower
                .get(&base.to_lowercase())
                .map(|&i| self.names[i].nodes.clone())
                .unwrap_or_default();
            narrow(ci, true)
        } else {
            exact
        };
        // Definitions before impl blocks and windows; then by path.
        found.sort_by_key(|&n| {
            let s = self.symbol(n).expect("name index holds symbols");
            (!s.kind.is_definition(), s.path.clone(), s.chunk_id)
        });
        found
    }

    fn symbol_hit(&self, chunks: &[Chunk], n: NodeIndex, depth: u32, via: Option<String>) -> Option<SymbolHit> {
        let s = self.symbol(n)?;
        let (mut start, mut end) = (u32::MAX, 0);
        for id in s.chunk_ids() {
            if let Some(c) = chunk_by_id(chunks, id) {
                start = start.min(c.start_line);
                end = end.max(c.end_line);
            }
        }
        if start == u32::MAX {
            start = 0;
        }
        Some(SymbolHit {
            symbol: display_name(s).to_string(),
            kind: s.kind.as_str().to_string(),
            path: s.path.clone(),
            start_line: start,
            end_line: end,
            depth,
            via,
        })
    }

    /// The named symbols `path` defines, in line order; `None` when the
    /// version has no such file.
    pub fn outline(&self, chunks: &[Chunk], path: &str) -> Option<Vec<OutlineSymbol>> {
        let file = self.file_node(path)?;
        let mut out: Vec<OutlineSymbol> = self
            .neighbors(file, Direction::Outgoing, EdgeKind::Defines)
            .into_iter()
            .filter_map(|n| {
                let s = self.symbol(n).filter(|s| !s.name.is_empty())?;
                let hit = self.symbol_hit(chunks, n, 0, None)?;
                Some(OutlineSymbol {
                    symbol: s.name.clone(),
                    kind: hit.kind,
                    parent: s.parent.clone(),
                    start_line: hit.start_line,
                    end_line: hit.end_line,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.start_line, b.end_line).cmp(&(b.start_line, a.end_line)));
        Some(out)
    }

    /// Definition, references, callers or callees of a symbol name.
    ///
    /// `definition` lists the matching symbols themselves (depth 0). `callers`
    /// and `callees` walk `Calls` edges breadth first up to `depth` (clamped to
    /// 1..=[`MAX_DEPTH`]), each symbol once at its shortest distance, with `via`
    /// naming the symbol it was reached through for depth > 1. `references`
    /// (depth 1) lists the resolved callers and referrers first, then every
    /// other chunk whose extracted calls mention the name but that resolution
    /// left unlinked (ambiguous common names, calls into code the graph could
    /// not pin down), so it is the "grep for uses" view. Results are capped at
    /// `limit` (at most [`MAX_NAVIGATE_RESULTS`]).
    pub fn navigate(
        &self,
        chunks: &[Chunk],
        name: &str,
        rel: SymbolRelation,
        depth: u32,
        limit: usize,
    ) -> Vec<SymbolHit> {
        let limit = limit.clamp(1, MAX_NAVIGATE_RESULTS);
        let starts = self.find_symbols(name);
        let mut out = Vec::new();
        match rel {
            SymbolRelation::Definition => {
                out.extend(starts.iter().filter_map(|&n| self.symbol_hit(chunks, n, 0, None)));
            }
            SymbolRelation::Callers | SymbolRelation::Callees => {
                let dir = if rel == SymbolRelation::Callers {
                    Direction::Incoming
                } else {
                    Direction::Outgoing
                };
                let depth = depth.clamp(1, MAX_DEPTH);
                let mut seen: HashSet<NodeIndex> = starts.iter().copied().collect();
                let mut frontier = starts.clone();
                'walk: for d in 1..=depth {
                    let mut next = Vec::new();
                    for &from in &frontier {
                        let via = (d > 1)
                            .then(|| self.symbol(from).map(|s| display_name(s).to_string()))
                            .flatten();
                        for to in self.neighbors(from, dir, EdgeKind::Calls) {
                            if !seen.insert(to) {
                                continue;
                            }
                            if let Some(hit) = self.symbol_hit(chunks, to, d, via.clone()) {
                                out.push(hit);
                                if out.len() >= limit {
                                    break 'walk;
                                }
                            }
                            next.push(to);
                        }
                    }
                    frontier = next;
                }
            }
            SymbolRelation::References => {
                let mut seen: HashSet<NodeIndex> = starts.iter().copied().collect();
                for &n in &starts {
                    let mut users = self.neighbors(n, Direction::Incoming, EdgeKind::Calls);
                    users.extend(self.neighbors(n, Direction::Incoming, EdgeKind::References));
                    users.sort_unstable();
                    for u in users {
                        if seen.insert(u) {
                            out.extend(self.symbol_hit(chunks, u, 1, None));
                        }
                    }
                }
                // Unresolved mentions: match the names the found symbols really
                // have (the query may have matched case-insensitively).
                let qualified = name.contains("::") || name.contains('.');
                let mut names: Vec<&str> = starts
                    .iter()
                    .filter_map(|&n| self.symbol(n))
                    .map(|s| s.name.as_str())
                    .collect();
                if names.is_empty() {
                    names.push(name.trim());
                }
                names.dedup();
                if !qualified {
                    for c in chunks {
                        if out.len() >= limit {
                            break;
                        }
                        let mentions = c
                            .calls
                            .iter()
                            .any(|call| split_call(call).is_some_and(|(_, n)| names.contains(&n)));
                        if !mentions {
                            continue;
                        }
                        match self.node_for_chunk(c.id) {
                            Some(n) => {
                                if seen.insert(n) {
                                    out.extend(self.symbol_hit(chunks, n, 1, None));
                                }
                            }
                            None => out.push(SymbolHit {
                                symbol: c.symbol.clone().unwrap_or_else(|| TOP_LEVEL.to_string()),
                                kind: c.kind.as_str().to_string(),
                                path: c.path.clone(),
                                start_line: c.start_line,
                                end_line: c.end_line,
                                depth: 1,
                                via: None,
                            }),
                        }
                    }
                }
            }
        }
        out.truncate(limit);
        out
    }

    /// Every chunk id (all windows) of the symbols named `name`: exact case if
    /// any, else case-insensitive. Sorted.
    pub fn chunks_for_symbol(&self, name: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .find_symbols(name)
            .into_iter()
            .filter_map(|n| self.symbol(n))
            .flat_map(|s| s.chunk_ids())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn calls_in_degree(&self, n: NodeIndex) -> usize {
        self.calls_in.get(n.index()).copied().unwrap_or(0) as usize
    }

    /// Extra or boosted chunks for the top fused hits `seeds` (chunk id, score,
    /// best first), with the reason; never one of the seeds' own chunks. See the
    /// module doc for relations and weights. A chunk reached from several seeds
    /// sums the boosts and keeps the reason of the largest. At most `max_new`,
    /// highest boost first.
    pub fn expand(&self, seeds: &[(u32, f32)], max_new: usize) -> Vec<(u32, GraphReason)> {
        if max_new == 0 {
            return Vec::new();
        }
        let seed_nodes: Vec<Option<NodeIndex>> = seeds.iter().map(|&(id, _)| self.node_for_chunk(id)).collect();
        let mut excluded: HashSet<u32> = seeds.iter().map(|&(id, _)| id).collect();
        for s in seed_nodes.iter().flatten().filter_map(|&n| self.symbol(n)) {
            excluded.extend(s.chunk_ids());
        }
        // chunk id → (total boost, best single boost, reason, first-seen order)
        let mut acc: HashMap<u32, (f32, f32, GraphReason, usize)> = HashMap::new();
        let mut order = 0usize;
        for (rank, (&(_, score), node)) in seeds.iter().zip(&seed_nodes).enumerate().take(MAX_EXPAND_SEEDS) {
            let Some(node) = *node else { continue };
            let Some(seed) = self.symbol(node) else {
                continue;
            };
            let base = score.max(0.0) / (1.0 + rank as f32);
            if base == 0.0 {
                continue;
            }
            let via = display_name(seed).to_string();

            // Specific callees first: a helper called from everywhere says little.
            let mut callees = self.neighbors(node, Direction::Outgoing, EdgeKind::Calls);
            callees.sort_by_key(|&n| (self.calls_in_degree(n), n.index()));
            let callers = self.neighbors(node, Direction::Incoming, EdgeKind::Calls);
            let mut structure = self.neighbors(node, Direction::Incoming, EdgeKind::Contains);
            structure.extend(self.neighbors(node, Direction::Outgoing, EdgeKind::Contains));
            let imported = self
                .file_node(&seed.path)
                .map(|f| {
                    self.neighbors(f, Direction::Outgoing, EdgeKind::Imports)
                        .into_iter()
                        .filter(|&n| self.symbol(n).is_some())
                        .collect()
                })
                .unwrap_or_default();

            for (targets, relation, weight) in [
                (callees, "calls", W_CALLS),
                (callers, "called_by", W_CALLED_BY),
                (structure, "defines", W_DEFINES),
                (imported, "imports", W_IMPORTS),
            ] {
                for t in targets.into_iter().take(MAX_NEIGHBOURS_PER_RELATION) {
                    let Some(s) = self.symbol(t) else { continue };
                    if excluded.contains(&s.chunk_id) {
                        continue;
                    }
                    let boost = base * weight;
                    let reason = GraphReason {
                        relation: relation.to_string(),
                        via: via.clone(),
                        boost,
                    };
                    order += 1;
                    let e = acc.entry(s.chunk_id).or_insert((0.0, 0.0, reason.clone(), order));
                    e.0 += boost;
                    if boost > e.1 {
                        e.1 = boost;
                        e.2 = reason;
                    }
                }
            }
        }
        let mut out: Vec<(u32, f32, GraphReason, usize)> = acc
            .into_iter()
            .map(|(id, (total, _, reason, ord))| (id, total, reason, ord))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.3.cmp(&b.3)));
        out.truncate(max_new);
        out.into_iter()
            .map(|(id, total, mut reason, _)| {
                reason.boost = total;
                (id, reason)
            })
            .collect()
    }

    /// Ranks chunks for free text using the graph alone; see the module doc for
    /// what it is good for. Per query term (identifier-ish words; `key:value`
    /// filter tokens are ignored) a symbol name scores: exact 4 (+0.5 same case),
    /// prefix 2, identifier part 1.5, substring 1 (terms of 3+ characters); the
    /// whole query written as one identifier (`parse query` ~ `parse_query`)
    /// counts as exact on every term. Scores average over the terms; call
    /// in-degree adds at most 0.2 as a tiebreak; impl blocks and windows lose
    /// 0.1. The 1-hop call and containment neighbours of the top matches follow
    /// with a quarter of their score. `chunks` is the version's chunk list: hits
    /// whose chunk it does not hold are dropped, so a graph and chunk list out
    /// of step never yield dangling ids; `allow` (a request's filter) applies
    /// before the top `k` are taken.
    pub fn graph_search(
        &self,
        chunks: &[Chunk],
        query: &str,
        k: usize,
        allow: Option<&(dyn Fn(u32) -> bool + Sync)>,
    ) -> Vec<(u32, f32)> {
        if k == 0 {
            return Vec::new();
        }
        // Every term costs a pass over the name table: distinct terms only, and
        // no more than BM25 reads, so a pasted 4 KiB query stays bounded.
        let mut raw_terms: Vec<&str> = Vec::new();
        for t in query
            .split_whitespace()
            .filter(|t| !t.contains(':') || t.contains("::"))
            .flat_map(|t| t.split(|c: char| !(c.is_alphanumeric() || c == '_')))
            .filter(|t| !t.is_empty())
        {
            if raw_terms.len() == MAX_GRAPH_TERMS {
                break;
            }
            if !raw_terms.contains(&t) {
                raw_terms.push(t);
            }
        }
        if raw_terms.is_empty() {
            return Vec::new();
        }
        let terms: Vec<String> = raw_terms.iter().map(|t| t.to_lowercase()).collect();
        let compact: String = terms.iter().map(|t| t.replace('_', "")).collect();
        let n_terms = terms.len() as f32;

        let max_in = self.max_calls_in.max(1) as f32;

        let mut scores: HashMap<NodeIndex, f32> = HashMap::new();
        for entry in &self.names {
            let whole = terms.len() > 1 && entry.compact == compact;
            let mut total = 0.0;
            for term in &terms {
                total += if whole || entry.lower == *term {
                    4.0
                } else if entry.lower.starts_with(term.as_str()) {
                    2.0
                } else if entry.parts.iter().any(|p| p == term) {
                    1.5
                } else if term.len() >= 3 && entry.lower.contains(term.as_str()) {
                    1.0
                } else {
                    0.0
                };
            }
            if total == 0.0 {
                continue;
            }
            for &n in &entry.nodes {
                let Some(s) = self.symbol(n) else { continue };
                let mut score = total;
                if raw_terms.contains(&s.name.as_str()) {
                    score += 0.5;
                }
                score /= n_terms;
                score += 0.2 * (1.0 + self.calls_in_degree(n) as f32).ln() / (1.0 + max_in).ln();
                if matches!(s.kind, SymbolKind::Impl | SymbolKind::Window) {
                    score -= 0.1;
                }
                scores.insert(n, score);
            }
        }

        let mut direct: Vec<(NodeIndex, f32)> = scores.iter().map(|(&n, &s)| (n, s)).collect();
        direct.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        direct.truncate(k);
        for &(n, s) in &direct {
            let mut around = self.neighbors(n, Direction::Outgoing, EdgeKind::Calls);
            around.extend(self.neighbors(n, Direction::Incoming, EdgeKind::Calls));
            around.extend(self.neighbors(n, Direction::Outgoing, EdgeKind::Contains));
            around.extend(self.neighbors(n, Direction::Incoming, EdgeKind::Contains));
            for m in around {
                let ns = s * NEIGHBOUR_DECAY;
                let e = scores.entry(m).or_insert(0.0);
                if ns > *e {
                    *e = ns;
                }
            }
        }

        let mut out: Vec<(u32, f32)> = Vec::new();
        for (n, s) in scores {
            let NodeKind::Symbol(sym) = self.node(n) else {
                continue;
            };
            // Later windows of one symbol follow its first, just below it.
            for (i, id) in sym.chunk_ids().enumerate() {
                out.push((id, s - 1e-4 * i as f32));
            }
        }
        // Filtered before the cut, so a filter narrows the top k, not empties it.
        out.retain(|&(id, _)| chunk_by_id(chunks, id).is_some() && allow.is_none_or(|f| f(id)));
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        // A common word matches thousands of symbols: select the top k before sorting.
        if out.len() > k {
            out.select_nth_unstable_by(k - 1, order);
            out.truncate(k);
        }
        out.sort_by(order);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{build_graph, function as f, symbol_chunk as chunk};

    /// main → run → {helper, Config}; util → helper; Server contains run.
    fn repo() -> Vec<Chunk> {
        vec![
            chunk(
                0,
                "src/main.rs",
                Some("main"),
                SymbolKind::Function,
                None,
                &["Server::run", "new"],
                &["crate::util::util"],
            ),
            chunk(1, "src/server.rs", Some("Server"), SymbolKind::Struct, None, &[], &[]),
            chunk(
                2,
                "src/server.rs",
                Some("run"),
                SymbolKind::Method,
                Some("Server"),
                &["helper", "Config"],
                &[],
            ),
            chunk(
                3,
                "src/server.rs",
                Some("run"),
                SymbolKind::Window,
                Some("Server"),
                &["log_line"],
                &[],
            ),
            f(4, "src/server.rs", "helper", &["log_line"]),
            chunk(5, "src/config.rs", Some("Config"), SymbolKind::Struct, None, &[], &[]),
            f(6, "src/util.rs", "util", &["helper_for_tests"]),
            f(7, "src/log.rs", "log_line", &[]),
            f(8, "src/util.rs", "helper_for_tests", &[]),
            f(9, "src/parse_query.rs", "parse_query_string", &[]),
            f(10, "src/parse_query.rs", "parse_query", &[]),
            f(11, "src/parse_query.rs", "reparse_query", &["parse_query"]),
        ]
    }

    fn names(hits: &[SymbolHit]) -> Vec<(&str, u32, Option<&str>)> {
        hits.iter()
            .map(|h| (h.symbol.as_str(), h.depth, h.via.as_deref()))
            .collect()
    }

    #[test]
    fn a_long_query_is_cut_to_its_first_distinct_terms() {
        let chunks = repo();
        let g = SymbolGraph::new(build_graph(&chunks));
        // 4 KiB: filler words, repeated, then the one term that matches.
        let filler: Vec<String> = (0..MAX_GRAPH_TERMS).map(|i| format!("zz{i}")).collect();
        let mut long = String::new();
        while long.len() < 4096 {
            long.push_str(&filler.join(" "));
            long.push(' ');
        }
        let head = format!("{} helper", filler.join(" "));
        long.push_str("helper");
        assert!(long.len() > 4096);
        assert!(
            g.graph_search(&chunks, &long, 10, None).is_empty(),
            "terms past the cap are not read"
        );
        assert!(
            g.graph_search(
                &chunks,
                &format!("{} helper", filler[..MAX_GRAPH_TERMS - 1].join(" ")),
                10,
                None
            )
            .iter()
            .any(|(id, _)| *id == 4),
            "within the cap the term counts ({head})"
        );
    }

    #[test]
    fn definition_merges_windows_and_falls_back_to_case_insensitive() {
        let chunks = repo();
        let g = SymbolGraph::new(build_graph(&chunks));
        let hits = g.navigate(&chunks, "run", SymbolRelation::Definition, 1, 10);
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].start_line, hits[0].end_line), (21, 39), "both windows");
        assert_eq!(hits[0].kind, "method");
        let ci = g.navigate(&chunks, "CONFIG", SymbolRelation::Definition, 1, 10);
        assert_eq!(names(&ci), [("Config", 0, None)]);
        let q = g.navigate(&chunks, "Server::run", SymbolRelation::Definition, 1, 10);
        assert_eq!(q.len(), 1);
        assert!(
            g.navigate(&chunks, "Other::run", SymbolRelation::Definition, 1, 10)
                .is_empty()
        );
    }

    #[test]
    fn callers_and_callees_with_depth_and_via() {
        let chunks = repo();
        let g = SymbolGraph::new(build_graph(&chunks));
        let callees = g.navigate(&chunks, "run", SymbolRelation::Callees, 2, 10);
        assert_eq!(names(&callees), [("helper", 1, None), ("log_line", 1, None)]);
        let callers = g.navigate(&chunks, "log_line", SymbolRelation::Callers, 2, 10);
        assert_eq!(
            names(&callers),
            [("run", 1, None), ("helper", 1, None), ("main", 2, Some("run"))]
        );
        let one = g.navigate(&chunks, "log_line", SymbolRelation::Callers, 1, 10);
        assert_eq!(one.len(), 2);
        let capped = g.navigate(&chunks, "log_line", SymbolRelation::Callers, 2, 2);
        assert_eq!(capped.len(), 2);
        // A type is referenced, not called.
        assert!(g.navigate(&chunks, "Config", SymbolRelation::Callers, 3, 10).is_empty());
    }

    #[test]
    fn references_list_resolved_then_unresolved_mentions() {
        let mut chunks = repo();
        let g = SymbolGraph::new(build_graph(&chunks));
        let refs = g.navigate(&chunks, "Config", SymbolRelation::References, 1, 10);
        assert_eq!(names(&refs), [("run", 1, None)]);
        // `new` is called by main but defined nowhere: only the mention remains.
        let refs = g.navigate(&chunks, "new", SymbolRelation::References, 1, 10);
        assert_eq!(names(&refs), [("main", 1, None)]);
        // An ambiguous name the resolver skipped is still a reference.
        for i in 0..5u32 {
            chunks.push(f(20 + i, &format!("far/x{i}/m.rs"), "get", &[]));
        }
        chunks.push(f(30, "other/app.rs", "start", &["get"]));
        let g = SymbolGraph::new(build_graph(&chunks));
        assert!(g.navigate(&chunks, "get", SymbolRelation::Callers, 1, 10).is_empty());
        let refs = g.navigate(&chunks, "get", SymbolRelation::References, 1, 10);
        assert_eq!(names(&refs), [("start", 1, None)]);
    }

    #[test]
    fn expand_returns_callee_definitions_with_reasons_and_never_seeds() {
        let chunks = repo();
        let g = SymbolGraph::new(build_graph(&chunks));
        // Seed: the second window of `run` and `main`.
        let out = g.expand(&[(3, 1.0), (0, 0.5)], 10);
        let ids: Vec<u32> = out.iter().map(|(id, _)| *id).collect();
        for seed_chunk in [0, 2, 3] {
            assert!(!ids.contains(&seed_chunk), "seed {seed_chunk} returned: {out:?}");
        }
        let reason = |id: u32| out.iter().find(|(c, _)| *c == id).map(|(_, r)| r.clone());
        let helper = reason(4).expect("callee helper");
        assert_eq!((helper.relation.as_str(), helper.via.as_str()), ("calls", "run"));
        assert!((helper.boost - W_CALLS).abs() < 1e-6);
        let server = reason(1).expect("parent type");
        assert_eq!(server.relation, "defines");
        let imported = reason(6).expect("imported symbol");
        assert_eq!((imported.relation.as_str(), imported.via.as_str()), ("imports", "main"));
        // Highest boost first, and the cap holds.
        assert!(out.windows(2).all(|w| w[0].1.boost >= w[1].1.boost));
        assert_eq!(g.expand(&[(3, 1.0), (0, 0.5)], 2).len(), 2);
        // Callers: helper is called by run (a seed) only, so seeding helper finds run.
        let up = g.expand(&[(4, 1.0)], 10);
        let run = up.iter().find(|(c, _)| *c == 2).expect("caller run");
        assert_eq!(run.1.relation, "called_by");
        // Rank decay: the same neighbour from a lower-ranked seed gets less.
        let first = g.expand(&[(4, 1.0)], 10);
        let second = g.expand(&[(8, 1.0), (4, 1.0)], 10);
        let boost_of = |v: &[(u32, GraphReason)], id| v.iter().find(|(c, _)| *c == id).unwrap().1.boost;
        assert!(boost_of(&second, 7) < boost_of(&first, 7));
        assert!(g.expand(&[(999, 1.0)], 10).is_empty());
    }

    #[test]
    fn graph_search_ranks_exact_symbol_first() {
        let chunks = repo();
        let g = SymbolGraph::new(build_graph(&chunks));
        let hits = g.graph_search(&chunks, "parse_query", 10, None);
        assert_eq!(hits[0].0, 10, "{hits:?}");
        let prefix = hits.iter().position(|h| h.0 == 9).unwrap();
        let contains = hits.iter().position(|h| h.0 == 11).unwrap();
        assert!(prefix < contains);
        // Two words written apart still find the identifier.
        assert_eq!(g.graph_search(&chunks, "parse query", 3, None)[0].0, 10);
        // Camel/snake parts: `helper` is exact for chunk 4, a part/prefix for 8.
        let hits = g.graph_search(&chunks, "helper lang:rust", 10, None);
        assert_eq!(hits[0].0, 4);
        assert!(hits.iter().any(|h| h.0 == 8));
        // Neighbours of the match follow with a decayed score: run calls helper.
        let run = hits.iter().find(|h| h.0 == 2).expect("neighbour");
        assert!(run.1 < hits[0].1 * 0.5);
        assert!(g.graph_search(&chunks, "zzz", 10, None).is_empty());
        // A filter narrows the top k instead of cutting it and then emptying it.
        let only_8 = |id: u32| id == 8;
        assert_eq!(g.graph_search(&chunks, "helper", 1, None)[0].0, 4);
        assert_eq!(g.graph_search(&chunks, "helper", 1, Some(&only_8))[0].0, 8);
        assert!(
            g.graph_search(&chunks[..5], "parse_query", 10, None).is_empty(),
            "ids outside the chunk list"
        );
    }

    #[test]
    fn chunks_for_symbol_exact_then_case_insensitive() {
        let chunks = repo();
        let g = SymbolGraph::new(build_graph(&chunks));
        assert_eq!(g.chunks_for_symbol("run"), vec![2, 3]);
        assert_eq!(g.chunks_for_symbol("config"), vec![5]);
        assert!(g.chunks_for_symbol("nope").is_empty());
    }
}
