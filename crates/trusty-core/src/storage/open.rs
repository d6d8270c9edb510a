//! Fetching a published version into a local cache directory and verifying it.
//!
//! Files land in `{cache}/{index_id}/{version}.partial-{random}` and the
//! directory is renamed to `{cache}/{index_id}/{version}` only after every
//! checksum matched, so a crash mid-download leaves only a `.partial-`
//! directory (the shard's cache inventory removes it on the next start) and a
//! cancelled download removes its own. The search engine opens the verified
//! directory afterwards.

use super::layout::{self, MANIFEST_FILE};
use super::manifest::{CurrentPointer, Manifest, SCHEMA_VERSION};
use super::store::{DEFAULT_STALL, Store, StoreError};
use crate::IndexId;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Marker written last into a verified cache directory.
const COMPLETE_MARKER: &str = ".complete";
/// Downloaded chunks waiting for the hasher, per file.
const HASH_QUEUE_CHUNKS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("index {index_id} has no published version in the store")]
    NotFound { index_id: String },
    #[error("index {index_id} is corrupt: {what}")]
    Corrupt { index_id: String, what: String },
    #[error("index {index_id} is corrupt: {file} is not valid: {source}")]
    CorruptJson {
        index_id: String,
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("index {index_id} has schema version {found}; this build reads {supported}")]
    IncompatibleSchema {
        index_id: String,
        found: u32,
        supported: u32,
    },
    #[error("object store unavailable for {index_id}: {source}")]
    StoreUnavailable {
        index_id: String,
        #[source]
        source: StoreError,
    },
    #[error("local cache for {index_id} at {path}: {source}")]
    Io {
        index_id: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl OpenError {
    /// The `reason` label of the load-failure metric and of the error body.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::NotFound { .. } => "not_found",
            OpenError::Corrupt { .. } | OpenError::CorruptJson { .. } => "corrupt",
            OpenError::IncompatibleSchema { .. } => "incompatible_schema",
            OpenError::StoreUnavailable { .. } => "store_unavailable",
            OpenError::Io { .. } => "io",
        }
    }

    fn store(id: &IndexId, e: StoreError) -> Self {
        match e {
            StoreError::Io { path, source } => OpenError::Io {
                index_id: id.to_string(),
                path,
                source,
            },
            other => OpenError::StoreUnavailable {
                index_id: id.to_string(),
                source: other,
            },
        }
    }

    fn corrupt(id: &IndexId, what: impl Into<String>) -> Self {
        OpenError::Corrupt {
            index_id: id.to_string(),
            what: what.into(),
        }
    }

    fn corrupt_json(id: &IndexId, file: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| OpenError::CorruptJson {
            index_id: id.to_string(),
            file,
            source,
        }
    }

    fn io(id: &IndexId, path: &Path, source: std::io::Error) -> Self {
        OpenError::Io {
            index_id: id.to_string(),
            path: path.display().to_string(),
            source,
        }
    }
}

/// A verified version on local disk.
#[derive(Debug, Clone)]
pub struct LocalVersion {
    pub manifest: Manifest,
    pub dir: PathBuf,
}

impl LocalVersion {
    pub fn bytes_on_disk(&self) -> u64 {
        self.manifest.total_bytes()
    }
}

/// Reads `CURRENT`; `etag` makes it a cheap conditional poll (`Ok(None)` = unchanged).
pub async fn read_current(
    store: &Store,
    id: &IndexId,
    etag: Option<&str>,
) -> Result<Option<(CurrentPointer, Option<String>)>, OpenError> {
    let got = match store.get_if_changed(&layout::current_key(id), etag).await {
        Ok(got) => got,
        Err(StoreError::NotFound { .. }) => {
            return Err(OpenError::NotFound {
                index_id: id.to_string(),
            });
        }
        Err(e) => return Err(OpenError::store(id, e)),
    };
    let Some((bytes, new_etag)) = got else { return Ok(None) };
    let pointer: CurrentPointer = serde_json::from_slice(&bytes).map_err(OpenError::corrupt_json(id, "CURRENT"))?;
    layout::check_version(&pointer.version).map_err(|r| OpenError::corrupt(id, format!("CURRENT: {r}")))?;
    Ok(Some((pointer, new_etag)))
}

