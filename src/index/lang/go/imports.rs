//! Go imports: module paths by the longest directory suffix, linking the
//! package's non-test files.

use crate::index::graph::imports::{ImportTarget, RepoFiles};

pub(super) fn resolve(repo: &RepoFiles, _importer: &str, imp: &str) -> Option<ImportTarget> {
    let spec = imp.split_whitespace().last()?.trim_matches(['"', '`']);
    let segs: Vec<&str> = spec.split('/').filter(|s| !s.is_empty()).collect();
    // Standard library paths (`fmt`, `net/http`) have no dot in the first
    // segment; only module paths can live in this repository.
    if segs.first().is_some_and(|s| s.contains('.')) {
        for start in 1..segs.len() {
            let suffix = segs[start..].join("/");
            if let Some(dirs) = repo.dirs_with_suffix(&suffix)
                && dirs.len() == 1
            {
                let files = repo.package_files(&dirs[0], ".go", |f| f.ends_with("_test.go"));
                if !files.is_empty() {
                    return Some(ImportTarget::Files(files, None));
                }
            }
        }
    }
    Some(ImportTarget::External(spec.to_string()))
}
