//! Rust: chunked by item (functions, impls, traits, modules); `use` paths
//! resolve against the crate's module files.

mod chunk;
mod imports;

use super::LanguageSupport;

pub(crate) static SUPPORT: LanguageSupport = LanguageSupport {
    grammar: &chunk::GRAMMAR,
    resolve_import: imports::resolve,
    receivers: &["self", "Self"],
    package_dirs: false,
};