/// How a version is downloaded.
#[derive(Debug, Clone, Copy)]
pub struct DownloadOptions {
    /// Files fetched at once.
    pub parallelism: usize,
    /// A file receiving nothing for this long is resumed with a range request.
    pub stall: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            parallelism: 8,
            stall: DEFAULT_STALL,
        }
    }
}

/// The cache directory of one version: `{cache}/{index_id}/{version}`.
pub fn version_dir(cache_dir: &Path, id: &IndexId, version: &str) -> PathBuf {
    cache_dir.join(id.as_str()).join(version)
}

/// Downloads and verifies the version `pointer` names, or reuses a verified
/// copy already in the cache.
pub async fn fetch_version(
    store: &Store,
    id: &IndexId,
    cache_dir: &Path,
    pointer: &CurrentPointer,
    parallelism: usize,
) -> Result<LocalVersion, OpenError> {
    let final_dir = version_dir(cache_dir, id, &pointer.version);
    if let Some(local) = local_copy(id, &final_dir, pointer).await? {
        return Ok(local);
    }
    let (manifest, manifest_bytes) = fetch_manifest(store, id, pointer).await?;
    let opts = DownloadOptions {
        parallelism,
        ..DownloadOptions::default()
    };
    download_version(store, id, cache_dir, pointer, &manifest, &manifest_bytes, opts).await
}

/// Reads and checks the manifest `pointer` names (its checksum, schema and
/// paths): a shard learns a version's size from it before downloading anything.
pub async fn fetch_manifest(
    store: &Store,
    id: &IndexId,
    pointer: &CurrentPointer,
) -> Result<(Manifest, Bytes), OpenError> {
    let manifest_bytes = match store.get(&layout::manifest_key(id, &pointer.version)).await {
        Ok(b) => b,
        Err(StoreError::NotFound { key }) => {
            return Err(OpenError::corrupt(
                id,
                format!("manifest {key} named by CURRENT is missing"),
            ));
        }
        Err(e) => return Err(OpenError::store(id, e)),
    };
    let actual = crate::sha256_hex(&manifest_bytes);
    if actual != pointer.manifest_sha256 {
        return Err(OpenError::corrupt(
            id,
            format!(
                "manifest checksum mismatch (CURRENT says {}, object is {actual})",
                pointer.manifest_sha256
            ),
        ));
    }
    let manifest = parse_manifest(id, &manifest_bytes, &pointer.version)?;
    Ok((manifest, manifest_bytes))
}

/// Marks a download directory whose files are not all in and verified yet.
const PARTIAL: &str = ".partial-";

/// True for a directory a download had not finished: a cache inventory
/// removes these.
pub fn is_partial_download(name: &str) -> bool {
    name.contains(PARTIAL)
}

/// A download directory that removes itself unless it was completed, so a
/// cancelled or failed restore (timeout, dropped task) leaves nothing behind.
struct PartialDir {
    path: PathBuf,
    completed: bool,
}

impl Drop for PartialDir {
    fn drop(&mut self) {
        if !self.completed
            && let Err(e) = super::local_dir::remove_dir(&self.path)
        {
            tracing::warn!(dir = %self.path.display(), error = %e, "could not remove a partial download");
        }
    }
}

