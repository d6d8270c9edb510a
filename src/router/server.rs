//! Starting a router: membership source, health probes, the API, `/mcp`.

use super::config::RouterConfig;
use super::forward::RouterState;
use super::health::{Health, probe_loop};
use super::http::routes;
use super::membership;
use crate::mcp::DEADLINE_MARGIN;
use crate::server::serve;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a router could not start; each keeps the error underneath it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("give one of --shards, --shards-dns or --shards-k8s")]
    NoMembership,
    #[error(transparent)]
    Membership(#[from] membership::MembershipError),
    #[error("connecting to the Kubernetes API for --shards-k8s")]
    Kube(#[source] kube::Error),
    #[error("building the HTTP client for shards")]
    HttpClient(#[source] reqwest::Error),
    #[error("listening on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting /mcp")]
    Mcp(#[source] crate::mcp::McpError),
}

pub struct RouterHandle {
    pub addr: std::net::SocketAddr,
    pub state: Arc<RouterState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl RouterHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        for b in &self.background {
            b.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }

    pub async fn wait(self) -> std::io::Result<()> {
        let r = self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        for b in &self.background {
            b.abort();
        }
        r
    }
}

pub async fn start(cfg: RouterConfig) -> Result<RouterHandle, StartError> {
    crate::telemetry::metrics::touch(crate::telemetry::metrics::Role::Router);
    crate::telemetry::metrics::set_build_info("router");
    let (tx, members) = membership::fixed(Vec::new());
    let mut background = Vec::new();
    match (&cfg.shards, &cfg.shards_dns, &cfg.shards_k8s) {
        (Some(list), _, _) => {
            tx.send_replace(membership::parse_static(list)?);
        }
        (None, Some(dns), _) => {
            let (dns, tx) = (dns.clone(), tx.clone());
            background.push(tokio::spawn(async move {
                if let Err(e) = membership::run_dns(dns, std::time::Duration::from_secs(5), tx).await {
                    tracing::error!(error = %e, "DNS membership stopped");
                }
            }));
        }
        (None, None, Some(spec)) => {
            let (ns, svc) = membership::parse_k8s(spec)?;
            let client = kube::Client::try_default().await.map_err(StartError::Kube)?;
            let tx = tx.clone();
            background.push(tokio::spawn(async move {
                if let Err(e) = membership::run_k8s(client, ns, svc, tx).await {
                    tracing::error!(error = %e, "EndpointSlice membership stopped");
                }
            }));
        }
        (None, None, None) => return Err(StartError::NoMembership),
    }
    start_with_members(cfg, tx, members, background).await
}

/// Starts with an externally fed membership channel (tests, the local cluster).
pub async fn start_with_members(
    cfg: RouterConfig,
    tx: tokio::sync::watch::Sender<Vec<membership::ShardEndpoint>>,
    members: membership::Members,
    mut background: Vec<tokio::task::JoinHandle<()>>,
) -> Result<RouterHandle, StartError> {
    let client = reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .map_err(StartError::HttpClient)?;
    let health = Arc::new(Health::new(&cfg));
    let state = Arc::new(RouterState::new(
        cfg.clone(),
        members.clone(),
        health.clone(),
        client.clone(),
    ));
    background.push(tokio::spawn(probe_loop(health, members, client, cfg.clone())));
    background.push(tokio::spawn(super::handoff::run(state.clone())));
    // Keep the sender alive for as long as the router runs.
    background.push(tokio::spawn(async move {
        tx.closed().await;
    }));

    let listen_error = |source| StartError::Listen {
        addr: cfg.listen.clone(),
        source,
    };
    let listener = serve::bind(&cfg.listen).await.map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    let ready = Arc::new(AtomicBool::new(false));
    let mcp =
        crate::mcp::mcp_http_service(self_url(addr), cfg.request_timeout + DEADLINE_MARGIN).map_err(StartError::Mcp)?;
    let app = app(state.clone(), ready.clone(), mcp);
    let (stx, srx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve::serve(listener, app, async move {
        let _ = srx.await;
    }));
    ready.store(true, Ordering::Release);
    Ok(RouterHandle {
        addr,
        state,
        shutdown: Some(stx),
        task,
        background,
    })
}

/// Where MCP tools reach the public API: on a router, this very process, at
/// the address it listens on (the loopback of the same family when that is
/// the unspecified address).
fn self_url(addr: std::net::SocketAddr) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// The public API behind the shared limiter, and `/mcp` behind its own: each
/// tool call is a second request to this router's API, which must find a
/// permit of the shared limiter free. Its deadline outlasts the tool's call,
/// so the API's own answer (with its retry advice) reaches the agent.
fn app(state: Arc<RouterState>, ready: Arc<AtomicBool>, mcp: crate::mcp::McpHttpService) -> axum::Router {
    let cfg = state.cfg.clone();
    let mcp = serve::shed(
        axum::Router::new().nest_service("/mcp", mcp),
        cfg.max_concurrency,
        serve::Deadline::Fixed(cfg.request_timeout + 2 * DEADLINE_MARGIN),
    );
    serve::harden(
        routes(state),
        serve::ops_routes(ready).merge(mcp),
        "router",
        cfg.max_concurrency,
        serve::Deadline::Fixed(cfg.request_timeout),
        crate::server::params::BODY_LIMIT,
    )
}

#[cfg(test)]
mod tests {
    use super::self_url;

    #[test]
    fn mcp_calls_the_api_where_the_router_listens() {
        let url = |a: &str| self_url(a.parse().unwrap());
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080");
        assert_eq!(url("10.0.0.5:8080"), "http://10.0.0.5:8080");
        assert_eq!(url("[fd00::5]:8080"), "http://[fd00::5]:8080");
    }
}
