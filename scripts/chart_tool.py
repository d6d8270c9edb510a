#!/usr/bin/env python3
"""Render, lint and validate the trusty-search Helm chart without a helm binary.

Used by scripts/check-chart.sh and scripts/render-manifests.sh. Helm itself comes
from the PyPI package `helm-python-sdk` (module `helm_python`), which binds Helm
v4's Go SDK through ctypes (libhelm_c.so ships inside the wheel):

  * `helm lint`     -> helm_python.lint(chart_dir, values, strict=True, kube_version=..)
  * `helm template` -> the native `helm_render` call. The SDK's Python wrapper
    (Chart.render) does not expose `kube_version` / `api_versions` (the
    equivalents of `helm template --kube-version --api-versions`), but the
    native render options accept them, so we pass them through
    helm_python._native.call_string. Without that the ServiceMonitor and
    PrometheusRule (gated on .Capabilities.APIVersions) could not be rendered
    offline.
  * CRDs (`--include-crds`) come from Chart.crds.

Subcommands:
  render    VALUES... [--out FILE] [--api-versions ..] [--kube-version ..] [--include-crds] [--namespace-object]
  lint      VALUES...                       (strict; one run per kube version)
  validate  FILE... --kube-versions 1.31,1.33   kubernetes-validate --strict per object + chart policy checks
  policy    FILE...                         the chart policy checks alone
  rules     FILE --out RULES.yaml             extract the PrometheusRule spec as a plain Prometheus rules file
  metrics   --rules RULES.yaml --dashboards DIR --out FILE   metric names used (checked against the contract)
"""
from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import re
import sys
import urllib.parse
from typing import Any

import yaml

CHART_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charts", "trusty-search")
CHART_DIR = os.path.normpath(CHART_DIR)
REPO_DIR = os.path.normpath(os.path.join(CHART_DIR, "..", ".."))

# Helm's install order (pkg/release/util/kind_sorter.go), used for the rendered install manifest.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
    "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
]

# Kinds served by CRDs: kubernetes-validate has no schema for them. PrometheusRule
# content is checked with promtool instead; ServiceMonitor structurally below.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "Index", "HTTPRoute"}

# The metric contract (DESIGN.md / the packaging brief). Dashboards and alerts may
# only use these (plus histogram suffixes) and Prometheus' own `up`.
CONTRACT_METRICS = {
    "trusty_http_requests_total": "counter",
    "trusty_http_request_duration_seconds": "histogram",
    "trusty_indexes": "gauge",
    "trusty_index_load_duration_seconds": "histogram",
    "trusty_index_load_failures_total": "counter",
    "trusty_restore_refusals_total": "counter",
    "trusty_search_arm_unavailable_total": "counter",
    "trusty_object_store_requests_total": "counter",
    "trusty_object_store_bytes_total": "counter",
    "trusty_cache_bytes": "gauge",
    "trusty_cache_budget_bytes": "gauge",
    "trusty_cache_evictions_total": "counter",
    "trusty_cache_copies_removed_total": "counter",
    "trusty_index_swaps_total": "counter",
    "trusty_router_shards": "gauge",
    "trusty_router_retries_total": "counter",
    "trusty_router_waits_total": "counter",
    "trusty_router_ejections_total": "counter",
    "trusty_router_affinity_rank_total": "counter",
    "trusty_fanout_indexes": "histogram",
    "trusty_fanout_partial_total": "counter",
    "trusty_operator_reconciles_total": "counter",
    "trusty_operator_reconcile_duration_seconds": "histogram",
    "trusty_operator_reconcile_failures_total": "counter",
    "trusty_operator_leader": "gauge",
    "trusty_operator_indexes_failed": "gauge",
    "trusty_build_info": "gauge",
    "trusty_heap_bytes": "gauge",
}


def die(msg: str) -> None:
    print(f"chart_tool: ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


def kube_semver(v: str) -> str:
    """1.31 -> v1.31.0"""
    v = v.strip().lstrip("v")
    return "v" + (v + ".0" if v.count(".") == 1 else v)


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


class HelmValuesLoader(yaml.SafeLoader):
    """Reads numbers in a values file as Helm (go-yaml) does, not as YAML 1.1:
    `5e-1`, `512e6` and `2.5e9` are floats there, strings to PyYAML, and a
    float is what the schema and the templates see under a real `helm`."""


HelmValuesLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def load_values_file(path: str) -> dict:
    with open(path) as fh:
        return yaml.load(fh, Loader=HelmValuesLoader) or {}


def load_values(files: list[str], sets: list[str]) -> dict:
    import helm_python as helm

    values: dict = {}
    for f in files:
        values = deep_merge(values, load_values_file(f))
    for s in sets or []:
        values = deep_merge(values, helm.parse_set_string(s))
    return values


def helm_render(values: dict, *, name: str, namespace: str, kube_version: str | None,
                api_versions: list[str], include_crds: bool) -> list[tuple[str, dict]]:
    """`helm template NAME CHART -n NS -f .. --kube-version .. --api-versions .. [--include-crds]`."""
    import helm_python as helm
    from helm_python import _native

    docs: list[tuple[str, dict]] = []
    with helm.Chart.load(CHART_DIR) as chart:
        opts: dict[str, Any] = {"name": name, "namespace": namespace, "is_install": True}
        if kube_version:
            opts["kube_version"] = kube_version
        if api_versions:
            opts["api_versions"] = api_versions
        rendered = json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts)))
        if include_crds:
            for crd in sorted(chart.crds, key=lambda c: c["filename"]):
                for d in yaml.safe_load_all(crd["data"]):
                    if d:
                        docs.append((f"{chart.name}/{crd['filename']}", d))
    for path in sorted(rendered):
        if path.endswith("NOTES.txt") or os.path.basename(path).startswith("_"):
            continue
        for d in yaml.safe_load_all(rendered[path]):
            if d:
                docs.append((path, d))
    return docs


