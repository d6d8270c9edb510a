//! Finding the files of a source tree worth indexing.
//!
//! The walk decides from names and metadata only (ignore rules, globs, vendored
//! directories, extension, size), so it stays a cheap single-threaded pass; reading
//! the contents is [`read_source`]'s job, called by the builder from rayon workers,
//! and is where binary, non-UTF-8 and generated files are discovered and where
//! a `.h` header is told to be C or C++. Every file left out (but those ignore
//! files leave out, and hidden ones) is counted by reason, and the first ones
//! logged, so an index's status can say why a file is missing.
//!
//! Rules:
//! * `.gitignore`, `.ignore` and `.git/info/exclude` are honoured even when the
//!   tree is not a git checkout (sources may be tarballs or object-store copies);
//!   the user's global gitignore and ignore files above the root are not, so the
//!   same tree indexes the same on every machine (a `*` in a home directory's
//!   `.gitignore` would otherwise leave a tree unpacked below it empty), except
//!   those of the git work tree the root lies in, as git applies them; a root
//!   with its own `.git` (a nested clone, a submodule) is the top of its own
//!   work tree and gets none from above. Hidden files and directories are
//!   skipped; symlinks are not followed.
//! * Vendored and build-output directories are pruned: `vendor`, `node_modules`,
//!   `third_party`, `dist`, … always; `target` and `build` only when they look like
//!   output (a `CACHEDIR.TAG` inside, or a build manifest such as `Cargo.toml`,
//!   `pom.xml`, `package.json`, `CMakeLists.txt` beside them), because in some
//!   repositories `build/` holds hand-written scripts. A pruned directory counts
//!   once in `vendored_or_generated`, not once per file inside.
//! * Generated files are recognised by name (`*.min.js`, `*.pb.go`, `*_pb2.py`,
//!   lock files, …) during the walk and by a marker (`@generated`, `DO NOT EDIT`,
//!   `Code generated`, …) in a comment on their first lines, or by being minified
//!   (very long average lines), when read.
//! * Include globs (empty = everything) and exclude globs match the `/`-separated
//!   path relative to the root; `*` also crosses directories, so `*.rs` matches
//!   `src/a.rs`. An exclude glob matching a directory prunes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use globset::{Glob, GlobSet, GlobSetBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::{DirEntry, WalkBuilder};
use serde::{Deserialize, Serialize};

use crate::model::Language;

/// Which files a walk keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkConfig {
    /// Files larger than this are skipped (`too_large`).
    pub max_file_bytes: u64,
    /// Globs a file must match to be kept; empty keeps everything.
    pub include: Vec<String>,
    /// Globs that drop a file (or prune a directory).
    pub exclude: Vec<String>,
    /// Only these languages, when set.
    pub languages: Option<Vec<Language>>,
}

impl Default for WalkConfig {
    fn default() -> Self {
        WalkConfig {
            max_file_bytes: 1024 * 1024,
            include: Vec::new(),
            exclude: Vec::new(),
            languages: None,
        }
    }
}

/// A file the walk kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the walk root, `/`-separated.
    pub rel_path: String,
    pub abs_path: PathBuf,
    /// By name; [`read_source`] may refine it from the text (a C++ `.h`).
    pub language: Language,
    /// Size in bytes when walked.
    pub size: u64,
}

/// Files left out, by reason; and `lossy_utf8`, files kept although some
/// of their bytes were not text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipCounts {
    pub binary: u64,
    pub too_large: u64,
    pub non_utf8: u64,
    pub unreadable: u64,
    pub vendored_or_generated: u64,
    pub excluded: u64,
    pub unknown_language: u64,
    /// Symbolic links, which are never followed.
    #[serde(default)]
    pub symlink: u64,
    /// Files the chunker panicked on.
    #[serde(default)]
    pub panicked: u64,
    /// Kept, with their few invalid bytes replaced by U+FFFD; not in [`SkipCounts::total`].
    #[serde(default)]
    pub lossy_utf8: u64,
}

impl SkipCounts {
    /// Files left out (`lossy_utf8` files were kept).
    pub fn total(&self) -> u64 {
        self.binary
            + self.too_large
            + self.non_utf8
            + self.unreadable
            + self.vendored_or_generated
            + self.excluded
            + self.unknown_language
            + self.symlink
            + self.panicked
    }

    /// Adds another set of counts, e.g. those gathered by a reading worker.
    pub fn add(&mut self, other: &SkipCounts) {
        self.binary += other.binary;
        self.too_large += other.too_large;
        self.non_utf8 += other.non_utf8;
        self.unreadable += other.unreadable;
        self.vendored_or_generated += other.vendored_or_generated;
        self.excluded += other.excluded;
        self.unknown_language += other.unknown_language;
        self.symlink += other.symlink;
        self.panicked += other.panicked;
        self.lossy_utf8 += other.lossy_utf8;
    }
}

/// The kept files, sorted by `rel_path` so that builds are deterministic.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    pub files: Vec<SourceFile>,
    pub skipped: SkipCounts,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("source root {path} cannot be read: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("source root {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("invalid glob {pattern:?}: {source}")]
    Glob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
}

/// A walked file's text, as [`read_source`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub text: String,
    /// Decided from the name and the text.
    pub language: Language,
    /// Some bytes were not text and were replaced by U+FFFD (`lossy_utf8`).
    pub lossy: bool,
}

