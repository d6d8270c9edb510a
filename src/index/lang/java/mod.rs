//! Java: classes, interfaces, enums and methods; a directory is a package.

mod chunk;
mod imports;

use super::LanguageSupport;

pub(crate) static SUPPORT: LanguageSupport = LanguageSupport {
    grammar: &chunk::GRAMMAR,
    resolve_import: imports::resolve,
    receivers: &["this"],
    package_dirs: true,
};
