//! JavaScript/TypeScript imports: relative specifiers with the usual
//! extensions and `index.*`; bare specifiers are npm packages.

use crate::index::graph::imports::{ImportTarget, RepoFiles};
use crate::index::graph::{dir_of, join_path};

pub(super) fn resolve(repo: &RepoFiles, importer: &str, imp: &str) -> Option<ImportTarget> {
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
        .find(|c| repo.exists(c))
        .map(|f| ImportTarget::Files(vec![f], None))
        .or_else(|| Some(ImportTarget::External(spec.to_string())))
}