/// Why [`read_source`] (or the builder, for `Panicked`) left a file out.
#[derive(Debug, thiserror::Error)]
pub enum SkipReason {
    #[error("binary file")]
    Binary,
    #[error("not valid UTF-8 ({invalid} of {len} bytes)")]
    NonUtf8 { invalid: usize, len: usize },
    #[error("cannot be read: {0}")]
    Unreadable(#[source] std::io::Error),
    #[error("changed since the walk (grown, or no longer a regular file)")]
    Changed,
    #[error("generated or minified")]
    Generated,
    #[error("not in the languages asked for")]
    Excluded,
    #[error("the chunker panicked: {0}")]
    Panicked(String),
}

impl SkipReason {
    /// Counts this reason in `counts`.
    pub fn count(&self, counts: &mut SkipCounts) {
        match self {
            SkipReason::Binary => counts.binary += 1,
            SkipReason::NonUtf8 { .. } => counts.non_utf8 += 1,
            SkipReason::Unreadable(_) | SkipReason::Changed => counts.unreadable += 1,
            SkipReason::Generated => counts.vendored_or_generated += 1,
            SkipReason::Excluded => counts.excluded += 1,
            SkipReason::Panicked(_) => counts.panicked += 1,
        }
    }
}

/// Most skipped files listed in the log by one [`SkipLog`].
const SKIP_LOG_LIMIT: u64 = 100;

/// Logs skipped files at info with why, the first [`SKIP_LOG_LIMIT`] of
/// them and then how many more, so a missing file can be explained without
/// flooding the log on a huge tree. Shared by reading workers.
#[derive(Debug, Default)]
pub struct SkipLog {
    seen: AtomicU64,
}

impl SkipLog {
    pub fn skipped(&self, path: &str, reason: &dyn std::fmt::Display) {
        if self.seen.fetch_add(1, Ordering::Relaxed) < SKIP_LOG_LIMIT {
            tracing::info!(path, reason = %reason, "file skipped");
        }
    }

    /// An entry the walk could not read at all (its error names the path).
    fn unreadable_entry(&self, error: &ignore::Error) {
        if self.seen.fetch_add(1, Ordering::Relaxed) < SKIP_LOG_LIMIT {
            tracing::info!(%error, "walk entry skipped");
        }
    }

