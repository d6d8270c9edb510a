//! The operator's object-store work: importing a prebuilt index from another
//! store, and what deleting an Index does to its objects (removal for
//! `deletionPolicy: Delete`, withdrawal for `Retain`).
//!
//! Goes through the shared store code (`trusty_core::storage`): the
//! same URLs, credentials from the operator's environment (the variables the
//! build Jobs get from the store Secret), and the same key layout, so the
//! operator needs no shard or router to clean up. Only keys under
//! `<prefix>/indexes/<id>/` are touched; the id is a validated `IndexId`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use trusty_core::IndexId;
use trusty_core::storage::layout;
use trusty_core::storage::publish;
use trusty_core::storage::store::Store;

pub use trusty_core::storage::import::{ImportError, Imported};
pub use trusty_core::storage::open::OpenError;
use trusty_core::storage::open::read_current;
pub use trusty_core::storage::store::StoreError as StorageError;

/// The Index resource that owns an index id. Ids are cluster-wide (one store)
/// while Index names are only unique per namespace, so the first Index to
/// claim an id keeps it until it is deleted; another namespace's Index of the
/// same name is refused instead of overwriting or deleting the owner's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn owner_key(id: &IndexId) -> String {
    format!("{}/OWNER", layout::index_prefix(id))
}

/// The recorded owner of `id`, if any (an unreadable record counts as none).
pub async fn owner_of(url: &str, id: &IndexId) -> Result<Option<Owner>, StorageError> {
    read_owner(&Store::open(url)?, id).await
}

async fn read_owner(store: &Store, id: &IndexId) -> Result<Option<Owner>, StorageError> {
    match store.get(&owner_key(id)).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Claims `id` for `me` unless another Index owns it; returns the owner.
/// The claim is a create-if-absent write, so of two first claims racing,
/// exactly one wins where the store supports conditional writes.
pub async fn claim(url: &str, id: &IndexId, me: &Owner) -> Result<Owner, StorageError> {
    let store = Store::open(url)?;
    if let Some(owner) = read_owner(&store, id).await? {
        return Ok(owner);
    }
    let body = Bytes::from(serde_json::to_vec(me).expect("owner serialises"));
    if store.put_if_absent(&owner_key(id), body.clone()).await? {
        return Ok(me.clone());
    }
    // Someone claimed it between the read and the write: theirs stands. A
    // record that still reads as none is unreadable (or was just released),
    // and counts as none, as above: it is overwritten.
    if let Some(owner) = read_owner(&store, id).await? {
        return Ok(owner);
    }
    store.put(&owner_key(id), body).await?;
    Ok(me.clone())
}

/// Gives up `me`'s claim on `id` (no-op when someone else holds it).
pub async fn release(url: &str, id: &IndexId, me: &Owner) -> Result<(), StorageError> {
    let store = Store::open(url)?;
    if read_owner(&store, id).await?.as_ref() == Some(me) {
        store.delete(&owner_key(id)).await?;
    }
    Ok(())
}

/// Whether an Index may import from `prefix`: only from under one of the
/// store prefixes the cluster admin allowed (`allowed`, matched at a path
/// boundary), and never with a query string, which could send the
/// operator's credentials to another endpoint. Empty `allowed`: no imports.
pub fn import_allowed(prefix: &str, allowed: &[String]) -> Result<(), String> {
    let refuse = |why: &str| {
        let list = if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed.join(", ")
        };
        Err(format!(
            "imports from {prefix} are not allowed: {why} (allowed prefixes: {list}; set operator.importFrom)"
        ))
    };
    if prefix.contains(['?', '#']) {
        return refuse("store URLs with a query or fragment are refused");
    }
    let p = prefix.trim_end_matches('/');
    let ok = allowed
        .iter()
        .map(|a| a.trim_end_matches('/'))
        .any(|a| !a.is_empty() && (p == a || p.strip_prefix(a).is_some_and(|rest| rest.starts_with('/'))));
    if ok {
        Ok(())
    } else {
        refuse("not under an allowed prefix")
    }
}

