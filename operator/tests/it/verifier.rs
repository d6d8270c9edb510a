//! The ApiServerVerifier pattern: the test plays the Kubernetes API server
//! through kube's mock service (tower-test), asserting every request one
//! reconcile makes, in order, and answering it. A request the script does not
//! expect blocks the reconcile, which the per-test timeout turns into a failure.

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::Value;
use std::time::Duration;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub struct ApiServerVerifier(pub Handle);

/// One request as the fake API server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl ApiServerVerifier {
    /// Expects the next request to be `method path`, answers it with `respond`'s
    /// (status, body) and returns what was sent.
    pub async fn expect(&mut self, method: Method, path: &str, respond: impl FnOnce(&Seen) -> (u16, Value)) -> Seen {
        let (request, send) = tokio::time::timeout(Duration::from_secs(15), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
            .unwrap_or_else(|| panic!("client gone before {method} {path}"));
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let seen = Seen {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            },
        };
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path),
            "unexpected request {seen:#?}"
        );
        let (code, body) = respond(&seen);
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
        seen
    }

    /// Expects an event with `reason` about the Index and echoes it back.
    pub async fn expect_event(&mut self, ns: &str, reason: &str) -> Seen {
        let seen = self
            .expect(
                Method::POST,
                &format!("/apis/events.k8s.io/v1/namespaces/{ns}/events"),
                |s| (201, s.body.clone()),
            )
            .await;
        assert_eq!(seen.body["reason"], reason, "event {:#}", seen.body);
        assert_eq!(seen.body["regarding"]["kind"], "Index");
        seen
    }

    /// Expects the deletion's look for running build Jobs of Index `name` and
    /// answers that there are none.
    pub async fn expect_no_running_builds(&mut self, ns: &str, name: &str) {
        let seen = self
            .expect(Method::GET, &format!("/apis/batch/v1/namespaces/{ns}/jobs"), |_| {
                (
                    200,
                    serde_json::json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": []}),
                )
            })
            .await;
        let selector = format!("search.trusty.dev%2Findex%3D{name}%2Csearch.trusty.dev%2Findex-namespace%3D{ns}");
        assert!(seen.query.contains(&selector), "{}", seen.query);
    }

    /// Expects the list of build Job `job`'s pods (by the Job controller's
    /// label) and answers with `answer`.
    pub async fn expect_job_pods(&mut self, ns: &str, job: &str, answer: (u16, Value)) -> Seen {
        let seen = self
            .expect(Method::GET, &format!("/api/v1/namespaces/{ns}/pods"), |_| answer)
            .await;
        let selector = format!("labelSelector=batch.kubernetes.io%2Fjob-name%3D{job}");
        assert!(seen.query.contains(&selector), "{}", seen.query);
        seen
    }

    /// Expects the server-side-apply status patch and answers with the object
    /// carrying that status; returns the status that was written.
    pub async fn expect_status_apply(&mut self, ns: &str, name: &str, object: &Value) -> Value {
        let path = format!("/apis/search.trusty.dev/v1alpha1/namespaces/{ns}/indexes/{name}/status");
        let mut obj = object.clone();
        let seen = self
            .expect(Method::PATCH, &path, |s| {
                obj["status"] = s.body["status"].clone();
                (200, obj)
            })
            .await;
        assert_eq!(seen.content_type, "application/apply-patch+yaml");
        assert!(seen.query.contains("fieldManager=trusty-operator"), "{}", seen.query);
        assert!(seen.query.contains("force=true"), "{}", seen.query);
        assert_eq!(seen.body["apiVersion"], "search.trusty.dev/v1alpha1");
        assert_eq!(seen.body["kind"], "Index");
        seen.body["status"].clone()
    }

    /// No further request arrives (the reconcile already returned).
    pub async fn expect_silence(mut self) {
        match tokio::time::timeout(Duration::from_millis(100), self.0.next_request()).await {
            Err(_) | Ok(None) => {}
            Ok(Some((req, _))) => panic!("unexpected extra request {} {}", req.method(), req.uri()),
        }
    }
}

pub fn status_404(what: &str) -> (u16, Value) {
    (
        404,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("{what} not found"), "reason": "NotFound", "code": 404}),
    )
}

/// A pod list answer.
pub fn pod_list(pods: Vec<Value>) -> (u16, Value) {
    (
        200,
        serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods}),
    )
}

/// The API server's refusal of a request the client's role does not allow.
pub fn status_403(what: &str) -> (u16, Value) {
    (
        403,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("{what} is forbidden"), "reason": "Forbidden", "code": 403}),
    )
}
