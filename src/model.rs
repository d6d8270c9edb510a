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

    /// This language (found by name) corrected by content where the name
    /// alone cannot tell: a `.h` header is C++ when its text looks like C++,
    /// C otherwise. The walk decides by name ([`Language::from_path`]); this
    /// decides once the file is read.
    pub fn refine(self, path: &str, text: &str) -> Language {
        if self == Language::C && is_h_header(path) && looks_like_cpp(text) {
            Language::Cpp
        } else {
            self
        }
    }

    /// Whether a file of this name may be `language` once its text is read,
    /// for filters applied before reading.
    pub fn may_be(path: &str, language: Language) -> bool {
        Language::from_path(path) == Some(language) || (language == Language::Cpp && is_h_header(path))
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

fn is_h_header(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("h"))
}

/// How much of a header is looked at to tell C++ from C: declarations that
/// give C++ away come early, and the sniff must stay cheap on huge headers.
const SNIFF_BYTES: usize = 64 * 1024;

/// Whether a header's text uses C++ outside comments and string literals:
/// `namespace`, `class X {`, `template <`, access specifiers, a scope `::`
/// (not in a C23 `[[attribute]]`), or an extensionless `#include <vector>`.
fn looks_like_cpp(text: &str) -> bool {
    let mut end = text.len().min(SNIFF_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    code_only(&text[..end]).lines().any(|line| {
        let line = line.trim();
        let word_after = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|rest| rest.trim_start().chars().next())
                .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '{' || c == '<')
        };
        word_after("namespace ")
            || line.starts_with("using namespace ")
            || line
                .strip_prefix("template")
                .is_some_and(|rest| rest.trim_start().starts_with('<'))
            || word_after("class ")
            || line.starts_with("enum class ")
            || ["public:", "private:", "protected:"]
                .iter()
                .any(|a| line.starts_with(a))
            || (has_scope_operator(line) && !line.contains("[["))
            || line
                .strip_prefix("#include")
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix('<'))
                .and_then(|rest| rest.split_once('>'))
                .is_some_and(|(name, _)| !name.contains('.'))
    })
}

/// Whether `line` has a `::` before a name or `~`, as in `std::string` or
/// `A::~A`: inline asm in C separates its operands with `::` and `:::`.
fn has_scope_operator(line: &str) -> bool {
    let b = line.as_bytes();
    (0..b.len().saturating_sub(1)).any(|i| {
        b[i] == b':'
            && b[i + 1] == b':'
            && (i == 0 || b[i - 1] != b':')
            && b.get(i + 2)
                .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_' || c == b'~')
    })
}

/// `text` with comments and the insides of string and character literals
/// blanked out (newlines kept), so the sniff reads code only. A literal
/// ends at its line's end, so a stray quote in `#error don't` spoils one line.
fn code_only(text: &str) -> String {
    #[derive(PartialEq)]
    enum State {
        Code,
        LineComment,
        BlockComment,
        Literal(u8),
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut state = State::Code;
    let mut i = 0;
    while i < bytes.len() {
        let (b, next) = (bytes[i], bytes.get(i + 1).copied());
        if b == b'\n' {
            if state != State::BlockComment {
                state = State::Code;
            }
            out.push(b'\n');
            i += 1;
            continue;
        }
        match state {
            State::Code => match (b, next) {
                (b'/', Some(b'/')) => state = State::LineComment,
                (b'/', Some(b'*')) => {
                    state = State::BlockComment;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    continue;
                }
                (b'"' | b'\'', _) => state = State::Literal(b),
                _ => {
                    out.push(b);
                    i += 1;
                    continue;
                }
            },
            State::BlockComment if b == b'*' && next == Some(b'/') => {
                state = State::Code;
                out.extend_from_slice(b"  ");
                i += 2;
                continue;
            }
            State::Literal(_) if b == b'\\' && next.is_some_and(|n| n != b'\n') => {
                out.extend_from_slice(b"  ");
                i += 2;
                continue;
            }
            State::Literal(quote) if b == quote => state = State::Code,
            _ => {}
        }
        out.push(b' ');
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

    const CPP_HEADER: &str = "#pragma once\n// A widget.\nnamespace ui {\nclass Widget {\n public:\n  void Resize(int w) { w_ = w; }\n private:\n  int w_;\n};\n}  // namespace ui\n";

    const C_HEADER: &str = "#ifndef POINT_H\n#define POINT_H\n/* Not C++: class Foo { public: ns::x }; template <T> */\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n#include <stdio.h>\nstruct point { int x; int y; };\nstruct class_info *class; // uses class as a name\nconst char *help = \"usage: a::b\";\n[[gnu::unused]] int point_len(struct point *p);\n#ifdef __cplusplus\n}\n#endif\n#endif\n";

    #[test]
    fn a_h_header_is_cpp_only_when_its_code_looks_like_cpp() {
        let read = |path: &str, text: &str| Language::from_path(path).map(|l| l.refine(path, text));
        assert_eq!(Language::from_path("ui/widget.h"), Some(Language::C));
        assert_eq!(read("ui/widget.h", CPP_HEADER), Some(Language::Cpp));
        assert_eq!(read("geo/point.h", C_HEADER), Some(Language::C));
        // Only `.h` is ambiguous.
        assert_eq!(read("x.c", CPP_HEADER), Some(Language::C));
        assert_eq!(read("x.hpp", C_HEADER), Some(Language::Cpp));
        for line in [
            "template <typename T> struct Box;",
            "class Widget",
            "class API_EXPORT Widget : public Base {",
            "using namespace std;",
            "std::string name();",
            "::operator delete(p);",
            "Widget::~Widget() {}",
            "#include <vector>",
            "enum class Color { Red };",
            "protected:",
        ] {
            assert!(looks_like_cpp(line), "{line}");
        }
        for line in [
            "int class = 1;",
            "#include <sys/types.h>",
            "/* std::string */",
            "x = a ? b : c;",
            r#"__asm__ __volatile__("" ::: "memory");"#,
            r#"asm("" :: "r"(x));"#,
            r#"asm("nop":::"cc");"#,
        ] {
            assert!(!looks_like_cpp(line), "{line}");
        }
        // The sniff stops early: C++ only past the first 64 KiB is not seen.
        let late = format!("{}namespace x {{}}\n", "int a;\n".repeat(SNIFF_BYTES / 7 + 1));
        assert!(!looks_like_cpp(&late));
        assert!(Language::may_be("a.h", Language::Cpp) && Language::may_be("a.h", Language::C));
        assert!(!Language::may_be("a.c", Language::Cpp));
        assert!(!Language::may_be("x.h/Makefile", Language::Cpp));
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
