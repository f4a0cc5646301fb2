"""What a model pod answers is a tenant's input (issue #23): against a real
API server, with the operator in-process and real HTTP servers on this
machine playing the pods (``FakeNode`` plays the Deployment controller and
the kubelet, as in test_predictions).

- A pod that redirects its check path, its compareWithStable path and its
  ``/metrics`` to another server cannot make the operator (or ``kubento
  check``) fetch it: that server receives nothing, and the string it holds
  appears nowhere a tenant can read.
- A pod whose ``/metrics`` streams without end, and pods that drip a byte
  at a time, cost the operator neither memory nor workers: another model's
  spec change is applied in the usual time, and the slow models get a
  reason that names the cause.
- A worker stuck in one pass fails the liveness probe.
"""

from __future__ import annotations

import http.server
import json
import logging
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager

import pytest
from kubernetes import client

from tests.helpers import condition, wait_for
from tests.integration.conftest import STALL_SECONDS, get_json, model_deployments
from tests.integration.test_predictions import (
    CHECKS,
    ROWS,
    FakeNode,
    gate_of,
    host_ip,
    iris,
    kubento,
    settled,
)
from tests.integration.test_reconcile import md_get

SECRET = f"S3CR3T-{uuid.uuid4().hex}"


@pytest.fixture
def operator_log(operator):
    """What the in-process operator logs during the test (kubento's and kopf's loggers), as text."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(f"{record.name} {record.getMessage()} {record.exc_text or ''}")

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lines
    finally:
        root.removeHandler(handler)


class PodServer:
    """An HTTP server playing a model pod: ``routes`` maps a path to a
    function of the request handler that writes the whole answer."""

    def __init__(self, ip: str, routes: dict, port: int = 0):
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                outer.requests.append((self.command, self.path))
                route = routes.get(self.path.split("?")[0]) or routes.get("*")
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except OSError:
                    pass  # the client hung up: expected of kubento with endless answers
                self.close_connection = True

            do_GET = do_POST = handle_one  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((ip, port), Handler)
        self.server.daemon_threads = True
        self.ip, self.port = ip, self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def body_of(h) -> dict:
    n = int(h.headers.get("content-length") or 0)
    return json.loads(h.rfile.read(n)) if n else {}


def reply(h, status: int, payload: bytes = b"", headers: dict | None = None):
    h.send_response(status)
    for k, v in {"content-type": "application/json", "content-length": str(len(payload)), **(headers or {})}.items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(payload)


def classify(h):
    reply(h, 200, json.dumps([iris(r) for r in body_of(h)["features"]]).encode())


def redirect_to(url: str):
    def route(h):
        body_of(h)
        reply(h, 302, b"", {"Location": url})
    return route


def endless(h):
    """A /metrics that never ends (stops at 1 GiB: what today's main would otherwise read forever)."""
    h.send_response(200)
    h.send_header("content-type", "text/plain; version=0.0.4")
    h.end_headers()
    line = b'bentoml_service_request_total{endpoint="/classify",http_response_code="200"} 1\n' * 1024
    for _ in range((1 << 30) // len(line)):
        h.wfile.write(line)


def drip(h):
    """An answer one byte a second, for five minutes."""
    body_of(h)
    h.send_response(200)
    h.send_header("content-type", "application/json")
    h.send_header("content-length", "300")
    h.end_headers()
    for _ in range(300):
        h.wfile.write(b" ")
        h.wfile.flush()
        time.sleep(1)


def report(line: str) -> None:
    """A figure for the terminal (-s): KopfRunner's click runner holds sys.stdout while the operator runs."""
    print(line, file=sys.__stdout__, flush=True)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


@contextmanager
def servers(*made):
    with ExitStack() as stack:
        for s in made:
            stack.callback(s.close)
        yield made


def everything_a_tenant_reads(cp, namespace: str, names: list[str]) -> str:
    """Status, events and pods of the namespace, as JSON text."""
    parts = [json.dumps(md_get(cp, namespace, n)) for n in names]
    parts.append(json.dumps(get_json(cp, "events", "-n", namespace)))
    parts.append(json.dumps(get_json(cp, "pods", "-n", namespace)))
    return "\n".join(parts)


def test_a_model_cannot_make_the_operator_follow_its_redirects(controlplane, admin, namespace, md, operator_log):
    ip = host_ip()
    secret = PodServer(ip, {"*": lambda h: (body_of(h), reply(h, 200, json.dumps([SECRET]).encode()))})
    steal = f"http://{ip}:{secret.port}/latest/meta-data"
    metrics_text = f'bentoml_service_request_in_progress{{endpoint="{SECRET}"}} 50\n'
    secret_metrics = PodServer(ip, {"*": lambda h: reply(h, 200, metrics_text.encode(), {"content-type": "text/plain"})})
    checks_pod = PodServer(ip, {"/classify": redirect_to(steal)})
    stable_pod = PodServer(ip, {"/classify": classify, "/compare": classify})
    candidate_pod = PodServer("127.0.0.3", {"/classify": classify, "/compare": redirect_to(steal)}, port=stable_pod.port)
    metrics_pod = PodServer(ip, {"/metrics": redirect_to(f"http://{ip}:{secret_metrics.port}/metrics")})
    client.CoreV1Api(admin).create_namespaced_config_map(namespace, {
        "metadata": {"name": "redirect-rows"},
        "data": {"rows.jsonl": "\n".join(json.dumps({"features": [r]}) for r in ROWS.values()) + "\n"}})
    with servers(secret, secret_metrics, checks_pod, stable_pod, candidate_pod, metrics_pod):
        image = {"bento": {"image": "registry.local/iris:1.0"}}
        # 1. The check path redirects.
        checked = md({**image, "port": checks_pod.port, "predictionChecks": CHECKS})
        node = FakeNode(admin, namespace, checked, ip)
        pod = node.until("the check failed", lambda: next(
            (p for p in node.pods(node_rev(controlplane, namespace, checked))
             if gate_of(p).get("reason") == "PredictionCheckFailed"), None))
        assert f"HTTP 302: answered a redirect to {steal}: kubento does not follow redirects" in gate_of(pod)["message"]
        # 2. A new revision's compareWithStable path redirects.
        cmp = {"checks": CHECKS["checks"][:1],
               "compareWithStable": {"inputs": {"configMapKeyRef": {"name": "redirect-rows", "key": "rows.jsonl"}},
                                     "path": "/compare", "minAgreement": 0.9}}
        spec = {**image, "port": stable_pod.port, "predictionChecks": cmp}
        compared = md(spec)
        cnode = FakeNode(admin, namespace, compared, ip)
        cnode.until("v1 Ready", lambda: settled(controlplane, namespace, compared))
        md({**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=compared)
        v2 = wait_for("a rollout", lambda: (md_get(controlplane, namespace, compared)["status"].get("rollout") or {})
                      .get("revision"))
        cnode.ips[v2] = candidate_pod.ip
        obj = cnode.until("the rollback", lambda: (o := md_get(controlplane, namespace, compared))["status"]
                          .get("phase") == "RolledBack" and o)
        rolled = condition(obj, "RolledBack")
        assert rolled["reason"] == "PredictionMismatch"
        assert "new HTTP 302: answered a redirect to" in rolled["message"], rolled["message"]
        # 3. /metrics redirects (kubento's own autoscaler reads it every 2 s).
        scaled = md({**image, "port": metrics_pod.port,
                     "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "metric": "concurrency", "target": 1}})
        mnode = FakeNode(admin, namespace, scaled, ip)
        said = mnode.until("the autoscaler says why it has no metrics", lambda: "redirect" in (
            md_get(controlplane, namespace, scaled)["status"].get("autoscaling") or {}).get("message", ""))
        auto = md_get(controlplane, namespace, scaled)["status"]["autoscaling"]
        assert said and auto["desiredReplicas"] == 1 and "kubento does not follow redirects" in auto["message"]
        # 4. The CLI, through the API server's pod proxy.
        checked_now = kubento(controlplane, "check", checked, "-n", namespace, "--revision",
                              node_rev(controlplane, namespace, checked))
        history = kubento(controlplane, "history", compared, "-n", namespace)
        assert "kubento does not follow redirects" in checked_now.stdout, checked_now.stdout + checked_now.stderr
        time.sleep(3)  # a few more passes and scrapes

        assert secret.requests == [] and secret_metrics.requests == []
        seen = everything_a_tenant_reads(controlplane, namespace, [checked, compared, scaled])
        for where, text in (("status, events or pods", seen), ("the operator's log", "\n".join(operator_log)),
                            ("kubento check", checked_now.stdout + checked_now.stderr),
                            ("kubento history", history.stdout + history.stderr)):
            assert SECRET not in text, f"the secret reached {where}"


def node_rev(cp, namespace, name) -> str:
    return wait_for("a revision", lambda: md_get(cp, namespace, name).get("status", {}).get("currentRevision"))


def test_endless_and_dripping_pods_cost_neither_memory_nor_workers(controlplane, admin, namespace, md, operator):
    """Eight models whose check path drips (as many as the operator has
    workers), one whose /metrics drips, one whose /metrics never ends; a
    bystander model's spec change is applied in the usual time."""
    ip = host_ip()
    dripping = PodServer("127.0.0.5", {"*": drip})
    endless_pod = PodServer("127.0.0.6", {"/metrics": endless})
    drip_metrics = PodServer("127.0.0.7", {"/metrics": drip})
    bystander_pod = PodServer(ip, {"/classify": classify})
    image = {"bento": {"image": "registry.local/iris:1.0"}}
    scaling = {"minReplicas": 1, "maxReplicas": 3, "metric": "concurrency", "target": 1}
    peak, stop = [rss_mb()], threading.Event()
    before = peak[0]

    def sample():
        while not stop.wait(0.2):
            peak.append(rss_mb())

    nodes: list[FakeNode] = []

    def kubelet():
        while not stop.wait(0.5):
            for n in list(nodes):
                try:
                    n.sync()
                except Exception:  # noqa: BLE001 - a conflict; next round
                    pass

    threading.Thread(target=sample, daemon=True).start()
    threading.Thread(target=kubelet, daemon=True).start()
    with servers(dripping, endless_pod, drip_metrics, bystander_pod):
        try:
            slow = [md({**image, "port": dripping.port, "predictionChecks": CHECKS}) for _ in range(8)]
            unending = md({**image, "port": endless_pod.port, "autoscaling": scaling})
            trickle = md({**image, "port": drip_metrics.port, "autoscaling": scaling})
            bystander = md({**image, "port": bystander_pod.port})
            for name, at in [*((n, dripping.ip) for n in slow), (unending, endless_pod.ip),
                             (trickle, drip_metrics.ip), (bystander, ip)]:
                nodes.append(FakeNode(admin, namespace, name, at))
            wait_for("every slow model's pod checked", lambda: len({p for _, p in dripping.requests}) >= 1
                     and len(dripping.requests) >= 8, timeout=60)
            wait_for("the bystander Ready", lambda: settled(controlplane, namespace, bystander), timeout=60)
            time.sleep(4)  # the slow pods are being read now

            changed = time.monotonic()
            md({**image, "port": bystander_pod.port, "env": [{"name": "MODEL_VERSION", "value": "2"}]},
               name=bystander)
            wait_for("the bystander's new revision", lambda: len(model_deployments(controlplane, namespace,
                                                                                   bystander)) == 2, timeout=60)
            took = time.monotonic() - changed
            report(f"bystander's spec change -> its new Deployment: {took:.2f}s")
            assert took < 10, f"another model's change waited {took:.1f}s for the operator"

            unending_status = wait_for("the endless model's reason", lambda: "4 MiB" in (
                md_get(controlplane, namespace, unending)["status"].get("autoscaling") or {}).get("message", "")
                and md_get(controlplane, namespace, unending)["status"]["autoscaling"], timeout=30)
            assert "answered more than 4 MiB: kubento reads at most 4 MiB" in unending_status["message"]
            trickle_status = wait_for("the dripping /metrics model's reason", lambda: "within 2s" in (
                md_get(controlplane, namespace, trickle)["status"].get("autoscaling") or {}).get("message", "")
                and md_get(controlplane, namespace, trickle)["status"]["autoscaling"], timeout=30)
            assert "no complete answer within 2s" in trickle_status["message"]
            gates = wait_for("a dripping check's reason", lambda: [
                g for n in slow for p in FakeNode(admin, namespace, n, dripping.ip).pods(node_rev(
                    controlplane, namespace, n)) if "within 5s" in (g := gate_of(p)).get("message", "")], timeout=40)
            assert "no answer (no complete answer within 5s)" in gates[0]["message"]
            time.sleep(10)  # ~5 more reads of the endless /metrics
        finally:
            stop.set()
    grown = max(peak) - before
    report(f"operator process RSS: {before:.0f} MB before, peak {max(peak):.0f} MB (+{grown:.0f} MB)")
    assert grown < 150, f"RSS grew by {grown:.0f} MB"


def test_liveness_fails_while_a_worker_is_stuck_in_a_pass(controlplane, namespace, md, operator, operator_log,
                                                          monkeypatch):
    """A pass that never ends (here: held by the test) makes /healthz fail
    after KUBENTO_STALL_SECONDS; it answers again once the pass ends."""
    release = threading.Event()
    stuck = f"stuck-{uuid.uuid4().hex[:6]}"
    real = operator.operator.run_pass

    def held(key, *args, **kwargs):
        if key[1] == stuck:
            release.wait(120)
        return real(key, *args, **kwargs)

    monkeypatch.setattr(operator.operator, "run_pass", held)
    url = operator.liveness_url

    def health() -> int:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert health() == 200
    try:
        md({"bento": {"image": "registry.local/iris:1.0"}}, name=stuck)
        wait_for("the liveness probe to fail", lambda: health() == 500, timeout=STALL_SECONDS + 30)
        assert any(f"in one pass over {namespace}/{stuck}" in line for line in operator_log), operator_log[-5:]
    finally:
        release.set()
    wait_for("the liveness probe to pass again", lambda: health() == 200, timeout=30)
