"""``kubento top``'s decisions: rates, error ratio and latency of a model
from two readings of its pods' BentoML /metrics, and the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubento.cli.top import as_json, row, table
from kubento.rollout.analysis import Sample, parse_metrics

CAPTURED = parse_metrics((Path(__file__).parent / "data" / "bentoml-metrics.txt").read_text())


def md(name="iris", replicas=2, status=None, namespace="ml"):
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"bento": {"image": "x"}, "replicas": replicas}, "status": status or {}}


def reading(requests, errors, fast, slow):
    """``fast`` requests within 5ms, ``slow`` within 0.5s (cumulative buckets)."""
    buckets = ((0.005, fast), (0.5, fast + slow), (float("inf"), fast + slow))
    return Sample(requests, errors, buckets, 0.0, fast + slow)


def test_rates_errors_and_latency_over_the_interval_summed_over_pods():
    before = {("ml", "a"): reading(100, 0, 100, 0), ("ml", "b"): reading(50, 5, 50, 0)}
    after = {("ml", "a"): reading(160, 6, 150, 10), ("ml", "b"): reading(90, 15, 80, 10)}
    r = row(md(status={"readyReplicas": 2}), ["a", "b"], before, after, elapsed=2.0)
    assert r.pods == 2
    assert r.requests_per_second == pytest.approx(50.0)  # (60 + 40) / 2s
    assert r.error_ratio == pytest.approx(16 / 100)
    assert r.p50_seconds is not None and r.p50_seconds <= 0.005  # 80 of 100 within 5ms
    assert 0.005 < r.p95_seconds <= 0.5
    assert (r.ready_replicas, r.desired_replicas, r.canary_weight) == (2, 2, None)


def test_a_pod_read_once_does_not_count_and_a_restarted_one_counts_from_zero():
    before = {("ml", "old"): reading(1000, 0, 1000, 0)}
    after = {("ml", "old"): reading(10, 1, 10, 0), ("ml", "new"): reading(500, 0, 500, 0)}
    r = row(md(), ["old", "new"], before, after, elapsed=1.0)
    assert r.pods == 1
    assert r.requests_per_second == 10.0  # the restarted container's own requests
    assert r.error_ratio == pytest.approx(0.1)


def test_no_traffic_and_no_readable_pod_show_dashes():
    quiet = row(md(), ["a"], {("ml", "a"): CAPTURED}, {("ml", "a"): CAPTURED}, elapsed=3.0)
    assert quiet.requests_per_second == 0.0 and quiet.error_ratio is None and quiet.p95_seconds is None
    dark = row(md(status={"readyReplicas": 0}), [], {}, {}, elapsed=3.0)
    assert dark.requests_per_second is None and dark.pods == 0
    text = table([quiet, dark], namespaces=False)
    assert text.splitlines()[1].split() == ["iris", "0.0", "-", "-", "-", "0/2", "-"]
    assert text.splitlines()[2].split() == ["iris", "-", "-", "-", "-", "0/2", "-"]


ROLLOUT = {"revision": "b", "strategy": "Canary", "since": "2025-01-01T00:00:00Z"}  # as status.rollout is stored


def test_canary_weight_shows_during_a_rollout_and_desired_follows_the_autoscaler():
    status = {"readyReplicas": 3, "canaryWeight": 33, "rollout": ROLLOUT,
              "autoscaling": {"metric": "concurrency", "target": 4.0, "desiredReplicas": 3}}
    spec_md = md(status=status)
    spec_md["spec"]["autoscaling"] = {"metric": "concurrency", "minReplicas": 1, "maxReplicas": 5}
    r = row(spec_md, [], {}, {}, elapsed=3.0)
    assert (r.ready_replicas, r.desired_replicas, r.canary_weight) == (3, 3, 33)
    after_rollout = row(md(status={"canaryWeight": 33}), [], {}, {}, elapsed=3.0)
    assert after_rollout.canary_weight is None  # a leftover weight without a rollout is not shown


def test_table_and_json():
    before = {("ml", "a"): reading(0, 0, 0, 0)}
    after = {("ml", "a"): reading(30, 9, 20, 10)}
    r = row(md(status={"readyReplicas": 1, "canaryWeight": 50, "rollout": ROLLOUT}, replicas=1),
            ["a"], before, after, elapsed=3.0)
    lines = table([r], namespaces=True).splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "RPS", "ERRORS", "P50", "P95", "READY", "CANARY"]
    assert lines[1].split()[:4] == ["ml", "iris", "10.0", "30.0%"]
    assert lines[1].split()[-2:] == ["1/1", "50%"]
    doc = as_json([r])[0]
    assert doc["requestsPerSecond"] == 10.0 and doc["errorRatio"] == pytest.approx(0.3)
    assert {"namespace", "name", "pods", "p50Seconds", "p95Seconds", "readyReplicas", "desiredReplicas",
            "canaryWeight"} <= set(doc)
