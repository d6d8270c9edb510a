//! One reconcile per scenario against the mocked API server (tower-test) and
//! the fake router: each test lists the exact Kubernetes requests the
//! reconciler must make and checks what it wrote.

use crate::fake_router::{self, FakeRouter, TOKEN};
use crate::verifier::{ApiServerVerifier, pod_list, status_403, status_404};
use http::{Method, Request, Response};
use kube::{Client, client::Body, runtime::controller::Action};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use trusty_operator::{
    Context, Error, Index,
    controller::{REQUEUE_CONVERGING, REQUEUE_STABLE, error_policy, reconcile},
    jobs::{self, BuildConfig},
    metrics::Metrics,
    router_client::RouterClient,
};
use trusty_search::api::types::ResidencyState;

const NS: &str = "default";
const INDEXES: &str = "/apis/search.trusty.dev/v1alpha1/namespaces/default/indexes";
const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";

fn context(router_url: &str, store: &str) -> (Arc<Context>, ApiServerVerifier) {
    context_building_in(router_url, store, None, false)
}

/// A context whose build Jobs run in `namespace` (the chart's shared build
/// namespace), or in each Index's own with `None`; `volume_sources` lets
/// volume sources build in their own namespace beside a shared one.
fn context_building_in(
    router_url: &str,
    store: &str,
    namespace: Option<&str>,
    volume_sources: bool,
) -> (Arc<Context>, ApiServerVerifier) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, NS);
    let router = RouterClient::new(router_url, Some(TOKEN.into())).unwrap();
    let build = BuildConfig {
        image: "registry.example/trusty-search:test".into(),
        store: store.into(),
        store_secret: Some("store-creds".into()),
        // The tests import from temporary directories.
        import_from: vec!["file:///".into()],
        namespace: namespace.map(str::to_string),
        volume_sources,
        ..Default::default()
    };
    let ctx = Context::new(client, router, build, Arc::new(Metrics::new()), Some("test".into()));
    (Arc::new(ctx), ApiServerVerifier(handle))
}

fn index_obj(name: &str, spec: Value, status: Option<Value>) -> Value {
    let mut obj = json!({
        "apiVersion": "search.trusty.dev/v1alpha1",
        "kind": "Index",
        "metadata": {
            "name": name, "namespace": NS, "uid": "6f1c7c3e-uid", "generation": 2,
            "resourceVersion": "10", "finalizers": ["search.trusty.dev/cleanup"],
        },
        "spec": spec,
    });
    if let Some(s) = status {
        obj["status"] = s;
    }
    obj
}

fn git_spec() -> Value {
    json!({"source": {"git": {"url": "https://github.com/tokio-rs/tokio", "ref": "v1.40.0"}}, "replicas": 2,
           "languages": ["rust"]})
}

fn object_store_spec() -> Value {
    json!({"source": {"objectStore": {"prefix": "memory://trusty-reconcile"}}, "replicas": 1})
}

/// Runs one reconcile while `script` plays the API server; returns the
/// reconcile result after checking the script saw every request and no more.
async fn run<F, Fut>(ctx: Arc<Context>, verifier: ApiServerVerifier, obj: &Value, script: F) -> Result<Action, Error>
where
    F: FnOnce(ApiServerVerifier) -> Fut,
    Fut: Future<Output = ApiServerVerifier> + Send + 'static,
{
    let index: Index = serde_json::from_value(obj.clone()).expect("test object is a valid Index");
    let server = tokio::spawn(script(verifier));
    let result = tokio::time::timeout(Duration::from_secs(30), reconcile(Arc::new(index), ctx))
        .await
        .expect("reconcile hung: it made a request the scenario does not answer");
    let verifier = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("scenario did not finish")
        .expect("scenario assertions");
    verifier.expect_silence().await;
    result
}

fn cond<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status:#}"))
}

fn spec_of(obj: &Value) -> trusty_operator::IndexSpec {
    serde_json::from_value(obj["spec"].clone()).unwrap()
}

#[tokio::test]
async fn index_without_finalizer_gets_it_first() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "file:///unused");
    let mut obj = index_obj("tokio", git_spec(), None);
    obj["metadata"].as_object_mut().unwrap().remove("finalizers");
    let o = obj.clone();
    let action = run(ctx, verifier, &obj, move |mut api| async move {
        let seen = api
            .expect(Method::PATCH, &format!("{INDEXES}/tokio"), |_| (200, o.clone()))
            .await;
        assert_eq!(seen.content_type, "application/json-patch+json");
        assert_eq!(
            seen.body[1],
            json!({"op": "add", "path": "/metadata/finalizers", "value": ["search.trusty.dev/cleanup"]})
        );
        api
    })
    .await
    .unwrap();
    assert_eq!(action, Action::await_change());
    assert!(router.calls().is_empty());
}

#[tokio::test]
async fn new_index_creates_build_job_and_reports_building() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let obj = index_obj("tokio", git_spec(), None);
    let hash = jobs::source_hash(&spec_of(&obj));
    let job_name = jobs::job_name("tokio", &hash, 0, "");
    let (o, jn) = (obj.clone(), job_name.clone());
    let action = run(ctx, verifier, &obj, move |mut api| async move {
        let job = api.expect(Method::POST, JOBS, |s| (201, s.body.clone())).await.body;
        assert_eq!(job["metadata"]["name"], jn.as_str());
        assert_eq!(job["metadata"]["ownerReferences"][0]["name"], "tokio");
        assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            job["metadata"]["annotations"]["search.trusty.dev/source-hash"],
            hash.as_str()
        );
        assert_eq!(
            job["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "trusty-operator"
        );
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "registry.example/trusty-search:test");
        assert_eq!(
            container["args"],
            json!([
                "index",
                "build",
                "/work/src",
                "--id",
                "tokio",
                "--store",
                "memory://trusty-reconcile",
                "--git-url",
                "https://github.com/tokio-rs/tokio",
                "--git-ref",
                "v1.40.0",
                "--lang",
                "rust",
                "--allow-empty"
            ])
        );
        assert_eq!(container["envFrom"][0]["secretRef"]["name"], "store-creds");
        api.expect_event(NS, "BuildStarted").await;
        let status = api.expect_status_apply(NS, "tokio", &o).await;
        assert_eq!(status["phase"], "Building");
        assert_eq!(status["lastBuildJob"], jn.as_str());
        assert_eq!(status["observedGeneration"], 2);
        assert_eq!(cond(&status, "Built")["status"], "False");
        assert_eq!(cond(&status, "Built")["reason"], "Building");
        api
    })
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(REQUEUE_CONVERGING));
    assert!(
        router.calls().is_empty(),
        "nothing to register before the build: {:?}",
        router.call_lines()
    );
}

async fn job_succeeded_scenario(owners: Option<Vec<(ResidencyState, Option<&str>)>>) -> (Value, Action, FakeRouter) {
    let router = FakeRouter::start().await;
    if let Some(o) = owners {
        router.set_owners("tokio", o);
    }
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let spec = git_spec();
    let hash = jobs::source_hash(&serde_json::from_value(spec.clone()).unwrap());
    let job_name = jobs::job_name("tokio", &hash, 0, "");
    let obj = index_obj(
        "tokio",
        spec,
        Some(json!({"phase": "Building", "lastBuildJob": job_name,
                    "conditions": [{"type": "Built", "status": "False", "reason": "Building", "message": "running",
                                    "lastTransitionTime": "2025-01-01T00:00:00Z"}]})),
    );
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name, "namespace": NS,
                     "annotations": {"search.trusty.dev/source-hash": hash}},
        "status": {"succeeded": 1, "completionTime": "2025-01-02T03:04:05Z",
                   "conditions": [{"type": "Complete", "status": "True"}]},
    });
    let (o, jn) = (obj.clone(), job_name.clone());
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let action = run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/{jn}"), |_| (200, job)).await;
        api.expect_event(NS, "BuildSucceeded").await;
        api.expect_event(NS, "Registered").await;
        *w.lock().unwrap() = api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .unwrap();
    let status = written.lock().unwrap().clone();
    (status, action, router)
}

