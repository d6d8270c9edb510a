//! The Index reconciler.
//!
//! One pass turns the Index's intent into the cluster's state and reports back:
//! 1. validate `metadata.name` as an index id (reported as a condition, never a crash);
//! 2. build: follow or create the build Job for the current source hash;
//! 3. register the built (or pre-published) index with the router, reload after
//!    a new build, reset owners when `resetGeneration` is bumped;
//! 4. copy the router's per-owner view into status;
//! 5. on deletion (finalizer) unregister and, with `deletionPolicy: Delete`,
//!    remove the index's objects.
//!
//! Every step is idempotent and keyed on what is recorded in status, so the
//! reconciler can be interrupted and re-run at any point.

use crate::crd::{DeletionPolicy, FINALIZER, Index, IndexStatus, Phase, SKIP_CLEANUP, condition};
use crate::jobs::{self, BuildConfig, JobOutcome};
use crate::metrics::Metrics;
use crate::pods::{self, PodReason};
use crate::router_client::{RouterClient, RouterError};
use crate::status::{self, set_condition};
use crate::storage::{self, StorageError};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::{
    Client, Resource, ResourceExt,
    api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{self, Event as Finalizer, finalizer},
        reflector::ObjectRef,
        watcher,
    },
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trusty_core::IndexId;
use trusty_core::error_chain::one_line;

/// Field manager of every status write.
pub const FIELD_MANAGER: &str = "trusty-operator";
/// Default requeue while something is still converging (build running, owners loading).
pub const REQUEUE_CONVERGING: Duration = Duration::from_secs(15);
/// Default requeue when stable, so status keeps tracking the data plane.
pub const REQUEUE_STABLE: Duration = Duration::from_secs(60);
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error("deleting index data: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Import(#[from] storage::ImportError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("Index {0} has no namespace")]
    MissingNamespace(String),
    #[error("waiting for {jobs} build Job(s) of {id} to stop before deleting it")]
    BuildsStopping { id: String, jobs: usize },
    #[error(
        "the Index CRD (indexes.search.trusty.dev) is not installed: \
         kubectl apply -f manifests/crds/index.yaml (or `crdgen | kubectl apply -f -`)"
    )]
    CrdNotInstalled,
}

impl Error {
    /// Bounded label value for `trusty_operator_reconcile_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Router(_) => "router",
            Error::Storage(_) => "storage",
            Error::Import(_) => "import",
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "finalizer",
            },
            Error::MissingNamespace(_) => "invalid",
            Error::BuildsStopping { .. } => "builds_stopping",
            Error::CrdNotInstalled => "crd",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a reconcile needs, shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub router: RouterClient,
    pub build: BuildConfig,
    pub metrics: Arc<Metrics>,
    /// How often status is re-read from the cluster.
    pub resync: Resync,
    /// Consecutive failures per Index, for exponential requeue backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Indexes whose current build failed, counted by `trusty_operator_indexes_failed`.
    failed_builds: Mutex<HashSet<String>>,
    /// Whether listing build pods was refused (RBAC) and said so once.
    pods_forbidden: AtomicBool,
}

/// Requeue intervals. Data-plane changes (an owner failing a reload, a shard
/// restarting) raise no Kubernetes event, so status only follows them by
/// polling the router: these bound how stale `kubectl get indexes` can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resync {
    /// While a build runs or owners are still loading.
    pub converging: Duration,
    /// Once the Index is Available.
    pub stable: Duration,
}

impl Default for Resync {
    fn default() -> Self {
        Resync {
            converging: REQUEUE_CONVERGING,
            stable: REQUEUE_STABLE,
        }
    }
}

impl Resync {
    /// Re-reads stable Indexes every `stable`, converging ones at least as often.
    pub fn every(stable: Duration) -> Resync {
        Resync {
            converging: REQUEUE_CONVERGING.min(stable),
            stable,
        }
    }
}

impl Context {
    pub fn new(
        client: Client,
        router: RouterClient,
        build: BuildConfig,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            router,
            build,
            metrics,
            resync: Resync::default(),
            failures: Mutex::new(HashMap::new()),
            failed_builds: Mutex::new(HashSet::new()),
            pods_forbidden: AtomicBool::new(false),
        }
    }

    pub fn with_resync(mut self, resync: Resync) -> Self {
        self.resync = resync;
        self
    }

    async fn event(&self, index: &Index, type_: EventType, reason: &str, action: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(status::truncate(note, 1000)),
            action: action.into(),
            secondary: None,
        };
        // An event that cannot be recorded must not fail the reconcile that produced it.
        if let Err(e) = self.recorder.publish(&ev, &index.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not record event");
        }
    }

    /// What the newest pod of build Job `job` says about why it failed or
    /// does not start. `None` when no pod says anything or the pods cannot be
    /// read: the report goes out without it rather than not at all.
    async fn pod_reason(&self, namespace: &str, job: &str) -> Option<PodReason> {
        match pods::job_pod_reason(self.client.clone(), namespace, job).await {
            Ok(reason) => reason,
            Err(e) if e.is_forbidden() => {
                let error = one_line(&e);
                // A role from before the operator read pods: said once, not per build.
                if self.pods_forbidden.swap(true, Ordering::Relaxed) {
                    tracing::debug!(%error, "cannot list build pods");
                } else {
                    tracing::warn!(
                        %error,
                        "cannot list build pods: grant the operator list on pods where builds run (the chart's \
                         <fullname>-operator-jobs role does) for build failures to say why; they are reported \
                         without it until then"
                    );
                }
                None
            }
            Err(e) => {
                tracing::warn!(error = %one_line(&e), "could not read why a build pod failed");
                None
            }
        }
    }

    /// Next requeue delay after a failure of `key`: 5 s doubling up to 5 min.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().expect("failure map lock");
        let n = f
            .entry(key.to_string())
            .and_modify(|n| *n = n.saturating_add(1))
            .or_insert(1);
        let exp = (*n - 1).min(10);
        (BACKOFF_BASE * 2u32.pow(exp)).min(BACKOFF_MAX)
    }

    fn reset_backoff(&self, key: &str) {
        self.failures.lock().expect("failure map lock").remove(key);
    }

    /// Records whether `index`'s build of its current inputs failed; the
    /// gauge stays up until a new build starts, one succeeds, or it is deleted.
    fn note_build(&self, index: &Index, failed: bool) {
        let mut set = self.failed_builds.lock().expect("failed builds lock");
        if failed {
            set.insert(key(index));
        } else {
            set.remove(&key(index));
        }
        self.metrics.indexes_failed.set(set.len() as i64);
    }

    fn forget_builds(&self) {
        self.failed_builds.lock().expect("failed builds lock").clear();
        self.metrics.indexes_failed.set(0);
    }
}

