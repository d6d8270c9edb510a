//! The real operator against the fake API server, wired to a real
//! trusty-search cluster on 127.0.0.1: an S3-compatible server (s3s-fs),
//! three shard processes and a router process. The test plays the kubelet by
//! running each build Job's command (`trusty-search index build …`) locally.
//!
//! Apply an Index → built, published, Available with hot owners → its objects
//! corrupted under owners that lost their cache → Degraded → repaired and
//! `resetGeneration` bumped → Available → deleted → its objects are gone.

use crate::fake_apiserver::{FakeApiServer, JOB};
use crate::harness::{Operator, eventually, install_crypto};
use crate::kubelet;
use crate::support::cluster::{Cluster, shard_name};
use crate::support::fixtures::write_repo;
use crate::support::http::{metric, search};
use crate::support::s3::S3Server;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use trusty_operator::{Index, IndexStatus, controller::Resync, crd::Phase};
use trusty_search::IndexId;
use trusty_search::storage::layout::{self, bundle};
use trusty_search::storage::publish;

const NS: &str = "team-a";
const WAIT: Duration = Duration::from_secs(90);

fn manifest(name: &str, deletion_policy: &str, reset_generation: i64) -> Value {
    json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"source": {"volume": {"claimName": "code", "path": "app"}},
                 "lexicalOnly": true, "replicas": 2, "deletionPolicy": deletion_policy,
                 "resetGeneration": reset_generation},
    })
}