#[tokio::test]
async fn job_succeeded_registers_and_reports_available() {
    let (status, action, router) = job_succeeded_scenario(None).await;
    assert_eq!(
        router.call_lines(),
        vec![
            "POST /v1/admin/indexes/tokio",
            "POST /v1/admin/indexes/tokio/reload",
            "GET /v1/indexes/tokio"
        ]
    );
    let calls = router.calls();
    assert_eq!(
        calls[0].body,
        Some(json!({"replicas": 2, "preload": true})),
        "a new version is preloaded"
    );
    assert!(
        calls[0].authorized && calls[1].authorized,
        "admin calls carry the bearer token"
    );
    assert_eq!(status["phase"], "Available");
    assert_eq!(status["readyOwners"], "2/2");
    assert_eq!(status["currentVersion"], "v20250101-abc");
    assert_eq!(status["counts"], json!({"files": 12, "chunks": 345}));
    assert_eq!(status["lastBuildTime"], "2025-01-02T03:04:05Z");
    assert!(status["sourceHash"].is_string());
    assert_eq!(
        status["sourceRevision"],
        "git https://github.com/tokio-rs/tokio@v1.40.0"
    );
    assert_eq!(cond(&status, "Built")["status"], "True");
    assert_eq!(cond(&status, "Published")["status"], "True");
    assert_eq!(cond(&status, "Available")["status"], "True");
    assert_eq!(cond(&status, "Degraded")["status"], "False");
    assert_eq!(
        status["owners"][1],
        json!({"shard": "trusty-shard-1", "state": "hot", "version": "v20250101-abc",
                                           "lastLoadTime": "2025-01-01T00:00:00Z"})
    );
    assert_eq!(action, Action::requeue(REQUEUE_STABLE));
}

#[tokio::test]
async fn job_succeeded_with_a_failed_owner_is_degraded() {
    let owners = vec![
        (ResidencyState::Hot, None),
        (ResidencyState::Failed, Some("checksum mismatch in bm25/meta.json")),
    ];
    let (status, action, _router) = job_succeeded_scenario(Some(owners)).await;
    assert_eq!(status["phase"], "Degraded");
    assert_eq!(status["readyOwners"], "1/2");
    assert_eq!(cond(&status, "Available")["status"], "True");
    assert_eq!(cond(&status, "Degraded")["status"], "True");
    let msg = cond(&status, "Degraded")["message"].as_str().unwrap();
    assert!(msg.contains("trusty-shard-1: checksum mismatch"), "{msg}");
    assert_eq!(status["owners"][1]["lastError"], "checksum mismatch in bm25/meta.json");
    assert_eq!(action, Action::requeue(REQUEUE_CONVERGING));
}

/// A pod of build Job `job` whose container exited 1 with `log` as its
/// termination message.
fn failed_pod(job: &str, log: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("{job}-x7k2p"), "namespace": NS, "creationTimestamp": "2026-03-01T10:00:00Z",
                        "labels": {"batch.kubernetes.io/job-name": job, "job-name": job}},
           "status": {"phase": "Failed", "containerStatuses": [{
               "name": "build", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": log}}}]}})
}

/// The Index of [`failed_build_is_reported_and_not_retried_until_reset`],
/// its failed Job's name, and that Job.
fn failed_build() -> (Value, String, Value) {
    let spec = git_spec();
    let hash = jobs::source_hash(&serde_json::from_value(spec.clone()).unwrap());
    let job_name = jobs::job_name("tokio", &hash, 0, "");
    let obj = index_obj(
        "tokio",
        spec,
        Some(json!({"phase": "Building", "lastBuildJob": job_name})),
    );
    let failed_job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name, "namespace": NS, "annotations": {"search.trusty.dev/source-hash": hash}},
        "status": {"failed": 3, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                "message": "Job has reached the specified backoff limit"}]},
    });
    (obj, job_name, failed_job)
}

#[tokio::test]
async fn failed_build_is_reported_and_not_retried_until_reset() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let (obj, job_name, failed_job) = failed_build();
    let hash = jobs::source_hash(&spec_of(&obj));
    let log = "2026-03-01T10:00:02Z  INFO walked 0 files\n\
               error: refusing to publish an empty index: nothing to index under /work/src\n";
    let (o, jn, fj) = (obj.clone(), job_name.clone(), failed_job.clone());
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let action = run(ctx.clone(), verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/{jn}"), |_| (200, fj)).await;
        api.expect_job_pods(NS, &jn, pod_list(vec![failed_pod(&jn, log)])).await;
        let ev = api.expect_event(NS, "BuildFailed").await;
        assert_eq!(ev.body["type"], "Warning");
        let note = ev.body["note"].as_str().unwrap();
        assert!(note.contains("error: refusing to publish an empty index"), "{note}");
        *w.lock().unwrap() = api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .unwrap();
    let status = written.lock().unwrap().clone();
    assert_eq!(status["phase"], "Failed");
    assert_eq!(cond(&status, "Built")["reason"], "BuildFailed");
    let msg = cond(&status, "Built")["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "BackoffLimitExceeded: Job has reached the specified backoff limit; pod {job_name}-x7k2p: exit code 1: \
             2026-03-01T10:00:02Z  INFO walked 0 files | \
             error: refusing to publish an empty index: nothing to index under /work/src"
        )),
        "{msg}"
    );
    assert!(msg.contains("resetGeneration"), "tells the user how to retry: {msg}");
    assert_eq!(action, Action::await_change());
    assert!(router.calls().is_empty());

    // Same inputs again: the failed Job is seen, nothing new is created, its
    // pods are not asked again, status unchanged (no write).
    let mut again = obj.clone();
    again["status"] = status.clone();
    let (ctx2, verifier2) = context(&router.url(), "memory://trusty-reconcile");
    let (jn, fj) = (job_name.clone(), failed_job.clone());
    run(ctx2, verifier2, &again, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/{jn}"), |_| (200, fj)).await;
        api
    })
    .await
    .unwrap();

    // The Job (and its pods) gone with its TTL: the report stays as it was.
    let (ctx2, verifier2) = context(&router.url(), "memory://trusty-reconcile");
    let jn = job_name.clone();
    run(ctx2, verifier2, &again, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/{jn}"), |_| status_404("jobs"))
            .await;
        api
    })
    .await
    .unwrap();

    // resetGeneration bumped: a new Job (new name) is created.
    let mut reset = again.clone();
    reset["spec"]["resetGeneration"] = json!(1);
    let new_name = jobs::job_name("tokio", &hash, 1, "");
    assert_ne!(new_name, job_name);
    let (ctx3, verifier3) = context(&router.url(), "memory://trusty-reconcile");
    let (jn, nn, o) = (job_name.clone(), new_name.clone(), reset.clone());
    run(ctx3, verifier3, &reset, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/{jn}"), |_| (200, failed_job))
            .await;
        let job = api.expect(Method::POST, JOBS, |s| (201, s.body.clone())).await;
        assert_eq!(job.body["metadata"]["name"], nn.as_str());
        api.expect_event(NS, "BuildStarted").await;
        let st = api.expect_status_apply(NS, "tokio", &o).await;
        assert_eq!(st["phase"], "Building");
        assert_eq!(st["lastBuildJob"], nn.as_str());
        api
    })
    .await
    .unwrap();
}

