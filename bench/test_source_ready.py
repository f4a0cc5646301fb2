"""Time from `kubectl apply` to Ready for each bento source (median of 5).

    make bench            # or: .venv/bin/pytest bench -s -p no:logging

Prints a table; asserts nothing about speed (only that each model ends up
predicting correctly). Every run is a new ModelDeployment, and every build
run has new source content, so each one really builds: a Job runs `bentoml
build` + `bentoml export` and uploads to S3, then a pod fetches and imports.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
import uuid

from e2e.conftest import NAMESPACE, S3_SECRET
from e2e.support import IRIS_CLASSES, IRIS_ROWS, ROOT, apply_md, predict, ready
from tests.helpers import wait_for

RUNS = 5
PROJECT = {n: (ROOT / "examples" / "iris-source" / n).read_text() for n in ("service.py", "bentofile.yaml")}


def put_project(cluster, name: str) -> None:
    """A ConfigMap with the iris-source project, its content unique to this run."""
    files = {**PROJECT, "service.py": PROJECT["service.py"] + f"\n# {name}\n"}
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE}, "data": files}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def apply_to_ready(cluster, name: str, spec: dict) -> float:
    start = time.monotonic()
    apply_md(cluster, name, spec)
    wait_for(f"{name} Ready", lambda: ready(cluster, name), timeout=600, interval=0.25)
    took = time.monotonic() - start
    assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES
    cluster.kubectl("delete", "md", name, "-n", NAMESPACE, "--wait=true", "--timeout=120s", check=False)
    return took


def test_apply_to_ready_by_source(cluster, images, s3, iris_bento):
    digest = hashlib.sha256(iris_bento.read_bytes()).hexdigest()
    runtime = {"runtimeImage": images["iris"]}
    cases = {
        "image": lambda name: {"bento": {"image": images["iris"]}},
        "archive (s3)": lambda name: {"bento": {"archive": {"uri": "s3://models/iris/v1.bento", "sha256": digest,
                                                            "secretRef": {"name": S3_SECRET}}}, **runtime},
        "build (configMap)": lambda name: {"bento": {"build": {
            "source": {"configMap": {"name": name}},
            "output": {"uri": "s3://built/bench", "secretRef": {"name": S3_SECRET}}}}, **runtime},
    }
    results: dict[str, list[float]] = {}
    for label, spec_for in cases.items():
        results[label] = []
        for i in range(RUNS):
            name = f"bench-{label.split()[0]}-{uuid.uuid4().hex[:5]}"
            if label.startswith("build"):
                put_project(cluster, name)
            took = apply_to_ready(cluster, name, spec_for(name))
            results[label].append(took)
            print(f"  {label:18} run {i + 1}: {took:6.1f} s", flush=True)
            cluster.kubectl("delete", "configmap", name, "-n", NAMESPACE, "--ignore-not-found", check=False)

    print("\napply -> Ready (s) on the local single-node cluster (images already on the node):")
    print(f"  {'source':18} {'median':>7} {'min':>7} {'max':>7}   runs")
    for label, times in results.items():
        print(f"  {label:18} {statistics.median(times):7.1f} {min(times):7.1f} {max(times):7.1f}   "
              + " ".join(f"{t:.1f}" for t in times))
