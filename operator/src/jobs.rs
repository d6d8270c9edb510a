//! Build Jobs: one `batch/v1` Job per (source, settings, retry) combination.
//!
//! The Job name is derived deterministically from what it builds, so a
//! reconcile that runs twice (or after an operator restart) finds the Job it
//! already created instead of starting a second build, and a failed build is
//! not retried until its inputs change or `resetGeneration` is bumped.

use crate::crd::{Index, IndexSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, LocalObjectReference,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, SecretEnvSource, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Label selecting every Job this operator creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "trusty-operator");
pub const INDEX_LABEL: &str = "search.trusty.dev/index";
/// Namespace of the Index a build Job belongs to (Jobs may run elsewhere).
pub const INDEX_NAMESPACE_LABEL: &str = "search.trusty.dev/index-namespace";
/// Annotation carrying the source hash a Job builds.
pub const SOURCE_HASH_ANNOTATION: &str = "search.trusty.dev/source-hash";
/// Annotation carrying the uid of the Index a Job builds for: an Index
/// deleted and created again has the same name and a new uid.
pub const INDEX_UID_ANNOTATION: &str = "search.trusty.dev/index-uid";

const BACKOFF_LIMIT: i32 = 2;
const TTL_AFTER_FINISHED: i32 = 24 * 3600;
/// Seconds a build Job may run before it fails (`DeadlineExceeded`).
pub const ACTIVE_DEADLINE: i64 = 6 * 3600;
/// How long a build Job may wait for its pod to start running before the
/// Index says so ([`pod_not_started`]): long enough for a slow image pull or
/// a node scale-up, far shorter than [`ACTIVE_DEADLINE`], the only thing that
/// ends a Job whose pod never starts (such pods never count as failed).
pub const BUILD_PENDING_AFTER: std::time::Duration = std::time::Duration::from_secs(5 * 60);
const GIT_WORKDIR: &str = "/work/src";
const VOLUME_MOUNT: &str = "/source";

/// Cluster-wide settings every build Job shares.
/// Pod settings of build Jobs that belong to the cluster, not the Index:
/// resources, placement, pull secrets, service account, and security
/// contexts (the defaults meet the `restricted` Pod Security profile).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildPod {
    #[serde(default)]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default)]
    pub affinity: Option<Affinity>,
    #[serde(default)]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    #[serde(default)]
    pub service_account_name: Option<String>,
    #[serde(default)]
    pub pod_security_context: Option<PodSecurityContext>,
    #[serde(default)]
    pub container_security_context: Option<SecurityContext>,
    /// Extra volumes, e.g. the store's GCS key Secret.
    #[serde(default)]
    pub volumes: Option<Vec<Volume>>,
    /// Where the extra volumes are mounted in the build container.
    #[serde(default)]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    /// Extra labels of build pods (e.g. `azure.workload.identity/use`, which
    /// that webhook requires); the operator's own labels win a clash.
    #[serde(default)]
    pub pod_labels: Option<BTreeMap<String, String>>,
    /// Extra annotations of build pods.
    #[serde(default)]
    pub pod_annotations: Option<BTreeMap<String, String>>,
}

/// Non-root, no privilege escalation, no capabilities, RuntimeDefault
/// seccomp and a read-only root (the build writes to /work and /tmp only).
fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        fs_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[derive(Clone, Debug, Default)]
pub struct BuildConfig {
    pub image: String,
    pub store: String,
    pub store_secret: Option<String>,
    /// Non-secret store settings the builds need as much as the cluster does
    /// (region, endpoint, plain-HTTP opt-in, account names, extra variables).
    pub env: Vec<EnvVar>,
    pub pod: BuildPod,
    /// Store prefixes `objectStore` sources may import from (empty: none).
    pub import_from: Vec<String>,
    /// Where an import stages the version it copies: a volume sized for the
    /// largest index (the chart's `operator.importScratch`), not the small
    /// `/tmp`. The system temporary directory when `None`.
    pub import_dir: Option<std::path::PathBuf>,
    /// Where build Jobs run: the operator's own namespace in the chart, so
    /// the store's write credentials and the build NetworkPolicy live in one
    /// place and tenants need neither. `None`: each Index's own namespace.
    /// Builds from a `volume` source run beside their claim, if at all
    /// (`volume_sources`).
    pub namespace: Option<String>,
    /// Whether, with `namespace` set, Indexes with a `volume` source build in
    /// their own namespace. That takes Job rights in every Index's namespace,
    /// which the chart grants only with `operator.build.volumeSources`;
    /// without them such Indexes are refused, and no Job outside `namespace`
    /// is ever read, watched or created.
    pub volume_sources: bool,
}