/// Clears the failed-build gauge when the controller stops (leadership lost,
/// shutdown): a standby must not report Indexes it no longer follows, and a
/// new leader's first pass over every Index counts them afresh.
struct ForgetBuildsOnStop(Arc<Context>);

impl Drop for ForgetBuildsOnStop {
    fn drop(&mut self) {
        self.0.forget_builds();
    }
}

fn key(index: &Index) -> String {
    format!("{}/{}", index.namespace().unwrap_or_default(), index.name_any())
}

/// Controller entry point: measures, counts and delegates to [`reconcile_index`].
pub async fn reconcile(index: Arc<Index>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let k = key(&index);
    let result = reconcile_index(index, ctx.clone()).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            ctx.metrics.reconciles.with_label_values(&["success"]).inc();
            ctx.reset_backoff(&k);
        }
        Err(e) => {
            ctx.metrics.reconciles.with_label_values(&["error"]).inc();
            ctx.metrics.failures.with_label_values(&[e.reason()]).inc();
        }
    }
    result
}

/// Requeue with exponential backoff per Index.
pub fn error_policy(index: Arc<Index>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&key(&index));
    tracing::warn!(index = %key(&index), error = %error, delay_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_index(index: Arc<Index>, ctx: Arc<Context>) -> Result<Action> {
    let ns = index
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(index.name_any()))?;
    let api: Api<Index> = Api::namespaced(ctx.client.clone(), &ns);
    let id = match IndexId::new(index.name_any()) {
        Ok(id) => id,
        Err(e) => return invalid_name(&index, &api, &ctx, e).await,
    };
    let (id, api_ref, ctx) = (&id, &api, &ctx);
    finalizer(&api, FINALIZER, index, |event| async move {
        match event {
            Finalizer::Apply(index) => apply(&index, id, api_ref, ctx).await,
            Finalizer::Cleanup(index) => cleanup(&index, id, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Writes `status` with server-side apply unless nothing changed.
async fn write_status(api: &Api<Index>, index: &Index, status: &IndexStatus) -> Result<()> {
    if index.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = Patch::Apply(json!({
        "apiVersion": Index::api_version(&()),
        "kind": Index::kind(&()),
        "status": status,
    }));
    api.patch_status(&index.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &patch)
        .await?;
    Ok(())
}

/// The name is the index id; an invalid one can never be built or served, so
/// say why once and wait for the user to delete the Index.
async fn invalid_name(
    index: &Index,
    api: &Api<Index>,
    ctx: &Context,
    err: trusty_core::index_id::InvalidIndexId,
) -> Result<Action> {
    if index.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let message = format!(
        "metadata.name is the index id and {err}; ids match [a-z0-9][a-z0-9._-]{{0,62}} without '..'. \
         Recreate the Index under a valid name."
    );
    let mut st = index.status.clone().unwrap_or_default();
    st.observed_generation = index.metadata.generation;
    let both = [condition::BUILT, condition::AVAILABLE];
    refuse(index, api, ctx, st, &both, "InvalidName", "Validate", message).await?;
    Ok(Action::await_change())
}

/// Marks an Index Failed for something only its user (or the admin) can fix:
/// `reason` and `message` on each of `conditions`, in `lastError`, and as a
/// Warning event once per reason; then writes the status.
#[allow(clippy::too_many_arguments)]
async fn refuse(
    index: &Index,
    api: &Api<Index>,
    ctx: &Context,
    mut st: IndexStatus,
    conditions: &[&str],
    reason: &str,
    action: &str,
    message: String,
) -> Result<()> {
    let (now, generation) = (Timestamp::now(), index.metadata.generation);
    st.phase = Phase::Failed;
    st.last_error = Some(message.clone());
    for c in conditions {
        set_condition(&mut st.conditions, c, false, reason, message.clone(), generation, now);
    }
    let old = index.status.clone().unwrap_or_default();
    if status::condition(&old, condition::BUILT).is_none_or(|c| c.reason != reason) {
        ctx.event(index, EventType::Warning, reason, action, message).await;
    }
    write_status(api, index, &st).await
}

/// What the build step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Build {
    /// Nothing to build: the recorded source hash is current (or objectStore).
    UpToDate,
    /// A build Job is running.
    Running,
    /// The build for the current inputs failed; waits for a spec change or reset.
    Failed,
    /// The current inputs need a build this cluster does not run (a `volume`
    /// source outside the build namespace); waits for a spec change.
    Refused,
}

/// This Index as the owner of its id.
fn owner(index: &Index) -> storage::Owner {
    storage::Owner {
        namespace: index.namespace().unwrap_or_default(),
        name: index.name_any(),
    }
}

async fn apply(index: &Index, id: &IndexId, api: &Api<Index>, ctx: &Context) -> Result<Action> {
    let me = owner(index);
    let holder = storage::claim(&ctx.build.store, id, &me).await?;
    if holder != me {
        return conflict(index, api, ctx, id, &holder).await;
    }
    let now = Timestamp::now();
    let generation = index.metadata.generation;
    let spec = &index.spec;
    let mut st = index.status.clone().unwrap_or_default();
    st.observed_generation = generation;
    let desired = jobs::source_hash(spec);
    let previous_hash = st.source_hash.clone();
    let previous_build = st.last_build_time.clone();

    let mut imported_new = false;
    let build = if let Some(os) = &spec.source.object_store {
        // An objectStore source builds nothing, so it has no failed build.
        ctx.note_build(index, false);
        // A build of the previous source would publish over what is served now.
        supersede_running(index, id, &st, ctx).await?;
        st.source_hash = Some(desired.clone());
        st.source_revision = Some(jobs::source_revision(spec));
        if storage::same_store(&os.prefix, &ctx.build.store) {
            set_condition(
                &mut st.conditions,
                condition::BUILT,
                true,
                "Prebuilt",
                format!(
                    "objectStore source {} is the cluster's store: registered as published",
                    os.prefix
                ),
                generation,
                now,
            );
        } else if let Err(refusal) = storage::import_allowed(&os.prefix, &ctx.build.import_from) {
            // The operator's credentials must not be pointed at a store the
            // cluster admin did not allow (a local path, an internal endpoint).
            refuse(
                index,
                api,
                ctx,
                st,
                &[condition::BUILT],
                "ImportNotAllowed",
                "Import",
                refusal,
            )
            .await?;
            return Ok(Action::await_change());
        } else {
            // Another store: copy its current version into the cluster's
            // store (verified), on every reconcile that finds a new one.
            match storage::import_index(&os.prefix, &ctx.build.store, id, ctx.build.import_dir.as_deref()).await {
                Ok(imported) => {
                    if imported.copied {
                        imported_new = true;
                        ctx.event(
                            index,
                            EventType::Normal,
                            "Imported",
                            "Import",
                            format!("copied version {} from {}", imported.version, os.prefix),
                        )
                        .await;
                    }
                    set_condition(
                        &mut st.conditions,
                        condition::BUILT,
                        true,
                        "Imported",
                        format!("version {} imported from {}", imported.version, os.prefix),
                        generation,
                        now,
                    );
                }
                Err(e) => {
                    let message = format!("importing from {}: {e}", os.prefix);
                    st.last_error = Some(status::truncate(message.clone(), 1024));
                    set_condition(
                        &mut st.conditions,
                        condition::BUILT,
                        false,
                        "ImportFailed",
                        message.clone(),
                        generation,
                        now,
                    );
                    if st.current_version.is_none() {
                        st.phase = Phase::Failed;
                    }
                    ctx.event(index, EventType::Warning, "ImportFailed", "Import", message)
                        .await;
                    write_status(api, index, &st).await?;
                    return Err(e.into());
                }
            }
        }
        Build::UpToDate
    } else {
        let build = match build_step(index, id, &desired, &mut st, ctx, now).await {
            Err(Error::Kube(kube::Error::Api(e))) if e.code == 403 => {
                // A role without Job rights where this Index builds: say which
                // chart value grants them, and try again later (RBAC may lag).
                let message = ctx.build.forbidden(index, &ctx.build.job_namespace(index), &e.message);
                let built = [condition::BUILT];
                refuse(index, api, ctx, st, &built, "BuildForbidden", "Build", message).await?;
                return Err(Error::Kube(kube::Error::Api(e)));
            }
            build => build?,
        };
        // A refusal is the cluster admin's choice, not a failed build: nothing to alert on.
        ctx.note_build(index, build == Build::Failed);
        build
    };
    // A new build (a refresh too) or a new objectStore prefix must be picked up by owners
    // already serving the previous version.
    let new_version = imported_new
        || st.last_build_time != previous_build
        || match &previous_hash {
            Some(_) => st.source_hash != previous_hash,
            None => st.source_hash.is_some() && spec.source.object_store.is_none(),
        };

    // Nothing published yet: nothing to register.
    if st.source_hash.is_none() {
        st.phase = match build {
            Build::Failed | Build::Refused => Phase::Failed,
            Build::Running => Phase::Building,
            Build::UpToDate => Phase::Pending,
        };
        write_status(api, index, &st).await?;
        return Ok(match build {
            Build::Running => Action::requeue(ctx.resync.converging),
            _ => Action::await_change(),
        });
    }

    if let Err(e) = serve_step(index, id, &mut st, ctx, new_version, now).await {
        let message = e.to_string();
        st.last_error = Some(status::truncate(message.clone(), 1024));
        set_condition(
            &mut st.conditions,
            condition::AVAILABLE,
            false,
            "RouterUnavailable",
            message,
            generation,
            now,
        );
        write_status(api, index, &st).await?;
        return Err(e.into());
    }

    match build {
        Build::Running => st.phase = Phase::Building,
        Build::Failed | Build::Refused => st.phase = Phase::Failed,
        Build::UpToDate => {}
    }
    write_status(api, index, &st).await?;

    let mut next = match (build, st.phase) {
        (Build::Running, _) => ctx.resync.converging,
        (_, Phase::Available) => ctx.resync.stable,
        _ => ctx.resync.converging,
    };
    if build == Build::UpToDate
        && let Some(until_refresh) = refresh_due_in(index, &st, now)
    {
        next = next.min(until_refresh.max(Duration::from_secs(1)));
    }
    Ok(Action::requeue(next))
}

/// Follows the last build Job and starts a new one when the inputs changed, a
/// refresh is due, or `resetGeneration` retries a failed build.
async fn build_step(
    index: &Index,
    id: &IndexId,
    desired: &str,
    st: &mut IndexStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Build> {
    let generation = index.metadata.generation;
    let job_ns = ctx.build.job_namespace(index);
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &job_ns);
    let mut running = false;
    let mut pending: Option<PodPending> = None;
    // The failed Job's message and namespace.
    let mut failed: Option<(String, String)> = None;

    if let Some(last) = st.last_build_job.clone()
        && let Some((job, last_api)) = find_build_job(index, id, &last, ctx).await?
    {
        let job_hash = jobs::job_source_hash(&job).map(str::to_string);
        match jobs::job_outcome(&job) {
            JobOutcome::Running if job_hash.as_deref() == Some(desired) => {
                running = true;
                pending = jobs::pod_not_started(&job, now, jobs::BUILD_PENDING_AFTER).map(|since| PodPending {
                    job: last.clone(),
                    namespace: job.namespace().unwrap_or_else(|| job_ns.clone()),
                    since,
                });
            }
            JobOutcome::Running => supersede(index, &last_api, &last, ctx).await?,
            JobOutcome::Succeeded { completion_time } => {
                let done = completion_time
                    .or_else(|| job.metadata.creation_timestamp.as_ref().map(|t| t.0))
                    .unwrap_or(now);
                let consumed = st.last_build_time.as_ref().is_some_and(|t| t.0 >= done);
                if !consumed {
                    st.source_hash = job_hash;
                    st.last_build_time = Some(Time(done));
                    st.source_revision = Some(jobs::source_revision(&index.spec));
                    st.last_error = None;
                    set_condition(
                        &mut st.conditions,
                        condition::BUILT,
                        true,
                        "BuildSucceeded",
                        format!("Job {last} built the index"),
                        generation,
                        now,
                    );
                    ctx.event(
                        index,
                        EventType::Normal,
                        "BuildSucceeded",
                        "Build",
                        format!("Job {last} succeeded"),
                    )
                    .await;
                }
            }
            JobOutcome::Failed { message } if job_hash.as_deref() == Some(desired) => {
                failed = Some((message, job.namespace().unwrap_or_else(|| job_ns.clone())));
            }
            JobOutcome::Failed { .. } => {}
        }
    }

    // A failed Job of the inputs being served is a failed refresh: that
    // build keeps serving, and the next interval tries again.
    if let (Some((message, namespace)), Some(job)) = (&failed, st.last_build_job.clone())
        && st.source_hash.as_deref() == Some(desired)
    {
        refresh_failed(index, st, ctx, &job, message, namespace, now).await;
    }

    let refresh = refresh_token(index, st, desired, now);
    let needs_build = st.source_hash.as_deref() != Some(desired) || refresh.is_some();
    if running {
        match pending {
            Some(p) => {
                // Asked once per Job: the report stays as it was first written.
                let why = if build_pending_reported(st, &p.job) {
                    None
                } else {
                    ctx.pod_reason(&p.namespace, &p.job).await
                };
                if set_build_pending(st, generation, now, &p, why.as_ref()) {
                    let message = status::condition(st, condition::BUILT)
                        .map(|c| c.message.clone())
                        .unwrap_or_default();
                    ctx.event(index, EventType::Warning, BUILD_PENDING, "Build", message)
                        .await;
                }
            }
            None => set_building(st, generation, now, st.last_build_job.clone().unwrap_or_default()),
        }
        return Ok(Build::Running);
    }
    let refusal = ctx.build.refusal(index);
    if !needs_build {
        let revision = st.source_revision.clone().unwrap_or_else(|| desired.to_string());
        if let Some(refusal) = refusal {
            // Served, so nothing is refused yet: the served build keeps
            // serving and its status tracking, and Built says in advance
            // that a change of source would not be built.
            let message = format!(
                "the served build already has these inputs ({revision}); a change would not be built: {refusal}"
            );
            if st.last_error.as_deref() == Some(refusal.as_str()) {
                st.last_error = None;
            }
            set_condition(
                &mut st.conditions,
                condition::BUILT,
                true,
                "UpToDate",
                message,
                generation,
                now,
            );
        } else if !status::condition_is(st, condition::BUILT, true) {
            // Back at inputs already built (a failed change reverted): that
            // build is what is served, so the failure no longer applies.
            set_condition(
                &mut st.conditions,
                condition::BUILT,
                true,
                "UpToDate",
                format!("the served build already has these inputs ({revision})"),
                generation,
                now,
            );
        }
        return Ok(Build::UpToDate);
    }

    // In a shared build namespace the name also covers the Index's namespace,
    // so one tenant's Job is never mistaken for another's.
    let own_ns = index.namespace().unwrap_or_default();
    let name_key = if job_ns == own_ns {
        desired.to_string()
    } else {
        format!("{own_ns}/{desired}")
    };
    let wanted = jobs::job_name(
        id.as_str(),
        &name_key,
        index.spec.reset_generation,
        refresh.as_deref().unwrap_or(""),
    );
    let same_job = st.last_build_job.as_deref() == Some(wanted.as_str());
    // This interval's refresh already failed: wait for the next one.
    if refresh.is_some() && same_job && refresh_failure_reported(st, &wanted) {
        return Ok(Build::UpToDate);
    }
    let wanted_failed_before = refresh.is_none()
        && same_job
        && (failed.is_some()
            || status::condition(st, condition::BUILT)
                .is_some_and(|c| c.status == "False" && c.reason == "BuildFailed"));
    if wanted_failed_before {
        let already_reported = status::condition(st, condition::BUILT).is_some_and(|c| c.reason == "BuildFailed");
        let text = match status::condition(st, condition::BUILT) {
            // Said once, with what the pod said then (it may be gone since).
            Some(c) if built_reports(st, "BuildFailed", &format!("Job {wanted} failed")) => c.message.clone(),
            _ => {
                let (message, why) = match failed {
                    Some((message, namespace)) => {
                        let why = ctx.pod_reason(&namespace, &wanted).await;
                        (message, why)
                    }
                    None => (st.last_error.clone().unwrap_or_else(|| "build Job failed".into()), None),
                };
                let message = with_pod_reason(message, why.as_ref());
                format!("Job {wanted} failed: {message}. Change the source or bump spec.resetGeneration to retry.")
            }
        };
        set_condition(
            &mut st.conditions,
            condition::BUILT,
            false,
            "BuildFailed",
            text.clone(),
            generation,
            now,
        );
        st.last_error = Some(status::truncate(text.clone(), 1024));
        if !already_reported {
            ctx.event(index, EventType::Warning, "BuildFailed", "Build", text).await;
        }
        return Ok(Build::Failed);
    }

    if let Some(refusal) = refusal {
        // Said in status instead of trying a Job the operator's role refuses.
        if !built_reports(st, VOLUME_SOURCE_NOT_ALLOWED, "") {
            ctx.event(
                index,
                EventType::Warning,
                VOLUME_SOURCE_NOT_ALLOWED,
                "Build",
                refusal.clone(),
            )
            .await;
        }
        st.last_error = Some(refusal.clone());
        set_condition(
            &mut st.conditions,
            condition::BUILT,
            false,
            VOLUME_SOURCE_NOT_ALLOWED,
            refusal,
            generation,
            now,
        );
        return Ok(Build::Refused);
    }

    let job = jobs::build_job(index, id.as_str(), &wanted, desired, &ctx.build);
    match job_api.create(&PostParams::default(), &job).await {
        Ok(_) => {
            ctx.event(
                index,
                EventType::Normal,
                "BuildStarted",
                "Build",
                format!("created Job {wanted}"),
            )
            .await;
        }
        // Created by an earlier pass whose status write was lost: follow it,
        // unless it is a leftover no pass of this Index is waiting for.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            if let Some(existing) = job_api.get_opt(&wanted).await?
                && leftover(&existing, index, st)
            {
                delete_job(&job_api, &wanted, &DeleteParams::background()).await?;
                ctx.event(
                    index,
                    EventType::Normal,
                    "BuildRestarted",
                    "Build",
                    format!("Job {wanted} was left by an earlier build; deleted it to build again"),
                )
                .await;
                // Not recorded as the last build: the next pass creates it afresh.
                set_building(st, generation, now, wanted);
                return Ok(Build::Running);
            }
        }
        Err(e) => return Err(e.into()),
    }
    st.last_build_job = Some(wanted.clone());
    set_building(st, generation, now, wanted);
    Ok(Build::Running)
}

/// Deletes the last build Job if it still runs: with a source that is not
/// built (or not here) it would publish over what is served.
async fn supersede_running(index: &Index, id: &IndexId, st: &IndexStatus, ctx: &Context) -> Result<()> {
    if let Some(last) = st.last_build_job.clone()
        && let Some((job, job_api)) = find_build_job(index, id, &last, ctx).await?
        && job.metadata.deletion_timestamp.is_none()
        && jobs::job_outcome(&job) == JobOutcome::Running
    {
        supersede(index, &job_api, &last, ctx).await?;
    }
    Ok(())
}

/// Deletes the still-running build Job `name`, which builds inputs the
/// Index no longer has.
async fn supersede(index: &Index, api: &Api<Job>, name: &str, ctx: &Context) -> Result<()> {
    delete_job(api, name, &DeleteParams::background()).await?;
    let note = format!("source changed; deleted Job {name}");
    ctx.event(index, EventType::Normal, "BuildSuperseded", "Build", note)
        .await;
    Ok(())
}

/// Built's reason while the last refresh of the served inputs failed.
const REFRESH_FAILED: &str = "RefreshFailed";

/// Whether the Built condition already reports refresh Job `job` as failed.
fn refresh_failure_reported(st: &IndexStatus, job: &str) -> bool {
    built_reports(st, REFRESH_FAILED, job)
}

/// `message`, then what the build's pod said about it, if anything.
fn with_pod_reason(message: String, why: Option<&PodReason>) -> String {
    match why {
        Some(PodReason { pod, reason }) => format!("{message}; pod {pod}: {reason}"),
        None => message,
    }
}

/// Whether the Built condition has reason `reason` and a message naming `needle`.
fn built_reports(st: &IndexStatus, reason: &str, needle: &str) -> bool {
    status::condition(st, condition::BUILT).is_some_and(|c| c.reason == reason && c.message.contains(needle))
}

/// Whether a previous build serves while a new one runs: Built stays True.
fn previous_build_serves(st: &IndexStatus) -> bool {
    st.source_hash.is_some() && status::condition_is(st, condition::BUILT, true)
}

/// Reports a failed refresh Job on Built, which stays True: the previous
/// build keeps serving. A Warning event once per Job, whose pod (in
/// `namespace`) is asked why once too.
async fn refresh_failed(
    index: &Index,
    st: &mut IndexStatus,
    ctx: &Context,
    job: &str,
    message: &str,
    namespace: &str,
    now: Timestamp,
) {
    let reported = refresh_failure_reported(st, job);
    let text = match status::condition(st, condition::BUILT) {
        Some(c) if reported => c.message.clone(),
        _ => {
            let next = refresh_slots(index, st, now).and_then(|(_, next)| next).map_or_else(
                || "no further refresh is scheduled".to_string(),
                |t| format!("next try at {t}"),
            );
            let built_at = st
                .last_build_time
                .as_ref()
                .map_or_else(|| "the previous build".to_string(), |t| format!("the build of {}", t.0));
            let why = ctx.pod_reason(namespace, job).await;
            let message = with_pod_reason(message.to_string(), why.as_ref());
            format!("refresh Job {job} failed: {message}; {built_at} keeps serving, {next}")
        }
    };
    set_condition(
        &mut st.conditions,
        condition::BUILT,
        true,
        REFRESH_FAILED,
        text.clone(),
        index.metadata.generation,
        now,
    );
    if !reported {
        ctx.event(index, EventType::Warning, REFRESH_FAILED, "Build", text)
            .await;
    }
}

/// Whether a Job found under the wanted name must be built again rather
/// than followed: Job names repeat with their inputs, so the name may belong
/// to an earlier Index of the same name (deleted and created again, its Job
/// kept for a day), or to a build that finished before the one now served
/// (a spec reverted to earlier inputs), whose version `CURRENT` no longer
/// names. A Job being deleted is never followed either.
fn leftover(job: &Job, index: &Index, st: &IndexStatus) -> bool {
    if job.metadata.deletion_timestamp.is_some() {
        return true;
    }
    if let (Some(ours), Some(its)) = (index.metadata.uid.as_deref(), jobs::job_index_uid(job))
        && ours != its
    {
        return true;
    }
    let finished = match jobs::job_outcome(job) {
        JobOutcome::Running => return false,
        JobOutcome::Succeeded { completion_time } => completion_time,
        JobOutcome::Failed { .. } => None,
    };
    let finished = finished.or_else(|| job.metadata.creation_timestamp.as_ref().map(|t| t.0));
    matches!((finished, &st.last_build_time), (Some(done), Some(last)) if done <= last.0)
}

/// Deletes a Job; `false` when it was already gone.
async fn delete_job(api: &Api<Job>, name: &str, how: &DeleteParams) -> Result<bool> {
    match api.delete(name, how).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The build Job `name` of `index`, in whichever namespace it runs (the
/// source may have moved the builds since), with the API to reach it there.
async fn find_build_job(index: &Index, id: &IndexId, name: &str, ctx: &Context) -> Result<Option<(Job, Api<Job>)>> {
    let own_ns = index.namespace().unwrap_or_default();
    let builds_in = ctx.build.job_namespace(index);
    for ns in ctx.build.job_namespaces(index) {
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        let Some(job) = api.get_opt(name).await? else {
            continue;
        };
        // Elsewhere than where it builds now, the name alone proves nothing.
        let labels = job.labels();
        let ours = labels.get(jobs::INDEX_LABEL).map(String::as_str) == Some(id.as_str())
            && labels.get(jobs::INDEX_NAMESPACE_LABEL) == Some(&own_ns);
        if ns == builds_in || ours {
            return Ok(Some((job, api)));
        }
    }
    Ok(None)
}

fn set_building(st: &mut IndexStatus, generation: Option<i64>, now: Timestamp, job: String) {
    // A refresh keeps serving the previous build: Built stays True until the new one lands.
    if previous_build_serves(st) {
        // Its pod has started since it was reported pending.
        if status::condition(st, condition::BUILT).is_some_and(|c| c.reason == BUILD_PENDING) {
            set_condition(
                &mut st.conditions,
                condition::BUILT,
                true,
                "Building",
                format!("Job {job} is running; the previous build keeps serving"),
                generation,
                now,
            );
        }
    } else {
        set_condition(
            &mut st.conditions,
            condition::BUILT,
            false,
            "Building",
            format!("Job {job} is running"),
            generation,
            now,
        );
    }
}

/// Built's reason while the current inputs need a build the cluster does
/// not run: a `volume` source outside the build namespace.
const VOLUME_SOURCE_NOT_ALLOWED: &str = "VolumeSourceNotAllowed";

/// Built's reason while the pod of a running build Job has not started for
/// [`jobs::BUILD_PENDING_AFTER`].
const BUILD_PENDING: &str = "BuildPending";

/// A running build Job whose pod has not started ([`jobs::pod_not_started`]).
#[derive(Debug)]
struct PodPending {
    job: String,
    /// Where the Job runs (the shared build namespace or the Index's).
    namespace: String,
    /// The Job's start time.
    since: Timestamp,
}

/// Whether the Built condition already reports build Job `job` pending.
fn build_pending_reported(st: &IndexStatus, job: &str) -> bool {
    built_reports(st, BUILD_PENDING, &format!("Job {job} "))
}

/// Reports on Built that the build waits for its pod, with why when its pod
/// says (`why`), and how to see more; Built keeps its status (True while a
/// previous build serves, as in [`set_building`]) and nothing is failed or
/// deleted: the pod may still start. Returns whether this Job was not
/// reported pending before (for a Warning event once per Job); a report
/// already made is kept as it was. [`set_building`] replaces the reason once
/// the pod runs.
fn set_build_pending(
    st: &mut IndexStatus,
    generation: Option<i64>,
    now: Timestamp,
    p: &PodPending,
    why: Option<&PodReason>,
) -> bool {
    let PodPending { job, namespace, since } = p;
    let previous = previous_build_serves(st);
    let reported = build_pending_reported(st, job);
    let message = match status::condition(st, condition::BUILT) {
        Some(c) if reported => c.message.clone(),
        _ => {
            let (pod, cause) = match why {
                Some(PodReason { pod, reason }) => (format!("pod {pod}"), reason.as_str()),
                None => (
                    "pod".to_string(),
                    "an image it cannot pull, a Secret it cannot find (such as the store credentials), \
                     no node that fits or a volume attached elsewhere holds it",
                ),
            };
            let minutes = jobs::BUILD_PENDING_AFTER.as_secs() / 60;
            let label = pods::JOB_NAME_LABEL;
            let mut message = format!(
                "the {pod} of build Job {job} has not started running since {since} (over {minutes} min): \
                 {cause}; see more with `kubectl -n {namespace} describe pod -l {label}={job}`. \
                 The Job fails only at its deadline ({} h); the build goes on if the pod starts",
                jobs::ACTIVE_DEADLINE / 3600
            );
            if previous {
                message.push_str("; the previous build keeps serving");
            }
            message
        }
    };
    set_condition(
        &mut st.conditions,
        condition::BUILT,
        previous,
        BUILD_PENDING,
        message,
        generation,
        now,
    );
    !reported
}

/// Registers the index, reloads after a new build, resets on request, and
/// copies the router's view of the owners into status.
async fn serve_step(
    index: &Index,
    id: &IndexId,
    st: &mut IndexStatus,
    ctx: &Context,
    new_version: bool,
    now: Timestamp,
) -> Result<(), RouterError> {
    let generation = index.metadata.generation;
    let spec = &index.spec;
    let first = !status::condition_is(st, condition::PUBLISHED, true);
    ctx.router.register(id, spec.replicas, first || new_version).await?;
    if first {
        ctx.event(
            index,
            EventType::Normal,
            "Registered",
            "Register",
            format!("registered with {} replica(s)", spec.replicas),
        )
        .await;
    }
    set_condition(
        &mut st.conditions,
        condition::PUBLISHED,
        true,
        "Registered",
        format!("registered with the router ({} replica(s))", spec.replicas),
        generation,
        now,
    );
    if new_version {
        match ctx.router.reload(id).await {
            Ok(()) | Err(RouterError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if spec.reset_generation > st.last_reset_generation.unwrap_or(0) {
        ctx.router.reset(id).await?;
        st.last_reset_generation = Some(spec.reset_generation);
        ctx.event(
            index,
            EventType::Normal,
            "Reset",
            "Reset",
            format!("reset failed owners (resetGeneration {})", spec.reset_generation),
        )
        .await;
    }
    let cluster = ctx.router.status(id).await?;
    // What the owners should serve; unreadable, their versions go unchecked
    // rather than the router's view going unreported.
    let published = match storage::published_version(&ctx.build.store, id).await {
        Ok(version) => version,
        Err(e) => {
            let error = one_line(&e);
            tracing::warn!(index = %id, %error, "could not read the published version");
            None
        }
    };
    status::apply_cluster_status(st, &cluster, spec.replicas, published.as_deref(), generation, now);
    Ok(())
}

/// When a git refresh is due, the token that makes its Job name unique: the
/// start of the interval it came due in, so a refresh that failed is tried
/// again in the next interval under a new name; `None` when none is due.
fn refresh_token(index: &Index, st: &IndexStatus, desired: &str, now: Timestamp) -> Option<String> {
    if st.source_hash.as_deref() != Some(desired) {
        return None;
    }
    let (due, _) = refresh_slots(index, st, now)?;
    due.map(|t| t.to_string())
}

/// How long until the next refresh interval begins, for the requeue.
fn refresh_due_in(index: &Index, st: &IndexStatus, now: Timestamp) -> Option<Duration> {
    let (_, next) = refresh_slots(index, st, now)?;
    Some(Duration::try_from(next?.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// The refresh intervals of a git Index around `now`; `None` when it has no
/// refresh or no finished build to count from.
fn refresh_slots(index: &Index, st: &IndexStatus, now: Timestamp) -> Option<(Option<Timestamp>, Option<Timestamp>)> {
    index.spec.source.git.as_ref()?;
    let interval = jobs::parse_interval(index.spec.refresh_interval.as_deref()?)?;
    Some(slots(st.last_build_time.as_ref()?.0, interval, now))
}

/// For a build finished at `last`, refreshed every `interval`: the start of
/// the latest interval already due at `now` (none before the first), and
/// when the next one is. Intervals past the last representable time never
/// come due: the CRD bounds the interval's form, not its size.
fn slots(last: Timestamp, interval: Duration, now: Timestamp) -> (Option<Timestamp>, Option<Timestamp>) {
    let step = i128::try_from(interval.as_nanos()).unwrap_or(i128::MAX).max(1);
    let base = last.as_nanosecond();
    let k = (now.as_nanosecond() - base).max(0) / step;
    let at = |k: i128| {
        k.checked_mul(step)
            .and_then(|offset| base.checked_add(offset))
            .and_then(|n| Timestamp::from_nanosecond(n).ok())
    };
    let due = if k >= 1 { at(k) } else { None };
    (due, at(k + 1))
}

/// Finalizer cleanup. Storage first, so shards cannot rediscover the index
/// between the two steps: with `Delete` its objects in the cluster's store
/// are removed (an import source is never touched); with `Retain` a built or
/// imported index is withdrawn (its versions stay, `CURRENT` moves aside),
/// while a prebuilt index in the cluster's own store is left as it is. Then
/// every shard drops it.
/// Another namespace's Index owns this id: never build, serve or delete
/// anything under it; say so, and check again later (the id is free once the
/// owner is deleted).
async fn conflict(
    index: &Index,
    api: &Api<Index>,
    ctx: &Context,
    id: &IndexId,
    holder: &storage::Owner,
) -> Result<Action> {
    let message = format!(
        "index id {id} belongs to Index {holder}: index ids are shared by every namespace, \
         so rename this Index (or delete the other one)"
    );
    let mut st = index.status.clone().unwrap_or_default();
    st.observed_generation = index.metadata.generation;
    let both = [condition::BUILT, condition::AVAILABLE];
    refuse(index, api, ctx, st, &both, "Conflict", "Claim", message).await?;
    Ok(Action::requeue(ctx.resync.stable))
}

async fn cleanup(index: &Index, id: &IndexId, ctx: &Context) -> Result<Action> {
    ctx.note_build(index, false);
    if index.annotations().get(SKIP_CLEANUP).is_some_and(|v| v == "true") {
        return release_without_cleanup(index, id, ctx).await;
    }
    let me = owner(index);
    if let Some(holder) = storage::owner_of(&ctx.build.store, id).await?
        && holder != me
    {
        let note = format!("left index {id} alone: it belongs to Index {holder}");
        ctx.event(index, EventType::Normal, "Deleted", "Delete", note).await;
        return Ok(Action::await_change());
    }
    let stopping = stop_running_builds(index, id, ctx).await?;
    if stopping > 0 {
        return Err(Error::BuildsStopping {
            id: id.to_string(),
            jobs: stopping,
        });
    }
    // A prebuilt index living in the cluster's own store is managed elsewhere;
    // an imported copy or a built index is ours.
    let prebuilt_in_place = index
        .spec
        .source
        .object_store
        .as_ref()
        .is_some_and(|o| storage::same_store(&o.prefix, &ctx.build.store));
    let url = &ctx.build.store;
    let stored = match (index.spec.deletion_policy, prebuilt_in_place) {
        (DeletionPolicy::Delete, _) => {
            let n = storage::delete_index(url, id).await?;
            Some(format!("deleted {n} object(s) under {url}/indexes/{id}/"))
        }
        (DeletionPolicy::Retain, false) => {
            let moved = storage::withdraw_index(url, id).await?;
            moved.then(|| format!("withdrew it from serving (versions kept under {url}/indexes/{id}/)"))
        }
        (DeletionPolicy::Retain, true) => None,
    };
    ctx.router.unregister(id).await?;
    storage::release(&ctx.build.store, id, &me).await?;
    let note = match stored {
        Some(s) => format!("unregistered {id} and {s}"),
        None => format!("unregistered {id}"),
    };
    ctx.event(index, EventType::Normal, "Deleted", "Delete", note).await;
    Ok(Action::await_change())
}

/// Finalizer cleanup under [`SKIP_CLEANUP`]: neither the router nor the
/// store is touched, so a deletion they cannot serve still completes. Running
/// builds are asked to stop but not waited for.
async fn release_without_cleanup(index: &Index, id: &IndexId, ctx: &Context) -> Result<Action> {
    stop_running_builds(index, id, ctx).await?;
    let note = format!(
        "released {id} without cleanup ({SKIP_CLEANUP}): its router registration and its objects \
         under {}/indexes/{id}/ (the id's OWNER claim too) were left as they are",
        ctx.build.store
    );
    ctx.event(index, EventType::Normal, "Deleted", "Delete", note).await;
    Ok(Action::await_change())
}

/// Asks every still-running build Job of this Index to stop (foreground, so
/// the Job outlives its pods); returns how many are still there. Cleanup
/// fails with [`Error::BuildsStopping`] while any is: a build that kept
/// running could publish after the data is gone and bring back an index no
/// Index owns. Failing (not returning an action) keeps the finalizer; the
/// Job's deletion triggers the next pass.
async fn stop_running_builds(index: &Index, id: &IndexId, ctx: &Context) -> Result<usize> {
    let selector = format!(
        "{}={id},{}={}",
        jobs::INDEX_LABEL,
        jobs::INDEX_NAMESPACE_LABEL,
        index.namespace().unwrap_or_default()
    );
    let mut stopping = 0;
    for ns in ctx.build.job_namespaces(index) {
        let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        let running: Vec<Job> = job_api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|j| jobs::job_outcome(j) == JobOutcome::Running)
            .collect();
        stopping += running.len();
        for job in &running {
            if job.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = job.name_any();
            if !delete_job(&job_api, &name, &DeleteParams::foreground()).await? {
                continue;
            }
            let note = format!("stopping build Job {name} before deleting {id}");
            ctx.event(index, EventType::Normal, "BuildStopped", "Delete", note)
                .await;
        }
    }
    Ok(stopping)
}

/// The Index a build Job belongs to, from its labels (Jobs in a shared build
/// namespace have no owner reference to follow).
fn index_of_job(job: Job) -> Option<ObjectRef<Index>> {
    let labels = job.metadata.labels.as_ref()?;
    let name = labels.get(jobs::INDEX_LABEL)?;
    let namespace = labels
        .get(jobs::INDEX_NAMESPACE_LABEL)
        .cloned()
        .or_else(|| job.metadata.namespace.clone())?;
    Some(ObjectRef::new(name).within(&namespace))
}

/// Fails with [`Error::CrdNotInstalled`] when the API server does not serve Indexes.
pub async fn check_crd_installed(client: Client, namespace: Option<&str>) -> Result<()> {
    let api: Api<Index> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::CrdNotInstalled),
        Err(e) => Err(e.into()),
    }
}

/// Runs the controller on Indexes (and their build Jobs) until the stream ends.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let _forget = ForgetBuildsOnStop(ctx.clone());
    let client = ctx.client.clone();
    let indexes: Api<Index> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Build Jobs run in the Index's namespace or the shared build namespace;
    // only those the operator's role covers are watched.
    let job_apis: Vec<Api<Job>> = match ctx.build.watched_job_namespaces(namespace.as_deref()) {
        None => vec![Api::all(client.clone())],
        Some(namespaces) => namespaces.iter().map(|n| Api::namespaced(client.clone(), n)).collect(),
    };
    let managed = format!("{}={}", jobs::MANAGED_BY.0, jobs::MANAGED_BY.1);
    let mut controller = Controller::new(indexes, watcher::Config::default().any_semantic());
    for job_api in job_apis {
        controller = controller.watches(job_api, watcher::Config::default().labels(&managed), index_of_job);
    }
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(index = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_build_pod_is_reported_once_and_cleared_when_it_runs() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let now = t("2026-03-01T10:06:00Z");
        let p = PodPending {
            job: "tokio-0123456789".into(),
            namespace: "trusty-system".into(),
            since: t("2026-03-01T10:00:00Z"),
        };
        let built = |st: &IndexStatus| {
            let c = status::condition(st, condition::BUILT).expect("Built");
            (c.status.clone(), c.reason.clone(), c.message.clone())
        };

        // A first build: Built stays False, with how to see why.
        let mut st = IndexStatus::default();
        set_building(&mut st, Some(1), now, p.job.clone());
        assert!(
            set_build_pending(&mut st, Some(1), now, &p, None),
            "reported the first time"
        );
        let (status_, reason, message) = built(&st);
        assert_eq!((status_.as_str(), reason.as_str()), ("False", BUILD_PENDING));
        assert!(
            message.contains("kubectl -n trusty-system describe pod -l batch.kubernetes.io/job-name=tokio-0123456789"),
            "{message}"
        );
        assert!(message.contains("2026-03-01T10:00:00Z"), "{message}");
        assert!(
            message.contains("a Secret it cannot find"),
            "its pod said nothing: {message}"
        );
        let written = st.clone();
        let why = PodReason {
            pod: "tokio-0123456789-x7k2p".into(),
            reason: "ImagePullBackOff".into(),
        };
        assert!(
            !set_build_pending(&mut st, Some(1), t("2026-03-01T10:30:00Z"), &p, Some(&why)),
            "once per Job"
        );
        assert_eq!(st, written, "nothing new to write while it waits");
        let other = PodPending {
            job: "tokio-9876543210".into(),
            ..p
        };
        let why = PodReason {
            pod: "tokio-9876543210-abcde".into(),
            reason: "CreateContainerConfigError: secret \"store-creds\" not found".into(),
        };
        assert!(
            set_build_pending(&mut st, Some(1), now, &other, Some(&why)),
            "a new Job is reported again"
        );
        let (_, reason, message) = built(&st);
        assert_eq!(reason, BUILD_PENDING, "the reason stays what alerts match on");
        assert!(
            message.starts_with(
                "the pod tokio-9876543210-abcde of build Job tokio-9876543210 has not started running since \
                 2026-03-01T10:00:00Z (over 5 min): CreateContainerConfigError: secret \"store-creds\" not found; \
                 see more with"
            ),
            "{message}"
        );
        let p = other;
        // The pod runs: Building again.
        set_building(&mut st, Some(1), now, p.job.clone());
        assert_eq!(built(&st).1, "Building");

        // A refresh: the previous build keeps serving, so Built stays True.
        let mut st = IndexStatus {
            source_hash: Some("h".into()),
            ..Default::default()
        };
        set_condition(
            &mut st.conditions,
            condition::BUILT,
            true,
            "BuildSucceeded",
            "m",
            Some(1),
            now,
        );
        set_building(&mut st, Some(1), now, p.job.clone());
        assert_eq!(built(&st).1, "BuildSucceeded", "a running refresh changes nothing");
        assert!(set_build_pending(&mut st, Some(1), now, &p, None));
        let (status_, reason, message) = built(&st);
        assert_eq!((status_.as_str(), reason.as_str()), ("True", BUILD_PENDING));
        assert!(message.contains("previous build keeps serving"), "{message}");
        set_building(&mut st, Some(1), now, p.job.clone());
        let (status_, reason, _) = built(&st);
        assert_eq!((status_.as_str(), reason.as_str()), ("True", "Building"));
    }

    #[test]
    fn refreshes_come_due_once_per_interval_and_never_past_the_end_of_time() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let last = t("2026-12-01T00:00:00Z");
        let hour = jobs::parse_interval("1h").unwrap();
        assert_eq!(
            slots(last, hour, t("2026-12-01T00:30:00Z")),
            (None, Some(t("2026-12-01T01:00:00Z")))
        );
        assert_eq!(
            slots(last, hour, t("2026-12-01T01:00:00Z")),
            (Some(t("2026-12-01T01:00:00Z")), Some(t("2026-12-01T02:00:00Z")))
        );
        // A refresh that failed in the second interval: the third is next.
        assert_eq!(
            slots(last, hour, t("2026-12-01T02:59:59Z")),
            (Some(t("2026-12-01T02:00:00Z")), Some(t("2026-12-01T03:00:00Z")))
        );
        let forever = jobs::parse_interval("100000000d").expect("the CRD pattern accepts it");
        assert_eq!(slots(last, forever, t("2027-01-01T00:00:00Z")), (None, None));
    }
}
