//! Removal of an index's objects for `deletionPolicy: Delete`.
//!
//! Uses `object_store` directly with credentials from the operator's
//! environment (the same variables the build Jobs get from the store Secret),
//! so the operator needs no shard or router to clean up. Only keys under
//! `<prefix>/indexes/<id>/` are touched; the id is a validated `IndexId`, so
//! the prefix cannot be escaped.

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreScheme, path::Path};
use std::sync::Arc;
use trusty_search::IndexId;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("object store {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// Opens `url` (s3://, gs://, az://, abfs://, file://, memory://) with
/// credentials from the environment.
pub fn open(url: &str) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    let invalid = |reason: String| StorageError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    let (scheme, path) = ObjectStoreScheme::parse(&parsed).map_err(|e| invalid(e.to_string()))?;
    let store_err = |source| StorageError::Store {
        url: url.to_string(),
        source,
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => Arc::new(object_store::local::LocalFileSystem::new()),
        ObjectStoreScheme::Memory => Arc::new(object_store::memory::InMemory::new()),
        ObjectStoreScheme::AmazonS3 => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .map_err(store_err)?,
        ),
        ObjectStoreScheme::GoogleCloudStorage => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(store_err)?,
        ),
        ObjectStoreScheme::MicrosoftAzure => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(store_err)?,
        ),
        other => return Err(invalid(format!("unsupported scheme {other:?}"))),
    };
    Ok((store, path))
}

/// `<prefix>/indexes/<id>` as an object path.
pub fn index_prefix(prefix: &Path, id: &IndexId) -> Path {
    prefix.clone().join("indexes").join(id.as_str())
}

/// Deletes every object of index `id` under the store at `url`; returns how
/// many were removed. Deleting an index with no objects is not an error.
pub async fn delete_index(url: &str, id: &IndexId) -> Result<usize, StorageError> {
    let (store, prefix) = open(url)?;
    let dir = index_prefix(&prefix, id);
    let store_err = |source| StorageError::Store {
        url: url.to_string(),
        source,
    };
    let locations = store.list(Some(&dir)).map_ok(|m| m.location).boxed();
    let mut deleted = store.delete_stream(locations);
    let mut n = 0;
    while let Some(result) = deleted.next().await {
        match result {
            Ok(_) => n += 1,
            // Deleted concurrently (e.g. a second cleanup pass): nothing left to do.
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(e)),
        }
    }
    Ok(n)
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
        assert!(matches!(open("ftp://x/y"), Err(StorageError::InvalidUrl { .. })));
        assert!(matches!(open("not a url"), Err(StorageError::InvalidUrl { .. })));
    }
}
