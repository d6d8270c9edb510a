//! Go: functions, methods (the receiver type is the parent) and types; a
//! directory is a package, so same-package calls need no import.

mod chunk;
mod imports;

use super::LanguageSupport;

pub(crate) static SUPPORT: LanguageSupport = LanguageSupport {
    grammar: &chunk::GRAMMAR,
    resolve_import: imports::resolve,
    receivers: &["self", "this"],
    package_dirs: true,
};