/// Downloads every file `manifest` lists into a fresh partial directory,
/// verifies sizes and checksums, and renames it to the version directory.
pub async fn download_version(
    store: &Store,
    id: &IndexId,
    cache_dir: &Path,
    pointer: &CurrentPointer,
    manifest: &Manifest,
    manifest_bytes: &[u8],
    opts: DownloadOptions,
) -> Result<LocalVersion, OpenError> {
    let index_dir = cache_dir.join(id.as_str());
    // Guarded before it exists: a restore cancelled while the directory is
    // being created still removes it.
    let partial = PartialDir {
        path: index_dir.join(format!("{}{PARTIAL}{}", pointer.version, uuid::Uuid::new_v4().simple())),
        completed: false,
    };
    tokio::fs::create_dir_all(&partial.path)
        .await
        .map_err(|e| OpenError::io(id, &partial.path, e))?;
    download_all(store, id, manifest, &partial.path, opts).await?;
    // Writing the manifest and marker and renaming are filesystem calls that
    // can wait on the journal behind other writers: a blocking thread's work.
    let final_dir = index_dir.join(&pointer.version);
    // The seal runs on a blocking thread that outlives this future: if the
    // caller gives up meanwhile (a restore deadline), the seal must not put
    // in place a directory nobody tracks.
    let wanted = Wanted(Arc::new(AtomicBool::new(true)));
    let sealing = {
        let (id, final_dir, pointer, manifest) = (id.clone(), final_dir.clone(), pointer.clone(), manifest.clone());
        let manifest_bytes = manifest_bytes.to_vec();
        let wanted = wanted.0.clone();
        move || seal(partial, &id, &final_dir, &pointer, manifest, &manifest_bytes, &wanted)
    };
    tokio::task::spawn_blocking(sealing)
        .await
        .map_err(|e| OpenError::io(id, &final_dir, std::io::Error::other(e)))?
}

/// Held while a seal checks, clears and renames a version directory.
static SEALING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Cleared when the download that started a seal is dropped.
struct Wanted(Arc<AtomicBool>);

impl Drop for Wanted {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Completes a verified download: writes its manifest and completion marker
/// and renames it into place, unless an equal copy got there first.
fn seal(
    mut partial: PartialDir,
    id: &IndexId,
    final_dir: &Path,
    pointer: &CurrentPointer,
    manifest: Manifest,
    manifest_bytes: &[u8],
    wanted: &AtomicBool,
) -> Result<LocalVersion, OpenError> {
    let manifest_path = partial.path.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, manifest_bytes).map_err(|e| OpenError::io(id, &manifest_path, e))?;
    let marker = partial.path.join(COMPLETE_MARKER);
    std::fs::write(&marker, &pointer.manifest_sha256).map_err(|e| OpenError::io(id, &marker, e))?;
    // Check, clear and rename as one step: restores of the same version
    // sealing at once must not take each other's verified copy for a
    // leftover. The steps are a few syscalls; a leftover's files are deleted
    // after letting go.
    let leftover = {
        let _sealing = SEALING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = read_local_copy(id, final_dir, pointer) {
            // Another restore of the same version finished first; its copy may
            // be in use, so keep it and drop ours.
            return Ok(existing);
        }
        if !wanted.load(Ordering::Acquire) {
            // Dropping `partial` removes it.
            return Err(OpenError::io(
                id,
                final_dir,
                std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "the restore was abandoned before sealing",
                ),
            ));
        }
        // Anything else there is an unverifiable leftover (no marker or
        // another manifest): nothing reads it.
        let leftover = super::local_dir::move_aside(final_dir).map_err(|e| OpenError::io(id, final_dir, e))?;
        std::fs::rename(&partial.path, final_dir).map_err(|e| OpenError::io(id, final_dir, e))?;
        leftover
    };
    if let Some(leftover) = leftover
        && let Err(e) = leftover.delete()
    {
        tracing::warn!(dir = %final_dir.display(), error = %e, "could not remove a leftover version directory");
    }
    partial.completed = true;
    Ok(LocalVersion {
        manifest,
        dir: final_dir.to_path_buf(),
    })
}

/// True when `dir` holds a completely downloaded and verified version.
pub fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE_MARKER).is_file()
}

