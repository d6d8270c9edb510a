//! The committed manifests against the Rust types: CRD drift, examples valid
//! under the CRD's openAPIV3Schema, RBAC covering what the operator does.

use kube::CustomResourceExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use trusty_operator::Index;

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_norway::from_str(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

fn schema() -> Value {
    let crd = serde_json::to_value(Index::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).expect("the CRD schema is a valid JSON schema")
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = manifests().join("crds/index.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == trusty_operator::crd_yaml(),
        "{} is out of date: run `cargo run -p trusty-operator --bin crdgen > manifests/crds/index.yaml`",
        path.display()
    );
}

#[test]
fn crd_names_scope_columns_and_rules() {
    let crd = serde_json::to_value(Index::crd()).unwrap();
    let spec = &crd["spec"];
    assert_eq!(crd["metadata"]["name"], "indexes.search.trusty.dev");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["plural"], "indexes");
    assert_eq!(spec["names"]["shortNames"], json!(["tsidx"]));
    let v = &spec["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["subresources"]["status"], json!({}));
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Phase", "Version", "Chunks", "Ready", "Age"]);
    let props = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(props["properties"]["replicas"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(props["properties"]["replicas"]["maximum"].as_f64(), Some(5.0));
    let text = serde_json::to_string(&crd).unwrap();
    for rule in [
        "[has(self.git), has(self.objectStore), has(self.volume)].filter(x, x).size() == 1",
        "!has(self.refreshInterval) || has(self.source.git)",
        "self.kind != 'http' || has(self.url)",
    ] {
        assert!(
            text.contains(&serde_json::to_string(rule).unwrap()),
            "missing CEL rule {rule}"
        );
    }
}

#[test]
fn examples_are_valid_indexes() {
    let v = validator();
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(manifests().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        for doc in yaml_docs(&path) {
            let errs = errors(&v, &doc);
            assert!(errs.is_empty(), "{}: {errs:?}", path.display());
            let index: Index =
                serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // The API server prunes unknown fields silently: a typo would vanish.
            let reencoded = serde_json::to_value(&index.spec).unwrap();
            assert_no_unknown_fields(&doc["spec"], &reencoded, &format!("{}: spec", path.display()));
            trusty_search::IndexId::new(index.metadata.name.clone().unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            kinds.push(index.source_kind());
        }
    }
    kinds.sort();
    assert_eq!(kinds, ["git", "objectStore", "volume"], "one example per source kind");
}

/// Every key in `given` also exists in `known` (the typed re-encoding).
fn assert_no_unknown_fields(given: &Value, known: &Value, at: &str) {
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, v) in g {
                let Some(kv) = k.get(key) else {
                    panic!("{at}.{key} is not a field of the Index spec")
                };
                assert_no_unknown_fields(v, kv, &format!("{at}.{key}"));
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                assert_no_unknown_fields(gv, kv, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

#[test]
#[should_panic(expected = "spec.refreshIntrval is not a field")]
fn unknown_example_fields_are_caught() {
    let given = json!({"source": {"git": {"url": "https://x/y"}}, "refreshIntrval": "1h"});
    let index: trusty_operator::IndexSpec = serde_json::from_value(given.clone()).unwrap();
    assert_no_unknown_fields(&given, &serde_json::to_value(&index).unwrap(), "spec");
}

#[test]
fn schema_refuses_what_it_can_express() {
    let v = validator();
    let good = json!({
        "apiVersion": "search.trusty.dev/v1alpha1", "kind": "Index", "metadata": {"name": "x"},
        "spec": {"source": {"git": {"url": "https://example.com/r.git"}}, "replicas": 2, "refreshInterval": "1h30m"},
    });
    assert!(errors(&v, &good).is_empty(), "{:?}", errors(&v, &good));
    let cases: [(&str, Value); 6] = [
        ("replicas above 5", json!({"replicas": 6})),
        ("replicas below 1", json!({"replicas": 0})),
        ("bad refresh interval", json!({"refreshInterval": "hourly"})),
        ("bad git url", json!({"source": {"git": {"url": "not a url"}}})),
        ("unknown embedder", json!({"embedder": {"kind": "openai"}})),
        ("unknown deletion policy", json!({"deletionPolicy": "Purge"})),
    ];
    for (what, patch) in cases {
        let mut bad = good.clone();
        crate::fake_apiserver::merge(&mut bad["spec"], &patch);
        assert!(!errors(&v, &bad).is_empty(), "schema accepted {what}: {bad:#}");
    }
    let mut missing = good.clone();
    missing["spec"].as_object_mut().unwrap().remove("source");
    assert!(!errors(&v, &missing).is_empty(), "source is required");
}

/// One rule of a role bound to the operator: (apiGroup, resource, verbs)
/// and where it applies (`None`: every namespace, through a ClusterRoleBinding).
type Grant = (String, String, Vec<String>, Option<String>);

/// The operator's rights as installed: the chart rendered into
/// manifests/install (kept fresh by scripts/check-chart.sh), each rule with
/// the scope of the binding that grants it.
fn operator_grants(docs: &[Value]) -> Vec<Grant> {
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let of_kind = |kind: &'static str| docs.iter().filter(move |d| d["kind"] == kind);
    let account = of_kind("Deployment")
        .find(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
        .expect("the operator Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        .clone();
    let mut grants = Vec::new();
    for binding in of_kind("RoleBinding").chain(of_kind("ClusterRoleBinding")) {
        let subjects = binding["subjects"].as_array().cloned().unwrap_or_default();
        if !subjects
            .iter()
            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == account)
        {
            continue;
        }
        let scope = binding["metadata"]["namespace"].as_str().map(str::to_string);
        let role_ref = &binding["roleRef"];
        let role = docs
            .iter()
            .find(|d| {
                d["kind"] == role_ref["kind"]
                    && d["metadata"]["name"] == role_ref["name"]
                    && (d["kind"] == "ClusterRole" || d["metadata"]["namespace"] == binding["metadata"]["namespace"])
            })
            .unwrap_or_else(|| {
                panic!(
                    "{} binds {role_ref}, which is not rendered",
                    binding["metadata"]["name"]
                )
            });
        for rule in role["rules"].as_array().into_iter().flatten() {
            for g in strs(&rule["apiGroups"]) {
                for r in strs(&rule["resources"]) {
                    grants.push((g.clone(), r, strs(&rule["verbs"]), scope.clone()));
                }
            }
        }
    }
    grants
}

#[test]
fn rbac_grants_what_the_operator_uses() {
    let docs = yaml_docs(&manifests().join("install/trusty-search.yaml"));
    let grants = operator_grants(&docs);
    let allowed = |group: &str, resource: &str, verb: &str| {
        grants
            .iter()
            .any(|(g, r, vs, _)| g == group && r == resource && vs.iter().any(|v| v == verb || v == "*"))
    };
    let needed = [
        // The Controller's watch (list + watch), the CRD check (list), the
        // finalizer helper's JSON patches, and reads in reconcile.
        ("search.trusty.dev", "indexes", &["get", "list", "watch", "patch"][..]),
        // controller::patch_status (server-side apply on the status subresource).
        ("search.trusty.dev", "indexes/status", &["patch"][..]),
        // Build Jobs owned by their Index set blockOwnerDeletion, which the
        // OwnerReferencesPermissionEnforcement admission plugin checks.
        ("search.trusty.dev", "indexes/finalizers", &["update"][..]),
        // Job watch, get_opt of the last build, create, delete (stale or on deletion).
        ("batch", "jobs", &["get", "list", "watch", "create", "delete"][..]),
        // pods::job_pod_reason: why a build Job failed or does not start.
        ("", "pods", &["list"][..]),
        // kube's events::Recorder creates events and patches repeated ones.
        ("events.k8s.io", "events", &["create", "patch"][..]),
        // leader::LeaderElector: get_opt, create, replace.
        ("coordination.k8s.io", "leases", &["get", "create", "update"][..]),
    ];
    for (g, r, verbs) in needed {
        for verb in verbs {
            assert!(allowed(g, r, verb), "RBAC lacks {verb} on {g}/{r}");
        }
    }
    for (g, r, verbs, _) in &grants {
        for verb in verbs {
            assert!(
                needed
                    .iter()
                    .any(|(ng, nr, nv)| ng == g && nr == r && nv.contains(&verb.as_str())),
                "RBAC grants {verb} on {g}/{r}, which the operator never uses"
            );
        }
    }
    assert!(
        !grants.iter().any(|(_, _, vs, _)| vs.iter().any(|v| v == "*")),
        "no wildcard verbs"
    );

    // Where: each right is bound exactly where the operator, with the
    // settings of its ConfigMap, uses it (the code decides where it reads,
    // watches and creates Jobs), and no wider.
    let config = &docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["data"]["TRUSTY_LEASE_NAME"].is_string())
        .expect("the operator's ConfigMap")["data"];
    let setting = |k: &str| config[k].as_str().map(str::to_string);
    let release = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
        .and_then(|d| d["metadata"]["namespace"].as_str())
        .unwrap()
        .to_string();
    let watch = setting("TRUSTY_NAMESPACE");
    let build = trusty_operator::jobs::BuildConfig {
        namespace: setting("TRUSTY_BUILD_NAMESPACE"),
        volume_sources: setting("TRUSTY_VOLUME_SOURCES").as_deref() == Some("true"),
        ..Default::default()
    };
    let job_scopes: Vec<Option<String>> = match build.watched_job_namespaces(watch.as_deref()) {
        None => vec![None],
        Some(namespaces) => namespaces.into_iter().map(Some).collect(),
    };
    let scopes_of = |group: &str, resource: &str| {
        let mut scopes: Vec<Option<String>> = grants
            .iter()
            .filter(|(g, r, _, _)| g == group && r == resource)
            .map(|(_, _, _, scope)| scope.clone())
            .collect();
        scopes.sort();
        scopes.dedup();
        scopes
    };
    for (g, r, _) in needed {
        let mut expected = match (g, r) {
            ("batch", "jobs") | ("", "pods") => job_scopes.clone(),
            ("coordination.k8s.io", _) => vec![Some(release.clone())],
            _ => vec![watch.clone()],
        };
        expected.sort();
        assert_eq!(
            scopes_of(g, r),
            expected,
            "where {g}/{r} is granted (None: cluster-wide)"
        );
    }
    // The default install builds in its own namespace only: a cluster admin
    // must not be asked for Job rights in every namespace it does not use.
    assert_eq!(build.namespace.as_deref(), Some(release.as_str()));
    assert!(!build.volume_sources, "volume sources are opt-in");
    assert_eq!(
        scopes_of("batch", "jobs"),
        [Some(release)],
        "no Job rights cluster-wide"
    );
}
