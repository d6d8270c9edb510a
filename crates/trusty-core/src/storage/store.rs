//! Object storage behind one small handle.
//!
//! A store URL names a backend and a key prefix: `file:///srv/idx`,
//! `s3://bucket/prefix` (credentials and `AWS_ENDPOINT_URL` from the
//! environment, or `?endpoint=http://host:port` for any S3-compatible server),
//! `gs://bucket/prefix`, `az://container/prefix`, `memory://name` (process-local,
//! for tests). Every request is counted in the object-store metrics.

use crate::metrics::{OBJECT_STORE_BYTES, OBJECT_STORE_REQUESTS, OBJECT_STORE_RESUMES};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("object {key} not found")]
    NotFound { key: String },
    #[error("object store unavailable while accessing {key}: {source}")]
    Unavailable {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("object {key} stopped arriving: nothing received for {after:?}")]
    Stalled { key: String, after: Duration },
    #[error("object {key} is larger than the {expected} bytes expected")]
    Oversized { key: String, expected: u64 },
    #[error("local file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    fn from_object(key: &ObjPath, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound { key: key.to_string() },
            other => StoreError::Unavailable {
                key: key.to_string(),
                source: other,
            },
        }
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// How a download attempt broke off.
enum Broken {
    /// Nothing arrived for the stall timeout.
    Stalled,
    /// The request or the stream failed.
    Failed(object_store::Error),
}

/// Whether a download may resume after `e`: not after an answer no retry
/// changes (missing, forbidden, a failed precondition).
fn resumable(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
    )
}

/// The pause before a resume that follows a try without progress, times
/// the tries so far.
const RESUME_PAUSE: Duration = Duration::from_millis(200);

/// Resumes in a row without progress before a download gives up.
const MAX_RESUMES: u32 = 5;

/// The stall timeout of downloads that do not pass their own.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);

/// Objects at or above this size are uploaded in parts.
const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
const MULTIPART_CHUNK: usize = 8 * 1024 * 1024;

/// One object found by [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Relative to the store prefix, like every key this type takes.
    pub key: String,
    pub size: u64,
    pub last_modified: std::time::SystemTime,
}

/// A backend plus the key prefix every key is relative to.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    url: String,
}

static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<object_store::memory::InMemory>>>> =
    LazyLock::new(Default::default);

