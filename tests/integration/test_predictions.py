"""Prediction checks against a real API server: the readiness gate on the
pod template, the condition kubento sets on each pod through pods/status
(with the chart's RBAC), a rollback with PredictionCheckFailed, a comparison
with stable ending in PredictionMismatch, and `kubento check` through the API
server's pod proxy.

No kubelet here: ``FakeNode`` plays the Deployment controller and the
kubelet (pods with ready containers at an address of this machine, Ready
computed from the readiness gate as the kubelet does). The model servers are
real HTTP servers on this machine, answering like the iris example.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

from kubernetes import client

from tests.helpers import condition, wait_for
from tests.integration.conftest import get_json, model_deployments
from tests.integration.test_reconcile import md_get

GATE = "serving.kubento.io/prediction-checks"
REVISION = "serving.kubento.io/revision"
ROWS = {"setosa": [5.1, 3.5, 1.4, 0.2], "virginica": [6.7, 3.0, 5.2, 2.3], "versicolor": [5.9, 3.0, 4.2, 1.5]}
CHECKS = {"checks": [
    {"name": "setosa", "path": "/classify", "body": {"features": [ROWS["setosa"]]},
     "expect": [{"jsonPath": "$[0]", "equals": "setosa"}]},
    {"name": "virginica", "path": "/classify", "body": {"features": [ROWS["virginica"]]},
     "expect": [{"jsonPath": "$[0]", "oneOf": ["virginica"]}]},
]}


def iris(row, swapped=False):
    label = "setosa" if row[2] < 2.5 else "versicolor" if row[2] < 4.9 else "virginica"
    if swapped:
        label = {"versicolor": "virginica", "virginica": "versicolor"}.get(label, label)
    return label


class ModelServer:
    """An HTTP server answering POST /classify like the iris example."""

    def __init__(self, ip: str, port: int = 0, swapped: bool = False):
        self.swapped, self.requests = swapped, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.requests.append((self.path, body))
                answer = json.dumps([iris(r, outer.swapped) for r in body["features"]]).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((ip, port), Handler)
        self.ip, self.port = ip, self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def host_ip() -> str:
    """This machine's address on its default route (the API server's pod proxy refuses loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("203.0.113.1", 9))
        return s.getsockname()[0]


@contextmanager
def two_servers(swapped_second: bool):
    """A good server on this machine's address and another (swapped or not) on
    127.0.0.2, on the same port (a model has one port)."""
    good = ModelServer(host_ip())
    other = ModelServer("127.0.0.2", good.port, swapped=swapped_second)
    try:
        yield good, other
    finally:
        good.close()
        other.close()


def stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeNode:
    """The Deployment controller and a kubelet for one model: ``replicas``
    pods per revision Deployment, their containers ready at ``ips[revision]``
    (default: ``default_ip``), Ready only when every readiness gate is True."""

    def __init__(self, admin, namespace: str, name: str, default_ip: str):
        self.core, self.apps = client.CoreV1Api(admin), client.AppsV1Api(admin)
        self.namespace, self.name, self.default_ip = namespace, name, default_ip
        self.ips: dict[str, str] = {}

    def pods(self, rev: str) -> list[dict]:
        sel = f"serving.kubento.io/model-deployment={self.name},{REVISION}={rev}"
        items = self.core.list_namespaced_pod(self.namespace, label_selector=sel, _preload_content=False)
        return sorted(json.loads(items.data)["items"], key=lambda p: p["metadata"]["name"])

    def set_containers_ready(self, pod: str, ready: bool, ip: str) -> None:
        self.core.patch_namespaced_pod_status(pod, self.namespace, {"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "ContainersReady", "status": "True" if ready else "False",
                            "lastTransitionTime": stamp()}]}})

    def sync(self) -> None:
        sel = f"serving.kubento.io/model-deployment={self.name}"
        for dep in self.apps.list_namespaced_deployment(self.namespace, label_selector=sel).items:
            rev = dep.metadata.labels[REVISION]
            want, pods = dep.spec.replicas, self.pods(rev)
            for pod in pods[want:]:
                self.core.delete_namespaced_pod(pod["metadata"]["name"], self.namespace, grace_period_seconds=0)
            for i in range(len(pods), want):
                template = dep.spec.template
                pod = f"{dep.metadata.name}-{i}"
                self.core.create_namespaced_pod(self.namespace, {
                    "metadata": {"name": pod, "labels": template.metadata.labels},
                    "spec": {"containers": [{"name": "bento", "image": template.spec.containers[0].image}],
                             "readinessGates": [{"conditionType": g.condition_type}
                                                for g in template.spec.readiness_gates or []]}})
                self.set_containers_ready(pod, True, self.ips.get(rev, self.default_ip))
            ready = 0
            for pod in self.pods(rev)[:want]:
                conds = {c["type"]: c for c in pod["status"].get("conditions") or []}
                gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
                ok = (conds.get("ContainersReady", {}).get("status") == "True"
                      and all(conds.get(g, {}).get("status") == "True" for g in gates))
                if conds.get("Ready", {}).get("status") != ("True" if ok else "False"):
                    self.core.patch_namespaced_pod_status(pod["metadata"]["name"], self.namespace, {"status": {
                        "conditions": [{"type": "Ready", "status": "True" if ok else "False",
                                        "lastTransitionTime": stamp()}]}})
                ready += ok
            self.apps.patch_namespaced_deployment_status(dep.metadata.name, self.namespace, {"status": {
                "observedGeneration": dep.metadata.generation, "replicas": want, "updatedReplicas": want,
                "readyReplicas": ready, "availableReplicas": ready,
                "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                                "message": "done"}]}})

    def until(self, what, probe, timeout=40):
        def step():
            self.sync()
            return probe()
        return wait_for(what, step, timeout=timeout, interval=0.5)


def gate_of(pod: dict) -> dict:
    return next((c for c in pod["status"].get("conditions") or [] if c["type"] == GATE), {})


def settled(cp, namespace, name):
    obj = md_get(cp, namespace, name)
    st = obj.get("status", {})
    ok = st.get("phase") == "Ready" and st.get("stableRevision") == st.get("currentRevision") and not st.get("rollout")
    return obj if ok else None


def kubento(controlplane, *args):
    env = {**os.environ, "KUBECONFIG": str(controlplane.admin_kubeconfig)}
    return subprocess.run([sys.executable, "-m", "kubento.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def events(cp, namespace, name, reason):
    items = get_json(cp, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    return [e for e in items if e["reason"] == reason]


def test_a_pod_takes_traffic_only_once_kubento_has_checked_its_answers(controlplane, admin, namespace, md):
    with two_servers(swapped_second=False) as (server, _):
        name = md({"bento": {"image": "registry.local/iris:1.0"}, "port": server.port, "predictionChecks": CHECKS})
        dep = wait_for("the Deployment", lambda: model_deployments(controlplane, namespace, name))[0]
        assert dep["spec"]["template"]["spec"]["readinessGates"] == [{"conditionType": GATE}]
        node = FakeNode(admin, namespace, name, server.ip)
        rev = dep["metadata"]["labels"][REVISION]
        obj = node.until("the model Ready", lambda: settled(controlplane, namespace, name))
        [pod] = node.pods(rev)
        g, ready = gate_of(pod), next(c for c in pod["status"]["conditions"] if c["type"] == "ContainersReady")
        assert (g["status"], g["reason"]) == ("True", "ChecksPassed") and g["message"].startswith("2 checks passed")
        assert g["lastProbeTime"] == ready["lastTransitionTime"]
        assert [p for p, _ in server.requests] == ["/classify", "/classify"]
        # (as JSON values: the API server keeps 3.0 as 3)
        assert sorted(b["features"] for _, b in server.requests) == sorted(c["body"]["features"] for c in CHECKS["checks"])
        # kubento set only its own condition: the kubelet's stay as they were.
        assert {c["type"] for c in pod["status"]["conditions"]} == {"ContainersReady", "Ready", GATE}
        assert obj["status"]["readyReplicas"] == 1

        # A container restart: the pass no longer holds until checked again.
        node.set_containers_ready(pod["metadata"]["name"], False, server.ip)
        wait_for("the gate revoked", lambda: gate_of(node.pods(rev)[0]).get("reason") == "ContainersNotReady")
        time.sleep(1.1)  # a later second: another lastTransitionTime
        node.set_containers_ready(pod["metadata"]["name"], True, server.ip)
        again = wait_for("the pod checked again", lambda: gate_of(node.pods(rev)[0]).get("status") == "True"
                         and node.pods(rev)[0])
        assert len(server.requests) == 4 and gate_of(again)["lastProbeTime"] != g["lastProbeTime"]

        # `kubento check` through the API server's pod proxy.
        out = kubento(controlplane, "check", name, "-n", namespace)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == f"revision {rev}: 2 checks on 1 pods"
        assert lines[1].split() == ["CHECK", "POD", "EXPECTED", "GOT", "RESULT", "LATENCY"]
        assert lines[2].split()[:6] == ["setosa", pod["metadata"]["name"], "$[0]", "=", '"setosa"', '["setosa"]']
        assert all(" pass " in line for line in lines[2:4]) and len(server.requests) == 6


def test_a_new_revision_answering_wrong_is_held_out_and_rolled_back(controlplane, admin, namespace, md):
    with two_servers(swapped_second=True) as (good, swapped):
        spec = {"bento": {"image": "registry.local/iris:1.0"}, "port": good.port, "replicas": 1,
                "predictionChecks": CHECKS}
        name = md(spec)
        node = FakeNode(admin, namespace, name, good.ip)
        v1 = node.until("v1 Ready", lambda: settled(controlplane, namespace, name))["status"]["stableRevision"]

        md({**spec, "bento": {"image": "registry.local/iris:2.0"}}, name=name)
        v2 = wait_for("a rollout", lambda: (md_get(controlplane, namespace, name)["status"].get("rollout") or {})
                      .get("revision"))
        node.ips[v2] = swapped.ip
        obj = node.until("the rollback", lambda: (o := md_get(controlplane, namespace, name))["status"].get("phase")
                         == "RolledBack" and o)
        rolled = condition(obj, "RolledBack")
        assert rolled["reason"] == "PredictionCheckFailed"
        assert 'check virginica: expected $[0] in ["virginica"], got "versicolor"' in rolled["message"]
        assert obj["status"]["stableRevision"] == v1 and obj["status"]["failedRevision"] == v2
        warned = wait_for("the events", lambda: events(controlplane, namespace, name, "PredictionCheckFailed"))
        assert warned[0]["type"] == "Warning" and "versicolor" in warned[0]["message"]
        assert events(controlplane, namespace, name, "RolledBack")[0]["type"] == "Warning"
        # The wrong pod never counted as ready; its Deployment goes back to zero.
        node.until("v2 scaled away", lambda: not node.pods(v2))
        assert {d["metadata"]["labels"][REVISION]: d["spec"]["replicas"]
                for d in model_deployments(controlplane, namespace, name)} == {v1: 1, v2: 0}
        assert obj["status"]["history"][-1]["reason"] == "PredictionCheckFailed"


def test_a_canary_disagreeing_with_stable_is_rolled_back_with_its_agreement(controlplane, admin, namespace, md):
    lines = [ROWS["setosa"]] * 3 + [ROWS["virginica"]] * 2  # the swapped model agrees on 3 of 5
    client.CoreV1Api(admin).create_namespaced_config_map(namespace, {
        "metadata": {"name": "iris-rows"},
        "data": {"rows.jsonl": "\n".join(json.dumps({"features": [r]}) for r in lines) + "\n"}})
    with two_servers(swapped_second=True) as (good, swapped):
        checks = {"checks": CHECKS["checks"][:1],  # setosa only: the swapped model passes it
                  "compareWithStable": {"inputs": {"configMapKeyRef": {"name": "iris-rows", "key": "rows.jsonl"}},
                                        "path": "/classify", "minAgreement": 0.95}}
        spec = {"bento": {"image": "registry.local/iris:1.0"}, "port": good.port, "replicas": 2,
                "rollout": {"strategy": "Canary", "steps": [{"weight": 50}]}, "predictionChecks": checks}
        name = md(spec)
        node = FakeNode(admin, namespace, name, good.ip)
        v1 = node.until("v1 Ready", lambda: settled(controlplane, namespace, name))["status"]["stableRevision"]
        served = len(good.requests)

        md({**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=name)
        v2 = wait_for("a rollout", lambda: (md_get(controlplane, namespace, name)["status"].get("rollout") or {})
                      .get("revision"))
        node.ips[v2] = swapped.ip
        obj = node.until("the rollback", lambda: (o := md_get(controlplane, namespace, name))["status"].get("phase")
                         == "RolledBack" and o)
        rolled = condition(obj, "RolledBack")
        assert rolled["reason"] == "PredictionMismatch"
        assert "agreement 60% (3 of 5 inputs) < minAgreement 95%" in rolled["message"]
        assert "first disagreement" in rolled["message"]
        entry = obj["status"]["history"][-1]
        assert (entry["revision"], entry["outcome"], entry["agreement"]) == (v2, "RolledBack", 0.6)
        # The same 5 inputs went to a stable pod and the new one.
        assert len(good.requests) - served == 5
        assert sum(1 for p, b in swapped.requests if b in [{"features": [r]} for r in lines]) >= 5
        table = kubento(controlplane, "history", name, "-n", namespace).stdout
        assert "AGREEMENT" in table.splitlines()[0] and "60%" in table
        assert obj["status"]["stableRevision"] == v1


def test_checks_reading_a_missing_config_map_hold_the_pod_and_say_so(controlplane, admin, namespace, md):
    with two_servers(swapped_second=False) as (server, _):
        checks = {"checks": [{"name": "from-cm", "path": "/classify",
                              "bodyFrom": {"configMapKeyRef": {"name": "golden-late", "key": "setosa.json"}},
                              "expect": [{"equals": ["setosa"]}]}]}
        name = md({"bento": {"image": "registry.local/iris:1.0"}, "port": server.port, "predictionChecks": checks})
        node = FakeNode(admin, namespace, name, server.ip)
        obj = node.until("a condition naming the ConfigMap", lambda: (o := md_get(controlplane, namespace, name))
                         and "golden-late" in condition(o, "Degraded").get("message", "") and o)
        assert condition(obj, "Degraded")["reason"] == "CheckInputsMissing"
        client.CoreV1Api(admin).create_namespaced_config_map(namespace, {
            "metadata": {"name": "golden-late"}, "data": {"setosa.json": json.dumps({"features": [ROWS["setosa"]]})}})
        node.until("the model Ready once it exists", lambda: settled(controlplane, namespace, name))
