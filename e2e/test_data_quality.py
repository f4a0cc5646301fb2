"""What goes in and what comes out (issue #28), on a real node: the iris
model (bento.archive in the iris image, so kubento's runtime serves it)
with spec.monitoring, a reference profile made by ``kubento profile`` from
reference-like rows, a real Prometheus and Alertmanager (e2e/monitoring.py)
evaluating the chart's rules with short ``for:``, and a CloudEvents receiver
on this machine.

One model, in order (each step needs the one before):
1. 2,000 reference-like requests: payload records arrive at the receiver and
   in the pod's log (stdout) at the sampling rate (0.1, within 3 points),
   without the dropped field, with the hashed one hashed; the drift scores
   are low and no data-quality alert fires;
2. shifted requests (petal length x1.8; sepal width null in every third):
   the scores move, and KubentoModelInputDrift, KubentoModelFeatureMissing
   and KubentoModelOutputShift fire in Alertmanager;
3. a new revision that answers another class mix (tests/runtime/
   iris_rules_project with SKEW=1) as a 50% canary with
   analysis.outputShift: rolled back with reason OutputShift.

Prints the scores before and after the shift, the alert times and the
rollback time (-s).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from e2e import traffic
from e2e.conftest import IN_CLUSTER, NAMESPACE
from e2e.support import apply_md, in_cluster, md, settled
from e2e.test_monitoring import INTERVAL, fired, report, running_stack
from tests.cloudevents import Receiver
from tests.helpers import condition, wait_for
from tests.runtime.conftest import build_archive
from tests.specs import model_deployment

ROOT = Path(__file__).resolve().parents[1]
KUBENTO = ROOT / ".venv" / "bin" / "kubento"
RULES_PROJECT = ROOT / "tests" / "runtime" / "iris_rules_project"
RULE_VALUES = {
    "alerts.inputDrift.for": "5s",
    "alerts.featureMissing.for": "5s",
    "alerts.outputShift.for": "5s",
}
ALERTS = ("KubentoModelInputDrift", "KubentoModelFeatureMissing", "KubentoModelOutputShift")
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
RATE = 0.1
REFERENCE_REQUESTS = 2000


@pytest.fixture(scope="module")
def monitoring(cluster, operator, helm, tmp_path_factory):
    yield from running_stack(cluster, helm, tmp_path_factory.mktemp("quality-monitoring"), RULE_VALUES)


@pytest.fixture(scope="module")
def rules_archive(host_ip, tmp_path_factory):
    """tests/runtime/iris_rules_project's archive, served over HTTP on the node's address."""
    import functools
    import http.server

    root = tmp_path_factory.mktemp("rules-store")
    archive = build_archive(RULES_PROJECT, root, "rules")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer((host_ip, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{host_ip}:{server.server_address[1]}/rules.bento", archive.sha256
    server.shutdown()


def send(cluster, name: str, n: int, seed: int, keep_alive: bool = True, **shift) -> dict:
    """``n`` iris-like requests through the model's Service; answers by status."""
    ip = cluster.get("service", name, "-n", NAMESPACE)["spec"]["clusterIP"]
    args = {"url": f"http://{ip}/classify", "n": n, "seed": seed, "threads": 8, "timeout": 10,
            "keep_alive": keep_alive, **shift}
    if IN_CLUSTER:
        return json.loads(in_cluster(cluster, "iris", args))
    bodies = [b for b, _ in traffic.iris_bodies(n, seed, shift.get("petal_scale", 1.0), shift.get("missing_every", 0))]
    return dict(traffic.send_bodies(args["url"], bodies, 8, 10, keep_alive))


