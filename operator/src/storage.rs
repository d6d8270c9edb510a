//! The operator's object-store work: importing a prebuilt index from another
//! store, and what deleting an Index does to its objects (removal for
//! `deletionPolicy: Delete`, withdrawal for `Retain`).
//!
//! Goes through the shared store code (`trusty_core::storage`): the
//! same URLs, credentials from the operator's environment (the variables the
//! build Jobs get from the store Secret), and the same key layout, so the
//! operator needs no shard or router to clean up. Only keys under
//! `<prefix>/indexes/<id>/` are touched; the id is a validated `IndexId`.

use trusty_core::IndexId;
use trusty_core::storage::publish;
use trusty_core::storage::store::Store;

pub use trusty_core::storage::import::{ImportError, Imported};
pub use trusty_core::storage::store::StoreError as StorageError;

/// Whether two store URLs name the same place (ignoring a trailing `/`).
pub fn same_store(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Copies index `id`'s current version from the store at `source` into the
/// cluster's store at `cluster`, unless it is there already. Staged in a
/// temporary directory (the chart mounts an emptyDir at /tmp).
pub async fn import_index(source: &str, cluster: &str, id: &IndexId) -> Result<Imported, ImportError> {
    use trusty_core::storage::import::import_current;
    use trusty_core::storage::open::OpenError;
    let open = |url: &str| {
        Store::open(url).map_err(|e| OpenError::StoreUnavailable {
            index_id: id.to_string(),
            source: e,
        })
    };
    let src = open(source).map_err(ImportError::Source)?;
    let dst = open(cluster).map_err(ImportError::DestinationRead)?;
    let work = tempfile::tempdir().map_err(|e| {
        ImportError::Source(OpenError::Io {
            index_id: id.to_string(),
            path: std::env::temp_dir().display().to_string(),
            source: e,
        })
    })?;
    import_current(&src, &dst, id, work.path(), &Default::default()).await
}

/// Deletes every object of index `id` under the store at `url`; returns how
/// many were removed. Deleting an index with no objects is not an error.
pub async fn delete_index(url: &str, id: &IndexId) -> Result<usize, StorageError> {
    let store = Store::open(url)?;
    publish::delete_index(&store, id).await
}

/// Withdraws index `id` from serving, keeping its versions (see
/// `trusty_core::storage::publish::withdraw`); false when it had no `CURRENT`.
pub async fn withdraw_index(url: &str, id: &IndexId) -> Result<bool, StorageError> {
    let store = Store::open(url)?;
    publish::withdraw(&store, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deletes_only_the_index_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for rel in [
            "store/indexes/repo/CURRENT",
            "store/indexes/repo/versions/v1/manifest.json",
            "store/indexes/repo2/CURRENT",
            "store/indexes/other/CURRENT",
        ] {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"x").unwrap();
        }
        let url = format!("file://{}/store", root.display());
        let id = IndexId::new("repo").unwrap();
        assert_eq!(delete_index(&url, &id).await.unwrap(), 2);
        assert!(!root.join("store/indexes/repo/CURRENT").exists());
        assert!(
            root.join("store/indexes/repo2/CURRENT").exists(),
            "a sibling with a common prefix survives"
        );
        assert!(root.join("store/indexes/other/CURRENT").exists());
        assert_eq!(delete_index(&url, &id).await.unwrap(), 0, "second pass finds nothing");
    }

    #[test]
    fn rejects_unknown_schemes() {
        assert!(matches!(Store::open("ftp://x/y"), Err(StorageError::InvalidUrl { .. })));
    }
}