    /// Logs how many skipped files were not listed, if any.
    pub fn finish(&self, stage: &str) {
        let seen = self.seen.load(Ordering::Relaxed);
        if seen > SKIP_LOG_LIMIT {
            tracing::info!(
                stage,
                unlisted = seen - SKIP_LOG_LIMIT,
                "more files skipped, not listed"
            );
        }
    }
}

/// Directory names that hold someone else's code or build output, always pruned.
const VENDORED_DIRS: &[&str] = &[
    "vendor",
    "node_modules",
    "bower_components",
    "jspm_packages",
    "third_party",
    "third-party",
    "thirdparty",
    "dist",
    "__pycache__",
    "site-packages",
];

/// Files beside a `target/` directory that make it a build output.
const TARGET_OWNERS: &[&str] = &["Cargo.toml", "pom.xml", "build.sbt"];

/// Files beside a `build/` directory that make it a build output.
const BUILD_OWNERS: &[&str] = &[
    "CMakeLists.txt",
    "build.gradle",
    "build.gradle.kts",
    "settings.gradle",
    "setup.py",
    "pyproject.toml",
    "package.json",
    "meson.build",
];

/// File name endings of generated or bundled code.
const GENERATED_SUFFIXES: &[&str] = &[
    ".min.js",
    ".min.mjs",
    ".min.cjs",
    ".bundle.js",
    ".pb.go",
    ".pb.gw.go",
    "_pb2.py",
    "_pb2_grpc.py",
    "_pb2.pyi",
    ".pb.h",
    ".pb.cc",
    "_generated.go",
    ".generated.ts",
    ".generated.js",
];

/// Whole file names of lock files and other machine-written files.
const GENERATED_NAMES: &[&str] = &[
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "yarn.lock",
];

/// Phrases that mark a generated file wherever they stand in a comment on
/// one of the first lines.
const GENERATED_ANYWHERE: &[&str] = &["@generated", "do not edit"];

/// Phrases that mark a generated file when a comment opens with them
/// (`Generated by Django`, `Code generated by protoc`) or says them of a
/// subject that is this file (`This file was automatically generated`).
/// Anywhere else they may be about other files: "this module includes files
/// automatically generated from ply".
const GENERATED_OPENINGS: &[&str] = &[
    "generated by",
    "generated from",
    "generated with",
    "generated using",
    "code generated",
    "auto-generated",
    "autogenerated",
    "automatically generated",
];

/// Subjects and verbs that may come before a [`GENERATED_OPENINGS`] phrase.
const GENERATED_SUBJECTS: &[&str] = &[
    "this file",
    "this module",
    "this code",
    "this source file",
    "this class",
];
const GENERATED_VERBS: &[&str] = &["has been", "is", "was"];

/// How many leading lines are searched for a generated marker.
const MARKER_LINES: usize = 5;

/// Bytes searched for a NUL to call a file binary.
const BINARY_PROBE: usize = 8 * 1024;

/// A file at least this long whose lines average more than [`MINIFIED_LINE`] bytes is minified.
const MINIFIED_MIN_BYTES: usize = 4 * 1024;
const MINIFIED_LINE: usize = 1000;

/// Walks `root` and returns the files to index. Fails only if the root cannot be
/// used (missing, not a directory, unreadable) or a glob is invalid; problems with
/// individual entries are counted in [`Walk::skipped`].
pub fn walk(root: &Path, cfg: &WalkConfig) -> Result<Walk, WalkError> {
    let meta = std::fs::metadata(root).map_err(|source| WalkError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(WalkError::NotADirectory(root.to_path_buf()));
    }
    std::fs::read_dir(root).map_err(|source| WalkError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let include = glob_set(&cfg.include)?;
    let exclude = glob_set(&cfg.exclude)?;

    // Directories pruned by the filter are counted from inside it.
    let pruned_vendored = Arc::new(AtomicU64::new(0));
    let pruned_excluded = Arc::new(AtomicU64::new(0));
    let mut builder = WalkBuilder::new(root);
    builder
        .hidden(true)
        .ignore(true)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .parents(false)
        .require_git(false)
        .follow_links(false);
    let enclosing = EnclosingRules::new(root);
    {
        let root = root.to_path_buf();
        let exclude = exclude.clone();
        let (vendored, excluded) = (Arc::clone(&pruned_vendored), Arc::clone(&pruned_excluded));
        builder.filter_entry(move |entry| {
            if entry.depth() == 0 {
                return true;
            }
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            if let Some(rules) = &enclosing
                && let Ok(rel) = entry.path().strip_prefix(&root)
                && rules.excludes(rel, is_dir)
            {
                return false;
            }
            if !is_dir {
                return true;
            }
            if is_vendored_dir(entry) {
                vendored.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            if let Some(exclude) = &exclude
                && let Some(rel) = rel_path(&root, entry.path())
                && exclude.is_match(&rel)
            {
                excluded.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            true
        });
    }

    let mut files = Vec::new();
    let mut skipped = SkipCounts::default();
    let log = SkipLog::default();
    for entry in builder.build() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                log.unreadable_entry(&err);
                skipped.unreadable += 1;
                continue;
            }
        };
        // Symlinks are not followed, and sockets, fifos and devices are not source.
        match entry.file_type() {
            Some(t) if t.is_file() => {}
            Some(t) if t.is_dir() => continue,
            Some(t) if t.is_symlink() => {
                log.skipped(&entry.path().to_string_lossy(), &"symbolic link, not followed");
                skipped.symlink += 1;
                continue;
            }
            _ => {
                log.skipped(&entry.path().to_string_lossy(), &"not a regular file");
                skipped.unreadable += 1;
                continue;
            }
        }
        let Some(rel) = rel_path(root, entry.path()) else {
            log.skipped(&entry.path().to_string_lossy(), &"path is not valid UTF-8");
            skipped.non_utf8 += 1;
            continue;
        };
        if exclude.as_ref().is_some_and(|g| g.is_match(&rel)) || include.as_ref().is_some_and(|g| !g.is_match(&rel)) {
            skipped.excluded += 1;
            continue;
        }
        if is_generated_name(&rel) {
            log.skipped(&rel, &"generated (by its name)");
            skipped.vendored_or_generated += 1;
            continue;
        }
        let Some(language) = Language::from_path(&rel) else {
            skipped.unknown_language += 1;
            continue;
        };
        if cfg
            .languages
            .as_ref()
            .is_some_and(|langs| !langs.iter().any(|&l| Language::may_be(&rel, l)))
        {
            skipped.excluded += 1;
            continue;
        }
        let size = match entry.metadata() {
            Ok(meta) => meta.len(),
            Err(err) => {
                log.skipped(&rel, &err);
                skipped.unreadable += 1;
                continue;
            }
        };
        if size > cfg.max_file_bytes {
            log.skipped(
                &rel,
                &format_args!("{size} bytes, over the limit of {}", cfg.max_file_bytes),
            );
            skipped.too_large += 1;
            continue;
        }
        files.push(SourceFile {
            rel_path: rel,
            abs_path: entry.into_path(),
            language,
            size,
        });
    }
    log.finish("walk");
    skipped.vendored_or_generated += pruned_vendored.load(Ordering::Relaxed);
    skipped.excluded += pruned_excluded.load(Ordering::Relaxed);
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(Walk { files, skipped })
}

/// The ignore rules that apply to a walk root from above it: those of the git
/// work tree the root lies in, as git applies them to a subdirectory. Each
/// file's patterns are relative to its own directory, never to the process's
/// current directory, so `/docs/` means the same wherever the command runs.
struct EnclosingRules {
    /// The walk root, absolute, so matching does not depend on the cwd.
    root: PathBuf,
    /// In precedence order: `.ignore` files nearest first, then `.gitignore`
    /// files nearest first, then the work tree's `.git/info/exclude`.
    matchers: Vec<Gitignore>,
    /// The tree's own ignore files per directory, read only to see whether
    /// they re-include (`!`) an entry an enclosing rule drops.
    own: Mutex<HashMap<PathBuf, Arc<[Gitignore; 2]>>>,
}

impl EnclosingRules {
    /// `None` when the root is in no work tree or is the top of its own (a
    /// `.git` in the root itself, as in a nested clone or a submodule): a `*`
    /// in a home directory's `.gitignore` must not empty a repository below it.
    fn new(root: &Path) -> Option<EnclosingRules> {
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let top = root.ancestors().find(|d| d.join(".git").exists())?;
        if top == root.as_path() {
            return None;
        }
        let dirs: Vec<&Path> = root
            .ancestors()
            .skip(1)
            .take_while(|d| *d != top)
            .chain([top])
            .collect();
        let mut matchers: Vec<Gitignore> = [".ignore", ".gitignore"]
            .iter()
            .flat_map(|name| dirs.iter().map(move |d| read_ignore(d, &d.join(name))))
            .collect();
        matchers.push(read_ignore(top, &top.join(".git/info/exclude")));
        matchers.retain(|m| !m.is_empty());
        if matchers.is_empty() {
            return None;
        }
        Some(EnclosingRules {
            root: root.clone(),
            matchers,
            own: Mutex::new(HashMap::new()),
        })
    }