/// An operator whose role cannot list pods (RBAC from before it read them)
/// still reports the failure, with what the Job says.
#[tokio::test]
async fn a_failed_build_whose_pods_cannot_be_listed_is_reported_without_them() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let (obj, job_name, failed_job) = failed_build();
    let (o, jn) = (obj.clone(), job_name.clone());
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let action = run(ctx.clone(), verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/{jn}"), |_| (200, failed_job))
            .await;
        api.expect_job_pods(NS, &jn, status_403("pods")).await;
        api.expect_event(NS, "BuildFailed").await;
        *w.lock().unwrap() = api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .expect("the reconcile succeeds");
    assert_eq!(action, Action::await_change());
    let status = written.lock().unwrap().clone();
    assert_eq!(status["phase"], "Failed");
    let built = cond(&status, "Built");
    assert_eq!(built["reason"], "BuildFailed");
    assert_eq!(
        built["message"],
        format!(
            "Job {job_name} failed: BackoffLimitExceeded: Job has reached the specified backoff limit. \
             Change the source or bump spec.resetGeneration to retry."
        )
    );
    assert_eq!(ctx.metrics.indexes_failed.get(), 1);
}

#[tokio::test]
async fn source_change_while_building_replaces_the_job() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let obj = index_obj(
        "tokio",
        git_spec(),
        Some(json!({"phase": "Building", "lastBuildJob": "tokio-old0000000"})),
    );
    let running_old = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "tokio-old0000000", "namespace": NS, "annotations": {"search.trusty.dev/source-hash": "0123"}},
        "status": {"active": 1}});
    let o = obj.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/tokio-old0000000"), |_| {
            (200, running_old.clone())
        })
        .await;
        let del = api
            .expect(Method::DELETE, &format!("{JOBS}/tokio-old0000000"), |_| {
                (200, running_old)
            })
            .await;
        assert_eq!(del.body["propagationPolicy"], "Background");
        api.expect_event(NS, "BuildSuperseded").await;
        api.expect(Method::POST, JOBS, |s| (201, s.body.clone())).await;
        api.expect_event(NS, "BuildStarted").await;
        api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .unwrap();
}

/// A build Job whose pod never starts (an image it cannot pull, a missing
/// Secret) stays active until its deadline: the Index says so, with how to
/// see why, and keeps Building; nothing is failed or deleted. The Job
/// started in 2020, so it has waited past the threshold whatever the clock says.
#[tokio::test]
async fn a_build_whose_pod_does_not_start_is_reported_pending_and_keeps_building() {
    let router = FakeRouter::start().await;
    let spec = git_spec();
    let hash = jobs::source_hash(&serde_json::from_value(spec.clone()).unwrap());
    let jn = jobs::job_name("tokio", &hash, 0, "");
    let obj = index_obj(
        "tokio",
        spec,
        Some(json!({"phase": "Building", "lastBuildJob": jn, "observedGeneration": 2,
                    "conditions": [{"type": "Built", "status": "False", "reason": "Building",
                                    "message": format!("Job {jn} is running"), "observedGeneration": 2,
                                    "lastTransitionTime": "2020-01-01T00:00:00Z"}]})),
    );
    let job = |status: Value| {
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": jn, "namespace": NS, "annotations": {"search.trusty.dev/source-hash": hash}},
               "status": status})
    };
    let waiting = job(json!({"active": 1, "ready": 0, "startTime": "2020-01-01T00:00:00Z"}));

    let stuck_pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{jn}-x7k2p"), "namespace": NS, "creationTimestamp": "2020-01-01T00:00:00Z",
                     "labels": {"batch.kubernetes.io/job-name": jn, "job-name": jn}},
        "status": {"phase": "Pending", "containerStatuses": [{
            "name": "build", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError",
                                  "message": "secret \"store-creds\" not found"}}}]}});

    // The pod has not started: Built says so and why, once, with a Warning event.
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let (o, path, w, j) = (obj.clone(), format!("{JOBS}/{jn}"), written.clone(), waiting.clone());
    let (job_name, pod) = (jn.clone(), stuck_pod.clone());
    let action = run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &path, |_| (200, j)).await;
        api.expect_job_pods(NS, &job_name, pod_list(vec![pod])).await;
        let ev = api.expect_event(NS, "BuildPending").await;
        assert_eq!(ev.body["type"], "Warning");
        let note = ev.body["note"].as_str().unwrap();
        assert!(note.contains("CreateContainerConfigError"), "{note}");
        *w.lock().unwrap() = api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(REQUEUE_CONVERGING), "still followed");
    let status = written.lock().unwrap().clone();
    assert_eq!(status["phase"], "Building");
    let built = cond(&status, "Built");
    assert_eq!(
        (&built["status"], &built["reason"]),
        (&json!("False"), &json!("BuildPending"))
    );
    let message = built["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "the pod {jn}-x7k2p of build Job {jn} has not started running since 2020-01-01T00:00:00Z (over 5 min): \
             CreateContainerConfigError: secret \"store-creds\" not found; see more with \
             `kubectl -n {NS} describe pod -l batch.kubernetes.io/job-name={jn}`"
        )),
        "{message}"
    );
    assert!(router.calls().is_empty());

    // Still waiting: already said, nothing to write.
    let mut pending = obj.clone();
    pending["status"] = status.clone();
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let (path, j) = (format!("{JOBS}/{jn}"), waiting.clone());
    run(ctx, verifier, &pending, move |mut api| async move {
        api.expect(Method::GET, &path, |_| (200, j)).await;
        api
    })
    .await
    .unwrap();

    // The pod runs: Building again.
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let (o, path) = (pending.clone(), format!("{JOBS}/{jn}"));
    let j = job(json!({"active": 1, "ready": 1, "startTime": "2020-01-01T00:00:00Z"}));
    run(ctx, verifier, &pending, move |mut api| async move {
        api.expect(Method::GET, &path, |_| (200, j)).await;
        let st = api.expect_status_apply(NS, "tokio", &o).await;
        assert_eq!(st["phase"], "Building");
        assert_eq!(cond(&st, "Built")["reason"], "Building");
        api
    })
    .await
    .unwrap();

    // An API server that does not report ready pods: never taken for stuck.
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let path = format!("{JOBS}/{jn}");
    let j = job(json!({"active": 1, "startTime": "2020-01-01T00:00:00Z"}));
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &path, |_| (200, j)).await;
        api
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reset_generation_bump_calls_reset_and_records_it() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let mut spec = object_store_spec();
    spec["resetGeneration"] = json!(3);
    let hash = jobs::source_hash(&serde_json::from_value(spec.clone()).unwrap());
    let obj = index_obj(
        "platform",
        spec,
        Some(
            json!({"phase": "Degraded", "sourceHash": hash, "lastResetGeneration": 2,
                    "conditions": [{"type": "Published", "status": "True", "reason": "Registered", "message": "",
                                    "lastTransitionTime": "2025-01-01T00:00:00Z"}]}),
        ),
    );
    let o = obj.clone();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect_event(NS, "Reset").await;
        *w.lock().unwrap() = api.expect_status_apply(NS, "platform", &o).await;
        api
    })
    .await
    .unwrap();
    assert_eq!(
        router.call_lines(),
        vec![
            "POST /v1/admin/indexes/platform",
            "POST /v1/admin/indexes/platform/reset",
            "GET /v1/indexes/platform"
        ]
    );
    assert!(router.calls()[1].authorized);
    assert_eq!(
        router.calls()[0].body,
        Some(json!({"replicas": 1, "preload": false})),
        "re-registering a published index on resync does not preload it again"
    );
    let status = written.lock().unwrap().clone();
    assert_eq!(status["lastResetGeneration"], 3);
    assert_eq!(status["phase"], "Available");
    assert_eq!(cond(&status, "Built")["reason"], "Prebuilt");
}

