//! Files without symbols. Markdown (and reStructuredText) is split at headings so
//! a hit names its section; YAML and TOML are split at top-level keys / tables and
//! small neighbours are packed together, so a Kubernetes manifest is one chunk
//! rather than one per key.

use super::Emitter;
use crate::model::SymbolKind;

/// One heading-delimited or key-delimited stretch of rows (0-based, inclusive).
struct Section {
    first: usize,
    last: usize,
    title: Option<String>,
    parent: Option<String>,
}

pub(super) fn markdown(out: &mut Emitter<'_>, rst: bool) {
    let n = out.lines.count();
    let mut headings: Vec<(usize, usize, String)> = Vec::new(); // (row, level, title)
    let mut fence: Option<(char, usize)> = None;
    let mut prev_text_row: Option<usize> = None;
    let mut rst_levels: Vec<char> = Vec::new();
    // YAML front matter (`---` ... `---` at the top) is never a heading.
    let mut start = 0;
    if out.lines.line(out.text, 0).trim_end() == "---" {
        start = (1..n)
            .find(|&r| out.lines.line(out.text, r).trim_end() == "---")
            .map_or(0, |r| r + 1);
    }
    for row in start..n {
        let line = out.lines.line(out.text, row);
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some((ch, len)) = fence {
            let run = trimmed.chars().take_while(|&c| c == ch).count();
            if run >= len && trimmed[run * ch.len_utf8()..].trim().is_empty() {
                fence = None;
            }
            continue;
        }
        if indent <= 3 && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
            let ch = trimmed.chars().next().unwrap_or('`');
            fence = Some((ch, trimmed.chars().take_while(|&c| c == ch).count()));
            prev_text_row = None;
            continue;
        }
        if indent <= 3
            && !rst
            && let Some((level, title)) = atx_heading(trimmed)
        {
            headings.push((row, level, title));
            prev_text_row = None;
            continue;
        }
        // Setext / reStructuredText: a text line underlined by `===`, `---`, `~~~` ...
        if let Some(text_row) = prev_text_row
            && let Some(ch) = underline(line, rst)
        {
            let level = if rst {
                match rst_levels.iter().position(|&c| c == ch) {
                    Some(i) => i + 1,
                    None => {
                        rst_levels.push(ch);
                        rst_levels.len()
                    }
                }
            } else if ch == '=' {
                1
            } else {
                2
            };
            let title = out.lines.line(out.text, text_row).trim().to_string();
            headings.push((text_row, level, title));
            prev_text_row = None;
            continue;
        }
        prev_text_row = (!line.trim().is_empty() && indent <= 3 && row + 1 < n).then_some(row);
    }

    let mut sections = Vec::new();
    let first_heading = headings.first().map_or(n, |h| h.0);
    if first_heading > 0 {
        sections.push(Section {
            first: 0,
            last: first_heading - 1,
            title: None,
            parent: None,
        });
    }
    let mut stack: Vec<(usize, String)> = Vec::new(); // enclosing (level, title)
    for (i, (row, level, title)) in headings.iter().enumerate() {
        let last = headings.get(i + 1).map_or(n - 1, |next| next.0 - 1);
        while stack.last().is_some_and(|(l, _)| l >= level) {
            stack.pop();
        }
        let parent = stack.last().map(|(_, t)| t.clone());
        sections.push(Section {
            first: *row,
            last,
            title: Some(title.clone()),
            parent,
        });
        stack.push((*level, title.clone()));
    }
    for s in sections {
        match s.title {
            Some(title) => {
                let mut last = s.last;
                while last > s.first && out.is_blank(last) {
                    last -= 1;
                }
                let title = (!title.is_empty()).then_some(title.as_str());
                out.region(SymbolKind::Section, title, s.parent.as_deref(), s.first, last, false);
            }
            None => out.gap(None, s.first, s.last),
        }
    }
}

/// `## Title ##` → (2, "Title").
fn atx_heading(trimmed: &str) -> Option<(usize, String)> {
    let level = trimmed.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim_end();
    Some((level, title.to_string()))
}

/// The underline character of a setext (`=`/`-`) or reStructuredText heading.
fn underline(line: &str, rst: bool) -> Option<char> {
    let t = line.trim_end();
    let ch = t.chars().next()?;
    let allowed = if rst { "=-~^\"'`#*+:.<>_" } else { "=-" };
    let len = t.chars().count();
    (allowed.contains(ch)
        && len >= if rst { 3 } else { 1 }
        && t.chars().all(|c| c == ch)
        && (rst || !t.starts_with(' ')))
    .then_some(ch)
}

pub(super) fn yaml(out: &mut Emitter<'_>) {
    keyed(out, |line| {
        if line.starts_with("---") || line.starts_with("...") {
            return Some(None);
        }
        let first = line.chars().next()?;
        if first.is_whitespace() || matches!(first, '#' | '-' | '[' | '{' | '}' | ']') {
            return None;
        }
        let (key, _) = line.split_once(':')?;
        let key = key.trim().trim_matches(['"', '\'']);
        Some(Some(key.to_string()))
    });
}

pub(super) fn toml(out: &mut Emitter<'_>) {
    keyed(out, |line| {
        let t = line.trim();
        if !t.starts_with('[') {
            return None;
        }
        let inner = t.trim_start_matches('[');
        let end = inner.find(']')?;
        Some(Some(inner[..end].trim().to_string()))
    });
}