impl BuildConfig {
    /// The namespace `index`'s build Job runs in.
    pub fn job_namespace(&self, index: &Index) -> String {
        let own = index.namespace().unwrap_or_default();
        if index.spec.source.volume.is_some() {
            return own;
        }
        self.namespace.clone().unwrap_or(own)
    }

    /// Whether build Jobs may run in an Index's own namespace (and the
    /// operator holds Job rights there): always without a build namespace,
    /// with one only when `volume` sources are allowed.
    fn builds_in_index_namespaces(&self) -> bool {
        self.namespace.is_none() || self.volume_sources
    }

    /// Why `index` is not built: a `volume` source outside the build
    /// namespace while `volume` sources are not allowed. Said in the Index's
    /// status instead of trying a Job the operator's role refuses.
    pub fn refusal(&self, index: &Index) -> Option<String> {
        let own = index.namespace().unwrap_or_default();
        let shared = self.namespace.as_deref()?;
        if index.spec.source.volume.is_none() || self.volume_sources || own == shared {
            return None;
        }
        Some(format!(
            "a volume source builds beside its claim, in this Index's namespace {own}, but this cluster \
             runs builds only in {shared}: its admin can allow volume sources with the chart value \
             operator.build.volumeSources=true (which grants the operator Job rights in Index namespaces; \
             the build also needs the store Secret there), or use a git or objectStore source"
        ))
    }

    /// What an Index says when the API server refused (403) the operator's
    /// work on build Jobs in `namespace`, where `index` builds: which rights
    /// are missing and the chart value that grants them. `error` is the API
    /// server's own message.
    pub fn forbidden(&self, index: &Index, namespace: &str, error: &str) -> String {
        let how = if index.spec.source.volume.is_some() && self.namespace.as_deref() != Some(namespace) {
            "volume sources build in the Index's own namespace: the chart value \
             operator.build.volumeSources=true grants the operator Job rights there"
                .to_string()
        } else if self.namespace.is_none() {
            "builds run in each Index's namespace: with operator.build.inIndexNamespace=true the chart \
             grants the operator Job rights in operator.watchNamespace (every namespace when it is empty)"
                .to_string()
        } else {
            format!(
                "builds run in {namespace}, where the chart grants them with the Role and RoleBinding \
                 <fullname>-operator-jobs: check that both exist"
            )
        };
        format!(
            "the operator may not run build Jobs in namespace {namespace} ({error}); it needs get, list, \
             watch, create and delete on jobs and list on pods there: {how}"
        )
    }

    /// Every namespace a build Job of `index` may be in: where it builds now
    /// first, then where it would with the other kind of source, since a
    /// source changed from git to a volume (or back) leaves its Job there.
    /// Only namespaces where builds may run: the others the operator may not
    /// read.
    pub fn job_namespaces(&self, index: &Index) -> Vec<String> {
        let own = index.namespace().unwrap_or_default();
        let mut candidates = Vec::new();
        if self.builds_in_index_namespaces() {
            candidates.extend([self.job_namespace(index), own]);
        }
        candidates.extend(self.namespace.clone());
        let mut namespaces: Vec<String> = Vec::new();
        for ns in candidates {
            if !namespaces.contains(&ns) {
                namespaces.push(ns);
            }
        }
        namespaces
    }

    /// The namespaces whose build Jobs the controller watches when it
    /// watches Indexes in `watch` (`None`: all namespaces); `None` for all.
    pub fn watched_job_namespaces(&self, watch: Option<&str>) -> Option<Vec<String>> {
        let mut namespaces = Vec::new();
        if self.builds_in_index_namespaces() {
            namespaces.push(watch?.to_string());
        }
        if let Some(ns) = &self.namespace
            && !namespaces.contains(ns)
        {
            namespaces.push(ns.clone());
        }
        Some(namespaces)
    }
}

/// Hash of everything that changes the built index: source and indexing
/// settings, but not replicas, refresh interval, reset generation or deletion
/// policy (those change how the index is served or managed, not its content).
pub fn source_hash(spec: &IndexSpec) -> String {
    let material = json!({
        "source": spec.source,
        "include": spec.include,
        "exclude": spec.exclude,
        "languages": spec.languages,
        "embedder": spec.embedder,
        "lexicalOnly": spec.lexical_only,
    });
    // serde_json maps are sorted (no preserve_order feature), so this is canonical.
    hex::encode(Sha256::digest(material.to_string().as_bytes()))[..16].to_string()
}

