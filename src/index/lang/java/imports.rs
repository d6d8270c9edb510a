//! Java imports: `a.b.C` by path suffix, `a.b.*` to the package's files.

use crate::index::graph::imports::{ImportTarget, RepoFiles};

pub(super) fn resolve(repo: &RepoFiles, importer: &str, imp: &str) -> Option<ImportTarget> {
    let imp = imp.trim_start_matches("import ").trim_start_matches("static ").trim();
    let segs: Vec<&str> = imp.split('.').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() {
        return None;
    }
    if segs.last() == Some(&"*") {
        let pkg = segs[..segs.len() - 1].join("/");
        if let Some(dirs) = repo.dirs_with_suffix(&pkg) {
            let files = repo.package_files(&dirs[0], ".java", |_| false);
            if !files.is_empty() {
                return Some(ImportTarget::Files(files, None));
            }
        }
    } else {
        for i in (1..=segs.len()).rev() {
            let cand = format!("{}.java", segs[..i].join("/"));
            if let Some(f) = repo.by_suffix(importer, &cand).into_iter().next() {
                let item = segs.get(i).or(segs.get(i - 1)).map(|s| s.to_string());
                return Some(ImportTarget::Files(vec![f], item));
            }
        }
    }
    let pkg_len = segs.len().saturating_sub(1).max(1);
    Some(ImportTarget::External(segs[..pkg_len.min(segs.len())].join(".")))
}