/// A registered, prebuilt Index with `spec` whose status already says Published.
fn published_index(name: &str, spec: Value) -> Value {
    let hash = jobs::source_hash(&serde_json::from_value(spec.clone()).unwrap());
    index_obj(
        name,
        spec,
        Some(json!({"phase": "Published", "sourceHash": hash,
                    "conditions": [{"type": "Published", "status": "True", "reason": "Registered", "message": "",
                                    "lastTransitionTime": "2025-01-01T00:00:00Z"}]})),
    )
}

/// Reconciles `obj` once, expecting only its status write; returns that status.
async fn status_after_one_pass(ctx: Arc<Context>, verifier: ApiServerVerifier, obj: &Value) -> (Value, Action) {
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let o = obj.clone();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let action = run(ctx, verifier, obj, move |mut api| async move {
        *w.lock().unwrap() = api.expect_status_apply(NS, &name, &o).await;
        api
    })
    .await
    .unwrap();
    let status = written.lock().unwrap().clone();
    (status, action)
}

/// The router places every index on its own replication factor of owners:
/// asking for more must not leave the Index short of Available forever.
#[tokio::test]
async fn replicas_above_the_routers_replication_factor_are_capped_not_waited_for() {
    let router = FakeRouter::start_with_replication(2).await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let mut spec = object_store_spec();
    spec["replicas"] = json!(3);
    let obj = published_index("platform", spec);
    let (status, action) = status_after_one_pass(ctx, verifier, &obj).await;
    assert_eq!(router.calls()[0].body, Some(json!({"replicas": 3, "preload": false})));
    assert_eq!(status["phase"], "Available", "{status:#}");
    assert_eq!(status["readyOwners"], "2/2");
    let published = cond(&status, "Published");
    assert_eq!(published["status"], "True");
    assert_eq!(published["reason"], "ReplicasCapped");
    let msg = published["message"].as_str().unwrap();
    assert!(msg.contains("spec.replicas is 3") && msg.contains("2 owner"), "{msg}");
    assert_eq!(action, Action::requeue(REQUEUE_STABLE));

    // Within the replication factor nothing is capped.
    let router = FakeRouter::start_with_replication(2).await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let obj = published_index("platform", object_store_spec());
    let (status, _) = status_after_one_pass(ctx, verifier, &obj).await;
    assert_eq!(status["phase"], "Available", "{status:#}");
    assert_eq!(cond(&status, "Published")["reason"], "Registered");
}

/// A `file://` store whose `CURRENT` for `id` names `version`.
fn store_publishing(id: &str, version: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join(format!("indexes/{id}/CURRENT"));
    std::fs::create_dir_all(current.parent().unwrap()).unwrap();
    let pointer = json!({"version": version, "manifest_sha256": "0".repeat(64)});
    std::fs::write(current, pointer.to_string()).unwrap();
    let url = format!("file://{}", dir.path().display());
    (dir, url)
}

/// A new version that an owner failed to swap in leaves it serving the old
/// one with an error: the Index says so instead of Available.
#[tokio::test]
async fn an_owner_left_on_an_older_version_is_degraded() {
    const NEW: &str = "v20250102-new";
    let (_store, url) = store_publishing("platform", NEW);
    let spec = json!({"source": {"objectStore": {"prefix": url}}, "replicas": 2});
    let failed_swap = "new version v20250102-new failed (corrupt), next try in 5m: checksum mismatch";

    let router = FakeRouter::start().await;
    router.set_owner_versions("platform", &[NEW, fake_router::VERSION]);
    router.set_owners(
        "platform",
        vec![(ResidencyState::Hot, None), (ResidencyState::Hot, Some(failed_swap))],
    );
    let (ctx, verifier) = context(&router.url(), &url);
    let (status, action) = status_after_one_pass(ctx, verifier, &published_index("platform", spec.clone())).await;
    assert_eq!(status["phase"], "Degraded", "{status:#}");
    assert_eq!(status["readyOwners"], "1/2");
    assert_eq!(cond(&status, "Available")["status"], "True", "both owners still serve");
    let degraded = cond(&status, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "StaleVersion");
    let msg = degraded["message"].as_str().unwrap();
    assert!(
        msg.contains("trusty-shard-1 serves v20250101-abc") && msg.contains(NEW) && msg.contains("checksum mismatch"),
        "{msg}"
    );
    assert_eq!(status["lastError"], msg);
    assert_eq!(action, Action::requeue(REQUEUE_CONVERGING));

    // Still swapping (no error yet): converging, not degraded and not Available.
    let router = FakeRouter::start().await;
    router.set_owner_versions("platform", &[NEW, fake_router::VERSION]);
    let (ctx, verifier) = context(&router.url(), &url);
    let (status, _) = status_after_one_pass(ctx, verifier, &published_index("platform", spec.clone())).await;
    assert_eq!(status["phase"], "Published", "{status:#}");
    assert_eq!(status["readyOwners"], "1/2");
    assert_eq!(cond(&status, "Degraded")["status"], "False");

    // Every owner on the published version: Available.
    let router = FakeRouter::start().await;
    router.set_owner_versions("platform", &[NEW, NEW]);
    let (ctx, verifier) = context(&router.url(), &url);
    let (status, _) = status_after_one_pass(ctx, verifier, &published_index("platform", spec)).await;
    assert_eq!(status["phase"], "Available", "{status:#}");
    assert_eq!(status["currentVersion"], NEW);
}

#[tokio::test]
async fn deletion_unregisters_removes_objects_and_the_finalizer() {
    let router = FakeRouter::start().await;
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "indexes/tokio/CURRENT",
        "indexes/tokio/versions/v1/manifest.json",
        "indexes/tokio-util/CURRENT",
    ] {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"{}").unwrap();
    }
    let store = format!("file://{}", dir.path().display());
    let (ctx, verifier) = context(&router.url(), &store);
    let mut spec = git_spec();
    spec["deletionPolicy"] = json!("Delete");
    let mut obj = index_obj("tokio", spec, Some(json!({"phase": "Available"})));
    obj["metadata"]["deletionTimestamp"] = json!("2025-02-01T00:00:00Z");
    let o = obj.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect_no_running_builds(NS, "tokio").await;
        let ev = api.expect_event(NS, "Deleted").await;
        assert!(
            ev.body["note"].as_str().unwrap().contains("deleted 2 object(s)"),
            "{:#}",
            ev.body
        );
        let seen = api
            .expect(Method::PATCH, &format!("{INDEXES}/tokio"), |_| (200, o))
            .await;
        assert_eq!(
            seen.body,
            json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "search.trusty.dev/cleanup"},
                   {"op": "remove", "path": "/metadata/finalizers/0"}])
        );
        api
    })
    .await
    .unwrap();
    assert_eq!(
        router.call_lines(),
        vec!["DELETE /v1/admin/indexes/tokio"],
        "404 from an unknown index is fine"
    );
    assert!(!dir.path().join("indexes/tokio/CURRENT").exists());
    assert!(!dir.path().join("indexes/tokio/versions/v1/manifest.json").exists());
    assert!(
        dir.path().join("indexes/tokio-util/CURRENT").exists(),
        "other indexes are untouched"
    );
}