/// Waits until the Index status satisfies `ok`, printing the last status seen on timeout.
async fn status_until(indexes: &Api<Index>, name: &str, what: &str, ok: impl Fn(&IndexStatus) -> bool) -> IndexStatus {
    let last = std::sync::Mutex::new(None);
    let found = tokio::time::timeout(
        WAIT,
        eventually(what, WAIT + Duration::from_secs(1), || async {
            let st = indexes.get(name).await.ok()?.status?;
            *last.lock().unwrap() = Some(st.clone());
            ok(&st).then_some(st)
        }),
    )
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last status: {:#?}", last.lock().unwrap()))
}

/// Waits until the router has every shard of `cluster` in its placement set
/// and has kept them there for longer than an ejection lasts (the test
/// cluster ejects for 1 s after two failed probes 200 ms apart), so a probe
/// of a just-restarted shard that failed before it listened has had its
/// effect and worn off.
async fn router_sees_all_shards_healthy(cluster: &Cluster) {
    let all = cluster.shards.len() as f64;
    let series = r#"trusty_router_shards{health="healthy"}"#;
    let patience = Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + patience;
    let mut since: Option<tokio::time::Instant> = None;
    loop {
        let healthy = metric(&cluster.router.url, series).await;
        if healthy == all {
            let from = *since.get_or_insert_with(tokio::time::Instant::now);
            if from.elapsed() >= Duration::from_millis(1500) {
                return;
            }
        } else {
            since = None;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {patience:?} waiting for the router to see {all} healthy shards: {healthy}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Queries shard `i` itself until it answers that index `id` failed to load.
async fn shard_reports_restore_failed(cluster: &Cluster, i: usize, id: &str) {
    let url = cluster.shard_url(i);
    eventually(&format!("{} to fail loading {id}", shard_name(i)), WAIT, || async {
        let r = search(&url, id, "load_config").await;
        if r.status() != 503 {
            return None;
        }
        let body: Value = r.json().await.ok()?;
        (body["error"] == "index_restore_failed").then_some(())
    })
    .await;
}

fn hot_owners(st: &IndexStatus) -> usize {
    st.owners.iter().filter(|o| o.state == "hot").count()
}

/// A real cluster, the operator against the fake API server, and the PVC
/// `code` (a temp dir holding the source under `app/`).
struct Setup {
    cluster: Cluster,
    api: FakeApiServer,
    op: Operator,
    indexes: Api<Index>,
    jobs: Api<Job>,
    pvc: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        install_crypto();
        // Long failure backoff on the shards: only a reset may bring a failed index back.
        let cluster = Cluster::start_with(3, 2, &["--retry-base", "10m", "--retry-max", "10m"], &[]).await;
        let api = FakeApiServer::start().await;
        let client = api.client();
        let op = Operator::start_with_resync(
            client.clone(),
            &cluster.router.url,
            &cluster.store_url,
            "op-a",
            None,
            Resync::every(Duration::from_millis(500)),
        );
        let pvc = tempfile::tempdir().unwrap();
        write_repo(&pvc.path().join("app"), "e2e");
        Setup {
            indexes: Api::namespaced(client.clone(), NS),
            jobs: Api::namespaced(client, NS),
            cluster,
            api,
            op,
            pvc,
        }
    }

    /// kubectl apply → a build Job, which the "node" runs against the real store.
    async fn apply_and_build(&self, manifest: Value) {
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        self.indexes
            .patch(&name, &PatchParams::apply("e2e-test"), &Patch::Apply(manifest))
            .await
            .unwrap();
        let job = eventually("a build Job", WAIT, || async {
            self.jobs
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        })
        .await;
        let job_name = job.metadata.name.clone().unwrap();
        let pod_work = tempfile::tempdir().unwrap();
        let secrets: HashMap<String, Vec<(String, String)>> = HashMap::from([(
            "store-creds".to_string(),
            S3Server::env()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )]);
        let (_, stderr) = kubelet::run(
            &self.jobs,
            &job_name,
            &[("/source", self.pvc.path()), ("/work", pod_work.path())],
            &secrets,
        )
        .await;
        assert!(
            kube_job_succeeded(&self.jobs, &job_name).await,
            "the build Job's command failed:\n{stderr}"
        );
    }

    async fn delete_and_wait(&self, name: &str) {
        self.indexes.delete(name, &DeleteParams::default()).await.unwrap();
        eventually("the Index to be gone", WAIT, || async {
            self.indexes.get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_lifecycle_against_a_real_cluster() {
    let Setup {
        mut cluster,
        api,
        op,
        indexes,
        jobs: _jobs,
        pvc: _pvc,
    } = {
        let s = Setup::start().await;
        s.apply_and_build(manifest("app", "Delete", 0)).await;
        s
    };
    let router = cluster.router.url.clone();
    let search_app = |q: &'static str| search(&router, "app", q);

    // Published in the store, registered, loaded by both owners.
    let st = status_until(&indexes, "app", "Available with 2 hot owners", |st| {
        st.phase == Phase::Available && hot_owners(st) == 2
    })
    .await;
    let id = IndexId::new("app").unwrap();
    let (current, _) = trusty_search::storage::open::read_current(&cluster.store, &id, None)
        .await
        .unwrap()
        .expect("a published version");
    assert_eq!(st.current_version.as_deref(), Some(current.version.as_str()));
    assert_eq!(st.ready_owners.as_deref(), Some("2/2"));
    assert!(st.counts.as_ref().unwrap().chunks > 0);
    for o in &st.owners {
        assert_eq!(o.version.as_deref(), Some(current.version.as_str()), "{o:?}");
    }
    let r = search_app("load_config").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["path"] == "src/config.rs"),
        "{body}"
    );

    // Corrupt the bundle in object storage, and let both owners lose their
    // caches (a rescheduled pod on a fresh emptyDir): their reloads fail.
    let chunks_key = format!(
        "cluster/{}",
        layout::file_key(&id, &current.version, bundle::CHUNKS_FILE)
    );
    let object = cluster.s3.object_path(&chunks_key);
    let original = std::fs::read(&object).unwrap();
    let mut corrupt = original.clone();
    corrupt[original.len() / 2] ^= 0x55;
    std::fs::write(&object, &corrupt).unwrap();
    let owners: Vec<usize> = st
        .owners
        .iter()
        .map(|o| {
            (0..3)
                .find(|&i| shard_name(i) == o.shard)
                .expect("owner is a cluster shard")
        })
        .collect();
    for &i in &owners {
        cluster.kill_shard(i);
        std::fs::remove_dir_all(cluster.cache_dir(i)).unwrap();
        cluster.restart_shard(i).await;
    }
    // Each owner, asked itself, fails to load it: 503, retryable only after
    // the backoff. Through the router a query may never reach an owner the
    // router ejected while it restarted (it goes to the other owner and the
    // third shard instead), so both are asked here, once the router has
    // taken them back.
    router_sees_all_shards_healthy(&cluster).await;
    for &i in &owners {
        shard_reports_restore_failed(&cluster, i, "app").await;
    }
    // Queries through the router now find both owners failing.
    eventually("a query to fail on both owners", WAIT, || async {
        let r = search_app("load_config").await;
        (r.status() == 503).then_some(())
    })
    .await;
    let st = status_until(&indexes, "app", "Degraded with failed owners", |st| {
        st.phase == Phase::Degraded && st.owners.iter().filter(|o| o.state == "failed").count() == 2
    })
    .await;
    let owner_error = st.owners[0].last_error.clone().unwrap_or_default();
    assert!(
        owner_error.contains("checksum") || owner_error.contains("corrupt"),
        "owners report the corruption: {owner_error}"
    );
    assert!(st.last_error.is_some());

    // Repair the object. The shards' backoff is long, so the index stays
    // failed until someone acts; bumping resetGeneration is that act.
    std::fs::write(&object, &original).unwrap();
    for &i in &owners {
        let r = search(&cluster.shard_url(i), "app", "load_config").await;
        assert_eq!(r.status(), 503, "{} still failed before the reset", shard_name(i));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "index_restore_failed", "{body}");
    }
    // Through the router too. Were an owner ejected at this moment (a probe
    // timing out on a loaded machine), the query would go to the third shard,
    // which may load the repaired object: it is not an owner, and the owners
    // were checked above, so such a 200 is passed over until the owners are
    // asked again.
    eventually("a query through the router to fail before the reset", WAIT, || async {
        (search_app("load_config").await.status() == 503).then_some(())
    })
    .await;
    indexes
        .patch(
            "app",
            &PatchParams::apply("e2e-test"),
            &Patch::Apply(manifest("app", "Delete", 1)),
        )
        .await
        .unwrap();
    let st = status_until(&indexes, "app", "Available again after the reset", |st| {
        st.phase == Phase::Available && hot_owners(st) == 2
    })
    .await;
    assert_eq!(st.last_reset_generation, Some(1));
    assert_eq!(api.objects(JOB).len(), 1, "a reset of a good build does not rebuild");
    assert_eq!(search_app("load_config").await.status(), 200);

    // kubectl delete → unregistered everywhere, objects removed from the store.
    indexes.delete("app", &DeleteParams::default()).await.unwrap();
    eventually("the Index to be gone", WAIT, || async {
        indexes.get_opt("app").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(!cluster.store.exists(&layout::current_key(&id)).await.unwrap());
    let left = cluster.store.list_dirs(layout::INDEXES_DIR).await.unwrap();
    assert!(!left.contains(&"app".to_string()), "objects left behind: {left:?}");
    let r = search_app("load_config").await;
    assert_eq!(r.status(), 404, "{}", r.text().await.unwrap());

    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retained_index_is_withdrawn_and_can_be_served_again() {
    let mut s = Setup::start().await;
    s.apply_and_build(manifest("kept", "Retain", 0)).await;
    let router = s.cluster.router.url.clone();
    let st = status_until(&s.indexes, "kept", "Available", |st| {
        st.phase == Phase::Available && hot_owners(st) == 2
    })
    .await;
    let version = st.current_version.clone().unwrap();
    assert_eq!(search(&router, "kept", "load_config").await.status(), 200);

    // kubectl delete with Retain: not served anywhere, every version kept.
    s.delete_and_wait("kept").await;
    let r = search(&router, "kept", "load_config").await;
    assert_eq!(
        r.status(),
        404,
        "a retained index is not served: {}",
        r.text().await.unwrap()
    );
    let id = IndexId::new("kept").unwrap();
    let store = &s.cluster.store.clone();
    assert!(!store.exists(&layout::current_key(&id)).await.unwrap());
    assert!(store.exists(&layout::withdrawn_key(&id)).await.unwrap());
    assert_eq!(publish::list_versions(store, &id).await.unwrap(), vec![version.clone()]);
    // A restarted shard does not rediscover it either.
    s.cluster.kill_shard(0);
    s.cluster.restart_shard(0).await;
    let listed: Value = reqwest::get(format!("{}/v1/indexes", s.cluster.shard_url(0)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!listed.to_string().contains("\"kept\""), "{listed}");

    // The kept version serves again once pointed at (`index rollback`).
    publish::rollback(store, &id, &version).await.unwrap();
    let body: Value = eventually("the rolled-back index to answer", WAIT, || async {
        let r = search(&router, "kept", "load_config").await;
        if r.status() == 200 { r.json().await.ok() } else { None }
    })
    .await;
    assert!(!body["hits"].as_array().unwrap().is_empty(), "{body}");
    s.op.stop().await;
}

async fn kube_job_succeeded(jobs: &Api<Job>, name: &str) -> bool {
    let job = jobs.get(name).await.unwrap();
    matches!(
        trusty_operator::jobs::job_outcome(&job),
        trusty_operator::jobs::JobOutcome::Succeeded { .. }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_published_elsewhere_is_imported_and_followed() {
    let s = Setup::start().await;
    let router = s.cluster.router.url.clone();
    // Another store (a CI pipeline's, say) holds a published index.
    let elsewhere = tempfile::tempdir().unwrap();
    let source_url = format!("file://{}", elsewhere.path().display());
    let source = trusty_search::storage::store::Store::open(&source_url).unwrap();
    let first = crate::support::fixtures::publish_fixture(&source, "ci-built", "first").await;
    s.indexes
        .patch(
            "ci-built",
            &PatchParams::apply("e2e-test"),
            &Patch::Apply(json!({
                "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
                "metadata": {"name": "ci-built", "namespace": NS},
                "spec": {"source": {"objectStore": {"prefix": source_url}}, "replicas": 2},
            })),
        )
        .await
        .unwrap();
    let st = status_until(&s.indexes, "ci-built", "Available", |st| {
        st.phase == Phase::Available && hot_owners(st) == 2
    })
    .await;
    assert_eq!(st.current_version.as_deref(), Some(first.version.as_str()));
    assert!(s.api.objects(JOB).is_empty(), "nothing to build");
    let id = IndexId::new("ci-built").unwrap();
    let (pointer, _) = trusty_search::storage::open::read_current(&s.cluster.store, &id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pointer.version, first.version, "copied into the cluster's S3 store");

    // A new version at the source is imported on a resync and served.
    let second = crate::support::fixtures::publish_fixture(&source, "ci-built", "second").await;
    status_until(&s.indexes, "ci-built", "the second version on both owners", |st| {
        st.current_version.as_deref() == Some(second.version.as_str())
            && st
                .owners
                .iter()
                .filter(|o| o.version.as_deref() == Some(second.version.as_str()))
                .count()
                == 2
    })
    .await;
    let body: Value = search(&router, "ci-built", "parse_config").await.json().await.unwrap();
    assert!(body.to_string().contains("second"), "the new version answers: {body}");
    s.op.stop().await;
}
