//! Copying a published version from one store into another: how an index
//! built elsewhere (another cluster, a CI pipeline) comes to be served here.
//!
//! The copy is the reader's path followed by the writer's: [`fetch_version`]
//! downloads and verifies every file against the source's manifest into a
//! local directory, then [`publish`] uploads the same bundle (same version,
//! same manifest) and swaps `CURRENT` last. So a corrupt source is refused,
//! and readers of the destination see the old version or the complete new one.

use super::open::{OpenError, fetch_version, read_current};
use super::publish::{PublishError, PublishOptions, publish};
use super::store::Store;
use crate::IndexId;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading the source: {0}")]
    Source(#[source] OpenError),
    #[error("reading the destination's CURRENT: {0}")]
    DestinationRead(#[source] OpenError),
    #[error("writing the destination: {0}")]
    Destination(#[from] PublishError),
}

impl ImportError {
    /// Bounded reason label, as the shard reports for failed loads.
    pub fn reason(&self) -> &'static str {
        match self {
            ImportError::Source(e) | ImportError::DestinationRead(e) => e.reason(),
            ImportError::Destination(_) => "store_unavailable",
        }
    }
}

/// What [`import_current`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The version current in the destination afterwards.
    pub version: String,
    /// False when the destination already served that version.
    pub copied: bool,
}

/// Makes the destination serve the source's current version of `id`,
/// staging files under `work_dir` (removed afterwards). Does nothing when the
/// destination's `CURRENT` already names that version.
pub async fn import_current(
    source: &Store,
    destination: &Store,
    id: &IndexId,
    work_dir: &Path,
    opts: &PublishOptions,
) -> Result<Imported, ImportError> {
    let (pointer, _) = read_current(source, id, None)
        .await
        .map_err(ImportError::Source)?
        .ok_or_else(|| {
            ImportError::Source(OpenError::NotFound {
                index_id: id.to_string(),
            })
        })?;
    match read_current(destination, id, None).await {
        Ok(Some((there, _))) if there == pointer => {
            return Ok(Imported {
                version: pointer.version,
                copied: false,
            });
        }
        Ok(_) | Err(OpenError::NotFound { .. }) => {}
        Err(e) => return Err(ImportError::DestinationRead(e)),
    }
    let local = fetch_version(source, id, work_dir, &pointer, opts.parallelism)
        .await
        .map_err(ImportError::Source)?;
    let result = publish(destination, id, &local.dir, opts).await;
    let _ = std::fs::remove_dir_all(&local.dir);
    let published = result?;
    Ok(Imported {
        version: published.version,
        copied: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::layout;
    use crate::storage::publish::tests::bundle;
    use bytes::Bytes;

    #[tokio::test]
    async fn copies_the_current_version_once_and_follows_new_ones() {
        let (src, dst) = (
            Store::open("memory://import-src").unwrap(),
            Store::open("memory://import-dst").unwrap(),
        );
        let id = IndexId::new("demo").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let opts = PublishOptions::default();
        let first = bundle(&tmp.path().join("a"), "demo", "first");
        publish(&src, &id, &tmp.path().join("a"), &opts).await.unwrap();

        let got = import_current(&src, &dst, &id, &tmp.path().join("work"), &opts)
            .await
            .unwrap();
        assert_eq!(
            got,
            Imported {
                version: first.version.clone(),
                copied: true
            }
        );
        let (pointer, _) = read_current(&dst, &id, None).await.unwrap().unwrap();
        assert_eq!(pointer.version, first.version);
        let local = fetch_version(&dst, &id, &tmp.path().join("cache"), &pointer, 2)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(local.dir.join("chunks.jsonl")).unwrap(),
            "first"
        );
        assert!(
            !tmp.path().join("work/demo").read_dir().unwrap().any(|_| true),
            "staging removed"
        );

        let again = import_current(&src, &dst, &id, &tmp.path().join("work"), &opts)
            .await
            .unwrap();
        assert!(!again.copied, "up to date: nothing copied");

        let second = bundle(&tmp.path().join("b"), "demo", "second");
        publish(&src, &id, &tmp.path().join("b"), &opts).await.unwrap();
        let got = import_current(&src, &dst, &id, &tmp.path().join("work"), &opts)
            .await
            .unwrap();
        assert_eq!(
            got,
            Imported {
                version: second.version,
                copied: true
            }
        );
    }

    #[tokio::test]
    async fn a_corrupt_or_missing_source_leaves_the_destination_alone() {
        let (src, dst) = (
            Store::open("memory://import-bad-src").unwrap(),
            Store::open("memory://import-bad-dst").unwrap(),
        );
        let id = IndexId::new("demo").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let opts = PublishOptions::default();
        let err = import_current(&src, &dst, &id, tmp.path(), &opts).await.unwrap_err();
        assert_eq!(err.reason(), "not_found", "{err}");

        let m = bundle(&tmp.path().join("a"), "demo", "payload");
        publish(&src, &id, &tmp.path().join("a"), &opts).await.unwrap();
        src.put(
            &layout::file_key(&id, &m.version, "chunks.jsonl"),
            Bytes::from_static(b"tampered"),
        )
        .await
        .unwrap();
        let err = import_current(&src, &dst, &id, &tmp.path().join("work"), &opts)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "corrupt", "{err}");
        assert!(matches!(
            read_current(&dst, &id, None).await,
            Err(OpenError::NotFound { .. })
        ));
    }
}
