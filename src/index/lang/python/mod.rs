//! Python: functions, classes and methods (decorators included); dotted and
//! relative imports resolve to modules and packages.

mod chunk;
mod imports;

use super::LanguageSupport;

pub(crate) static SUPPORT: LanguageSupport = LanguageSupport {
    grammar: &chunk::GRAMMAR,
    resolve_import: imports::resolve,
    receivers: &["self", "cls"],
    package_dirs: false,
};
