//! C and C++: functions, structs/classes/unions/enums (named directly or through
//! `typedef`), namespaces, methods defined in the class or as `Foo::bar`
//! outside it; `#include` targets. Preprocessor conditionals are transparent, so
//! code inside an include guard is chunked like any other.

use tree_sitter::Node;

use crate::index::chunk::Refs;
use crate::index::chunk::code::{Ancestry, Def, Enclosing, Grammar, field, last_name, text, type_qualifier, unquote};
use crate::model::SymbolKind;

pub(super) static C: Grammar = Grammar {
    language: c,
    classify,
    refs,
    attachable,
};
pub(super) static CPP: Grammar = Grammar {
    language: cpp,
    classify,
    refs,
    attachable,
};

fn c() -> tree_sitter::Language {
    tree_sitter_c::LANGUAGE.into()
}

fn cpp() -> tree_sitter::Language {
    tree_sitter_cpp::LANGUAGE.into()
}

fn attachable(kind: &str) -> bool {
    kind == "comment"
}

const WRAPPERS: &[&str] = &["template_declaration"];

fn classify<'n>(node: Node<'n>, src: &str, enclosing: Option<Enclosing>, up: Ancestry<'_, 'n>) -> Option<Def<'n>> {
    match node.kind() {
        // `~Shape() = default;` has no body: a declaration, not a definition.
        "function_definition" if field(node, "body").is_some() => {
            let (name, scope) = function_name(node, src)?;
            if let Some((test, suite)) = macro_test_name(node, name, src) {
                let mut def = Def::new(SymbolKind::Function, test, up.widen(node, WRAPPERS));
                def.parent = suite.map(str::to_string);
                return Some(def);
            }
            let in_type = enclosing.is_some_and(|e| e.is_type());
            let kind = if in_type || scope.is_some() {
                SymbolKind::Method
            } else {
                SymbolKind::Function
            };
            let mut def = Def::new(kind, name, up.widen(node, WRAPPERS));
            def.parent = scope.map(str::to_string);
            Some(def)
        }
        "struct_specifier" | "class_specifier" | "union_specifier" | "enum_specifier" => {
            field(node, "body")?;
            let kind = match node.kind() {
                "class_specifier" => SymbolKind::Class,
                "enum_specifier" => SymbolKind::Enum,
                _ => SymbolKind::Struct,
            };
            // `typedef struct {...} Foo;` is named by the typedef and covers it.
            let typedef = up.parent_of_kind(node, &["type_definition"]);
            let name = match field(node, "name") {
                Some(n) => last_name(n, src)?,
                None => last_name(field(typedef?, "declarator")?, src)?,
            };
            let range = up.widen(typedef.unwrap_or(node), WRAPPERS);
            Some(if kind == SymbolKind::Enum {
                Def::new(kind, name, range)
            } else {
                Def::container(kind, name, range)
            })
        }
        "namespace_definition" => Some(Def::container(
            SymbolKind::Module,
            text(field(node, "name")?, src),
            node,
        )),
        "type_definition" if !has_body(field(node, "type")) => Some(Def::new(
            SymbolKind::Type,
            last_name(field(node, "declarator")?, src)?,
            node,
        )),
        "alias_declaration" => Some(Def::new(
            SymbolKind::Type,
            text(field(node, "name")?, src),
            up.widen(node, WRAPPERS),
        )),
        _ => None,
    }
}

fn has_body(ty: Option<Node<'_>>) -> bool {
    ty.is_some_and(|t| field(t, "body").is_some())
}

/// A function definition's name and, for `Foo::bar`, the scope `Foo`.
fn function_name<'t>(definition: Node<'_>, src: &'t str) -> Option<(&'t str, Option<&'t str>)> {
    let mut node = field(definition, "declarator")?;
    for _ in 0..16 {
        match node.kind() {
            "function_declarator"
            | "pointer_declarator"
            | "reference_declarator"
            | "parenthesized_declarator"
            | "attributed_declarator" => {
                node = field(node, "declarator").or_else(|| {
                    node.named_children(&mut node.walk())
                        .find(|c| !c.kind().starts_with("attribute"))
                })?;
            }
            "qualified_identifier" => {
                let scope = field(node, "scope").and_then(|s| last_name(s, src));
                let name = field(node, "name")?;
                if name.kind() == "qualified_identifier" {
                    node = name;
                    continue;
                }
                return Some((name_text(name, src)?, scope));
            }
            _ => return Some((name_text(node, src)?, None)),
        }
    }
    None
}

