"""kubento at scale: N ModelDeployments against a real control plane.

    make bench-scale                              # N = 100, 1000 and 3000
    .venv/bin/python -m bench.scale --n 100       # one size
    .venv/bin/python -m bench.scale --n 1000 --api-priority   # with the chart's APF objects (#29)

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
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from kubernetes import client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests import controlplane  # noqa: E402
from tests.controlplane import MODEL_LABEL, DeploymentController, Watcher, api  # noqa: E402
from tests.specs import model_deployment  # noqa: E402

NAMESPACE = "scale"
PLAIN = "plain"
THREADS = 8
OPERATOR_USER = "system:serviceaccount:kubento-system:kubento"
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


class ControlPlane(controlplane.ControlPlane):
    def __init__(self, port: int = 26943, etcd_port: int = 22879, api_priority: bool = False) -> None:
        super().__init__(Path(tempfile.gettempdir()) / "kubento-cp-scale", port, etcd_port)
        self.api_priority = api_priority

    def install(self) -> tuple[Path, Path]:
        """CRD, the chart's RBAC, a ServiceAccount for the plain client;
        returns (operator kubeconfig, plain client kubeconfig)."""
        self.install_operator("kubento-system", [NAMESPACE, PLAIN], api_priority=self.api_priority)
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


# --------------------------------------------------------------- watching


class Observer:
    """First times kubento's children appear per model, Ready and rollout
    times; the Deployment controller's part is played by
    tests.controlplane.DeploymentController."""

    def __init__(self, admin: client.ApiClient) -> None:
        self.lock = threading.Lock()
        self.deployment_seen: dict[str, float] = {}
        self.service_seen: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.rolled: dict[str, float] = {}
        self.core = client.CoreV1Api(admin)
        self.custom = client.CustomObjectsApi(admin)
        sel = "app.kubernetes.io/managed-by=kubento"
        self.deployments = DeploymentController(admin, NAMESPACE, threads=THREADS, on_event=self._deployment)
        self.watchers = [
            Watcher(self.core.list_namespaced_service, self._service, namespace=NAMESPACE, label_selector=sel),
            Watcher(lambda **kw: self.custom.list_namespaced_custom_object("serving.kubento.io", "v1alpha1", NAMESPACE,
                                                                          "modeldeployments", **kw), self._model),
        ]
        self.deployments.start()
        for w in self.watchers:
            w.start()
        for w in self.watchers:
            w.ready.wait(60)

    def _deployment(self, type_: str, dep: dict) -> None:
        model = (dep["metadata"].get("labels") or {}).get(MODEL_LABEL)
        if type_ != "DELETED" and model:
            with self.lock:
                self.deployment_seen.setdefault(model, time.monotonic())

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


class Operator(controlplane.Operator):
    def __init__(self, kubeconfig: Path, workers: int) -> None:
        log = Path(tempfile.gettempdir()) / "kubento-scale-operator.log"
        log.write_text("")
        wrap = []
        if os.environ.get("KUBENTO_BENCH_PROFILE"):  # collapsed stacks of the whole run (py-spy): figures then skew
            wrap = ["py-spy", "record", "--format", "raw", "--rate", "50", "-o", os.environ["KUBENTO_BENCH_PROFILE"],
                    "--"]
        super().__init__(kubeconfig, log, metrics_port=METRICS_PORT, workers=workers, wrap=wrap)
        self.start()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def scrape(self) -> str:
        """/metrics: at 10,000 models 280,000 series (22 MB), which takes the busy operator longer than
        the tests' 5 s to render."""
        import urllib.request

        return urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=120).read().decode()

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
        self.terminate(20)


def audit_requests(audit_log: Path, since: int) -> dict[str, int]:
    """Counts by verb and resource; a line cut by the offset taken mid-write (seen at 10,000) is skipped."""
    counts: dict[str, int] = {}
    with open(audit_log, "rb") as fh:
        fh.seek(since)
        for line in fh:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("stage") == "ResponseComplete" and e["user"]["username"] == OPERATOR_USER:
                res = (e.get("objectRef") or {}).get("resource", "?")
                key = f"{e['verb']} {res}"
                counts[key] = counts.get(key, 0) + 1
    return counts


