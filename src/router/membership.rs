//! The shard set, kept current from one source:
//! - a static list `name=url,...` (local mode),
//! - DNS of the headless Service: SRV records (`_http._tcp.<service>`) name
//!   each StatefulSet pod, whose first label is its stable identity; plain A
//!   records are a fallback whose identities are addresses (not stable),
//! - a watch on the Service's EndpointSlices (Kubernetes mode), where each
//!   endpoint's `targetRef.name` is the pod name.
//!
//! Identities, never addresses, feed placement: a pod that restarts with a
//! new IP keeps its indexes.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShardEndpoint {
    /// Stable identity (StatefulSet pod name).
    pub name: String,
    /// Base URL, e.g. `http://10.0.0.7:8080`.
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("invalid --shards entry {0:?}: expected name=url")]
    BadStatic(String),
    #[error("invalid --shards-dns {0:?}: expected host:port")]
    BadDns(String),
    #[error("invalid --shards-k8s {0:?}: expected namespace/service")]
    BadK8s(String),
    #[error("kubernetes client: {0}")]
    Kube(String),
}

/// Parses `s0=http://127.0.0.1:7001,s1=http://127.0.0.1:7002`.
pub fn parse_static(spec: &str) -> Result<Vec<ShardEndpoint>, MembershipError> {
    let mut v = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| MembershipError::BadStatic(part.to_string()))?;
        if name.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(MembershipError::BadStatic(part.to_string()));
        }
        v.push(ShardEndpoint { name: name.to_string(), url: url.trim_end_matches('/').to_string() });
    }
    v.sort();
    v.dedup_by(|a, b| a.name == b.name);
    Ok(v)
}

pub type Members = watch::Receiver<Vec<ShardEndpoint>>;

pub fn fixed(members: Vec<ShardEndpoint>) -> (watch::Sender<Vec<ShardEndpoint>>, Members) {
    watch::channel(members)
}

/// Resolves `host:port` every `interval` and publishes changes.
pub async fn run_dns(spec: String, interval: Duration, tx: watch::Sender<Vec<ShardEndpoint>>) -> Result<(), MembershipError> {
    let (host, port) = spec.rsplit_once(':').ok_or_else(|| MembershipError::BadDns(spec.clone()))?;
    let port: u16 = port.parse().map_err(|_| MembershipError::BadDns(spec.clone()))?;
    let resolver = hickory_resolver::Resolver::builder_tokio()
        .map_err(|e| MembershipError::BadDns(format!("{spec}: {e}")))?
        .build();
    loop {
        match resolve_once(&resolver, host, port).await {
            Ok(members) if !members.is_empty() => {
                tx.send_if_modified(|cur| {
                    if *cur != members {
                        tracing::info!(count = members.len(), "shard membership changed (DNS)");
                        *cur = members;
                        true
                    } else {
                        false
                    }
                });
            }
            Ok(_) => tracing::warn!(host, "DNS returned no shards; keeping the previous set"),
            Err(e) => tracing::warn!(host, error = %e, "DNS lookup failed; keeping the previous set"),
        }
        tokio::time::sleep(interval).await;
    }
}

