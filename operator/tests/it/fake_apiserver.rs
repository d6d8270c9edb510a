//! A small in-memory Kubernetes API server (axum on 127.0.0.1:0) with just
//! enough of the API for kube's `Client`, `Api`, watcher and `Controller` to
//! run the real operator against it: Index (with the status subresource),
//! Job, Pod (the core group, under `/api/v1`), Lease and Event.
//!
//! Implemented: list (with resourceVersion and label selectors), watch streams
//! replaying ADDED/MODIFIED/DELETED after a resourceVersion, get, create (409
//! on conflict), replace with optimistic concurrency, patch (server-side
//! apply, JSON merge, JSON patch with `test`), status subresource writes,
//! generation bumps on spec changes, delete honouring finalizers
//! (deletionTimestamp first, removal when the last finalizer goes) and
//! owner-reference cascading, and RBAC refusals (403) on request. Not
//! implemented: field selectors, pagination, managedFields, admission, schema
//! validation (see `crd_files` for that).

use axum::{
    Router,
    body::{Body, Bytes},
    http::{HeaderMap, Method, Uri},
    response::Response,
};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

#[derive(Clone, Copy, Debug)]
pub struct Kind {
    pub group_version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub status_subresource: bool,
}

pub const INDEX: Kind = Kind {
    group_version: "search.trusty.dev/v1alpha1",
    plural: "indexes",
    kind: "Index",
    status_subresource: true,
};
pub const JOB: Kind = Kind {
    group_version: "batch/v1",
    plural: "jobs",
    kind: "Job",
    status_subresource: true,
};
/// Core group: served under `/api/v1` rather than `/apis/<group>/<version>`.
pub const POD: Kind = Kind {
    group_version: "v1",
    plural: "pods",
    kind: "Pod",
    status_subresource: true,
};
pub const LEASE: Kind = Kind {
    group_version: "coordination.k8s.io/v1",
    plural: "leases",
    kind: "Lease",
    status_subresource: false,
};
pub const EVENT: Kind = Kind {
    group_version: "events.k8s.io/v1",
    plural: "events",
    kind: "Event",
    status_subresource: false,
};

/// (group/version/plural, namespace, name)
type Key = (String, String, String);

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    resource: String,
    ns: String,
    type_: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
}

#[derive(Clone)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
    tx: broadcast::Sender<Change>,
    kinds: Arc<Vec<Kind>>,
    /// Resources (plural names) whose requests never get an answer, to play a
    /// hung API connection.
    hung: Arc<Mutex<std::collections::HashSet<&'static str>>>,
    /// Resources whose requests are answered only after a delay, to play a slow API.
    delays: Arc<Mutex<BTreeMap<&'static str, std::time::Duration>>>,
    /// Resources that may not be listed or watched (403), to play a role without those verbs.
    list_forbidden: Arc<Mutex<std::collections::HashSet<&'static str>>>,
    /// Resources allowed in one namespace only (403 elsewhere and
    /// cluster-wide), to play a role bound with a RoleBinding there.
    confined: Arc<Mutex<BTreeMap<&'static str, String>>>,
    /// Every request refused with 403, as "METHOD path".
    refused: Arc<Mutex<Vec<String>>>,
    pub addr: SocketAddr,
}

fn status_body(code: u16, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn ok(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = json!({});
        }
        let t = target.as_object_mut().unwrap();
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

fn labels_match(obj: &Value, selector: Option<&str>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &obj["metadata"]["labels"];
    sel.split(',').all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k.trim()].as_str() == Some(v.trim_start_matches('=').trim())
        } else {
            labels.get(term.trim()).is_some()
        }
    })
}

struct Target {
    kind: Kind,
    ns: Option<String>,
    name: Option<String>,
    status: bool,
}

impl FakeApiServer {
    /// Serves Index, Job, Pod, Lease and Event.
    pub async fn start() -> FakeApiServer {
        Self::start_with(vec![INDEX, JOB, POD, LEASE, EVENT]).await
    }

