//! Java: classes, interfaces, enums, records and their methods and constructors;
//! imports.

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
    tree_sitter_java::LANGUAGE.into()
}

fn attachable(kind: &str) -> bool {
    matches!(kind, "line_comment" | "block_comment")
}

fn classify<'n>(node: Node<'n>, src: &str, enclosing: Option<Enclosing>, _up: Ancestry<'_, 'n>) -> Option<Def<'n>> {
    let container = |kind| Some(Def::container(kind, field_text(node, "name", src)?, node));
    match node.kind() {
        "class_declaration" | "record_declaration" => container(SymbolKind::Class),
        "interface_declaration" | "annotation_type_declaration" => container(SymbolKind::Interface),
        "enum_declaration" => container(SymbolKind::Enum),
        "method_declaration" | "constructor_declaration" | "compact_constructor_declaration"
            if field(node, "body").is_some() =>
        {
            let kind = if enclosing.is_some_and(|e| e.is_type()) {
                SymbolKind::Method
            } else {
                SymbolKind::Function
            };
            Some(Def::new(kind, field_text(node, "name", src)?, node))
        }
        _ => None,
    }
}

fn refs<'t>(node: Node<'_>, src: &'t str, out: &mut Refs<'t>) {
    let row = node.start_position().row;
    match node.kind() {
        "method_invocation" => {
            if let Some(name) = field_text(node, "name", src) {
                out.call(row, name);
            }
        }
        "object_creation_expression" => {
            if let Some(name) = field(node, "type").and_then(|t| last_name(t, src)) {
                out.call(row, name);
            }
        }
        "import_declaration" => {
            let path = node
                .named_children(&mut node.walk())
                .find(|c| matches!(c.kind(), "scoped_identifier" | "identifier"))
                .map(|c| text(c, src));
            if let Some(path) = path {
                out.import(row, path);
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

    const SRC: &str = r#"package com.example.repo;

import java.util.List;
import java.util.concurrent.*;
import static org.junit.Assert.assertEquals;

/**
 * Stores users.
 */
@Service
public class UserRepo extends Base {
    private final List<User> users = new ArrayList<>();

    public UserRepo() {
        super();
    }

    // Finds one.
    public User find(String id) {
        return users.stream().filter(u -> u.id().equals(id)).findFirst().orElse(null);
    }

    public abstract void evict(String id);

    enum State {
        OPEN,
        CLOSED;

        boolean isOpen() {
            return this == OPEN;
        }
    }
}

interface Lookup {
    User find(String id);
}
"#;

    #[test]
    fn java_symbols_kinds_parents_and_lines() {
        let chunks = chunk_file("src/UserRepo.java", Language::Java, SRC, &ChunkConfig::default());
        assert_content_matches_lines(SRC, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 5),
                (Some("UserRepo"), Class, None, 7, 33),
                (Some("UserRepo"), Method, Some("UserRepo"), 14, 16),
                (Some("find"), Method, Some("UserRepo"), 18, 21),
                (Some("State"), Enum, Some("UserRepo"), 25, 32),
                (Some("isOpen"), Method, Some("State"), 29, 31),
                (Some("Lookup"), Interface, None, 35, 37),
            ]
        );
        assert_eq!(
            chunks[0].imports,
            vec![
                "java.util.List",
                "java.util.concurrent",
                "org.junit.Assert.assertEquals"
            ]
        );
        assert_eq!(
            find(&chunks, "find", Method).calls,
            vec!["equals", "filter", "findFirst", "id", "orElse", "stream"]
        );
        assert!(
            find(&chunks, "UserRepo", Class)
                .calls
                .contains(&"ArrayList".to_string())
        );
    }
}