    /// Whether an enclosing rule drops the entry at `rel` (relative to the
    /// root). The tree's own rules rank above them, as the walker ranks its
    /// explicit ignores, and a repository nested in the tree is shielded.
    fn excludes(&self, rel: &Path, is_dir: bool) -> bool {
        let abs = self.root.join(rel);
        let verdict = self
            .matchers
            .iter()
            .map(|m| m.matched(&abs, is_dir))
            .find(|m| !m.is_none());
        if !verdict.is_some_and(|m| m.is_ignore()) {
            return false;
        }
        !(self.in_nested_repository(rel) || self.own_rules_whitelist(rel, &abs, is_dir))
    }

    fn in_nested_repository(&self, rel: &Path) -> bool {
        rel.parent()
            .into_iter()
            .flat_map(Path::ancestors)
            .filter(|d| !d.as_os_str().is_empty())
            .any(|d| self.root.join(d).join(".git").exists())
    }

    /// Whether the tree's own `.ignore`/`.gitignore` files re-include `abs`
    /// (those that would drop it made the walker skip it already).
    fn own_rules_whitelist(&self, rel: &Path, abs: &Path, is_dir: bool) -> bool {
        let dirs: Vec<Arc<[Gitignore; 2]>> = rel
            .parent()
            .into_iter()
            .flat_map(Path::ancestors)
            .map(|d| self.own_rules(&self.root.join(d)))
            .collect();
        (0..2)
            .flat_map(|kind| dirs.iter().map(move |d| d[kind].matched(abs, is_dir)))
            .find(|m| !m.is_none())
            .is_some_and(|m| m.is_whitelist())
    }

    fn own_rules(&self, dir: &Path) -> Arc<[Gitignore; 2]> {
        let mut own = self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let rules = own.entry(dir.to_path_buf()).or_insert_with(|| {
            Arc::new([
                read_ignore(dir, &dir.join(".ignore")),
                read_ignore(dir, &dir.join(".gitignore")),
            ])
        });
        Arc::clone(rules)
    }
}

/// The patterns of the ignore file at `file`, relative to `base`; empty when
/// there is no such file.
fn read_ignore(base: &Path, file: &Path) -> Gitignore {
    if !file.is_file() {
        return Gitignore::empty();
    }
    let mut builder = GitignoreBuilder::new(base);
    if let Some(e) = builder.add(file) {
        tracing::warn!(file = %file.display(), error = %e, "ignore file not fully read");
    }
    builder.build().unwrap_or_else(|e| {
        tracing::warn!(file = %file.display(), error = %e, "ignore file not read");
        Gitignore::empty()
    })
}

/// Reads a walked file as text and decides its language, or says why it
/// should be skipped (a `.h` read as C++ when only C was asked for is
/// `Excluded`). Never panics.
///
/// The walk's size and type checks are made again on the open file: one
/// swapped for a FIFO since would block a plain open and read forever (so
/// the open does not wait), and one grown since (a log being written) is
/// skipped and never read past the walk's size.
pub fn read_source(file: &SourceFile, cfg: &WalkConfig) -> Result<Source, SkipReason> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&file.abs_path)
        .map_err(SkipReason::Unreadable)?;
    let meta = opened.metadata().map_err(SkipReason::Unreadable)?;
    if !meta.is_file() || meta.len() > file.size {
        return Err(SkipReason::Changed);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    opened
        .take(file.size)
        .read_to_end(&mut bytes)
        .map_err(SkipReason::Unreadable)?;
    let (text, lossy) = decode(bytes)?;
    if has_generated_marker(&text) || is_minified(&text) {
        return Err(SkipReason::Generated);
    }
    let language = file.language.refine(&file.rel_path, &text);
    if cfg.languages.as_ref().is_some_and(|langs| !langs.contains(&language)) {
        return Err(SkipReason::Excluded);
    }
    Ok(Source { text, language, lossy })
}

/// Invalid bytes a text file may have, at most, and still be read (with
/// them replaced): a stray Latin-1 `é` in a comment must not drop the file,
/// a file in another encoding throughout is not worth indexing.
fn max_invalid(len: usize) -> usize {
    (len / 100).max(8)
}

/// A file's bytes as text, and whether some had to be replaced: UTF-8, or
/// UTF-16 when it opens with a byte-order mark.
fn decode(bytes: Vec<u8>) -> Result<(String, bool), SkipReason> {
    if let Some(little_endian) = utf16_bom(&bytes) {
        return decode_utf16(&bytes[2..], little_endian);
    }
    if bytes[..bytes.len().min(BINARY_PROBE)].contains(&0) {
        return Err(SkipReason::Binary);
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok((text, false)),
        Err(e) => {
            let bytes = e.into_bytes();
            let invalid: usize = bytes.utf8_chunks().map(|c| c.invalid().len()).sum();
            if invalid > max_invalid(bytes.len()) {
                return Err(SkipReason::NonUtf8 {
                    invalid,
                    len: bytes.len(),
                });
            }
            Ok((String::from_utf8_lossy(&bytes).into_owned(), true))
        }
    }
}

/// `Some(little_endian)` when `bytes` open with a UTF-16 byte-order mark.
fn utf16_bom(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [0xFF, 0xFE, ..] => Some(true),
        [0xFE, 0xFF, ..] => Some(false),
        _ => None,
    }
}

fn decode_utf16(bytes: &[u8], little_endian: bool) -> Result<(String, bool), SkipReason> {
    let units = bytes.chunks_exact(2).map(|pair| {
        let pair = [pair[0], pair[1]];
        if little_endian {
            u16::from_le_bytes(pair)
        } else {
            u16::from_be_bytes(pair)
        }
    });
    // A dangling final byte counts as one invalid unit.
    let mut invalid = bytes.len() % 2;
    let mut text = String::with_capacity(bytes.len() / 2);
    for c in char::decode_utf16(units) {
        text.push(c.unwrap_or_else(|_| {
            invalid += 1;
            char::REPLACEMENT_CHARACTER
        }));
    }
    if text.chars().take(BINARY_PROBE).any(|c| c == '\0') {
        return Err(SkipReason::Binary);
    }
    if invalid > max_invalid(bytes.len() / 2) {
        return Err(SkipReason::NonUtf8 {
            invalid,
            len: bytes.len(),
        });
    }
    Ok((text, invalid > 0))
}

