//! The real operator (leader election + Controller + watches + finalizer)
//! against the in-process fake API server and fake router: apply an Index,
//! play the kubelet, watch status converge, delete it.

use crate::fake_apiserver::{EVENT, FakeApiServer, INDEX, JOB, LEASE, POD};
use crate::fake_router::FakeRouter;
use crate::harness::{LEASE_NAME, LEASE_NAMESPACE, Operator, eventually, install_crypto};
use crate::kubelet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use trusty_operator::{
    Index, controller,
    crd::Phase,
    leader::{LeaderElector, LeaseState},
};
use trusty_search::api::types::ResidencyState;

const NS: &str = "search";
/// Generous: CI machines can be busy, and a pass never waits this long.
const WAIT: Duration = Duration::from_secs(60);

async fn first_job(jobs: &Api<Job>) -> Job {
    eventually("a build Job", WAIT, || async {
        jobs.list(&ListParams::default())
            .await
            .ok()
            .and_then(|l| l.items.into_iter().next())
    })
    .await
}

/// A `file://` store in which index `id` has a `CURRENT` pointer naming the
/// version the fake router's owners serve; returns the directory and that
/// pointer's path.
fn store_with_current(id: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let store = tempfile::tempdir().unwrap();
    let data = store.path().join(format!("indexes/{id}/CURRENT"));
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    let pointer = json!({"version": crate::fake_router::VERSION, "manifest_sha256": "0".repeat(64)});
    std::fs::write(&data, pointer.to_string()).unwrap();
    (store, data)
}

/// The fake API server and router, and a `file://` store in which one index
/// has a `CURRENT` (at `data`), as most scenarios start.
struct Fakes {
    api: FakeApiServer,
    router: FakeRouter,
    store: tempfile::TempDir,
    data: std::path::PathBuf,
}

impl Fakes {
    async fn start(id: &str) -> Fakes {
        install_crypto();
        let (store, data) = store_with_current(id);
        Fakes {
            api: FakeApiServer::start().await,
            router: FakeRouter::start().await,
            store,
            data,
        }
    }

    fn store_url(&self) -> String {
        format!("file://{}", self.store.path().display())
    }
}

