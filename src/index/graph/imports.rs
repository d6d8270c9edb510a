//! Import resolution: an import string of a file → repository files (and the
//! item it names) or an external module. Each language brings its own
//! resolver (`index::lang`); they all look files up through [`RepoFiles`].

use std::collections::{HashMap, HashSet};

use super::{MAX_PACKAGE_FILES, common_prefix_len, dir_of};
use crate::index::lang;
use crate::model::{Chunk, Language};

pub(crate) enum ImportTarget {
    /// Repository files, with the imported item name when the import names one.
    Files(Vec<String>, Option<String>),
    External(String),
}

/// The repository's files, indexed the ways import resolvers look them up.
#[derive(Default)]
pub(crate) struct RepoFiles {
    files: HashSet<String>,
    /// Path suffix (`c.rs`, `b/c.rs`, `a/b/c.rs`) → files.
    suffixes: HashMap<String, Vec<String>>,
    /// Directory → files directly in it.
    dirs: HashMap<String, Vec<String>>,
    /// Directory suffix → directories.
    dir_suffixes: HashMap<String, Vec<String>>,
}

impl RepoFiles {
    pub(super) fn new(chunks: &[Chunk]) -> RepoFiles {
        let mut repo = RepoFiles::default();
        for c in chunks {
            if !repo.files.insert(c.path.clone()) {
                continue;
            }
            let segs: Vec<&str> = c.path.split('/').collect();
            for i in 0..segs.len() {
                repo.suffixes
                    .entry(segs[i..].join("/"))
                    .or_default()
                    .push(c.path.clone());
            }
            let dir = dir_of(&c.path).to_string();
            let entry = repo.dirs.entry(dir.clone()).or_default();
            if entry.is_empty() {
                let dsegs: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
                for i in 0..dsegs.len() {
                    repo.dir_suffixes
                        .entry(dsegs[i..].join("/"))
                        .or_default()
                        .push(dir.clone());
                }
            }
            repo.dirs.get_mut(&dir).expect("just inserted").push(c.path.clone());
        }
        repo
    }

    pub(crate) fn exists(&self, path: &str) -> bool {
        self.files.contains(path)
    }

    /// Files whose path ends with `suffix`, closest to `importer` first.
    pub(crate) fn by_suffix(&self, importer: &str, suffix: &str) -> Vec<String> {
        let mut v = self.suffixes.get(suffix).cloned().unwrap_or_default();
        v.sort_by_key(|p| (std::cmp::Reverse(common_prefix_len(p, importer)), p.len(), p.clone()));
        v
    }

    /// Directories whose path ends with `suffix`.
    pub(crate) fn dirs_with_suffix(&self, suffix: &str) -> Option<&Vec<String>> {
        self.dir_suffixes.get(suffix)
    }

    /// The files of a package directory with extension `ext`, minus those
    /// `exclude` rejects (e.g. Go tests), at most [`MAX_PACKAGE_FILES`].
    pub(crate) fn package_files(&self, dir: &str, ext: &str, exclude: fn(&str) -> bool) -> Vec<String> {
        let mut v: Vec<String> = self
            .dirs
            .get(dir)
            .map(|fs| fs.iter().filter(|f| f.ends_with(ext) && !exclude(f)).cloned().collect())
            .unwrap_or_default();
        v.sort();
        v.truncate(MAX_PACKAGE_FILES);
        v
    }
}

/// Resolves one import of `importer` with its language's resolver; languages
/// without one match the import as a path suffix.
pub(super) fn resolve_import(repo: &RepoFiles, importer: &str, lang: Language, raw: &str) -> Option<ImportTarget> {
    let imp = raw.trim().trim_end_matches(';').trim();
    if imp.is_empty() {
        return None;
    }
    match lang::support(lang) {
        Some(support) => (support.resolve_import)(repo, importer, imp),
        None => {
            let spec = imp.trim_matches(['"', '\'', '<', '>']);
            match repo.by_suffix(importer, spec).into_iter().next() {
                Some(f) => Some(ImportTarget::Files(vec![f], None)),
                None => Some(ImportTarget::External(spec.to_string())),
            }
        }
    }
}

/// `crate::a::{b, c::D}` → `crate::a::b`, `crate::a::c::D`; other imports unchanged.
pub(super) fn expand_braces(imp: &str) -> Vec<String> {
    match (imp.find('{'), imp.rfind('}')) {
        (Some(open), Some(close)) if open < close => {
            let head = &imp[..open];
            imp[open + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty() && !s.contains('{'))
                .map(|s| {
                    if s == "self" {
                        head.trim_end_matches("::").to_string()
                    } else {
                        format!("{head}{s}")
                    }
                })
                .collect()
        }
        _ => vec![imp.to_string()],
    }
}