/// The escape hatch for a router or store that is gone: the finalizer goes
/// without touching either.
#[tokio::test]
async fn deletion_with_skip_cleanup_releases_without_router_or_storage() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (dir, store) = store_publishing("tokio", "v1");
    let (ctx, verifier) = context(&format!("http://127.0.0.1:{port}"), &store);
    let mut spec = git_spec();
    spec["deletionPolicy"] = json!("Delete");
    let mut obj = index_obj("tokio", spec, Some(json!({"phase": "Available"})));
    obj["metadata"]["deletionTimestamp"] = json!("2025-02-01T00:00:00Z");
    obj["metadata"]["annotations"] = json!({"search.trusty.dev/skip-cleanup": "true"});
    let o = obj.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect_no_running_builds(NS, "tokio").await;
        let ev = api.expect_event(NS, "Deleted").await;
        let note = ev.body["note"].as_str().unwrap();
        assert!(note.contains("skip-cleanup") && note.contains("left"), "{note}");
        let seen = api
            .expect(Method::PATCH, &format!("{INDEXES}/tokio"), |_| (200, o))
            .await;
        assert_eq!(seen.body[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
        api
    })
    .await
    .expect("released although the router is unreachable");
    assert!(
        dir.path().join("indexes/tokio/CURRENT").exists(),
        "deletionPolicy Delete is not applied"
    );
}

#[tokio::test]
async fn deletion_with_retain_keeps_versions_and_withdraws_current() {
    let router = FakeRouter::start().await;
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("indexes/tokio/CURRENT");
    let version = dir.path().join("indexes/tokio/versions/v1/manifest.json");
    for p in [&current, &version] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"{}").unwrap();
    }
    let (ctx, verifier) = context(&router.url(), &format!("file://{}", dir.path().display()));
    let mut obj = index_obj("tokio", git_spec(), None);
    obj["metadata"]["deletionTimestamp"] = json!("2025-02-01T00:00:00Z");
    let o = obj.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect_no_running_builds(NS, "tokio").await;
        let ev = api.expect_event(NS, "Deleted").await;
        assert!(
            ev.body["note"].as_str().unwrap().contains("withdrew it from serving"),
            "{:#}",
            ev.body
        );
        api.expect(Method::PATCH, &format!("{INDEXES}/tokio"), |_| (200, o))
            .await;
        api
    })
    .await
    .unwrap();
    assert!(!current.exists(), "not served any more");
    assert!(dir.path().join("indexes/tokio/CURRENT.withdrawn").exists());
    assert!(version.exists(), "versions are retained");
    assert_eq!(router.call_lines(), vec!["DELETE /v1/admin/indexes/tokio"]);
}

#[tokio::test]
async fn deletion_of_a_prebuilt_index_with_retain_touches_no_object() {
    let router = FakeRouter::start().await;
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("indexes/tokio/CURRENT");
    std::fs::create_dir_all(current.parent().unwrap()).unwrap();
    std::fs::write(&current, b"{}").unwrap();
    // Prebuilt in the cluster's own store (not imported from elsewhere).
    let prefix = format!("file://{}", dir.path().display());
    let (ctx, verifier) = context(&router.url(), &format!("{prefix}/"));
    let mut obj = index_obj("tokio", json!({"source": {"objectStore": {"prefix": prefix}}}), None);
    obj["metadata"]["deletionTimestamp"] = json!("2025-02-01T00:00:00Z");
    let o = obj.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect_no_running_builds(NS, "tokio").await;
        let ev = api.expect_event(NS, "Deleted").await;
        assert_eq!(ev.body["note"], "unregistered tokio", "{:#}", ev.body);
        api.expect(Method::PATCH, &format!("{INDEXES}/tokio"), |_| (200, o))
            .await;
        api
    })
    .await
    .unwrap();
    assert!(current.exists(), "a store managed elsewhere is left alone");
}

#[tokio::test]
async fn invalid_name_is_a_condition_not_a_crash() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let name = format!("{}-too-long-for-an-index-id", "x".repeat(50));
    let mut obj = index_obj(&name, git_spec(), None);
    obj["metadata"].as_object_mut().unwrap().remove("finalizers");
    let (o, n) = (obj.clone(), name.clone());
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let action = run(ctx, verifier, &obj, move |mut api| async move {
        let ev = api.expect_event(NS, "InvalidName").await;
        assert_eq!(ev.body["type"], "Warning");
        *w.lock().unwrap() = api.expect_status_apply(NS, &n, &o).await;
        api
    })
    .await
    .unwrap();
    assert_eq!(action, Action::await_change());
    let status = written.lock().unwrap().clone();
    assert_eq!(status["phase"], "Failed");
    let built = cond(&status, "Built");
    assert_eq!(built["reason"], "InvalidName");
    let msg = built["message"].as_str().unwrap();
    assert!(msg.contains("must be at most 63 characters"), "{msg}");
    assert!(msg.contains("index id"), "{msg}");
    assert!(router.calls().is_empty(), "an invalid id never reaches the router");

    // Reconciling the reported state again writes nothing and records no new event.
    let mut again = obj.clone();
    again["status"] = status;
    let (ctx2, verifier2) = context(&router.url(), "memory://trusty-reconcile");
    run(ctx2, verifier2, &again, |api| async move { api }).await.unwrap();
}

