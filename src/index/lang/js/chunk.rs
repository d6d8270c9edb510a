//! JavaScript, TypeScript and TSX share one set of rules (the TypeScript grammars
//! extend the JavaScript one): functions, arrow functions bound to a name, classes
//! and their methods, interfaces, enums, namespaces; ES imports, `require` and
//! dynamic `import()`; JSX components count as constructed types.

use tree_sitter::Node;

use crate::index::chunk::Refs;
use crate::index::chunk::code::{Ancestry, Def, Enclosing, Grammar, field, field_text, last_name, text, unquote};
use crate::model::SymbolKind;

pub(super) static JAVASCRIPT: Grammar = Grammar {
    language: javascript,
    classify,
    refs,
    attachable,
};
pub(super) static TYPESCRIPT: Grammar = Grammar {
    language: typescript,
    classify,
    refs,
    attachable,
};
pub(super) static TSX: Grammar = Grammar {
    language: tsx,
    classify,
    refs,
    attachable,
};

fn javascript() -> tree_sitter::Language {
    tree_sitter_javascript::LANGUAGE.into()
}

fn typescript() -> tree_sitter::Language {
    tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into()
}

fn tsx() -> tree_sitter::Language {
    tree_sitter_typescript::LANGUAGE_TSX.into()
}

fn attachable(kind: &str) -> bool {
    matches!(kind, "comment" | "decorator")
}

const WRAPPERS: &[&str] = &["export_statement", "ambient_declaration"];

fn is_function_value(node: Node<'_>) -> bool {
    matches!(
        node.kind(),
        "arrow_function" | "function_expression" | "function" | "generator_function"
    )
}

