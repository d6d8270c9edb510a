//! Query understanding for issue-shaped text.
//!
//! A bug report pasted as a query carries most of its signal not in its prose but in the names, paths and
//! stack frames it mentions: the identifiers of its title, `Class.method` chains, `pkg/mod.py` paths and
//! traceback frames. This module extracts them, after dropping environment dumps and template checkboxes
//! that would otherwise flood the query with version numbers. It is a faithful port of the reference
//! extractor the ranking was tuned on; each hand-written matcher names the regex it implements.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Only this prefix of a query is examined, so a pasted log cannot make query parsing expensive.
pub(crate) const MAX_INPUT_BYTES: usize = 64 * 1024;
/// Distinct identifiers kept per query; bounds the exact-definition lookups they feed.
pub(crate) const MAX_IDENTS: usize = 256;
/// Distinct dotted names kept per query; bounds the `Class.method` pair lookups.
pub(crate) const MAX_DOTTED: usize = 256;
/// Distinct paths (and, separately, frame paths) kept per query; real issues mention a handful.
pub(crate) const MAX_PATHS: usize = 64;

/// A run of at least this many `key: value` lines is an environment dump, not a description.
const MIN_ENV_RUN: usize = 4;
/// File extensions that make a `dir/name.ext` token a source path worth matching against the tree.
const SOURCE_EXTENSIONS: &[&str] = &[
    "py", "pyi", "rs", "go", "js", "jsx", "ts", "tsx", "java", "kt", "c", "h", "cc", "cpp", "hpp", "cs", "rb", "php",
    "swift", "scala",
];

/// What kind of query this is; callers may pick per-shape weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A bare symbol name or two, e.g. `parse_args` or `QuerySet.select_related`.
    Identifier,
    /// A short question or phrase with no code in it.
    Natural,
    /// Mostly a pasted stack trace.
    StackTrace,
    /// A full bug report: title, prose, code, maybe a trace.
    Issue,
}

impl Shape {
    /// Stable lower-case name, for logs and metrics labels.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Shape::Identifier => "identifier",
            Shape::Natural => "natural",
            Shape::StackTrace => "stacktrace",
            Shape::Issue => "issue",
        }
    }
}

/// An identifier named in the query; one named in the title is a much stronger hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ident {
    /// The identifier as written (case matters: definitions are looked up by exact name).
    pub(crate) name: String,
    /// Whether the title names it; the title is the strongest signal in an issue.
    pub(crate) in_title: bool,
}

/// Everything extracted from one query; the ranker scores files against these pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryText {
    /// The query without environment dumps and checkboxes: the text whose words are searched.
    pub(crate) cleaned: String,
    /// First non-empty line of `cleaned`, trimmed; its terms weigh more.
    pub(crate) title: String,
    /// Distinct identifiers: title first, then backticks, code, prose, call names, dotted parts.
    pub(crate) idents: Vec<Ident>,
    /// Distinct dotted names such as `Foo.bar.baz`, in text order.
    pub(crate) dotted: Vec<String>,
    /// Distinct source-file paths mentioned in the text, with `/` separators.
    pub(crate) paths: Vec<String>,
    /// Distinct file paths of stack-trace frames (Python, JavaScript and Rust
    /// styles), the frame nearest the error first.
    pub(crate) frames: Vec<String>,
    /// What kind of query this is, by the reference's thresholds.
    pub(crate) shape: Shape,
}

/// Extracts the title, identifiers, dotted names, paths and frames of a query and classifies its shape.
pub(crate) fn understand(input: &str) -> QueryText {
    // The reference read queries as text files, so it only ever saw '\n' line ends.
    let text = normalize_newlines(&input[..input.floor_char_boundary(MAX_INPUT_BYTES)]);
    let cleaned = strip_env(&strip_html_comments(&text));
    let title = first_nonblank_line(&cleaned).to_owned();
    let regions = code_regions(&cleaned);
    let ticks: Vec<&str> = backticks(&regions.prose).collect();
    // Nearest the error first: Python prints the innermost call last,
    // JavaScript and Rust print it first.
    let (mut python, mut located) = (Vec::new(), Vec::new());
    for (line, _) in lines_with_frame_hints(&cleaned).filter(|&(_, hinted)| hinted) {
        python.extend(python_frames(line));
        located.extend(located_frames(line));
    }
    let frames: Vec<Cow<'_, str>> = python.into_iter().rev().chain(located).map(slash_separated).collect();
    let (dotted, paths) = dotted_names_and_paths(&cleaned);
    let call_text = format!("{}\n{}", regions.code, ticks.join("\n"));

    let mut idents = IdentCollector::default();
    idents.add_all(ident_tokens(&title), true);
    for tick in &ticks {
        idents.add_all(ident_tokens(tick), false);
    }
    idents.add_all(ident_tokens(&regions.code), false);
    idents.add_all(ident_tokens(&regions.prose), false);
    idents.add_all(call_names(&call_text), false);
    idents.add_all(dotted.iter().flat_map(|name| name.split('.')), false);
    let idents = idents.finish();

    let shape = classify(&cleaned, &regions.code, frames.len());
    // A path token cannot contain '\', so unlike frames it needs no separator rewrite.
    let paths = distinct(paths.into_iter().map(Cow::Borrowed), MAX_PATHS);
    let dotted = distinct(dotted.into_iter().map(Cow::Borrowed), MAX_DOTTED);
    let frames = distinct(frames, MAX_PATHS);
    QueryText {
        cleaned,
        title,
        idents,
        dotted,
        paths,
        frames,
        shape,
    }
}