    /// Serves only `kinds` (e.g. without INDEX to play a cluster where the CRD is not installed).
    pub async fn start_with(kinds: Vec<Kind>) -> FakeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tx, _) = broadcast::channel(4096);
        let server = FakeApiServer {
            state: Arc::new(Mutex::new(State::default())),
            tx,
            kinds: Arc::new(kinds),
            hung: Arc::default(),
            delays: Arc::default(),
            list_forbidden: Arc::default(),
            confined: Arc::default(),
            refused: Arc::default(),
            addr: listener.local_addr().unwrap(),
        };
        let s = server.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                let target = s.parse(uri.path());
                let delay = target
                    .as_ref()
                    .and_then(|t| s.delays.lock().unwrap().get(t.kind.plural).copied());
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                if target
                    .as_ref()
                    .is_some_and(|t| s.hung.lock().unwrap().contains(t.kind.plural))
                {
                    std::future::pending::<()>().await;
                }
                s.handle(target, method, uri, headers, body)
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    /// From now on, requests for `kind` hang (accepted, never answered) while
    /// `hung` is true; requests already hanging stay hung.
    pub fn set_hung(&self, kind: Kind, hung: bool) {
        let mut set = self.hung.lock().unwrap();
        if hung {
            set.insert(kind.plural);
        } else {
            set.remove(kind.plural);
        }
    }

    /// From now on, lists and watches of `kind` are refused with 403
    /// Forbidden while `forbidden` is true, as for a role that grants other
    /// verbs on it (the kubelet's writes still go through).
    pub fn set_list_forbidden(&self, kind: Kind, forbidden: bool) {
        let mut set = self.list_forbidden.lock().unwrap();
        if forbidden {
            set.insert(kind.plural);
        } else {
            set.remove(kind.plural);
        }
    }

    /// From now on, every request for `kind` outside namespace `ns`
    /// (cluster-wide lists and watches too) is refused with 403 Forbidden,
    /// as for a role bound only there; the test's own requests included.
    pub fn confine(&self, kind: Kind, ns: &str) {
        self.confined.lock().unwrap().insert(kind.plural, ns.to_string());
    }

    /// The requests refused with 403 so far, as "METHOD path".
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }

    /// From now on, requests for `kind` wait `delay` before they are handled
    /// (and before a hang, if `kind` is hung by then).
    pub fn set_delay(&self, kind: Kind, delay: std::time::Duration) {
        self.delays.lock().unwrap().insert(kind.plural, delay);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server (default namespace "default").
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).expect("kube client for the fake API server")
    }

    /// Current objects of one kind (any namespace), for assertions.
    pub fn objects(&self, kind: Kind) -> Vec<Value> {
        let resource = format!("{}/{}", kind.group_version, kind.plural);
        let st = self.state.lock().unwrap();
        st.objects
            .iter()
            .filter(|(k, _)| k.0 == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn parse(&self, path: &str) -> Option<Target> {
        // `/apis/<group>/<version>/…`, or `/api/v1/…` for the core group.
        let (gv, segs) = if let Some(rest) = path.strip_prefix("/apis/") {
            let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
            if segs.len() < 3 {
                return None;
            }
            (format!("{}/{}", segs[0], segs[1]), segs[2..].to_vec())
        } else {
            let rest = path.strip_prefix("/api/")?;
            let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
            if segs.len() < 2 {
                return None;
            }
            (segs[0].to_string(), segs[1..].to_vec())
        };
        let mut rest = &segs[..];
        let mut ns = None;
        if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
            ns = Some(rest[1].to_string());
            rest = &rest[2..];
        }
        let kind = *self
            .kinds
            .iter()
            .find(|k| k.group_version == gv && k.plural == rest[0])?;
        let name = rest.get(1).map(|s| s.to_string());
        let status = match rest.get(2) {
            None => false,
            Some(&"status") if rest.len() == 3 => true,
            Some(_) => return None,
        };
        Some(Target { kind, ns, name, status })
    }

    fn handle(&self, target: Option<Target>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let Some(t) = target else {
            return status_body(
                404,
                "NotFound",
                format!("the server could not find the requested resource {}", uri.path()),
            );
        };
        let group = t.kind.group_version.rsplit_once('/').map_or("", |(g, _)| g);
        let allowed_in = self.confined.lock().unwrap().get(t.kind.plural).cloned();
        if let Some(allowed) = allowed_in
            && t.ns.as_deref() != Some(allowed.as_str())
        {
            self.refused.lock().unwrap().push(format!("{method} {}", uri.path()));
            let scope = t.ns.as_ref().map_or("at the cluster scope".to_string(), |ns| {
                format!("in the namespace \"{ns}\"")
            });
            let verb = match (&method, &t.name) {
                (&Method::GET, Some(_)) => "get",
                (&Method::GET, None) if uri.query().is_some_and(|q| q.contains("watch=")) => "watch",
                (&Method::GET, None) => "list",
                (&Method::POST, _) => "create",
                (&Method::PUT, _) => "update",
                (&Method::PATCH, _) => "patch",
                _ => "delete",
            };
            return status_body(
                403,
                "Forbidden",
                format!(
                    "{0} is forbidden: User \"system:serviceaccount:trusty-system:trusty-operator\" cannot \
                     {1} resource \"{0}\" in API group \"{group}\" {scope}",
                    t.kind.plural, verb
                ),
            );
        }
        if method == Method::GET && t.name.is_none() && self.list_forbidden.lock().unwrap().contains(t.kind.plural) {
            self.refused.lock().unwrap().push(format!("{method} {}", uri.path()));
            return status_body(
                403,
                "Forbidden",
                format!(
                    "{0} is forbidden: User \"system:serviceaccount:trusty-system:trusty-operator\" cannot list \
                     resource \"{0}\" in API group \"{group}\"",
                    t.kind.plural
                ),
            );
        }
        let query: BTreeMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        let ctype = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        match (method, &t.name) {
            (Method::GET, None) if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) => {
                self.watch(&t, &query)
            }
            (Method::GET, None) => self.list(&t, &query),
            (Method::POST, None) => self.create(&t, body),
            (Method::GET, Some(name)) => match self.get(&t, name) {
                Some(o) => ok(200, &o),
                None => status_body(404, "NotFound", format!("{} \"{name}\" not found", t.kind.plural)),
            },
            (Method::PUT, Some(name)) => self.replace(&t, name, body),
            (Method::PATCH, Some(name)) => self.patch(&t, name, &ctype, body),
            (Method::DELETE, Some(name)) => self.delete(&t, name),
            (m, _) => status_body(405, "MethodNotAllowed", format!("{m} not supported here")),
        }
    }

    fn key(t: &Target, name: &str) -> Key {
        (
            format!("{}/{}", t.kind.group_version, t.kind.plural),
            t.ns.clone().unwrap_or_default(),
            name.to_string(),
        )
    }

    fn get(&self, t: &Target, name: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(&Self::key(t, name)).cloned()
    }

    fn list(&self, t: &Target, q: &BTreeMap<String, String>) -> Response {
        let resource = format!("{}/{}", t.kind.group_version, t.kind.plural);
        let st = self.state.lock().unwrap();
        let items: Vec<Value> = st
            .objects
            .iter()
            .filter(|(k, _)| k.0 == resource && t.ns.as_ref().is_none_or(|ns| &k.1 == ns))
            .map(|(_, v)| v)
            .filter(|v| labels_match(v, q.get("labelSelector").map(String::as_str)))
            .cloned()
            .collect();
        ok(
            200,
            &json!({"apiVersion": t.kind.group_version, "kind": format!("{}List", t.kind.kind),
                    "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
        )
    }

    fn watch(&self, t: &Target, q: &BTreeMap<String, String>) -> Response {
        let from: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let resource = format!("{}/{}", t.kind.group_version, t.kind.plural);
        let ns = t.ns.clone();
        let selector = q.get("labelSelector").cloned();
        let matches = move |c: &Change| {
            c.rv > from
                && c.resource == resource
                && ns.as_ref().is_none_or(|n| &c.ns == n)
                && labels_match(&c.object, selector.as_deref())
        };
        // Backlog and subscription under one lock: no change is missed or sent twice.
        let (backlog, rx) = {
            let st = self.state.lock().unwrap();
            let backlog: Vec<Change> = st.history.iter().filter(|c| matches(c)).cloned().collect();
            (backlog, self.tx.subscribe())
        };
        let live = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(c) => return Some((c, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let m2 = matches.clone();
        let stream = futures::stream::iter(backlog)
            .chain(live.filter(move |c| futures::future::ready(m2(c))))
            .map(|c| {
                let mut line = serde_json::to_vec(&json!({"type": c.type_, "object": c.object})).unwrap();
                line.push(b'\n');
                Ok::<_, std::convert::Infallible>(Bytes::from(line))
            });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap()
    }

    /// Stores `obj` under `key`, bumping resourceVersion and recording the change.
    fn commit(&self, st: &mut State, key: Key, mut obj: Value, type_: &'static str) -> Value {
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        if type_ == "DELETED" {
            st.objects.remove(&key);
        } else {
            st.objects.insert(key.clone(), obj.clone());
        }
        let change = Change {
            rv: st.rv,
            resource: key.0,
            ns: key.1,
            type_,
            object: obj.clone(),
        };
        st.history.push(change.clone());
        let _ = self.tx.send(change);
        obj
    }

    fn create(&self, t: &Target, mut obj: Value) -> Response {
        let Some(name) = obj["metadata"]["name"].as_str().map(String::from) else {
            return status_body(422, "Invalid", "metadata.name is required".into());
        };
        let key = Self::key(t, &name);
        let mut st = self.state.lock().unwrap();
        if st.objects.contains_key(&key) {
            return status_body(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", t.kind.plural),
            );
        }
        st.uid += 1;
        let meta = &mut obj["metadata"];
        if let Some(ns) = &t.ns {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", st.uid));
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        obj["apiVersion"] = json!(t.kind.group_version);
        obj["kind"] = json!(t.kind.kind);
        if t.kind.status_subresource && t.kind.kind == "Index" {
            obj.as_object_mut().unwrap().remove("status");
        }
        let stored = self.commit(&mut st, key, obj, "ADDED");
        ok(201, &stored)
    }

    fn replace(&self, t: &Target, name: &str, mut obj: Value) -> Response {
        let key = Self::key(t, name);
        let mut st = self.state.lock().unwrap();
        let Some(old) = st.objects.get(&key).cloned() else {
            return status_body(404, "NotFound", format!("{} \"{name}\" not found", t.kind.plural));
        };
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str()
            && rv != old["metadata"]["resourceVersion"].as_str().unwrap_or_default()
        {
            return status_body(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified",
                    t.kind.plural
                ),
            );
        }
        for f in ["uid", "creationTimestamp", "generation", "namespace"] {
            obj["metadata"][f] = old["metadata"][f].clone();
        }
        if t.kind.status_subresource {
            if t.status {
                let status = obj["status"].clone();
                obj = old.clone();
                obj["status"] = status;
            } else {
                obj["status"] = old["status"].clone();
            }
        }
        self.finish_update(&mut st, key, &old, obj)
    }

    fn patch(&self, t: &Target, name: &str, ctype: &str, body: Value) -> Response {
        let key = Self::key(t, name);
        let mut st = self.state.lock().unwrap();
        let existing = st.objects.get(&key).cloned();
        let apply = ctype.starts_with("application/apply-patch");
        let Some(old) = existing else {
            if apply && !t.status {
                drop(st);
                return self.create(t, body);
            }
            return status_body(404, "NotFound", format!("{} \"{name}\" not found", t.kind.plural));
        };
        let mut obj = old.clone();
        if ctype.starts_with("application/json-patch") {
            // The API server treats an absent field as null for `test` ops
            // (kube's finalizer helper tests `/metadata/finalizers == null`).
            for op in body.as_array().into_iter().flatten() {
                if op["op"] == "test"
                    && op["value"].is_null()
                    && let Some((parent, leaf)) = op["path"].as_str().and_then(|p| p.rsplit_once('/'))
                    && let Some(Value::Object(m)) = obj.pointer_mut(parent)
                {
                    m.entry(leaf.to_string()).or_insert(Value::Null);
                }
            }
            let patch: json_patch::Patch = match serde_json::from_value(body) {
                Ok(p) => p,
                Err(e) => return status_body(400, "BadRequest", e.to_string()),
            };
            if let Err(e) = json_patch::patch(&mut obj, &patch) {
                return status_body(422, "Invalid", format!("json patch: {e}"));
            }
        } else if apply {
            // A single field manager owns each part here, so applying means
            // replacing the parts the patch names.
            if t.status {
                obj["status"] = body["status"].clone();
            } else {
                if !body["spec"].is_null() {
                    obj["spec"] = body["spec"].clone();
                }
                for f in ["labels", "annotations", "finalizers"] {
                    if !body["metadata"][f].is_null() {
                        obj["metadata"][f] = body["metadata"][f].clone();
                    }
                }
            }
        } else if t.status {
            // merge patch on /status only touches status
            merge(&mut obj["status"], &body["status"]);
        } else {
            merge(&mut obj, &body);
        }
        if t.kind.status_subresource && !t.status {
            obj["status"] = old["status"].clone();
        }
        if t.kind.status_subresource && t.status {
            let status = obj["status"].clone();
            obj = old.clone();
            obj["status"] = status;
        }
        if obj.get("status").is_some_and(Value::is_null) {
            obj.as_object_mut().unwrap().remove("status");
        }
        self.finish_update(&mut st, key, &old, obj)
    }

    fn finish_update(&self, st: &mut State, key: Key, old: &Value, mut obj: Value) -> Response {
        if obj["spec"] != old["spec"] {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(generation + 1);
        }
        let finalizers_empty = obj["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        if !obj["metadata"]["deletionTimestamp"].is_null() && finalizers_empty {
            let gone = self.remove(st, key, obj);
            return ok(200, &gone);
        }
        let stored = self.commit(st, key, obj, "MODIFIED");
        ok(200, &stored)
    }

    /// Removes an object and, like the garbage collector, everything it owns.
    fn remove(&self, st: &mut State, key: Key, obj: Value) -> Value {
        let uid = obj["metadata"]["uid"].clone();
        let gone = self.commit(st, key, obj, "DELETED");
        let owned: Vec<(Key, Value)> = st
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        for (k, o) in owned {
            self.remove(st, k, o);
        }
        gone
    }

    fn delete(&self, t: &Target, name: &str) -> Response {
        let key = Self::key(t, name);
        let mut st = self.state.lock().unwrap();
        let Some(mut obj) = st.objects.get(&key).cloned() else {
            return status_body(404, "NotFound", format!("{} \"{name}\" not found", t.kind.plural));
        };
        let has_finalizers = obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if obj["metadata"]["deletionTimestamp"].is_null() {
                obj["metadata"]["deletionTimestamp"] = json!(now());
                let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
                obj["metadata"]["generation"] = json!(generation + 1);
                obj = self.commit(&mut st, key, obj, "MODIFIED");
            }
            return ok(200, &obj);
        }
        let gone = self.remove(&mut st, key, obj);
        ok(200, &gone)
    }
}