async fn phase_is(indexes: &Api<Index>, name: &str, phase: Phase) -> Index {
    eventually(&format!("{name} to reach {phase:?}"), WAIT, || async {
        indexes
            .get(name)
            .await
            .ok()
            .filter(|i| i.status.as_ref().is_some_and(|s| s.phase == phase))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_goes_from_apply_to_available_and_is_cleaned_up() {
    install_crypto();
    let api = FakeApiServer::start().await;
    let router = FakeRouter::start().await;
    let (store, data) = store_with_current("tokio");
    let client = api.client();
    let op = Operator::start(
        client.clone(),
        &router.url(),
        &format!("file://{}", store.path().display()),
        "op-a",
        None,
    );

    let indexes: Api<Index> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let manifest = json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
        "metadata": {"name": "tokio", "namespace": NS},
        "spec": {"source": {"git": {"url": "https://github.com/tokio-rs/tokio", "ref": "master"}},
                 "replicas": 2, "deletionPolicy": "Delete"},
    });
    indexes
        .patch("tokio", &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest))
        .await
        .unwrap();

    // The operator adds its finalizer and starts a build.
    let job = first_job(&jobs).await;
    let job_name = job.metadata.name.clone().unwrap();
    let building = phase_is(&indexes, "tokio", Phase::Building).await;
    assert!(
        building
            .metadata
            .finalizers
            .as_ref()
            .unwrap()
            .contains(&"search.trusty.dev/cleanup".to_string())
    );
    assert_eq!(
        building.status.as_ref().unwrap().last_build_job.as_deref(),
        Some(job_name.as_str())
    );
    let args = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(&args[..5], ["index", "build", "/work/src", "--id", "tokio"]);
    assert!(router.calls().is_empty(), "nothing registered while building");

    // Kubelet: the build succeeds; the owned Job's change triggers a reconcile.
    kubelet::succeed(&jobs, &job_name).await;
    let available = phase_is(&indexes, "tokio", Phase::Available).await;
    let st = available.status.unwrap();
    assert_eq!(st.ready_owners.as_deref(), Some("2/2"));
    assert_eq!(st.owners.len(), 2);
    assert_eq!(st.counts.unwrap().chunks, 345);
    assert_eq!(st.observed_generation, available.metadata.generation);
    assert!(router.is_registered("tokio"));
    assert_eq!(
        jobs.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "exactly one build"
    );

    // The data plane degrades: the periodic requeue is 15-60 s, so nudge a
    // reconcile with a spec change that does not rebuild (replicas).
    router.set_owners(
        "tokio",
        vec![(ResidencyState::Hot, None), (ResidencyState::Failed, Some("disk full"))],
    );
    indexes
        .patch(
            "tokio",
            &PatchParams::apply("e2e-test"),
            &Patch::Apply(json!({
                "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
                "metadata": {"name": "tokio", "namespace": NS},
                "spec": {"source": {"git": {"url": "https://github.com/tokio-rs/tokio", "ref": "master"}},
                         "replicas": 2, "deletionPolicy": "Delete", "resetGeneration": 1},
            })),
        )
        .await
        .unwrap();
    let degraded = phase_is(&indexes, "tokio", Phase::Degraded).await;
    assert_eq!(degraded.status.as_ref().unwrap().last_reset_generation, Some(1));
    assert!(
        router
            .call_lines()
            .contains(&"POST /v1/admin/indexes/tokio/reset".to_string())
    );
    assert_eq!(
        jobs.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "a reset of a good build does not rebuild"
    );

    // Events were recorded on the Index.
    let reasons: Vec<String> = api
        .objects(EVENT)
        .iter()
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect();
    for r in ["BuildStarted", "BuildSucceeded", "Registered", "Reset"] {
        assert!(reasons.iter().any(|x| x == r), "missing event {r} in {reasons:?}");
    }

    // Leadership: the Lease names this replica and the gauge says so.
    let lease: Lease = Api::namespaced(client.clone(), LEASE_NAMESPACE)
        .get(LEASE_NAME)
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(op.identity.as_str())
    );
    assert!(op.metrics.render().contains("trusty_operator_leader 1"));

    // Deletion: unregister, remove data, drop the finalizer; the Job goes with its owner.
    indexes.delete("tokio", &DeleteParams::default()).await.unwrap();
    eventually("the Index to be gone", WAIT, || async {
        indexes.get_opt("tokio").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(!router.is_registered("tokio"));
    assert!(!data.exists(), "deletionPolicy Delete removes the index's objects");
    assert!(api.objects(JOB).is_empty(), "owned Jobs are garbage collected");
    assert!(api.objects(INDEX).is_empty());

    op.stop().await;
    let lease: Lease = Api::namespaced(client, LEASE_NAMESPACE).get(LEASE_NAME).await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity,
        None,
        "a stopping leader releases the Lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_named_index_in_another_namespace_conflicts_and_never_touches_the_owners_data() {
    install_crypto();
    let api = FakeApiServer::start().await;
    let router = FakeRouter::start().await;
    let (store, data) = store_with_current("tokio");
    let client = api.client();
    let op = Operator::start(
        client.clone(),
        &router.url(),
        &format!("file://{}", store.path().display()),
        "op-a",
        None,
    );
    let manifest = |ns: &str| {
        json!({
            "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
            "metadata": {"name": "tokio", "namespace": ns},
            "spec": {"source": {"git": {"url": "https://github.com/tokio-rs/tokio", "ref": "master"}},
                     "deletionPolicy": "Delete"},
        })
    };
    let (a, b): (Api<Index>, Api<Index>) = (
        Api::namespaced(client.clone(), NS),
        Api::namespaced(client.clone(), "team-b"),
    );
    a.patch("tokio", &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest(NS)))
        .await
        .unwrap();
    phase_is(&a, "tokio", Phase::Building).await;

    // The second namespace's Index of the same name is refused, builds nothing.
    b.patch(
        "tokio",
        &PatchParams::apply("e2e-test"),
        &Patch::Apply(&manifest("team-b")),
    )
    .await
    .unwrap();
    let refused = phase_is(&b, "tokio", Phase::Failed).await;
    let st = refused.status.unwrap();
    let built = st.conditions.iter().find(|c| c.type_ == "Built").unwrap();
    assert_eq!(built.reason, "Conflict", "{st:?}");
    assert!(st.last_error.unwrap().contains(&format!("belongs to Index {NS}/tokio")));
    let team_b_jobs: Api<Job> = Api::namespaced(client.clone(), "team-b");
    assert!(team_b_jobs.list(&ListParams::default()).await.unwrap().items.is_empty());

    // Deleting it (deletionPolicy Delete) leaves the owner's data and registration alone.
    b.delete("tokio", &DeleteParams::default()).await.unwrap();
    eventually("team-b's Index to be gone", WAIT, || async {
        b.get_opt("tokio").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(
        data.exists(),
        "the owner's objects survive the other namespace's delete"
    );
    assert!(
        !router.call_lines().iter().any(|l| l.starts_with("DELETE")),
        "nothing was unregistered: {:?}",
        router.call_lines()
    );
    assert!(a.get("tokio").await.unwrap().status.unwrap().phase != Phase::Failed);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_build_reports_failed_and_reset_retries() {
    install_crypto();
    let unused = tempfile::tempdir().unwrap();
    let api = FakeApiServer::start().await;
    let router = FakeRouter::start().await;
    let client = api.client();
    let op = Operator::start(
        client.clone(),
        &router.url(),
        &format!("file://{}", unused.path().display()),
        "op-a",
        Some(NS.into()),
    );
    let indexes: Api<Index> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let mut manifest = json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"source": {"volume": {"claimName": "code", "path": "app"}}, "lexicalOnly": true},
    });
    indexes
        .patch("app", &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest))
        .await
        .unwrap();
    let job = first_job(&jobs).await;
    kubelet::fail(
        &jobs,
        job.metadata.name.as_deref().unwrap(),
        "BackoffLimitExceeded",
        "clone failed",
    )
    .await;
    let failed = phase_is(&indexes, "app", Phase::Failed).await;
    assert!(failed.status.unwrap().last_error.unwrap().contains("clone failed"));

    manifest["spec"]["resetGeneration"] = json!(1);
    indexes
        .patch("app", &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest))
        .await
        .unwrap();
    let second = eventually("a retry Job", WAIT, || async {
        let items = jobs.list(&ListParams::default()).await.ok()?.items;
        items.into_iter().find(|j| j.metadata.name != job.metadata.name)
    })
    .await;
    kubelet::succeed(&jobs, second.metadata.name.as_deref().unwrap()).await;
    let ok = phase_is(&indexes, "app", Phase::Available).await;
    assert_eq!(ok.status.unwrap().ready_owners.as_deref(), Some("1/1"));
    op.stop().await;
}

