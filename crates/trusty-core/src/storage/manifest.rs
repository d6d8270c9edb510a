//! The manifest: what one immutable index version contains and how it was made.
//! A shard trusts nothing it downloads until it matches the manifest.

use serde::{Deserialize, Serialize};

/// Bumped when the bundle layout or any arm's on-disk format changes
/// incompatibly; shards refuse versions they do not understand.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub index_id: String,
    pub version: String,
    /// RFC 3339.
    pub created_at: String,
    pub chunker_version: u32,
    /// `None` for a lexical + graph index.
    pub embedder: Option<EmbedderInfo>,
    pub source: SourceInfo,
    pub counts: Counts,
    pub files: Vec<FileEntry>,
    /// Build settings that shape the content (globs, languages), for provenance.
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// What a version holds, recorded at build time. The API reports the same
/// figures ([`crate::api::IndexCounts`]); the manifest keeps its own type so the
/// stored format never changes because an HTTP body did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub files: u64,
    pub chunks: u64,
    pub skipped_files: u64,
    pub source_bytes: u64,
    pub graph_nodes: u64,
    pub graph_edges: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedderInfo {
    pub id: String,
    pub dimension: usize,
    /// The model's vectors for fixed probe texts, as the build embedded them:
    /// a query embedder with the same id may still run other weights, and
    /// only its own vectors for the same texts tell. `None` in versions built
    /// before it was recorded, which are trusted by id alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Vec<Vec<f32>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Local path the build read (or the clone location).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the version directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The pointer object naming the version readers should use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentPointer {
    pub version: String,
    pub manifest_sha256: String,
}

impl Manifest {
    /// Saturates: sizes come from storage, and an absurd one must read as
    /// too large for any budget, not wrap to a small number.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().fold(0u64, |sum, f| sum.saturating_add(f.size))
    }

    /// Bytes of the file at `path`, or of every file under the directory `path`.
    pub fn bytes_under(&self, path: &str) -> u64 {
        self.files
            .iter()
            .filter(|f| f.path == path || f.path.strip_prefix(path).is_some_and(|rest| rest.starts_with('/')))
            .fold(0u64, |sum, f| sum.saturating_add(f.size))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serialises")
    }
}