/// Drops `<!-- … -->` comments: issue templates fill them with instructions to
/// the reporter ("please check the contributing guidelines") that GitHub hides
/// but a pasted issue keeps. An unterminated comment is kept, as text.
fn strip_html_comments(text: &str) -> Cow<'_, str> {
    if !text.contains("<!--") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        let Some(len) = rest[start + 4..].find("-->") else {
            break;
        };
        out.push_str(&rest[..start]);
        rest = &rest[start + 4 + len + 3..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Drops environment dumps (runs of at least four `key: value` / `pkg==1.2` lines, blank lines allowed
/// inside a run) and template checkbox lines, whose version strings and boilerplate would outweigh the report.
pub(crate) fn strip_env(text: &str) -> String {
    let lines: Vec<&str> = lines(text).collect();
    let env: Vec<bool> = lines.iter().map(|line| is_env_line(line)).collect();
    let blank: Vec<bool> = lines.iter().map(|line| is_blank(line)).collect();
    let mut keep = vec![true; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j < lines.len() && (env[j] || (j > i && blank[j])) {
            j += 1;
        }
        let mut k = j;
        while k > i && blank[k - 1] {
            k -= 1;
        }
        if blank[i..k].iter().filter(|&&b| !b).count() >= MIN_ENV_RUN {
            keep[i..k].fill(false);
            i = j;
        } else {
            i += 1;
        }
    }
    let kept = lines
        .iter()
        .zip(&keep)
        .filter(|&(line, &kept)| kept && !is_checkbox(line));
    kept.map(|(line, _)| *line).collect::<Vec<_>>().join("\n")
}

/// Whether a name looks like code rather than an English word: `snake_case` with an inner underscore,
/// camelCase or CamelCase with an inner capital, or a dunder.
pub(crate) fn is_codeish(ident: &str) -> bool {
    if ident.trim_matches('_').contains('_') {
        return true;
    }
    if ident.starts_with("__") && ident.ends_with("__") {
        return true;
    }
    // `[a-z][A-Z]` anywhere, or `[A-Z][a-z0-9]+[A-Z]` at the start.
    let bytes = ident.as_bytes();
    let lower_upper = bytes
        .windows(2)
        .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
    lower_upper || starts_camel(bytes)
}

/// `[A-Z][a-z0-9]+[A-Z]` anchored at the start (e.g. `Http2Server`, which has no lower-upper pair).
fn starts_camel(bytes: &[u8]) -> bool {
    let Some((first, rest)) = bytes.split_first() else {
        return false;
    };
    let run = rest
        .iter()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        .count();
    first.is_ascii_uppercase() && run > 0 && rest.get(run).is_some_and(u8::is_ascii_uppercase)
}

/// Python's `\s` and `str.strip()` whitespace: Unicode `White_Space` plus the ASCII separators 0x1C-0x1F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `not line.strip()`: blank lines may sit inside an environment dump.
fn is_blank(line: &str) -> bool {
    line.chars().all(is_py_space)
}

/// Universal newlines, as Python's text-mode read applies them: "\r\n" and a lone "\r" become "\n".
fn normalize_newlines(text: &str) -> Cow<'_, str> {
    if !text.contains('\r') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut pieces = text.split('\r');
    out.push_str(pieces.next().unwrap_or_default());
    for piece in pieces {
        out.push('\n');
        out.push_str(piece.strip_prefix('\n').unwrap_or(piece));
    }
    Cow::Owned(out)
}

/// The first line with a non-space char, trimmed: skipping all leading whitespace, newlines included,
/// lands on that char.
fn first_nonblank_line(text: &str) -> &str {
    let rest = text.trim_start_matches(is_py_space);
    rest.split('\n')
        .next()
        .unwrap_or_default()
        .trim_end_matches(is_py_space)
}

/// Windows frame paths with '/' separators, so they match tree paths by suffix.
fn slash_separated(path: &str) -> Cow<'_, str> {
    if path.contains('\\') {
        Cow::Owned(path.replace('\\', "/"))
    } else {
        Cow::Borrowed(path)
    }
}

/// The first `cap` distinct items, in order.
fn distinct<'a>(items: impl IntoIterator<Item = Cow<'a, str>>, cap: usize) -> Vec<String> {
    let mut seen = FastSet::default();
    let mut out = Vec::new();
    for item in items {
        if out.len() >= cap {
            break;
        }
        if !seen.contains(&item) {
            out.push(item.to_string());
            seen.insert(item);
        }
    }
    out
}

/// A set of chars with an ASCII lookup table, so the token scans, which see mostly ASCII, need no Unicode
/// table lookups.
struct CharClass {
    /// Membership of each ASCII byte; entries from 0x80 on are unused.
    ascii: [bool; 256],
    /// Whether non-ASCII letters and digits (Python's Unicode `\w`) belong to the set.
    unicode_word: bool,
}