/// Applies Index `app`, a `volume` source (so its Job runs in its own
/// namespace), with `spec` merged into its spec.
async fn apply_app(indexes: &Api<Index>, spec: serde_json::Value) {
    let mut manifest = json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"source": {"volume": {"claimName": "code", "path": "app"}}, "lexicalOnly": true},
    });
    crate::fake_apiserver::merge(&mut manifest["spec"], &spec);
    indexes
        .patch("app", &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest))
        .await
        .unwrap();
}

/// The Built condition of Index `name` once its reason is `reason`.
async fn built_is(indexes: &Api<Index>, name: &str, reason: &str) -> Condition {
    eventually(&format!("Built of {name} to be {reason}"), WAIT, || async {
        let status = indexes.get(name).await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Built" && c.reason == reason)
    })
    .await
}

/// The note of the event with `reason`, once there is one.
fn event_note(api: &FakeApiServer, reason: &str) -> String {
    let events = api.objects(EVENT);
    let event = events.iter().find(|e| e["reason"] == reason);
    let event = event.unwrap_or_else(|| panic!("no {reason} event in {events:#?}"));
    event["note"].as_str().unwrap_or_default().to_string()
}

/// The build binary's error, which only its log has, reaches the Index:
/// its pod's termination message (`FallbackToLogsOnError`) is read into
/// the Built condition and the Warning event; the reason stays BuildFailed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_says_what_its_pod_logged() {
    let f = Fakes::start("app").await;
    let client = f.api.client();
    let op = Operator::start(client.clone(), &f.router.url(), &f.store_url(), "op-a", Some(NS.into()));
    let indexes: Api<Index> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    apply_app(&indexes, json!({})).await;
    let job = first_job(&jobs).await.metadata.name.unwrap();
    let log = "2026-03-01T10:00:00Z  INFO opening the store\n\
               error: object store: s3://bucket/trusty: access denied (status 403): InvalidAccessKeyId\n";
    kubelet::crash(&jobs, &job, 1, log).await;

    let built = built_is(&indexes, "app", "BuildFailed").await;
    let said = format!(
        "pod {job}-0: exit code 1: 2026-03-01T10:00:00Z  INFO opening the store | \
         error: object store: s3://bucket/trusty: access denied (status 403): InvalidAccessKeyId"
    );
    assert!(built.message.contains(&said), "{}", built.message);
    assert!(built.message.contains("BackoffLimitExceeded"), "{}", built.message);
    assert!(event_note(&f.api, "BuildFailed").contains(&said));
    phase_is(&indexes, "app", Phase::Failed).await;
    op.stop().await;
}

/// A rebuild that finds nothing is refused by the real `index build` (a
/// version already serves, so the Job does not pass `--allow-empty`); the
/// binary's own error line is what the Index reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_rebuild_refused_by_the_build_binary_is_reported_with_its_error() {
    let f = Fakes::start("app").await;
    let client = f.api.client();
    let op = Operator::start(client.clone(), &f.router.url(), &f.store_url(), "op-a", Some(NS.into()));
    let indexes: Api<Index> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    apply_app(&indexes, json!({})).await;
    let first = first_job(&jobs).await.metadata.name.unwrap();
    kubelet::succeed(&jobs, &first).await;
    phase_is(&indexes, "app", Phase::Available).await;

    // New filters that match nothing in a source that has nothing.
    apply_app(&indexes, json!({"include": ["nothing/**"]})).await;
    let rebuild = another_job(&jobs, std::slice::from_ref(&first)).await;
    let (source, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::create_dir(source.path().join("app")).unwrap();
    let secrets = std::collections::HashMap::from([("store-creds".to_string(), Vec::new())]);
    let (job, stderr) = kubelet::run(
        &jobs,
        &rebuild,
        &[("/source", source.path()), ("/work", work.path())],
        &secrets,
    )
    .await;
    assert_eq!(
        trusty_operator::jobs::job_outcome(&job),
        trusty_operator::jobs::JobOutcome::Failed {
            message: "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
        },
        "the build was refused:\n{stderr}"
    );
    let error = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(error.starts_with("error: "), "{stderr}");

    let built = built_is(&indexes, "app", "BuildFailed").await;
    let start: String = error.chars().take(120).collect();
    assert!(
        built.message.contains(&format!("pod {rebuild}-0: exit code 1: ")) && built.message.contains(&start),
        "{}\nstderr:\n{stderr}",
        built.message
    );
    op.stop().await;
}

