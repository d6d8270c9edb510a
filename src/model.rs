//! The vocabulary every layer shares: languages, symbol kinds and the chunk,
//! the unit that is indexed, ranked and returned; and how an identifier
//! splits into words, which the graph and the embedder must agree on.

use serde::{Deserialize, Serialize};

/// Languages the chunker understands. `Text` covers prose and config files
/// that are split into sections or line windows rather than symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Python,
    Go,
    JavaScript,
    TypeScript,
    Tsx,
    Java,
    C,
    Cpp,
    Markdown,
    Yaml,
    Toml,
    Json,
    Shell,
    Text,
}

/// One row per language: its name in filters, CRDs and the API, the file
/// extensions it claims, other spellings `lang:` accepts, and whether it is
/// code (chunked by symbol) rather than prose or config.
struct Row {
    language: Language,
    name: &'static str,
    extensions: &'static [&'static str],
    aliases: &'static [&'static str],
    code: bool,
}

const fn row(
    language: Language,
    name: &'static str,
    extensions: &'static [&'static str],
    aliases: &'static [&'static str],
    code: bool,
) -> Row {
    Row {
        language,
        name,
        extensions,
        aliases,
        code,
    }
}

const ROWS: [Row; 15] = [
    row(Language::Rust, "rust", &["rs"], &["rs"], true),
    row(Language::Python, "python", &["py", "pyi"], &["py"], true),
    row(Language::Go, "go", &["go"], &["golang"], true),
    row(
        Language::JavaScript,
        "javascript",
        &["js", "mjs", "cjs", "jsx"],
        &["js"],
        true,
    ),
    row(Language::TypeScript, "typescript", &["ts", "mts", "cts"], &["ts"], true),
    row(Language::Tsx, "tsx", &["tsx"], &[], true),
    row(Language::Java, "java", &["java"], &[], true),
    row(Language::C, "c", &["c", "h"], &[], true),
    row(
        Language::Cpp,
        "cpp",
        &["cc", "cpp", "cxx", "hpp", "hh", "hxx"],
        &["c++", "cxx"],
        true,
    ),
    row(
        Language::Markdown,
        "markdown",
        &["md", "markdown", "rst"],
        &["md"],
        false,
    ),
    row(Language::Yaml, "yaml", &["yaml", "yml"], &["yml"], false),
    row(Language::Toml, "toml", &["toml"], &[], false),
    row(Language::Json, "json", &["json"], &[], false),
    row(Language::Shell, "shell", &["sh", "bash", "zsh"], &["sh", "bash"], false),
    row(
        Language::Text,
        "text",
        &["txt", "cfg", "ini", "proto", "sql", "graphql", "tf"],
        &[],
        false,
    ),
];

impl Language {
    pub const ALL: [Language; ROWS.len()] = {
        let mut all = [Language::Text; ROWS.len()];
        let mut i = 0;
        while i < ROWS.len() {
            all[i] = ROWS[i].language;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static Row {
        ROWS.iter()
            .find(|r| r.language == self)
            .expect("every language has a row")
    }

    /// Language by file name, or `None` for files we do not index.
    pub fn from_path(path: &str) -> Option<Language> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let lower = name.to_ascii_lowercase();
        if matches!(lower.as_str(), "dockerfile" | "makefile" | "license" | "readme") {
            return Some(Language::Text);
        }
        let ext = lower.rsplit_once('.').map(|(_, e)| e)?;
        ROWS.iter().find(|r| r.extensions.contains(&ext)).map(|r| r.language)
    }

    pub fn as_str(self) -> &'static str {
        self.row().name
    }

    /// Parses the names used in `lang:` filters and CRD specs, accepting common aliases.
    pub fn parse(name: &str) -> Option<Language> {
        let n = name.to_ascii_lowercase();
        ROWS.iter()
            .find(|r| r.name == n || r.aliases.contains(&n.as_str()))
            .map(|r| r.language)
    }

    /// True for languages chunked by symbol with tree-sitter.
    pub fn is_code(self) -> bool {
        self.row().code
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a chunk is. Symbol kinds come from tree-sitter; `Section` and `Window`
/// are the fallbacks for prose and for oversize symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SymbolKind {
    Function,
    Method,
    Class,
    Struct,
    Enum,
    Trait,
    Interface,
    Impl,
    Module,
    Type,
    Constant,
    Section,
    Window,
}

impl SymbolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolKind::Function => "function",
            SymbolKind::Method => "method",
            SymbolKind::Class => "class",
            SymbolKind::Struct => "struct",
            SymbolKind::Enum => "enum",
            SymbolKind::Trait => "trait",
            SymbolKind::Interface => "interface",
            SymbolKind::Impl => "impl",
            SymbolKind::Module => "module",
            SymbolKind::Type => "type",
            SymbolKind::Constant => "constant",
            SymbolKind::Section => "section",
            SymbolKind::Window => "window",
        }
    }

    /// Kinds that define a callable or type another chunk can refer to by name.
    pub fn is_definition(self) -> bool {
        !matches!(self, SymbolKind::Section | SymbolKind::Window | SymbolKind::Impl)
    }
}

/// One indexed unit: a symbol, a window of an oversize symbol, or a section of a text file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Dense ordinal within one index version; the key shared by every arm.
    pub id: u32,
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    pub language: Language,
    /// Symbol name (`parse`, `Server::run` is `run` with parent `Server`), or the section title.
    pub symbol: Option<String>,
    pub kind: SymbolKind,
    /// Enclosing symbol (class, impl, module) when there is one.
    pub parent: Option<String>,
    /// 1-based, inclusive.
    pub start_line: u32,
    pub end_line: u32,
    pub content: String,
    /// Hex sha256 of `content`.
    pub content_hash: String,
    /// Names this chunk calls or references (best effort, from the syntax tree).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<String>,
    /// Modules or paths this chunk imports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
}

pub use trusty_core::sha256_hex;

/// Identifier parts, lower-cased, as the graph's name lookup and the embedder's
/// symbol words both spell them: `parseHTTPRequest_v2` → `parse`, `http`, `request`, `v2`.
pub(crate) fn split_identifier(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut parts = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_uppercase() && !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_lower) {
                parts.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_by_extension() {
        assert_eq!(Language::from_path("src/main.rs"), Some(Language::Rust));
        assert_eq!(Language::from_path("a/b/c.TSX"), Some(Language::Tsx));
        assert_eq!(Language::from_path("include/x.hpp"), Some(Language::Cpp));
        assert_eq!(Language::from_path("Dockerfile"), Some(Language::Text));
        assert_eq!(Language::from_path("image.png"), None);
        assert_eq!(Language::from_path("noext"), None);
    }

    #[test]
    fn language_names_round_trip() {
        for l in Language::ALL {
            assert_eq!(Language::parse(l.as_str()), Some(l));
        }
        assert_eq!(Language::parse("py"), Some(Language::Python));
        assert_eq!(Language::parse("cobol"), None);
    }

    #[test]
    fn every_language_has_one_row_matching_its_serde_name() {
        let mut seen = std::collections::HashSet::new();
        for l in Language::ALL {
            assert!(seen.insert(l), "{l} has two rows");
            assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{}\"", l.as_str()));
        }
        assert_eq!(seen.len(), ROWS.len());
    }

    #[test]
    fn identifiers_split_on_case_and_separators() {
        assert_eq!(
            split_identifier("parseHTTPRequest_v2"),
            ["parse", "http", "request", "v2"]
        );
        assert_eq!(split_identifier("CodeGraph"), ["code", "graph"]);
    }
}