fn glob_set(patterns: &[String]) -> Result<Option<GlobSet>, WalkError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|source| WalkError::Glob {
            pattern: pattern.clone(),
            source,
        })?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|source| WalkError::Glob {
        pattern: patterns.join(", "),
        source,
    })
}

/// `path` relative to `root`, `/`-separated; `None` if a component is not UTF-8.
fn rel_path(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut out = String::new();
    for component in rel.components() {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(component.as_os_str().to_str()?);
    }
    Some(out)
}

fn is_vendored_dir(entry: &DirEntry) -> bool {
    let Some(name) = entry.file_name().to_str() else {
        return false;
    };
    if VENDORED_DIRS.contains(&name) {
        return true;
    }
    let owners = match name {
        "target" => TARGET_OWNERS,
        "build" => BUILD_OWNERS,
        _ => return false,
    };
    let dir = entry.path();
    if dir.join("CACHEDIR.TAG").exists() || dir.join("CMakeCache.txt").exists() {
        return true;
    }
    dir.parent()
        .is_some_and(|parent| owners.iter().any(|f| parent.join(f).exists()))
}

fn is_generated_name(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel).to_ascii_lowercase();
    GENERATED_NAMES.contains(&name.as_str())
        || name.starts_with("zz_generated")
        || GENERATED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// A generated-code marker inside a comment on one of the first lines. Only
/// comment lines count, so prose that mentions "generated by" is not skipped.
fn has_generated_marker(text: &str) -> bool {
    text.lines().take(MARKER_LINES).any(|line| {
        let t = line.trim_start();
        let is_comment = ["//", "#", "/*", "*", "<!--", "--", ";", "%", "\"\"\"", "'''"]
            .iter()
            .any(|p| t.starts_with(p));
        if !is_comment || t.len() > 500 {
            return false;
        }
        says_generated(&t.to_ascii_lowercase())
    })
}

/// Whether a lowercased comment line says its own file is generated.
fn says_generated(comment: &str) -> bool {
    if GENERATED_ANYWHERE.iter().any(|m| comment.contains(m)) {
        return true;
    }
    let mut text = comment.trim_start_matches(|c: char| "/*#!;%-<\"' \t".contains(c));
    // A file name may open the line: `Makefile.in generated by automake`.
    if let Some((first, rest)) = text.split_once(' ')
        && first.contains('.')
    {
        text = rest;
    }
    if let Some(subject) = GENERATED_SUBJECTS.iter().find(|s| text.starts_with(*s)) {
        text = text[subject.len()..].trim_start();
        let Some(verb) = GENERATED_VERBS.iter().find(|v| text.starts_with(&format!("{v} "))) else {
            return false;
        };
        let rest = text[verb.len()..].trim_start();
        // Said of this file, a bare "generated" is enough.
        return rest.starts_with("generated") || GENERATED_OPENINGS.iter().any(|m| rest.starts_with(m));
    }
    GENERATED_OPENINGS.iter().any(|m| text.starts_with(m))
}