impl CharClass {
    /// ASCII letters, digits and '_', plus `extra`.
    const fn ascii_word_and(extra: &[u8], unicode_word: bool) -> CharClass {
        let mut ascii = [false; 256];
        let mut byte = 0u8;
        while byte < 128 {
            ascii[byte as usize] = byte.is_ascii_alphanumeric() || byte == b'_';
            byte += 1;
        }
        let mut i = 0;
        while i < extra.len() {
            ascii[extra[i] as usize] = true;
            i += 1;
        }
        CharClass { ascii, unicode_word }
    }

    /// Membership of any char; the scans call this only for non-ASCII ones.
    fn contains(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii[c as usize]
        } else {
            self.unicode_word && c.is_alphanumeric()
        }
    }
}

/// `\w`
static WORD: CharClass = CharClass::ascii_word_and(b"", true);
/// `[A-Za-z0-9_]`
static IDENT_CHAR: CharClass = CharClass::ascii_word_and(b"", false);
/// `[\w./-]`, the chars a path is made of.
static PATH_CHAR: CharClass = CharClass::ascii_word_and(b"./-", true);

/// Python's Unicode-aware `\w`.
fn is_word(c: char) -> bool {
    WORD.contains(c)
}

/// Maximal runs of chars in `class`, with their byte offsets; the basis of every token matcher.
fn runs<'a>(text: &'a str, class: &'static CharClass) -> Runs<'a> {
    Runs { text, class, pos: 0 }
}

/// Iterator behind [`runs`]; `pos` only ever advances, which keeps every scan linear.
struct Runs<'a> {
    text: &'a str,
    class: &'static CharClass,
    pos: usize,
}

impl<'a> Iterator for Runs<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        let start = self.pass(false)?;
        let end = self.pass(true).unwrap_or(self.text.len());
        Some((start, &self.text[start..end]))
    }
}

impl Runs<'_> {
    /// Moves past chars whose membership is `member` and returns where it stopped, or None at the end.
    fn pass(&mut self, member: bool) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let class = self.class;
        // ASCII is most of any query: test it straight from the table, without decoding.
        let stops = |b: &u8| !b.is_ascii() || class.ascii[usize::from(*b)] != member;
        while let Some(rest) = bytes.get(self.pos..) {
            let Some(n) = rest.iter().position(stops) else { break };
            self.pos += n;
            if bytes[self.pos].is_ascii() {
                return Some(self.pos);
            }
            let c = self.text[self.pos..].chars().next()?;
            if class.contains(c) != member {
                return Some(self.pos);
            }
            self.pos += c.len_utf8();
        }
        self.pos = bytes.len();
        None
    }
}

/// Offset of the first `[A-Za-z_]`; a byte scan is exact because UTF-8 never hides ASCII inside a char.
fn ident_start(run: &str) -> Option<usize> {
    run.bytes().position(|b| b == b'_' || b.is_ascii_alphabetic())
}

/// `text.find(needle)` for the short markers used here: memchr to each occurrence of the needle's first
/// char, then compare, which beats the general substring search on short haystacks.
fn find_str(text: &str, needle: &str) -> Option<usize> {
    let first = needle.chars().next()?;
    let mut pos = 0;
    while let Some(i) = text[pos..].find(first) {
        let at = pos + i;
        if text[at..].starts_with(needle) {
            return Some(at);
        }
        pos = at + first.len_utf8();
    }
    None
}

/// `text.split('\n')`, but cheaper per line than the general pattern searcher: a query can be thousands of
/// short lines.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        let Some(newline) = current.bytes().position(|b| b == b'\n') else {
            rest = None;
            return Some(current);
        };
        rest = Some(&current[newline + 1..]);
        Some(&current[..newline])
    })
}

/// The maximal runs of chars in `class` that contain `marker` (itself in `class`), found by jumping from
/// marker to marker with memchr: dotted names and paths need a '.', and most runs have none.
fn runs_with<'a>(text: &'a str, class: &'static CharClass, marker: char) -> impl Iterator<Item = &'a str> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let hit = pos + text[pos..].find(marker)?;
        let start = run_start(text, class, hit);
        let end = Runs { text, class, pos: hit }.pass(true).unwrap_or(text.len());
        pos = end;
        Some(&text[start..end])
    })
}

/// Where the run of chars in `class` that ends at byte `end` begins.
fn run_start(text: &str, class: &CharClass, end: usize) -> usize {
    let run_len: usize = text[..end]
        .chars()
        .rev()
        .take_while(|&c| class.contains(c))
        .map(char::len_utf8)
        .sum();
    end - run_len
}

/// `ENV_LINE = r"^\s*(?:[-*]\s*)?[A-Za-z][\w .\-/()]{0,40}?\s*[:=]=?\s*(.{0,80})$"`
///
/// The key can hold neither ':' nor '=', so the first of them is the separator; the key then matches if,
/// less its trailing whitespace, it is at most 40 key chars, and the value if, less leading whitespace,
/// it is at most 80 chars.
fn is_env_line(line: &str) -> bool {
    let rest = line.trim_start_matches(is_py_space);
    let rest = match rest.strip_prefix(['-', '*']) {
        Some(after_bullet) => after_bullet.trim_start_matches(is_py_space),
        None => rest,
    };
    let Some(after_letter) = rest.strip_prefix(|c: char| c.is_ascii_alphabetic()) else {
        return false;
    };
    let Some(sep) = after_letter.bytes().position(|b| b == b':' || b == b'=') else {
        return false;
    };
    let key = after_letter[..sep].trim_end_matches(is_py_space);
    if !at_most_chars(key, 40) || !key.chars().all(is_env_key_char) {
        return false;
    }
    let value = &after_letter[sep + 1..];
    at_most_chars(
        value.strip_prefix('=').unwrap_or(value).trim_start_matches(is_py_space),
        80,
    )
}