def run(n: int, workers: int, api_priority: bool = False) -> dict[str, Any]:
    cp = ControlPlane(api_priority=api_priority)
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
        offset = os.path.getsize(cp.dir / "audit.log")
        start = time.monotonic()
        create_models(custom, names, created)
        end = observer.wait("all children", lambda: all(observer.children(m) for m in names), 1800)
        out["children"] = end - start
        out["burst_requests"] = audit_requests(cp.dir / "audit.log", offset)
        passes1 = operator.passes()
        out["burst_cpu"] = operator.cpu_seconds() - cpu0
        out["burst_passes"] = passes1[0] - passes0[0]
        out["burst_pass_ms"] = 1000 * (passes1[1] - passes0[1]) / max(1.0, out["burst_passes"])
        lat = [observer.children(m) - created[m] for m in names]
        out["burst_p50"], out["burst_p99"] = pct(lat, 0.5), pct(lat, 0.99)
        end = observer.wait("all Ready", lambda: len(observer.ready) >= n, 1800)
        out["ready"] = end - start
        say("so far:", json.dumps(out))  # a long run that fails later keeps these

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
        say("so far:", json.dumps(out))

        say(f"spec change on all {n}")
        changed = {**SPEC, "env": [{"name": "MODEL_VERSION", "value": "2"}]}

        def patch(name: str) -> None:
            custom.patch_namespaced_custom_object("serving.kubento.io", "v1alpha1", NAMESPACE, "modeldeployments",
                                                  name, {"spec": changed})

        offset = os.path.getsize(cp.dir / "audit.log")
        start = time.monotonic()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(patch, names))
        end = observer.wait("all rolled out", lambda: all(m in observer.rolled for m in names), 3600)
        out["rollout"] = end - start
        out["rollout_requests"] = audit_requests(cp.dir / "audit.log", offset)
        out["rss_after"] = operator.rss_mb()
        operator.stop()
        return out
    finally:
        cp.down()


def per_model(r: dict[str, Any], key: str) -> str:
    """The operator's requests (all but watches: the audit policy's verbs)
    per model, e.g. "create events 1.02, patch deployments 1.00"."""
    counts = r.get(key) or {}
    return ", ".join(f"{k} {v / r['n']:.2f}" for k, v in sorted(counts.items()) if v) or "none"


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("plain client: N Deployments + N Services, 8 threads (s)", lambda r: f"{r['baseline']:.1f}"),
        ("N ModelDeployments created -> all children (s)", lambda r: f"{r['children']:.1f}"),
        ("  ratio to the plain client (target <= 1.5 at 1,000)", lambda r: f"{r['children'] / r['baseline']:.2f}x"),
        ("  per model create -> children p50 / p99 (s)", lambda r: f"{r['burst_p50']:.2f} / {r['burst_p99']:.2f}"),
        ("  operator CPU s / passes / ms per pass, until all children",
         lambda r: f"{r['burst_cpu']:.1f} / {r['burst_passes']:.0f} / {r['burst_pass_ms']:.1f}"),
        ("  operator requests per model, by verb and resource", lambda r: per_model(r, "burst_requests")),
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
        ("  operator requests per model, by verb and resource", lambda r: per_model(r, "rollout_requests")),
    ]
    head = ["", *[f"N = {r['n']:,}" for r in results]]
    lines = [head] + [[label, *[fmt(r) for r in results]] for label, fmt in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--api-priority", action="store_true",
                        help="install the chart's FlowSchema and PriorityLevelConfiguration (apiPriority.enabled)")
    args = parser.parse_args()
    results = []
    for n in args.n:
        results.append(run(n, args.workers, args.api_priority))
        say(json.dumps(results[-1], default=str))
    print(f"\nkubento scale bench ({args.workers} workers; {os.cpu_count()} cores shared by the control plane, "
          f"the operator and this client; API Priority and Fairness objects: {'on' if args.api_priority else 'off'})\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