/// Deterministic Job name: `<index>-<10 hex>` where the hash covers the source
/// hash, the reset generation (a bump retries a failed build) and a refresh
/// token (the previous build time when a git refresh is due).
///
/// Job names become a pod label value, so the whole name stays within 63 characters.
pub fn job_name(index_name: &str, source_hash: &str, reset_generation: i64, refresh_token: &str) -> String {
    let key = format!("{source_hash}/{reset_generation}/{refresh_token}");
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    // A DNS label: index ids may also contain '.' and '_'.
    let mut base: String = index_name
        .chars()
        .take(63 - 11)
        .map(|c| if c == '.' || c == '_' { '-' } else { c })
        .collect();
    while base.ends_with('-') {
        base.pop();
    }
    format!("{base}-{}", &digest[..10])
}

/// Human-readable description of what a build reads.
pub fn source_revision(spec: &IndexSpec) -> String {
    let s = &spec.source;
    if let Some(git) = &s.git {
        format!("git {}@{}", git.url, git.git_ref.as_deref().unwrap_or("HEAD"))
    } else if let Some(v) = &s.volume {
        format!("volume {}:/{}", v.claim_name, v.path.as_deref().unwrap_or(""))
    } else if let Some(o) = &s.object_store {
        format!("objectStore {}", o.prefix)
    } else {
        "none".into()
    }
}

/// Arguments of `trusty-search index build` for this Index.
pub fn build_args(index: &Index, id: &str, store: &str) -> Vec<String> {
    let spec = &index.spec;
    let mut args = vec!["index".to_string(), "build".to_string()];
    if let Some(git) = &spec.source.git {
        args.push(GIT_WORKDIR.into());
        args.extend(["--id".into(), id.into(), "--store".into(), store.into()]);
        args.extend(["--git-url".into(), git.url.clone()]);
        if let Some(r) = &git.git_ref {
            args.extend(["--git-ref".into(), r.clone()]);
        }
    } else {
        let path = spec
            .source
            .volume
            .as_ref()
            .and_then(|v| v.path.as_deref())
            .unwrap_or("");
        let path = path.trim_matches('/');
        args.push(if path.is_empty() {
            VOLUME_MOUNT.to_string()
        } else {
            format!("{VOLUME_MOUNT}/{path}")
        });
        args.extend(["--id".into(), id.into(), "--store".into(), store.into()]);
    }
    for g in &spec.include {
        args.extend(["--include".into(), g.clone()]);
    }
    for g in &spec.exclude {
        args.extend(["--exclude".into(), g.clone()]);
    }
    for l in &spec.languages {
        args.extend(["--lang".into(), l.clone()]);
    }
    if spec.lexical_only {
        args.extend(["--embedder".into(), "none".into()]);
    } else if let Some(e) = &spec.embedder {
        args.extend(["--embedder".into(), e.kind.as_str().into()]);
        if let Some(u) = &e.url {
            args.extend(["--embedder-url".into(), u.clone()]);
        }
        if let Some(m) = &e.model {
            args.extend(["--embedder-model".into(), m.clone()]);
        }
    }
    // A first build of an empty source serves an empty index; once a version
    // serves, a rebuild that finds nothing (an empty volume mounted by
    // mistake, filters that now match nothing) fails and the old one stays.
    let served = index.status.as_ref().is_some_and(|s| s.current_version.is_some());
    if !served {
        args.push("--allow-empty".into());
    }
    args
}