/// Python's `.{0,max}` length test, which counts chars; the byte length settles most cases.
fn at_most_chars(text: &str, max: usize) -> bool {
    text.len() <= max || text.chars().nth(max).is_none()
}

/// `[\w .\-/()]`
fn is_env_key_char(c: char) -> bool {
    is_word(c) || matches!(c, ' ' | '.' | '-' | '/' | '(' | ')')
}

/// `CHECKBOX = r"^\s*[-*]\s*\[[ xX]\]"`
fn is_checkbox(line: &str) -> bool {
    let Some(rest) = line.trim_start_matches(is_py_space).strip_prefix(['-', '*']) else {
        return false;
    };
    let rest = rest.trim_start_matches(is_py_space);
    ["[ ]", "[x]", "[X]"].iter().any(|box_| rest.starts_with(box_))
}

/// The query split into code (fenced blocks, indented lines, prompts, trace lines) and prose.
struct Regions {
    /// Fenced bodies, then the other code lines, joined by '\n'.
    code: String,
    /// Every other line, fences replaced by an empty line.
    prose: String,
}

/// Fenced blocks come first in `code`, then the other code lines, as in the reference.
fn code_regions(text: &str) -> Regions {
    let (mut parts, rest) = split_fences(text);
    let (code_lines, prose_lines): (Vec<_>, Vec<_>) =
        lines_with_frame_hints(&rest).partition(|&(line, hinted)| is_code_line(line, hinted));
    let code_lines: Vec<&str> = code_lines.into_iter().map(|(line, _)| line).collect();
    let prose_lines: Vec<&str> = prose_lines.into_iter().map(|(line, _)| line).collect();
    let loose_code = code_lines.join("\n");
    parts.push(&loose_code);
    Regions {
        code: parts.join("\n"),
        prose: prose_lines.join("\n"),
    }
}

/// ``FENCE = r"```[^\n]*\n(.*?)(?:```|\Z)"`` with `re.S`.
///
/// Returns the fenced bodies and the text with each whole fence replaced by "\n". An unclosed fence runs
/// to the end; a ```` ``` ```` with no newline after it opens nothing.
fn split_fences(text: &str) -> (Vec<&str>, String) {
    let mut bodies = Vec::new();
    let mut rest = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(open) = find_str(&text[pos..], "```").map(|i| pos + i) {
        let Some(body_start) = text[open + 3..].find('\n').map(|i| open + 3 + i + 1) else {
            break;
        };
        let (body_end, fence_end) = match find_str(&text[body_start..], "```") {
            Some(i) => (body_start + i, body_start + i + 3),
            None => (text.len(), text.len()),
        };
        bodies.push(&text[body_start..body_end]);
        rest.push_str(&text[pos..open]);
        rest.push('\n');
        pos = fence_end;
    }
    rest.push_str(&text[pos..]);
    (bodies, rest)
}

/// Indented by four spaces or a tab, an interactive prompt, or a stack-trace frame (looked for only when
/// the line is `hinted`, see [`lines_with_frame_hints`]).
fn is_code_line(line: &str, hinted: bool) -> bool {
    line.starts_with("    ")
        || line.starts_with('\t')
        || is_prompt(line)
        || (hinted && frames_in_line(line).next().is_some())
}

/// `PROMPT = r"^\s*(?:>>>|\.\.\.|In \[\d+\]:|\$ )"`
fn is_prompt(line: &str) -> bool {
    let rest = line.trim_start_matches(is_py_space);
    if rest.starts_with(">>>") || rest.starts_with("...") || rest.starts_with("$ ") {
        return true;
    }
    let Some(cell) = rest.strip_prefix("In [") else {
        return false;
    };
    let digits = cell.len() - cell.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    digits > 0 && cell[digits..].starts_with("]:")
}

/// ``BACKTICK = r"`([^`\n]{1,200})`"``
fn backticks(text: &str) -> impl Iterator<Item = &str> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        loop {
            let body_start = pos + text[pos..].bytes().position(|b| b == b'`')? + 1;
            let end = body_start + text[body_start..].bytes().position(|b| b == b'`' || b == b'\n')?;
            if !text[end..].starts_with('`') {
                pos = end + 1; // a newline: no span crosses it
                continue;
            }
            let body = &text[body_start..end];
            if !body.is_empty() && body.chars().nth(200).is_none() {
                pos = end + 1;
                return Some(body);
            }
            pos = end; // the closing backtick may open the next span
        }
    })
}

/// `IDENT = r"[A-Za-z_][A-Za-z0-9_]*"`: ASCII identifiers, leading digits skipped, no word boundary required.
fn ident_tokens(text: &str) -> impl Iterator<Item = &str> {
    runs(text, &IDENT_CHAR).filter_map(|(_, run)| ident_start(run).map(|start| &run[start..]))
}