/// Whether two store URLs name the same place (ignoring a trailing `/`).
pub fn same_store(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Copies index `id`'s current version from the store at `source` into the
/// cluster's store at `cluster`, unless it is there already. Staged file by
/// file (bounded memory) in a fresh directory under `staging` (the system
/// temporary directory when `None`), removed afterwards.
pub async fn import_index(
    source: &str,
    cluster: &str,
    id: &IndexId,
    staging: Option<&std::path::Path>,
) -> Result<Imported, ImportError> {
    use trusty_core::storage::import::import_current;
    let src = open_for(source, id).map_err(ImportError::Source)?;
    let dst = open_for(cluster, id).map_err(ImportError::DestinationRead)?;
    let parent = staging.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    let work = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(&parent)
        .map_err(|e| {
            ImportError::Source(OpenError::Io {
                index_id: id.to_string(),
                path: parent.display().to_string(),
                source: e,
            })
        })?;
    import_current(&src, &dst, id, work.path(), &Default::default()).await
}

/// The store at `url`, failing as the index `id`'s store being unavailable.
fn open_for(url: &str, id: &IndexId) -> Result<Store, OpenError> {
    Store::open(url).map_err(|e| OpenError::StoreUnavailable {
        index_id: id.to_string(),
        source: e,
    })
}

/// The version `CURRENT` names for `id` in the store at `url`, which every
/// owner should serve; `None` while nothing is published.
pub async fn published_version(url: &str, id: &IndexId) -> Result<Option<String>, OpenError> {
    let store = open_for(url, id)?;
    match read_current(&store, id, None).await {
        Ok(current) => Ok(current.map(|(pointer, _)| pointer.version)),
        Err(OpenError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
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

    #[test]
    fn imports_only_from_allowed_prefixes_without_queries() {
        let allowed = vec!["s3://shared-indexes/team".to_string(), "file:///".to_string()];
        assert!(import_allowed("s3://shared-indexes/team", &allowed).is_ok());
        assert!(import_allowed("s3://shared-indexes/team/sub/", &allowed).is_ok());
        assert!(import_allowed("file:///data/x", &allowed).is_ok());
        for bad in [
            "s3://shared-indexes/team-b",
            "s3://shared-indexes",
            "s3://shared-indexes/team?endpoint=http://169.254.169.254",
            "gs://other/x",
            "memory://x",
        ] {
            let e = import_allowed(bad, &allowed).unwrap_err();
            assert!(
                e.contains("not allowed") && e.contains("operator.importFrom"),
                "{bad}: {e}"
            );
        }
        assert!(
            import_allowed("s3://shared-indexes/team", &[])
                .unwrap_err()
                .contains("allowed prefixes: none")
        );
    }

    #[tokio::test]
    async fn the_first_claim_wins_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let id = IndexId::new("tokio").unwrap();
        let a = Owner {
            namespace: "team-a".into(),
            name: "tokio".into(),
        };
        let b = Owner {
            namespace: "team-b".into(),
            name: "tokio".into(),
        };
        assert_eq!(owner_of(&url, &id).await.unwrap(), None);
        assert_eq!(claim(&url, &id, &a).await.unwrap(), a);
        assert_eq!(claim(&url, &id, &b).await.unwrap(), a, "b is refused");
        release(&url, &id, &b).await.unwrap();
        assert_eq!(
            owner_of(&url, &id).await.unwrap(),
            Some(a.clone()),
            "b cannot release a's claim"
        );
        release(&url, &id, &a).await.unwrap();
        assert_eq!(claim(&url, &id, &b).await.unwrap(), b);

        // An unreadable record counts as no claim: the next claimer takes it.
        let store = Store::open(&url).unwrap();
        store
            .put(&owner_key(&id), Bytes::from_static(b"not json"))
            .await
            .unwrap();
        assert_eq!(claim(&url, &id, &a).await.unwrap(), a);
        assert_eq!(owner_of(&url, &id).await.unwrap(), Some(a.clone()));
    }

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

    #[tokio::test]
    async fn imports_stage_under_the_configured_directory() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("import-volume");
        let id = IndexId::new("repo").unwrap();
        // The staging directory is where the copy is made: a missing one is
        // the first thing an import trips over, and the error names it.
        let err = import_index("memory://stage-src", "memory://stage-dst", &id, Some(&staging))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("import-volume"), "{err}");
        std::fs::create_dir(&staging).unwrap();
        let err = import_index("memory://stage-src", "memory://stage-dst", &id, Some(&staging))
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("import-volume"), "past staging: {err}");
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "staging left clean");
    }

    #[tokio::test]
    async fn the_published_version_is_what_current_names() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let id = IndexId::new("repo").unwrap();
        assert_eq!(published_version(&url, &id).await.unwrap(), None);
        let current = dir.path().join("indexes/repo/CURRENT");
        std::fs::create_dir_all(current.parent().unwrap()).unwrap();
        std::fs::write(&current, br#"{"version": "v2", "manifest_sha256": "00"}"#).unwrap();
        assert_eq!(published_version(&url, &id).await.unwrap().as_deref(), Some("v2"));
        std::fs::write(&current, b"{").unwrap();
        assert!(
            published_version(&url, &id).await.is_err(),
            "a corrupt CURRENT is an error"
        );
    }

    #[test]
    fn rejects_unknown_schemes() {
        assert!(matches!(Store::open("ftp://x/y"), Err(StorageError::InvalidUrl { .. })));
    }
}