/// Test macros such as GoogleTest's `TEST(Suite, Name) { ... }` parse as a
/// function named `TEST`; name them after the test (`Name`, parent `Suite`) so
/// hundreds of tests are not all called `TEST`.
fn macro_test_name<'t>(definition: Node<'_>, name: &str, src: &'t str) -> Option<(&'t str, Option<&'t str>)> {
    let macro_like = name.len() >= 2
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && name.bytes().any(|b| b.is_ascii_uppercase());
    if !macro_like {
        return None;
    }
    let mut declarator = field(definition, "declarator")?;
    while declarator.kind() != "function_declarator" {
        declarator = field(declarator, "declarator")?;
    }
    let params = field(declarator, "parameters")?;
    let args: Vec<&str> = params
        .named_children(&mut params.walk())
        .map(|p| text(p, src).trim())
        .collect();
    let plain = |a: &&str| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if args.is_empty() || !args.iter().all(plain) {
        return None;
    }
    let last = args.last()?;
    Some((last, (args.len() >= 2).then_some(args[0])))
}

fn name_text<'t>(node: Node<'_>, src: &'t str) -> Option<&'t str> {
    match node.kind() {
        // `~Foo`, `operator==`: the whole token is the name.
        "destructor_name" | "operator_name" => Some(text(node, src)),
        _ => last_name(node, src),
    }
}

fn refs<'t>(node: Node<'_>, src: &'t str, out: &mut Refs<'t>) {
    let row = node.start_position().row;
    match node.kind() {
        "call_expression" => {
            let Some(function) = field(node, "function") else {
                return;
            };
            if let Some(name) = last_name(function, src) {
                out.call(row, name);
            }
            if function.kind() == "qualified_identifier"
                && let Some(ty) = field(function, "scope").and_then(|s| type_qualifier(s, src))
            {
                out.call(row, ty);
            }
        }
        "new_expression" => {
            if let Some(name) = field(node, "type").and_then(|t| last_name(t, src)) {
                out.call(row, name);
            }
        }
        "preproc_include" => {
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

    const C_SRC: &str = r#"#ifndef BUF_H
#define BUF_H
#include <stdlib.h>
#include "buf/util.h"

/* A growable buffer. */
typedef struct {
    char *data;
    size_t len;
} Buf;

struct node {
    struct node *next;
};

enum color { RED, GREEN };

static int grow(Buf *b, size_t n) {
    b->data = realloc(b->data, n);
    return b->data ? 0 : util_fail(n);
}

char *buf_str(const Buf *b) {
    return b->data;
}
#endif
"#;

    #[test]
    fn c_symbols_kinds_and_lines() {
        let chunks = chunk_file("buf.h", Language::C, C_SRC, &ChunkConfig::default());
        assert_content_matches_lines(C_SRC, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 4),
                (Some("Buf"), Struct, None, 6, 10),
                (Some("node"), Struct, None, 12, 14),
                (Some("color"), Enum, None, 16, 16),
                (Some("grow"), Function, None, 18, 21),
                (Some("buf_str"), Function, None, 23, 25),
                (None, Window, None, 26, 26),
            ]
        );
        assert_eq!(chunks[0].imports, vec!["buf/util.h", "stdlib.h"]);
        assert_eq!(find(&chunks, "grow", Function).calls, vec!["realloc", "util_fail"]);
    }

    const CPP_SRC: &str = r#"#include <vector>
#include "shape.hpp"

namespace geo {

// A 2D shape.
class Shape {
public:
    virtual ~Shape() = default;
    double area() const {
        return compute(width_, height_);
    }
    int sides;
private:
    double width_, height_;
};

template <typename T>
struct Box {
    T value;
};

double Shape::scale(double k) {
    auto v = std::make_unique<Vec>(k);
    return Vec::norm(*v) * helper.apply(k);
}

}  // namespace geo

TEST(ShapeTest, Area) {
    EXPECT_EQ(Shape().area(), 0.0);
}
"#;

    #[test]
    fn cpp_symbols_kinds_parents_and_lines() {
        let chunks = chunk_file("shape.cpp", Language::Cpp, CPP_SRC, &ChunkConfig::default());
        assert_content_matches_lines(CPP_SRC, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 2),
                (Some("geo"), Module, None, 4, 28),
                (Some("Shape"), Class, Some("geo"), 6, 16),
                (Some("area"), Method, Some("Shape"), 10, 12),
                (Some("Box"), Struct, Some("geo"), 18, 21),
                (Some("scale"), Method, Some("Shape"), 23, 26),
                (Some("Area"), Function, Some("ShapeTest"), 30, 32),
            ]
        );
        assert_eq!(chunks[0].imports, vec!["shape.hpp", "vector"]);
        assert_eq!(
            find(&chunks, "scale", Method).calls,
            vec!["Vec", "apply", "make_unique", "norm"]
        );
        assert_eq!(find(&chunks, "area", Method).calls, vec!["compute"]);
    }
}
