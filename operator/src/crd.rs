//! The `Index` custom resource: the user's intent for one searchable repository.
//!
//! Everything the API server can check on its own is expressed in the schema
//! (ranges, patterns, enums, CEL rules), so a bad Index is refused by `kubectl
//! apply` instead of surfacing later as a failed build. The one rule the schema
//! cannot state without duplicating `IndexId`'s logic — that `metadata.name` is a
//! valid index id — is checked by the reconciler, which reports it as a condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the trusty-search custom resources.
pub const GROUP: &str = "search.trusty.dev";
/// Finalizer that keeps an Index until it is unregistered (and, on `Delete`, its data removed).
pub const FINALIZER: &str = "search.trusty.dev/cleanup";
/// Annotation that, set to `"true"`, lets the finalizer go without router or
/// storage cleanup: the way out when those are gone (an uninstalled release).
pub const SKIP_CLEANUP: &str = "search.trusty.dev/skip-cleanup";

/// Desired state of an `Index`. `metadata.name` is the index id.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "search.trusty.dev",
    version = "v1alpha1",
    kind = "Index",
    plural = "indexes",
    singular = "index",
    shortname = "tsidx",
    namespaced,
    status = "IndexStatus",
    derive = "PartialEq",
    doc = "A code repository indexed by trusty-search. metadata.name is the index id.",
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Version", "type": "string", "jsonPath": ".status.currentVersion"}"#,
    printcolumn = r#"{"name": "Chunks", "type": "integer", "jsonPath": ".status.counts.chunks"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.readyOwners", "description": "owners serving the published version / replicas the router places"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.refreshInterval) || has(self.source.git)")
        .message("refreshInterval only applies to git sources"),
    validation = Rule::new("!(self.lexicalOnly && has(self.embedder) && self.embedder.kind != 'none')")
        .message("lexicalOnly indexes cannot use an embedder; drop embedder or set kind: none")
)]
pub struct IndexSpec {
    /// Where the code comes from. Exactly one of git, objectStore, volume.
    pub source: Source,
    /// Globs of repository-relative paths to index (all files when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Globs of repository-relative paths to skip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Languages to index (all supported languages when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// Embedding model for the vector arm; the build's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder: Option<Embedder>,
    /// Build only the BM25 and graph arms (no vectors).
    #[serde(default)]
    pub lexical_only: bool,
    /// How many shards should serve the index; the router places every index
    /// on its replication factor, so readiness counts at most that many.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,
    /// Rebuild a git source this often, e.g. "30m", "1h", "1d" (never when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h|d))+$"))]
    pub refresh_interval: Option<String>,
    /// Bump to retry a failed build and reset failed shard owners.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub reset_generation: i64,
    /// What deleting the Index does to its data in object storage. Retain (the
    /// default): every version is kept but the index is no longer served
    /// (`CURRENT` moves to `CURRENT.withdrawn`; a prebuilt objectStore index is
    /// left untouched). Delete: every object under `indexes/<id>/` is removed.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_replicas() -> i32 {
    1
}

/// Exactly one source kind must be set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.git), has(self.objectStore), has(self.volume)].filter(x, x).size() == 1")
        .message("exactly one of git, objectStore or volume must be set")
)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeSource>,
}

/// A git repository, cloned by the build Job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// Clone URL (https://, ssh://, git:// or git@host:path).
    #[schemars(regex(pattern = r"^((https?|ssh|git)://\S+|git@[^\s:]+:\S+)$"), length(max = 2048))]
    pub url: String,
    /// Branch, tag or commit; the remote's default branch when absent.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub git_ref: Option<String>,
}

/// An index already published by something else, never built here. In the
/// cluster's own store it is registered as-is; in any other store its current
/// version is copied (checksums verified) into the cluster's store, again
/// whenever that store's `CURRENT` moves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSource {
    /// Store URL holding `indexes/<id>/CURRENT`, e.g. `s3://bucket/trusty`.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9+.-]*://\S+$"), length(max = 2048))]
    pub prefix: String,
}

/// Source code on a PersistentVolumeClaim in the Index's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSource {
    /// The claim, mounted read-only into the build Job.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Directory inside the volume to index (the volume root when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(
        validation = Rule::new("!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')")
            .message("path must be relative to the volume root and must not contain '..'")
    )]
    pub path: Option<String>,
}

/// Embedding model of the vector arm.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.kind != 'http' || has(self.url)").message("embedder kind http needs url")
)]
pub struct Embedder {
    pub kind: EmbedderKind,
    /// Endpoint of an HTTP embedding service (kind: http).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Model name passed to the embedder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    None,
    Minilm,
    Http,
}

impl EmbedderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EmbedderKind::None => "none",
            EmbedderKind::Minilm => "minilm",
            EmbedderKind::Http => "http",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep every version in object storage but stop serving the index
    /// (`CURRENT` moves to `CURRENT.withdrawn`; `trusty-search index rollback`
    /// or a new build serves it again). A prebuilt `objectStore` index is left untouched.
    #[default]
    Retain,
    /// Remove every object under `indexes/<id>/`.
    Delete,
}

/// Lifecycle of an Index as the operator sees it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Phase {
    /// Accepted, nothing built or registered yet.
    #[default]
    Pending,
    /// A build Job is running.
    Building,
    /// Registered with the cluster; not every owner is hot yet.
    Published,
    /// Every owner serves the current version.
    Available,
    /// Some owners failed to load the index, or serve an older version than
    /// the published one because the new one failed to load.
    Degraded,
    /// The build failed or the Index is invalid; needs a spec change or a reset.
    Failed,
}

/// Observed state, written by the operator with server-side apply.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexStatus {
    #[serde(default)]
    pub phase: Phase,
    /// Built, Published, Available, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Version the cluster serves (from the router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// One entry per shard that owns the index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<Owner>,
    /// "owners serving the published version / replicas placed", for the
    /// printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_owners: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset_generation: Option<i64>,
    /// Name of the most recent build Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_build_job: Option<String>,
    /// When the last successful build finished (drives refreshInterval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_build_time: Option<Time>,
    /// Hash of the source and settings of the last successful build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hash: Option<String>,
    /// Human-readable description of what was last built (git URL and ref, volume path, prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub files: i64,
    pub chunks: i64,
}

/// Residency of the index on one owning shard.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub shard: String,
    /// unknown, cold, loading, hot or failed.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_load_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Condition types the operator maintains.
pub mod condition {
    pub const BUILT: &str = "Built";
    pub const PUBLISHED: &str = "Published";
    pub const AVAILABLE: &str = "Available";
    pub const DEGRADED: &str = "Degraded";
}

impl Index {
    /// The source kind, for logs, metrics and job wiring.
    pub fn source_kind(&self) -> &'static str {
        let s = &self.spec.source;
        if s.git.is_some() {
            "git"
        } else if s.object_store.is_some() {
            "objectStore"
        } else if s.volume.is_some() {
            "volume"
        } else {
            "none"
        }
    }
}