def install_sort(docs: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    def key(item: tuple[str, dict]):
        kind = item[1].get("kind", "")
        rank = INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)
        return (rank, kind, item[1].get("metadata", {}).get("name", ""))
    return sorted(docs, key=key)


def dump_docs(docs: list[tuple[str, dict]]) -> str:
    parts = []
    for source, d in docs:
        body = yaml.safe_dump(d, sort_keys=False, default_flow_style=False, width=1000)
        parts.append(f"---\n# Source: {source}\n{body}")
    return "".join(parts)


def cmd_render(a: argparse.Namespace) -> None:
    values = load_values(a.values, a.set)
    docs = helm_render(values, name=a.name, namespace=a.namespace, kube_version=a.kube_version,
                       api_versions=a.api_versions.split(",") if a.api_versions else [],
                       include_crds=a.include_crds)
    if a.namespace_object:
        docs.insert(0, ("namespace", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": a.namespace,
                                                   "labels": {"kubernetes.io/metadata.name": a.namespace}}}))
    text = dump_docs(install_sort(docs))
    if a.header:
        text = a.header.rstrip("\n") + "\n" + text
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


def cmd_lint(a: argparse.Namespace) -> None:
    import helm_python as helm

    values = load_values(a.values, a.set)
    failed = False
    for kv in a.kube_versions.split(","):
        report = helm.lint(CHART_DIR, values, strict=True, namespace=a.namespace, kube_version=kube_semver(kv))
        for m in report.get("messages", []):
            sev = m.get("severity", 0)
            tag = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}.get(sev, str(sev))
            if sev >= 2:
                failed = True
                print(f"  lint {tag} [{kv}] {m.get('path')}: {m.get('error')}")
        for e in report.get("errors", []):
            failed = True
            print(f"  lint ERROR [{kv}] {e}")
    if failed:
        die(f"helm lint failed for values {a.values} {a.set}")


# --- validation -------------------------------------------------------------

class CannotRead(ValueError):
    """A duration or size the binaries or Kubernetes would refuse; its
    message names the value."""


# humantime::parse_duration, which the binaries' duration flags use
# (src/server/flags.rs parse_duration, the operator's --resync): units and
# their length in nanoseconds.
DURATION_UNITS = {
    **dict.fromkeys(("nanos", "nsec", "ns"), 1),
    **dict.fromkeys(("usec", "us", "\u00b5s"), 10**3),
    **dict.fromkeys(("millis", "msec", "ms"), 10**6),
    **dict.fromkeys(("seconds", "second", "secs", "sec", "s"), 10**9),
    **dict.fromkeys(("minutes", "minute", "min", "mins", "m"), 60 * 10**9),
    **dict.fromkeys(("hours", "hour", "hr", "hrs", "h"), 3600 * 10**9),
    **dict.fromkeys(("days", "day", "d"), 86400 * 10**9),
    **dict.fromkeys(("weeks", "week", "wk", "wks", "w"), 7 * 86400 * 10**9),
    **dict.fromkeys(("months", "month", "M"), 2_630_016 * 10**9),
    **dict.fromkeys(("years", "year", "yr", "yrs", "y"), 31_557_600 * 10**9),
}
# One span: an integer, an optional fraction, a unit. humantime skips
# whitespace inside numbers and between spans ("1h 30m", "30 s").
_SPAN = re.compile(r"([0-9][0-9\s]*)(?:\.([0-9\s]*))?([A-Za-z\u00b5]+)\s*")
_U64 = 2**64


