"""Prediction checks on a real node under live traffic: a client sends all
three iris rows through the Service for the whole of each test and counts
every answer that is not exactly ["setosa", "virginica", "versicolor"].
Real BentoML pods, the operator as a pod (installed by Helm), the readiness
gate computed by a real kubelet, endpoints by the real controller.

Wrong answers served per scenario are printed with ``-s``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

from kubernetes import client, config

from e2e.conftest import NAMESPACE, OPERATOR_NAMESPACE, S3_SECRET
from e2e.support import IRIS_CLASSES, IRIS_ROWS, TrafficCounter, apply_md, example_spec, md, settled
from e2e.test_rollout import events, only_connection_closed, serving
from e2e.test_sources import project_files, put_project
from tests.helpers import condition, wait_for

GATE = "serving.kubento.io/prediction-checks"
CHECKS = {"checks": [
    {"name": name, "path": "/classify", "body": {"features": [row]}, "expect": [{"jsonPath": "$[0]", "equals": name}]}
    for name, row in zip(IRIS_CLASSES, IRIS_ROWS)
]}
MORE_SETOSA = [[4.9, 3.0, 1.4, 0.2], [4.7, 3.2, 1.3, 0.2], [5.0, 3.6, 1.4, 0.2], [5.4, 3.9, 1.7, 0.4],
               [4.6, 3.4, 1.4, 0.3]]
NOT_SETOSA = [[6.3, 3.3, 6.0, 2.5], [5.5, 2.3, 4.0, 1.3]]


def swapped_project() -> dict[str, str]:
    """The iris project with versicolor and virginica swapped in its label
    map: HTTP 200, fast, and wrong for two classes in three."""
    files = project_files()
    line = "        self.target_names = [str(n) for n in iris.target_names]\n"
    assert line in files["service.py"]
    files["service.py"] = files["service.py"].replace(line, line + (
        "        self.target_names[1], self.target_names[2] = self.target_names[2], self.target_names[1]\n"))
    return files


def built(images, configmap: str, output: str) -> dict:
    return {"bento": {"build": {"source": {"configMap": {"name": configmap}},
                                "output": {"uri": f"s3://built/{output}", "secretRef": {"name": S3_SECRET}}}},
            "runtimeImage": images["iris"]}


def every_row(cluster, name, keep_alive=False) -> TrafficCounter:
    return TrafficCounter(cluster, name, rows=IRIS_ROWS, expected=IRIS_CLASSES, keep_alive=keep_alive)


def wrong_answers(traffic: TrafficCounter) -> int:
    return sum(n for f, n in traffic.failures.items() if f.startswith("wrong answer"))


def report(what: str, took: float, *counters: TrafficCounter) -> None:
    print(f"\n[checks] {what}: {took:.1f}s; wrong answers served: {sum(wrong_answers(t) for t in counters)}; "
          + "; ".join(t.summary() for t in counters))


def gates(cluster, name: str, revision: str) -> list[dict]:
    pods = cluster.get("pods", "-n", NAMESPACE, "-l", f"serving.kubento.io/revision={revision}")["items"]
    return [next((c for c in p["status"].get("conditions") or [] if c["type"] == GATE), {}) for p in pods]


def operator_metrics(cluster) -> str:
    pod = cluster.get("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=kubento")["items"][0]
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:9090/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_a_v2_answering_wrong_is_held_out_and_rolled_back_with_no_wrong_answer_served(cluster, model, images, s3):
    spec = {**example_spec(images), "replicas": 2, "predictionChecks": CHECKS}
    name = serving(cluster, model, "swap", spec)
    v1 = md(cluster, name)["status"]["stableRevision"]
    assert all(g.get("reason") == "ChecksPassed" for g in gates(cluster, name, v1))
    put_project(cluster, f"{name}-v2", swapped_project())
    with every_row(cluster, name) as traffic, every_row(cluster, name, keep_alive=True) as kept:
        start = time.monotonic()
        apply_md(cluster, name, {**built(images, f"{name}-v2", "swap"), "replicas": 2, "predictionChecks": CHECKS})
        obj = wait_for("the rollback", lambda: (o := md(cluster, name))["status"].get("phase") == "RolledBack" and o,
                       timeout=420, interval=0.5)
        took = time.monotonic() - start
        time.sleep(2)
    report("v2 with a swapped label map (2 replicas)", took, traffic, kept)
    assert wrong_answers(traffic) == 0 and wrong_answers(kept) == 0
    assert traffic.failed == 0, traffic.failures
    assert only_connection_closed(kept), kept.failures
    assert set(traffic.versions) == {"1"}
    rolled = condition(obj, "RolledBack")
    assert rolled["reason"] == "PredictionCheckFailed", rolled
    assert 'expected $[0] = "virginica", got "versicolor"' in rolled["message"] or \
        'expected $[0] = "versicolor", got "virginica"' in rolled["message"], rolled["message"]
    warned = events(cluster, name, "PredictionCheckFailed")
    assert warned and warned[0]["type"] == "Warning"
    assert events(cluster, name, "RolledBack")[0]["type"] == "Warning"
    st = obj["status"]
    assert st["stableRevision"] == v1 and st["history"][-1]["reason"] == "PredictionCheckFailed"


def test_a_good_v2_passes_its_checks_and_is_promoted(cluster, model, images):
    spec = {**example_spec(images), "replicas": 2, "predictionChecks": CHECKS}
    name = serving(cluster, model, "good", spec)
    v1 = md(cluster, name)["status"]["stableRevision"]
    with every_row(cluster, name) as traffic, every_row(cluster, name, keep_alive=True) as kept:
        start = time.monotonic()
        apply_md(cluster, name, {**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]})
        obj = wait_for("v2 to be promoted", lambda: (o := settled(cluster, name)) and o["status"]["stableRevision"] != v1
                       and o, timeout=300, interval=0.5)
        took = time.monotonic() - start
        time.sleep(2)
    report("good v2 checked and promoted (2 replicas)", took, traffic, kept)
    assert traffic.failed == 0, traffic.failures
    assert only_connection_closed(kept), kept.failures
    assert traffic.versions["2"] > 0
    v2 = obj["status"]["stableRevision"]
    passed = gates(cluster, name, v2)
    assert len(passed) == 2 and all(g["status"] == "True" and g["message"].startswith("3 checks passed")
                                    for g in passed), passed


def test_a_canary_agreeing_60_percent_with_stable_is_rolled_back_with_prediction_mismatch(cluster, model, images, s3):
    inputs = [[IRIS_ROWS[0]]] + [[r] for r in MORE_SETOSA] + [[IRIS_ROWS[1]], [IRIS_ROWS[2]]] + [[r] for r in NOT_SETOSA]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "iris-compare", "namespace": NAMESPACE},
        "data": {"rows.jsonl": "".join(json.dumps({"features": rows}) + "\n" for rows in inputs)}}))
    checks = {"checks": CHECKS["checks"][:1],  # setosa only: the swapped model passes it
              "compareWithStable": {"inputs": {"configMapKeyRef": {"name": "iris-compare", "key": "rows.jsonl"}},
                                    "path": "/classify", "jsonPath": "$[0]", "minAgreement": 0.95}}
    rollout = {"strategy": "Canary", "steps": [{"weight": 50}]}
    spec = {**example_spec(images), "replicas": 2, "rollout": rollout, "predictionChecks": checks}
    name = serving(cluster, model, "mismatch", spec)
    v1 = md(cluster, name)["status"]["stableRevision"]
    put_project(cluster, f"{name}-v2", swapped_project())
    with every_row(cluster, name) as traffic, every_row(cluster, name, keep_alive=True) as kept:
        start = time.monotonic()
        apply_md(cluster, name, {**built(images, f"{name}-v2", "mismatch"), "replicas": 2, "rollout": rollout,
                                 "predictionChecks": checks})
        obj = wait_for("the rollback", lambda: (o := md(cluster, name))["status"].get("phase") == "RolledBack" and o,
                       timeout=420, interval=0.5)
        took = time.monotonic() - start
        time.sleep(2)
    report("canary agreeing 60% vs minAgreement 95%", took, traffic, kept)
    rolled = condition(obj, "RolledBack")
    assert rolled["reason"] == "PredictionMismatch", rolled
    assert "agreement 60% (6 of 10 inputs) < minAgreement 95%" in rolled["message"], rolled["message"]
    entry = obj["status"]["history"][-1]
    assert entry["agreement"] == 0.6 and entry["reason"] == "PredictionMismatch"
    assert obj["status"]["stableRevision"] == v1
    # The canary never took traffic: it was compared before its gate opened.
    assert wrong_answers(traffic) == 0 and traffic.failed == 0, traffic.failures
    assert only_connection_closed(kept), kept.failures
    exposition = operator_metrics(cluster)
    assert f'kubento_prediction_agreement_ratio{{model="{name}",namespace="{NAMESPACE}"}} 0.6' in exposition
    assert f'kubento_prediction_check_pods_total{{model="{name}",namespace="{NAMESPACE}",reason="PredictionMismatch"}}' \
        in exposition
    described = cluster.kubectl("describe", "md", name, "-n", NAMESPACE).stdout
    assert re.search(r"Agreement:\s+0\.6\b", described) and "PredictionMismatch" in described, described


def test_a_scale_up_under_load_puts_no_unchecked_pod_into_the_service(cluster, model, images):
    """kubento's rps autoscaler adds pods under load; every pod the Service's
    EndpointSlices ever showed ready had its gate set by kubento first."""
    spec = {**example_spec(images), "predictionChecks": CHECKS,
            "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "metric": "rps", "target": 5, "window": "6s"}}
    name = serving(cluster, model, "scale", spec)
    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    served: set[str] = set()
    unchecked: list[tuple[str, dict]] = []
    with every_row(cluster, name) as traffic, every_row(cluster, name, keep_alive=True) as kept:
        start = time.monotonic()
        while time.monotonic() - start < 180:
            # Slices first, then pods: a pod ready in a slice had its gate True then, and still has.
            slices = discovery.list_namespaced_endpoint_slice(NAMESPACE, label_selector=f"kubernetes.io/service-name={name}")
            ready = {ep.target_ref.name for s in slices.items for ep in s.endpoints or []
                     if ep.conditions and ep.conditions.ready and ep.target_ref}
            pods = {p.metadata.name: p for p in core.list_namespaced_pod(
                NAMESPACE, label_selector=f"serving.kubento.io/model-deployment={name}").items}
            for pod in ready - served:
                g = next((c for c in (pods[pod].status.conditions or []) if c.type == GATE), None) if pod in pods else None
                if g is None or g.status != "True":
                    unchecked.append((pod, g and g.to_dict()))
            served |= ready
            if len(ready) >= 3:
                break
            time.sleep(0.2)
        took = time.monotonic() - start
    report(f"scale-up 1 -> {len(served)} pods under load", took, traffic, kept)
    assert len(served) == 3, f"never reached 3 ready pods: {served}"
    assert unchecked == []
    assert traffic.failed == 0, traffic.failures
    assert only_connection_closed(kept), kept.failures
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector=f"serving.kubento.io/model-deployment={name}").items:
        if pod.metadata.name not in served:
            continue
        conds = {c.type: c for c in pod.status.conditions}
        assert [g.condition_type for g in pod.spec.readiness_gates] == [GATE]
        assert conds[GATE].reason == "ChecksPassed" and conds[GATE].message.startswith("3 checks passed")
        # Ready (the kubelet's) came no earlier than the gate (kubento's).
        assert conds[GATE].last_transition_time <= conds["Ready"].last_transition_time