impl Store {
    /// Opens a store from its URL; a bare path is a local directory.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        // Errors are logged and returned to clients: never with the URL's secrets.
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: redact(url),
            reason: reason.to_string(),
        };
        if !url.contains("://") {
            return Self::local(url, url);
        }
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let prefix = parsed.path().trim_matches('/').to_string();
        let host = parsed.host_str().unwrap_or_default().to_string();
        let query: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
        let inner: Arc<dyn ObjectStore> = match parsed.scheme() {
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|_| invalid("file URLs need an absolute path"))?;
                return Self::local(&path.to_string_lossy(), url);
            }
            "memory" => {
                let mut stores = MEMORY_STORES.lock().expect("memory store registry poisoned");
                stores.entry(host.clone()).or_default().clone()
            }
            "s3" => {
                if host.is_empty() {
                    return Err(invalid("s3 URLs need a bucket: s3://bucket/prefix"));
                }
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&host)
                    .with_retry(retry_config())
                    .with_client_options(client_options());
                let endpoint = query
                    .get("endpoint")
                    .cloned()
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
                if let Some(ep) = endpoint {
                    b = b.with_allow_http(ep.starts_with("http://")).with_endpoint(ep);
                }
                if let Some(region) = query.get("region") {
                    b = b.with_region(region);
                }
                Arc::new(b.build().map_err(|e| invalid(&e.to_string()))?)
            }
            "gs" => {
                if host.is_empty() {
                    return Err(invalid("gs URLs need a bucket: gs://bucket/prefix"));
                }
                let b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&host)
                    .with_retry(retry_config())
                    .with_client_options(client_options());
                Arc::new(b.build().map_err(|e| invalid(&e.to_string()))?)
            }
            "az" | "azure" => {
                if host.is_empty() {
                    return Err(invalid("az URLs need a container: az://container/prefix"));
                }
                let b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&host)
                    .with_retry(retry_config())
                    .with_client_options(client_options());
                Arc::new(b.build().map_err(|e| invalid(&e.to_string()))?)
            }
            other => {
                return Err(invalid(&format!(
                    "unsupported scheme {other:?} (file, s3, gs, az, memory)"
                )));
            }
        };
        Ok(Store {
            inner,
            prefix: ObjPath::from(prefix),
            url: redact(url),
        })
    }

    fn local(dir: &str, url: &str) -> Result<Store, StoreError> {
        let path = Path::new(dir);
        std::fs::create_dir_all(path).map_err(|e| StoreError::io(path, e))?;
        // Automatic cleanup removes directories emptied by deletes, so a
        // deleted index no longer shows up in listings.
        let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| StoreError::InvalidUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .with_automatic_cleanup(true);
        Ok(Store {
            inner: Arc::new(fs),
            prefix: ObjPath::default(),
            url: url.to_string(),
        })
    }

    /// Wraps an existing backend (tests inject faulty stores this way).
    pub fn from_backend(inner: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Store {
        Store {
            inner,
            prefix: ObjPath::from(prefix),
            url: url.to_string(),
        }
    }

    /// The URL this store was opened from (credentials in the query removed).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Full object path of a key relative to the prefix.
    pub fn path(&self, key: &str) -> ObjPath {
        let mut p = self.prefix.clone();
        for part in key.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        Ok(self
            .get_if_changed(key, None)
            .await?
            .expect("no etag given, so never unchanged")
            .0)
    }

    /// Fetches a small object unless its ETag still equals `etag`
    /// (then `None`): cheap polling of `CURRENT` pointers.
    pub async fn get_if_changed(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> Result<Option<(Bytes, Option<String>)>, StoreError> {
        let path = self.path(key);
        OBJECT_STORE_REQUESTS.with_label_values(&["get"]).inc();
        let opts = GetOptions {
            if_none_match: etag.map(str::to_string),
            ..Default::default()
        };
        let result = match self.inner.get_opts(&path, opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotModified { .. }) => return Ok(None),
            Err(e) => return Err(StoreError::from_object(&path, e)),
        };
        let new_etag = result.meta.e_tag.clone();
        if etag.is_some() && new_etag.as_deref() == etag {
            return Ok(None);
        }
        let bytes = result.bytes().await.map_err(|e| StoreError::from_object(&path, e))?;
        OBJECT_STORE_BYTES
            .with_label_values(&["read"])
            .inc_by(bytes.len() as u64);
        Ok(Some((bytes, new_etag)))
    }

    /// Streams an object into a local file, feeding every chunk to `inspect`
    /// (used to hash while downloading; it is awaited, so a slow consumer
    /// holds the transfer back instead of queueing the file in memory).
    /// Returns the bytes written.
    ///
    /// A transfer that breaks, fails or receives nothing for `stall` is
    /// resumed from the byte it reached with a range request, so a large file
    /// is never started over; it gives up after [`MAX_RESUMES`] resumes in a
    /// row that made no progress. With an `expected` size, a larger object
    /// fails before more than that is written (a disk budget reserved it),
    /// and one that breaks after its last byte is complete.
    pub async fn download<Inspected>(
        &self,
        key: &str,
        dest: &Path,
        expected: Option<u64>,
        stall: Duration,
        mut inspect: impl FnMut(&Bytes) -> Inspected,
    ) -> Result<u64, StoreError>
    where
        Inspected: std::future::Future<Output = ()>,
    {
        let path = self.path(key);
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| StoreError::io(dest, e))?;
        let mut total = 0u64;
        let mut fruitless = 0;
        loop {
            OBJECT_STORE_REQUESTS.with_label_values(&["get"]).inc();
            let opts = GetOptions {
                range: (total > 0).then_some(GetRange::Offset(total)),
                ..Default::default()
            };
            let before = total;
            let broken: Option<Broken> = match tokio::time::timeout(stall, self.inner.get_opts(&path, opts)).await {
                // The first request's error is the caller's to handle (the
                // client has retried it), as is one no retry can mend; a
                // resume's other errors are one more broken try.
                Ok(Err(e)) if total == 0 || !resumable(&e) => {
                    return Err(StoreError::from_object(&path, e));
                }
                Ok(Err(e)) => Some(Broken::Failed(e)),
                Err(_) if total == 0 => {
                    return Err(StoreError::Stalled {
                        key: path.to_string(),
                        after: stall,
                    });
                }
                Err(_) => Some(Broken::Stalled),
                Ok(Ok(result)) => {
                    let mut stream = result.into_stream();
                    loop {
                        match tokio::time::timeout(stall, stream.next()).await {
                            Err(_) => break Some(Broken::Stalled),
                            Ok(None) => break None,
                            Ok(Some(Err(e))) => break Some(Broken::Failed(e)),
                            Ok(Some(Ok(chunk))) => {
                                let len = chunk.len() as u64;
                                if let Some(expected) = expected
                                    && total.saturating_add(len) > expected
                                {
                                    return Err(StoreError::Oversized {
                                        key: path.to_string(),
                                        expected,
                                    });
                                }
                                inspect(&chunk).await;
                                file.write_all(&chunk).await.map_err(|e| StoreError::io(dest, e))?;
                                total += len;
                                OBJECT_STORE_BYTES.with_label_values(&["read"]).inc_by(len);
                            }
                        }
                    }
                }
            };
            let Some(broken) = broken else { break };
            if expected == Some(total) {
                break;
            }
            fruitless = if total > before { 1 } else { fruitless + 1 };
            if fruitless > MAX_RESUMES {
                // The last failure says why, not a stall that did not happen.
                return Err(match broken {
                    Broken::Failed(e) => StoreError::from_object(&path, e),
                    Broken::Stalled => StoreError::Stalled {
                        key: path.to_string(),
                        after: stall,
                    },
                });
            }
            OBJECT_STORE_RESUMES.inc();
            let why = match &broken {
                Broken::Failed(e) => e.to_string(),
                Broken::Stalled => format!("nothing received for {stall:?}"),
            };
            tracing::warn!(key = %path, offset = total, error = %why, "download broke; resuming with a range request");
            // Tries without progress wait a little longer each time.
            tokio::time::sleep(RESUME_PAUSE * (fruitless - 1)).await;
        }
        file.flush().await.map_err(|e| StoreError::io(dest, e))?;
        file.sync_all().await.map_err(|e| StoreError::io(dest, e))?;
        Ok(total)
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key);
        OBJECT_STORE_REQUESTS.with_label_values(&["put"]).inc();
        let len = bytes.len() as u64;
        self.inner
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| StoreError::from_object(&path, e))?;
        OBJECT_STORE_BYTES.with_label_values(&["written"]).inc_by(len);
        Ok(())
    }

    /// Writes `key` only if no object is there yet: `Ok(true)` when this call
    /// created it, `Ok(false)` when it already existed. The check and the write
    /// are one conditional request where the backend supports it (local
    /// files, memory, S3 `If-None-Match`, GCS, Azure), so two racing writers
    /// cannot both win; elsewhere it degrades to a check, then a write.
    pub async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool, StoreError> {
        let path = self.path(key);
        OBJECT_STORE_REQUESTS.with_label_values(&["put"]).inc();
        let len = bytes.len() as u64;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self.inner.put_opts(&path, PutPayload::from(bytes.clone()), opts).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                return Ok(false);
            }
            Err(object_store::Error::NotImplemented { .. }) => {
                if self.exists(key).await? {
                    return Ok(false);
                }
                self.put(key, bytes).await?;
                return Ok(true);
            }
            Err(e) => return Err(StoreError::from_object(&path, e)),
        }
        OBJECT_STORE_BYTES.with_label_values(&["written"]).inc_by(len);
        Ok(true)
    }

    /// Uploads a local file, in parts when it is large.
    pub async fn put_file(&self, key: &str, src: &Path) -> Result<u64, StoreError> {
        let size = tokio::fs::metadata(src)
            .await
            .map_err(|e| StoreError::io(src, e))?
            .len();
        if size < MULTIPART_THRESHOLD {
            let bytes = tokio::fs::read(src).await.map_err(|e| StoreError::io(src, e))?;
            self.put(key, Bytes::from(bytes)).await?;
            return Ok(size);
        }
        let path = self.path(key);
        OBJECT_STORE_REQUESTS.with_label_values(&["put"]).inc();
        let upload = self
            .inner
            .put_multipart(&path)
            .await
            .map_err(|e| StoreError::from_object(&path, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_CHUNK);
        match Self::write_parts(&mut writer, src, &path).await {
            Ok(()) => {
                writer.finish().await.map_err(|e| StoreError::from_object(&path, e))?;
            }
            Err(e) => {
                // Parts of an upload never completed are kept (and billed) until aborted.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key = %path, error = %abort, "could not abort a failed multipart upload");
                }
                return Err(e);
            }
        }
        OBJECT_STORE_BYTES.with_label_values(&["written"]).inc_by(size);
        Ok(size)
    }

    async fn write_parts(writer: &mut WriteMultipart, src: &Path, path: &ObjPath) -> Result<(), StoreError> {
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(src).await.map_err(|e| StoreError::io(src, e))?;
        let mut buf = vec![0u8; MULTIPART_CHUNK];
        loop {
            let n = file.read(&mut buf).await.map_err(|e| StoreError::io(src, e))?;
            if n == 0 {
                return Ok(());
            }
            writer
                .wait_for_capacity(4)
                .await
                .map_err(|e| StoreError::from_object(path, e))?;
            writer.write(&buf[..n]);
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key);
        OBJECT_STORE_REQUESTS.with_label_values(&["head"]).inc();
        match self.inner.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(StoreError::from_object(&path, e)),
        }
    }

    /// Names of the immediate children ("directories") under a key prefix.
    pub async fn list_dirs(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let path = self.path(key);
        OBJECT_STORE_REQUESTS.with_label_values(&["list"]).inc();
        let listing = match self.inner.list_with_delimiter(Some(&path)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::from_object(&path, e)),
        };
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every object under a key prefix, keys relative to the store prefix,
    /// sorted by key.
    pub async fn list(&self, key: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let path = self.path(key);
        OBJECT_STORE_REQUESTS.with_label_values(&["list"]).inc();
        let mut listing = self.inner.list(Some(&path));
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(StoreError::from_object(&path, e)),
            };
            let Some(parts) = meta.location.prefix_match(&self.prefix) else {
                continue;
            };
            let key = parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/");
            out.push(ObjectInfo {
                key,
                size: meta.size,
                last_modified: meta.last_modified.into(),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Deletes every object under a key prefix; returns how many were removed.
    pub async fn delete_prefix(&self, key: &str) -> Result<usize, StoreError> {
        let objects = self.list(key).await?;
        for o in &objects {
            self.delete(&o.key).await?;
        }
        Ok(objects.len())
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key);
        OBJECT_STORE_REQUESTS.with_label_values(&["delete"]).inc();
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::from_object(&path, e)),
        }
    }
}

