"""Autoscaling on a real node under real load: kubento's own autoscaler on
BentoML's in-flight requests (concurrency) scales up under load and back
down after; the HPA scales on cpu with metrics-server. Timelines and
reaction times are printed with ``-s`` (bench/test_autoscaling.py plots them)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from e2e.conftest import NAMESPACE, OPERATOR_NAMESPACE, S3_SECRET
from e2e.support import Load, example_spec, http_get, md, settled
from e2e.test_sources import put_project
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]
FLAKY = ROOT / "tests" / "runtime" / "flaky_project"


def flaky_spec(configmap: str, images, autoscaling: dict) -> dict:
    """tests/runtime/flaky_project built in the cluster: POST /work {"sleep": s}
    answers after s seconds, so N clients keep about N requests in flight."""
    return {
        "bento": {"build": {"source": {"configMap": {"name": configmap}},
                            "output": {"uri": "s3://built/autoscaling", "secretRef": {"name": S3_SECRET}}}},
        "runtimeImage": images["iris"],
        "autoscaling": autoscaling,
    }


class Timeline:
    """status.autoscaling and ready replicas over time, sampled by the test."""

    def __init__(self, cluster, name):
        self.cluster, self.name, self.start, self.rows = cluster, name, time.monotonic(), []

    def sample(self):
        st = md(self.cluster, self.name)["status"]
        auto = st.get("autoscaling") or {}
        row = (time.monotonic() - self.start, auto.get("desiredReplicas"), st.get("readyReplicas", 0),
               auto.get("windowValue"), auto.get("panicValue"), auto.get("reason"))
        self.rows.append(row)
        return row

    def first(self, predicate):
        return next((r[0] for r in self.rows if predicate(r)), None)

    def print(self, title):
        print(f"\n[autoscaling] {title}")
        print(f"  {'t (s)':>6} {'desired':>7} {'ready':>5} {'window':>7} {'panic':>7}  reason")
        last = None
        for t, desired, ready, window, panic, reason in self.rows:
            if (desired, ready, reason) != last:
                print(f"  {t:6.1f} {desired!s:>7} {ready!s:>5} {window!s:>7} {panic!s:>7}  {reason}")
            last = (desired, ready, reason)


def run_concurrency_scenario(cluster, model, images, load_seconds=60.0, idle_seconds=120.0, threads=8):
    """Deploy flaky_project with concurrency autoscaling (target 2 in flight
    per replica, 1..4), load it with ``threads`` clients, then stop. Returns
    (timeline, load start, load stop) in timeline seconds."""
    configmap = f"flaky-src-{uuid.uuid4().hex[:5]}"
    put_project(cluster, configmap, {p.name: p.read_text() for p in FLAKY.iterdir() if p.is_file()})
    name = model("autoscale", flaky_spec(configmap, images, {
        "minReplicas": 1, "maxReplicas": 4, "metric": "concurrency", "target": 2, "window": "20s",
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}}}))
    wait_for("the flaky model to be Ready", lambda: (o := settled(cluster, name)) and "autoscaling" in o["status"] and o,
             timeout=300, interval=1)
    timeline = Timeline(cluster, name)
    for _ in range(5):
        timeline.sample()
        time.sleep(1)
    start = time.monotonic() - timeline.start
    with Load(cluster, name, "/work", {"sleep": 0.5}, threads) as load:
        end = time.monotonic() + load_seconds
        while time.monotonic() < end:
            timeline.sample()
            time.sleep(1)
    stop = time.monotonic() - timeline.start
    end = time.monotonic() + idle_seconds
    while time.monotonic() < end:
        row = timeline.sample()
        if row[1] == 1 and row[2] == 1 and time.monotonic() - timeline.start - stop > 20:
            break
        time.sleep(1)
    return timeline, start, stop, load


def test_concurrency_autoscaling_scales_up_under_load_and_back_down(cluster, model, images, s3):
    timeline, start, stop, load = run_concurrency_scenario(cluster, model, images)
    timeline.print("concurrency target 2 per replica, 8 clients x 0.5 s requests")
    decided = timeline.first(lambda r: r[0] >= start and (r[1] or 0) > 1)
    at_max = timeline.first(lambda r: r[0] >= start and r[2] == 4)
    back = timeline.first(lambda r: r[0] >= stop and r[1] == 1)
    print(f"  load on at {start:.1f}s: scale-up decided +{(decided or 0) - start:.1f}s, 4 pods ready "
          f"+{(at_max or 0) - start:.1f}s; load off at {stop:.1f}s: back to 1 decided +{(back or 0) - stop:.1f}s; "
          f"{load.ok} requests answered, {sum(load.failures.values())} failed {dict(load.failures)}")
    # The same decisions, as the operator's Prometheus metrics.
    pod = cluster.get("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=kubento")["items"][0]
    exposition = http_get(cluster, f"http://{pod['status']['podIP']}:9090/metrics")
    assert f'kubento_autoscaler_desired_replicas{{model="{timeline.name}",namespace="{NAMESPACE}"}}' in exposition
    assert "kubento_reconcile_duration_seconds_count" in exposition
    assert decided is not None, "never scaled up under load"
    assert at_max is not None, "4 replicas never became ready under load"
    assert back is not None, "never scaled back down after the load"
    assert not load.failures, load.failures


def test_hpa_on_cpu_scales_up_under_cpu_load(cluster, model, images):
    """metrics-server (e2e/cluster runs it) feeds the HPA; the HPA resizes the
    ModelDeployment through its scale subresource; kubento splits it."""
    spec = {**example_spec(images), "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "metric": "cpu", "target": 50}}
    name = model("hpa", spec)
    wait_for("Ready", lambda: settled(cluster, name), timeout=300, interval=1)
    rows = [[5.1, 3.5, 1.4, 0.2]] * 1000  # a heavier request: 1000 rows per prediction
    start = time.monotonic()
    with Load(cluster, name, "/classify", {"features": rows}, threads=4) as load:
        obj = wait_for("the HPA to scale the model up", lambda: (o := md(cluster, name))["spec"].get("replicas", 1) > 1 and o,
                       timeout=240, interval=2)
        decided = time.monotonic() - start
        wait_for("the new pods to be ready", lambda: md(cluster, name)["status"].get("readyReplicas", 0) >= obj["spec"]["replicas"],
                 timeout=240, interval=1)
        ready = time.monotonic() - start
    hpa = cluster.get("hpa", name, "-n", NAMESPACE)
    print(f"\n[autoscaling] HPA cpu target 50% of 50m: scaled to {obj['spec']['replicas']} after {decided:.1f}s, "
          f"ready after {ready:.1f}s; HPA saw {hpa['status'].get('currentMetrics')}; {load.ok} requests answered")
    assert not load.failures, load.failures