fn classify<'n>(node: Node<'n>, src: &str, enclosing: Option<Enclosing>, up: Ancestry<'_, 'n>) -> Option<Def<'n>> {
    let name = || field_text(node, "name", src);
    let in_type = enclosing.is_some_and(|e| e.is_type());
    match node.kind() {
        "function_declaration" | "generator_function_declaration" => {
            Some(Def::new(SymbolKind::Function, name()?, up.widen(node, WRAPPERS)))
        }
        "class_declaration" | "abstract_class_declaration" => {
            Some(Def::container(SymbolKind::Class, name()?, up.widen(node, WRAPPERS)))
        }
        "interface_declaration" => Some(Def::container(SymbolKind::Interface, name()?, up.widen(node, WRAPPERS))),
        "enum_declaration" => Some(Def::new(SymbolKind::Enum, name()?, up.widen(node, WRAPPERS))),
        "type_alias_declaration" => Some(Def::new(SymbolKind::Type, name()?, up.widen(node, WRAPPERS))),
        "internal_module" => Some(Def::container(SymbolKind::Module, name()?, up.widen(node, WRAPPERS))),
        "method_definition" if field(node, "body").is_some() => {
            let kind = if in_type {
                SymbolKind::Method
            } else {
                SymbolKind::Function
            };
            Some(Def::new(kind, name()?, node))
        }
        // `handle = () => {...}` class fields hold methods in React-style code.
        "public_field_definition" | "field_definition" => {
            field(node, "value").filter(|v| is_function_value(*v))?;
            let name = field_text(node, "name", src).or_else(|| field_text(node, "property", src))?;
            Some(Def::new(
                if in_type {
                    SymbolKind::Method
                } else {
                    SymbolKind::Function
                },
                name,
                node,
            ))
        }
        // `{ load: function () {...}, rule: $ => ... }`: object members holding functions.
        "pair" => {
            field(node, "value").filter(|v| is_function_value(*v))?;
            let key = field(node, "key").filter(|k| matches!(k.kind(), "property_identifier" | "string"))?;
            Some(Def::new(SymbolKind::Function, unquote(text(key, src)), node))
        }
        // `const f = () => {...}`, `const C = class {...}`: named by the binding.
        "variable_declarator" => {
            let value = field(node, "value")?;
            let binding = field(node, "name").filter(|n| n.kind() == "identifier")?;
            let declaration = up.parent(node).filter(|p| {
                matches!(p.kind(), "lexical_declaration" | "variable_declaration") && p.named_child_count() == 1
            });
            let range = declaration.map_or(node, |d| up.widen(d, WRAPPERS));
            if is_function_value(value) {
                Some(Def::new(SymbolKind::Function, text(binding, src), range))
            } else if value.kind() == "class" {
                Some(Def::container(SymbolKind::Class, text(binding, src), range))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn refs<'t>(node: Node<'_>, src: &'t str, out: &mut Refs<'t>) {
    let row = node.start_position().row;
    match node.kind() {
        "call_expression" => {
            let Some(function) = field(node, "function") else {
                return;
            };
            let first_string_arg = || {
                let args = field(node, "arguments")?;
                args.named_child(0)
                    .filter(|a| a.kind() == "string")
                    .map(|a| unquote(text(a, src)))
            };
            match function.kind() {
                "import" => {
                    if let Some(source) = first_string_arg() {
                        out.import(row, source);
                    }
                }
                "identifier" if text(function, src) == "require" => {
                    if let Some(source) = first_string_arg() {
                        out.import(row, source);
                    }
                }
                _ => {
                    if let Some(name) = last_name(function, src) {
                        out.call(row, name);
                    }
                }
            }
        }
        "new_expression" => {
            if let Some(name) = field(node, "constructor").and_then(|c| last_name(c, src)) {
                out.call(row, name);
            }
        }
        "jsx_opening_element" | "jsx_self_closing_element" => {
            // Lower-case tags are HTML elements, capitalised ones are components.
            if let Some(name) = field(node, "name").and_then(|n| last_name(n, src))
                && name.chars().next().is_some_and(char::is_uppercase)
            {
                out.call(row, name);
            }
        }
        "import_statement" | "export_statement" => {
            if let Some(source) = field(node, "source") {
                out.import(row, unquote(text(source, src)));
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

    const JS: &str = r#"import React from "react";
import { join } from './path.js';
const fs = require("fs");

/** Reads a file. */
export function read(name) {
  return fs.readFileSync(join(name));
}

export const write = async (name, data) => {
  await fs.promises.writeFile(name, data);
};

class Cache extends Map {
  constructor() {
    super();
    this.hits = 0;
  }

  lookup(key) {
    return this.get(key) ?? new Entry(key);
  }
}

module.exports = {
  read,
  'write': write,
  close: function () {
    fs.closeSync(0);
  },
};
"#;

    #[test]
    fn javascript_symbols_kinds_parents_and_lines() {
        let chunks = chunk_file("src/io.js", Language::JavaScript, JS, &ChunkConfig::default());
        assert_content_matches_lines(JS, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 3),
                (Some("read"), Function, None, 5, 8),
                (Some("write"), Function, None, 10, 12),
                (Some("Cache"), Class, None, 14, 23),
                (Some("constructor"), Method, Some("Cache"), 15, 18),
                (Some("lookup"), Method, Some("Cache"), 20, 22),
                (None, Window, None, 25, 27),
                (Some("close"), Function, None, 28, 30),
            ]
        );
        assert_eq!(chunks[0].imports, vec!["./path.js", "fs", "react"]);
        assert_eq!(find(&chunks, "read", Function).calls, vec!["join", "readFileSync"]);
        assert_eq!(find(&chunks, "write", Function).calls, vec!["writeFile"]);
        assert_eq!(find(&chunks, "lookup", Method).calls, vec!["Entry", "get"]);
    }

    const TS: &str = r#"import type { Config } from "./config";
export * from "./types";

export interface Store {
  get(id: string): Promise<Item>;
}

export type Handler = (
  req: Request,
) => Promise<void>;

export enum Color {
  Red,
  Green,
}

@Injectable()
export class ItemService implements Store {
  private cache = new Map<string, Item>();

  constructor(private readonly http: HttpClient) {}

  async get(id: string): Promise<Item> {
    const res = await this.http.fetch(`/items/${id}`);
    return parseItem(res);
  }

  // Clears everything.
  clear = (): void => {
    this.cache.clear();
  };
}

namespace Util {
  export function slug(s: string): string {
    return s.toLowerCase();
  }
}
"#;

    #[test]
    fn typescript_symbols_kinds_parents_and_lines() {
        let chunks = chunk_file("src/items.ts", Language::TypeScript, TS, &ChunkConfig::default());
        assert_content_matches_lines(TS, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 2),
                (Some("Store"), Interface, None, 4, 6),
                (Some("Handler"), Type, None, 8, 10),
                (Some("Color"), Enum, None, 12, 15),
                (Some("ItemService"), Class, None, 17, 32),
                (Some("constructor"), Method, Some("ItemService"), 21, 21),
                (Some("get"), Method, Some("ItemService"), 23, 26),
                (Some("clear"), Method, Some("ItemService"), 28, 31),
                (Some("Util"), Module, None, 34, 38),
                (Some("slug"), Function, Some("Util"), 35, 37),
            ]
        );
        assert_eq!(chunks[0].imports, vec!["./config", "./types"]);
        assert_eq!(find(&chunks, "get", Method).calls, vec!["fetch", "parseItem"]);
        assert_eq!(find(&chunks, "clear", Method).calls, vec!["clear"]);
        assert_eq!(
            find(&chunks, "ItemService", Class).calls,
            vec!["Injectable", "Map", "clear", "fetch", "parseItem"]
        );
    }

    const TSX: &str = r#"import { useState } from "react";

type Props = { title: string };

export default function Panel({ title }: Props) {
  const [open, setOpen] = useState(false);
  return (
    <Card title={title}>
      <div onClick={() => setOpen(!open)}>{open && <Body />}</div>
    </Card>
  );
}

export const Row = ({ label }: { label: string }) => <span>{label}</span>;
"#;

    #[test]
    fn tsx_symbols_and_components() {
        let chunks = chunk_file("src/Panel.tsx", Language::Tsx, TSX, &ChunkConfig::default());
        assert_content_matches_lines(TSX, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 3),
                (Some("Panel"), Function, None, 5, 12),
                (Some("Row"), Function, None, 14, 14),
            ]
        );
        assert_eq!(chunks[0].imports, vec!["react"]);
        assert_eq!(
            find(&chunks, "Panel", Function).calls,
            vec!["Body", "Card", "setOpen", "useState"]
        );
    }
}
