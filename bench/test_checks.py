"""The extra time prediction checks add to a rollout: per pod, from its
containers becoming ready (its own probes pass) to the pod being Ready (in
the Service), and for the whole RollingUpdate v1 -> v2, with the iris
example's 3 golden checks beside the same rollout without checks.

    .venv/bin/pytest bench/test_checks.py -s -p no:logging

Pods are watched (each status change, to the millisecond on this machine's
clock). Asserts nothing about speed; prints a table (median of RUNS).
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid

from kubernetes import client, config, watch

from e2e.conftest import NAMESPACE
from e2e.support import TrafficCounter, apply_md, example_spec, settled
from e2e.test_predictions import CHECKS
from tests.helpers import wait_for

RUNS = 3
REPLICAS = 3


class PodTimes:
    """When each pod of a model first showed ContainersReady and Ready (monotonic seconds)."""

    def __init__(self, api, name: str):
        self.core, self.name = client.CoreV1Api(api), name
        self.containers: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.revision: dict[str, str] = {}
        self._watch = watch.Watch()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self._stream()
        except Exception:  # noqa: BLE001 - the stream ends when the watch is stopped
            if not self._stopped:
                raise

    def _stream(self):
        for event in self._watch.stream(self.core.list_namespaced_pod, NAMESPACE,
                                        label_selector=f"serving.kubento.io/model-deployment={self.name}"):
            pod, now = event["object"], time.monotonic()
            self.revision[pod.metadata.name] = pod.metadata.labels.get("serving.kubento.io/revision", "")
            for c in pod.status.conditions or []:
                if c.status != "True":
                    continue
                if c.type == "ContainersReady":
                    self.containers.setdefault(pod.metadata.name, now)
                elif c.type == "Ready":
                    self.ready.setdefault(pod.metadata.name, now)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stopped = True
        self._watch.stop()

    def gaps(self, revision: str) -> list[float]:
        return [self.ready[p] - self.containers[p] for p, r in self.revision.items()
                if r == revision and p in self.ready and p in self.containers]


def rollout_once(cluster, api, checks: bool) -> tuple[float, list[float], int]:
    """(seconds from apply to v2 promoted, per-pod containers-ready -> Ready gaps, failed requests)."""
    name = f"bench-ck-{uuid.uuid4().hex[:5]}"
    base = {**example_spec(cluster.images), "replicas": REPLICAS}
    if checks:
        base["predictionChecks"] = CHECKS
    apply_md(cluster, name, base)
    try:
        v1 = wait_for(f"{name} Ready", lambda: settled(cluster, name), timeout=300, interval=0.25)["status"]["stableRevision"]
        with PodTimes(api, name) as times, TrafficCounter(cluster, name) as traffic:
            start = time.monotonic()
            apply_md(cluster, name, {**base, "env": [{"name": "MODEL_VERSION", "value": "2"}]})
            obj = wait_for("v2 promoted", lambda: (o := settled(cluster, name)) and o["status"]["stableRevision"] != v1
                           and o, timeout=600, interval=0.1)
            took = time.monotonic() - start
        return took, times.gaps(obj["status"]["stableRevision"]), traffic.failed
    finally:
        cluster.kubectl("delete", "md", name, "-n", NAMESPACE, "--wait=false", check=False)


def test_extra_rollout_time_with_prediction_checks(cluster, operator, images):
    cluster.images = images
    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    rows = {}
    for checks in (False, True):
        runs = [rollout_once(cluster, api, checks) for _ in range(RUNS)]
        gaps = [g for _, gs, _ in runs for g in gs]
        rows[checks] = (statistics.median(t for t, _, _ in runs), statistics.median(gaps), max(gaps),
                        sum(f for _, _, f in runs))
    print(f"\n[bench] RollingUpdate v1 -> v2 of the iris example, {REPLICAS} replicas, median of {RUNS} runs "
          f"(containers ready -> pod Ready, per pod):")
    print(f"  {'':<26} {'rollout':>9} {'per pod median':>15} {'per pod max':>12} {'failed requests':>16}")
    for checks, (took, median, worst, failed) in rows.items():
        label = "with 3 prediction checks" if checks else "without checks"
        print(f"  {label:<26} {took:8.1f}s {median * 1000:13.0f}ms {worst * 1000:10.0f}ms {failed:>16}")
    extra = rows[True][0] - rows[False][0]
    print(f"  extra: {extra:+.1f}s per rollout, {(rows[True][1] - rows[False][1]) * 1000:+.0f}ms per pod (median)")
    assert rows[True][3] == 0 and rows[False][3] == 0
