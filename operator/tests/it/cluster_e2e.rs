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
use crate::support::s3::S3Server;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use trusty_operator::{Index, IndexStatus, controller::Resync, crd::Phase};
use trusty_search::IndexId;
use trusty_search::storage::layout::{self, bundle};

const NS: &str = "team-a";
const WAIT: Duration = Duration::from_secs(90);

fn manifest(reset_generation: i64) -> Value {
    json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"source": {"volume": {"claimName": "code", "path": "app"}},
                 "lexicalOnly": true, "replicas": 2, "deletionPolicy": "Delete",
                 "resetGeneration": reset_generation},
    })
}

/// Waits until the Index status satisfies `ok`, printing the last status seen on timeout.
async fn status_until(indexes: &Api<Index>, what: &str, ok: impl Fn(&IndexStatus) -> bool) -> IndexStatus {
    let last = std::sync::Mutex::new(None);
    let found = tokio::time::timeout(
        WAIT,
        eventually(what, WAIT + Duration::from_secs(1), || async {
            let st = indexes.get("app").await.ok()?.status?;
            *last.lock().unwrap() = Some(st.clone());
            ok(&st).then_some(st)
        }),
    )
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last status: {:#?}", last.lock().unwrap()))
}

fn hot_owners(st: &IndexStatus) -> usize {
    st.owners.iter().filter(|o| o.state == "hot").count()
}

async fn search(router: &str, query: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{router}/v1/indexes/app/search"))
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_lifecycle_against_a_real_cluster() {
    install_crypto();
    // Long failure backoff on the shards: only the reset may bring a failed index back.
    let mut cluster = Cluster::start_with(3, 2, &["--retry-base", "10m", "--retry-max", "10m"], &[]).await;
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
    let indexes: Api<Index> = Api::namespaced(client.clone(), NS);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);

    // The PersistentVolumeClaim `code` holds the source under `app/`.
    let pvc = tempfile::tempdir().unwrap();
    write_repo(&pvc.path().join("app"), "e2e");
    let pod_work = tempfile::tempdir().unwrap();
    let secrets: HashMap<String, Vec<(String, String)>> = HashMap::from([(
        "store-creds".to_string(),
        S3Server::env().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    )]);

    indexes
        .patch("app", &PatchParams::apply("e2e-test"), &Patch::Apply(manifest(0)))
        .await
        .unwrap();

    // kubectl apply → a build Job; the "node" runs it against the real store.
    let job = eventually("a build Job", WAIT, || async {
        jobs.list(&ListParams::default()).await.ok()?.items.into_iter().next()
    })
    .await;
    let job_name = job.metadata.name.clone().unwrap();
    let (_, stderr) = kubelet::run(
        &jobs,
        &job_name,
        &[("/source", pvc.path()), ("/work", pod_work.path())],
        &secrets,
    )
    .await;
    assert!(
        kube_job_succeeded(&jobs, &job_name).await,
        "the build Job's command failed:\n{stderr}"
    );

    // Published in the store, registered, loaded by both owners.
    let st = status_until(&indexes, "Available with 2 hot owners", |st| {
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
    let r = search(&cluster.router.url, "load_config").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["hits"].as_array().unwrap().iter().any(|h| h["path"] == "src/config.rs"),
        "{body}"
    );

    // Corrupt the bundle in object storage, and let both owners lose their
    // caches (a rescheduled pod on a fresh emptyDir): their reloads fail.
    let chunks_key = format!("cluster/{}", layout::file_key(&id, &current.version, bundle::CHUNKS_FILE));
    let object = cluster.s3.object_path(&chunks_key);
    let original = std::fs::read(&object).unwrap();
    let mut corrupt = original.clone();
    corrupt[original.len() / 2] ^= 0x55;
    std::fs::write(&object, &corrupt).unwrap();
    let owners: Vec<usize> = st
        .owners
        .iter()
        .map(|o| (0..3).find(|&i| shard_name(i) == o.shard).expect("owner is a cluster shard"))
        .collect();
    for &i in &owners {
        cluster.kill_shard(i);
        std::fs::remove_dir_all(cluster.cache_dir(i)).unwrap();
        cluster.restart_shard(i).await;
    }
    // Queries now find both owners failing: 503, retryable only after the backoff.
    eventually("a query to fail on both owners", WAIT, || async {
        let r = search(&cluster.router.url, "load_config").await;
        (r.status() == 503).then_some(())
    })
    .await;
    let st = status_until(&indexes, "Degraded with failed owners", |st| {
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
    let r = search(&cluster.router.url, "load_config").await;
    assert_eq!(r.status(), 503, "still failed before the reset");
    indexes
        .patch("app", &PatchParams::apply("e2e-test"), &Patch::Apply(manifest(1)))
        .await
        .unwrap();
    let st = status_until(&indexes, "Available again after the reset", |st| {
        st.phase == Phase::Available && hot_owners(st) == 2
    })
    .await;
    assert_eq!(st.last_reset_generation, Some(1));
    assert_eq!(api.objects(JOB).len(), 1, "a reset of a good build does not rebuild");
    assert_eq!(search(&cluster.router.url, "load_config").await.status(), 200);

    // kubectl delete → unregistered everywhere, objects removed from the store.
    indexes.delete("app", &DeleteParams::default()).await.unwrap();
    eventually("the Index to be gone", WAIT, || async {
        indexes.get_opt("app").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(!cluster.store.exists(&layout::current_key(&id)).await.unwrap());
    let left = cluster.store.list_dirs(layout::INDEXES_DIR).await.unwrap();
    assert!(!left.contains(&"app".to_string()), "objects left behind: {left:?}");
    let r = search(&cluster.router.url, "load_config").await;
    assert_eq!(r.status(), 404, "{}", r.text().await.unwrap());

    op.stop().await;
}

async fn kube_job_succeeded(jobs: &Api<Job>, name: &str) -> bool {
    let job = jobs.get(name).await.unwrap();
    matches!(
        trusty_operator::jobs::job_outcome(&job),
        trusty_operator::jobs::JobOutcome::Succeeded { .. }
    )
}
