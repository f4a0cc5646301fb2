"""kubento at scale: N ModelDeployments against a real control plane.

    make bench-scale                              # N = 100, 1000 and 3000
    .venv/bin/python -m bench.scale --n 100       # one size

For each N, a fresh control plane (e2e/controlplane: etcd, kube-apiserver,
kube-controller-manager without the Deployment/ReplicaSet controllers), the
CRD and the chart's RBAC (cluster-wide mode), and the operator run as a
process (`kubento run -A`) with the chart ServiceAccount's token. This
script plays the Deployment controller: it watches kubento's Deployments
and reports every desired replica ready. Prints, in one run:

- the plain-client baseline: N Deployments + N Services created by 8
  threads (a ServiceAccount like the operator's: API Priority and Fairness
  treats both the same), and the operator's time from the first create of N
  ModelDeployments (8 threads) to all their Deployments and Services, and
  the ratio; per-model create -> children p50/p99;
- time until all N are Ready;
- a steady trickle of 10 new models a second for 30 s beside the N:
  per-model create -> children p50/p99;
- 60 s idle: the operator's API requests per minute by verb (audit log),
  its CPU % and RSS, and its /metrics series count;
- a spec change on all N: time until every model has rolled out (new
  revision stable and Ready), and its ratio to the baseline.

Figures, not pass/fail: nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.specs import model_deployment  # noqa: E402

NAMESPACE = "scale"
PLAIN = "plain"
THREADS = 8
OPERATOR_USER = "system:serviceaccount:kubento-system:kubento"
MODEL_LABEL = "serving.kubento.io/model-deployment"
SPEC = {"bento": {"image": "registry.local/iris:1.0"}, "replicas": 1}
METRICS_PORT = 19091


def say(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# ------------------------------------------------------------ the cluster


class ControlPlane:
    def __init__(self, port: int = 36943, etcd_port: int = 32879) -> None:
        self.dir = Path(tempfile.gettempdir()) / "kubento-cp-scale"
        self.env = {**os.environ, "KUBENTO_CP_DIR": str(self.dir), "KUBENTO_CP_PORT": str(port),
                    "KUBENTO_CP_ETCD_PORT": str(etcd_port),
                    "KUBENTO_CP_CONTROLLERS": "*,-deployment-controller,-replicaset-controller,"
                                              "-horizontal-pod-autoscaler-controller,-job-controller"}
        self.script = str(ROOT / "e2e" / "controlplane")
        self.kube_bin = subprocess.run([str(ROOT / "e2e" / "kubebin" / "build.sh")], capture_output=True,
                                       text=True, check=True).stdout.strip()

    def up(self) -> None:
        subprocess.run([self.script, "down"], env=self.env, capture_output=True)
        proc = subprocess.run([self.script, "up"], env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"control plane did not start:\n{proc.stderr}")

    def down(self) -> None:
        subprocess.run([self.script, "down"], env=self.env, capture_output=True)

    @property
    def admin(self) -> Path:
        return self.dir / "admin.kubeconfig"

    def kubectl(self, *args: str, input: Optional[str] = None) -> str:
        proc = subprocess.run([self.kube_bin, "kubectl", "--kubeconfig", str(self.admin), *args], input=input,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def token_kubeconfig(self, sa: str, namespace: str, path: Path) -> Path:
        token = self.kubectl("create", "token", sa, "-n", namespace, "--duration=6h").strip()
        cfg = yaml.safe_load(self.admin.read_text())
        cfg["users"] = [{"name": sa, "user": {"token": token}}]
        cfg["contexts"] = [{"name": sa, "context": {"cluster": cfg["clusters"][0]["name"], "user": sa}}]
        cfg["current-context"] = sa
        path.write_text(yaml.safe_dump(cfg))
        return path

    def install(self) -> tuple[Path, Path]:
        """CRD, the chart's RBAC, a ServiceAccount for the plain client;
        returns (operator kubeconfig, plain client kubeconfig)."""
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        for _ in range(120):  # kubectl wait fails at once while the new CRD has no conditions
            try:
                self.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.serving.kubento.io",
                             "--timeout=10s")
                break
            except RuntimeError:
                time.sleep(0.5)
        helm = subprocess.run([str(ROOT / "hack" / "helm.sh")], capture_output=True, text=True, check=True).stdout.strip()
        rendered = subprocess.run([helm, "template", "kubento", str(ROOT / "charts" / "kubento"), "--namespace",
                                   "kubento-system", "--kube-version", "1.34.4"], capture_output=True, text=True, check=True).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in
                ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
        for ns in ("kubento-system", NAMESPACE, PLAIN):
            self.kubectl("create", "namespace", ns)
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        plain_rbac = [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "plain", "namespace": PLAIN}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "plain", "namespace": PLAIN},
             "rules": [{"apiGroups": ["apps", ""], "resources": ["deployments", "services"], "verbs": ["create", "patch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "plain", "namespace": PLAIN},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "plain"},
             "subjects": [{"kind": "ServiceAccount", "name": "plain", "namespace": PLAIN}]},
        ]
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(plain_rbac))
        time.sleep(2)  # the token controller
        return (self.token_kubeconfig("kubento", "kubento-system", self.dir / "operator-sa.kubeconfig"),
                self.token_kubeconfig("plain", PLAIN, self.dir / "plain.kubeconfig"))


def api(kubeconfig: Path, pool: int = THREADS * 2) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


# --------------------------------------------------------------- watching


class Watcher(threading.Thread):
    """A raw watch (list, then watch from its resourceVersion), calling
    ``on(type, obj)`` for every event; fast enough for thousands."""

    def __init__(self, list_call: Callable[..., Any], on: Callable[[str, dict], None], **kw: Any) -> None:
        super().__init__(daemon=True)
        self.list_call, self.on, self.kw = list_call, on, kw
        self.ready = threading.Event()

    def run(self) -> None:
        while True:
            resp = self.list_call(_preload_content=False, **self.kw)
            listed = json.loads(resp.data)
            for item in listed["items"]:
                self.on("ADDED", item)
            self.ready.set()
            rv = listed["metadata"]["resourceVersion"]
            try:
                stream = self.list_call(watch=True, resource_version=rv, allow_watch_bookmarks=True,
                                        timeout_seconds=3600, _preload_content=False, **self.kw)
                for line in stream:
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        break
                    if event["type"] != "BOOKMARK":
                        self.on(event["type"], event["object"])
            except Exception as exc:  # noqa: BLE001 - relist
                say(f"watch restarted: {exc}")


class Observer:
    """First times kubento's children appear per model, Ready and rollout
    times, and the fake Deployment controller."""

    def __init__(self, admin: client.ApiClient) -> None:
        self.lock = threading.Lock()
        self.deployment_seen: dict[str, float] = {}
        self.service_seen: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.rolled: dict[str, float] = {}
        self.rollout_since: Optional[float] = None  # generation >= 2 means the spec change
        self.apps = client.AppsV1Api(admin)
        self.core = client.CoreV1Api(admin)
        self.custom = client.CustomObjectsApi(admin)
        self.pool = ThreadPoolExecutor(THREADS)
        self.reported: dict[str, int] = {}
        sel = "app.kubernetes.io/managed-by=kubento"
        self.watchers = [
            Watcher(self.apps.list_namespaced_deployment, self._deployment, namespace=NAMESPACE, label_selector=sel),
            Watcher(self.core.list_namespaced_service, self._service, namespace=NAMESPACE, label_selector=sel),
            Watcher(lambda **kw: self.custom.list_namespaced_custom_object("serving.kubento.io", "v1alpha1", NAMESPACE,
                                                                          "modeldeployments", **kw), self._model),
        ]
        for w in self.watchers:
            w.start()
        for w in self.watchers:
            w.ready.wait(60)

    def _deployment(self, type_: str, dep: dict) -> None:
        meta = dep["metadata"]
        model = (meta.get("labels") or {}).get(MODEL_LABEL)
        if type_ == "DELETED" or not model:
            return
        with self.lock:
            self.deployment_seen.setdefault(model, time.monotonic())
        want = dep["spec"].get("replicas", 1)
        st = dep.get("status") or {}
        if st.get("observedGeneration") == meta["generation"] and st.get("readyReplicas", 0) == want \
                and st.get("replicas", 0) == want:
            return
        key = f"{meta['name']}/{meta['generation']}/{want}"
        with self.lock:
            if self.reported.get(key):
                return
            self.reported[key] = 1
        self.pool.submit(self._report, meta["name"], meta["generation"], want)

    def _report(self, name: str, generation: int, replicas: int) -> None:
        status = {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                  "readyReplicas": replicas, "availableReplicas": replicas,
                  "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok"},
                                 {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ok"}]}
        try:
            self.apps.patch_namespaced_deployment_status(name, NAMESPACE, {"status": status})
        except client.ApiException as exc:
            if exc.status != 404:
                say(f"deployment status {name}: {exc.status}")

    def _service(self, type_: str, svc: dict) -> None:
        model = (svc["metadata"].get("labels") or {}).get(MODEL_LABEL)
        if type_ != "DELETED" and model:
            with self.lock:
                self.service_seen.setdefault(model, time.monotonic())

    def _model(self, type_: str, md: dict) -> None:
        if type_ == "DELETED":
            return
        name, st = md["metadata"]["name"], md.get("status") or {}
        settled = (st.get("phase") == "Ready" and st.get("observedGeneration") == md["metadata"]["generation"]
                   and st.get("stableRevision") == st.get("currentRevision") and not st.get("rollout"))
        if not settled:
            return
        with self.lock:
            self.ready.setdefault(name, time.monotonic())
            if md["metadata"]["generation"] >= 2:
                self.rolled.setdefault(name, time.monotonic())

    def children(self, name: str) -> Optional[float]:
        with self.lock:
            d, s = self.deployment_seen.get(name), self.service_seen.get(name)
        return max(d, s) if d and s else None

    def wait(self, what: str, done: Callable[[], bool], timeout: float) -> float:
        start = time.monotonic()
        while not done():
            if time.monotonic() - start > timeout:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.05)
        return time.monotonic()


# ---------------------------------------------------------------- the runs


def plain_baseline(plain: client.ApiClient, n: int) -> float:
    apps, core = client.AppsV1Api(plain), client.CoreV1Api(plain)

    def one(i: int) -> None:
        labels = {"app": f"p{i}"}
        apps.create_namespaced_deployment(PLAIN, {
            "metadata": {"name": f"p{i}", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "registry.local/iris:1.0"}]}}}})
        core.create_namespaced_service(PLAIN, {"metadata": {"name": f"p{i}"},
                                               "spec": {"selector": labels, "ports": [{"port": 80}]}})

    start = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(n)))
    return time.monotonic() - start


def create_models(custom: client.CustomObjectsApi, names: list[str], created: dict[str, float]) -> None:
    def one(name: str) -> None:
        body = model_deployment(name, NAMESPACE, SPEC)
        custom.create_namespaced_custom_object("serving.kubento.io", "v1alpha1", NAMESPACE, "modeldeployments", body)
        created[name] = time.monotonic()

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, names))


class Operator:
    def __init__(self, kubeconfig: Path, workers: int) -> None:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBENTO_WORKERS": str(workers)}
        self.log = open(Path(tempfile.gettempdir()) / "kubento-scale-operator.log", "w")
        cmd = [str(ROOT / ".venv" / "bin" / "kubento"), "run", "-A", "--liveness", "",
               "--metrics-port", str(METRICS_PORT), "--log-format", "json"]
        if os.environ.get("KUBENTO_BENCH_PROFILE"):  # collapsed stacks of the whole run (py-spy): figures then skew
            cmd = ["py-spy", "record", "--format", "raw", "--rate", "50", "-o", os.environ["KUBENTO_BENCH_PROFILE"],
                   "--", *cmd]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def scrape(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).read().decode()

    def series(self) -> int:
        return sum(1 for line in self.scrape().splitlines() if line and not line.startswith("#"))

    def passes(self) -> tuple[float, float]:
        """(passes, seconds spent in them) so far."""
        values = {}
        for line in self.scrape().splitlines():
            if line.startswith("kubento_reconcile_duration_seconds_count") or \
                    line.startswith("kubento_reconcile_duration_seconds_sum"):
                name, value = line.split()
                values[name.rsplit("_", 1)[1]] = float(value)
        return values.get("count", 0.0), values.get("sum", 0.0)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def audit_requests(audit_log: Path, since: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    with open(audit_log, "rb") as fh:
        fh.seek(since)
        for line in fh:
            e = json.loads(line)
            if e.get("stage") == "ResponseComplete" and e["user"]["username"] == OPERATOR_USER:
                res = (e.get("objectRef") or {}).get("resource", "?")
                key = f"{e['verb']} {res}"
                counts[key] = counts.get(key, 0) + 1
    return counts


def run(n: int, workers: int) -> dict[str, Any]:
    cp = ControlPlane()
    say(f"== N = {n}: control plane up")
    cp.up()
    try:
        operator_kc, plain_kc = cp.install()
        admin, plain = api(cp.admin), api(plain_kc)
        out: dict[str, Any] = {"n": n}
        say("plain client baseline")
        out["baseline"] = plain_baseline(plain, n)
        observer = Observer(admin)
        operator = Operator(operator_kc, workers)
        time.sleep(5)  # the operator's watches are up (it has nothing to do yet)
        custom = client.CustomObjectsApi(admin)
        names = [f"m{i:05d}" for i in range(n)]
        created: dict[str, float] = {}
        say(f"creating {n} ModelDeployments")
        cpu0, passes0 = operator.cpu_seconds(), operator.passes()
        start = time.monotonic()
        create_models(custom, names, created)
        end = observer.wait("all children", lambda: all(observer.children(m) for m in names), 1800)
        out["children"] = end - start
        passes1 = operator.passes()
        out["burst_cpu"] = operator.cpu_seconds() - cpu0
        out["burst_passes"] = passes1[0] - passes0[0]
        out["burst_pass_ms"] = 1000 * (passes1[1] - passes0[1]) / max(1.0, out["burst_passes"])
        lat = [observer.children(m) - created[m] for m in names]
        out["burst_p50"], out["burst_p99"] = pct(lat, 0.5), pct(lat, 0.99)
        end = observer.wait("all Ready", lambda: len(observer.ready) >= n, 1800)
        out["ready"] = end - start

        say("trickle: 10 models a second for 30 s")
        trickle = [f"t{i:05d}" for i in range(300)]
        for i in range(0, 300, 10):
            t0 = time.monotonic()
            create_models(custom, trickle[i:i + 10], created)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        observer.wait("trickle children", lambda: all(observer.children(m) for m in trickle), 600)
        observer.wait("trickle Ready", lambda: all(m in observer.ready for m in trickle), 600)
        lat = [observer.children(m) - created[m] for m in trickle]
        out["trickle_p50"], out["trickle_p99"] = pct(lat, 0.5), pct(lat, 0.99)

        say("idle 60 s")
        time.sleep(10)  # in-flight passes and events settle
        offset = os.path.getsize(cp.dir / "audit.log")
        cpu0, t0 = operator.cpu_seconds(), time.monotonic()
        time.sleep(60)
        cpu1, t1 = operator.cpu_seconds(), time.monotonic()
        out["idle_requests"] = audit_requests(cp.dir / "audit.log", offset)
        out["idle_cpu"] = 100 * (cpu1 - cpu0) / (t1 - t0)
        out["rss"] = operator.rss_mb()
        out["series"] = operator.series()

        say(f"spec change on all {n}")
        changed = {**SPEC, "env": [{"name": "MODEL_VERSION", "value": "2"}]}

        def patch(name: str) -> None:
            custom.patch_namespaced_custom_object("serving.kubento.io", "v1alpha1", NAMESPACE, "modeldeployments",
                                                  name, {"spec": changed})

        start = time.monotonic()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(patch, names))
        end = observer.wait("all rolled out", lambda: all(m in observer.rolled for m in names), 3600)
        out["rollout"] = end - start
        out["rss_after"] = operator.rss_mb()
        operator.stop()
        return out
    finally:
        cp.down()


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("plain client: N Deployments + N Services, 8 threads (s)", lambda r: f"{r['baseline']:.1f}"),
        ("N ModelDeployments created -> all children (s)", lambda r: f"{r['children']:.1f}"),
        ("  ratio to the plain client (target <= 1.5 at 1,000)", lambda r: f"{r['children'] / r['baseline']:.2f}x"),
        ("  per model create -> children p50 / p99 (s)", lambda r: f"{r['burst_p50']:.2f} / {r['burst_p99']:.2f}"),
        ("  operator CPU s / passes / ms per pass, until all children",
         lambda r: f"{r['burst_cpu']:.1f} / {r['burst_passes']:.0f} / {r['burst_pass_ms']:.1f}"),
        ("all N Ready (s)", lambda r: f"{r['ready']:.1f}"),
        ("trickle 10/s for 30 s: create -> children p50 / p99 (s) (target p99 <= 0.1)",
         lambda r: f"{r['trickle_p50']:.3f} / {r['trickle_p99']:.3f}"),
        ("idle 60 s: read requests / min (target 0)",
         lambda r: str(sum(v for k, v in r["idle_requests"].items() if k.split()[0] in ("get", "list")))),
        ("idle 60 s: all requests / min, by verb",
         lambda r: ", ".join(f"{k} {v}" for k, v in sorted(r["idle_requests"].items())) or "none"),
        ("idle CPU % (target < 2)", lambda r: f"{r['idle_cpu']:.1f}"),
        ("RSS MB idle / after the rollout (target <= 150 at 1,000)", lambda r: f"{r['rss']:.0f} / {r['rss_after']:.0f}"),
        ("operator /metrics series", lambda r: str(r["series"])),
        ("spec change on all N -> all rolled out (s)", lambda r: f"{r['rollout']:.1f}"),
        ("  ratio to the plain client (target <= 5 at 1,000)", lambda r: f"{r['rollout'] / r['baseline']:.2f}x"),
    ]
    head = ["", *[f"N = {r['n']:,}" for r in results]]
    lines = [head] + [[label, *[fmt(r) for r in results]] for label, fmt in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    results = []
    for n in args.n:
        results.append(run(n, args.workers))
        say(json.dumps(results[-1], default=str))
    print(f"\nkubento scale bench ({args.workers} workers; {os.cpu_count()} cores shared by the control plane, "
          "the operator and this client)\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
