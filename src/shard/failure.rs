//! How a restore ends without an index: refused for want of room, which
//! passes once restores in flight settle, or failed, which the slot
//! remembers (with its sources) and retries with backoff.

use crate::search::engine::EngineError;
use crate::storage::open::OpenError;
use std::time::Duration;

/// How a restore ended without an index.
#[derive(Debug)]
pub enum RestoreError {
    Failed(LoadFailure),
    Refused(Refusal),
}

impl From<OpenError> for RestoreError {
    fn from(e: OpenError) -> Self {
        RestoreError::Failed(e.into())
    }
}

/// Why a restore could not get room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the index needs {need} bytes of {tier}, more than this shard's whole {tier} budget of {budget} bytes")]
    TooLarge { tier: &'static str, need: u64, budget: u64 },
    #[error(
        "no room in the {tier} budget: it is held by restores in flight or by indexes a background load may not evict"
    )]
    Full { tier: &'static str },
}

impl Refusal {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Full { .. } => "full",
        }
    }
}

/// Why a restore failed. The slot remembers it and every waiter is told,
/// so it is shared behind an `Arc` with its sources, not copied into text.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{what} did not finish within {after:?}")]
    TimedOut { what: String, after: Duration },
    #[error("CURRENT answered \"not modified\" to a read without an ETag")]
    CurrentNotModified,
    /// Checksums matched but an arm would not open: the bundle itself is bad.
    #[error("the downloaded version would not open")]
    Bundle(#[source] EngineError),
    /// More than a whole budget: nothing changes until the index or the budget does.
    #[error(transparent)]
    TooLarge(Refusal),
    /// An admin unregistered the index; its slot is no longer the registry's.
    #[error("unregistered")]
    Unregistered,
}

impl LoadFailure {
    /// The metric label and the reason status bodies give.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadFailure::Open(e) => e.reason(),
            LoadFailure::TimedOut { .. } => "timeout",
            LoadFailure::CurrentNotModified => "io",
            LoadFailure::Bundle(_) => "corrupt",
            LoadFailure::TooLarge(_) => "too_large",
            LoadFailure::Unregistered => "not_found",
        }
    }

    /// Storage says the index does not exist, or it was unregistered:
    /// forget it rather than retry.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            LoadFailure::Open(OpenError::NotFound { .. }) | LoadFailure::Unregistered
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IndexId;
    use crate::error_chain::one_line;
    use crate::shard::ResolveError;
    use std::sync::Arc;

    #[test]
    fn a_failure_keeps_its_reason_and_its_cause_through_the_resolver() {
        let gone = LoadFailure::from(OpenError::NotFound {
            index_id: "demo".into(),
        });
        assert!(gone.is_not_found());
        assert_eq!(gone.reason(), "not_found");
        let too_large = LoadFailure::TooLarge(Refusal::TooLarge {
            tier: "memory",
            need: 2048,
            budget: 1024,
        });
        assert!(!too_large.is_not_found());
        let resolved = ResolveError::Failed {
            id: IndexId::new("demo").unwrap(),
            error: Arc::new(too_large),
            retry_in: Duration::from_secs(60),
        };
        assert_eq!(
            one_line(&resolved),
            "index demo failed to load (too_large): the index needs 2048 bytes of memory, \
             more than this shard's whole memory budget of 1024 bytes"
        );
    }
}
