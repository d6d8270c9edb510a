//! One line for an error and its causes, for the places where only text
//! travels: the CLI's last words, HTTP and MCP error bodies, log fields.
//!
//! Many of our messages spell out their source as well as keeping it as
//! `#[source]` (an API answer shows only the top message), so a cause whose
//! text is already in the line is not repeated.

use std::error::Error;

/// `starting the shard: opening the index: permission denied`.
pub fn one_line(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("opening the index: {0}")]
    struct Spelled(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("listening on :80")]
    struct Terse(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("starting the shard")]
    struct Outer(#[source] Spelled);

    #[test]
    fn each_cause_appears_once() {
        let io = || std::io::Error::other("permission denied");
        assert_eq!(
            one_line(&Outer(Spelled(io()))),
            "starting the shard: opening the index: permission denied"
        );
        assert_eq!(one_line(&Terse(io())), "listening on :80: permission denied");
        assert_eq!(one_line(&io()), "permission denied");
        // The CLI hands over anyhow's outermost error; its context chain is walked the same way.
        let with_context = anyhow::Error::new(Spelled(io())).context("starting the shard");
        assert_eq!(
            one_line(with_context.as_ref()),
            "starting the shard: opening the index: permission denied"
        );
    }
}
