//! Starts the real operator (leader election + Controller) against any kube
//! `Client` and router URL, and small polling helpers.
//!
//! Both ends are plain parameters: the fake router and a `file://` store in
//! `controller_e2e`, a real router, shards and S3 server in `cluster_e2e`.

use crate::support::process::ADMIN_TOKEN;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use trusty_operator::{
    Context,
    controller::{self, Resync},
    jobs::BuildConfig,
    leader::LeaderElector,
    metrics::Metrics,
    router_client::RouterClient,
};

pub const LEASE_NAMESPACE: &str = "trusty-system";
pub const LEASE_NAME: &str = "trusty-operator";
pub const IMAGE: &str = "registry.example/trusty-search:e2e";

/// kube's rustls client needs a process-wide crypto provider, as in main.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub struct Operator {
    pub metrics: Arc<Metrics>,
    pub identity: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    /// Runs the operator the way `main` does: the controller only while this
    /// replica holds the Lease.
    pub fn start(client: Client, router_url: &str, store: &str, identity: &str, namespace: Option<String>) -> Operator {
        Self::start_with_resync(client, router_url, store, identity, namespace, Resync::default())
    }

    /// With a shorter status resync, for tests that wait on data-plane changes
    /// no Kubernetes event announces.
    pub fn start_with_resync(
        client: Client,
        router_url: &str,
        store: &str,
        identity: &str,
        namespace: Option<String>,
        resync: Resync,
    ) -> Operator {
        let build = build_config(store, None);
        Self::start_inner(client, router_url, identity, namespace, resync, build)
    }

    /// With build Jobs in one shared namespace, as the chart installs it.
    pub fn start_building_in(
        client: Client,
        router_url: &str,
        store: &str,
        identity: &str,
        build_namespace: &str,
    ) -> Operator {
        let build = build_config(store, Some(build_namespace.into()));
        Self::start_inner(client, router_url, identity, None, Resync::default(), build)
    }

    fn start_inner(
        client: Client,
        router_url: &str,
        identity: &str,
        namespace: Option<String>,
        resync: Resync,
        build: BuildConfig,
    ) -> Operator {
        let metrics = Arc::new(Metrics::new());
        let router = RouterClient::new(router_url, Some(ADMIN_TOKEN.into())).unwrap();
        let ctx = Arc::new(
            Context::new(client.clone(), router, build, metrics.clone(), Some(identity.into())).with_resync(resync),
        );
        // A lease long enough that a loaded machine does not delay its renewal
        // past the renew deadline (10 s): a lost lease would restart the
        // controller mid-scenario. No scenario waits for it to expire: a
        // stopping operator releases it.
        let elector = LeaderElector::new(
            Api::<Lease>::namespaced(client, LEASE_NAMESPACE),
            LEASE_NAME,
            identity,
            Duration::from_secs(15),
        );
        let (tx, rx) = oneshot::channel::<()>();
        let (c, m) = (ctx.clone(), metrics.clone());
        let task = tokio::spawn(async move {
            elector
                .run(
                    m,
                    async {
                        let _ = rx.await;
                    },
                    move || controller::run(c.clone(), namespace.clone()),
                )
                .await
        });
        Operator {
            metrics,
            identity: identity.into(),
            stop: Some(tx),
            task,
        }
    }

    /// Stops the controller and releases the Lease.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("operator stops")
            .unwrap();
    }
}

/// The build settings every test operator uses.
fn build_config(store: &str, namespace: Option<String>) -> BuildConfig {
    BuildConfig {
        image: IMAGE.into(),
        store: store.into(),
        store_secret: Some("store-creds".into()),
        // The tests import from temporary directories.
        import_from: vec!["file:///".into()],
        namespace,
        ..Default::default()
    }
}

/// Polls `f` every 50 ms until it yields `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