def seconds(text) -> float:
    """A duration as the binaries read it (humantime: 30s, 90sec, 1m30s,
    2min, 500ms, 1h 30m, 1.5h) -> seconds. CannotRead naming the value
    otherwise, like humantime's refusals."""
    rest = str(text).strip()
    if not rest:
        raise CannotRead(f"cannot read {text!r} as a duration: it is empty")
    if str(text) == "0":  # humantime's one unitless duration
        return 0.0
    nanos = 0
    while rest:
        m = _SPAN.match(rest)
        if not m:
            raise CannotRead(f"cannot read {text!r} as a duration: expected <number><unit> spans such as 1m30s")
        whole, frac, unit = (re.sub(r"\s", "", g) if g is not None else None for g in m.groups())
        if unit not in DURATION_UNITS:
            raise CannotRead(f"cannot read {text!r} as a duration: unknown unit {unit!r} "
                             "(ns, us, ms, s/sec, m/min, h, d, w, M, y and their long forms)")
        n, per = int(whole), DURATION_UNITS[unit]
        span = m.group(0).strip()
        # humantime counts in u64: nanoseconds below a second, seconds from
        # a second up (and for fractions, from an hour up).
        if n >= _U64 or n * per // (10**9 if per >= 10**9 else 1) >= _U64:
            raise CannotRead(f"cannot read {text!r} as a duration: {span!r} is too large")
        nanos += n * per
        if frac is not None:
            # Digits after the point count only when the result is exact.
            den, step = 10 ** len(frac), 10**9 if per >= 3600 * 10**9 else 1
            if not frac or den >= _U64 or unit in ("nanos", "nsec", "ns") or int(frac) * (per // step) >= _U64:
                raise CannotRead(f"cannot read {text!r} as a duration: bad fraction in {span!r}")
            if (int(frac) * (per // step)) % den:
                raise CannotRead(f"cannot read {text!r} as a duration: {span!r} is finer than "
                                 f"{'a second' if step > 1 else 'a nanosecond'}")
            nanos += int(frac) * (per // step) // den * step
        rest = rest[m.end():]
    if nanos // 10**9 >= _U64:
        raise CannotRead(f"cannot read {text!r} as a duration: too long")
    return nanos / 10**9


# A Kubernetes quantity (k8s.io/apimachinery resource.Quantity): a sign, a
# decimal number, then a binary suffix, a decimal one, or a decimal exponent
# (e/E and a signed integer: "1E3" is 1000, "E" alone is exa).
_QUANTITY = re.compile(r"([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:([eE][+-]?[0-9]+)|([A-Za-z]*))")
QUANTITY_UNITS = {"": 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
                  "E": 1e18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
# Kubernetes caps every quantity at this (2^63 - 1).
QUANTITY_MAX = float(2**63 - 1)


def quantity_bytes(q) -> float:
    """A Kubernetes quantity (2Gi, 1.5G, 10496Mi, 129e6, 1.5E3, 2E, 1Ei) ->
    bytes. CannotRead naming the value otherwise."""
    if isinstance(q, (int, float)) and not isinstance(q, bool):
        return min(float(q), QUANTITY_MAX)
    m = _QUANTITY.fullmatch(str(q).strip())
    if not m or (m.group(4) is not None and m.group(4) not in QUANTITY_UNITS):
        raise CannotRead(f"cannot read {q!r} as a Kubernetes quantity")
    sign, number, exponent, suffix = m.groups()
    if exponent is not None:
        e = int(exponent[1:])
        value = 0.0 if float(number) == 0 or e < -400 else QUANTITY_MAX if e > 400 else float(f"{number}e{e}")
    else:
        value = float(number) * QUANTITY_UNITS[suffix]
    return -min(value, QUANTITY_MAX) if sign == "-" else min(value, QUANTITY_MAX)


@functools.lru_cache(maxsize=None)
def request_timeout_default(role: str) -> float:
    """The --request-timeout default of a role, read from its Rust config."""
    with open(os.path.join(REPO_DIR, "src", role, "config.rs")) as fh:
        m = re.search(r'env = "TRUSTY_REQUEST_TIMEOUT", default_value = "([^"]+)"', fh.read())
    if not m:
        die(f"src/{role}/config.rs: no TRUSTY_REQUEST_TIMEOUT default found")
    try:
        return seconds(m.group(1))
    except CannotRead as e:
        die(f"src/{role}/config.rs: TRUSTY_REQUEST_TIMEOUT default: {e}")


def pod_spec(d: dict) -> dict | None:
    kind = d.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return d["spec"]["template"]["spec"]
    return None


def policy_errors(docs: list[dict]) -> list[str]:
    """Secure-default and wiring checks the schemas cannot express."""
    errs: list[str] = []
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    configmaps = by_kind.get("ConfigMap", {})
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        ps = pod_spec(d)
        if ps is None:
            continue
        tmpl = d["spec"]["template"]
        psc = ps.get("securityContext", {})
        if not psc.get("runAsNonRoot"):
            errs.append(f"{name}: pod securityContext.runAsNonRoot is not true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errs.append(f"{name}: pod seccompProfile is not RuntimeDefault")
        if "checksum/config" not in tmpl.get("metadata", {}).get("annotations", {}):
            errs.append(f"{name}: pod template lacks the checksum/config annotation")
        mounts_tmp = False
        for c in ps.get("containers", []):
            cn = f"{name} container {c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                errs.append(f"{cn}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                errs.append(f"{cn}: readOnlyRootFilesystem is not true")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                errs.append(f"{cn}: capabilities do not drop ALL")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        errs.append(f"{cn}: resources.{part}.{r} missing")
            mounts_tmp |= any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", []))
            for ef in c.get("envFrom", []):
                ref = ef.get("configMapRef", {}).get("name")
                if ref and ref not in configmaps:
                    errs.append(f"{cn}: envFrom ConfigMap {ref} is not rendered")
            probes = {p for p in ("livenessProbe", "readinessProbe") if p in c}
            if probes != {"livenessProbe", "readinessProbe"}:
                errs.append(f"{cn}: liveness/readiness probes missing")
        if not mounts_tmp:
            errs.append(f"{name}: no writable /tmp mount (root filesystem is read-only)")
        # A role's ServiceAccount is rendered by the chart, or (create: false)
        # pre-provisioned: then the chart renders none for that role.
        sa = ps.get("serviceAccountName")
        component = tmpl.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")
        rendered = {n for n, a in by_kind.get("ServiceAccount", {}).items()
                    if a["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component}
        if not sa:
            errs.append(f"{name}: no serviceAccountName")
        elif rendered and sa not in rendered:
            errs.append(f"{name}: runs as ServiceAccount {sa}, but the chart renders {sorted(rendered)} for it")
    for d in by_kind.get("StatefulSet", {}).values():
        spec = d["spec"]
        if spec.get("podManagementPolicy") != "Parallel":
            errs.append(f"StatefulSet/{d['metadata']['name']}: podManagementPolicy is not Parallel")
        svc = by_kind.get("Service", {}).get(spec["serviceName"])
        if not svc:
            errs.append(f"StatefulSet/{d['metadata']['name']}: governing Service {spec['serviceName']} missing")
        elif svc["spec"].get("clusterIP") != "None" or not svc["spec"].get("publishNotReadyAddresses"):
            errs.append(f"Service/{spec['serviceName']}: must be headless with publishNotReadyAddresses")
        env = {e["name"]: e for c in spec["template"]["spec"]["containers"] for e in c.get("env", [])}
        sid = env.get("TRUSTY_SHARD_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if sid != "metadata.name":
            errs.append(f"StatefulSet/{d['metadata']['name']}: TRUSTY_SHARD_ID is not the pod name")
    # Serving roles keep serving briefly after they are told to stop (endpoint
    # removal lags), then get their request timeout to finish what is in flight.
    for kind in ("Deployment", "StatefulSet"):
        for d in by_kind.get(kind, {}).values():
            role = d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
            if role not in ("router", "shard"):
                continue
            ps = pod_spec(d)
            grace = ps.get("terminationGracePeriodSeconds", 30)
            for c in ps["containers"]:
                cn = f"{kind}/{d['metadata']['name']} container {c['name']}"
                cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                if len(cmd) != 2 or cmd[0] != "sleep":
                    errs.append(f"{cn}: no preStop sleep; requests still routed to a stopping pod are dropped")
                    continue
                env = {}
                for ef in c.get("envFrom", []):
                    ref = ef.get("configMapRef", {}).get("name")
                    env.update((configmaps.get(ref) or {}).get("data") or {})
                env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
                try:
                    timeout = (seconds(env["TRUSTY_REQUEST_TIMEOUT"]) if "TRUSTY_REQUEST_TIMEOUT" in env
                               else request_timeout_default(role))
                except CannotRead as e:
                    errs.append(f"{cn}: TRUSTY_REQUEST_TIMEOUT: {e}")
                    continue
                if role == "router":
                    # /mcp outlasts the API's timeout by two MCP deadline margins (src/mcp/client.rs).
                    timeout += 10
                if grace < int(cmd[1]) + timeout:
                    errs.append(f"{cn}: terminationGracePeriodSeconds {grace} < preStop {cmd[1]} s + "
                                f"request timeout {timeout:g} s; in-flight requests would be cut off")
    # Shards request the ephemeral storage their emptyDirs (cache, /tmp) may
    # fill, or the scheduler places them on nodes that cannot hold it.
    for d in by_kind.get("StatefulSet", {}).values():
        ps = pod_spec(d)
        limits = [v["emptyDir"]["sizeLimit"] for v in ps.get("volumes", []) if "sizeLimit" in v.get("emptyDir", {})]
        try:
            needed = sum(quantity_bytes(q) for q in limits)
        except CannotRead as e:
            errs.append(f"StatefulSet/{d['metadata']['name']}: emptyDir sizeLimit: {e}")
            continue
        for c in ps["containers"]:
            res = c.get("resources", {})
            # A lone limit is the request too.
            req = res.get("requests", {}).get("ephemeral-storage") or res.get("limits", {}).get("ephemeral-storage")
            try:
                short = req is None or quantity_bytes(req) < needed
            except CannotRead as e:
                errs.append(f"StatefulSet/{d['metadata']['name']} container {c['name']}: ephemeral-storage: {e}")
                continue
            if short:
                errs.append(f"StatefulSet/{d['metadata']['name']} container {c['name']}: requests.ephemeral-storage "
                            f"{req} does not cover its emptyDirs ({' + '.join(limits)})")
    # Sizes reach the binary as it parses them (bytesize), not as floats.
    for cm in configmaps.values():
        for k in ("TRUSTY_MEMORY_BUDGET", "TRUSTY_DISK_BUDGET", "TRUSTY_MIN_DOWNLOAD_RATE"):
            v = (cm.get("data") or {}).get(k)
            if v is not None and not re.fullmatch(r"[0-9]+(\.[0-9]+)? *[A-Za-z]*", v):
                errs.append(f"ConfigMap/{cm['metadata']['name']}: {k}={v!r} is not a size the shard can read")
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        tgt = hpa["spec"]["scaleTargetRef"]
        dep = by_kind.get(tgt["kind"], {}).get(tgt["name"])
        if not dep:
            errs.append(f"HPA/{hpa['metadata']['name']}: target {tgt['kind']}/{tgt['name']} missing")
        elif "replicas" in dep["spec"]:
            errs.append(f"{tgt['kind']}/{tgt['name']}: sets replicas although an HPA manages it")
    for kind in ("PodDisruptionBudget", "NetworkPolicy", "Service"):
        for d in by_kind.get(kind, {}).values():
            sel = (d["spec"].get("selector", {}).get("matchLabels") if kind == "PodDisruptionBudget"
                   else d["spec"].get("podSelector", {}).get("matchLabels") if kind == "NetworkPolicy"
                   else d["spec"].get("selector"))
            if not sel or sel.get("app.kubernetes.io/component") == "index-build":
                continue  # build Job pods are created by the operator, not the chart
            pod_labels = [w["spec"]["template"]["metadata"]["labels"]
                          for k2 in ("Deployment", "StatefulSet") for w in by_kind.get(k2, {}).values()]
            pod_labels += [c["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
                           for c in by_kind.get("CronJob", {}).values()]
            if not any(all(labels.get(k) == v for k, v in sel.items()) for labels in pod_labels):
                errs.append(f"{kind}/{d['metadata']['name']}: selector {sel} matches no workload")
    # Build Jobs reach the store with the same settings as the operator.
    for cm in configmaps.values():
        data = cm.get("data") or {}
        if "TRUSTY_BUILD_ENV" not in data:
            continue
        passed = {e.get("name") for e in json.loads(data["TRUSTY_BUILD_ENV"])}
        for k in data:
            if k.startswith(("AWS_", "AZURE_")) and k not in passed:
                errs.append(f"ConfigMap/{cm['metadata']['name']}: store setting {k} is not passed to build Jobs")
    # Build Job pods meet the same secure defaults as the chart's own pods.
    for cm in configmaps.values():
        raw = (cm.get("data") or {}).get("TRUSTY_BUILD_POD")
        if raw is None:
            continue
        bp = json.loads(raw)
        name = f"ConfigMap/{cm['metadata']['name']} TRUSTY_BUILD_POD"
        psc, csc = bp.get("podSecurityContext", {}), bp.get("containerSecurityContext", {})
        if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errs.append(f"{name}: build pods are not non-root with RuntimeDefault seccomp")
        if csc.get("allowPrivilegeEscalation") is not False or "ALL" not in csc.get("capabilities", {}).get("drop", []):
            errs.append(f"{name}: build containers may escalate privileges or keep capabilities")
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in bp.get("resources", {}).get(part, {}):
                    errs.append(f"{name}: resources.{part}.{r} missing (ResourceQuotas reject such pods)")
    # Everything that reads or writes the object store.
    store_clients = ("shard", "operator", "index-build", "embed-cache-prune")

    def component_of(np_: dict) -> str | None:
        return np_["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component")

    def egress_errors(url: str, components: tuple[str, ...], what: str) -> list[str]:
        u = urllib.parse.urlparse(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        found = []
        for np_ in by_kind.get("NetworkPolicy", {}).values():
            component = component_of(np_)
            if component not in components:
                continue
            ports = {p.get("port") for r in np_["spec"].get("egress", []) for p in r.get("ports", [])}
            if port not in ports:
                found.append(f"NetworkPolicy/{np_['metadata']['name']}: {component} pods cannot reach {what} on port {port}")
        return found

    # An HTTP embedder must be reachable by the shards (queries) and the build
    # Jobs (which embed with it unless an Index names another); an
    # S3-compatible endpoint by everything that reads or writes the store.
    for cm in configmaps.values():
        data = cm.get("data") or {}
        if data.get("TRUSTY_EMBEDDER") == "http" and data.get("TRUSTY_EMBEDDER_URL"):
            errs += egress_errors(data["TRUSTY_EMBEDDER_URL"], ("shard", "index-build"), "the embedder")
        if data.get("AWS_ENDPOINT_URL"):
            errs += egress_errors(data["AWS_ENDPOINT_URL"], store_clients, "the object store")
    # Egress to the GKE metadata server (networkPolicy.gkeMetadataServer) is
    # for workload identity: every pod that talks to the store needs it.
    def allows_gke_metadata(np_: dict) -> bool:
        return any(t.get("ipBlock", {}).get("cidr") == "169.254.169.252/32"
                   for r in np_["spec"].get("egress", []) for t in r.get("to", []))
    policies = by_kind.get("NetworkPolicy", {}).values()
    if any(allows_gke_metadata(np_) for np_ in policies):
        for np_ in policies:
            component = component_of(np_)
            if component in store_clients and not allows_gke_metadata(np_):
                errs.append(f"NetworkPolicy/{np_['metadata']['name']}: {component} pods cannot reach the GKE metadata server")
    # Build Jobs embed with the shards' embedder, or the shards switch the
    # vectors of what they built off as a mismatch.
    shard_cms = [cm.get("data") or {} for cm in configmaps.values() if "TRUSTY_EMBEDDER" in (cm.get("data") or {})]
    for cm in configmaps.values():
        raw = (cm.get("data") or {}).get("TRUSTY_BUILD_ENV")
        if raw is None:
            continue
        passed = {e.get("name"): e.get("value") for e in json.loads(raw)}
        for shard in shard_cms:
            for k, v in shard.items():
                if (k.startswith("TRUSTY_EMBEDDER") or k == "TRUSTY_MODEL_DIR") and passed.get(k) != v:
                    errs.append(f"ConfigMap/{cm['metadata']['name']}: build Jobs get {k}={passed.get(k)!r}, shards {v!r}")
    # RBAC is granted to the accounts the pods actually run as.
    used = {pod_spec(d).get("serviceAccountName") for d in docs if pod_spec(d) is not None}
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for b in by_kind.get(kind, {}).values():
            for subj in b.get("subjects", []):
                if subj.get("kind") == "ServiceAccount" and subj.get("name") not in used:
                    errs.append(f"{kind}/{b['metadata']['name']}: binds ServiceAccount {subj.get('name')}, which no pod uses")
    # Ingress and HTTPRoute send traffic to a rendered Service port.
    services = by_kind.get("Service", {})

    def service_port_errors(owner: str, svc_name: str, port_name=None, port_number=None) -> list[str]:
        svc = services.get(svc_name)
        if not svc:
            return [f"{owner}: backend Service {svc_name} is not rendered"]
        ports = svc["spec"].get("ports", [])
        if port_name is not None and all(p.get("name") != port_name for p in ports):
            return [f"{owner}: Service {svc_name} has no port named {port_name}"]
        if port_number is not None and all(p.get("port") != port_number for p in ports):
            return [f"{owner}: Service {svc_name} has no port {port_number}"]
        return []

    for ing in by_kind.get("Ingress", {}).values():
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                be = path["backend"]["service"]
                errs += service_port_errors(f"Ingress/{ing['metadata']['name']}", be["name"],
                                            port_name=be["port"].get("name"), port_number=be["port"].get("number"))
    for route in by_kind.get("HTTPRoute", {}).values():
        owner = f"HTTPRoute/{route['metadata']['name']}"
        if not route["spec"].get("parentRefs"):
            errs.append(f"{owner}: no parentRefs")
        for rule in route["spec"].get("rules", []):
            for be in rule.get("backendRefs", []):
                errs += service_port_errors(owner, be["name"], port_number=be.get("port"))
    for sm in by_kind.get("ServiceMonitor", {}).values():
        for ep in sm["spec"].get("endpoints", []):
            if ep.get("port") != "http" or ep.get("path") != "/metrics":
                errs.append(f"ServiceMonitor/{sm['metadata']['name']}: endpoint must scrape port http /metrics")
    errs += operator_rbac_errors(docs)
    return errs


CLUSTER = "*"  # a right bound cluster-wide (ClusterRoleBinding)


def operator_rbac_errors(docs: list[dict]) -> list[str]:
    """Each right of the operator is bound exactly where it uses it, no wider:
    Index rights and Events where it watches Indexes, Job rights where build
    Jobs run (BuildConfig::watched_job_namespaces in operator/src/jobs.rs,
    from its ConfigMap's settings), Leases in the release namespace."""
    ops = [d for d in docs if d["kind"] == "Deployment"
           and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "operator"]
    if not ops:
        return []
    op = ops[0]
    release = op["metadata"]["namespace"]
    account = pod_spec(op).get("serviceAccountName")
    refs = {ef["configMapRef"]["name"] for c in pod_spec(op)["containers"]
            for ef in c.get("envFrom", []) if "configMapRef" in ef}
    config: dict = {}
    for d in docs:
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] in refs:
            config.update(d.get("data") or {})
    watch = config.get("TRUSTY_NAMESPACE") or None
    build_ns = config.get("TRUSTY_BUILD_NAMESPACE") or None
    volume_sources = config.get("TRUSTY_VOLUME_SOURCES") == "true"
    if build_ns is None or volume_sources:  # builds may run in Index namespaces
        jobs = {CLUSTER} if watch is None else {watch} | ({build_ns} if build_ns else set())
    else:
        jobs = {build_ns}
    expected = {
        ("search.trusty.dev", "indexes"): {watch or CLUSTER},
        ("search.trusty.dev", "indexes/status"): {watch or CLUSTER},
        ("search.trusty.dev", "indexes/finalizers"): {watch or CLUSTER},
        ("events.k8s.io", "events"): {watch or CLUSTER},
        ("batch", "jobs"): jobs,
        ("", "pods"): jobs,
        ("coordination.k8s.io", "leases"): {release},
    }
    granted: dict[tuple[str, str], set[str]] = {}
    for b in docs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == account
                   and s.get("namespace") == release for s in b.get("subjects", [])):
            continue
        ref = b["roleRef"]
        scope = b["metadata"].get("namespace", CLUSTER) if b["kind"] == "RoleBinding" else CLUSTER
        roles = [d for d in docs if d["kind"] == ref["kind"] and d["metadata"]["name"] == ref["name"]
                 and (ref["kind"] == "ClusterRole" or d["metadata"].get("namespace") == scope)]
        if not roles:
            return [f"{b['kind']}/{b['metadata']['name']}: binds {ref['kind']}/{ref['name']}, which is not rendered"]
        for rule in roles[0].get("rules", []):
            for g in rule.get("apiGroups", []):
                for r in rule.get("resources", []):
                    granted.setdefault((g, r), set()).add(scope)
    def where(scopes: set[str]) -> str:
        return ", ".join(sorted("every namespace" if n == CLUSTER else n for n in scopes)) or "nowhere"

    errs = []
    for key in sorted(set(expected) | set(granted)):
        want, have = expected.get(key, set()), granted.get(key, set())
        if want != have:
            errs.append(f"operator RBAC: {key[0] or 'core'}/{key[1]} is granted in {where(have)}, but the operator "
                        f"(TRUSTY_NAMESPACE={watch}, TRUSTY_BUILD_NAMESPACE={build_ns}, "
                        f"TRUSTY_VOLUME_SOURCES={volume_sources}) uses it in {where(want)}")
    return errs


def cmd_policy(a: argparse.Namespace) -> None:
    failures = 0
    for f in a.files:
        with open(f) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
        for err in policy_errors(docs):
            failures += 1
            print(f"  FAIL {f} policy: {err}")
    if failures:
        die(f"{failures} policy failure(s)")


def cmd_validate(a: argparse.Namespace) -> None:
    import kubernetes_validate as kv
    from kubernetes_validate import utils as kvu

    failures = 0
    for f in a.files:
        with open(f) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
        skipped = set()
        for version in a.kube_versions.split(","):
            version = kube_semver(version)[1:]
            for d in docs:
                ident = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
                try:
                    kv.validate(d, version, strict=True)
                except kvu.SchemaNotFoundError:
                    if d.get("kind") in CRD_KINDS:
                        skipped.add(d["kind"])
                        continue
                    failures += 1
                    print(f"  FAIL {f} [{version}] {ident}: no schema for {d.get('apiVersion')} {d.get('kind')}")
                except kvu.ValidationError as e:
                    failures += 1
                    path = ".".join(str(p) for p in e.path)
                    print(f"  FAIL {f} [{version}] {ident}: {path}: {e.message}")
        for err in policy_errors(docs):
            failures += 1
            print(f"  FAIL {f} policy: {err}")
        note = f" (CRD kinds not schema-validated: {', '.join(sorted(skipped))})" if skipped else ""
        print(f"  ok   {f}: {len(docs)} objects x {a.kube_versions}{note}" if not failures else
              f"  ...  {f}: {len(docs)} objects checked")
    if failures:
        die(f"{failures} validation failure(s)")


def cmd_rules(a: argparse.Namespace) -> None:
    with open(a.file) as fh:
        rules = [d for d in yaml.safe_load_all(fh) if d and d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        die(f"expected exactly one PrometheusRule in {a.file}, found {len(rules)}")
    with open(a.out, "w") as fh:
        fh.write("# Extracted from the rendered PrometheusRule by scripts/chart_tool.py rules\n")
        yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, fh, sort_keys=False, width=1000)


def exprs_in_dashboard(path: str) -> list[str]:
    with open(path) as fh:
        dash = json.load(fh)
    out = []

    def walk(o):
        if isinstance(o, dict):
            if isinstance(o.get("expr"), str):
                out.append(o["expr"])
            q = o.get("query")
            if isinstance(q, dict) and isinstance(q.get("query"), str):
                out.append(q["query"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    return out


def cmd_metrics(a: argparse.Namespace) -> None:
    exprs: list[tuple[str, str]] = []
    with open(a.rules) as fh:
        for g in yaml.safe_load(fh)["groups"]:
            for r in g["rules"]:
                exprs.append((f"alert {r.get('alert') or r.get('record')}", r["expr"]))
    for path in sorted(glob.glob(os.path.join(a.dashboards, "*.json"))):
        exprs += [(f"dashboard {os.path.basename(path)}", e) for e in exprs_in_dashboard(path)]
    used: set[str] = set()
    errors = []
    for where, e in exprs:
        # Strip string literals (label values such as route regexes) before matching.
        bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)
        names = set(re.findall(r"\b(trusty_[a-z0-9_]+)\b", bare))
        if re.search(r"\bup\s*\{", bare):
            names.add("up")
        for n in names:
            if n == "up":
                used.add(n)
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", n)
            kind = CONTRACT_METRICS.get(n) or (CONTRACT_METRICS.get(base) if base != n else None)
            if kind is None or (base != n and kind != "histogram"):
                errors.append(f"{where}: {n} is not in the metric contract")
            used.add(n)
    if errors:
        for e in errors:
            print("  FAIL " + e)
        die("dashboards/alerts use metrics outside the contract")
    with open(a.out, "w") as fh:
        fh.write("\n".join(sorted(used)) + "\n")
    print(f"  ok   {len(used)} metric series names used by {len(exprs)} expressions -> {a.out}")


def values_table() -> str:
    """Markdown table of every leaf value in values.yaml with its `# --` comment."""
    path_file = os.path.join(CHART_DIR, "values.yaml")
    with open(path_file) as fh:
        lines = fh.read().splitlines()
    with open(path_file) as fh:
        data = yaml.safe_load(fh)
    rows = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    leaf_indent: int | None = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if text.startswith("--"):
                comment = [text[2:].strip()]
            elif comment:
                comment.append(text)
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_./-]+):(.*)$", line)
        if not m or stripped.startswith("-"):
            comment = [] if not stripped else comment
            continue
        indent, key = len(m.group(1)), m.group(2)
        if leaf_indent is not None and indent > leaf_indent:
            continue  # inside a list/map default already shown as one value
        leaf_indent = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        keys = [k for _, k in stack]
        node = data
        for k in keys:
            node = node[k]
        atomic = keys[-1] in ("resources", "podSecurityContext", "containerSecurityContext", "labels")
        if isinstance(node, dict) and node and not atomic:
            comment = []
            continue
        default = json.dumps(node, separators=(",", ":"))
        desc = " ".join(comment).replace("|", "\\|")
        rows.append(f"| `{'.'.join(keys)}` | `{default}` | {desc} |")
        comment = []
        leaf_indent = indent
    return "| Key | Default | Description |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def cmd_docs(a: argparse.Namespace) -> None:
    readme = os.path.join(CHART_DIR, "README.md")
    start, end = "<!-- values:start -->", "<!-- values:end -->"
    with open(readme) as fh:
        text = fh.read()
    if start not in text or end not in text:
        die(f"{readme} lacks the {start} / {end} markers")
    table = values_table()
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}\n{table}{end}{tail}"
    undocumented = [r.split("`")[1] for r in table.splitlines()[2:] if r.rstrip().endswith("|  |")]
    if undocumented:
        die("values without a `# --` description in values.yaml: " + ", ".join(undocumented))
    if a.check:
        if new != text:
            die("README.md values table is stale; run: python3 scripts/chart_tool.py docs")
        print(f"  ok   README.md documents all {len(table.splitlines()) - 2} values")
    else:
        with open(readme, "w") as fh:
            fh.write(new)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("values", nargs="*")
    r.add_argument("--set", action="append", default=[])
    r.add_argument("--name", default="trusty-search")
    r.add_argument("--namespace", default="trusty-search")
    r.add_argument("--kube-version")
    r.add_argument("--api-versions", default="")
    r.add_argument("--include-crds", action="store_true")
    r.add_argument("--namespace-object", action="store_true")
    r.add_argument("--header", default="")
    r.add_argument("--out")
    r.set_defaults(fn=cmd_render)
    l = sub.add_parser("lint")
    l.add_argument("values", nargs="*")
    l.add_argument("--set", action="append", default=[])
    l.add_argument("--namespace", default="trusty-search")
    l.add_argument("--kube-versions", default="1.31,1.33")
    l.set_defaults(fn=cmd_lint)
    v = sub.add_parser("validate")
    v.add_argument("files", nargs="+")
    v.add_argument("--kube-versions", default="1.31,1.33")
    v.set_defaults(fn=cmd_validate)
    po = sub.add_parser("policy")
    po.add_argument("files", nargs="+")
    po.set_defaults(fn=cmd_policy)
    ru = sub.add_parser("rules")
    ru.add_argument("file")
    ru.add_argument("--out", required=True)
    ru.set_defaults(fn=cmd_rules)
    m = sub.add_parser("metrics")
    m.add_argument("--rules", required=True)
    m.add_argument("--dashboards", default=os.path.join(CHART_DIR, "dashboards"))
    m.add_argument("--out", required=True)
    m.set_defaults(fn=cmd_metrics)
    dc = sub.add_parser("docs")
    dc.add_argument("--check", action="store_true")
    dc.set_defaults(fn=cmd_docs)
    a = p.parse_args()
    try:
        import helm_python as helm

        helm.disable_logging()  # lint/render chatter from the Go SDK; real problems are returned as data
    except ImportError:
        die("helm-python-sdk is not installed (pip install helm-python-sdk)")
    try:
        a.fn(a)
    except CannotRead as e:  # a value seconds()/quantity_bytes() refuse: one line, no traceback
        die(str(e))
    except Exception as e:  # helm errors carry the template position; show them plainly
        if type(e).__module__.startswith("helm_python"):
            die(f"{type(e).__name__}: {e}")
        raise


if __name__ == "__main__":
    main()