/// The build Job for `index`, labelled with the Index it builds (its changes
/// trigger a reconcile of that Index); owned by it (deleted with it) when it
/// runs in the Index's own namespace, since owner references cannot cross
/// namespaces.
pub fn build_job(index: &Index, id: &str, name: &str, source_hash: &str, cfg: &BuildConfig) -> Job {
    let namespace = cfg.job_namespace(index);
    let same_namespace = index.namespace().as_deref() == Some(namespace.as_str());
    let mut labels = BTreeMap::new();
    labels.insert(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string());
    labels.insert("app.kubernetes.io/name".into(), "trusty-search".into());
    labels.insert("app.kubernetes.io/component".into(), "index-build".into());
    labels.insert(INDEX_LABEL.into(), id.to_string());
    labels.insert(INDEX_NAMESPACE_LABEL.into(), index.namespace().unwrap_or_default());
    let mut pod_labels = cfg.pod.pod_labels.clone().unwrap_or_default();
    pod_labels.extend(labels.clone());
    let mut annotations = BTreeMap::from([(SOURCE_HASH_ANNOTATION.to_string(), source_hash.to_string())]);
    if let Some(uid) = &index.metadata.uid {
        annotations.insert(INDEX_UID_ANNOTATION.to_string(), uid.clone());
    }

    let mut volumes = vec![Volume {
        name: "work".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    // The root filesystem is read-only: temporary files go to their own emptyDir.
    volumes.push(Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    let mut mounts = vec![
        VolumeMount {
            name: "work".into(),
            mount_path: "/work".into(),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    ];
    if let Some(v) = &index.spec.source.volume {
        volumes.push(Volume {
            name: "source".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: v.claim_name.clone(),
                read_only: Some(true),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "source".into(),
            mount_path: VOLUME_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    volumes.extend(cfg.pod.volumes.iter().flatten().cloned());
    mounts.extend(cfg.pod.volume_mounts.iter().flatten().cloned());
    let env_from = cfg.store_secret.as_ref().map(|s| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: s.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }]
    });

    // The cluster's embedder settings apply only to an Index that names
    // none: one that does (or is lexical-only) must not pick up, say, the
    // cluster's model name for its own server.
    let own_embedder = index.spec.lexical_only || index.spec.embedder.is_some();
    let env = cfg
        .env
        .iter()
        .filter(|e| !(own_embedder && (e.name.starts_with("TRUSTY_EMBEDDER") || e.name == "TRUSTY_MODEL_DIR")))
        .cloned();
    let container = Container {
        name: "build".into(),
        image: Some(cfg.image.clone()),
        args: Some(build_args(index, id, &cfg.store)),
        env_from,
        env: Some(
            std::iter::once(EnvVar {
                name: "HOME".into(),
                value: Some("/work".into()),
                ..Default::default()
            })
            .chain(env)
            .collect(),
        ),
        volume_mounts: Some(mounts),
        security_context: Some(
            cfg.pod
                .container_security_context
                .clone()
                .unwrap_or_else(restricted_container),
        ),
        resources: cfg.pod.resources.clone(),
        // A failing build's last log lines become its termination message,
        // which the operator copies into the Index's status.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };

    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            owner_references: if same_namespace {
                index.controller_owner_ref(&()).map(|o| vec![o])
            } else {
                None
            },
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            ttl_seconds_after_finished: Some(TTL_AFTER_FINISHED),
            active_deadline_seconds: Some(ACTIVE_DEADLINE),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: cfg.pod.pod_annotations.clone(),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    security_context: Some(cfg.pod.pod_security_context.clone().unwrap_or_else(restricted_pod)),
                    node_selector: cfg.pod.node_selector.clone(),
                    tolerations: cfg.pod.tolerations.clone(),
                    affinity: cfg.pod.affinity.clone(),
                    image_pull_secrets: cfg.pod.image_pull_secrets.clone(),
                    service_account_name: cfg.pod.service_account_name.clone(),
                    // Builds call no Kubernetes API.
                    automount_service_account_token: Some(false),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Where a build Job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Running,
    Succeeded {
        completion_time: Option<k8s_openapi::jiff::Timestamp>,
    },
    Failed {
        message: String,
    },
}

/// Reads the Job's terminal conditions (`Complete` / `Failed`), falling back to
/// the counters for API servers that do not set conditions.
pub fn job_outcome(job: &Job) -> JobOutcome {
    let Some(status) = &job.status else {
        return JobOutcome::Running;
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let cond = |t: &str| conditions.iter().find(|c| c.type_ == t && c.status == "True");
    if let Some(c) = cond("Failed") {
        let message = match (&c.reason, &c.message) {
            (Some(r), Some(m)) => format!("{r}: {m}"),
            (Some(r), None) => r.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => "build Job failed".into(),
        };
        return JobOutcome::Failed { message };
    }
    if cond("Complete").is_some() || status.succeeded.unwrap_or(0) > 0 {
        return JobOutcome::Succeeded {
            completion_time: status.completion_time.as_ref().map(|t| t.0),
        };
    }
    let backoff = job.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(BACKOFF_LIMIT);
    if status.failed.unwrap_or(0) > backoff {
        return JobOutcome::Failed {
            message: format!("{} build pods failed", status.failed.unwrap_or(0)),
        };
    }
    JobOutcome::Running
}

/// When a build Job still running at `now` started, if its pod has not
/// started running in the `after` since: `active > 0` (a Pending pod counts
/// as active) with `ready == 0`. The build container has no readiness probe,
/// so its pod is Ready as soon as it runs; what holds one back longer is an
/// image that cannot be pulled, a Secret or ConfigMap that is missing, no
/// node that fits, or a volume attached elsewhere.
///
/// Never stuck: a Job without `ready` (API servers before 1.24 do not report
/// it), without `startTime`, or that lost a pod already (`failed > 0`:
/// `startTime` dates the Job, not the retry pod waiting now).
pub fn pod_not_started(
    job: &Job,
    now: k8s_openapi::jiff::Timestamp,
    after: std::time::Duration,
) -> Option<k8s_openapi::jiff::Timestamp> {
    let status = job.status.as_ref()?;
    if job_outcome(job) != JobOutcome::Running
        || status.active.unwrap_or(0) == 0
        || status.ready != Some(0)
        || status.failed.unwrap_or(0) > 0
    {
        return None;
    }
    let started = status.start_time.as_ref()?.0;
    let waited = std::time::Duration::try_from(now.duration_since(started)).ok()?;
    (waited >= after).then_some(started)
}

/// The source hash a Job was created for.
pub fn job_source_hash(job: &Job) -> Option<&str> {
    job.annotations().get(SOURCE_HASH_ANNOTATION).map(String::as_str)
}

pub fn job_index_uid(job: &Job) -> Option<&str> {
    job.annotations().get(INDEX_UID_ANNOTATION).map(String::as_str)
}

/// Parses a refresh interval such as "90m" or "1h30m".
pub fn parse_interval(s: &str) -> Option<std::time::Duration> {
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() || total == 0 {
        return None;
    }
    Some(std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Embedder, EmbedderKind, GitSource, Source, VolumeSource};

    fn git_index(name: &str) -> Index {
        let spec: IndexSpec = serde_json::from_value(json!({
            "source": {"git": {"url": "https://github.com/tokio-rs/tokio", "ref": "v1.40.0"}},
            "include": ["src/**"], "exclude": ["**/tests/**"], "languages": ["rust"],
            "embedder": {"kind": "http", "url": "http://embed:8080", "model": "bge-small"},
        }))
        .unwrap();
        let mut i = Index::new(name, spec);
        i.metadata.namespace = Some("search".into());
        i.metadata.uid = Some("uid-1".into());
        i
    }

    #[test]
    fn only_a_first_build_may_publish_an_empty_index() {
        let mut i = git_index("tokio");
        assert!(build_args(&i, "tokio", "s3://b").contains(&"--allow-empty".to_string()));
        i.status = Some(crate::crd::IndexStatus {
            current_version: Some("v1".into()),
            ..Default::default()
        });
        assert!(!build_args(&i, "tokio", "s3://b").contains(&"--allow-empty".to_string()));
    }

    #[test]
    fn hash_changes_with_content_settings_only() {
        let a = git_index("tokio");
        let h = source_hash(&a.spec);
        let mut b = a.spec.clone();
        b.replicas = 3;
        b.reset_generation = 7;
        b.refresh_interval = Some("1h".into());
        assert_eq!(source_hash(&b), h, "serving settings must not trigger a rebuild");
        b.source.git = Some(GitSource {
            url: "https://github.com/tokio-rs/tokio".into(),
            git_ref: Some("v1.41.0".into()),
        });
        assert_ne!(source_hash(&b), h);
        let mut c = a.spec.clone();
        c.exclude.push("benches/**".into());
        assert_ne!(source_hash(&c), h);
    }

    #[test]
    fn job_name_is_deterministic_short_and_varies_with_retry() {
        let n1 = job_name("tokio", "abc", 0, "");
        assert_eq!(n1, job_name("tokio", "abc", 0, ""));
        assert_ne!(n1, job_name("tokio", "abc", 1, ""));
        assert_ne!(n1, job_name("tokio", "abc", 0, "2024-01-01T00:00:00Z"));
        assert!(n1.starts_with("tokio-"));
        let long = job_name(&"a".repeat(63), "abc", 0, "");
        assert!(long.len() <= 63, "{}", long.len());
        let dotted = job_name(&format!("{}.x", "b".repeat(51)), "abc", 0, "");
        assert!(!dotted.contains('.') && !dotted.contains("--"), "{dotted}");
    }

    #[test]
    fn jobs_run_in_the_build_namespace_except_beside_a_claim() {
        let cfg = BuildConfig {
            image: "img".into(),
            store: "s3://bucket/trusty".into(),
            namespace: Some("trusty-system".into()),
            ..Default::default()
        };
        let git = build_job(&git_index("tokio"), "tokio", "tokio-1", "h", &cfg);
        assert_eq!(git.metadata.namespace.as_deref(), Some("trusty-system"));
        assert!(
            git.metadata.owner_references.is_none(),
            "owner references cannot cross namespaces"
        );
        let labels = git.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[INDEX_LABEL], "tokio");
        assert_eq!(labels[INDEX_NAMESPACE_LABEL], "search");

        let mut vol = git_index("app");
        vol.spec.source = serde_json::from_value(json!({"volume": {"claimName": "code", "path": "app"}})).unwrap();
        let job = build_job(&vol, "app", "app-1", "h", &cfg);
        assert_eq!(
            job.metadata.namespace.as_deref(),
            Some("search"),
            "a claim mounts only in its namespace"
        );
        assert_eq!(job.metadata.owner_references.as_ref().map(Vec::len), Some(1));

        let per_index = BuildConfig { namespace: None, ..cfg };
        let job = build_job(&git_index("tokio"), "tokio", "tokio-1", "h", &per_index);
        assert_eq!(job.metadata.namespace.as_deref(), Some("search"));
        assert_eq!(job.metadata.owner_references.as_ref().map(Vec::len), Some(1));
    }

    fn volume_index(name: &str, namespace: &str) -> Index {
        let mut i = git_index(name);
        i.spec.source = serde_json::from_value(json!({"volume": {"claimName": "code"}})).unwrap();
        i.metadata.namespace = Some(namespace.into());
        i
    }

    /// Without `volume_sources` the operator never reaches for a Job outside
    /// the build namespace (its role would refuse), and refuses a volume
    /// source there with the chart value that allows it.
    #[test]
    fn jobs_stay_in_the_build_namespace_unless_volume_sources_are_allowed() {
        let shared = BuildConfig {
            namespace: Some("trusty-system".into()),
            ..Default::default()
        };
        let (git, vol) = (git_index("tokio"), volume_index("app", "search"));
        assert_eq!(shared.job_namespaces(&git), ["trusty-system"]);
        assert_eq!(shared.job_namespaces(&vol), ["trusty-system"]);
        assert_eq!(shared.watched_job_namespaces(None), Some(vec!["trusty-system".into()]));
        assert_eq!(
            shared.watched_job_namespaces(Some("search")),
            Some(vec!["trusty-system".into()])
        );
        assert_eq!(shared.refusal(&git), None);
        let refusal = shared.refusal(&vol).expect("a volume source is refused");
        assert!(refusal.contains("operator.build.volumeSources=true"), "{refusal}");
        assert!(refusal.contains("namespace search"), "{refusal}");
        assert_eq!(
            shared.refusal(&volume_index("app", "trusty-system")),
            None,
            "beside the builds a claim needs no other rights"
        );

        let allowed = BuildConfig {
            volume_sources: true,
            ..shared
        };
        assert_eq!(allowed.refusal(&vol), None);
        assert_eq!(allowed.job_namespaces(&vol), ["search", "trusty-system"]);
        assert_eq!(allowed.job_namespaces(&git), ["trusty-system", "search"]);
        assert_eq!(allowed.watched_job_namespaces(None), None, "every namespace");
        assert_eq!(
            allowed.watched_job_namespaces(Some("search")),
            Some(vec!["search".into(), "trusty-system".into()])
        );

        let per_index = BuildConfig::default();
        assert_eq!(per_index.refusal(&vol), None);
        assert_eq!(per_index.job_namespaces(&git), ["search"]);
        assert_eq!(per_index.watched_job_namespaces(None), None);
        assert_eq!(
            per_index.watched_job_namespaces(Some("search")),
            Some(vec!["search".into()])
        );
    }

    #[test]
    fn a_refused_job_says_which_chart_value_grants_the_right() {
        let error = "jobs.batch is forbidden";
        let allowed = BuildConfig {
            namespace: Some("trusty-system".into()),
            volume_sources: true,
            ..Default::default()
        };
        let said = allowed.forbidden(&volume_index("app", "search"), "search", error);
        assert!(said.starts_with("the operator may not run build Jobs in namespace search (jobs.batch is forbidden)"));
        assert!(said.contains("operator.build.volumeSources=true"), "{said}");
        let said = allowed.forbidden(&git_index("tokio"), "trusty-system", error);
        assert!(said.contains("<fullname>-operator-jobs"), "{said}");
        let said = BuildConfig::default().forbidden(&git_index("tokio"), "search", error);
        assert!(said.contains("operator.build.inIndexNamespace=true"), "{said}");
    }

    #[test]
    fn git_job_runs_the_build_command() {
        let idx = git_index("tokio");
        let cfg = BuildConfig {
            image: "ghcr.io/trusty/trusty-search:1".into(),
            store: "s3://bucket/trusty".into(),
            store_secret: Some("store-creds".into()),
            // The chart's embedder settings, which this Index's own replace.
            env: [
                "AWS_REGION=eu-west-3",
                "TRUSTY_EMBEDDER=http",
                "TRUSTY_EMBEDDER_MODEL=cluster-model",
            ]
            .into_iter()
            .map(|kv| {
                let (name, value) = kv.split_once('=').unwrap();
                EnvVar {
                    name: name.into(),
                    value: Some(value.into()),
                    ..Default::default()
                }
            })
            .collect(),
            // What the chart passes (TRUSTY_BUILD_POD).
            pod: serde_json::from_value(json!({
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
                "nodeSelector": {"pool": "builds"},
                "imagePullSecrets": [{"name": "registry"}],
                "serviceAccountName": "indexer",
                "volumes": [{"name": "gcs-credentials", "secret": {"secretName": "gcs-key"}}],
                "volumeMounts": [{"name": "gcs-credentials", "mountPath": "/var/run/secrets/gcs", "readOnly": true}],
                "podLabels": {"azure.workload.identity/use": "true", "app.kubernetes.io/component": "mine"},
                "podAnnotations": {"team": "search"},
            }))
            .unwrap(),
            import_from: Vec::new(),
            import_dir: None,
            namespace: None,
            volume_sources: false,
        };
        let job = build_job(&idx, "tokio", "tokio-0123456789", "hash", &cfg);
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let volumes: Vec<&str> = pod.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, ["work", "tmp", "gcs-credentials"]);
        let mounts: Vec<&str> = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/work", "/tmp", "/var/run/secrets/gcs"]);
        assert_eq!(job.metadata.namespace.as_deref(), Some("search"));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("Index", "tokio", Some(true))
        );
        assert_eq!(job.annotations().get(SOURCE_HASH_ANNOTATION).unwrap(), "hash");
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        assert!(spec.ttl_seconds_after_finished.is_some());
        let c = &spec.template.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/trusty/trusty-search:1"));
        assert_eq!(
            c.args.as_ref().unwrap().join(" "),
            "index build /work/src --id tokio --store s3://bucket/trusty --git-url https://github.com/tokio-rs/tokio \
             --git-ref v1.40.0 --include src/** --exclude **/tests/** --lang rust --embedder http \
             --embedder-url http://embed:8080 --embedder-model bge-small --allow-empty"
        );
        let env_from = c.env_from.as_ref().unwrap();
        assert_eq!(env_from[0].secret_ref.as_ref().unwrap().name, "store-creds");
        let env: Vec<(&str, Option<&str>)> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref()))
            .collect();
        assert_eq!(env, [("HOME", Some("/work")), ("AWS_REGION", Some("eu-west-3"))]);
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "builds");
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "registry");
        assert_eq!(pod.service_account_name.as_deref(), Some("indexer"));
        let meta = spec.template.metadata.as_ref().unwrap();
        let pod_labels = meta.labels.as_ref().unwrap();
        assert_eq!(pod_labels["azure.workload.identity/use"], "true");
        assert_eq!(
            pod_labels["app.kubernetes.io/component"], "index-build",
            "the operator's own labels win"
        );
        assert_eq!(pod_labels[INDEX_LABEL], "tokio");
        assert_eq!(meta.annotations.as_ref().unwrap()["team"], "search");
        assert!(
            !job.labels().contains_key("azure.workload.identity/use"),
            "pod labels stay on the pod"
        );
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["memory"].0, "4Gi");
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError"),
            "a failed build's log tail reaches the pod's status"
        );
        // Unset security contexts fall back to the restricted defaults.
        assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true));
        assert!(
            serde_json::from_value::<BuildPod>(json!({"hostNetwork": true})).is_err(),
            "unknown settings are refused"
        );
    }

    #[test]
    fn volume_job_mounts_the_claim_and_builds_the_path() {
        let spec = IndexSpec {
            source: Source {
                volume: Some(VolumeSource {
                    claim_name: "code".into(),
                    path: Some("repos/app/".into()),
                }),
                ..Default::default()
            },
            include: vec![],
            exclude: vec![],
            languages: vec![],
            embedder: Some(Embedder {
                kind: EmbedderKind::Minilm,
                url: None,
                model: None,
            }),
            lexical_only: true,
            replicas: 1,
            refresh_interval: None,
            reset_generation: 0,
            deletion_policy: Default::default(),
        };
        let idx = Index::new("app", spec);
        let cfg = BuildConfig {
            image: "img".into(),
            store: "file:///data".into(),
            store_secret: None,
            env: Vec::new(),
            pod: BuildPod::default(),
            import_from: Vec::new(),
            import_dir: None,
            namespace: None,
            volume_sources: false,
        };
        let job = build_job(&idx, "app", "app-1", "h", &cfg);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.args.as_ref().unwrap().join(" "),
            "index build /source/repos/app --id app --store file:///data --embedder none --allow-empty"
        );
        assert!(c.env_from.is_none());
        // The restricted Pod Security profile, with /tmp writable on a read-only root.
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(
            (sc.allow_privilege_escalation, sc.read_only_root_filesystem),
            (Some(false), Some(true))
        );
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        let mounts: Vec<&str> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert!(mounts.contains(&"/tmp") && mounts.contains(&"/work"), "{mounts:?}");
        assert_eq!(pod.automount_service_account_token, Some(false));
        let vol = pod.volumes.unwrap().into_iter().find(|v| v.name == "source").unwrap();
        let pvc = vol.persistent_volume_claim.unwrap();
        assert_eq!((pvc.claim_name.as_str(), pvc.read_only), ("code", Some(true)));
    }

    #[test]
    fn outcome_from_conditions_and_counters() {
        let mut job: Job = serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"active": 1}})).unwrap();
        assert_eq!(job_outcome(&job), JobOutcome::Running);
        job = serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit"}]}}))
        .unwrap();
        assert_eq!(
            job_outcome(&job),
            JobOutcome::Failed {
                message: "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
            }
        );
        job = serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {
            "succeeded": 1, "completionTime": "2024-05-01T10:00:00Z"}}))
        .unwrap();
        assert!(matches!(
            job_outcome(&job),
            JobOutcome::Succeeded {
                completion_time: Some(_)
            }
        ));
    }

    #[test]
    fn a_pod_that_has_not_started_for_a_while_is_reported_and_nothing_else() {
        let t = |s: &str| s.parse::<k8s_openapi::jiff::Timestamp>().unwrap();
        let job = |status: serde_json::Value| -> Job {
            serde_json::from_value(json!({"metadata": {"name": "j"}, "status": status})).unwrap()
        };
        let after = BUILD_PENDING_AFTER;
        let start = "2026-03-01T10:00:00Z";
        let waiting = job(json!({"active": 1, "ready": 0, "startTime": start}));
        let (early, late) = (t("2026-03-01T10:04:59Z"), t("2026-03-01T10:05:00Z"));
        assert_eq!(
            pod_not_started(&waiting, early, after),
            None,
            "a slow pull is not stuck yet"
        );
        assert_eq!(pod_not_started(&waiting, late, after), Some(t(start)));
        assert_eq!(
            pod_not_started(&waiting, t("2026-03-01T15:00:00Z"), after),
            Some(t(start))
        );
        // A clock behind the API server's is not a wait.
        assert_eq!(pod_not_started(&waiting, t("2026-03-01T09:00:00Z"), after), None);

        let never = [
            // Running: its container has no readiness probe, so Ready is running.
            json!({"active": 1, "ready": 1, "startTime": start}),
            // An API server that does not report ready pods (before 1.24).
            json!({"active": 1, "startTime": start}),
            json!({"active": 1, "ready": null, "startTime": start}),
            // No start time, or no pod yet.
            json!({"active": 1, "ready": 0}),
            json!({"ready": 0, "startTime": start}),
            json!({"active": 0, "ready": 0, "startTime": start}),
            // A retry pod: the Job's start time says nothing about its wait.
            json!({"active": 1, "ready": 0, "failed": 1, "startTime": start}),
            // Finished, whatever the counters still say.
            json!({"active": 1, "ready": 0, "startTime": start,
                   "conditions": [{"type": "Complete", "status": "True"}]}),
            json!({"active": 1, "ready": 0, "startTime": start,
                   "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}),
        ];
        for status in never {
            assert_eq!(pod_not_started(&job(status.clone()), late, after), None, "{status}");
        }
        let no_status: Job = serde_json::from_value(json!({"metadata": {"name": "j"}})).unwrap();
        assert_eq!(pod_not_started(&no_status, late, after), None);
    }

    /// [`pod_not_started`] reads `ready == 0` as "not running", which holds
    /// only while nothing else keeps a running build pod from being Ready.
    #[test]
    fn build_pods_are_ready_once_running() {
        let job = build_job(&git_index("tokio"), "tokio", "tokio-1", "h", &BuildConfig::default());
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert!(pod.readiness_gates.is_none());
        assert!(
            pod.init_containers.is_none(),
            "an init container would hold Ready back too"
        );
        for c in &pod.containers {
            assert!(c.readiness_probe.is_none() && c.startup_probe.is_none(), "{}", c.name);
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1h"), Some(std::time::Duration::from_secs(3600)));
        assert_eq!(parse_interval("1h30m"), Some(std::time::Duration::from_secs(5400)));
        assert_eq!(parse_interval("2d"), Some(std::time::Duration::from_secs(172800)));
        for bad in ["", "h", "10", "0s", "5w", "1h 2m"] {
            assert_eq!(parse_interval(bad), None, "{bad}");
        }
    }
}
