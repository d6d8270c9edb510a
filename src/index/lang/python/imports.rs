//! Python imports: dotted and relative (`.x`) modules to `x/y.py` or
//! `x/y/__init__.py`, also under any source root by path suffix.

use crate::index::graph::dir_of;
use crate::index::graph::imports::{ImportTarget, RepoFiles};

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
    for i in (1..=segs.len()).rev() {
        let p = segs[..i].join("/");
        for cand in [format!("{p}.py"), format!("{p}/__init__.py")] {
            if let Some(f) = repo.by_suffix(importer, &cand).into_iter().next() {
                return Some(ImportTarget::Files(vec![f], segs.get(i).map(|s| s.to_string())));
            }
        }
    }
    Some(ImportTarget::External(first.to_string()))
}
