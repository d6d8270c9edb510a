//! Publishing a built bundle as an immutable version.
//!
//! Order matters and is the whole point: every data file, then the manifest,
//! then `CURRENT`. A reader follows `CURRENT` → manifest → files, so it can
//! only ever reach a version whose objects are all in place; a publish that
//! fails half-way leaves `CURRENT` on the previous version.

use super::layout::{self, MANIFEST_FILE};
use super::manifest::{CurrentPointer, FileEntry, Manifest};
use super::store::{Store, StoreError};
use crate::IndexId;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("bundle {dir}: {reason}")]
    Bundle { dir: String, reason: String },
    #[error("reading bundle file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("publishing {index_id}: {source}")]
    Store {
        index_id: String,
        #[source]
        source: StoreError,
    },
    #[error("version {version} of {index_id} does not exist")]
    NoSuchVersion { index_id: String, version: String },
}

#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// How many versions to keep (the current one included) for rollback.
    pub keep_versions: usize,
    /// Concurrent uploads.
    pub parallelism: usize,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            keep_versions: 5,
            parallelism: 8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Published {
    pub version: String,
    pub manifest_sha256: String,
    pub bytes: u64,
    pub pruned: Vec<String>,
}

/// Lists every file under `dir` (except the manifest) with size and sha256,
/// stores the list in `manifest.files` and writes `manifest.json` into the bundle.
pub fn seal_bundle(dir: &Path, mut manifest: Manifest) -> Result<Manifest, PublishError> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.retain(|(rel, _)| rel != MANIFEST_FILE);
    files.sort();
    let entries: Result<Vec<FileEntry>, PublishError> = {
        use rayon::prelude::*;
        files
            .par_iter()
            .map(|(rel, abs)| {
                let (size, sha256) = hash_file(abs)?;
                Ok(FileEntry {
                    path: rel.clone(),
                    size,
                    sha256,
                })
            })
            .collect()
    };
    manifest.files = entries?;
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, manifest.to_json()).map_err(|e| io_err(&path, e))?;
    Ok(manifest)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), PublishError> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| io_err(&path, e))?;
        if ft.is_dir() {
            collect_files(root, &path, out)?;
        } else if ft.is_file() {
            let rel = path.strip_prefix(root).expect("walked under root");
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
    Ok(())
}

/// Size and hex sha256 of a file, streamed.
pub fn hash_file(path: &Path) -> Result<(u64, String), PublishError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn io_err(path: &Path, source: std::io::Error) -> PublishError {
    PublishError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Uploads a sealed bundle and makes it current.
pub async fn publish(
    store: &Store,
    id: &IndexId,
    dir: &Path,
    opts: &PublishOptions,
) -> Result<Published, PublishError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_bytes = std::fs::read(&manifest_path).map_err(|e| io_err(&manifest_path, e))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| PublishError::Bundle {
        dir: dir.display().to_string(),
        reason: format!("manifest.json is not valid: {e}"),
    })?;
    let bundle_err = |reason: String| PublishError::Bundle {
        dir: dir.display().to_string(),
        reason,
    };
    if manifest.index_id != id.as_str() {
        return Err(bundle_err(format!(
            "built for index {:?}, not {id:?}",
            manifest.index_id
        )));
    }
    layout::check_version(&manifest.version).map_err(bundle_err)?;
    for f in &manifest.files {
        layout::check_relative_path(&f.path).map_err(bundle_err)?;
    }
    let store_err = |source| PublishError::Store {
        index_id: id.to_string(),
        source,
    };

    let version = manifest.version.clone();
    futures::stream::iter(manifest.files.clone().into_iter().map(|f| {
        let key = layout::file_key(id, &version, &f.path);
        let src = dir.join(&f.path);
        async move {
            let size = store.put_file(&key, &src).await.map_err(store_err)?;
            if size != f.size {
                return Err(bundle_err(format!(
                    "{} changed after sealing ({} != {} bytes)",
                    f.path, size, f.size
                )));
            }
            Ok::<_, PublishError>(size)
        }
    }))
    .buffer_unordered(opts.parallelism.max(1))
    .try_collect::<Vec<_>>()
    .await?;

    store
        .put(&layout::manifest_key(id, &version), Bytes::from(manifest_bytes.clone()))
        .await
        .map_err(store_err)?;
    let pointer = CurrentPointer {
        version: version.clone(),
        manifest_sha256: crate::sha256_hex(&manifest_bytes),
    };
    let pointer_json = serde_json::to_vec(&pointer).expect("pointer serialises");
    store
        .put(&layout::current_key(id), Bytes::from(pointer_json))
        .await
        .map_err(store_err)?;

    let pruned = prune(store, id, &version, opts.keep_versions)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(index_id = %id, error = %e, "pruning old versions failed; they stay in storage");
            Vec::new()
        });
    Ok(Published {
        version,
        manifest_sha256: pointer.manifest_sha256,
        bytes: manifest.total_bytes(),
        pruned,
    })
}

