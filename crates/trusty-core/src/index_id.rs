//! Index ids become object-store keys and Kubernetes names, so they are
//! validated once, at every boundary, and carried as a type afterwards.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A validated index id: `[a-z0-9][a-z0-9._-]{0,62}`, and never `.`-only
/// segments such as `..` that could escape a key prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IndexId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid index id {id:?}: {reason}")]
pub struct InvalidIndexId {
    pub id: String,
    pub reason: &'static str,
}

impl IndexId {
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidIndexId> {
        let id = id.into();
        let bad = |reason| Err(InvalidIndexId { id: id.clone(), reason });
        if id.is_empty() {
            return bad("must not be empty");
        }
        if id.len() > 63 {
            return bad("must be at most 63 characters");
        }
        let first = id.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return bad("must start with a lowercase letter or digit");
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        {
            return bad("may only contain lowercase letters, digits, '.', '_' and '-'");
        }
        if id.contains("..") {
            return bad("must not contain '..'");
        }
        Ok(IndexId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IndexId {
    type Error = InvalidIndexId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        IndexId::new(s)
    }
}

impl From<IndexId> for String {
    fn from(id: IndexId) -> String {
        id.0
    }
}

impl std::str::FromStr for IndexId {
    type Err = InvalidIndexId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IndexId::new(s)
    }
}

impl fmt::Display for IndexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IndexId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for id in ["a", "tokio", "my-repo_2.0", "0abc", &"x".repeat(63)] {
            assert!(IndexId::new(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_ids_that_escape_or_break_names() {
        for id in [
            "",
            "../x",
            "..",
            "a/b",
            "A",
            "-a",
            ".a",
            "a..b",
            "a b",
            "é",
            &"x".repeat(64),
            "a\\b",
            "a%2f",
        ] {
            assert!(IndexId::new(id).is_err(), "{id:?} should be refused");
        }
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<IndexId>("\"../etc\"").is_err());
        assert_eq!(serde_json::from_str::<IndexId>("\"ok\"").unwrap().as_str(), "ok");
    }
}
