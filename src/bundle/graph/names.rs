//! Call-name parsing shared by the graph builder (call resolution) and the
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