def kubento(cluster, *args: str) -> str:
    proc = subprocess.run([str(KUBENTO), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KUBECONFIG": cluster.kubeconfig})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def scores(stack, name: str) -> dict[str, float]:
    out = {}
    for metric, key in (("kubento_model_input_drift", "feature"), ("kubento_model_feature_missing_ratio", "feature"),
                        ("kubento_model_output_shift", "against")):
        for r in stack.query(f'{metric}{{model="{name}"}}'):
            out[f"{metric.removeprefix('kubento_model_')}[{r['metric'][key]}]"] = round(float(r["value"][1]), 3)
    return out


def pod_log(cluster, name: str) -> str:
    return cluster.kubectl("logs", "-n", NAMESPACE, "-l", f"serving.kubento.io/model-deployment={name}",
                           "-c", "bento", "--tail=-1", "--prefix").stdout


def test_drift_alerts_payload_records_and_the_output_shift_gate(cluster, operator, images, http_store, rules_archive,
                                                                 monitoring, host_ip, tmp_path, request):
    receiver = Receiver(host_ip)
    name = f"quality-{uuid.uuid4().hex[:5]}"
    request.addfinalizer(lambda: [cluster.kubectl("delete", kind, obj, "-n", NAMESPACE, "--ignore-not-found",
                                                  "--wait=false", check=False)
                                  for kind, obj in (("md", name), ("configmap", f"{name}-profile"))])
    spec = {
        "bento": {"archive": {"uri": f"{http_store}/iris.bento"}},
        "runtimeImage": images["iris"],
        "monitoring": {
            "statistics": {
                "endpoint": "/classify", "inputRows": "$.features[*]", "outputRows": "$[*]",
                "inputs": [{"name": f, "path": f"$[{i}]"} for i, f in enumerate(FEATURES)],
                "output": {"path": "$"},
                "reference": {"configMapKeyRef": {"name": f"{name}-profile", "key": "profile.json"}},
                "interval": "3s", "window": "60s", "minRows": 100,
            },
            "payloads": {"sampleRate": RATE, "drop": ["$.customer.email"], "hash": ["$.customer.id"],
                         "stdout": True, "http": {"url": receiver.url}},
        },
        "rollout": {"strategy": "Canary", "steps": [{"weight": 50}],
                    "analysis": {"interval": "10s", "minRequests": 20,
                                 "outputShift": {"maxDistance": 0.2, "minOutputs": 100}}},
    }
    # The reference: iris-like rows with the class each was drawn from (as kubento's payload records).
    reference = tmp_path / "reference.jsonl"
    reference.write_text("".join(
        json.dumps({"kind": "kubento.payload/v1", "status": 200, "input": body, "output": [cls]}) + "\n"
        for body, cls in traffic.iris_bodies(3000, seed=1)))
    manifest = tmp_path / "md.yaml"
    manifest.write_text(yaml.safe_dump(model_deployment(name, NAMESPACE, spec)))
    profiled = kubento(cluster, "profile", name, "-n", NAMESPACE, "-f", str(manifest), "--from", str(reference))
    print(f"\n[quality] kubento profile:\n{profiled}")
    apply_md(cluster, name, spec)
    wait_for(f"{name} to be Ready", lambda: settled(cluster, name), timeout=300, interval=1)
    assert cluster.get("md", name, "-n", NAMESPACE)["status"]["phase"] == "Ready"  # the profile was found

    # 1. Reference-like traffic: records at the sampling rate, low scores, no alert.
    answered = send(cluster, name, REFERENCE_REQUESTS, seed=2)
    assert answered == {"200": REFERENCE_REQUESTS}, answered
    wait_for("every feature's score in Prometheus",
             lambda: len([k for k in scores(monitoring, name) if k.startswith("input_drift")]) == 4,
             timeout=60, interval=1)
    before = scores(monitoring, name)
    drift_before = json.loads(kubento(cluster, "drift", name, "-n", NAMESPACE, "-o", "json"))
    sampled = drift_before["sampling"]["sampled"]
    def logged() -> list[dict]:
        return [json.loads(line.split(" ", 1)[1]) for line in pod_log(cluster, name).splitlines()
                if '{"kind":"kubento.payload/v1"' in line]
    wait_for("every sampled record at the receiver and in the log",
             lambda: len(receiver.requests()) >= sampled and len(logged()) >= sampled, timeout=30)
    records = logged()
    rate = len(records) / REFERENCE_REQUESTS
    print(f"[quality] sampling {RATE}: {len(records)} records of {REFERENCE_REQUESTS} requests on stdout "
          f"({rate:.3f}), {len(receiver.requests())} at the HTTP receiver; scores before the shift: {before}")
    assert abs(rate - RATE) <= 0.03 and len(records) == sampled == len(receiver.requests())
    assert {r["id"] for r in records} == {h["ce-id"] for h in receiver.requests()}
    assert all("email" not in r["input"]["customer"] and r["input"]["customer"]["id"].startswith("sha256:")
               for r in records)
    assert not any(b"@example.com" in body for _, body in receiver.events)
    assert all(r["model"] == name and r["revision"] == md(cluster, name)["status"]["currentRevision"]
               for r in records)
    assert max(v for k, v in before.items() if k.startswith("input_drift")) < 0.2, before
    assert max(v for k, v in before.items() if k.startswith("feature_missing")) == 0, before
    assert before["output_shift[reference]"] < 0.2, before
    assert not any(fired(monitoring, a, model=name) for a in ALERTS)

    # 2. Shifted traffic until the three alerts fire.
    shifted_at = time.monotonic()
    fired_after: dict[str, float] = {}
    seed = 100
    while len(fired_after) < len(ALERTS):
        assert time.monotonic() - shifted_at < 240, f"fired {fired_after} only; scores {scores(monitoring, name)}"
        send(cluster, name, 300, seed=seed, petal_scale=1.8, missing_every=3)
        seed += 1
        for alert in ALERTS:
            if alert not in fired_after and fired(monitoring, alert, model=name):
                fired_after[alert] = time.monotonic() - shifted_at
    after = scores(monitoring, name)
    drift_text = kubento(cluster, "drift", name, "-n", NAMESPACE)
    print(f"[quality] scores after the shift: {after}\n[quality] kubento drift:\n{drift_text}")
    for alert, seconds in fired_after.items():
        report(f"{alert} in Alertmanager after the shift began (for: 5s, window 60s, scrape/eval {INTERVAL})",
               seconds)
    assert after["input_drift[petal_length]"] > 0.2 and after["feature_missing_ratio[sepal_width]"] > 0.1
    assert fired(monitoring, "KubentoModelInputDrift", model=name)["labels"]["feature"] == "petal_length"
    assert "feature petal_length: drift" in drift_text

    # 3. A new revision answering another class mix, as a canary: rolled back with OutputShift.
    uri, sha = rules_archive
    apply_md(cluster, name, {**spec, "bento": {"archive": {"uri": uri, "sha256": sha}},
                             "env": [{"name": "SKEW", "value": "1"}]})
    wait_for("the canary step's pods", lambda: (md(cluster, name)["status"].get("rollout") or {}).get("stepReached"),
             timeout=300, interval=0.5)
    reached = time.monotonic()
    while (obj := md(cluster, name))["status"].get("phase") != "RolledBack":
        assert time.monotonic() - reached < 180, obj["status"]
        send(cluster, name, 200, seed=seed, keep_alive=False)  # a new connection each: both revisions answer
        seed += 1
    report("OutputShift rollback after the canary's pods were ready (analysis interval 10s)",
           time.monotonic() - reached)
    rolled = condition(obj, "RolledBack")
    print(f"[quality] RolledBack: {rolled['reason']}: {rolled['message']}")
    assert rolled["reason"] == "OutputShift" and "maxDistance 0.2" in rolled["message"]
    assert obj["status"]["history"][-1]["reason"] == "OutputShift"
