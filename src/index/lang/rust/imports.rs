//! Rust imports: `crate::`/`self::`/`super::` paths against the module files
//! under `src/` (`a/b.rs`, `a/b/mod.rs`; longest prefix wins, the next segment
//! is the item). Anything else is an external crate.

use crate::index::graph::dir_of;
use crate::index::graph::imports::{ImportTarget, RepoFiles};

pub(super) fn resolve(repo: &RepoFiles, importer: &str, imp: &str) -> Option<ImportTarget> {
    let imp = imp.trim_start_matches("pub ").trim_start_matches("use ").trim();
    let imp = imp.split(" as ").next().unwrap_or(imp).trim().trim_end_matches("::*");
    let segs: Vec<&str> = imp.split("::").map(str::trim).filter(|s| !s.is_empty()).collect();
    let first = *segs.first()?;
    // The module directory of the importing file: where its child modules live.
    let crate_root = importer
        .find("src/")
        .map_or(String::new(), |i| importer[..i + 4].to_string());
    let file_name = importer.rsplit('/').next().unwrap_or(importer);
    let self_dir = if matches!(file_name, "mod.rs" | "lib.rs" | "main.rs") {
        dir_of(importer).to_string()
    } else {
        importer.trim_end_matches(".rs").to_string()
    };
    let (mut base, mut rest) = match first {
        "crate" => (crate_root.trim_end_matches('/').to_string(), &segs[1..]),
        "self" => (self_dir, &segs[1..]),
        "super" => (dir_of(&self_dir).to_string(), &segs[1..]),
        _ => return Some(ImportTarget::External(first.to_string())),
    };
    while rest.first() == Some(&"super") {
        base = dir_of(&base).to_string();
        rest = &rest[1..];
    }
    let prefix = if base.is_empty() {
        String::new()
    } else {
        format!("{base}/")
    };
    for i in (1..=rest.len()).rev() {
        let p = format!("{prefix}{}", rest[..i].join("/"));
        for cand in [format!("{p}.rs"), format!("{p}/mod.rs")] {
            if repo.exists(&cand) {
                return Some(ImportTarget::Files(vec![cand], rest.get(i).map(|s| s.to_string())));
            }
        }
    }
    // `crate::Foo`: an item of the crate root.
    for root in ["lib.rs", "main.rs", "mod.rs"] {
        let cand = format!("{prefix}{root}");
        if repo.exists(&cand) && cand != importer {
            return Some(ImportTarget::Files(vec![cand], rest.first().map(|s| s.to_string())));
        }
    }
    Some(ImportTarget::External(imp.to_string()))
}