async fn resolve_once(
    resolver: &hickory_resolver::TokioResolver,
    host: &str,
    port: u16,
) -> Result<Vec<ShardEndpoint>, hickory_resolver::ResolveError> {
    let mut out = Vec::new();
    if let Ok(srv) = resolver.srv_lookup(format!("_http._tcp.{host}")).await {
        for r in srv.iter() {
            let target = r.target().to_utf8();
            let target = target.trim_end_matches('.');
            let name = target.split('.').next().unwrap_or(target).to_string();
            out.push(ShardEndpoint { name, url: format!("http://{target}:{}", r.port()) });
        }
    }
    if out.is_empty() {
        for ip in resolver.lookup_ip(host).await?.iter() {
            let addr = std::net::SocketAddr::new(ip, port);
            out.push(ShardEndpoint { name: ip.to_string(), url: format!("http://{addr}") });
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

/// Endpoints of one EndpointSlice: ready endpoints with a pod name.
pub fn endpoints_of(slice: &EndpointSlice) -> Vec<ShardEndpoint> {
    let port = slice
        .ports
        .as_ref()
        .and_then(|ports| {
            ports.iter().find(|p| p.name.as_deref() == Some("http")).or_else(|| ports.first()).and_then(|p| p.port)
        })
        .unwrap_or(8080);
    slice
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| {
            let name = e.target_ref.as_ref().and_then(|t| t.name.clone()).or_else(|| e.hostname.clone())?;
            let addr = e.addresses.first()?;
            let host = if addr.contains(':') { format!("[{addr}]") } else { addr.clone() };
            Some(ShardEndpoint { name, url: format!("http://{host}:{port}") })
        })
        .collect()
}

/// Watches EndpointSlices labelled for `service` in `namespace`.
pub async fn run_k8s(
    client: kube::Client,
    namespace: String,
    service: String,
    tx: watch::Sender<Vec<ShardEndpoint>>,
) -> Result<(), MembershipError> {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client, &namespace);
    let cfg = watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
    let mut stream = watcher::watcher(api, cfg).boxed();
    let mut slices: BTreeMap<String, Vec<ShardEndpoint>> = BTreeMap::new();
    let mut staging: BTreeMap<String, Vec<ShardEndpoint>> = BTreeMap::new();
    while let Some(event) = stream.next().await {
        let name_of = |s: &EndpointSlice| s.metadata.name.clone().unwrap_or_default();
        match event {
            Ok(Event::Apply(s)) => {
                slices.insert(name_of(&s), endpoints_of(&s));
            }
            Ok(Event::Delete(s)) => {
                slices.remove(&name_of(&s));
            }
            Ok(Event::Init) => staging.clear(),
            Ok(Event::InitApply(s)) => {
                staging.insert(name_of(&s), endpoints_of(&s));
                continue;
            }
            Ok(Event::InitDone) => slices = std::mem::take(&mut staging),
            Err(e) => {
                tracing::warn!(error = %e, "EndpointSlice watch error; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let mut members: Vec<ShardEndpoint> = slices.values().flatten().cloned().collect();
        members.sort();
        members.dedup_by(|a, b| a.name == b.name);
        tx.send_if_modified(|cur| {
            if *cur != members {
                tracing::info!(count = members.len(), "shard membership changed (EndpointSlices)");
                *cur = members;
                true
            } else {
                false
            }
        });
    }
    Ok(())
}

pub fn parse_k8s(spec: &str) -> Result<(String, String), MembershipError> {
    match spec.split_once('/') {
        Some((ns, svc)) if !ns.is_empty() && !svc.is_empty() => Ok((ns.to_string(), svc.to_string())),
        _ => Err(MembershipError::BadK8s(spec.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_lists_parse_and_sort() {
        let m = parse_static("s1=http://127.0.0.1:2/, s0=http://127.0.0.1:1").unwrap();
        assert_eq!(m[0], ShardEndpoint { name: "s0".into(), url: "http://127.0.0.1:1".into() });
        assert_eq!(m[1].url, "http://127.0.0.1:2");
        assert!(parse_static("s0").is_err());
        assert!(parse_static("s0=ftp://x").is_err());
        assert!(parse_k8s("ns/svc").is_ok());
        assert!(parse_k8s("nsvc").is_err());
    }

    #[test]
    fn endpoint_slices_give_pod_names_and_ready_addresses() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shards-abc"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "trusty-shard-0"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "trusty-shard-1"}},
                {"addresses": ["10.0.0.3"], "hostname": "trusty-shard-2"}
            ]
        }))
        .unwrap();
        let e = endpoints_of(&slice);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0], ShardEndpoint { name: "trusty-shard-0".into(), url: "http://10.0.0.1:8080".into() });
        assert_eq!(e[1].name, "trusty-shard-2");
    }
}
