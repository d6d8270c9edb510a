//! `trusty-operator`: runs the Index controller under Lease leader election
//! and serves `/metrics`, `/healthz` and `/readyz`.

use clap::{Parser, ValueEnum};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use trusty_operator::{
    Context, Error,
    controller::{self, Resync},
    jobs::BuildConfig,
    leader::LeaderElector,
    metrics::{self, Metrics},
    router_client::RouterClient,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

/// Reconciles trusty-search Index resources: builds, registers, reports.
#[derive(Debug, Parser)]
#[command(name = "trusty-operator", version)]
struct Args {
    /// Base URL of the trusty-search router (admin and status API).
    #[arg(long, env = "TRUSTY_ROUTER_URL")]
    router_url: String,
    /// Bearer token of the router admin API.
    #[arg(long, env = "TRUSTY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Image of the build Jobs (the trusty-search image).
    #[arg(long, env = "TRUSTY_IMAGE")]
    image: String,
    /// Object store URL the cluster serves from, e.g. s3://bucket/trusty or file:///data.
    #[arg(long, env = "TRUSTY_STORE")]
    store: String,
    /// Secret whose keys become the build Jobs' environment (store credentials).
    #[arg(long, env = "TRUSTY_STORE_SECRET")]
    store_secret: Option<String>,
    /// Watch only this namespace (all namespaces when absent).
    #[arg(long, env = "TRUSTY_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "TRUSTY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Log output format.
    #[arg(long, env = "TRUSTY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Environment of every build Job, as a JSON list of Kubernetes EnvVars
    /// (the chart passes the store's non-secret settings and store.extraEnv).
    #[arg(long, env = "TRUSTY_BUILD_ENV")]
    build_env: Option<String>,
    /// Pod settings of every build Job, as JSON (resources, nodeSelector,
    /// tolerations, affinity, imagePullSecrets, serviceAccountName, security
    /// contexts); the chart passes its own. Restricted defaults without it.
    #[arg(long, env = "TRUSTY_BUILD_POD")]
    build_pod: Option<String>,
    /// Store prefixes an Index's `objectStore` source may import from,
    /// comma-separated (none by default: the operator's credentials are only
    /// pointed at stores the cluster admin chose).
    #[arg(long, env = "TRUSTY_IMPORT_FROM", value_delimiter = ',')]
    import_from: Vec<String>,
    /// Directory imports stage a version in (a volume sized for the largest
    /// index); the system temporary directory when absent.
    #[arg(long, env = "TRUSTY_IMPORT_DIR")]
    import_dir: Option<std::path::PathBuf>,
    /// Namespace build Jobs run in (the chart: the operator's own), so the
    /// store credentials stay there; each Index's namespace when absent.
    #[arg(long, env = "TRUSTY_BUILD_NAMESPACE")]
    build_namespace: Option<String>,
    /// With --build-namespace: let Indexes with a `volume` source build
    /// beside their claim, in their own namespace, which takes Job rights in
    /// every Index's namespace (the chart's operator.build.volumeSources).
    /// Without it they are refused, and Jobs are read and watched in the
    /// build namespace only.
    #[arg(long, env = "TRUSTY_VOLUME_SOURCES", default_value_t = false, action = clap::ArgAction::Set)]
    volume_sources: bool,
    /// Namespace of the leader-election Lease (the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "TRUSTY_LEASE_NAME", default_value = "trusty-operator")]
    lease_name: String,
    /// Identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How often an Available Index's status is re-read from the cluster
    /// (converging ones at least every 15 s), e.g. "60s" or "5m".
    #[arg(long, env = "TRUSTY_RESYNC", default_value = "60s", value_parser = humantime::parse_duration)]
    resync: Duration,
    /// Lease duration in seconds; a dead leader is replaced after this long.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let colour = trusty_core::log_colour(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colour);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
    // kube's rustls client needs a process-wide crypto provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let client = match Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("trusty-operator: cannot create a Kubernetes client (no kubeconfig or in-cluster config): {e}");
            return ExitCode::from(3);
        }
    };
    match controller::check_crd_installed(client.clone(), args.namespace.as_deref()).await {
        Ok(()) => {}
        Err(e @ Error::CrdNotInstalled) => {
            eprintln!("trusty-operator: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("trusty-operator: cannot list Indexes: {e}");
            return ExitCode::from(3);
        }
    }
    let build_env = match args.build_env.as_deref().map(serde_json::from_str).transpose() {
        Ok(env) => env.unwrap_or_default(),
        Err(e) => {
            eprintln!("trusty-operator: TRUSTY_BUILD_ENV must be a JSON list of Kubernetes EnvVars: {e}");
            return ExitCode::from(2);
        }
    };
    let build_pod = match args.build_pod.as_deref().map(serde_json::from_str).transpose() {
        Ok(pod) => pod.unwrap_or_default(),
        Err(e) => {
            eprintln!("trusty-operator: TRUSTY_BUILD_POD is not a valid build pod setting: {e}");
            return ExitCode::from(2);
        }
    };
    let router = match RouterClient::new(&args.router_url, args.admin_token.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trusty-operator: invalid router client settings: {e}");
            return ExitCode::from(3);
        }
    };

    let metrics = Arc::new(Metrics::new());
    // Ready while election rounds (every third of the lease) keep reaching the API server.
    let lease = Duration::from_secs(args.lease_seconds.max(3));
    let metrics_srv = tokio::spawn(metrics::serve(args.listen, metrics.clone(), lease * 2));

    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "trusty-operator".into());
        format!("{host}-{}", std::process::id())
    });
    let build = BuildConfig {
        image: args.image.clone(),
        store: args.store.clone(),
        store_secret: args.store_secret.clone(),
        env: build_env,
        pod: build_pod,
        import_from: args
            .import_from
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        import_dir: args.import_dir.clone(),
        namespace: args.build_namespace.clone().filter(|n| !n.is_empty()),
        volume_sources: args.volume_sources,
    };
    let ctx = Arc::new(
        Context::new(client.clone(), router, build, metrics.clone(), Some(identity.clone()))
            .with_resync(Resync::every(args.resync.max(Duration::from_secs(1)))),
    );
    let elector = LeaderElector::new(
        Api::<Lease>::namespaced(client, &args.lease_namespace),
        &args.lease_name,
        &identity,
        lease,
    );
    tracing::info!(%identity, router = %args.router_url, namespace = ?args.namespace, "starting");
    let namespace = args.namespace.clone();
    elector
        .run(metrics, shutdown_signal(), move || {
            controller::run(ctx.clone(), namespace.clone())
        })
        .await;
    metrics_srv.abort();
    ExitCode::SUCCESS
}