/// A build pod that cannot start (here its store Secret is missing) is
/// reported BuildPending with the kubelet's reason, read from the pod in the
/// shared build namespace where the Job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_pod_that_cannot_start_says_why() {
    let f = Fakes::start("tokio").await;
    let client = f.api.client();
    let op = Operator::start_building_in(client.clone(), &f.router.url(), &f.store_url(), "op-a", "trusty-system");
    let indexes: Api<Index> = Api::namespaced(client.clone(), "team-a");
    let build_jobs: Api<Job> = Api::namespaced(client.clone(), "trusty-system");
    let manifest = json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
        "metadata": {"name": "tokio", "namespace": "team-a"},
        "spec": {"source": {"git": {"url": "https://github.com/tokio-rs/tokio"}}},
    });
    indexes
        .patch("tokio", &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest))
        .await
        .unwrap();
    let job = first_job(&build_jobs).await.metadata.name.unwrap();
    let why = "secret \"store-creds\" not found";
    kubelet::hold(&build_jobs, &job, "CreateContainerConfigError", why).await;

    let built = built_is(&indexes, "tokio", "BuildPending").await;
    let said = format!("the pod {job}-0 of build Job {job} has not started running");
    assert!(built.message.starts_with(&said), "{}", built.message);
    let said = format!("CreateContainerConfigError: {why}; see more with `kubectl -n trusty-system describe pod");
    assert!(built.message.contains(&said), "{}", built.message);
    assert!(event_note(&f.api, "BuildPending").contains(&said));
    op.stop().await;
}

/// An operator whose role does not let it list pods (RBAC from before it
/// read them) reports a failed build as before, from the Job alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_is_reported_without_its_pod_when_pods_cannot_be_listed() {
    let f = Fakes::start("app").await;
    f.api.set_list_forbidden(POD, true);
    let client = f.api.client();
    let op = Operator::start(client.clone(), &f.router.url(), &f.store_url(), "op-a", Some(NS.into()));
    let indexes: Api<Index> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    apply_app(&indexes, json!({})).await;
    let job = first_job(&jobs).await.metadata.name.unwrap();
    kubelet::crash(&jobs, &job, 1, "error: access denied\n").await;

    let built = built_is(&indexes, "app", "BuildFailed").await;
    assert_eq!(
        built.message,
        format!(
            "Job {job} failed: BackoffLimitExceeded: Job has reached the specified backoff limit. \
             Change the source or bump spec.resetGeneration to retry."
        )
    );
    let failed = phase_is(&indexes, "app", Phase::Failed).await;
    assert_eq!(
        failed.status.unwrap().last_error.as_deref(),
        Some(built.message.as_str())
    );
    assert!(event_note(&f.api, "BuildFailed").starts_with(&format!("Job {job} failed")));
    op.stop().await;
}

/// A build Job whose name is not in `seen`.
async fn another_job(jobs: &Api<Job>, seen: &[String]) -> String {
    eventually("another build Job", WAIT, || async {
        let items = jobs.list(&ListParams::default()).await.ok()?.items;
        items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .find(|n| !seen.contains(n))
    })
    .await
}

/// Applies Index `tokio` (a git source) refreshed every `interval`, and
/// waits until the controller has reconciled that spec, so the passes that
/// follow count time by it.
async fn refresh_every(indexes: &Api<Index>, interval: &str) {
    let manifest = json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
        "metadata": {"name": "tokio", "namespace": NS},
        "spec": {"source": {"git": {"url": "https://github.com/tokio-rs/tokio"}}, "refreshInterval": interval},
    });
    let applied = indexes
        .patch("tokio", &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest))
        .await
        .unwrap();
    let generation = applied.metadata.generation.expect("a generation");
    eventually(&format!("a pass with refreshInterval {interval}"), WAIT, || async {
        let observed = indexes.get("tokio").await.ok()?.status?.observed_generation?;
        (observed >= generation).then_some(())
    })
    .await;
}

