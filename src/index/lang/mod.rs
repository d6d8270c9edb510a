//! What the indexer knows about each programming language, one folder per
//! language and one [`LanguageSupport`] record each: how to chunk it (a
//! tree-sitter [`Grammar`]), how its imports resolve to repository files, what
//! its methods call their receiver, and whether a directory is a package.
//!
//! Adding a language: add the variant (with its extensions and aliases) to
//! `model::Language`, the grammar crate to Cargo.toml, a folder here with a
//! `chunk.rs` grammar and an `imports.rs` resolver, and one row to [`support`].
//! Languages without a record (prose, config) are chunked by text rules.

mod c;
mod go;
mod java;
mod js;
mod python;
mod rust;

use crate::index::chunk::code::Grammar;
use crate::index::graph::imports::{ImportTarget, RepoFiles};
use crate::model::Language;

/// One language's rules for the chunker and the graph builder.
pub(crate) struct LanguageSupport {
    pub(crate) grammar: &'static Grammar,
    /// Resolves one import string of `importer` (already trimmed).
    pub(crate) resolve_import: fn(&RepoFiles, &str, &str) -> Option<ImportTarget>,
    /// Qualifiers that mean "the caller's own type" (`self.run()`, `this.run()`).
    pub(crate) receivers: &'static [&'static str],
    /// A directory is a package: calls within it need no import.
    pub(crate) package_dirs: bool,
}

/// The record of `language`, `None` for prose and config formats.
pub(crate) fn support(language: Language) -> Option<&'static LanguageSupport> {
    Some(match language {
        Language::Rust => &rust::SUPPORT,
        Language::Python => &python::SUPPORT,
        Language::Go => &go::SUPPORT,
        Language::JavaScript => &js::JAVASCRIPT,
        Language::TypeScript => &js::TYPESCRIPT,
        Language::Tsx => &js::TSX,
        Language::Java => &java::SUPPORT,
        Language::C => &c::C,
        Language::Cpp => &c::CPP,
        Language::Markdown | Language::Yaml | Language::Toml | Language::Json | Language::Shell | Language::Text => {
            return None;
        }
    })
}
