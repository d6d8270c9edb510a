//! The vocabulary every layer shares: languages, symbol kinds and the chunk,
//! the unit that is indexed, ranked and returned.

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

impl Language {
    pub const ALL: [Language; 15] = [
        Language::Rust,
        Language::Python,
        Language::Go,
        Language::JavaScript,
        Language::TypeScript,
        Language::Tsx,
        Language::Java,
        Language::C,
        Language::Cpp,
        Language::Markdown,
        Language::Yaml,
        Language::Toml,
        Language::Json,
        Language::Shell,
        Language::Text,
    ];

    /// Language by file name, or `None` for files we do not index.
    pub fn from_path(path: &str) -> Option<Language> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let lower = name.to_ascii_lowercase();
        if matches!(lower.as_str(), "dockerfile" | "makefile" | "license" | "readme") {
            return Some(Language::Text);
        }
        let ext = lower.rsplit_once('.').map(|(_, e)| e)?;
        Some(match ext {
            "rs" => Language::Rust,
            "py" | "pyi" => Language::Python,
            "go" => Language::Go,
            "js" | "mjs" | "cjs" | "jsx" => Language::JavaScript,
            "ts" | "mts" | "cts" => Language::TypeScript,
            "tsx" => Language::Tsx,
            "java" => Language::Java,
            "c" | "h" => Language::C,
            "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" => Language::Cpp,
            "md" | "markdown" | "rst" => Language::Markdown,
            "yaml" | "yml" => Language::Yaml,
            "toml" => Language::Toml,
            "json" => Language::Json,
            "sh" | "bash" | "zsh" => Language::Shell,
            "txt" | "cfg" | "ini" | "proto" | "sql" | "graphql" | "tf" => Language::Text,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Go => "go",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::Java => "java",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::Markdown => "markdown",
            Language::Yaml => "yaml",
            Language::Toml => "toml",
            Language::Json => "json",
            Language::Shell => "shell",
            Language::Text => "text",
        }
    }

    /// Parses the names used in `lang:` filters and CRD specs, accepting common aliases.
    pub fn parse(name: &str) -> Option<Language> {
        let n = name.to_ascii_lowercase();
        let alias = match n.as_str() {
            "rs" => "rust",
            "py" => "python",
            "golang" => "go",
            "js" => "javascript",
            "ts" => "typescript",
            "c++" | "cxx" => "cpp",
            "md" => "markdown",
            "yml" => "yaml",
            "sh" | "bash" => "shell",
            other => other,
        };
        Language::ALL.into_iter().find(|l| l.as_str() == alias)
    }

    /// True for languages chunked by symbol with tree-sitter.
    pub fn is_code(self) -> bool {
        !matches!(
            self,
            Language::Markdown | Language::Yaml | Language::Toml | Language::Json | Language::Shell | Language::Text
        )
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

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
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
}