/// Minified bundles and one-line data dumps: long files made of very long lines.
fn is_minified(text: &str) -> bool {
    text.len() >= MINIFIED_MIN_BYTES && text.len() / (text.bytes().filter(|&b| b == b'\n').count() + 1) > MINIFIED_LINE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, bytes: &[u8]) {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, bytes).expect("write");
    }

    fn paths(walk: &Walk) -> Vec<&str> {
        walk.files.iter().map(|f| f.rel_path.as_str()).collect()
    }

    /// Walks and reads like the builder does, counting read-time skips.
    fn walk_and_read(root: &Path, cfg: &WalkConfig) -> (Vec<String>, SkipCounts) {
        let walk = walk(root, cfg).expect("walk");
        let mut skipped = walk.skipped;
        let mut kept = Vec::new();
        for file in &walk.files {
            match read_source(file, cfg) {
                Ok(source) => {
                    skipped.lossy_utf8 += u64::from(source.lossy);
                    kept.push(file.rel_path.clone());
                }
                Err(reason) => reason.count(&mut skipped),
            }
        }
        (kept, skipped)
    }

    #[test]
    fn keeps_source_sorted_with_languages_and_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "src/main.rs", b"fn main() {}\n");
        write(dir.path(), "README.md", b"# Hi\n");
        write(dir.path(), "src/a/lib.py", b"x = 1\n");
        let walk = walk(dir.path(), &WalkConfig::default()).expect("walk");
        assert_eq!(paths(&walk), vec!["README.md", "src/a/lib.py", "src/main.rs"]);
        assert_eq!(walk.files[2].language, Language::Rust);
        assert_eq!(walk.files[2].size, 13);
        assert_eq!(walk.files[2].abs_path, dir.path().join("src/main.rs"));
        assert_eq!(walk.skipped.total(), 0);
    }

    #[test]
    fn gitignore_and_hidden_files_are_respected_without_a_git_repo() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".gitignore", b"secret.rs\nout/\n");
        write(dir.path(), ".ignore", b"local.go\n");
        write(dir.path(), "secret.rs", b"fn s() {}\n");
        write(dir.path(), "local.go", b"package x\n");
        write(dir.path(), "out/gen.rs", b"fn g() {}\n");
        write(dir.path(), ".hidden/x.rs", b"fn h() {}\n");
        write(dir.path(), ".config.yaml", b"a: 1\n");
        write(dir.path(), "kept.rs", b"fn k() {}\n");
        let walk = walk(dir.path(), &WalkConfig::default()).expect("walk");
        assert_eq!(paths(&walk), vec!["kept.rs"]);
    }

    #[test]
    fn ignore_files_above_the_root_do_not_apply() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".gitignore", b"*\n");
        write(dir.path(), "repo/.gitignore", b"skip.rs\n");
        write(dir.path(), "repo/kept.rs", b"fn k() {}\n");
        write(dir.path(), "repo/skip.rs", b"fn s() {}\n");
        let walk = walk(&dir.path().join("repo"), &WalkConfig::default()).expect("walk");
        assert_eq!(paths(&walk), vec!["kept.rs"]);
    }

    /// A subdirectory of a git work tree is walked with the work tree's
    /// ignore rules above it, and none from beyond the work tree.
    #[test]
    fn a_subdirectory_of_a_repository_keeps_the_repository_ignore_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".gitignore", b"*\n");
        write(dir.path(), "mono/.git/info/exclude", b"local.py\n");
        write(dir.path(), "mono/.gitignore", b"generated.py\n");
        write(dir.path(), "mono/services/.ignore", b"scratch.py\n");
        for f in ["kept.py", "generated.py", "local.py", "scratch.py"] {
            write(dir.path(), &format!("mono/services/api/{f}"), b"x = 1\n");
        }
        let walk = walk(&dir.path().join("mono/services/api"), &WalkConfig::default()).expect("walk");
        assert_eq!(paths(&walk), vec!["kept.py"]);
    }

    /// A repository with its own `.git` inside another work tree (a dotfiles
    /// repository in a home directory ignoring `*`, a submodule) is walked
    /// with none of the outer tree's rules, as git would.
    #[test]
    fn a_repository_nested_in_another_work_tree_gets_none_of_its_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outer = dir.path().join("outer");
        write(&outer, ".git/HEAD", b"ref: refs/heads/main\n");
        write(&outer, ".gitignore", b"*\n");
        write(&outer, "inner/.git/HEAD", b"ref: refs/heads/main\n");
        write(&outer, "inner/a.rs", b"fn a() {}\n");
        // A submodule's `.git` is a file naming the real git directory.
        write(&outer, "module/.git", b"gitdir: ../.git/modules/module\n");
        write(&outer, "module/b.rs", b"fn b() {}\n");
        assert_eq!(
            paths(&walk(&outer.join("inner"), &WalkConfig::default()).expect("walk")),
            vec!["a.rs"]
        );
        assert_eq!(
            paths(&walk(&outer.join("module"), &WalkConfig::default()).expect("walk")),
            vec!["b.rs"]
        );
    }

    /// Anchored patterns of an enclosing ignore file are relative to that
    /// file's directory, not to the walk root or the process's cwd.
    #[test]
    fn enclosing_patterns_are_relative_to_their_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outer = dir.path().join("outer");
        write(&outer, ".git/HEAD", b"ref: refs/heads/main\n");
        write(&outer, ".gitignore", b"/sub/gen/\n/docs/\n*.py\n");
        write(&outer, "sub/.gitignore", b"!keep.py\n");
        for f in ["gen/x.rs", "docs/guide.md", "keep.rs", "keep.py", "drop.py"] {
            write(&outer, &format!("sub/{f}"), b"x\n");
        }
        let walked = walk(&outer.join("sub"), &WalkConfig::default()).expect("walk");
        assert_eq!(paths(&walked), vec!["docs/guide.md", "keep.py", "keep.rs"]);

        let rules = EnclosingRules::new(&outer.join("sub")).expect("rules from above");
        assert!(rules.excludes(Path::new("gen"), true));
        assert!(!rules.excludes(Path::new("docs"), true));
        assert!(!rules.excludes(Path::new("gen"), false), "a directory-only pattern");
        assert!(rules.excludes(Path::new("a/drop.py"), false));
        assert!(
            !rules.excludes(Path::new("keep.py"), false),
            "re-included by the tree's own file"
        );
        assert!(EnclosingRules::new(&outer).is_none(), "the top of a work tree has none");
    }

    #[test]
    fn binary_non_utf8_and_oversize_are_skipped_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "ok.rs", b"fn ok() {}\n");
        write(dir.path(), "blob.rs", b"fn x() {}\0\0\x01binary");
        write(dir.path(), "latin1.py", b"name = 'caf\xe9'\n");
        write(dir.path(), "cp1252.py", &b"x = '\xe9\xe8\xe0'\n".repeat(10));
        write(dir.path(), "huge.rs", &vec![b'a'; 300]);
        write(dir.path(), "image.png", b"\x89PNG\r\n");
        let cfg = WalkConfig {
            max_file_bytes: 200,
            ..WalkConfig::default()
        };
        let (kept, skipped) = walk_and_read(dir.path(), &cfg);
        assert_eq!(kept, vec!["latin1.py", "ok.rs"]);
        assert_eq!(
            skipped,
            SkipCounts {
                binary: 1,
                too_large: 1,
                non_utf8: 1,
                unknown_language: 1,
                lossy_utf8: 1,
                ..SkipCounts::default()
            }
        );
        assert_eq!(skipped.total(), 4);
    }

    fn source_file(dir: &Path, rel: &str, bytes: &[u8]) -> SourceFile {
        write(dir, rel, bytes);
        SourceFile {
            rel_path: rel.into(),
            abs_path: dir.join(rel),
            language: Language::from_path(rel).expect("a known language"),
            size: bytes.len() as u64,
        }
    }

    /// A few bytes that are not UTF-8 (a Latin-1 `é` in a comment) are
    /// replaced rather than dropping the file.
    #[test]
    fn a_stray_invalid_byte_keeps_the_file() {
        use crate::index::chunk::{ChunkConfig, chunk_file};
        let dir = tempfile::tempdir().expect("tempdir");
        let file = source_file(dir.path(), "cafe.rs", b"// caf\xe9\nfn f(){}\n");
        let source = read_source(&file, &WalkConfig::default()).expect("kept");
        assert!(source.lossy);
        assert_eq!(source.text, "// caf\u{fffd}\nfn f(){}\n");
        let chunks = chunk_file("cafe.rs", source.language, &source.text, &ChunkConfig::default());
        assert!(chunks.iter().any(|c| c.symbol.as_deref() == Some("f")), "{chunks:?}");
    }

    #[test]
    fn utf16_with_a_byte_order_mark_is_transcoded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "def f():\n    return 'é'\n";
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        for (name, bytes) in [("le.py", le), ("be.py", be)] {
            let source = read_source(&source_file(dir.path(), name, &bytes), &WalkConfig::default()).expect(name);
            assert_eq!((source.text.as_str(), source.lossy), (text, false), "{name}");
        }
        // Without a mark, its NUL bytes make it binary.
        let bare: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let err = read_source(&source_file(dir.path(), "bare.py", &bare), &WalkConfig::default()).unwrap_err();
        assert!(matches!(err, SkipReason::Binary), "{err}");
    }

    #[test]
    fn include_exclude_and_language_filters() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "src/a.rs", b"fn a() {}\n");
        write(dir.path(), "src/b.py", b"b = 1\n");
        write(dir.path(), "src/gen/c.rs", b"fn c() {}\n");
        write(dir.path(), "docs/guide.md", b"# G\n");
        write(dir.path(), "tests/t.rs", b"fn t() {}\n");
        let cfg = WalkConfig {
            include: vec!["src/**".into(), "*.md".into()],
            exclude: vec!["src/gen".into(), "**/*.py".into()],
            ..WalkConfig::default()
        };
        let walk1 = walk(dir.path(), &cfg).expect("walk");
        assert_eq!(paths(&walk1), vec!["docs/guide.md", "src/a.rs"]);
        // tests/t.rs not included, b.py excluded, src/gen pruned once.
        assert_eq!(walk1.skipped.excluded, 3);

        let only_rust = WalkConfig {
            languages: Some(vec![Language::Rust]),
            ..WalkConfig::default()
        };
        let walk2 = walk(dir.path(), &only_rust).expect("walk");
        assert_eq!(paths(&walk2), vec!["src/a.rs", "src/gen/c.rs", "tests/t.rs"]);
        assert_eq!(walk2.skipped.excluded, 2);

        let bad = WalkConfig {
            include: vec!["src/[".into()],
            ..WalkConfig::default()
        };
        assert!(matches!(walk(dir.path(), &bad), Err(WalkError::Glob { .. })));
    }

    #[test]
    fn vendored_and_build_output_dirs_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "Cargo.toml", b"[package]\n");
        write(dir.path(), "target/debug/build.rs", b"fn b() {}\n");
        write(dir.path(), "vendor/lib/x.go", b"package x\n");
        write(dir.path(), "web/node_modules/react/index.js", b"x()\n");
        write(dir.path(), "web/dist/app.js", b"x()\n");
        write(dir.path(), "web/app.min.js", b"x()\n");
        write(dir.path(), "api/service.pb.go", b"package api\n");
        // A `build/` directory without a build manifest beside it is source.
        write(dir.path(), "tools/build/release.sh", b"echo hi\n");
        write(dir.path(), "src/lib.rs", b"fn l() {}\n");
        let walk = walk(dir.path(), &WalkConfig::default()).expect("walk");
        assert_eq!(paths(&walk), vec!["Cargo.toml", "src/lib.rs", "tools/build/release.sh"]);
        // target, vendor, node_modules, dist (pruned dirs) + app.min.js + service.pb.go
        assert_eq!(walk.skipped.vendored_or_generated, 6);
    }

    #[test]
    fn a_comment_is_a_generated_marker_only_when_it_is_about_its_own_file() {
        for line in [
            "// code generated by protoc-gen-go. do not edit.",
            "# generated by django 4.2 on 2024-01-01",
            "# makefile.in generated by automake 1.13.4 from makefile.am.",
            "// <auto-generated>",
            "// this code was generated by a tool.",
            "# autogenerated by thrift compiler",
            "# this file is autogenerated by pip-compile-multi",
            "/* this file has been generated by bison */",
            "# this file is generated, changes will be lost",
        ] {
            assert!(says_generated(line), "{line}");
        }
        for line in [
            "# this module includes files automatically generated from ply",
            "# this tests the compilation of the source code generated with",
            "# this file defines generated ids",
            "# generated ids start at one",
            "# licensed under a 3-clause bsd style license",
        ] {
            assert!(!says_generated(line), "{line}");
        }
    }

    #[test]
    fn generated_markers_and_minified_files_are_skipped_at_read_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "api.go",
            b"// Code generated by protoc-gen-go. DO NOT EDIT.\npackage api\n",
        );
        write(dir.path(), "schema.rs", b"// @generated by build.rs\nfn x() {}\n");
        write(
            dir.path(),
            "mig.py",
            b"# Generated by Django 4.2 on 2024-01-01\nx = 1\n",
        );
        write(dir.path(), "prose.md", b"# Ids\n\nIds are generated by the server.\n");
        write(
            dir.path(),
            "lextab.py",
            b"# This file was automatically generated from ply.\nx = 1\n",
        );
        // About other files, not this one: kept.
        write(
            dir.path(),
            "cds.py",
            b"# This module includes files automatically generated from ply (these end in\n# _lextab.py).\ndef p_unit(p): pass\n",
        );
        write(
            dir.path(),
            "test_codegen.py",
            b"# This tests the compilation of the source code generated with codegen.\nx = 1\n",
        );
        let mut long_line = b"var a=1;".repeat(1000);
        long_line.push(b'\n');
        write(dir.path(), "bundle.js", &long_line);
        write(dir.path(), "ok.rs", b"// Handwritten.\nfn ok() {}\n");
        let (kept, skipped) = walk_and_read(dir.path(), &WalkConfig::default());
        assert_eq!(kept, vec!["cds.py", "ok.rs", "prose.md", "test_codegen.py"]);
        assert_eq!(skipped.vendored_or_generated, 5);
    }

    /// A `.h` header is read as C++ when its code is C++, so its classes and
    /// methods are symbols, and it passes a `--lang` filter of that language.
    #[test]
    fn a_cpp_header_named_h_is_chunked_as_cpp() {
        use crate::index::chunk::{ChunkConfig, chunk_file};
        use crate::model::SymbolKind;
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "ui/widget.h",
            b"#pragma once\nnamespace ui {\nclass Widget {\n public:\n  void Resize(int w, int h) {\n    w_ = w;\n    h_ = h;\n  }\n private:\n  int w_, h_;\n};\n}  // namespace ui\n",
        );
        write(
            dir.path(),
            "geo/point.h",
            b"#ifndef POINT_H\n#define POINT_H\nstruct point {\n  int x;\n  int y;\n};\nstatic int point_len(struct point *p) {\n  return p->x + p->y;\n}\n#endif\n",
        );
        let cfg = WalkConfig::default();
        let walked = walk(dir.path(), &cfg).expect("walk");
        let read: Vec<Source> = walked
            .files
            .iter()
            .map(|f| read_source(f, &cfg).expect("read"))
            .collect();
        assert_eq!(
            read.iter().map(|s| s.language).collect::<Vec<_>>(),
            [Language::C, Language::Cpp]
        );

        let widget = chunk_file("ui/widget.h", read[1].language, &read[1].text, &ChunkConfig::default());
        let symbols: Vec<_> = widget
            .iter()
            .map(|c| (c.symbol.as_deref(), c.kind, c.parent.as_deref()))
            .collect();
        assert!(
            symbols.contains(&(Some("Widget"), SymbolKind::Class, Some("ui"))),
            "{symbols:?}"
        );
        assert!(
            symbols.contains(&(Some("Resize"), SymbolKind::Method, Some("Widget"))),
            "{symbols:?}"
        );
        let point = chunk_file("geo/point.h", read[0].language, &read[0].text, &ChunkConfig::default());
        let symbols: Vec<_> = point.iter().map(|c| (c.symbol.as_deref(), c.kind)).collect();
        assert!(symbols.contains(&(Some("point"), SymbolKind::Struct)), "{symbols:?}");
        assert!(
            symbols.contains(&(Some("point_len"), SymbolKind::Function)),
            "{symbols:?}"
        );

        // A language filter keeps a `.h` through the walk and decides once it is read.
        let only_cpp = WalkConfig {
            languages: Some(vec![Language::Cpp]),
            ..WalkConfig::default()
        };
        let (kept, skipped) = walk_and_read(dir.path(), &only_cpp);
        assert_eq!(kept, vec!["ui/widget.h"]);
        assert_eq!(skipped.excluded, 1);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed() {
        let outside = tempfile::tempdir().expect("tempdir");
        write(outside.path(), "elsewhere.rs", b"fn e() {}\n");
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "real.rs", b"fn r() {}\n");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).expect("symlink");
        std::os::unix::fs::symlink(dir.path().join("real.rs"), dir.path().join("alias.rs")).expect("symlink");
        let walk = walk(dir.path(), &WalkConfig::default()).expect("walk");
        assert_eq!(paths(&walk), vec!["real.rs"]);
        assert_eq!(walk.skipped.symlink, 2, "left out, and counted");
        assert_eq!(walk.skipped.total(), 2);
    }

    #[test]
    fn unusable_root_is_an_error_and_unreadable_files_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            walk(&dir.path().join("missing"), &WalkConfig::default()),
            Err(WalkError::Root { .. })
        ));
        write(dir.path(), "file.rs", b"fn f() {}\n");
        assert!(matches!(
            walk(&dir.path().join("file.rs"), &WalkConfig::default()),
            Err(WalkError::NotADirectory(_))
        ));
        let gone = SourceFile {
            rel_path: "gone.rs".into(),
            abs_path: dir.path().join("gone.rs"),
            language: Language::Rust,
            size: 1,
        };
        let err = read_source(&gone, &WalkConfig::default()).unwrap_err();
        let SkipReason::Unreadable(io) = &err else {
            panic!("{err}");
        };
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound, "the cause is kept");
    }

    /// Between the walk and the read a file may grow past what the walk let
    /// through, or be replaced by a FIFO, whose read would never end.
    #[test]
    fn a_file_changed_since_the_walk_is_not_read_unbounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "grows.rs", b"fn a() {}\n");
        write(dir.path(), "pipe.rs", b"fn b() {}\n");
        let walk = walk(dir.path(), &WalkConfig::default()).expect("walk");
        std::fs::write(dir.path().join("grows.rs"), "fn a() {}\n".repeat(1000)).unwrap();
        std::fs::remove_file(dir.path().join("pipe.rs")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("pipe.rs"))
            .status()
            .expect("mkfifo");
        assert!(made.success());
        for file in &walk.files {
            let err = read_source(file, &WalkConfig::default()).unwrap_err();
            assert!(matches!(err, SkipReason::Changed), "{}: {err}", file.rel_path);
        }
    }
}
