//! Python imports: dotted and relative (`.x`) modules to `x/y.py` or
//! `x/y/__init__.py`, also under any source root by path suffix.

use crate::index::graph::imports::{ImportTarget, RepoFiles};
use crate::index::graph::{common_prefix_len, dir_of};

pub(super) fn resolve(repo: &RepoFiles, importer: &str, imp: &str) -> Option<ImportTarget> {
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
                if repo.exists(&cand) {
                    return Some(ImportTarget::Files(vec![cand], segs.get(i).map(|s| s.to_string())));
                }
            }
        }
        let init = format!("{prefix}__init__.py");
        if repo.exists(&init) {
            return Some(ImportTarget::Files(vec![init], segs.first().map(|s| s.to_string())));
        }
        return None;
    }
    let first = *segs.first()?;
    // `a.b.c` may be module `a/b/c.py`, or item `c` of `a/b.py`, and each is
    // looked up by path suffix anywhere in the repository. The file nearest
    // the importer wins, then the longer module path: a `from utils import
    // log` beside `utils.py` must not land on some `vendor/x/utils/log.py`.
    let mut best: Option<(usize, usize, String)> = None;
    for i in (1..=segs.len()).rev() {
        let p = segs[..i].join("/");
        for cand in [format!("{p}.py"), format!("{p}/__init__.py")] {
            if let Some(f) = repo.by_suffix(importer, &cand).into_iter().next() {
                let near = common_prefix_len(&f, importer);
                if best.as_ref().is_none_or(|(n, _, _)| near > *n) {
                    best = Some((near, i, f));
                }
            }
        }
    }
    match best {
        Some((_, i, f)) => Some(ImportTarget::Files(vec![f], segs.get(i).map(|s| s.to_string()))),
        None => Some(ImportTarget::External(first.to_string())),
    }
}