#[tokio::test]
async fn router_unreachable_sets_an_error_condition_and_backs_off() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (ctx, verifier) = context(&format!("http://127.0.0.1:{port}"), "memory://trusty-reconcile");
    let obj = index_obj("platform", object_store_spec(), None);
    let o = obj.clone();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let err = run(ctx.clone(), verifier, &obj, move |mut api| async move {
        *w.lock().unwrap() = api.expect_status_apply(NS, "platform", &o).await;
        api
    })
    .await
    .expect_err("router errors fail the reconcile so it is retried");
    assert_eq!(err.reason(), "router");
    let status = written.lock().unwrap().clone();
    let available = cond(&status, "Available");
    assert_eq!(available["status"], "False");
    assert_eq!(available["reason"], "RouterUnavailable");
    let last_error = status["lastError"].as_str().unwrap();
    assert!(last_error.contains("router unreachable"), "{status:#}");
    // The cause, not only reqwest's "error sending request": refused, not DNS or a timeout.
    assert!(last_error.contains("Connection refused"), "{last_error}");
    assert_eq!(available["message"], last_error);

    let index: Arc<Index> = Arc::new(serde_json::from_value(obj).unwrap());
    assert_eq!(
        error_policy(index.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(index.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    assert_eq!(
        error_policy(index, &err, ctx.clone()),
        Action::requeue(Duration::from_secs(20))
    );
    let m = ctx.metrics.render();
    assert!(
        m.contains("trusty_operator_reconcile_failures_total{reason=\"router\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("trusty_operator_reconciles_total{outcome=\"error\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn missing_job_for_a_running_build_is_recreated() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let spec = git_spec();
    let hash = jobs::source_hash(&serde_json::from_value(spec.clone()).unwrap());
    let job_name = jobs::job_name("tokio", &hash, 0, "");
    let obj = index_obj(
        "tokio",
        spec,
        Some(json!({"phase": "Building", "lastBuildJob": job_name})),
    );
    let (jn, o) = (job_name.clone(), obj.clone());
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/{jn}"), |_| status_404("jobs"))
            .await;
        let job = api.expect(Method::POST, JOBS, |s| (201, s.body.clone())).await;
        assert_eq!(job.body["metadata"]["name"], jn.as_str());
        api.expect_event(NS, "BuildStarted").await;
        let st = api.expect_status_apply(NS, "tokio", &o).await;
        assert_eq!(st["phase"], "Building");
        assert_eq!(st["lastBuildJob"], jn.as_str());
        api
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn object_store_source_elsewhere_is_imported_then_registered() {
    let router = FakeRouter::start().await;
    let (src_dir, cluster_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src_url = format!("file://{}", src_dir.path().display());
    let src = trusty_search::storage::store::Store::open(&src_url).unwrap();
    let published = crate::support::fixtures::publish_fixture(&src, "platform", "ci").await;
    let cluster_url = format!("file://{}", cluster_dir.path().display());
    let (ctx, verifier) = context(&router.url(), &cluster_url);
    let obj = index_obj(
        "platform",
        json!({"source": {"objectStore": {"prefix": src_url}}}),
        None,
    );
    let o = obj.clone();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let version = published.version.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        let ev = api.expect_event(NS, "Imported").await;
        assert!(ev.body["note"].as_str().unwrap().contains(&version), "{:#}", ev.body);
        api.expect_event(NS, "Registered").await;
        *w.lock().unwrap() = api.expect_status_apply(NS, "platform", &o).await;
        api
    })
    .await
    .unwrap();

    // The cluster's store now serves the same version; the source is untouched.
    let cluster = trusty_search::storage::store::Store::open(&cluster_url).unwrap();
    let id = trusty_search::IndexId::new("platform").unwrap();
    let (pointer, _) = trusty_search::storage::open::read_current(&cluster, &id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pointer.version, published.version);
    assert!(
        trusty_search::storage::open::read_current(&src, &id, None)
            .await
            .unwrap()
            .is_some()
    );
    let status = written.lock().unwrap().clone();
    assert_eq!(cond(&status, "Built")["reason"], "Imported", "{status:#}");
    assert_eq!(
        router.call_lines(),
        vec![
            "POST /v1/admin/indexes/platform",
            "POST /v1/admin/indexes/platform/reload",
            "GET /v1/indexes/platform"
        ]
    );
}

#[tokio::test]
async fn object_store_source_outside_the_allowed_prefixes_is_refused_without_touching_it() {
    let router = FakeRouter::start().await;
    let cluster_dir = tempfile::tempdir().unwrap();
    let (ctx, verifier) = context(&router.url(), &format!("file://{}", cluster_dir.path().display()));
    let prefix = "s3://someone-elses-bucket/x?endpoint=http://169.254.169.254";
    let obj = index_obj("platform", json!({"source": {"objectStore": {"prefix": prefix}}}), None);
    let o = obj.clone();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        let ev = api.expect_event(NS, "ImportNotAllowed").await;
        assert_eq!(ev.body["type"], "Warning");
        *w.lock().unwrap() = api.expect_status_apply(NS, "platform", &o).await;
        api
    })
    .await
    .expect("a refusal waits for a spec change");
    let status = written.lock().unwrap().clone();
    let built = cond(&status, "Built");
    assert_eq!(
        (built["status"].as_str(), built["reason"].as_str()),
        (Some("False"), Some("ImportNotAllowed"))
    );
    assert!(built["message"].as_str().unwrap().contains("query"), "{status:#}");
    assert_eq!(status["phase"], "Failed");
    assert!(router.calls().is_empty());
}

#[tokio::test]
async fn object_store_source_without_an_index_is_an_import_failure() {
    let router = FakeRouter::start().await;
    let (src_dir, cluster_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src_url = format!("file://{}", src_dir.path().display());
    let (ctx, verifier) = context(&router.url(), &format!("file://{}", cluster_dir.path().display()));
    let obj = index_obj(
        "platform",
        json!({"source": {"objectStore": {"prefix": src_url}}}),
        None,
    );
    let o = obj.clone();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let err = run(ctx, verifier, &obj, move |mut api| async move {
        let ev = api.expect_event(NS, "ImportFailed").await;
        assert_eq!(ev.body["type"], "Warning");
        *w.lock().unwrap() = api.expect_status_apply(NS, "platform", &o).await;
        api
    })
    .await
    .expect_err("a failed import is retried with backoff");
    assert_eq!(err.reason(), "import");
    let status = written.lock().unwrap().clone();
    let built = cond(&status, "Built");
    assert_eq!(built["status"], "False");
    assert_eq!(built["reason"], "ImportFailed");
    assert!(
        built["message"].as_str().unwrap().contains("no published version"),
        "{status:#}"
    );
    assert_eq!(status["phase"], "Failed");
    assert!(router.calls().is_empty(), "nothing to register");
}

/// The Job a build with `spec` would create, already finished at `done`,
/// annotated for the Index with `uid`.
fn finished_job(name: &str, hash: &str, uid: &str, done: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2025-01-01T00:00:00Z",
                     "annotations": {"search.trusty.dev/source-hash": hash, "search.trusty.dev/index-uid": uid}},
        "status": {"succeeded": 1, "completionTime": done,
                   "conditions": [{"type": "Complete", "status": "True"}]},
    })
}

fn already_exists() -> (u16, Value) {
    (
        409,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": "jobs already exists", "reason": "AlreadyExists", "code": 409}),
    )
}

#[tokio::test]
async fn a_job_left_by_an_earlier_index_of_the_same_name_is_built_again() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    // Deleted and created again: a new uid, no status, the old Job still there.
    let obj = index_obj("tokio", git_spec(), None);
    let hash = jobs::source_hash(&spec_of(&obj));
    let jn = jobs::job_name("tokio", &hash, 0, "");
    let old = finished_job(&jn, &hash, "earlier-uid", "2025-01-02T00:00:00Z");
    let o = obj.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::POST, JOBS, |_| already_exists()).await;
        api.expect(Method::GET, &format!("{JOBS}/{jn}"), |_| (200, old.clone()))
            .await;
        let del = api
            .expect(Method::DELETE, &format!("{JOBS}/{jn}"), |_| (200, old))
            .await;
        assert_eq!(del.body["propagationPolicy"], "Background");
        api.expect_event(NS, "BuildRestarted").await;
        let st = api.expect_status_apply(NS, "tokio", &o).await;
        assert_eq!(st["phase"], "Building");
        assert!(
            st["sourceHash"].is_null(),
            "the old build is not taken as this one: {st:#}"
        );
        assert!(st["lastBuildJob"].is_null(), "{st:#}");
        api
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reverting_to_earlier_inputs_builds_again_instead_of_following_the_old_job() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let spec = git_spec();
    let hash_a = jobs::source_hash(&serde_json::from_value(spec.clone()).unwrap());
    let job_a = jobs::job_name("tokio", &hash_a, 0, "");
    // B was built after A; the spec is back at A.
    let obj = index_obj(
        "tokio",
        spec,
        Some(
            json!({"phase": "Available", "lastBuildJob": "tokio-b000000000", "sourceHash": "b-hash",
                    "lastBuildTime": "2025-01-03T00:00:00Z"}),
        ),
    );
    let uid = obj["metadata"]["uid"].as_str().unwrap().to_string();
    let b = finished_job("tokio-b000000000", "b-hash", &uid, "2025-01-03T00:00:00Z");
    let a = finished_job(&job_a, &hash_a, &uid, "2025-01-02T00:00:00Z");
    let o = obj.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/tokio-b000000000"), |_| (200, b))
            .await;
        api.expect(Method::POST, JOBS, |_| already_exists()).await;
        api.expect(Method::GET, &format!("{JOBS}/{job_a}"), |_| (200, a.clone()))
            .await;
        api.expect(Method::DELETE, &format!("{JOBS}/{job_a}"), |_| (200, a))
            .await;
        api.expect_event(NS, "BuildRestarted").await;
        // B keeps being served (and registered) while A builds again.
        api.expect_event(NS, "Registered").await;
        let st = api.expect_status_apply(NS, "tokio", &o).await;
        assert_eq!(st["sourceHash"], "b-hash", "B is still what is served");
        assert_eq!(st["lastBuildJob"], "tokio-b000000000");
        api
    })
    .await
    .unwrap();
}