fn parse_manifest(id: &IndexId, bytes: &[u8], version: &str) -> Result<Manifest, OpenError> {
    // Check the schema version before the full shape: a future schema may not parse at all.
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(OpenError::corrupt_json(id, "the manifest"))?;
    let found = raw.get("schema_version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
    if found != SCHEMA_VERSION {
        return Err(OpenError::IncompatibleSchema {
            index_id: id.to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let manifest: Manifest = serde_json::from_value(raw).map_err(OpenError::corrupt_json(id, "the manifest"))?;
    if manifest.index_id != id.as_str() || manifest.version != version {
        return Err(OpenError::corrupt(
            id,
            format!(
                "manifest describes {}/{}, expected {id}/{version}",
                manifest.index_id, manifest.version
            ),
        ));
    }
    for f in &manifest.files {
        layout::check_relative_path(&f.path).map_err(|r| OpenError::corrupt(id, r))?;
    }
    Ok(manifest)
}

/// The verified copy of `pointer`'s version in `dir`, if there is one. It
/// reads a few small files and stats the rest, on a blocking thread.
pub async fn local_copy(id: &IndexId, dir: &Path, pointer: &CurrentPointer) -> Result<Option<LocalVersion>, OpenError> {
    let (owned_id, owned_dir, owned_pointer) = (id.clone(), dir.to_path_buf(), pointer.clone());
    tokio::task::spawn_blocking(move || read_local_copy(&owned_id, &owned_dir, &owned_pointer))
        .await
        .map_err(|e| OpenError::io(id, dir, std::io::Error::other(e)))
}

fn read_local_copy(id: &IndexId, dir: &Path, pointer: &CurrentPointer) -> Option<LocalVersion> {
    let marker = dir.join(COMPLETE_MARKER);
    let recorded = std::fs::read_to_string(&marker).ok()?;
    if recorded != pointer.manifest_sha256 {
        return None;
    }
    let bytes = std::fs::read(dir.join(MANIFEST_FILE)).ok()?;
    let manifest = parse_manifest(id, &bytes, &pointer.version).ok()?;
    // Sizes are cheap to check; full checksums were verified when the copy was made.
    let intact = manifest.files.iter().all(|f| {
        std::fs::metadata(dir.join(&f.path))
            .map(|m| m.len() == f.size)
            .unwrap_or(false)
    });
    intact.then(|| LocalVersion {
        manifest,
        dir: dir.to_path_buf(),
    })
}

async fn download_all(
    store: &Store,
    id: &IndexId,
    manifest: &Manifest,
    dest: &Path,
    opts: DownloadOptions,
) -> Result<(), OpenError> {
    // Owned entries: futures that borrow from the closure argument trip the
    // higher-ranked lifetime checks of `buffer_unordered` inside spawned tasks.
    let version = manifest.version.clone();
    futures::stream::iter(manifest.files.clone().into_iter().map(|f| {
        let version = version.clone();
        async move {
            use sha2::{Digest, Sha256};
            let target = dest.join(&f.path);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| OpenError::io(id, parent, e))?;
            }
            let key = layout::file_key(id, &version, &f.path);
            // Hash on a blocking thread fed chunk by chunk, so checksumming a
            // large file overlaps its download instead of stalling it; the
            // queue is bounded so a starved hasher slows the download rather
            // than holding the file in memory.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE_CHUNKS);
            let hashing = tokio::task::spawn_blocking(move || {
                let mut hasher = Sha256::new();
                while let Some(chunk) = rx.blocking_recv() {
                    hasher.update(&chunk);
                }
                hex::encode(hasher.finalize())
            });
            let downloaded = store
                .download(&key, &target, Some(f.size), opts.stall, |c| {
                    let (tx, c) = (tx.clone(), c.clone());
                    async move {
                        let _ = tx.send(c).await;
                    }
                })
                .await;
            drop(tx);
            let sha = hashing
                .await
                .map_err(|e| OpenError::io(id, &target, std::io::Error::other(e)))?;
            let size = match downloaded {
                Ok(n) => n,
                Err(StoreError::NotFound { key }) => {
                    return Err(OpenError::corrupt(
                        id,
                        format!("object {key} listed in the manifest is missing"),
                    ));
                }
                Err(e @ StoreError::Oversized { .. }) => {
                    return Err(OpenError::corrupt(id, format!("{e}; the manifest says {}", f.size)));
                }
                Err(e) => return Err(OpenError::store(id, e)),
            };
            if size != f.size || sha != f.sha256 {
                return Err(OpenError::corrupt(
                    id,
                    format!(
                        "{} checksum mismatch (expected {} bytes sha256 {}, got {size} bytes {sha})",
                        f.path, f.size, f.sha256
                    ),
                ));
            }
            Ok(())
        }
    }))
    .buffer_unordered(opts.parallelism.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::publish::tests::bundle;
    use crate::storage::publish::{PublishOptions, publish};

    /// A one-version index `demo` published to a fresh in-memory store.
    async fn published(store_name: &str) -> (tempfile::TempDir, Store, IndexId, CurrentPointer) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("memory://{store_name}")).unwrap();
        let id = IndexId::new("demo").unwrap();
        bundle(&tmp.path().join("b"), "demo", "payload");
        publish(&store, &id, &tmp.path().join("b"), &PublishOptions::default())
            .await
            .unwrap();
        let (pointer, _) = read_current(&store, &id, None).await.unwrap().unwrap();
        (tmp, store, id, pointer)
    }

    /// Restores of one version racing each other end with one verified copy
    /// that all of them return, and an unverifiable leftover in its place
    /// (no completion marker) is replaced rather than served.
    #[tokio::test]
    async fn racing_fetches_of_a_version_share_one_verified_copy() {
        let (tmp, store, id, pointer) = published("seal-race").await;
        let cache = tmp.path().join("cache");
        let leftover = version_dir(&cache, &id, &pointer.version);
        std::fs::create_dir_all(&leftover).unwrap();
        std::fs::write(leftover.join("junk"), "from a crash").unwrap();

        let fetches = (0..4).map(|_| fetch_version(&store, &id, &cache, &pointer, 2));
        let copies = futures::future::join_all(fetches).await;
        for copy in &copies {
            let copy = copy.as_ref().unwrap();
            assert_eq!(copy.dir, leftover);
        }
        assert!(is_complete(&leftover));
        assert!(!leftover.join("junk").exists(), "the leftover was replaced");
        assert_eq!(
            std::fs::read_to_string(leftover.join("chunks.jsonl")).unwrap(),
            "payload"
        );
        let partials: Vec<String> = std::fs::read_dir(cache.join("demo"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(PARTIAL) && !crate::storage::local_dir::is_being_removed(n))
            .collect();
        assert!(partials.is_empty(), "{partials:?}");
    }

    /// A seal whose download was given up on (its future dropped while the
    /// blocking seal ran) leaves nothing in place: no directory that no
    /// restore tracks.
    #[tokio::test]
    async fn an_abandoned_seal_puts_nothing_in_place() {
        let (tmp, store, id, pointer) = published("seal-abandoned").await;
        let (manifest, bytes) = fetch_manifest(&store, &id, &pointer).await.unwrap();
        let partial = PartialDir {
            path: tmp.path().join(format!("{}{PARTIAL}x", pointer.version)),
            completed: false,
        };
        std::fs::create_dir_all(&partial.path).unwrap();
        let partial_path = partial.path.clone();
        let final_dir = tmp.path().join(&pointer.version);
        let wanted = AtomicBool::new(false);
        let r = seal(partial, &id, &final_dir, &pointer, manifest, &bytes, &wanted);
        assert!(r.is_err());
        assert!(!final_dir.exists());
        assert!(!partial_path.exists(), "the partial download was removed");
    }
}