/// A failed git refresh leaves the previous build serving and is tried again
/// at the next interval; a refresh that lands is reloaded like any new build.
///
/// A refresh comes due only when the test shortens the interval, and each
/// refresh Job ends (as the test decides) only once the interval is long
/// again: so no pass slowed by a loaded machine runs into another interval
/// and starts a build the test does not expect (phase Building).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_serving_and_is_retried_at_the_next_interval() {
    let f = Fakes::start("tokio").await;
    let client = f.api.client();
    let op = Operator::start(client.clone(), &f.router.url(), &f.store_url(), "op-a", Some(NS.into()));
    let indexes: Api<Index> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    // The interval is not part of the source hash: changing it rebuilds nothing.
    refresh_every(&indexes, "1h").await;
    let first = first_job(&jobs).await.metadata.name.unwrap();
    kubelet::succeed(&jobs, &first).await;
    phase_is(&indexes, "tokio", Phase::Available).await;
    let reloads = || {
        let calls = f.router.call_lines();
        calls.iter().filter(|l| l.ends_with("/reload")).count()
    };
    assert_eq!(reloads(), 1);

    // The interval elapses: a refresh build, which fails.
    refresh_every(&indexes, "2s").await;
    let refresh = another_job(&jobs, std::slice::from_ref(&first)).await;
    refresh_every(&indexes, "1h").await;
    kubelet::fail(&jobs, &refresh, "BackoffLimitExceeded", "remote hung up").await;
    let built = |i: &Index| {
        let st = i.status.as_ref()?;
        st.conditions.iter().find(|c| c.type_ == "Built").cloned()
    };
    let refresh_failed = eventually("Built to say the refresh failed", WAIT, || async {
        let i = indexes.get("tokio").await.ok()?;
        built(&i).filter(|c| c.reason == "RefreshFailed").map(|c| (c, i))
    })
    .await;
    let (cond, index) = refresh_failed;
    assert_eq!(cond.status, "True", "the previous build keeps serving: {cond:?}");
    assert!(
        cond.message.contains(&refresh) && cond.message.contains("remote hung up"),
        "{}",
        cond.message
    );
    assert_eq!(index.status.unwrap().phase, Phase::Available);
    assert_eq!(op.metrics.indexes_failed.get(), 0, "serving, not a failed build");
    assert!(
        f.api.objects(EVENT).iter().any(|e| e["reason"] == "RefreshFailed"),
        "a Warning event says so"
    );

    // The next interval tries again; the new build is reloaded on the owners.
    refresh_every(&indexes, "2s").await;
    let retry = another_job(&jobs, &[first, refresh]).await;
    refresh_every(&indexes, "1h").await;
    kubelet::succeed(&jobs, &retry).await;
    eventually("the refreshed build to land", WAIT, || async {
        let i = indexes.get("tokio").await.ok()?;
        built(&i).filter(|c| c.reason == "BuildSucceeded" && c.message.contains(&retry))
    })
    .await;
    eventually("the refreshed build to be reloaded", WAIT, || async {
        (reloads() == 2).then_some(())
    })
    .await;
    phase_is(&indexes, "tokio", Phase::Available).await;
    assert_eq!(
        jobs.list(&ListParams::default()).await.unwrap().items.len(),
        3,
        "the build, the refresh and its retry: changing the interval rebuilt nothing"
    );
    op.stop().await;
}