/// Spec A built, then B failed, then the spec went back to A: A is what is
/// served, so Built is True again instead of keeping B's failure.
#[tokio::test]
async fn reverting_to_the_inputs_being_served_clears_the_failed_build() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let spec = git_spec();
    let hash_a = jobs::source_hash(&serde_json::from_value(spec.clone()).unwrap());
    let failed_b = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "tokio-b000000000", "namespace": NS, "annotations": {"search.trusty.dev/source-hash": "b-hash"}},
        "status": {"failed": 3, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                "message": "clone failed"}]},
    });
    let obj = index_obj(
        "tokio",
        spec,
        Some(
            json!({"phase": "Failed", "lastBuildJob": "tokio-b000000000", "sourceHash": hash_a,
                    "lastBuildTime": "2025-01-02T00:00:00Z",
                    "lastError": "Job tokio-b000000000 failed: clone failed",
                    "conditions": [
                        {"type": "Built", "status": "False", "reason": "BuildFailed",
                         "message": "Job tokio-b000000000 failed: clone failed", "lastTransitionTime": "2025-01-03T00:00:00Z"},
                        {"type": "Published", "status": "True", "reason": "Registered", "message": "",
                         "lastTransitionTime": "2025-01-01T00:00:00Z"}]}),
        ),
    );
    let o = obj.clone();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let action = run(ctx.clone(), verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/tokio-b000000000"), |_| (200, failed_b))
            .await;
        *w.lock().unwrap() = api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .unwrap();
    let status = written.lock().unwrap().clone();
    let built = cond(&status, "Built");
    assert_eq!(
        (built["status"].as_str(), built["reason"].as_str()),
        (Some("True"), Some("UpToDate")),
        "{status:#}"
    );
    assert_eq!(status["phase"], "Available");
    assert!(status["lastError"].is_null(), "{status:#}");
    assert_eq!(action, Action::requeue(REQUEUE_STABLE));
    assert_eq!(ctx.metrics.indexes_failed.get(), 0);
}

#[tokio::test]
async fn a_job_whose_creation_was_not_recorded_is_followed() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let spec = git_spec();
    let hash = jobs::source_hash(&serde_json::from_value(spec.clone()).unwrap());
    let jn = jobs::job_name("tokio", &hash, 0, "");
    // An earlier pass created the Job and lost its status write; the Job is
    // this Index's and newer than anything consumed.
    let obj = index_obj("tokio", spec, None);
    let uid = obj["metadata"]["uid"].as_str().unwrap().to_string();
    let ours = finished_job(&jn, &hash, &uid, "2025-01-02T00:00:00Z");
    let (o, name) = (obj.clone(), jn.clone());
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::POST, JOBS, |_| already_exists()).await;
        api.expect(Method::GET, &format!("{JOBS}/{name}"), |_| (200, ours))
            .await;
        let st = api.expect_status_apply(NS, "tokio", &o).await;
        assert_eq!(st["lastBuildJob"], name.as_str(), "followed, not deleted");
        api
    })
    .await
    .unwrap();
}

/// The git build of Index `tokio` still running in the shared build
/// namespace `trusty-system`, as the API server returns it.
fn running_shared_git_build() -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "tokio-git0000000", "namespace": "trusty-system",
                     "labels": {"search.trusty.dev/index": "tokio", "search.trusty.dev/index-namespace": NS},
                     "annotations": {"search.trusty.dev/source-hash": "git-hash"}},
        "status": {"active": 1}})
}

/// A source moved from git (built in the shared namespace) to a volume
/// (built beside its claim): the Job still running in the shared namespace
/// is found and superseded there, not left to publish the old source.
#[tokio::test]
async fn a_build_left_running_in_another_namespace_is_superseded_there() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context_building_in(&router.url(), "memory://trusty-reconcile", Some("trusty-system"), true);
    let spec = json!({"source": {"volume": {"claimName": "code"}}, "replicas": 1});
    let obj = index_obj(
        "tokio",
        spec,
        Some(json!({"phase": "Building", "lastBuildJob": "tokio-git0000000"})),
    );
    let running_git = running_shared_git_build();
    let o = obj.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/tokio-git0000000"), |_| status_404("jobs"))
            .await;
        let shared = "/apis/batch/v1/namespaces/trusty-system/jobs/tokio-git0000000";
        api.expect(Method::GET, shared, |_| (200, running_git.clone())).await;
        api.expect(Method::DELETE, shared, |_| (200, running_git)).await;
        api.expect_event(NS, "BuildSuperseded").await;
        let job = api.expect(Method::POST, JOBS, |s| (201, s.body.clone())).await;
        assert_eq!(
            job.body["metadata"]["namespace"], NS,
            "a volume build runs beside its claim"
        );
        api.expect_event(NS, "BuildStarted").await;
        api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .unwrap();
}

/// Builds run in the shared namespace only (the chart's default role): a
/// source moved to a volume is refused with the chart value that allows it,
/// its git build still running there is stopped, and no Job request goes to
/// the Index's namespace, where the role would refuse it.
#[tokio::test]
async fn a_volume_source_is_refused_when_builds_run_only_in_the_shared_namespace() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context_building_in(&router.url(), "memory://trusty-reconcile", Some("trusty-system"), false);
    let spec = json!({"source": {"volume": {"claimName": "code"}}, "replicas": 1});
    let obj = index_obj(
        "tokio",
        spec,
        Some(json!({"phase": "Building", "lastBuildJob": "tokio-git0000000"})),
    );
    let running_git = running_shared_git_build();
    let o = obj.clone();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let action = run(ctx, verifier, &obj, move |mut api| async move {
        let shared = "/apis/batch/v1/namespaces/trusty-system/jobs/tokio-git0000000";
        api.expect(Method::GET, shared, |_| (200, running_git.clone())).await;
        api.expect(Method::DELETE, shared, |_| (200, running_git)).await;
        api.expect_event(NS, "BuildSuperseded").await;
        let ev = api.expect_event(NS, "VolumeSourceNotAllowed").await;
        assert_eq!(ev.body["type"], "Warning");
        *w.lock().unwrap() = api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .expect("a refusal waits for a change");
    assert_eq!(action, Action::await_change());
    let status = written.lock().unwrap().clone();
    let built = cond(&status, "Built");
    assert_eq!(
        (built["status"].as_str(), built["reason"].as_str()),
        (Some("False"), Some("VolumeSourceNotAllowed"))
    );
    let message = built["message"].as_str().unwrap();
    assert!(message.contains("operator.build.volumeSources=true"), "{message}");
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["lastError"], message);
    assert!(router.calls().is_empty());
}

