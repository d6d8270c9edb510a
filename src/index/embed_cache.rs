//! Reusing chunk vectors across builds, so a rebuild embeds only what changed.
//!
//! Embedding is by far the slowest build stage on a CPU, and most of a
//! repository is unchanged between two versions. Vectors are kept in the
//! index's own store, one *pack* per file: the (text hash, vector) pairs of
//! that file's chunks, keyed by a digest of the file's path and text, so any
//! index in the store with the same file at the same path reuses it. A per-index
//! path map remembers which pack each path used last time: when a file changes,
//! its old pack still supplies the vectors of the chunks that did not. A path
//! this index never built falls back to the pack any index of the store last
//! wrote for it, so a new index of another branch or commit of a repository
//! embeds only the chunks that differ.
//!
//! A vector is only ever taken for a chunk whose embedding text hashes to the
//! same value under the same model, so a stale or foreign pack can cost a miss
//! but never a wrong vector. The model is told by its [`Fingerprint`], not its
//! id: another server or other weights behind the same id get a namespace of
//! their own, recorded under `embed-cache/probes/` with the probe vectors
//! that name it, which later builds match within float noise. The cache is an optimisation: reading or
//! writing it never fails a build (failures are logged and counted as misses).
//!
//! Packs outlive the builds that wrote them: a changed file leaves its old
//! pack behind, a deleted index all of its own. [`prune`] removes the packs
//! no index's path map names, once they are old enough that no build still
//! running can be about to name them.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::IndexId;
use crate::embed::{Fingerprint, same_model};
use crate::model::sha256_hex;
use crate::storage::layout::{
    EMBED_CACHE_DIR, INDEXES_DIR, embed_latest_key, embed_pack_key, embed_paths_key, embed_paths_prefix,
    embed_probe_key, embed_probes_prefix,
};
use crate::storage::store::{Store, StoreError};

/// sha256 of a chunk's embedding text.
pub type TextHash = [u8; 32];

const MAGIC: &[u8; 8] = b"TSEMB001";
/// Packs fetched or written at once.
const CONCURRENCY: usize = 16;

/// sha256 of `text`, the key a vector is reused under.
pub fn text_hash(text: &str) -> TextHash {
    Sha256::digest(text.as_bytes()).into()
}

/// One file of the build: its path, a digest of its text, and its chunks' rows.
#[derive(Debug, Clone)]
pub struct FileRows {
    pub path: String,
    /// Hex sha256 of the file's (normalised) text.
    pub text_sha: String,
    /// The file's chunks, as a range of rows of the build's chunk list.
    pub rows: Range<usize>,
}

/// What a build got from the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Chunks whose vector came from the cache.
    pub reused: usize,
    /// Chunks the embedder had to embed.
    pub embedded: usize,
    /// Packs found for files with unchanged text.
    pub files_hit: usize,
    /// Packs written for new or changed files.
    pub packs_written: usize,
}

/// The embedding cache of one store, for one index and one embedder.
#[derive(Debug, Clone)]
pub struct EmbedCache {
    store: Store,
    index: IndexId,
    /// Hex digest of the model's fingerprint: ids like `openai:org/model` are
    /// not key-safe, and a vector is only valid for the model that made it.
    model: String,
    dimension: usize,
}