/// Waits until `metrics` counts `n` Indexes with a failed build.
async fn failed_builds_are(metrics: &trusty_operator::metrics::Metrics, n: i64) {
    eventually(&format!("{n} failed build(s) in the gauge"), WAIT, move || async move {
        (metrics.indexes_failed.get() == n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_builds_are_counted_until_rebuilt_deleted_or_no_longer_led() {
    install_crypto();
    let unused = tempfile::tempdir().unwrap();
    let store = format!("file://{}", unused.path().display());
    let api = FakeApiServer::start().await;
    let router = FakeRouter::start().await;
    let client = api.client();
    let op = Operator::start(client.clone(), &router.url(), &store, "op-a", Some(NS.into()));
    let indexes: Api<Index> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let manifest = |name: &str, reset: i64| {
        json!({
            "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"source": {"volume": {"claimName": "code", "path": name}}, "lexicalOnly": true,
                     "resetGeneration": reset},
        })
    };
    let job_of = |name: &'static str| {
        let jobs = jobs.clone();
        async move {
            eventually(&format!("a build Job of {name}"), WAIT, || async {
                let selector = format!("{}={name}", trusty_operator::jobs::INDEX_LABEL);
                let items = jobs.list(&ListParams::default().labels(&selector)).await.ok()?.items;
                items
                    .into_iter()
                    .find(|j| j.status.as_ref().is_none_or(|s| s.failed.is_none()))
            })
            .await
        }
    };
    let apply = |name: &'static str, reset: i64| {
        let indexes = indexes.clone();
        async move {
            indexes
                .patch(
                    name,
                    &PatchParams::apply("e2e-test"),
                    &Patch::Apply(manifest(name, reset)),
                )
                .await
                .unwrap();
        }
    };
    assert_eq!(op.metrics.indexes_failed.get(), 0);

    // Two builds fail: each Index counts once, however often it is reconciled.
    for name in ["app", "lib"] {
        apply(name, 0).await;
        let job = job_of(name).await;
        kubelet::fail(
            &jobs,
            job.metadata.name.as_deref().unwrap(),
            "BackoffLimitExceeded",
            "clone failed",
        )
        .await;
        phase_is(&indexes, name, Phase::Failed).await;
    }
    failed_builds_are(&op.metrics, 2).await;

    // A retry lowers it, and its success keeps it down.
    apply("app", 1).await;
    let retry = job_of("app").await;
    kubelet::succeed(&jobs, retry.metadata.name.as_deref().unwrap()).await;
    phase_is(&indexes, "app", Phase::Available).await;
    failed_builds_are(&op.metrics, 1).await;

    // A replica that stops leading stops reporting; the next leader counts afresh.
    let first = op.metrics.clone();
    op.stop().await;
    failed_builds_are(&first, 0).await;
    let op = Operator::start(client.clone(), &router.url(), &store, "op-b", Some(NS.into()));
    failed_builds_are(&op.metrics, 1).await;

    // Deleting the Index with the failed build lowers it.
    indexes.delete("lib", &DeleteParams::default()).await.unwrap();
    eventually("lib to be gone", WAIT, || async {
        indexes.get_opt("lib").await.unwrap().is_none().then_some(())
    })
    .await;
    failed_builds_are(&op.metrics, 0).await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_index_stops_its_running_build_before_removing_data() {
    let f = Fakes::start("app").await;
    let (api, data) = (&f.api, &f.data);
    let client = api.client();
    let op = Operator::start(client.clone(), &f.router.url(), &f.store_url(), "op-a", Some(NS.into()));
    let indexes: Api<Index> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let manifest = json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"source": {"volume": {"claimName": "code", "path": "app"}}, "lexicalOnly": true,
                 "deletionPolicy": "Delete"},
    });
    indexes
        .patch("app", &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest))
        .await
        .unwrap();
    let job = first_job(&jobs).await;
    let job_name = job.metadata.name.clone().unwrap();
    phase_is(&indexes, "app", Phase::Building).await;
    // Its pod is still running: the Job cannot go before the pod does.
    jobs.patch(
        &job_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["test.trusty.dev/pod-running"]}})),
    )
    .await
    .unwrap();

    indexes.delete("app", &DeleteParams::default()).await.unwrap();
    eventually("the running build Job to be told to stop", WAIT, || async {
        jobs.get(&job_name)
            .await
            .ok()
            .filter(|j| j.metadata.deletion_timestamp.is_some())
    })
    .await;
    // A few deletion passes later the data is still there, and so is the Index.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(data.exists(), "data stays while a build that could publish is running");
    assert!(indexes.get_opt("app").await.unwrap().is_some());

    // The pod ends: the Job goes, and deletion completes.
    jobs.patch(
        &job_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("the Index to be gone", WAIT, || async {
        indexes.get_opt("app").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(!data.exists(), "deletionPolicy Delete removes the index's objects");
    let reasons: Vec<String> = api
        .objects(EVENT)
        .iter()
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect();
    assert!(reasons.iter().any(|r| r == "BuildStopped"), "{reasons:?}");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_run_in_the_shared_build_namespace_and_still_drive_their_index() {
    let f = Fakes::start("tokio").await;
    let (router, data) = (&f.router, &f.data);
    let client = f.api.client();
    let op = Operator::start_building_in(client.clone(), &router.url(), &f.store_url(), "op-a", "trusty-system");
    let indexes: Api<Index> = Api::namespaced(client.clone(), "team-a");
    let tenant_jobs: Api<Job> = Api::namespaced(client.clone(), "team-a");
    let build_jobs: Api<Job> = Api::namespaced(client.clone(), "trusty-system");
    let manifest = json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
        "metadata": {"name": "tokio", "namespace": "team-a"},
        "spec": {"source": {"git": {"url": "https://github.com/tokio-rs/tokio", "ref": "master"}},
                 "deletionPolicy": "Delete"},
    });
    indexes
        .patch("tokio", &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest))
        .await
        .unwrap();

    let job = first_job(&build_jobs).await;
    let name = job.metadata.name.clone().unwrap();
    assert!(job.metadata.owner_references.is_none());
    assert!(
        tenant_jobs.list(&ListParams::default()).await.unwrap().items.is_empty(),
        "nothing runs in the tenant's namespace"
    );
    let env_from = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
        .env_from
        .clone()
        .unwrap();
    assert_eq!(env_from[0].secret_ref.as_ref().unwrap().name, "store-creds");

    // The Job's change reaches its Index through the labels, not an owner reference.
    kubelet::succeed(&build_jobs, &name).await;
    phase_is(&indexes, "tokio", Phase::Available).await;
    assert!(router.is_registered("tokio"));

    indexes.delete("tokio", &DeleteParams::default()).await.unwrap();
    eventually("the Index to be gone", WAIT, || async {
        indexes.get_opt("tokio").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(!data.exists());
    op.stop().await;
}

/// The chart's default role: Job and pod rights in the build namespace
/// only. The operator watches, builds, follows and cleans up there and
/// nowhere else (the API server refuses it nothing), and an Index with a
/// `volume` source in a tenant's namespace says which chart value allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_need_job_rights_in_the_build_namespace_only() {
    let f = Fakes::start("tokio").await;
    f.api.confine(JOB, "trusty-system");
    f.api.confine(POD, "trusty-system");
    let client = f.api.client();
    let op = Operator::start_building_in(client.clone(), &f.router.url(), &f.store_url(), "op-a", "trusty-system");
    let indexes: Api<Index> = Api::namespaced(client.clone(), "team-a");
    let build_jobs: Api<Job> = Api::namespaced(client.clone(), "trusty-system");
    for (name, source) in [
        ("tokio", json!({"git": {"url": "https://github.com/tokio-rs/tokio"}})),
        ("app", json!({"volume": {"claimName": "code", "path": "app"}})),
    ] {
        let manifest = json!({
            "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": {"source": source, "deletionPolicy": "Delete"},
        });
        indexes
            .patch(name, &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest))
            .await
            .unwrap();
    }

    let refused = built_is(&indexes, "app", "VolumeSourceNotAllowed").await;
    assert!(
        refused.message.contains("operator.build.volumeSources=true"),
        "{}",
        refused.message
    );
    phase_is(&indexes, "app", Phase::Failed).await;
    let job = first_job(&build_jobs).await.metadata.name.unwrap();
    kubelet::succeed(&build_jobs, &job).await;
    phase_is(&indexes, "tokio", Phase::Available).await;
    assert_eq!(build_jobs.list(&ListParams::default()).await.unwrap().items.len(), 1);

    for name in ["tokio", "app"] {
        indexes.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually("both Indexes to be gone", WAIT, || async {
        indexes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(!f.data.exists());
    assert_eq!(f.api.refused(), Vec::<String>::new(), "no request outside the role");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_name_is_reported_by_the_running_controller() {
    install_crypto();
    let api = FakeApiServer::start().await;
    let router = FakeRouter::start().await;
    let client = api.client();
    let op = Operator::start(client.clone(), &router.url(), "file:///tmp/unused-store", "op-a", None);
    let indexes: Api<Index> = Api::namespaced(client.clone(), NS);
    let name = "a".repeat(70);
    let manifest = json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"source": {"objectStore": {"prefix": "s3://b/p"}}},
    });
    indexes
        .patch(&name, &PatchParams::apply("e2e-test"), &Patch::Apply(&manifest))
        .await
        .unwrap();
    let failed = phase_is(&indexes, &name, Phase::Failed).await;
    let st = failed.status.unwrap();
    let built = st.conditions.iter().find(|c| c.type_ == "Built").unwrap();
    assert_eq!(built.reason, "InvalidName");
    assert!(
        failed.metadata.finalizers.unwrap_or_default().is_empty(),
        "no finalizer on an Index that is never served"
    );
    assert!(router.calls().is_empty());
    op.stop().await;
}

#[tokio::test]
async fn missing_crd_is_detected_at_start() {
    install_crypto();
    let api = FakeApiServer::start_with(vec![JOB, LEASE, EVENT]).await;
    let err = controller::check_crd_installed(api.client(), None).await.unwrap_err();
    assert!(matches!(err, trusty_operator::Error::CrdNotInstalled), "{err}");
    assert!(err.to_string().contains("kubectl apply -f manifests/crds/index.yaml"));
    let with_crd = FakeApiServer::start().await;
    controller::check_crd_installed(with_crd.client(), Some(NS))
        .await
        .unwrap();
}

/// A leader elector running in the background whose work only records
/// whether it runs and when it was last stopped.
struct Leading {
    running: Arc<std::sync::atomic::AtomicBool>,
    stopped_at: Arc<std::sync::Mutex<Option<std::time::SystemTime>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    elector: tokio::task::JoinHandle<()>,
}

impl Leading {
    fn start(elector: LeaderElector) -> Leading {
        use std::sync::atomic::{AtomicBool, Ordering};
        /// Set while the leader's work runs; cleared (with the time) when it is dropped.
        struct Running(Arc<AtomicBool>, Arc<std::sync::Mutex<Option<std::time::SystemTime>>>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
                *self.1.lock().unwrap() = Some(std::time::SystemTime::now());
            }
        }
        let running = Arc::new(AtomicBool::new(false));
        let stopped_at = Arc::new(std::sync::Mutex::new(None));
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let (r, at) = (running.clone(), stopped_at.clone());
        let elector = tokio::spawn(async move {
            elector
                .run(
                    Arc::new(trusty_operator::metrics::Metrics::new()),
                    async {
                        let _ = rx.await;
                    },
                    move || {
                        let guard = Running(r.clone(), at.clone());
                        r.store(true, Ordering::SeqCst);
                        async move {
                            let _guard = guard;
                            std::future::pending::<()>().await;
                        }
                    },
                )
                .await
        });
        Leading {
            running,
            stopped_at,
            stop,
            elector,
        }
    }

    fn is_running(&self) -> bool {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.elector).await;
    }
}

