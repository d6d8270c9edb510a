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
}

/// Parses `s0=http://127.0.0.1:7001,s1=http://127.0.0.1:7002`.
pub fn parse_static(spec: &str) -> Result<Vec<ShardEndpoint>, MembershipError> {
    let mut v = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| MembershipError::BadStatic(part.to_string()))?;
        if name.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(MembershipError::BadStatic(part.to_string()));
        }
        v.push(ShardEndpoint {
            name: name.to_string(),
            url: url.trim_end_matches('/').to_string(),
        });
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
pub async fn run_dns(
    spec: String,
    interval: Duration,
    tx: watch::Sender<Vec<ShardEndpoint>>,
) -> Result<(), MembershipError> {
    let (host, port) = spec
        .rsplit_once(':')
        .ok_or_else(|| MembershipError::BadDns(spec.clone()))?;
    let port: u16 = port.parse().map_err(|_| MembershipError::BadDns(spec.clone()))?;
    let resolver = hickory_resolver::Resolver::builder_tokio()
        .map_err(|e| MembershipError::BadDns(format!("{spec}: {e}")))?
        .build();
    watch_dns(&resolver, host, port, interval, tx).await
}

/// The polling loop of [`run_dns`], over any resolver (tests bring their own name server).
async fn watch_dns(
    resolver: &hickory_resolver::TokioResolver,
    host: &str,
    port: u16,
    interval: Duration,
    tx: watch::Sender<Vec<ShardEndpoint>>,
) -> Result<(), MembershipError> {
    // Once SRV has named the shards, a failed SRV lookup keeps the set: the
    // A-record fallback names shards by address, and renaming every shard
    // would move nearly every index for one poll.
    let mut srv_seen = false;
    loop {
        match resolve(resolver, host, port, srv_seen).await {
            Ok((members, via_srv)) if !members.is_empty() => {
                srv_seen |= via_srv;
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

/// The shards behind `host`: named by pod from its SRV records, else by
/// address from its A/AAAA records unless `srv_only`. Says whether SRV answered.
async fn resolve(
    resolver: &hickory_resolver::TokioResolver,
    host: &str,
    port: u16,
    srv_only: bool,
) -> Result<(Vec<ShardEndpoint>, bool), hickory_resolver::ResolveError> {
    let mut out = Vec::new();
    match resolver.srv_lookup(format!("_http._tcp.{host}")).await {
        Err(e) if srv_only => return Err(e),
        Err(_) => {}
        Ok(srv) => {
            for r in srv.iter() {
                let target = r.target().to_utf8();
                let target = target.trim_end_matches('.');
                let name = target.split('.').next().unwrap_or(target).to_string();
                out.push(ShardEndpoint {
                    name,
                    url: format!("http://{target}:{}", r.port()),
                });
            }
        }
    }
    let via_srv = !out.is_empty();
    if out.is_empty() && !srv_only {
        for ip in resolver.lookup_ip(host).await?.iter() {
            let addr = std::net::SocketAddr::new(ip, port);
            out.push(ShardEndpoint {
                name: ip.to_string(),
                url: format!("http://{addr}"),
            });
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.name == b.name);
    Ok((out, via_srv))
}

/// Endpoints of one EndpointSlice: ready endpoints with a pod name.
pub fn endpoints_of(slice: &EndpointSlice) -> Vec<ShardEndpoint> {
    let port = slice
        .ports
        .as_ref()
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some("http"))
                .or_else(|| ports.first())
                .and_then(|p| p.port)
        })
        .unwrap_or(8080);
    slice
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| {
            let name = e
                .target_ref
                .as_ref()
                .and_then(|t| t.name.clone())
                .or_else(|| e.hostname.clone())?;
            let addr = e.addresses.first()?;
            let host = if addr.contains(':') {
                format!("[{addr}]")
            } else {
                addr.clone()
            };
            Some(ShardEndpoint {
                name,
                url: format!("http://{host}:{port}"),
            })
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
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
    use hickory_resolver::proto::rr::rdata::{A, SRV};
    use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::{Arc, Mutex};

    /// The records a test's name server answers from; tests edit it live.
    type Zone = Arc<Mutex<Vec<Record>>>;

    /// A UDP name server on 127.0.0.1 answering every record of the zone that
    /// matches a question's name and type; anything else is NXDOMAIN.
    async fn dns_server(zone: Zone) -> u16 {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::new();
                reply
                    .set_id(query.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_available(true);
                let mut found = false;
                for q in query.queries() {
                    reply.add_query(q.clone());
                    for r in zone.lock().unwrap().iter() {
                        if r.name() == q.name() && r.record_type() == q.query_type() {
                            reply.add_answer(r.clone());
                            found = true;
                        }
                    }
                }
                if !found {
                    reply.set_response_code(ResponseCode::NXDomain);
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
            }
        });
        port
    }

    fn resolver(port: u16) -> hickory_resolver::TokioResolver {
        let servers = NameServerConfigGroup::from_ips_clear(&[IpAddr::V4(Ipv4Addr::LOCALHOST)], port, true);
        let mut b = hickory_resolver::Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], servers),
            TokioConnectionProvider::default(),
        );
        // Membership must follow the records, not a cache.
        b.options_mut().cache_size = 0;
        b.build()
    }

    fn srv(service: &str, pod: &str) -> Record {
        let target = Name::from_ascii(format!("{pod}.shards.search.svc.")).unwrap();
        Record::from_rdata(
            Name::from_ascii(service).unwrap(),
            5,
            RData::SRV(SRV::new(0, 50, 8080, target)),
        )
    }

    fn a(name: &str, ip: [u8; 4]) -> Record {
        Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            5,
            RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
        )
    }

    #[tokio::test]
    async fn dns_srv_names_pods_and_a_records_are_the_fallback() {
        let zone: Zone = Arc::new(Mutex::new(vec![
            srv("_http._tcp.shards.search.svc.", "trusty-shard-1"),
            srv("_http._tcp.shards.search.svc.", "trusty-shard-0"),
            a("plain.search.svc.", [10, 0, 0, 7]),
        ]));
        let r = resolver(dns_server(zone.clone()).await);

        // SRV: identities are the pod names (first label), sorted; the SRV port wins.
        let m = resolve(&r, "shards.search.svc.", 9999, false).await.unwrap().0;
        assert_eq!(
            m,
            vec![
                ShardEndpoint {
                    name: "trusty-shard-0".into(),
                    url: "http://trusty-shard-0.shards.search.svc:8080".into()
                },
                ShardEndpoint {
                    name: "trusty-shard-1".into(),
                    url: "http://trusty-shard-1.shards.search.svc:8080".into()
                },
            ]
        );
        // No SRV: A records, identities are addresses, the given port.
        let m = resolve(&r, "plain.search.svc.", 7001, false).await.unwrap().0;
        assert_eq!(
            m,
            vec![ShardEndpoint {
                name: "10.0.0.7".into(),
                url: "http://10.0.0.7:7001".into()
            }]
        );
        // Neither: an error the loop logs, keeping the previous set.
        assert!(resolve(&r, "missing.search.svc.", 7001, false).await.is_err());

        // The loop publishes the set and follows a scale-up.
        let (tx, mut rx) = watch::channel(Vec::new());
        tokio::spawn(async move { watch_dns(&r, "shards.search.svc.", 8080, Duration::from_millis(50), tx).await });
        rx.wait_for(|m| m.len() == 2).await.unwrap();
        zone.lock()
            .unwrap()
            .push(srv("_http._tcp.shards.search.svc.", "trusty-shard-2"));
        let m = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|m| m.len() == 3))
            .await
            .unwrap()
            .unwrap()
            .clone();
        assert_eq!(m[2].name, "trusty-shard-2");
        // SRV failing while A still answers keeps the pod names: no renaming
        // every shard (and moving every index) for a poll.
        zone.lock().unwrap().retain(|r| r.record_type() != RecordType::SRV);
        zone.lock().unwrap().push(a("shards.search.svc.", [10, 0, 0, 9]));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rx.borrow()[2].name, "trusty-shard-2");
        // Records vanishing (NXDOMAIN) keep the last known set rather than emptying the ring.
        zone.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rx.borrow().len(), 3);
    }

    #[test]
    fn static_lists_parse_and_sort() {
        let m = parse_static("s1=http://127.0.0.1:2/, s0=http://127.0.0.1:1").unwrap();
        assert_eq!(
            m[0],
            ShardEndpoint {
                name: "s0".into(),
                url: "http://127.0.0.1:1".into()
            }
        );
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
        assert_eq!(
            e[0],
            ShardEndpoint {
                name: "trusty-shard-0".into(),
                url: "http://10.0.0.1:8080".into()
            }
        );
        assert_eq!(e[1].name, "trusty-shard-2");
    }
}
