//! Python: functions, classes and their methods (decorators included), imports.

use tree_sitter::Node;

use crate::index::chunk::Refs;
use crate::index::chunk::code::{Ancestry, Def, Enclosing, Grammar, field, field_text, last_name, text};
use crate::model::SymbolKind;

pub(super) static GRAMMAR: Grammar = Grammar {
    language,
    classify,
    refs,
    attachable,
};

fn language() -> tree_sitter::Language {
    tree_sitter_python::LANGUAGE.into()
}

fn attachable(kind: &str) -> bool {
    kind == "comment"
}

fn classify<'n>(node: Node<'n>, src: &str, enclosing: Option<Enclosing>, up: Ancestry<'_, 'n>) -> Option<Def<'n>> {
    let range = || up.widen(node, &["decorated_definition"]);
    match node.kind() {
        "function_definition" => {
            let kind = match enclosing {
                Some(e) if e.is_type() => SymbolKind::Method,
                _ => SymbolKind::Function,
            };
            Some(Def::new(kind, field_text(node, "name", src)?, range()))
        }
        "class_definition" => Some(Def::container(
            SymbolKind::Class,
            field_text(node, "name", src)?,
            range(),
        )),
        _ => None,
    }
}

fn refs<'t>(node: Node<'_>, src: &'t str, out: &mut Refs<'t>) {
    let row = node.start_position().row;
    match node.kind() {
        "call" => {
            if let Some(name) = field(node, "function").and_then(|f| last_name(f, src)) {
                out.call(row, name);
            }
        }
        "import_statement" => {
            let mut cursor = node.walk();
            for name in node.children_by_field_name("name", &mut cursor) {
                let module = if name.kind() == "aliased_import" {
                    field(name, "name")
                } else {
                    Some(name)
                };
                if let Some(module) = module {
                    out.import(row, text(module, src));
                }
            }
        }
        // `from m import a, b as c` records `m.a` and `m.b`: each name may be
        // a submodule (its own file) or an item of `m` (a symbol to link to).
        "import_from_statement" => {
            if let Some(module) = field_text(node, "module_name", src) {
                let mut cursor = node.walk();
                let names: Vec<&str> = node
                    .children_by_field_name("name", &mut cursor)
                    .filter_map(|n| {
                        if n.kind() == "aliased_import" {
                            field(n, "name")
                        } else {
                            Some(n)
                        }
                    })
                    .map(|n| text(n, src))
                    .collect();
                if names.is_empty() {
                    out.import(row, module);
                }
                for name in names {
                    let sep = if module.ends_with('.') { "" } else { "." };
                    out.import(row, format!("{module}{sep}{name}"));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::chunk::test_util::*;
    use crate::index::chunk::{ChunkConfig, chunk_file};
    use crate::model::Language;

    const SRC: &str = r#"import os.path
import numpy as np
from .models import User, Group
from ..util import helpers

# Cache size.
CACHE = 10


@dataclass
class Repo(Base):
    """A repository."""

    name: str

    def __init__(self, name):
        self.name = name
        super().__init__()

    @property
    def path(self):
        def inner():
            return os.path.join("/", self.name)
        return inner()


def load(path):
    repo = Repo(path)
    return helpers.load_all(repo)


if __name__ == "__main__":
    load(sys.argv[1])
"#;

    #[test]
    fn python_symbols_kinds_parents_and_lines() {
        let chunks = chunk_file("repo.py", Language::Python, SRC, &ChunkConfig::default());
        assert_content_matches_lines(SRC, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 7),
                (Some("Repo"), Class, None, 10, 24),
                (Some("__init__"), Method, Some("Repo"), 16, 18),
                (Some("path"), Method, Some("Repo"), 20, 24),
                (Some("load"), Function, None, 27, 29),
                (None, Window, None, 32, 33),
            ]
        );
        assert_eq!(
            chunks[0].imports,
            vec!["..util.helpers", ".models.Group", ".models.User", "numpy", "os.path"]
        );
        assert_eq!(find(&chunks, "__init__", Method).calls, vec!["__init__", "super"]);
        assert_eq!(find(&chunks, "path", Method).calls, vec!["inner", "join"]);
        assert_eq!(find(&chunks, "load", Function).calls, vec!["Repo", "load_all"]);
        assert!(chunks[0].content.contains("CACHE = 10"));
    }

    #[test]
    fn from_imports_name_each_module_or_item() {
        let src =
            "from . import views\nfrom .. import a as b\nfrom pkg.sub import *\nfrom pkg import (x,\n    y as z)\n";
        let chunks = chunk_file("m.py", Language::Python, src, &ChunkConfig::default());
        assert_eq!(chunks[0].imports, vec!["..a", ".views", "pkg.sub", "pkg.x", "pkg.y"]);
    }

    #[test]
    fn python_syntax_error_keeps_valid_symbols() {
        let src = "def good_one():\n    return 1\n\ndef broken(:\n    pass pass )\n\nclass Fine:\n    def ok(self):\n        return 2\n";
        let chunks = chunk_file("bad.py", Language::Python, src, &ChunkConfig::default());
        assert_content_matches_lines(src, &chunks);
        let named: Vec<_> = chunks.iter().filter_map(|c| c.symbol.as_deref()).collect();
        assert!(named.contains(&"good_one"), "{:#?}", outline(&chunks));
        assert!(named.contains(&"Fine"), "{:#?}", outline(&chunks));
        assert!(named.contains(&"ok"), "{:#?}", outline(&chunks));
        assert_eq!(find(&chunks, "ok", SymbolKind::Method).parent.as_deref(), Some("Fine"));
        // The broken lines are still indexed somewhere.
        assert!(chunks.iter().any(|c| c.content.contains("pass pass")));
    }
}