/// `CALL = r"([A-Za-z_]\w*)\s*\("`: the name before an opening parenthesis.
///
/// Each '(' ends at most one match: back over whitespace, the run of word chars there, from its first
/// `[A-Za-z_]` on (earlier starts are not tried: the regex would take the leftmost one too).
fn call_names(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices('(').filter_map(move |(paren, _)| {
        let before = text[..paren].trim_end_matches(is_py_space);
        let run = &before[run_start(before, &WORD, before.len())..];
        ident_start(run).map(|start| &run[start..])
    })
}

/// Dotted names and source paths, in text order. Both only occur in the runs of `[\w./-]` chars that
/// hold a '.', so one pass over those finds both.
fn dotted_names_and_paths(text: &str) -> (Vec<&str>, Vec<&str>) {
    let mut dotted = Vec::new();
    let mut paths = Vec::new();
    for run in runs_with(text, &PATH_CHAR, '.') {
        // The maximal `[\w.]` runs are the pieces of this run between '/' and '-'.
        dotted.extend(run.split(['/', '-']).filter_map(dotted_prefix));
        paths.extend(path_prefix(run));
    }
    (dotted, paths)
}

/// `DOTTED = r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)"`, applied to a maximal run of `[\w.]` chars:
/// the lookbehind means a match can only start where such a run starts, and at most one fits in it.
fn dotted_prefix(run: &str) -> Option<&str> {
    let starts_ident = |part: &str| ident_start(part) == Some(0);
    let mut parts = run.split('.');
    let first = parts.next().filter(|part| starts_ident(part))?;
    let tail: usize = parts
        .take_while(|part| starts_ident(part))
        .map(|part| 1 + part.len())
        .sum();
    (tail > 0).then(|| &run[..first.len() + tail])
}

/// `PYPATH = r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.py)\b"`, with `py` widened to any of `SOURCE_EXTENSIONS`,
/// applied to a maximal run of `[\w./-]` chars: the lookbehind means a match can only start where such a
/// run starts (so `/abs/x.py` and `http://h/x.py` never match), and at most one fits in it.
///
/// Backtracks like the regex: as many `[\w.-]+/` directories as possible, then one fewer, and so on,
/// until the next segment starts with a `name.ext` file name. So the answer is the last eligible
/// segment that does; a segment is eligible while all segments before it are non-empty.
fn path_prefix(run: &str) -> Option<&str> {
    let mut found = None;
    let mut offset = 0;
    for segment in run.split('/') {
        if let Some(len) = file_name_len(segment) {
            found = Some(&run[..offset + len]);
        }
        if segment.is_empty() {
            break;
        }
        offset += segment.len() + 1;
    }
    found
}

/// `[\w-]+\.ext\b` at the start of a path segment (made of `[\w.-]` only); the extension must be the
/// whole word after the dot, so `x.pyc` is not a `.py` file.
fn file_name_len(segment: &str) -> Option<usize> {
    let stem = segment.bytes().position(|b| b == b'.').filter(|&stem| stem > 0)?;
    let ext = &segment[stem + 1..];
    let ext = &ext[..ext.bytes().position(|b| b == b'.' || b == b'-').unwrap_or(ext.len())];
    SOURCE_EXTENSIONS.contains(&ext).then_some(stem + 1 + ext.len())
}

/// The lines of `text` (as `split('\n')` gives them), each with whether it may hold a stack-trace frame:
/// every frame contains `File "` or a ':' before a digit. One byte scan finds both, which spares most
/// lines the frame matchers.
fn lines_with_frame_hints(text: &str) -> impl Iterator<Item = (&str, bool)> {
    let bytes = text.as_bytes();
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let line_start = start?;
        let mut end = line_start;
        let mut hinted = false;
        let stops = |byte: &u8| matches!(byte, b'\n' | b'"' | b':');
        while let Some(n) = bytes[end..].iter().position(stops) {
            end += n;
            match bytes[end] {
                b'\n' => break,
                b'"' => hinted |= bytes[..end].ends_with(b"File "),
                _ => hinted |= bytes.get(end + 1).is_some_and(u8::is_ascii_digit),
            }
            end += 1;
        }
        if bytes.get(end) != Some(&b'\n') {
            end = bytes.len();
        }
        start = (end < bytes.len()).then_some(end + 1);
        Some((&text[line_start..end], hinted))
    })
}

/// Frame paths of one line: Python frames, then JavaScript and Rust ones.
fn frames_in_line(line: &str) -> impl Iterator<Item = &str> {
    python_frames(line).chain(located_frames(line))
}

/// `FRAME = r'File "([^"\n]+)", line (\d+)(?:, in ([\w<>.]+))?'`
fn python_frames(text: &str) -> impl Iterator<Item = &str> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while let Some(start) = find_str(&text[pos..], "File \"").map(|i| pos + i) {
            if let Some((path, end)) = python_frame_at(text, start + "File \"".len()) {
                pos = end;
                return Some(path);
            }
            pos = start + 1;
        }
        None
    })
}

/// The rest of a FRAME match after `File "`: the path and the end of the match.
fn python_frame_at(text: &str, path_start: usize) -> Option<(&str, usize)> {
    let rest = &text[path_start..];
    let path_len = rest
        .bytes()
        .position(|b| b == b'"' || b == b'\n')
        .filter(|&len| len > 0)?;
    let after = rest[path_len..].strip_prefix("\", line ")?;
    let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let mut end = path_start + path_len + "\", line ".len() + digits;
    if let Some(func) = text[end..].strip_prefix(", in ") {
        let func_len = func.len()
            - func
                .trim_start_matches(|c: char| is_word(c) || matches!(c, '<' | '>' | '.'))
                .len();
        if func_len > 0 {
            end += ", in ".len() + func_len;
        }
    }
    Some((&rest[..path_len], end))
}

