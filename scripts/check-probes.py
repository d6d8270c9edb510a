#!/usr/bin/env python3
"""Every probe the chart configures is answered by the binary it points at.

Renders the chart with Helm's engine (scripts/chart_tool.py, default values),
and for every Deployment/StatefulSet container: takes the command (or the
image's ENTRYPOINT from the Dockerfile) and args, builds the environment
from its envFrom ConfigMaps and env entries, starts the matching binary from
the cargo target directory, and requests each probe's httpGet path on the
port the probe names. Nothing here lists paths or ports: they all come from
the rendered objects.

What cannot run outside a cluster is replaced, and said so: the listen
address becomes a free 127.0.0.1 port (the probe's named port maps to it),
the object store a local directory, the cache a temp directory, the shard
DNS name `localhost` on the local shard's port, the router URL the local
router, secrets a placeholder, and the Kubernetes API a small fake that
serves what the operator asks at start (Index list/watch, Job watch, its
leader Lease).

Usage: check-probes.py [--target-dir DIR]
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART_VALUES = os.path.join(ROOT, "charts/trusty-search/ci/default-values.yaml")
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
# How long a probe may take to turn healthy (the chart's startup probe allows 120 s).
PROBE_DEADLINE = 90


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def entrypoint():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        m = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", f.read(), re.M)
    if not m:
        sys.exit("check-probes: the Dockerfile has no exec-form ENTRYPOINT")
    return json.loads(m.group(1))


class FakeKube(BaseHTTPRequestHandler):
    """Enough of the Kubernetes API for the operator to start and elect itself."""

    protocol_version = "HTTP/1.1"
    leases = {}
    version = [1]
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def not_found(self):
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        lease = re.fullmatch(r"/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases/([^/]+)", url.path)
        if lease:
            with self.lock:
                obj = self.leases.get(lease.groups())
            return self.reply(200, obj) if obj else self.not_found()
        lists = {
            "/apis/search.trusty.dev/v1alpha1/indexes": ("search.trusty.dev/v1alpha1", "IndexList"),
            "/apis/batch/v1/jobs": ("batch/v1", "JobList"),
        }
        path = re.sub(r"/namespaces/[^/]+", "", url.path)
        if path not in lists:
            return self.not_found()
        if q.get("watch") == ["true"] or q.get("watch") == ["1"]:
            # An empty watch held open until its timeout, as the API server does.
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            time.sleep(min(float(q.get("timeoutSeconds", ["30"])[0]), 30))
            self.wfile.write(b"0\r\n\r\n")
            return
        api_version, kind = lists[path]
        self.reply(200, {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": []})

    def store_lease(self, ns, name, obj, code):
        with self.lock:
            self.version[0] += 1
            obj.setdefault("metadata", {})
            obj["metadata"].update({"name": name, "namespace": ns, "resourceVersion": str(self.version[0])})
            obj.setdefault("apiVersion", "coordination.k8s.io/v1")
            obj.setdefault("kind", "Lease")
            self.leases[(ns, name)] = obj
        self.reply(code, obj)

    def do_POST(self):
        m = re.fullmatch(r"/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases", urllib.parse.urlparse(self.path).path)
        if not m:
            return self.not_found()
        obj = self.body()
        self.store_lease(m.group(1), obj.get("metadata", {}).get("name", ""), obj, 201)

    def do_PUT(self):
        m = re.fullmatch(
            r"/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases/([^/]+)", urllib.parse.urlparse(self.path).path
        )
        if not m:
            return self.not_found()
        self.store_lease(m.group(1), m.group(2), self.body(), 200)


def env_of(container, configmaps, pod_name, namespace):
    env = {}
    for ef in container.get("envFrom", []):
        name = ef.get("configMapRef", {}).get("name")
        if name:
            env.update({k: str(v) for k, v in (configmaps[name].get("data") or {}).items()})
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        src = e.get("valueFrom", {})
        field = src.get("fieldRef", {}).get("fieldPath")
        if field == "metadata.name":
            env[e["name"]] = pod_name
        elif field == "metadata.namespace":
            env[e["name"]] = namespace
        elif "secretKeyRef" in src:
            env[e["name"]] = "probe-check-secret"
    return env


def wait_ok(url, deadline):
    last = "no answer"
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == 200:
                    return None
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
            if e.code == 404:
                return last
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    a = ap.parse_args()
    bin_dir = os.path.join(a.target_dir, "debug")

    work = tempfile.mkdtemp(prefix="check-probes.")
    procs = []
    try:
        rendered = os.path.join(work, "rendered.yaml")
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "scripts/chart_tool.py"), "render", CHART_VALUES, "--out", rendered],
            check=True,
        )
        with open(rendered) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
        workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
        # Shards first: the router finds them by DNS, the operator talks to the router.
        order = {"shard": 0, "router": 1, "operator": 2}
        workloads.sort(key=lambda d: order.get(d["metadata"]["labels"].get("app.kubernetes.io/component"), 3))

        kube = ThreadingHTTPServer(("127.0.0.1", 0), FakeKube)
        threading.Thread(target=kube.serve_forever, daemon=True).start()
        kubeconfig = os.path.join(work, "kubeconfig")
        with open(kubeconfig, "w") as f:
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{kube.server_port}"}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            }, f)
        store = os.path.join(work, "store")
        os.makedirs(store)

        ports = {}
        failures = []
        checked = 0
        for w in workloads:
            comp = w["metadata"]["labels"].get("app.kubernetes.io/component", w["metadata"]["name"])
            pod = f"{w['metadata']['name']}-0"
            for c in w["spec"]["template"]["spec"]["containers"]:
                argv = (c.get("command") or entrypoint()) + c.get("args", [])
                binary = os.path.join(bin_dir, os.path.basename(argv[0]))
                if not os.access(binary, os.X_OK):
                    sys.exit(f"check-probes: {binary} is not built (run the tests first)")
                named = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
                local = {cp: free_port() for cp in named.values()}
                env = env_of(c, configmaps, pod, w["metadata"]["namespace"])
                # Local stand-ins for what only a cluster has.
                for k, v in list(env.items()):
                    if k == "TRUSTY_LISTEN":
                        host_port = int(v.rsplit(":", 1)[1])
                        env[k] = f"127.0.0.1:{local.get(host_port, free_port())}"
                    elif k == "TRUSTY_STORE":
                        env[k] = f"file://{store}"
                    elif k == "TRUSTY_CACHE_DIR":
                        env[k] = os.path.join(work, f"cache-{comp}")
                    elif k == "TRUSTY_SHARDS_DNS":
                        env[k] = f"localhost:{ports['shard']}"
                    elif k == "TRUSTY_ROUTER_URL":
                        env[k] = f"http://127.0.0.1:{ports['router']}"
                env.update({"KUBECONFIG": kubeconfig, "RUST_LOG": "warn", "PATH": os.environ["PATH"], "HOME": work})
                log = open(os.path.join(work, f"{comp}.log"), "w")
                p = subprocess.Popen([binary] + argv[1:], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
                procs.append(p)
                ports[comp] = local[named["http"]] if "http" in named else next(iter(local.values()), 0)
                deadline = time.time() + PROBE_DEADLINE
                for probe in PROBES:
                    get = c.get(probe, {}).get("httpGet")
                    if not get:
                        failures.append(f"{comp}/{c['name']}: no httpGet {probe}")
                        continue
                    port = named.get(get["port"], get["port"]) if isinstance(get["port"], str) else get["port"]
                    if port not in local:
                        failures.append(f"{comp}/{c['name']}: {probe} names port {get['port']}, which the container does not expose")
                        continue
                    err = wait_ok(f"http://127.0.0.1:{local[port]}{get['path']}", deadline)
                    checked += 1
                    if err:
                        log.flush()
                        with open(log.name) as lf:
                            tail = "".join(lf.readlines()[-8:])
                        failures.append(f"{comp}/{c['name']}: {probe} {get['path']} on {get['port']}: {err}\n{tail}")
                    else:
                        print(f"check-probes: ok   {comp} {probe} GET {get['path']} ({get['port']})")
        if failures:
            print("check-probes: probes the binaries do not answer:")
            print("\n".join(f"  {f}" for f in failures))
            sys.exit(1)
        print(f"check-probes: {checked} probes of {len(workloads)} workloads answered by the binaries they point at")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