/// A volume Index built before volume sources needed allowing, served since,
/// seen by an operator that does not allow them (an upgrade): nothing needs
/// building, so it keeps serving and its status keeps tracking the owners;
/// only a change of source, which would need a Job in its namespace, is
/// refused, and the build already served goes on serving.
#[tokio::test]
async fn a_served_volume_index_keeps_serving_when_volume_sources_are_not_allowed() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context_building_in(&router.url(), "memory://trusty-reconcile", Some("trusty-system"), false);
    let spec = json!({"source": {"volume": {"claimName": "code"}}, "replicas": 2});
    let hash = jobs::source_hash(&serde_json::from_value(spec.clone()).unwrap());
    let job_name = jobs::job_name("tokio", &hash, 0, "");
    let served = json!({"phase": "Available", "sourceHash": hash, "lastBuildJob": job_name,
        "lastBuildTime": "2025-01-02T03:04:05Z", "readyOwners": "1/2", "currentVersion": "v20250101-abc",
        "conditions": [
            {"type": "Built", "status": "True", "reason": "BuildSucceeded", "message": "built",
             "lastTransitionTime": "2025-01-02T03:04:05Z"},
            {"type": "Published", "status": "True", "reason": "Registered", "message": "",
             "lastTransitionTime": "2025-01-02T03:04:05Z"}]});
    let obj = index_obj("tokio", spec, Some(served.clone()));
    // Only the build namespace is read: the Index's own is not the operator's to read.
    let shared_job = format!("/apis/batch/v1/namespaces/trusty-system/jobs/{job_name}");
    let (o, sj) = (obj.clone(), shared_job.clone());
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let action = run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::GET, &sj, |_| status_404("jobs")).await;
        *w.lock().unwrap() = api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .expect("an up-to-date volume Index is no refusal");
    let status = written.lock().unwrap().clone();
    assert_eq!(status["phase"], "Available", "{status:#}");
    assert_eq!(status["readyOwners"], "2/2", "owners are tracked: {status:#}");
    assert_eq!(status["sourceHash"], hash);
    assert!(status["lastError"].is_null(), "{status:#}");
    let built = cond(&status, "Built");
    assert_eq!(built["status"], "True", "{status:#}");
    let message = built["message"].as_str().unwrap();
    assert!(message.contains("operator.build.volumeSources=true"), "{message}");
    assert_eq!(cond(&status, "Available")["status"], "True");
    assert_eq!(
        router.call_lines(),
        vec!["POST /v1/admin/indexes/tokio", "GET /v1/indexes/tokio"]
    );
    assert_eq!(action, Action::requeue(REQUEUE_STABLE));

    // A changed source would need a Job: refused, while the served build
    // keeps serving and being tracked.
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context_building_in(&router.url(), "memory://trusty-reconcile", Some("trusty-system"), false);
    let changed = index_obj(
        "tokio",
        json!({"source": {"volume": {"claimName": "other"}}, "replicas": 2}),
        Some(served),
    );
    let o = changed.clone();
    let w = written.clone();
    run(ctx, verifier, &changed, move |mut api| async move {
        api.expect(Method::GET, &shared_job, |_| status_404("jobs")).await;
        api.expect_event(NS, "VolumeSourceNotAllowed").await;
        *w.lock().unwrap() = api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .unwrap();
    let status = written.lock().unwrap().clone();
    let built = cond(&status, "Built");
    assert_eq!(
        (built["status"].as_str(), built["reason"].as_str()),
        (Some("False"), Some("VolumeSourceNotAllowed"))
    );
    assert_eq!(status["phase"], "Failed", "the new source is not built: {status:#}");
    assert_eq!(status["sourceHash"], hash, "the served build is still the one recorded");
    assert_eq!(status["readyOwners"], "2/2");
    assert_eq!(cond(&status, "Available")["status"], "True");
}

/// A role that refuses the build Job (403) where the operator was told it
/// may build: the Index says which chart value grants the right rather
/// than a bare "forbidden", and the pass is retried with backoff.
#[tokio::test]
async fn a_build_job_the_role_refuses_names_the_chart_value_that_grants_it() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context_building_in(&router.url(), "memory://trusty-reconcile", Some("trusty-system"), true);
    let obj = index_obj("tokio", json!({"source": {"volume": {"claimName": "code"}}}), None);
    let o = obj.clone();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let err = run(ctx, verifier, &obj, move |mut api| async move {
        api.expect(Method::POST, JOBS, |_| status_403("jobs.batch")).await;
        let ev = api.expect_event(NS, "BuildForbidden").await;
        assert_eq!(ev.body["type"], "Warning");
        *w.lock().unwrap() = api.expect_status_apply(NS, "tokio", &o).await;
        api
    })
    .await
    .expect_err("retried with backoff: the role may be fixed (or still propagating)");
    assert_eq!(err.reason(), "kube");
    let status = written.lock().unwrap().clone();
    let built = cond(&status, "Built");
    assert_eq!(
        (built["status"].as_str(), built["reason"].as_str()),
        (Some("False"), Some("BuildForbidden"))
    );
    let message = built["message"].as_str().unwrap();
    assert!(
        message.starts_with("the operator may not run build Jobs in namespace default (jobs.batch is forbidden)"),
        "{message}"
    );
    assert!(message.contains("operator.build.volumeSources=true"), "{message}");
    assert_eq!(status["phase"], "Failed");
}

/// A source moved from git to objectStore while its build ran: the build is
/// stopped, or it would later publish over the index now served.
#[tokio::test]
async fn a_build_still_running_when_the_source_moves_to_an_object_store_is_stopped() {
    let router = FakeRouter::start().await;
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let obj = index_obj(
        "platform",
        object_store_spec(),
        Some(json!({"phase": "Building", "lastBuildJob": "platform-git000000"})),
    );
    let running_git = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "platform-git000000", "namespace": NS,
                     "annotations": {"search.trusty.dev/source-hash": "git-hash"}},
        "status": {"active": 1}});
    let o = obj.clone();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    run(ctx, verifier, &obj, move |mut api| async move {
        let job = format!("{JOBS}/platform-git000000");
        api.expect(Method::GET, &job, |_| (200, running_git.clone())).await;
        let del = api.expect(Method::DELETE, &job, |_| (200, running_git)).await;
        assert_eq!(del.body["propagationPolicy"], "Background");
        let ev = api.expect_event(NS, "BuildSuperseded").await;
        assert!(
            ev.body["note"].as_str().unwrap().contains("platform-git000000"),
            "{:#}",
            ev.body
        );
        api.expect_event(NS, "Registered").await;
        *w.lock().unwrap() = api.expect_status_apply(NS, "platform", &o).await;
        api
    })
    .await
    .unwrap();
    let status = written.lock().unwrap().clone();
    assert_eq!(cond(&status, "Built")["reason"], "Prebuilt");
    assert_eq!(status["phase"], "Available");

    // A build that already finished is left alone.
    let (ctx, verifier) = context(&router.url(), "memory://trusty-reconcile");
    let mut done = obj.clone();
    done["status"] = status;
    let finished = finished_job("platform-git000000", "git-hash", "6f1c7c3e-uid", "2025-01-02T00:00:00Z");
    run(ctx, verifier, &done, move |mut api| async move {
        api.expect(Method::GET, &format!("{JOBS}/platform-git000000"), |_| (200, finished))
            .await;
        api
    })
    .await
    .unwrap();
}