/// The `renewTime` of the stored Lease.
fn stored_renew_time(api: &FakeApiServer) -> std::time::SystemTime {
    let stored = api.objects(LEASE).pop().expect("the Lease exists");
    let renewed: k8s_openapi::jiff::Timestamp = stored["spec"]["renewTime"].as_str().unwrap().parse().unwrap();
    std::time::UNIX_EPOCH + Duration::from_micros(renewed.as_microsecond() as u64)
}

/// A leader whose API connection hangs (requests accepted, never answered)
/// stops its controller before its Lease expires, so no other replica can
/// take over while it still reconciles; once the API answers again it renews
/// and leads again.
#[tokio::test]
async fn hung_api_stops_the_leader_before_its_lease_expires() {
    install_crypto();
    let api = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(api.client(), LEASE_NAMESPACE);
    // Renew deadline 6 s: the leader stops 3 s before the lease expires, room
    // for this runtime's one thread (shared with the fake API server) to be
    // late on a loaded machine; a leader that waits for the lease to expire
    // is still caught.
    let lease_duration = Duration::from_secs(9);
    let a = LeaderElector::new(leases.clone(), LEASE_NAME, "a", lease_duration);
    let leading = Leading::start(a);
    let wait = Duration::from_secs(60);
    eventually("a leads", wait, || async { leading.is_running().then_some(()) }).await;

    api.set_hung(LEASE, true);
    eventually("a stops leading while the API hangs", wait, || async {
        (!leading.is_running()).then_some(())
    })
    .await;
    // The Lease as stored: its last renewal plus its duration is when another
    // replica could have taken over; the old leader had stopped before then.
    let expires = stored_renew_time(&api) + lease_duration;
    let stopped = leading.stopped_at.lock().unwrap().expect("stop time recorded");
    assert!(
        stopped < expires,
        "the leader stopped at {stopped:?}, after its lease expired at {expires:?}"
    );

    // The API answers again: a renews its own lease and leads again, and
    // another replica stands by.
    api.set_hung(LEASE, false);
    eventually("a leads again once the API answers", wait, || async {
        leading.is_running().then_some(())
    })
    .await;
    let b = LeaderElector::new(leases.clone(), LEASE_NAME, "b", lease_duration);
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        LeaseState::Following { holder: "a".into() }
    );
    leading.stop().await;
}

