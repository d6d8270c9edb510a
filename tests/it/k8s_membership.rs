//! Router membership from EndpointSlices, against a small fake Kubernetes API
//! server in the test (no real API server exists on these machines). It
//! implements just list and watch of EndpointSlices, enough for kube's watcher.

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, broadcast};
use trusty_search::router::membership::{self, ShardEndpoint};

#[derive(Clone)]
struct FakeApi {
    slices: Arc<Mutex<Vec<Value>>>,
    events: broadcast::Sender<Value>,
    requests: Arc<Mutex<Vec<String>>>,
}

fn slice(name: &str, pods: &[(&str, &str, bool)], rv: u64) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "search", "resourceVersion": rv.to_string(),
                     "labels": {"kubernetes.io/service-name": "trusty-shard"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": pods.iter().map(|(pod, ip, ready)| json!({
            "addresses": [ip], "conditions": {"ready": ready},
            "targetRef": {"kind": "Pod", "name": pod, "namespace": "search"}
        })).collect::<Vec<_>>()
    })
}

async fn endpointslices(
    State(api): State<FakeApi>,
    Path(ns): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    api.requests.lock().await.push(format!("{ns} {q:?}"));
    assert_eq!(
        q.get("labelSelector").map(String::as_str),
        Some("kubernetes.io/service-name=trusty-shard")
    );
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let rx = api.events.subscribe();
        let stream = tokio_stream_of(rx).map(|ev| Ok::<_, std::io::Error>(format!("{ev}\n")));
        return axum::body::Body::from_stream(stream).into_response();
    }
    let items = api.slices.lock().await.clone();
    axum::Json(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
        "metadata": {"resourceVersion": "10"}, "items": items
    }))
    .into_response()
}

/// Events broadcast by the test, as a watch stream.
fn tokio_stream_of(rx: broadcast::Receiver<Value>) -> impl futures::Stream<Item = Value> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.ok().map(|v| (v, rx)) })
}

#[tokio::test]
async fn endpointslice_watch_tracks_pods_by_name() {
    let (events, _) = broadcast::channel(16);
    let api = FakeApi {
        slices: Arc::new(Mutex::new(vec![slice(
            "trusty-shard-abc",
            &[
                ("trusty-shard-0", "10.0.0.1", true),
                ("trusty-shard-1", "10.0.0.2", false),
            ],
            5,
        )])),
        events: events.clone(),
        requests: Arc::new(Mutex::new(Vec::new())),
    };
    let app = axum::Router::new()
        .route(
            "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
            get(endpointslices),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let (tx, mut rx) = membership::fixed(Vec::new());
    tokio::spawn(membership::run_k8s(client, "search".into(), "trusty-shard".into(), tx));

    let wait = |rx: &mut tokio::sync::watch::Receiver<Vec<ShardEndpoint>>, want: usize| {
        let mut rx = rx.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|m| m.len() == want))
                .await
                .expect("membership update")
                .unwrap()
                .clone()
        }
    };
    let m = wait(&mut rx, 1).await;
    assert_eq!(
        m,
        vec![ShardEndpoint {
            name: "trusty-shard-0".into(),
            url: "http://10.0.0.1:8080".into()
        }]
    );

    // Events only reach a watch that is open: wait for the watcher to start watching.
    for _ in 0..100 {
        if api.requests.lock().await.iter().any(|r| r.contains("watch")) && events.receiver_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The second pod becomes ready and moves to a new IP: identity is the pod name.
    events
        .send(json!({"type": "MODIFIED", "object": slice("trusty-shard-abc",
            &[("trusty-shard-0", "10.0.0.1", true), ("trusty-shard-1", "10.0.0.9", true)], 11)}))
        .unwrap();
    let m = wait(&mut rx, 2).await;
    assert_eq!(
        m[1],
        ShardEndpoint {
            name: "trusty-shard-1".into(),
            url: "http://10.0.0.9:8080".into()
        }
    );

    events
        .send(json!({"type": "DELETED", "object": slice("trusty-shard-abc", &[], 12)}))
        .unwrap();
    let m = wait(&mut rx, 0).await;
    assert!(m.is_empty());
    assert!(
        api.requests.lock().await.iter().any(|r| r.contains("watch")),
        "the watcher watched"
    );
}