/// Why the cache could not be pruned; nothing was deleted when the live
/// packs could not all be known.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("listing or deleting in the store: {0}")]
    Store(#[from] StoreError),
    #[error("path map {key} is unreadable, so the packs it names are unknown: {source}")]
    PathMap {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What [`prune`] found and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Packs in the store, and their bytes.
    pub packs: usize,
    pub bytes: u64,
    /// Packs some index's path map names: kept.
    pub referenced: usize,
    /// Packs no path map names, but younger than the minimum age: kept.
    pub young: usize,
    /// Packs removed (or, in a dry run, that would be), and their bytes.
    pub removed: usize,
    pub removed_bytes: u64,
}

/// Deletes the embedding packs that no index's path map names and that are
/// at least `min_age` old (`dry_run` only counts them). A build names its
/// packs only when it finishes, so `min_age` must exceed the longest build;
/// a pack removed anyway costs that build's next run a re-embedding of one
/// file, never a wrong vector. An unreadable path map stops the prune before
/// anything is deleted.
pub async fn prune(store: &Store, min_age: std::time::Duration, dry_run: bool) -> Result<PruneReport, PruneError> {
    let mut live = HashSet::new();
    for name in store.list_dirs(INDEXES_DIR).await? {
        // Only indexes this service wrote have path maps; other names are not ours.
        let Ok(id) = IndexId::new(name) else { continue };
        for map in store.list(&embed_paths_prefix(&id)).await? {
            let Some(model) = map.key.rsplit('/').next().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            let bytes = match store.get(&map.key).await {
                Ok(bytes) => bytes,
                // Deleted since the listing: it names nothing any more.
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let paths: HashMap<String, String> =
                serde_json::from_slice(&bytes).map_err(|source| PruneError::PathMap {
                    key: map.key.clone(),
                    source,
                })?;
            live.extend(paths.into_values().map(|pack| embed_pack_key(model, &pack)));
        }
    }
    let now = std::time::SystemTime::now();
    let mut report = PruneReport::default();
    let mut doomed = Vec::new();
    for pack in store.list(EMBED_CACHE_DIR).await? {
        if !pack.key.ends_with(".vec") {
            continue;
        }
        report.packs += 1;
        report.bytes += pack.size;
        if live.contains(&pack.key) {
            report.referenced += 1;
        } else if now.duration_since(pack.last_modified).unwrap_or_default() < min_age {
            report.young += 1;
        } else {
            report.removed += 1;
            report.removed_bytes += pack.size;
            doomed.push(pack.key);
        }
    }
    if !dry_run {
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(doomed)
            .map(|key| async move { store.delete(&key).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect::<Result<(), StoreError>>()?;
    }
    Ok(report)
}

/// Vectors recalled for a build, by text hash.
#[derive(Debug, Default)]
pub struct Recalled {
    pub vectors: HashMap<TextHash, Vec<f32>>,
    /// Paths whose own pack (same path, same text) already exists.
    pub present: HashSet<String>,
}

/// A probe record: the probe vectors of the run that opened a namespace.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProbeRecord {
    embedder: String,
    probe: Vec<Vec<f32>>,
}

impl EmbedCache {
    /// The cache of the model `fingerprint` tells (of the embedder `id`).
    /// `None` (logged) when the probe records cannot be read.
    pub async fn for_fingerprint(store: Store, index: IndexId, id: &str, fingerprint: &Fingerprint) -> Option<Self> {
        let run = probe_run(&store, id, fingerprint).await?;
        Some(Self::new(
            store,
            index,
            &format!("{}\0{run}", fingerprint.declared),
            fingerprint.dimension(),
        ))
    }

    /// A cache in the namespace `seed` names, trusting the caller that every
    /// vector kept there comes from one model: for tests and tools. Builds
    /// use [`Self::for_fingerprint`], as an embedder's id does not tell its model.
    pub fn new(store: Store, index: IndexId, seed: &str, dimension: usize) -> Self {
        Self {
            store,
            index,
            model: hex::encode(&Sha256::digest(seed.as_bytes())[..12]),
            dimension,
        }
    }

    fn pack_name(&self, file: &FileRows) -> String {
        hex::encode(Sha256::digest(format!("{}\0{}", file.path, file.text_sha).as_bytes()))
    }

    /// Where the store-wide pointer to `path`'s newest pack lives.
    fn latest_key(&self, path: &str) -> String {
        embed_latest_key(&self.model, &sha256_hex(path.as_bytes()))
    }

    /// Every cached vector that may serve these files: their own packs, and for
    /// files without one, the pack their path had in this index's last build,
    /// or else the pack any index of the store last wrote for that path.
    pub async fn recall(&self, files: &[FileRows]) -> Recalled {
        let mut out = Recalled::default();
        let own: Vec<(String, String)> = files.iter().map(|f| (f.path.clone(), self.pack_name(f))).collect();
        let found = self.fetch_packs(own.iter().map(|(_, p)| p.clone()).collect()).await;
        for ((path, pack), entries) in own.iter().zip(found) {
            if let Some(entries) = entries {
                out.present.insert(path.clone());
                out.vectors.extend(entries);
            } else {
                tracing::trace!(path, pack, "no embedding pack for this file's text");
            }
        }
        let missing: Vec<&String> = own
            .iter()
            .map(|(path, _)| path)
            .filter(|p| !out.present.contains(*p))
            .collect();
        if missing.is_empty() {
            return out;
        }
        let last = self.last_paths().await;
        let mut old = Vec::new();
        let mut unmapped = Vec::new();
        for path in missing {
            match last.get(path) {
                Some(pack) => old.push(pack.clone()),
                None => unmapped.push(path),
            }
        }
        old.extend(self.latest_packs(&unmapped).await);
        for entries in self.fetch_packs(old).await.into_iter().flatten() {
            out.vectors.extend(entries);
        }
        out
    }

    /// Writes the packs of the files `write` selects (new text, or chunks the
    /// cache did not know). `hashes[i]` and `vectors[i]` belong to row `i`;
    /// `write[j]` to `files[j]`, whose rows must all be embedded. A build
    /// calls it as files complete, so a build that fails later keeps them.
    pub async fn write_packs(
        &self,
        files: &[FileRows],
        write: &[bool],
        hashes: &[TextHash],
        vectors: &[Vec<f32>],
    ) -> usize {
        // Owned items, as in `latest_packs`: the build's future stays `Send`.
        let new: Vec<(String, String, Bytes)> = files
            .iter()
            .zip(write)
            .filter(|(f, w)| **w && !f.rows.is_empty())
            .map(|(f, _)| f)
            .map(|f| {
                (
                    f.path.clone(),
                    self.pack_name(f),
                    encode_pack(self.dimension, f.rows.clone(), hashes, vectors),
                )
            })
            .collect();
        futures::stream::iter(new)
            .map(|(path, pack, bytes)| async move {
                let key = embed_pack_key(&self.model, &pack);
                if let Err(e) = self.store.put(&key, bytes).await {
                    tracing::warn!(key, error = %e, "could not write an embedding pack; the next build re-embeds this file");
                    return 0;
                }
                let latest = self.latest_key(&path);
                if let Err(e) = self.store.put(&latest, Bytes::from(pack)).await {
                    tracing::warn!(key = latest, error = %e, "could not point this path at its new embedding pack");
                }
                1
            })
            .buffer_unordered(CONCURRENCY)
            .fold(0usize, |n, w| async move { n + w })
            .await
    }

    /// Records which pack each path of this build used, for the next build
    /// of this index (a changed file reuses its unchanged chunks' vectors).
    pub async fn record_paths(&self, files: &[FileRows]) {
        let paths: HashMap<&str, String> = files
            .iter()
            .filter(|f| !f.rows.is_empty())
            .map(|f| (f.path.as_str(), self.pack_name(f)))
            .collect();
        let key = embed_paths_key(&self.index, &self.model);
        match serde_json::to_vec(&paths) {
            Ok(json) => {
                if let Err(e) = self.store.put(&key, Bytes::from(json)).await {
                    tracing::warn!(key, error = %e, "could not record this build's embedding packs");
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not encode the embedding path map");
                return;
            }
        }
        self.forget_other_models(&key).await;
    }

    /// Deletes this index's path maps of other models: its vectors now come
    /// from this one, and those maps would keep their packs from [`prune`]
    /// for as long as the index lives. Switching back costs re-embedding.
    async fn forget_other_models(&self, own: &str) {
        let maps = match self.store.list(&embed_paths_prefix(&self.index)).await {
            Ok(maps) => maps,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list this index's embedding path maps");
                return;
            }
        };
        for map in maps.into_iter().filter(|m| m.key != own && m.key.ends_with(".json")) {
            match self.store.delete(&map.key).await {
                Ok(()) => tracing::debug!(
                    key = map.key,
                    "dropped the path map of a model this index no longer uses"
                ),
                Err(e) => tracing::warn!(key = map.key, error = %e, "cannot drop an old embedding path map"),
            }
        }
    }

    /// The object at `key`, or `None` when it is absent or cannot be read: the
    /// cache only saves work, so a store fault here means embedding instead.
    async fn get_optional(&self, key: &str, what: &str) -> Option<Bytes> {
        match self.store.get(key).await {
            Ok(bytes) => Some(bytes),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot read {what}; embedding instead");
                None
            }
        }
    }

    async fn last_paths(&self) -> HashMap<String, String> {
        let key = embed_paths_key(&self.index, &self.model);
        let Some(bytes) = self.get_optional(&key, "the embedding path map").await else {
            return HashMap::new();
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(key, error = %e, "ignoring an unreadable embedding path map");
            HashMap::new()
        })
    }

    /// The packs any index of the store last wrote for these paths (those
    /// that have one). A pointer that is unreadable or names no pack is a miss.
    /// The stream runs over owned paths: a closure taking a borrowed item
    /// makes the build's future unprovably `Send` (it could not be spawned).
    async fn latest_packs(&self, paths: &[&String]) -> Vec<String> {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        futures::stream::iter(paths)
            .map(|path| async move {
                let key = self.latest_key(&path);
                let bytes = self.get_optional(&key, "an embedding pack pointer").await?;
                match std::str::from_utf8(&bytes) {
                    Ok(pack) if is_pack_name(pack) => Some(pack.to_string()),
                    _ => {
                        tracing::warn!(key, "ignoring an unreadable embedding pack pointer");
                        None
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Fetches packs by name, in order; `None` for a missing or unusable pack.
    async fn fetch_packs(&self, packs: Vec<String>) -> Vec<Option<Vec<(TextHash, Vec<f32>)>>> {
        futures::stream::iter(packs)
            .map(|pack| async move {
                let key = embed_pack_key(&self.model, &pack);
                let bytes = self.get_optional(&key, "an embedding pack").await?;
                match decode_pack(self.dimension, &bytes) {
                    Ok(entries) => Some(entries),
                    Err(reason) => {
                        tracing::warn!(key, reason, "ignoring a corrupt embedding pack");
                        None
                    }
                }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await
    }
}

/// The oldest probe record `fingerprint` matches (by time, then name, so
/// builders that both opened one converge on the first), or a new one named
/// by its exact probe vectors. `None` when the records cannot all be read: a
/// new namespace then could take over from the model's established one.
async fn probe_run(store: &Store, embedder: &str, fingerprint: &Fingerprint) -> Option<String> {
    let prefix = embed_probes_prefix(&fingerprint.declared);
    let mut records = match store.list(&prefix).await {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(prefix, error = %e, "cannot list the embedder's probe records; building without the embedding cache");
            return None;
        }
    };
    records.sort_by(|a, b| (a.last_modified, &a.key).cmp(&(b.last_modified, &b.key)));
    for record in records {
        let Some(run) = record
            .key
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_suffix(".json"))
            .filter(|r| is_hex(r))
        else {
            continue;
        };
        let bytes = match store.get(&record.key).await {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => {
                tracing::warn!(key = record.key, error = %e, "cannot read a probe record; building without the embedding cache");
                return None;
            }
        };
        match serde_json::from_slice::<ProbeRecord>(&bytes) {
            Ok(r) if same_model(&fingerprint.probe, &r.probe) => return Some(run.to_string()),
            Ok(_) => {}
            Err(e) => tracing::warn!(key = record.key, error = %e, "ignoring an unreadable probe record"),
        }
    }
    let run = fingerprint.probe_digest();
    let key = embed_probe_key(&fingerprint.declared, &run);
    let record = ProbeRecord {
        embedder: embedder.to_string(),
        probe: fingerprint.probe.clone(),
    };
    match serde_json::to_vec(&record) {
        Ok(json) => {
            if let Err(e) = store.put(&key, Bytes::from(json)).await {
                tracing::warn!(key, error = %e, "cannot record the embedder's probe; the next build may not find this namespace");
            } else {
                tracing::info!(
                    embedder,
                    key,
                    "a model this store has not cached before: new embedding cache namespace"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot encode the embedder's probe record"),
    }
    Some(run)
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Pack names are hex sha256 digests; anything else read back from the store
/// is not used in a key.
fn is_pack_name(name: &str) -> bool {
    name.len() == 64 && is_hex(name)
}

/// `MAGIC`, dimension and count (u32 LE), then per chunk its text hash and
/// `dimension` f32 LE.
fn encode_pack(dimension: usize, rows: Range<usize>, hashes: &[TextHash], vectors: &[Vec<f32>]) -> Bytes {
    let n = rows.len();
    let mut buf = BytesMut::with_capacity(16 + n * (32 + dimension * 4));
    buf.put_slice(MAGIC);
    buf.put_u32_le(dimension as u32);
    buf.put_u32_le(n as u32);
    for row in rows {
        buf.put_slice(&hashes[row]);
        for x in &vectors[row] {
            buf.put_f32_le(*x);
        }
    }
    buf.freeze()
}

fn decode_pack(dimension: usize, bytes: &[u8]) -> Result<Vec<(TextHash, Vec<f32>)>, String> {
    let header = 16;
    if bytes.len() < header || &bytes[..8] != MAGIC {
        return Err("not an embedding pack".into());
    }
    let dim = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default()) as usize;
    let n = u32::from_le_bytes(bytes[12..16].try_into().unwrap_or_default()) as usize;
    if dim != dimension {
        return Err(format!("dimension {dim}, expected {dimension}"));
    }
    let row = 32 + dim * 4;
    if bytes.len() != header + n * row {
        return Err(format!("{} bytes for {n} vectors of dimension {dim}", bytes.len()));
    }
    let entries: Vec<(TextHash, Vec<f32>)> = bytes[header..]
        .chunks_exact(row)
        .map(|r| {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&r[..32]);
            let v = r[32..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (hash, v)
        })
        .collect();
    // No embedder returns these: the pack is damaged, and one NaN would
    // poison every score it takes part in.
    if let Some(i) = entries.iter().position(|(_, v)| v.iter().any(|x| !x.is_finite())) {
        return Err(format!("non-finite value in vector {i}"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::Embedder;
    use crate::storage::layout::EMBED_PROBES_DIR;
    use std::sync::Arc;

    /// What a build does once every vector is embedded: its packs, then its
    /// path map. Returns the packs written.
    async fn remember(
        c: &EmbedCache,
        files: &[FileRows],
        write: &[bool],
        hashes: &[TextHash],
        vectors: &[Vec<f32>],
    ) -> usize {
        let written = c.write_packs(files, write, hashes, vectors).await;
        c.record_paths(files).await;
        written
    }

    fn cache(store: &Store) -> EmbedCache {
        EmbedCache::new(store.clone(), IndexId::new("idx").unwrap(), "test-embedder", 2)
    }

    fn file(path: &str, text: &str, rows: Range<usize>) -> FileRows {
        FileRows {
            path: path.into(),
            text_sha: crate::model::sha256_hex(text.as_bytes()),
            rows,
        }
    }

    #[test]
    fn packs_round_trip_and_reject_damage() {
        let hashes = [text_hash("a"), text_hash("b")];
        let vectors = vec![vec![1.0, 0.0], vec![0.0, -1.5]];
        let bytes = encode_pack(2, 0..2, &hashes, &vectors);
        let back = decode_pack(2, &bytes).unwrap();
        assert_eq!(
            back,
            vec![(hashes[0], vectors[0].clone()), (hashes[1], vectors[1].clone())]
        );
        assert!(decode_pack(3, &bytes).unwrap_err().contains("dimension"));
        assert!(decode_pack(2, &bytes[..bytes.len() - 1]).is_err());
        assert!(decode_pack(2, b"garbage").is_err());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let bytes = encode_pack(2, 0..2, &hashes, &[vec![1.0, 0.0], vec![bad, 0.0]]);
            assert!(decode_pack(2, &bytes).unwrap_err().contains("non-finite"), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_pack_with_a_non_finite_value_is_a_miss() {
        let store = Store::open("memory://embed-cache-nan").unwrap();
        let c = cache(&store);
        let hashes = [text_hash("one"), text_hash("two")];
        let files = [file("a.py", "v1", 0..1), file("b.py", "v1", 1..2)];
        let vectors = vec![vec![f32::NAN, 0.0], vec![0.0, 1.0]];
        assert_eq!(remember(&c, &files, &[true, true], &hashes, &vectors).await, 2);
        let recalled = c.recall(&files).await;
        assert_eq!(recalled.present, HashSet::from(["b.py".to_string()]));
        assert_eq!(recalled.vectors.len(), 1);
        assert!(!recalled.vectors.contains_key(&hashes[0]));
    }

    fn salted(salt: u8, noise: f32) -> Arc<dyn Embedder> {
        Arc::new(crate::embed::Salted {
            noise,
            ..crate::embed::Salted::new(salt)
        })
    }

    /// The cache a build with `embedder` would get, `None` as a build would.
    async fn try_cache_for(store: &Store, index: &str, embedder: Arc<dyn Embedder>) -> Option<EmbedCache> {
        let id = embedder.id().to_string();
        let fingerprint = Fingerprint::of_async(embedder).await.ok()?;
        EmbedCache::for_fingerprint(store.clone(), IndexId::new(index).unwrap(), &id, &fingerprint).await
    }

    async fn cache_for(store: &Store, index: &str, embedder: Arc<dyn Embedder>) -> EmbedCache {
        try_cache_for(store, index, embedder).await.expect("the probe succeeds")
    }

    /// Another model behind the same id and dimension (another server at
    /// the embedder URL, other weights in the model directory) reuses none of
    /// the first model's vectors; the same model, even with float noise, all.
    #[tokio::test]
    async fn a_model_swapped_behind_the_same_id_reuses_nothing() {
        let store = Store::open("memory://embed-cache-swapped").unwrap();
        let hashes = [text_hash("one"), text_hash("two"), text_hash("three")];
        let files = [file("a.py", "v1", 0..2), file("b.py", "v1", 2..3)];
        let vectors = vec![
            vec![1.0, 0.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0, 0.0],
            vec![0.0, 0.0, 1.0, 0.0],
        ];
        let a = cache_for(&store, "idx", salted(1, 0.0)).await;
        assert_eq!(remember(&a, &files, &[true, true], &hashes, &vectors).await, 2);

        let b = cache_for(&store, "idx", salted(2, 0.0)).await;
        assert_ne!(a.model, b.model);
        let swapped = b.recall(&files).await;
        assert!(swapped.vectors.is_empty() && swapped.present.is_empty());
        let other_index = cache_for(&store, "other", salted(2, 0.0)).await;
        assert!(other_index.recall(&files).await.vectors.is_empty());

        for (what, again) in [
            ("the same model", salted(1, 0.0)),
            ("with float noise", salted(1, 1e-3)),
        ] {
            let again = cache_for(&store, "idx", again).await;
            assert_eq!(again.model, a.model, "{what}");
            assert_eq!(again.recall(&files).await.vectors.len(), 3, "{what}");
        }
        let records = store.list(EMBED_PROBES_DIR).await.unwrap();
        assert_eq!(records.len(), 2, "one probe record per model: {records:?}");
    }

    /// An index built with another model leaves the old model's packs to
    /// prune, instead of keeping them named by its old path map.
    #[tokio::test]
    async fn prune_reclaims_the_packs_of_a_model_an_index_left() {
        let store = Store::open("memory://embed-cache-left").unwrap();
        let hashes = [text_hash("one")];
        let vectors = vec![vec![1.0, 0.0, 0.0, 0.0]];
        let files = [file("a.py", "v1", 0..1)];
        let old = cache_for(&store, "idx", salted(1, 0.0)).await;
        remember(&old, &files, &[true], &hashes, &vectors).await;
        let new = cache_for(&store, "idx", salted(2, 0.0)).await;
        remember(&new, &files, &[true], &hashes, &vectors).await;

        let maps = store
            .list(&embed_paths_prefix(&IndexId::new("idx").unwrap()))
            .await
            .unwrap();
        assert_eq!(maps.len(), 1, "{maps:?}");
        let done = prune(&store, std::time::Duration::ZERO, false).await.unwrap();
        assert_eq!((done.packs, done.referenced, done.removed), (2, 1, 1));
        assert_eq!(new.recall(&files).await.present.len(), 1);
    }

    /// An in-memory store whose next `lists` listings fail, and whose next
    /// `gets` reads of probe records: a store answering errors for a moment.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: object_store::memory::InMemory,
        lists: std::sync::atomic::AtomicUsize,
        gets: std::sync::atomic::AtomicUsize,
    }

    impl Flaky {
        fn take(n: &std::sync::atomic::AtomicUsize) -> bool {
            use std::sync::atomic::Ordering::SeqCst;
            n.fetch_update(SeqCst, SeqCst, |k| k.checked_sub(1)).is_ok()
        }
        fn error() -> object_store::Error {
            object_store::Error::Generic {
                store: "flaky",
                source: "connection reset".into(),
            }
        }
    }

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Flaky")
        }
    }

    // `async_trait` spelled out: this crate does not depend on the macro.
    impl object_store::ObjectStore for Flaky {
        fn put_opts<'a, 'b, 't>(
            &'a self,
            location: &'b object_store::path::Path,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> futures::future::BoxFuture<'t, object_store::Result<object_store::PutResult>>
        where
            'a: 't,
            'b: 't,
            Self: 't,
        {
            self.inner.put_opts(location, payload, opts)
        }
        fn put_multipart_opts<'a, 'b, 't>(
            &'a self,
            location: &'b object_store::path::Path,
            opts: object_store::PutMultipartOptions,
        ) -> futures::future::BoxFuture<'t, object_store::Result<Box<dyn object_store::MultipartUpload>>>
        where
            'a: 't,
            'b: 't,
            Self: 't,
        {
            self.inner.put_multipart_opts(location, opts)
        }
        fn get_opts<'a, 'b, 't>(
            &'a self,
            location: &'b object_store::path::Path,
            options: object_store::GetOptions,
        ) -> futures::future::BoxFuture<'t, object_store::Result<object_store::GetResult>>
        where
            'a: 't,
            'b: 't,
            Self: 't,
        {
            if location.as_ref().contains("/probes/") && Self::take(&self.gets) {
                return Box::pin(std::future::ready(Err(Self::error())));
            }
            self.inner.get_opts(location, options)
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            if Self::take(&self.lists) {
                return futures::stream::once(std::future::ready(Err(Self::error()))).boxed();
            }
            self.inner.list(prefix)
        }
        fn list_with_delimiter<'a, 'b, 't>(
            &'a self,
            prefix: Option<&'b object_store::path::Path>,
        ) -> futures::future::BoxFuture<'t, object_store::Result<object_store::ListResult>>
        where
            'a: 't,
            'b: 't,
            Self: 't,
        {
            self.inner.list_with_delimiter(prefix)
        }
        fn copy_opts<'a, 'b, 'c, 't>(
            &'a self,
            from: &'b object_store::path::Path,
            to: &'c object_store::path::Path,
            options: object_store::CopyOptions,
        ) -> futures::future::BoxFuture<'t, object_store::Result<()>>
        where
            'a: 't,
            'b: 't,
            'c: 't,
            Self: 't,
        {
            self.inner.copy_opts(from, to, options)
        }
    }

    /// Probe records that cannot be read for a moment mean a build without
    /// the cache, not a namespace of its own that later builds might prefer
    /// to the model's established one (dropping the index's path map there).
    #[tokio::test]
    async fn unreadable_probe_records_mean_no_cache_and_no_new_namespace() {
        let flaky = Arc::new(Flaky::default());
        let store = Store::from_backend(flaky.clone(), "", "flaky://");
        let hashes = [text_hash("one")];
        let vectors = vec![vec![1.0, 0.0, 0.0, 0.0]];
        let files = [file("a.py", "v1", 0..1)];
        let established = cache_for(&store, "idx", salted(1, 0.0)).await;
        remember(&established, &files, &[true], &hashes, &vectors).await;

        // Float noise: a new record would get another name than the first.
        let noisy = || salted(1, 1e-3);
        for (what, counter) in [("a listing", &flaky.lists), ("a read", &flaky.gets)] {
            counter.store(1, std::sync::atomic::Ordering::SeqCst);
            let cache = try_cache_for(&store, "idx", noisy()).await;
            assert!(cache.is_none(), "{what} failed");
        }
        let records = store.list(EMBED_PROBES_DIR).await.unwrap();
        assert_eq!(records.len(), 1, "no record for a namespace nobody uses: {records:?}");
        let again = cache_for(&store, "idx", noisy()).await;
        assert_eq!(again.model, established.model);
        assert_eq!(again.recall(&files).await.present.len(), 1);
    }

    /// Two records of one model (two first builds at once): every later
    /// build takes the older, whatever the names, so they converge on it.
    #[tokio::test]
    async fn the_oldest_matching_probe_record_names_the_namespace() {
        let store = Store::open("memory://embed-cache-oldest").unwrap();
        let first = cache_for(&store, "idx", salted(1, 0.0)).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let embedder = salted(1, 1e-3);
        let fingerprint = Fingerprint::of(&*embedder).unwrap();
        let record = ProbeRecord {
            embedder: embedder.id().to_string(),
            probe: fingerprint.probe.clone(),
        };
        // Sorts before any other name, but was written later.
        let younger = embed_probe_key(&fingerprint.declared, &"0".repeat(32));
        store
            .put(&younger, Bytes::from(serde_json::to_vec(&record).unwrap()))
            .await
            .unwrap();
        assert_eq!(cache_for(&store, "idx", embedder).await.model, first.model);
    }

    /// Without a fingerprint no cached vector is known to fit: no cache.
    #[tokio::test]
    async fn an_embedder_that_fails_the_probe_gets_no_cache() {
        struct Down;
        impl Embedder for Down {
            fn id(&self) -> &str {
                "down"
            }
            fn dimension(&self) -> usize {
                4
            }
            fn embed(&self, _: &[&str]) -> Result<Vec<Vec<f32>>, crate::embed::EmbedError> {
                Err(crate::embed::EmbedError::TaskLost("test"))
            }
        }
        let store = Store::open("memory://embed-cache-down").unwrap();
        assert!(try_cache_for(&store, "idx", Arc::new(Down)).await.is_none());
    }

    #[tokio::test]
    async fn a_changed_file_reuses_its_unchanged_chunks() {
        let store = Store::open("memory://embed-cache-unit").unwrap();
        let c = cache(&store);
        let hashes = [text_hash("one"), text_hash("two"), text_hash("three")];
        let vectors = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.6, 0.8]];
        let files = [file("a.py", "v1", 0..2), file("b.py", "same", 2..3)];

        let first = c.recall(&files).await;
        assert!(first.vectors.is_empty() && first.present.is_empty());
        assert_eq!(remember(&c, &files, &[true, true], &hashes, &vectors).await, 2);

        // a.py changed (new text), b.py did not: b.py's pack is found as is,
        // and a.py's old pack still offers its chunk vectors by text hash.
        let files2 = [file("a.py", "v2", 0..2), file("b.py", "same", 2..3)];
        let second = c.recall(&files2).await;
        assert_eq!(second.present, HashSet::from(["b.py".to_string()]));
        assert_eq!(second.vectors.len(), 3);
        assert_eq!(second.vectors[&hashes[1]], vectors[1]);

        // Another index of the same store (another branch of the repository)
        // shares the unchanged file's pack, and a.py's chunks through the
        // pack the store last wrote for that path.
        let other = EmbedCache::new(store.clone(), IndexId::new("other").unwrap(), "test-embedder", 2);
        let shared = other.recall(&files2).await;
        assert_eq!(shared.present, HashSet::from(["b.py".to_string()]));
        assert_eq!(shared.vectors.len(), 3);
        assert_eq!(shared.vectors[&hashes[0]], vectors[0]);

        // A damaged pointer costs a miss, not the build.
        let latest = other.latest_key("a.py");
        store
            .put(&latest, Bytes::from_static(b"../../etc/passwd"))
            .await
            .unwrap();
        assert_eq!(other.recall(&files2).await.vectors.len(), 1);

        // A different embedder never sees these vectors.
        let foreign = EmbedCache::new(store, IndexId::new("idx").unwrap(), "another-model", 2);
        assert!(foreign.recall(&files2).await.vectors.is_empty());
    }

    #[tokio::test]
    async fn prune_removes_only_old_packs_no_path_map_names() {
        let store = Store::open("memory://embed-cache-prune").unwrap();
        let c = cache(&store);
        let hashes = [text_hash("one"), text_hash("two")];
        let vectors = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let v1 = [file("a.py", "v1", 0..1), file("b.py", "same", 1..2)];
        remember(&c, &v1, &[true, true], &hashes, &vectors).await;
        // a.py changes: its v1 pack is no longer named by the path map.
        let v2 = [file("a.py", "v2", 0..1), file("b.py", "same", 1..2)];
        remember(&c, &v2, &[true, false], &hashes, &vectors).await;
        // A second index names b.py's pack too; a third was deleted, leaving its pack.
        let other = EmbedCache::new(store.clone(), IndexId::new("other").unwrap(), "test-embedder", 2);
        remember(&other, &v2[1..], &[false], &hashes, &vectors).await;
        let gone = EmbedCache::new(store.clone(), IndexId::new("gone").unwrap(), "test-embedder", 2);
        remember(&gone, &[file("c.py", "only here", 0..1)], &[true], &hashes, &vectors).await;
        crate::storage::publish::delete_index(&store, &IndexId::new("gone").unwrap())
            .await
            .unwrap();

        // Everything is young: nothing goes, the two orphans are counted.
        let hour = std::time::Duration::from_secs(3600);
        let young = prune(&store, hour, false).await.unwrap();
        assert_eq!(
            (young.packs, young.referenced, young.young, young.removed),
            (4, 2, 2, 0)
        );

        let dry = prune(&store, std::time::Duration::ZERO, true).await.unwrap();
        assert_eq!((dry.removed, dry.young), (2, 0));
        assert_eq!(
            prune(&store, hour, false).await.unwrap().packs,
            4,
            "a dry run deletes nothing"
        );

        let done = prune(&store, std::time::Duration::ZERO, false).await.unwrap();
        assert_eq!((done.removed, done.referenced), (2, 2));
        assert!(done.removed_bytes > 0 && done.removed_bytes < done.bytes);
        // The packs still named are intact: an unchanged rebuild reuses both files.
        let again = c.recall(&v2).await;
        assert_eq!(again.present.len(), 2);
        assert_eq!(
            prune(&store, std::time::Duration::ZERO, false).await.unwrap().removed,
            0
        );
    }

    #[tokio::test]
    async fn an_unreadable_path_map_stops_the_prune_before_any_delete() {
        let store = Store::open("memory://embed-cache-prune-bad").unwrap();
        let c = cache(&store);
        let hashes = [text_hash("one")];
        let vectors = vec![vec![1.0, 0.0]];
        remember(&c, &[file("a.py", "v1", 0..1)], &[true], &hashes, &vectors).await;
        remember(&c, &[file("a.py", "v2", 0..1)], &[true], &hashes, &vectors).await;
        let map = embed_paths_key(&IndexId::new("idx").unwrap(), &c.model);
        store.put(&map, Bytes::from_static(b"{not json")).await.unwrap();

        let err = prune(&store, std::time::Duration::ZERO, false).await.unwrap_err();
        assert!(matches!(err, PruneError::PathMap { .. }), "{err}");
        let packs = store.list(EMBED_CACHE_DIR).await.unwrap();
        assert_eq!(
            packs.iter().filter(|o| o.key.ends_with(".vec")).count(),
            2,
            "nothing deleted"
        );
    }
}