/// JavaScript and Rust frames (no regex in the reference): after a whitespace-separated `at` or `-->`,
/// the next token on the line shaped `PATH:LINE:COL`, as in `at f (src/a.js:3:9)`, `at src/main.rs:2:5`
/// or `--> src/lib.rs:7:1`.
fn located_frames(line: &str) -> impl Iterator<Item = &str> {
    let mut armed = false;
    line.split(is_py_space)
        .filter(|token| !token.is_empty())
        .filter_map(move |token| {
            if token == "at" || token == "-->" {
                armed = true;
                return None;
            }
            let path = location_path(token).filter(|_| armed)?;
            armed = false;
            Some(path)
        })
}

/// The path of a `PATH:LINE:COL` token, which may be wrapped in parentheses or end in ':' or ','. The path
/// must contain '/', '\' or '.', which keeps out `<anonymous>:1:1` and clock times.
fn location_path(token: &str) -> Option<&str> {
    let token = token
        .strip_prefix('(')
        .unwrap_or(token)
        .trim_end_matches([')', ',', ':', ';']);
    let (rest, col) = token.rsplit_once(':')?;
    let (path, line) = rest.rsplit_once(':')?;
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let path = path.strip_prefix("file://").unwrap_or(path);
    (number(line) && number(col) && path.contains(['/', '\\', '.'])).then_some(path)
}

/// A set with a cheap multiply-rotate hash (as in rustc's `FxHash`): `SipHash` would dominate the cost of
/// deduplicating tens of thousands of repeated tokens. Every set here holds at most a few hundred entries,
/// so even crafted collisions stay cheap.
type FastSet<T> = HashSet<T, BuildHasherDefault<FxHasher>>;

/// The hasher behind [`FastSet`].
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    /// Mixes one word into the state.
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            self.add(tail.iter().fold(0, |word, &byte| (word << 8) | u64::from(byte)));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Distinct identifiers in first-seen order, remembering whether the first sighting was in the title.
#[derive(Default)]
struct IdentCollector<'a> {
    seen: FastSet<&'a str>,
    idents: Vec<Ident>,
}

impl<'a> IdentCollector<'a> {
    /// Adds the names not seen yet, until `MAX_IDENTS` are kept.
    fn add_all(&mut self, names: impl IntoIterator<Item = &'a str>, in_title: bool) {
        for name in names {
            if self.idents.len() >= MAX_IDENTS {
                return;
            }
            if self.seen.insert(name) {
                self.idents.push(Ident {
                    name: name.to_owned(),
                    in_title,
                });
            }
        }
    }

    /// The identifiers, in first-seen order.
    fn finish(self) -> Vec<Ident> {
        self.idents
    }
}

