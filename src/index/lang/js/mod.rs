//! JavaScript, TypeScript and TSX: one chunker with three grammars; functions
//! bound to names count as functions, relative imports resolve to files.

mod chunk;
mod imports;

use super::LanguageSupport;

pub(crate) static JAVASCRIPT: LanguageSupport = LanguageSupport {
    grammar: &chunk::JAVASCRIPT,
    resolve_import: imports::resolve,
    receivers: &["this", "self"],
    package_dirs: false,
};

pub(crate) static TYPESCRIPT: LanguageSupport = LanguageSupport {
    grammar: &chunk::TYPESCRIPT,
    resolve_import: imports::resolve,
    receivers: &["this", "self"],
    package_dirs: false,
};

pub(crate) static TSX: LanguageSupport = LanguageSupport {
    grammar: &chunk::TSX,
    resolve_import: imports::resolve,
    receivers: &["this", "self"],
    package_dirs: false,
};
