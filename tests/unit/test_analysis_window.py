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


def scrape(at, candidate, key=("rev-1", 0), errors=None):
    return analysis.Scrape(at, {"candidate": candidate, "stable": {}}, errors or {}, tag=key)


class Judge:
    """analysis.judge as a pass calls it: the scrapes it starts are recorded."""

    def __init__(self, rules):
        self.rules, self.windows, self.started = rules, {}, []

    def __call__(self, key, now, scraped=None, scraping=False):
        return analysis.judge(self.windows, key, self.rules, now, scraped, lambda: self.started.append(now), scraping)


def test_no_verdict_before_the_interval_then_one_per_interval():
    judge = Judge(Analysis(maxErrorRate=0.1, minRequests=10, interval="10s"))
    key = ("rev-1", 0)
    first = judge(key, 0.0)
    assert (first.result, first.reason) == ("inconclusive", "Collecting") and judge.started == [0.0]
    assert judge(key, 0.1, scraping=True).reason == "Collecting" and judge.started == [0.0]  # one scrape at a time
    assert judge(key, 0.3, scrape(0.0, {"c1": s(0, 0)})).reason == "Collecting"  # the window begins
    assert judge(key, 5.0).reason == "Collecting" and judge.started == [0.0]  # not due yet: nothing read
    assert judge(key, 10.0).reason == "Collecting" and judge.started == [0.0, 10.0]
    failed = judge(key, 10.4, scrape(10.0, {"c1": s(40, 12)}))
    assert failed.result == "fail" and "12 of 40" in failed.message
    # A scrape begun before the next interval is due judges nothing.
    assert judge(key, 15.0, scrape(15.0, {"c1": s(400, 12)})) is failed
    assert judge(key, 16.0) is failed and judge.started == [0.0, 10.0]
    # A new step (or a retried rollout) starts a new window; a scrape taken for the old one is not used.
    again = judge(("rev-2", 0), 16.0, scrape(16.0, {"c1": s(500, 12)}, key=key))
    assert again.reason == "Collecting" and judge.started[-1] == 16.0
    judge(("rev-2", 0), 16.5, scrape(16.0, {"c1": s(500, 12)}, key=("rev-2", 0)))
    assert list(judge.windows) == [("rev-2", 0)]  # the earlier window is gone


def test_a_pod_that_gives_no_metrics_is_named_in_the_verdict():
    judge = Judge(Analysis(maxErrorRate=0.1, minRequests=10, interval="10s"))
    key = ("rev-1", 0)
    judge(key, 0.0, scrape(0.0, {}))
    why = "answered more than 4 MiB: kubento reads at most 4 MiB"
    verdict = judge(key, 10.0, scrape(10.0, {}, errors={"md-abc-0": why, "md-abc-1": why}))
    assert verdict.result == "inconclusive"
    assert f"no metrics from pod md-abc-0: {why} (and 1 more pods)" in verdict.message
