//! C/C++ includes: `"x.h"` relative to the includer, then by suffix.

use crate::index::graph::imports::{ImportTarget, RepoFiles};
use crate::index::graph::{dir_of, join_path};

pub(super) fn resolve(repo: &RepoFiles, importer: &str, imp: &str) -> Option<ImportTarget> {
    let spec = imp.trim_start_matches("#include").trim();
    let system = spec.starts_with('<');
    let spec = spec.trim_matches(['"', '<', '>']).trim();
    if spec.is_empty() {
        return None;
    }
    if !system && let Some(rel) = join_path(dir_of(importer), spec).filter(|p| repo.exists(p)) {
        return Some(ImportTarget::Files(vec![rel], None));
    }
    match repo
        .by_suffix(importer, spec.trim_start_matches("./"))
        .into_iter()
        .next()
    {
        Some(f) => Some(ImportTarget::Files(vec![f], None)),
        None => Some(ImportTarget::External(spec.to_string())),
    }
}
