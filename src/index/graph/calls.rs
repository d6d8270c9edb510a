//! Call resolution by name, tier by tier (see the module doc of `index::graph`).

use std::collections::{HashMap, HashSet};

use petgraph::graph::NodeIndex;

use super::{Builder, MAX_GLOBAL_CANDIDATES, MAX_LINKS_PER_CALL, common_prefix_len, dir_name, dir_of, file_stem};
use crate::bundle::graph::{EdgeKind, SymbolNode, split_call};
use crate::index::lang;
use crate::model::Language;

impl<'a> Builder<'a> {
    pub(super) fn add_calls(&mut self) {
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
        let support = Language::from_path(&me.path).and_then(lang::support);
        let self_qual = qual.is_some_and(|q| support.is_some_and(|s| s.receivers.contains(&q)));
        let qual = if self_qual { me.parent.as_deref() } else { qual };
        let ctx = TierContext {
            me,
            qual,
            package_dirs: support.is_some_and(|s| s.package_dirs),
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
pub(super) const SCAN_MAX: usize = 32;

/// The candidates of one popular name, keyed the way the tiers look them up.
#[derive(Default)]
pub(super) struct NameIndex {
    by_parent: HashMap<String, Vec<NodeIndex>>,
    by_path: HashMap<String, Vec<NodeIndex>>,
    by_stem: HashMap<String, Vec<NodeIndex>>,
    by_dir: HashMap<String, Vec<NodeIndex>>,
    by_dir_name: HashMap<String, Vec<NodeIndex>>,
}

impl NameIndex {
    pub(super) fn add(&mut self, n: NodeIndex, s: &SymbolNode) {
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
