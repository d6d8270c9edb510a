//! Name helpers shared by the graph builder (call resolution) and the
//! search side (name lookup).

/// Splits a call expression into (qualifier, name): `Foo::new` → (`Foo`, `new`),
/// `self.client.get()` → (`client`, `get`), `parse` → (None, `parse`).
/// Generic arguments and call parentheses are dropped; `None` when no
/// identifier is left.
pub(crate) fn split_call(call: &str) -> Option<(Option<&str>, &str)> {
    let call = call
        .trim()
        .trim_start_matches("new ")
        .trim_start_matches(['&', '*', '!']);
    let mut segs = call
        .split(['.', ':', '>', '-'])
        .map(|s| s.split(['<', '(', '[', ' ', '!']).next().unwrap_or("").trim())
        .filter(|s| !s.is_empty());
    let mut last = None;
    let mut prev = None;
    for s in segs.by_ref() {
        prev = last;
        last = Some(s);
    }
    let name = last?;
    if !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$') {
        return None;
    }
    Some((prev, name))
}

/// Identifier parts, lower-cased: `parseHTTPRequest_v2` → `parse`, `http`, `request`, `v2`.
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