/// A few quick retries: an outage should surface as `Unavailable` in seconds
/// (the shard then backs off on its own) rather than hang a restore for minutes.
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(15),
        ..Default::default()
    }
}

/// No whole-request timeout (index files can take longer than any fixed
/// limit to arrive); a read timeout catches stalled connections instead, and
/// [`Store::download`] resumes them.
fn client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout_disabled()
        .with_read_timeout(DEFAULT_STALL)
}

/// Drops query parameters that may carry secrets before a URL is logged.
fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, q)) if q.contains("secret") || q.contains("key") || q.contains("token") => {
            format!("{base}?<redacted>")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_round_trip_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        store.put("indexes/a/CURRENT", Bytes::from_static(b"x")).await.unwrap();
        store
            .put("indexes/b/versions/1/f", Bytes::from_static(b"y"))
            .await
            .unwrap();
        assert_eq!(store.get("indexes/a/CURRENT").await.unwrap(), Bytes::from_static(b"x"));
        assert_eq!(store.list_dirs("indexes").await.unwrap(), vec!["a", "b"]);
        assert!(matches!(
            store.get("indexes/zz/CURRENT").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.delete_prefix("indexes/b").await.unwrap(), 1);
        assert_eq!(store.list_dirs("indexes").await.unwrap(), vec!["a"]);
    }

    #[tokio::test]
    async fn put_if_absent_creates_once() {
        let dir = tempfile::tempdir().unwrap();
        for url in [
            "memory://put-if-absent/x".to_string(),
            format!("file://{}", dir.path().display()),
        ] {
            let store = Store::open(&url).unwrap();
            assert!(
                store
                    .put_if_absent("a/OWNER", Bytes::from_static(b"first"))
                    .await
                    .unwrap(),
                "{url}"
            );
            assert!(
                !store
                    .put_if_absent("a/OWNER", Bytes::from_static(b"second"))
                    .await
                    .unwrap(),
                "{url}"
            );
            assert_eq!(
                store.get("a/OWNER").await.unwrap(),
                Bytes::from_static(b"first"),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn etag_polling_sees_changes_only() {
        let store = Store::open("memory://etag-test").unwrap();
        store.put("p", Bytes::from_static(b"1")).await.unwrap();
        let (_, etag) = store.get_if_changed("p", None).await.unwrap().unwrap();
        let etag = etag.expect("memory store has etags");
        assert!(store.get_if_changed("p", Some(&etag)).await.unwrap().is_none());
        store.put("p", Bytes::from_static(b"2")).await.unwrap();
        let (bytes, _) = store.get_if_changed("p", Some(&etag)).await.unwrap().unwrap();
        assert_eq!(bytes, Bytes::from_static(b"2"));
    }

    #[test]
    fn urls_are_checked() {
        assert!(matches!(Store::open("ftp://x/y"), Err(StoreError::InvalidUrl { .. })));
        assert!(matches!(
            Store::open("s3:///nobucket"),
            Err(StoreError::InvalidUrl { .. })
        ));
        assert_eq!(redact("s3://b/p?secret=abc"), "s3://b/p?<redacted>");
        let err = Store::open("ftp://x/y?secret_key=hunter2").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn prefix_joins_keys() {
        let store = Store::open("memory://prefix-test/a/b").unwrap();
        assert_eq!(store.path("indexes/x/CURRENT").to_string(), "a/b/indexes/x/CURRENT");
    }

    #[tokio::test]
    async fn large_files_upload_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("big");
        let data: Vec<u8> = (0..(MULTIPART_THRESHOLD as usize + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&src, &data).unwrap();
        let store = Store::open("memory://multipart-test").unwrap();
        store.put_file("big", &src).await.unwrap();
        let dest = dir.path().join("back");
        let mut seen = 0usize;
        let n = store
            .download("big", &dest, Some(data.len() as u64), DEFAULT_STALL, |c| {
                seen += c.len();
                async {}
            })
            .await
            .unwrap();
        assert_eq!(n as usize, data.len());
        assert_eq!(seen, data.len());
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }

    /// An in-memory store whose object bodies break after `cut` bytes (each
    /// GET's, resumes included), and whose GETs numbered in `fail` fail.
    #[derive(Debug)]
    struct Breaking {
        inner: object_store::memory::InMemory,
        cut: usize,
        fail: Vec<usize>,
        /// GETs answered "forbidden", as with credentials that expired.
        deny: Vec<usize>,
        gets: std::sync::atomic::AtomicUsize,
    }

    impl std::fmt::Display for Breaking {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Breaking")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Breaking {
        async fn put_opts(
            &self,
            location: &ObjPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &ObjPath,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &ObjPath,
            options: GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            let n = self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let broken = || object_store::Error::Generic {
                store: "breaking",
                source: "connection reset".into(),
            };
            if self.fail.contains(&n) {
                return Err(broken());
            }
            if self.deny.contains(&n) {
                return Err(object_store::Error::PermissionDenied {
                    path: location.to_string(),
                    source: "credentials expired".into(),
                });
            }
            let mut result = self.inner.get_opts(location, options).await?;
            let empty = object_store::GetResultPayload::Stream(futures::stream::empty().boxed());
            let object_store::GetResultPayload::Stream(body) = std::mem::replace(&mut result.payload, empty) else {
                unreachable!("memory stores stream")
            };
            let body: Vec<Bytes> = body.map(|c| c.unwrap()).collect().await;
            let body = Bytes::from(body.concat());
            let parts = if body.len() > self.cut {
                vec![Ok(body.slice(..self.cut)), Err(broken())]
            } else {
                vec![Ok(body)]
            };
            result.payload = object_store::GetResultPayload::Stream(futures::stream::iter(parts).boxed());
            Ok(result)
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<ObjPath>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<ObjPath>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&ObjPath>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjPath>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &ObjPath,
            to: &ObjPath,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// A body that breaks part-way is resumed from the byte it reached, with
    /// range requests, until whole; a resume whose request fails is one more
    /// try, not the end of the download.
    #[tokio::test]
    async fn a_broken_download_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let breaking = Arc::new(Breaking {
            inner: object_store::memory::InMemory::new(),
            cut: 3000,
            fail: vec![2],
            deny: vec![],
            gets: Default::default(),
        });
        let store = Store::from_backend(breaking.clone(), "", "breaking://");
        let data: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();
        store.put("obj", Bytes::from(data.clone())).await.unwrap();
        let dest = dir.path().join("obj");
        let n = store
            .download("obj", &dest, Some(data.len() as u64), DEFAULT_STALL, |_| async {})
            .await
            .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        // 0-3000, 3000-6000, a failed request, 6000-9000, 9000-10000.
        assert_eq!(breaking.gets.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

    /// A resume refused for good (credentials expired) ends the download
    /// with that error at once, not with retries and a stall it never had.
    #[tokio::test]
    async fn a_resume_refused_for_good_fails_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let breaking = Arc::new(Breaking {
            inner: object_store::memory::InMemory::new(),
            cut: 3000,
            fail: vec![],
            deny: vec![1],
            gets: Default::default(),
        });
        let store = Store::from_backend(breaking.clone(), "", "breaking://");
        store.put("obj", Bytes::from(vec![1u8; 10_000])).await.unwrap();
        let err = store
            .download("obj", &dir.path().join("obj"), Some(10_000), DEFAULT_STALL, |_| async {
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("credentials expired"), "{err}");
        assert_eq!(breaking.gets.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// An object larger than its manifest says fails the download before
    /// more than the expected bytes reach the disk a budget reserved.
    #[tokio::test]
    async fn a_download_larger_than_expected_fails_before_writing_more() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open("memory://oversized").unwrap();
        store.put("obj", Bytes::from(vec![7u8; 4096])).await.unwrap();
        let dest = dir.path().join("obj");
        let err = store
            .download("obj", &dest, Some(1000), DEFAULT_STALL, |_| async {})
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Oversized { expected: 1000, .. }), "{err}");
        assert!(std::fs::metadata(&dest).unwrap().len() <= 1000);
    }
}
