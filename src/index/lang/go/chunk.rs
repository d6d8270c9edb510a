//! Go: functions, methods (parent = receiver type), type declarations, imports.

use tree_sitter::Node;

use crate::index::chunk::Refs;
use crate::index::chunk::code::{Ancestry, Def, Enclosing, Grammar, field, field_text, last_name, text, unquote};
use crate::model::SymbolKind;

pub(super) static GRAMMAR: Grammar = Grammar {
    language,
    classify,
    refs,
    attachable,
};

fn language() -> tree_sitter::Language {
    tree_sitter_go::LANGUAGE.into()
}

fn attachable(kind: &str) -> bool {
    kind == "comment"
}

fn classify<'n>(node: Node<'n>, src: &str, _enclosing: Option<Enclosing>, up: Ancestry<'_, 'n>) -> Option<Def<'n>> {
    match node.kind() {
        "function_declaration" => Some(Def::new(SymbolKind::Function, field_text(node, "name", src)?, node)),
        "method_declaration" => {
            let mut def = Def::new(SymbolKind::Method, field_text(node, "name", src)?, node);
            def.parent = receiver_type(node, src).map(str::to_string);
            Some(def)
        }
        "type_spec" | "type_alias" => {
            let kind = match field(node, "type").map(|t| t.kind()) {
                Some("struct_type") => SymbolKind::Struct,
                Some("interface_type") => SymbolKind::Interface,
                _ => SymbolKind::Type,
            };
            // `type Foo struct {...}` covers the `type` keyword and the doc comment
            // above it; in a `type ( ... )` group each spec stands alone.
            let range = match up.parent(node) {
                Some(p) if p.kind() == "type_declaration" && p.named_child_count() == 1 => p,
                _ => node,
            };
            Some(Def::new(kind, field_text(node, "name", src)?, range))
        }
        _ => None,
    }
}

/// `func (s *Server[T]) Run()` → `Server`.
fn receiver_type<'t>(method: Node<'_>, src: &'t str) -> Option<&'t str> {
    let receiver = field(method, "receiver")?;
    let param = receiver
        .named_children(&mut receiver.walk())
        .find(|c| c.kind() == "parameter_declaration")?;
    last_name(field(param, "type")?, src)
}

fn refs<'t>(node: Node<'_>, src: &'t str, out: &mut Refs<'t>) {
    let row = node.start_position().row;
    match node.kind() {
        "call_expression" => {
            if let Some(name) = field(node, "function").and_then(|f| last_name(f, src)) {
                out.call(row, name);
            }
        }
        "composite_literal" => {
            let ty = field(node, "type");
            if let Some(ty) = ty.filter(|t| matches!(t.kind(), "type_identifier" | "qualified_type" | "generic_type"))
                && let Some(name) = last_name(ty, src)
            {
                out.call(row, name);
            }
        }
        "import_spec" => {
            if let Some(path) = field(node, "path") {
                out.import(row, unquote(text(path, src)));
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

    const SRC: &str = r#"package server

import (
	"fmt"
	nethttp "net/http"
)

// Server serves.
type Server struct {
	addr string
}

type (
	ID    int
	Store interface {
		Get(id ID) string
	}
)

// NewServer builds a server.
func NewServer(addr string) *Server {
	return &Server{addr: addr}
}

func (s *Server) Run() error {
	fmt.Println("run", s.addr)
	return nethttp.ListenAndServe(s.addr, nil)
}

func (s Stack[T]) Push(v T) {
	s.items = append(s.items, v)
}
"#;

    #[test]
    fn go_symbols_kinds_parents_and_lines() {
        let chunks = chunk_file("server.go", Language::Go, SRC, &ChunkConfig::default());
        assert_content_matches_lines(SRC, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 6),
                (Some("Server"), Struct, None, 8, 11),
                (None, Window, None, 13, 14),
                (Some("Store"), Interface, None, 15, 17),
                (Some("NewServer"), Function, None, 20, 23),
                (Some("Run"), Method, Some("Server"), 25, 28),
                (Some("Push"), Method, Some("Stack"), 30, 32),
            ]
        );
        assert_eq!(chunks[0].imports, vec!["fmt", "net/http"]);
        assert_eq!(find(&chunks, "NewServer", Function).calls, vec!["Server"]);
        assert_eq!(find(&chunks, "Run", Method).calls, vec!["ListenAndServe", "Println"]);
        assert_eq!(find(&chunks, "Push", Method).calls, vec!["append"]);
    }
}