/// The reference's shape rules; lengths are in chars, as Python counts them.
fn classify(text: &str, code: &str, frame_count: usize) -> Shape {
    let n = text.chars().count();
    if n < 80 {
        let words: Vec<&str> = ident_tokens(text).take(4).collect();
        if words.len() <= 3 && (words.len() == 1 || words.iter().all(|w| is_codeish(w))) {
            return Shape::Identifier;
        }
    }
    if frame_count >= 2 && n < 4000 && 2 * code.chars().count() > n {
        return Shape::StackTrace;
    }
    if n < 300 && is_blank(code) {
        return Shape::Natural;
    }
    Shape::Issue
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(q: &QueryText) -> Vec<&str> {
        q.idents.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn drops_template_comments() {
        let q = understand(
            "<!-- Please search existing issues first. -->\nHTML writer ignores formats\n<!-- hidden\nhint -->body text\n<!-- open",
        );
        assert_eq!(q.title, "HTML writer ignores formats");
        assert_eq!(q.cleaned, "\nHTML writer ignores formats\nbody text\n<!-- open");
    }

    #[test]
    fn strips_show_versions_dump_and_keeps_prose() {
        let text = "Plot fails\n\nNote: this only happens with dask.\n\n<details>\nINSTALLED VERSIONS\n\
                    ------------------\ncommit: None\npython: 3.8.5 (default, Sep  4 2020, 07:30:14)\n\
                    python-bits: 64\nOS: Linux\n\nxarray: 0.16.0\npandas: 1.1.0\n\n</details>\nThe end.";
        let cleaned = strip_env(text);
        assert_eq!(
            cleaned,
            "Plot fails\n\nNote: this only happens with dask.\n\n<details>\nINSTALLED VERSIONS\n\
             ------------------\n\n</details>\nThe end."
        );
    }

    #[test]
    fn strips_pip_freeze_block() {
        let text = "Install list:\nnumpy==1.19.0\npandas==1.1.0\nscipy==1.5.2\n  - attrs==20.1.0\nDone.";
        assert_eq!(strip_env(text), "Done.");
    }

    #[test]
    fn keeps_short_runs_and_long_values() {
        let three = "a: 1\nb: 2\nc: 3\nprose here";
        assert_eq!(strip_env(three), three);
        let long_value = format!("a: {}\nb: 2\nc: 3\nd: 4", "x".repeat(81));
        assert_eq!(strip_env(&long_value), long_value);
        let long_key = format!("a{}: 1\nb: 2\nc: 3\nd: 4", "k".repeat(41));
        assert_eq!(strip_env(&long_key), long_key);
    }

    #[test]
    fn a_run_spans_blank_lines_but_not_its_trailing_ones() {
        assert_eq!(strip_env("a: 1\n\nb: 2\n\nc: 3\nd: 4\n\n\nprose"), "\n\nprose");
    }

    #[test]
    fn windows_line_ends_are_normalized() {
        assert_eq!(
            understand("a: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\nrest\rmore").cleaned,
            "rest\nmore"
        );
    }

    #[test]
    fn drops_checkbox_lines() {
        let text = "Title\n- [x] I searched\n * [ ] Not yet\n- [X] Done\n- [y] keep\nbody";
        assert_eq!(strip_env(text), "Title\n- [y] keep\nbody");
    }

    #[test]
    fn title_is_first_nonblank_line_trimmed() {
        let q = understand("\n  \n   Crash in `Foo.bar`  \r\nbody text");
        assert_eq!(q.title, "Crash in `Foo.bar`");
    }

    #[test]
    fn identifiers_keep_reference_order_and_title_provenance() {
        let text = "Dataset.to_stacked_array fails\n\nCalling `xr.merge(a)` breaks:\n\n```python\n\
                    ds = make_ds()\nds.to_stacked_array('z')\n```\nthen plain prose words.";
        let q = understand(text);
        assert_eq!(
            names(&q),
            [
                "Dataset",
                "to_stacked_array",
                "fails",
                "xr",
                "merge",
                "a",
                "ds",
                "make_ds",
                "z",
                "Calling",
                "breaks",
                "then",
                "plain",
                "prose",
                "words"
            ]
        );
        let in_title: Vec<&str> = q
            .idents
            .iter()
            .filter(|i| i.in_title)
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(in_title, ["Dataset", "to_stacked_array", "fails"]);
        assert_eq!(
            q.dotted,
            ["Dataset.to_stacked_array", "xr.merge", "ds.to_stacked_array"]
        );
    }

    #[test]
    fn calls_and_dotted_parts_add_non_ascii_names_last() {
        // IDENT is ASCII-only, CALL and DOTTED use the Unicode \w, so these names only arrive at the end.
        let q = understand("x\n    fooébar(1)\nsee a.bé");
        assert_eq!(names(&q), ["x", "foo", "bar", "see", "a", "b", "fooébar", "bé"]);
    }

    #[test]
    fn dotted_names_follow_the_lookbehind() {
        let q = understand("a.b.c éa.b x.1y a..b _a._b.c9 a.b.c");
        assert_eq!(q.dotted, ["a.b.c", "_a._b.c9"]);
    }

    #[test]
    fn paths_with_several_extensions() {
        let q = understand(
            "See src/search/query.rs, lib/x.ts and pkg/mod.py; also ./a/b.go, Main.java, x/foo.py-bar, \
             foo.py.bak and again src/search/query.rs.",
        );
        assert_eq!(
            q.paths,
            [
                "src/search/query.rs",
                "lib/x.ts",
                "pkg/mod.py",
                "./a/b.go",
                "Main.java",
                "x/foo.py",
                "foo.py"
            ]
        );
    }

    #[test]
    fn paths_skip_compiled_absolute_and_url_paths() {
        let q = understand("foo.pyc http://x/y.py /usr/lib/foo.py a//b.py C:\\foo\\bar.py x.md a.py/b.py");
        assert_eq!(q.paths, ["bar.py", "a.py/b.py"]);
    }

    #[test]
    fn python_traceback_frames() {
        let text = "Traceback (most recent call last):\n  File \"/x/site-packages/astropy/io/fits/card.py\", \
                    line 12, in <module>\n    foo()\n  File \"C:\\proj\\pkg\\mod.py\", line 3, in f.g\n\
                    File \"<stdin>\", line 1\nFile \"/x/site-packages/astropy/io/fits/card.py\", line 40\n\
                    File \"bad\", line x\nValueError: boom";
        let q = understand(text);
        // The innermost call (printed last) first.
        assert_eq!(
            q.frames,
            [
                "/x/site-packages/astropy/io/fits/card.py",
                "<stdin>",
                "C:/proj/pkg/mod.py"
            ]
        );
        assert_eq!(q.shape, Shape::StackTrace);
    }

    #[test]
    fn javascript_and_rust_frames() {
        let text = "TypeError: x is undefined\n    at render (/app/src/view.js:10:5)\n    \
                    at Object.<anonymous> (file:///app/index.js:1:2)\n    at /app/lib/util.ts:3:4\n    \
                    at async Promise.all (index 0)\nthread 'main' panicked at src/main.rs:2:5:\n\
                    error[E0308]: mismatched types\n  --> src/lib.rs:7:1\nwe met at 12:30:45 today";
        let q = understand(text);
        assert_eq!(
            q.frames,
            [
                "/app/src/view.js",
                "/app/index.js",
                "/app/lib/util.ts",
                "src/main.rs",
                "src/lib.rs"
            ]
        );
    }

    #[test]
    fn code_regions_feed_call_names() {
        let text = "Title here\n\n```python\nresult = compute_total (items)\n```\n\tindented_call(x)\n\
                    >>> prompt_call()\nprose_call(y) is prose so not a call";
        let regions = code_regions(text);
        assert_eq!(
            regions.code,
            "result = compute_total (items)\n\n\tindented_call(x)\n>>> prompt_call()"
        );
        assert_eq!(regions.prose, "Title here\n\n\n\nprose_call(y) is prose so not a call");
        let calls: Vec<&str> = call_names(&regions.code).collect();
        assert_eq!(calls, ["compute_total", "indented_call", "prompt_call"]);
    }

    #[test]
    fn unclosed_fence_runs_to_end() {
        let (bodies, rest) = split_fences("a ```py\nb\n```\nc\n```\nd(e)");
        assert_eq!(bodies, ["b\n", "d(e)"]);
        assert_eq!(rest, "a \n\nc\n\n");
        let (bodies, rest) = split_fences("no ``` newline");
        assert!(bodies.is_empty());
        assert_eq!(rest, "no ``` newline");
    }

    #[test]
    fn backticks_follow_the_regex() {
        let text = format!("`a` `` `b\nc` `{}` `d` ``e``", "x".repeat(201));
        let ticks: Vec<&str> = backticks(&text).collect();
        assert_eq!(ticks, ["a", " ", " ", " ", " ", "e"]);
    }

    #[test]
    fn shapes_match_the_reference() {
        assert_eq!(understand("parse_args").shape, Shape::Identifier);
        assert_eq!(understand("QuerySet.select_related").shape, Shape::Identifier);
        assert_eq!(understand("QuerySet.filter").shape, Shape::Natural); // "filter" is an English word
        assert_eq!(understand("serializer").shape, Shape::Identifier);
        assert_eq!(understand("").shape, Shape::Identifier);
        assert_eq!(understand("how are tokens refreshed").shape, Shape::Natural);
        let trace = "  File \"a/b.py\", line 1, in f\n    g()\n  File \"a/c.py\", line 2, in g\n    raise X";
        assert_eq!(understand(trace).shape, Shape::StackTrace);
        let issue = "Bug in thing\n\nWhen I do this:\n\n```\nfoo(1)\n```\nit breaks.";
        assert_eq!(understand(issue).shape, Shape::Issue);
        assert_eq!(understand(&"word ".repeat(70)).shape, Shape::Issue);
        assert_eq!(Shape::StackTrace.as_str(), "stacktrace");
    }

    #[test]
    fn codeish_names() {
        for name in [
            "snake_case",
            "camelCase",
            "CamelCase",
            "__init__",
            "Http2Server",
            "__",
            "_a_b",
        ] {
            assert!(is_codeish(name), "{name}");
        }
        for name in ["word", "Word", "_private", "URL", "A1"] {
            assert!(!is_codeish(name), "{name}");
        }
    }

    #[test]
    fn large_input_is_truncated_and_capped() {
        let mut text = String::from("Title é\n");
        let mut i = 0;
        while text.len() < 200 * 1024 {
            text.push_str(&format!("call_{i}(m{i}.attr_{i}) in pkg/mod_{i}.py é\n"));
            i += 1;
        }
        let q = understand(&text);
        assert!(q.cleaned.len() <= MAX_INPUT_BYTES);
        assert_eq!(q.idents.len(), MAX_IDENTS);
        assert_eq!(q.dotted.len(), MAX_DOTTED);
        assert_eq!(q.paths.len(), MAX_PATHS);
        assert_eq!(q.title, "Title é");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let text = "é".repeat(MAX_INPUT_BYTES); // two bytes each
        let q = understand(&format!("x{text}"));
        assert_eq!(q.cleaned.len(), MAX_INPUT_BYTES - 1);
    }

    #[test]
    fn non_ascii_around_every_construct() {
        let text = "ünïcødé title `tïck` ✓\n\
                    ✓ naïve: ü\n\
                    - [ü] not a box ✓\n\
                    ```py ✓\nπ = fünc(ø)\n```✓\n\
                    ✓ see é/foo.py, ü.py and 路径/模块.rs ✓\n\
                    ✓ Ωmega.β.γ and αa.b ✓\n\
                    File \"ü/ñ.py\", line 7, in ƒ\n\
                    \u{a0}at ƒ (ü/x.js:1:2) ✓\n\
                    ✓ `✓` `é`\u{2028}end";
        let q = understand(text);
        assert_eq!(q.title, "ünïcødé title `tïck` ✓");
        assert_eq!(q.paths, ["é/foo.py", "ü.py", "路径/模块.rs", "ü/ñ.py", "ü/x.js"]);
        assert_eq!(q.frames, ["ü/ñ.py", "ü/x.js"]);
        assert_eq!(q.dotted, ["foo.py", "x.js"]);
        assert_eq!(
            names(&q),
            [
                "n", "c", "d", "title", "t", "ck", "f", "nc", "File", "py", "line", "in", "at", "x", "js", "na", "ve",
                "not", "a", "box", "see", "foo", "and", "rs", "mega", "b", "end", "fünc"
            ]
        );
        for cut in 0..text.len() {
            if text.is_char_boundary(cut) {
                let _ = understand(&text[..cut]);
                let _ = understand(&text[cut..]);
            }
        }
    }
}