/// Splits at rows where `boundary` returns `Some(key)` (`Some(None)`: a boundary
/// without a name, such as a YAML document separator), then packs consecutive
/// sections into chunks of at most `window_lines` lines. A chunk of exactly one
/// named section carries its key as the symbol; a section over `max_chunk_lines`
/// is windowed under its key.
fn keyed(out: &mut Emitter<'_>, boundary: impl Fn(&str) -> Option<Option<String>>) {
    let n = out.lines.count();
    let mut sections: Vec<Section> = Vec::new();
    let mut current = Section {
        first: 0,
        last: 0,
        title: None,
        parent: None,
    };
    for row in 0..n {
        if let Some(title) = boundary(out.lines.line(out.text, row))
            && row > 0
        {
            current.last = row - 1;
            sections.push(std::mem::replace(
                &mut current,
                Section {
                    first: row,
                    last: row,
                    title,
                    parent: None,
                },
            ));
        } else if row == 0 {
            current.title = boundary(out.lines.line(out.text, 0)).flatten();
        }
    }
    current.last = n - 1;
    sections.push(current);

    let window = out.cfg.window_lines;
    let mut group: Vec<Section> = Vec::new();
    let flush = |out: &mut Emitter<'_>, group: &mut Vec<Section>| {
        if let (Some(a), Some(b)) = (group.first(), group.last()) {
            let title = if group.len() == 1 { a.title.clone() } else { None };
            let (first, last) = (a.first, b.last);
            match title {
                Some(t) => {
                    let mut last = last;
                    while last > first && out.is_blank(last) {
                        last -= 1;
                    }
                    out.region(SymbolKind::Window, Some(&t), None, first, last, true);
                }
                None => out.gap(None, first, last),
            }
        }
        group.clear();
    };
    for s in sections {
        let len = s.last - s.first + 1;
        let group_len = group.first().map_or(0, |a| s.first - a.first);
        if !group.is_empty() && group_len + len > window {
            flush(out, &mut group);
        }
        group.push(s);
    }
    flush(out, &mut group);
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{ChunkConfig, chunk_file};
    use super::*;
    use crate::model::Language;

    const MD: &str = "---\ntitle: x\n---\nIntro line.\n\n# Guide\n\nWelcome.\n\n## Install\n\n```sh\n# not a heading\ncargo install x\n```\n\n## Use ##\nRun it.\n\nConfig\n------\nSet vars.\n\n# Appendix\n";

    #[test]
    fn markdown_sections_by_heading() {
        let chunks = chunk_file("README.md", Language::Markdown, MD, &ChunkConfig::default());
        assert_content_matches_lines(MD, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 4),
                (Some("Guide"), Section, None, 6, 8),
                (Some("Install"), Section, Some("Guide"), 10, 15),
                (Some("Use"), Section, Some("Guide"), 17, 18),
                (Some("Config"), Section, Some("Guide"), 20, 22),
                (Some("Appendix"), Section, None, 24, 24),
            ]
        );
        assert!(chunks[2].content.contains("# not a heading"));
    }

    #[test]
    fn oversize_markdown_section_is_windowed_under_its_title() {
        let mut md = String::from("# Big\n");
        for i in 0..40 {
            md.push_str(&format!("paragraph {i}\n"));
        }
        let cfg = ChunkConfig {
            max_chunk_lines: 20,
            window_lines: 10,
            window_overlap: 2,
        };
        let chunks = chunk_file("big.md", Language::Markdown, &md, &cfg);
        assert_content_matches_lines(&md, &chunks);
        assert!(chunks.len() >= 4);
        assert!(
            chunks
                .iter()
                .all(|c| c.symbol.as_deref() == Some("Big") && c.kind == SymbolKind::Section)
        );
        assert_eq!(chunks.last().map(|c| c.end_line), Some(41));
    }

    #[test]
    fn rst_underlined_headings() {
        let rst = "Title\n=====\n\nText.\n\nPart\n----\n\nMore.\n";
        let chunks = chunk_file("doc.rst", Language::Markdown, rst, &ChunkConfig::default());
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (Some("Title"), Section, None, 1, 4),
                (Some("Part"), Section, Some("Title"), 6, 9)
            ]
        );
    }

    #[test]
    fn yaml_small_keys_pack_and_big_keys_stand_alone() {
        let mut y = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n");
        y.push_str("data:\n");
        for i in 0..12 {
            y.push_str(&format!("  k{i}: v{i}\n"));
        }
        y.push_str("---\nkind: Other\n");
        let cfg = ChunkConfig {
            max_chunk_lines: 30,
            window_lines: 8,
            window_overlap: 2,
        };
        let chunks = chunk_file("cm.yaml", Language::Yaml, &y, &cfg);
        assert_content_matches_lines(&y, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 4),
                (Some("data"), Window, None, 5, 17),
                (None, Window, None, 18, 19)
            ]
        );
    }

    #[test]
    fn toml_tables_become_named_windows() {
        let t = "name = \"x\"\n\n[package]\nversion = \"1\"\nedition = \"2024\"\n\n[dependencies]\nserde = \"1\"\n";
        let cfg = ChunkConfig {
            max_chunk_lines: 30,
            window_lines: 4,
            window_overlap: 1,
        };
        let chunks = chunk_file("Cargo.toml", Language::Toml, t, &cfg);
        assert_content_matches_lines(t, &chunks);
        use SymbolKind::*;
        assert_eq!(
            outline(&chunks),
            vec![
                (None, Window, None, 1, 1),
                (Some("package"), Window, None, 3, 5),
                (Some("dependencies"), Window, None, 7, 8),
            ]
        );
    }
}
