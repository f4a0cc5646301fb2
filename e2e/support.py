"""What the e2e tests do as a user would: apply a ModelDeployment, read it,
send predictions through its Service (also from many threads at once)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Iterator

import yaml

from e2e import traffic
from e2e.conftest import IN_CLUSTER, NAMESPACE, run
from tests.helpers import condition, wait_for
from tests.specs import model_deployment

ROOT = Path(__file__).resolve().parents[1]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
IRIS_CLASSES = ["setosa", "virginica", "versicolor"]
TRAFFIC_SOURCE = Path(traffic.__file__).read_text()


def apply_md(cluster, name: str, spec: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(model_deployment(name, NAMESPACE, spec)))


def example_spec(images) -> dict:
    spec = yaml.safe_load((ROOT / "examples" / "iris" / "modeldeployment.yaml").read_text())["spec"]
    spec["bento"]["image"] = images["iris"]
    return spec


def md(cluster, name):
    return cluster.get("md", name, "-n", NAMESPACE)


def ready(cluster, name):
    obj = md(cluster, name)
    return obj if condition(obj, "Ready").get("status") == "True" else None


def predict(cluster, name, rows):
    ip = cluster.get("service", name, "-n", NAMESPACE)["spec"]["clusterIP"]
    body = json.dumps({"features": rows})
    if IN_CLUSTER:
        return json.loads(in_cluster(cluster, "post", {"url": f"http://{ip}/classify", "body": body, "timeout": 10}))
    return json.loads(traffic.post(f"http://{ip}/classify", body.encode(), timeout=10))


def kubento(cluster, *args: str) -> str:
    """The kubento CLI as a user runs it, against the e2e cluster's namespace: its stdout."""
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    proc = subprocess.run([sys.executable, "-m", "kubento.cli.main", *args, "-n", NAMESPACE], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubento {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc.stdout


def http_get(cluster, url: str, timeout: float = 10) -> str:
    """GET ``url`` (a Service or pod address) from where it answers."""
    if IN_CLUSTER:
        return in_cluster(cluster, "get", {"url": url, "timeout": timeout})
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def in_cluster(cluster, mode: str, args: dict) -> str:
    """Run e2e/traffic.py in the client pod (conftest's in_cluster_client); its stdout."""
    return cluster.kubectl("exec", "-n", NAMESPACE, cluster.client_pod, "--", "python3", "-c", TRAFFIC_SOURCE,
                           mode, json.dumps(args)).stdout


class Clients:
    """``threads`` client loops (e2e/traffic.py) POSTing ``body`` to ``url``
    until stopped, counting good answers (``ok``) and failures by reason. They
    run in threads here, or in the cluster's client pod where Service IPs
    answer only inside the cluster (KUBENTO_E2E_IN_CLUSTER)."""

    def __init__(self, cluster, url: str, body: bytes, expected, threads: int, timeout: float, pause: float,
                 fail_pause: float, keep_alive: bool | str = False, headers: dict[str, str] | None = None):
        self.cluster = cluster
        self.keep_alive = keep_alive
        self.args = {"url": url, "body": body.decode(), "expected": expected, "threads": threads,
                     "timeout": timeout, "pause": pause, "fail_pause": fail_pause, "keep_alive": keep_alive,
                     "headers": headers}
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()  # good answers per model version (X-Model-Version)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._proc: subprocess.Popen | None = None
        self._events: set[str] = set()
        self.started_at = time.monotonic()
        self.failed_at: list[float] = []  # seconds after start of each failure, to line up with a log

    def _report(self, failure: str | None, version: str | None = None) -> None:
        with self._lock:
            if failure is None:
                self.ok += 1
                self.versions[version or "?"] += 1
            else:
                self.failures[failure] += 1
                self.failed_at.append(round(time.monotonic() - self.started_at, 2))

    def _answers(self) -> bool:
        a = self.args
        try:
            if IN_CLUSTER:
                in_cluster(self.cluster, "post", {"url": a["url"], "body": a["body"], "timeout": 5})
            else:
                traffic.post_versioned(a["url"], a["body"].encode(), 5, a["headers"])
            return True
        except Exception:  # noqa: BLE001 - refused, reset, 5xx: not answering yet
            return False

    def start(self) -> None:
        # A ModelDeployment is Ready when its pods are; kube-proxy programs a
        # new Service's endpoints a moment later (its minSyncPeriod, longer on
        # a busy node). The loops measure a change to a serving model, so they
        # start once the Service has answered.
        wait_for("the Service to answer", self._answers, timeout=60, interval=0.2)
        self.started_at = time.monotonic()
        a = self.args
        if not IN_CLUSTER:
            self._threads = [threading.Thread(target=traffic.client_loop, daemon=True, args=(
                a["url"], a["body"].encode(), a["expected"], a["timeout"], a["pause"], a["fail_pause"],
                self._stop, self._report, a["keep_alive"], a["headers"])) for _ in range(a["threads"])]
            for t in self._threads:
                t.start()
            return
        c = self.cluster
        self._proc = subprocess.Popen(
            [c.kubectl_bin, "kubectl", "--kubeconfig", c.kubeconfig, "exec", "-i", "-n", NAMESPACE, c.client_pod,
             "--", "python3", "-u", "-c", TRAFFIC_SOURCE, "loop", json.dumps(a)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = threading.Event()

        def read() -> None:
            for line in self._proc.stdout:
                item = json.loads(line)
                if isinstance(item, dict):
                    self._events.add(item["event"])
                    started.set()
                else:
                    self._report(item[0], item[1])
            started.set()

        self._threads = [threading.Thread(target=read, daemon=True)]
        self._threads[0].start()
        if not started.wait(60) or "started" not in self._events:
            raise AssertionError(f"the client pod's loop did not start: {self._proc.stderr.read()[-2000:]}")

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc.wait(self.args["timeout"] + 30)
        for t in self._threads:
            t.join(self.args["timeout"] + 5)
        if self._proc is not None and "stopped" not in self._events:
            # the counts are incomplete: never let that pass for "no failed request"
            raise AssertionError(f"the client pod's loop ended early: {self._proc.stderr.read()[-2000:]}")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def summary(self) -> str:
        kind = {"raw": "keep-alive (http.client)", True: "keep-alive (httpx)"}.get(self.keep_alive, "new connections")
        at = f" at {self.failed_at[0]}..{self.failed_at[-1]}s" if self.failed_at else ""
        return (f"{kind}: {self.ok} correct, {self.failed} failed"
                f"{' ' + str(dict(self.failures)) + at if self.failures else ''}")


class TrafficCounter(Clients):
    """A client sending predictions through the Service without pause,
    counting answers that are not the right predictions, and the answers of
    each model version (the iris example's X-Model-Version header).

    By default every request opens a new connection, so kube-proxy picks a
    pod per request. ``keep_alive=True`` sends every request on one pooled
    httpx connection, as BentoML's own SyncHTTPClient does: the client that
    sees a pod stop under it; ``keep_alive="raw"`` on one plain http.client
    connection (traffic.RawConnection), which does not check for a closed one."""

    def __init__(self, cluster, name: str, rows=None, expected=None, keep_alive: bool | str = False):
        ip = cluster.get("service", name, "-n", NAMESPACE)["spec"]["clusterIP"]
        body = json.dumps({"features": rows or IRIS_ROWS[:1]}).encode()
        super().__init__(cluster, f"http://{ip}/classify", body, expected or IRIS_CLASSES[:1], threads=1,
                         timeout=10, pause=0.02, fail_pause=0, keep_alive=keep_alive)


def shares(cluster, name: str, requests: int) -> Counter[str]:
    """Answers per model version of ``requests`` predictions, each on a new
    connection through the Service (kube-proxy picks a pod for each)."""
    ip = cluster.get("service", name, "-n", NAMESPACE)["spec"]["clusterIP"]
    url, body = f"http://{ip}/classify", json.dumps({"features": IRIS_ROWS[:1]})
    if IN_CLUSTER:
        return Counter(json.loads(in_cluster(cluster, "shares", {"url": url, "body": body, "requests": requests,
                                                                  "timeout": 10})))
    return traffic.shares(url, body.encode(), requests, timeout=10)


def tally(cluster, url: str, requests: int, keep_alive: bool = False, headers: dict[str, str] | None = None,
          rows=None, timeout: float = 10) -> traffic.Tally:
    """Who answered ``requests`` predictions POSTed to ``url`` (a Service, a
    pod or a Gateway: e2e/traffic.py's tally), each on a new connection or all
    on one keep-alive connection, with ``headers``; from where ``url`` answers."""
    body = json.dumps({"features": rows or IRIS_ROWS[:1]})
    if IN_CLUSTER:
        return traffic.Tally.from_json(json.loads(in_cluster(cluster, "tally", {
            "url": url, "body": body, "requests": requests, "timeout": timeout, "keep_alive": keep_alive,
            "headers": headers})))
    return traffic.tally(url, body.encode(), requests, timeout, keep_alive, headers)


def model_deployments(cluster, name: str) -> list[dict]:
    return cluster.get("deployments", "-n", NAMESPACE, "-l", f"serving.kubento.io/model-deployment={name}")["items"]


def settled(cluster, name: str):
    """The ModelDeployment once its spec's revision is stable, Ready and no rollout is under way."""
    obj = md(cluster, name)
    st = obj.get("status", {})
    ok = (st.get("phase") == "Ready" and st.get("stableRevision") == st.get("currentRevision")
          and not st.get("rollout") and st.get("observedGeneration") == obj["metadata"]["generation"])
    return obj if ok else None


class Load(Clients):
    """``threads`` clients POSTing ``body`` to ``path`` through the Service
    without pause, counting answers (the load generator of the autoscaling
    tests; a slow endpoint makes the in-flight count predictable)."""

    def __init__(self, cluster, name: str, path: str, body: dict, threads: int):
        url = f"http://{cluster.get('service', name, '-n', NAMESPACE)['spec']['clusterIP']}{path}"
        super().__init__(cluster, url, json.dumps(body).encode(), None, threads=threads, timeout=30, pause=0,
                         fail_pause=0.1)


@contextlib.contextmanager
def served_archive(project: Path, bento: str, host_ip: str, work: Path) -> Iterator[dict[str, str]]:
    """``project`` as a .bento archive (`bentoml build` and `bentoml export` in
    a BENTOML_HOME of its own), served over HTTP on the node's address: its
    bento.archive (uri and sha256)."""
    home, store = work / "bentoml-home", work / "store"
    home.mkdir(), store.mkdir()
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    run(bentoml, "build", str(project), env=env, timeout=300)
    run(bentoml, "export", f"{bento}:latest", str(store / f"{bento}.bento"), env=env, timeout=120)
    digest = hashlib.sha256((store / f"{bento}.bento").read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(store))
    server = http.server.ThreadingHTTPServer((host_ip, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {"uri": f"http://{host_ip}:{server.server_address[1]}/{bento}.bento", "sha256": digest}
    finally:
        server.shutdown()