/// Versions of an index in storage, oldest first (names start with a UTC timestamp).
pub async fn list_versions(store: &Store, id: &IndexId) -> Result<Vec<String>, StoreError> {
    let mut versions = store.list_dirs(&layout::versions_prefix(id)).await?;
    versions.retain(|v| layout::check_version(v).is_ok());
    versions.sort();
    Ok(versions)
}

/// A version without a manifest whose newest object is younger than this
/// may be another builder's publish (or an import) still uploading; an older
/// one was abandoned.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Deletes all but the newest `keep` complete versions, and versions a failed
/// publish abandoned. Never deletes `published` or whatever `CURRENT` names
/// by now (a rollback, or another builder's newer publish), nor a version
/// still uploading: age is its objects' upload time, not its name, which
/// was given when it was built (an import keeps its source's). A version's
/// manifest goes first, so one whose deletion stops half-way is no longer
/// complete: a rollback refuses it and a later prune finishes it.
async fn prune(store: &Store, id: &IndexId, published: &str, keep: usize) -> Result<Vec<String>, StoreError> {
    let versions = list_versions(store, id).await?;
    let keep = keep.max(1);
    let current = match store.get(&layout::current_key(id)).await {
        Ok(bytes) => serde_json::from_slice::<CurrentPointer>(&bytes).ok().map(|p| p.version),
        // Deleted or withdrawn meanwhile: whoever did that owns the versions now.
        Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let spared = |v: &str| v == published || current.as_deref() == Some(v);
    let (mut complete, mut doomed) = (Vec::new(), Vec::new());
    for v in versions {
        if store.exists(&layout::manifest_key(id, &v)).await? {
            complete.push(v);
        } else if !spared(&v) && abandoned(store, id, &v).await? {
            doomed.push(v);
        }
    }
    let old = complete.len().saturating_sub(keep);
    doomed.extend(complete.drain(..old));
    doomed.retain(|v| !spared(v));
    for v in &doomed {
        store.delete(&layout::manifest_key(id, v)).await?;
        store.delete_prefix(&layout::version_prefix(id, v)).await?;
    }
    Ok(doomed)
}

/// Whether nothing under a version without a manifest was written within
/// [`ABANDONED_AFTER`].
async fn abandoned(store: &Store, id: &IndexId, version: &str) -> Result<bool, StoreError> {
    let objects = store.list(&layout::version_prefix(id, version)).await?;
    let newest = objects.iter().map(|o| o.last_modified).max();
    Ok(newest.is_none_or(|t| t.elapsed().is_ok_and(|age| age > ABANDONED_AFTER)))
}

/// Points `CURRENT` back at an older version that is still in storage.
pub async fn rollback(store: &Store, id: &IndexId, version: &str) -> Result<CurrentPointer, PublishError> {
    let store_err = |source| PublishError::Store {
        index_id: id.to_string(),
        source,
    };
    layout::check_version(version).map_err(|reason| PublishError::Bundle {
        dir: version.to_string(),
        reason,
    })?;
    let manifest_bytes = match store.get(&layout::manifest_key(id, version)).await {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => {
            return Err(PublishError::NoSuchVersion {
                index_id: id.to_string(),
                version: version.to_string(),
            });
        }
        Err(e) => return Err(store_err(e)),
    };
    let pointer = CurrentPointer {
        version: version.to_string(),
        manifest_sha256: crate::sha256_hex(&manifest_bytes),
    };
    let json = serde_json::to_vec(&pointer).expect("pointer serialises");
    store
        .put(&layout::current_key(id), Bytes::from(json))
        .await
        .map_err(store_err)?;
    Ok(pointer)
}

/// Removes an index and all its versions from storage.
pub async fn delete_index(store: &Store, id: &IndexId) -> Result<usize, StoreError> {
    store.delete_prefix(&layout::index_prefix(id)).await
}

/// Takes an index out of service but keeps every version: `CURRENT` moves to
/// `CURRENT.withdrawn`. Shards find indexes by their `CURRENT`, so a withdrawn
/// index is no longer discovered or loaded (404), and a later publish or
/// [`rollback`] brings it back. Returns whether there was a `CURRENT` to move.
pub async fn withdraw(store: &Store, id: &IndexId) -> Result<bool, StoreError> {
    let current = match store.get(&layout::current_key(id)).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    // Copy before delete: a crash in between leaves the index served, never lost.
    store.put(&layout::withdrawn_key(id), current).await?;
    store.delete(&layout::current_key(id)).await?;
    Ok(true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::manifest::{SCHEMA_VERSION, SourceInfo};
    use crate::storage::open::{fetch_version, read_current};
    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjPath;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
        PutOptions, PutPayload, PutResult,
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An in-memory store whose puts fail for keys containing `fail_on` while `armed`.
    #[derive(Debug)]
    struct Faulty {
        inner: InMemory,
        fail_on: &'static str,
        armed: AtomicBool,
    }

    impl std::fmt::Display for Faulty {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Faulty")
        }
    }

    #[async_trait]
    impl ObjectStore for Faulty {
        async fn put_opts(
            &self,
            location: &ObjPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            if self.armed.load(Ordering::SeqCst) && location.as_ref().contains(self.fail_on) {
                return Err(object_store::Error::Generic {
                    store: "faulty",
                    source: "injected failure".into(),
                });
            }
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &ObjPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &ObjPath, options: GetOptions) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjPath>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&ObjPath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&ObjPath>) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &ObjPath, to: &ObjPath, options: CopyOptions) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// A sealed two-file bundle for index `id` in `dir`; `payload` tells versions apart.
    pub(crate) fn bundle(dir: &Path, id: &str, payload: &str) -> Manifest {
        std::fs::create_dir_all(dir.join("bm25")).unwrap();
        std::fs::write(dir.join("chunks.jsonl"), payload).unwrap();
        std::fs::write(dir.join("bm25/seg.idx"), payload.repeat(3)).unwrap();
        let m = Manifest {
            schema_version: SCHEMA_VERSION,
            index_id: id.into(),
            version: layout::new_version(),
            created_at: "2026-01-01T00:00:00Z".into(),
            chunker_version: 1,
            embedder: None,
            source: SourceInfo::default(),
            counts: Default::default(),
            files: vec![],
            settings: serde_json::Value::Null,
        };
        seal_bundle(dir, m).unwrap()
    }

    #[tokio::test]
    async fn failed_publish_leaves_current_on_the_previous_version() {
        let faulty = Arc::new(Faulty {
            inner: InMemory::new(),
            fail_on: "manifest.json",
            armed: AtomicBool::new(false),
        });
        let store = Store::from_backend(faulty.clone(), "", "faulty://");
        let id = IndexId::new("demo").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let first = bundle(&tmp.path().join("a"), "demo", "first");
        publish(&store, &id, &tmp.path().join("a"), &PublishOptions::default())
            .await
            .unwrap();

        faulty.armed.store(true, Ordering::SeqCst);
        bundle(&tmp.path().join("b"), "demo", "second");
        let err = publish(&store, &id, &tmp.path().join("b"), &PublishOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("demo"), "{err}");

        let (pointer, _) = read_current(&store, &id, None).await.unwrap().unwrap();
        assert_eq!(
            pointer.version, first.version,
            "CURRENT must still name the first version"
        );
        let local = fetch_version(&store, &id, &tmp.path().join("cache"), &pointer, 2)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(local.dir.join("chunks.jsonl")).unwrap(),
            "first"
        );
    }

    #[tokio::test]
    async fn old_versions_are_pruned_but_current_kept() {
        let store = Store::open("memory://prune-test").unwrap();
        let id = IndexId::new("demo").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut last = String::new();
        for i in 0..4 {
            let dir = tmp.path().join(format!("v{i}"));
            let m = bundle(&dir, "demo", &format!("v{i}"));
            last = m.version.clone();
            publish(
                &store,
                &id,
                &dir,
                &PublishOptions {
                    keep_versions: 2,
                    parallelism: 2,
                },
            )
            .await
            .unwrap();
        }
        let versions = list_versions(&store, &id).await.unwrap();
        assert_eq!(versions.len(), 2);
        assert!(versions.contains(&last));
    }

    /// Pruning keeps what `CURRENT` names when it runs, not only what this
    /// publish made current: here an operator rolled back while a builder
    /// was between its `CURRENT` write and its prune.
    #[tokio::test]
    async fn a_prune_spares_the_version_a_rollback_made_current_meanwhile() {
        let store = Store::open("memory://prune-rollback").unwrap();
        let id = IndexId::new("demo").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut made = Vec::new();
        for i in 0..3 {
            let dir = tmp.path().join(format!("v{i}"));
            made.push(bundle(&dir, "demo", &format!("v{i}")).version);
            publish(&store, &id, &dir, &PublishOptions::default()).await.unwrap();
        }
        rollback(&store, &id, &made[0]).await.unwrap();
        let pruned = prune(&store, &id, &made[2], 1).await.unwrap();
        assert_eq!(pruned, [made[1].clone()]);
        assert_eq!(
            list_versions(&store, &id).await.unwrap(),
            [made[0].clone(), made[2].clone()]
        );
        rollback(&store, &id, &made[0])
            .await
            .expect("the rollback target is still whole");
    }

    /// A version without a manifest is another publish still uploading, or
    /// one that failed: it neither counts among the versions kept nor is
    /// deleted until its objects are a day old. Age is upload time: an
    /// import in flight keeps the (old) name its source gave it.
    #[tokio::test]
    async fn a_prune_leaves_uploads_in_flight_and_clears_abandoned_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        let store = Store::open(&format!("file://{}", root.display())).unwrap();
        let id = IndexId::new("demo").unwrap();
        let (importing, abandoned) = ("20000101T000000000000000Z-0badf00d".to_string(), layout::new_version());
        for v in [&importing, &abandoned] {
            store
                .put(&layout::file_key(&id, v, "chunks.jsonl"), Bytes::from_static(b"part"))
                .await
                .unwrap();
        }
        let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
        std::fs::File::options()
            .write(true)
            .open(root.join(layout::file_key(&id, &abandoned, "chunks.jsonl")))
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        let mut made = Vec::new();
        for i in 0..2 {
            let dir = tmp.path().join(format!("v{i}"));
            made.push(bundle(&dir, "demo", &format!("v{i}")).version);
            let opts = PublishOptions {
                keep_versions: 2,
                ..PublishOptions::default()
            };
            publish(&store, &id, &dir, &opts).await.unwrap();
        }
        let mut expect = vec![made[0].clone(), made[1].clone(), importing.clone()];
        expect.sort();
        assert_eq!(list_versions(&store, &id).await.unwrap(), expect);
    }

    #[tokio::test]
    async fn bundle_for_another_index_is_refused() {
        let store = Store::open("memory://wrong-id").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        bundle(tmp.path(), "other", "x");
        let err = publish(
            &store,
            &IndexId::new("demo").unwrap(),
            tmp.path(),
            &PublishOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, PublishError::Bundle { .. }), "{err}");
    }

    #[tokio::test]
    async fn withdraw_keeps_versions_and_rollback_restores() {
        let store = Store::open("memory://withdraw-test").unwrap();
        let id = IndexId::new("demo").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let m = bundle(&tmp.path().join("a"), "demo", "x");
        publish(&store, &id, &tmp.path().join("a"), &PublishOptions::default())
            .await
            .unwrap();

        assert!(withdraw(&store, &id).await.unwrap());
        assert!(
            read_current(&store, &id, None).await.is_err(),
            "no CURRENT once withdrawn"
        );
        assert!(store.exists(&layout::withdrawn_key(&id)).await.unwrap());
        assert_eq!(list_versions(&store, &id).await.unwrap(), vec![m.version.clone()]);
        assert!(!withdraw(&store, &id).await.unwrap(), "a second withdraw finds nothing");

        rollback(&store, &id, &m.version).await.unwrap();
        let (pointer, _) = read_current(&store, &id, None).await.unwrap().unwrap();
        assert_eq!(pointer.version, m.version);
        assert!(!withdraw(&store, &IndexId::new("never").unwrap()).await.unwrap());
    }

    #[tokio::test]
    async fn incompatible_schema_is_refused_on_open() {
        let store = Store::open("memory://schema-test").unwrap();
        let id = IndexId::new("demo").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let mut m = bundle(&dir, "demo", "x");
        m.schema_version = SCHEMA_VERSION + 98;
        std::fs::write(dir.join("manifest.json"), m.to_json()).unwrap();
        publish(&store, &id, &dir, &PublishOptions::default()).await.unwrap();
        let (pointer, _) = read_current(&store, &id, None).await.unwrap().unwrap();
        let err = fetch_version(&store, &id, &tmp.path().join("cache"), &pointer, 2)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "incompatible_schema", "{err}");
    }
}