/// The renew deadline holds however the time goes: a slow renewal followed
/// by a hung one stops the leader when the deadline passes, not when the
/// hung round gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stops_at_its_renew_deadline_even_mid_round() {
    install_crypto();
    let api = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(api.client(), LEASE_NAMESPACE);
    // Rounds every 4 s (and time out after 4 s); the renew deadline is 8 s.
    let lease_duration = Duration::from_secs(12);
    let renew_deadline = lease_duration * 2 / 3;
    let leading = Leading::start(LeaderElector::new(leases, LEASE_NAME, "a", lease_duration));
    let wait = Duration::from_secs(60);
    eventually("a leads", wait, || async { leading.is_running().then_some(()) }).await;

    // Renewals get slow (3.2 s of a round's 4 s), then the API hangs. A
    // renewal time after this is a round's delayed throughout: the next
    // round starts 7.2 s after that time and would give up at 11.2 s, 3.2 s
    // past the deadline.
    api.set_delay(LEASE, Duration::from_millis(1600));
    let slow_from = std::time::SystemTime::now();
    eventually("a slow renewal", wait, || async {
        (stored_renew_time(&api) > slow_from).then_some(())
    })
    .await;
    api.set_hung(LEASE, true);
    eventually("a stops leading", wait, || async {
        (!leading.is_running()).then_some(())
    })
    .await;
    // 2 s of slack for a loaded machine; a leader that stopped only when
    // the hung round gave up would be 3.2 s late.
    let deadline = stored_renew_time(&api) + renew_deadline;
    let stopped = leading.stopped_at.lock().unwrap().expect("stop time recorded");
    assert!(
        stopped < deadline + Duration::from_secs(2),
        "stopped {:?} after the renew deadline",
        stopped.duration_since(deadline).unwrap_or_default()
    );
    api.set_hung(LEASE, false);
    leading.stop().await;
}

#[tokio::test]
async fn only_one_replica_leads() {
    install_crypto();
    let api = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(api.client(), LEASE_NAMESPACE);
    // Long enough that no pass of this test, however slow, outlives it: the
    // lease expires only when the test says so.
    let lease_duration = Duration::from_secs(30);
    let a = LeaderElector::new(leases.clone(), LEASE_NAME, "a", lease_duration);
    let b = LeaderElector::new(leases.clone(), LEASE_NAME, "b", lease_duration);
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), LeaseState::Leading);
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        LeaseState::Following { holder: "a".into() }
    );
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), LeaseState::Leading, "renewal");
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        LeaseState::Following { holder: "a".into() },
        "a renewed lease is not taken over"
    );

    // a stops renewing: once the lease duration has passed since its last
    // renewal (written here as long ago), b takes over, and a sees it.
    let long_ago = k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(61);
    let renew_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(long_ago);
    leases
        .patch(
            LEASE_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": renew_time}})),
        )
        .await
        .unwrap();
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), LeaseState::Leading);
    assert_eq!(
        a.try_acquire_or_renew().await.unwrap(),
        LeaseState::Following { holder: "b".into() }
    );
    let lease = leases.get(LEASE_NAME).await.unwrap().spec.unwrap();
    assert_eq!(lease.lease_transitions, Some(1));

    // b releases on shutdown: a acquires immediately.
    b.release().await.unwrap();
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), LeaseState::Leading);
    // Releasing a lease held by someone else is a no-op.
    b.release().await.unwrap();
    assert_eq!(
        leases
            .get(LEASE_NAME)
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("a")
    );
}
