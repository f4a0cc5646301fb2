"""What the e2e tests do as a user would: apply a ModelDeployment, read it,
send predictions through its Service (also from many threads at once)."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import httpx
import yaml

from e2e.conftest import NAMESPACE
from tests.helpers import condition
from tests.specs import model_deployment

ROOT = Path(__file__).resolve().parents[1]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
IRIS_CLASSES = ["setosa", "virginica", "versicolor"]


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
    if os.environ.get("KUBENTO_E2E_IN_CLUSTER"):  # kind: ClusterIPs answer only inside the cluster
        script = (
            "import json,sys,urllib.request as u; r=u.Request(sys.argv[1], data=sys.argv[2].encode(), "
            "headers={'content-type':'application/json'}); print(u.urlopen(r, timeout=10).read().decode())"
        )
        pods = cluster.get("pods", "-n", NAMESPACE, "-l", f"serving.kubento.io/model-deployment={name}",
                           "--field-selector", "status.phase=Running")["items"]
        out = cluster.kubectl("exec", "-n", NAMESPACE, pods[0]["metadata"]["name"], "--", "python3", "-c", script,
                              f"http://{ip}/classify", json.dumps({"features": rows})).stdout
        return json.loads(out)
    req = urllib.request.Request(
        f"http://{ip}/classify", data=json.dumps({"features": rows}).encode(),
        headers={"content-type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


class TrafficCounter:
    """A client sending predictions through the Service without pause, in
    a thread, counting answers that are not the right predictions, and the
    answers of each model version (the iris example's X-Model-Version header).

    By default every request opens a new connection (urllib), so kube-proxy
    picks a pod per request. ``keep_alive=True`` sends every request on one
    pooled httpx connection, as BentoML's own SyncHTTPClient does: the client
    that sees a pod stop under it."""

    def __init__(self, cluster, name: str, rows=None, expected=None, keep_alive: bool = False):
        self.ip = cluster.get("service", name, "-n", NAMESPACE)["spec"]["clusterIP"]
        self.rows = rows or IRIS_ROWS[:1]
        self.expected = expected or IRIS_CLASSES[:1]
        self.keep_alive = keep_alive
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _post_new_connection(self, body: bytes) -> tuple[object, str]:
        req = urllib.request.Request(f"http://{self.ip}/classify", data=body,
                                     headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read()), resp.headers.get("x-model-version", "?")

    def _run(self) -> None:
        body = json.dumps({"features": self.rows}).encode()
        client = httpx.Client(base_url=f"http://{self.ip}", timeout=10) if self.keep_alive else None
        while not self._stop.is_set():
            try:
                if client is not None:
                    resp = client.post("/classify", content=body, headers={"content-type": "application/json"})
                    resp.raise_for_status()
                    answer, version = resp.json(), resp.headers.get("x-model-version", "?")
                else:
                    answer, version = self._post_new_connection(body)
                if answer == self.expected:
                    self.ok += 1
                    self.versions[version] += 1
                else:
                    self.failures[f"wrong answer {answer}"] += 1
            except Exception as exc:  # noqa: BLE001 - every kind of failure counts
                self.failures[type(exc).__name__ + ": " + str(exc)[:80]] += 1
            time.sleep(0.02)
        if client is not None:
            client.close()

    def __enter__(self) -> "TrafficCounter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def summary(self) -> str:
        kind = "keep-alive" if self.keep_alive else "new connections"
        return (f"{kind}: {self.ok} correct, {self.failed} failed"
                f"{' ' + str(dict(self.failures)) if self.failures else ''}")


def shares(cluster, name: str, requests: int) -> Counter[str]:
    """Answers per model version of ``requests`` predictions, each on a new
    connection through the Service (kube-proxy picks a pod for each)."""
    counter = TrafficCounter(cluster, name)
    body = json.dumps({"features": counter.rows}).encode()
    out: Counter[str] = Counter()
    for _ in range(requests):
        out[counter._post_new_connection(body)[1]] += 1
    return out


def model_deployments(cluster, name: str) -> list[dict]:
    return cluster.get("deployments", "-n", NAMESPACE, "-l", f"serving.kubento.io/model-deployment={name}")["items"]


def settled(cluster, name: str):
    """The ModelDeployment once its spec's revision is stable, Ready and no rollout is under way."""
    obj = md(cluster, name)
    st = obj.get("status", {})
    ok = (st.get("phase") == "Ready" and st.get("stableRevision") == st.get("currentRevision")
          and not st.get("rollout") and st.get("observedGeneration") == obj["metadata"]["generation"])
    return obj if ok else None


class Load:
    """``threads`` clients POSTing ``body`` to ``path`` through the Service
    without pause, counting answers (the load generator of the autoscaling
    tests; a slow endpoint makes the in-flight count predictable)."""

    def __init__(self, cluster, name: str, path: str, body: dict, threads: int):
        self.url = f"http://{cluster.get('service', name, '-n', NAMESPACE)['spec']['clusterIP']}{path}"
        self.body = json.dumps(body).encode()
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            req = urllib.request.Request(self.url, data=self.body, headers={"content-type": "application/json"},
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    resp.read()
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - counted, the load goes on
                self.failures[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                time.sleep(0.1)

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(35)
