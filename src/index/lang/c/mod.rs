//! C and C++: functions, types, `Foo::bar` definitions outside their class,
//! test macros; `#include "x.h"` resolves relative to the includer.

mod chunk;
mod imports;

use super::LanguageSupport;

pub(crate) static C: LanguageSupport = LanguageSupport {
    grammar: &chunk::C,
    resolve_import: imports::resolve,
    receivers: &["this"],
    package_dirs: false,
};

pub(crate) static CPP: LanguageSupport = LanguageSupport {
    grammar: &chunk::CPP,
    resolve_import: imports::resolve,
    receivers: &["this"],
    package_dirs: false,
};
