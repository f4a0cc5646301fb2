"""Analysis I/O: read the new revision's (and the stable one's) BentoML
``/metrics`` from each ready pod and judge the current step's window.

The window of a step starts at the first pass after its replicas were ready
and is kept in memory: after an operator restart the step's window starts
again (never a pass without data). A pod's requests before a restart of its
container stay counted. Judging is pure (kubento.rollout.analysis).
"""

from __future__ import annotations

import logging
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional

from kubento.api.v1alpha1 import Analysis
from kubento.rollout.analysis import ZERO, Sample, Verdict, evaluate, parse_metrics, seconds, since, total

log = logging.getLogger("kubento.analysis")

FETCH_TIMEOUT = 2.0


@dataclass
class PodCounts:
    """One pod's requests since the window began, across its restarts (a
    restart resets its counters; what came before is carried)."""

    start: Optional[Sample]  # counters when first seen in the window (None: counts from zero)
    last: Optional[Sample] = None
    carried: Sample = ZERO

    def update(self, now: Sample) -> Sample:
        if self.last is not None and since(self.last, now) is now and now != self.last:
            # A counter went down: the pod restarted. Keep what it had counted.
            self.carried = total([self.carried, since(self.start, self.last)])
            self.start = None
        self.last = now
        return total([self.carried, since(self.start, now)])


@dataclass
class Window:
    started: float
    pods: dict[str, PodCounts] = field(default_factory=dict)  # pod uid -> its counts
    last: Optional[Verdict] = None
    judged: float = 0.0  # when ``last`` was computed

    def counts(self, samples: dict[str, Sample]) -> Sample:
        return total(self.pods.setdefault(uid, PodCounts(None)).update(s) for uid, s in samples.items())


_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kubento-metrics")


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _fetch_one(pod: dict[str, Any], port: int) -> Optional[Sample]:
    try:
        url = f"http://{pod['status']['podIP']}:{port}/metrics"
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as resp:
            return parse_metrics(resp.read().decode())
    except Exception as exc:  # noqa: BLE001 - a pod that does not answer adds no data
        log.info("no metrics from pod %s: %s", pod["metadata"].get("name"), exc)
        return None


def fetch(pods: list[dict[str, Any]], port: int) -> dict[str, Sample]:
    """Counters of every ready pod that answered, by pod uid (in parallel:
    one slow pod costs at most FETCH_TIMEOUT)."""
    ready = [p for p in pods if (p.get("status") or {}).get("podIP") and is_ready(p)]
    samples = _pool.map(lambda p: _fetch_one(p, port), ready)
    return {p["metadata"]["uid"]: s for p, s in zip(ready, samples) if s is not None}


def judge(windows: dict[tuple[str, int], tuple[Window, Window]], key: tuple[str, int], analysis: Analysis,
          port: int, candidate_pods: list[dict[str, Any]], stable_pods: list[dict[str, Any]],
          now: Optional[float] = None) -> Verdict:
    """The verdict of the window ``key`` (rollout token, step) so far,
    re-judged every ``interval``. ``windows`` is the model's memory of them."""
    now = time.time() if now is None else now
    interval = seconds(analysis.interval)
    if key not in windows:
        windows.clear()  # an earlier step, or another rollout
        candidate, stable = Window(now), Window(now)
        for window, pods in ((candidate, candidate_pods), (stable, stable_pods)):
            window.pods = {uid: PodCounts(s) for uid, s in fetch(pods, port).items()}
        windows[key] = (candidate, stable)
    candidate, stable = windows[key]
    if candidate.last is not None and now - candidate.judged < interval:
        return candidate.last
    if now - candidate.started < interval:
        return Verdict("inconclusive", "Collecting", f"collecting metrics: the first verdict comes after {analysis.interval}")
    canary = candidate.counts(fetch(candidate_pods, port))
    baseline_now = fetch(stable_pods, port)
    baseline = stable.counts(baseline_now) if baseline_now else None
    candidate.last, candidate.judged = evaluate(canary, analysis, baseline), now
    log.info("analysis %s step %d: %s", key[0], key[1], candidate.last.message)
    return candidate.last


def next_judgement(windows: dict[tuple[str, int], tuple[Window, Window]], key: tuple[str, int],
                   analysis: Analysis, now: float) -> float:
    """Seconds until the window ``key`` is judged again."""
    interval = seconds(analysis.interval)
    if key not in windows:
        return 0.0
    candidate = windows[key][0]
    since = candidate.judged if candidate.last is not None else candidate.started
    return max(0.0, since + interval - now)
