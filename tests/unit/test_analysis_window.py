"""The analysis window of a canary step (controller/analysis.py) with
samples handed in: restarts, the interval, one window per rollout step."""

from kubento.api.v1alpha1 import Analysis
from kubento.controller import analysis
from kubento.rollout.analysis import Sample


def s(requests, errors):
    return Sample(requests=requests, errors=errors)


def test_requests_before_a_container_restart_stay_counted():
    pod = analysis.PodCounts(start=s(100, 0))
    assert pod.update(s(150, 20)) == s(50, 20)
    # The container restarted: its counters start again from zero.
    total = pod.update(s(10, 5))
    assert (total.requests, total.errors) == (60, 25)
    total = pod.update(s(30, 5))
    assert (total.requests, total.errors) == (80, 25)


def test_no_verdict_before_the_interval_then_one_per_interval(monkeypatch):
    counts = {"c1": s(0, 0)}
    monkeypatch.setattr(analysis, "fetch", lambda pods, port: dict(counts) if pods == ["canary"] else {})
    rules = Analysis(maxErrorRate=0.1, minRequests=10, interval="10s")
    windows: dict = {}
    key = ("rev-1", 0)
    first = analysis.judge(windows, key, rules, 3000, ["canary"], [], now=0.0)
    assert (first.result, first.reason) == ("inconclusive", "Collecting")
    counts["c1"] = s(40, 12)
    assert analysis.judge(windows, key, rules, 3000, ["canary"], [], now=5.0).reason == "Collecting"
    failed = analysis.judge(windows, key, rules, 3000, ["canary"], [], now=10.0)
    assert failed.result == "fail" and "12 of 40" in failed.message
    counts["c1"] = s(400, 12)
    assert analysis.judge(windows, key, rules, 3000, ["canary"], [], now=15.0) is failed  # until the next interval
    # A new step (or a retried rollout) starts a new window.
    again = analysis.judge(windows, ("rev-2", 0), rules, 3000, ["canary"], [], now=16.0)
    assert again.reason == "Collecting"
    assert list(windows) == [("rev-2", 0)]  # the earlier window is gone
