"""Analysis I/O: read the new revision's (and the stable one's) BentoML
``/metrics`` from each ready pod and judge the current step's window.

The window of a step starts at the first pass after its replicas were ready
and is kept in memory: after an operator restart the step's window starts
again (never a pass without data). Judging is pure (kubento.rollout.analysis).
"""

from __future__ import annotations

import logging
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Optional

from kubento.api.v1alpha1 import Analysis
from kubento.rollout.analysis import Sample, Verdict, evaluate, parse_metrics, seconds, since, total

log = logging.getLogger("kubento.analysis")

FETCH_TIMEOUT = 2.0


@dataclass
class Window:
    started: float
    start: dict[str, Sample] = field(default_factory=dict)  # pod uid -> counters when the window began
    last: Optional[Verdict] = None
    judged: float = 0.0  # when ``last`` was computed


# (namespace, model, revision, step) -> the step's window
_windows: dict[tuple[str, str, str, int], Window] = {}


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def fetch(pods: list[dict[str, Any]], port: int) -> dict[str, Sample]:
    """Counters of every ready pod that answered, by pod uid."""
    out = {}
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or not _ready(pod):
            continue
        try:
            with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=FETCH_TIMEOUT) as resp:
                out[pod["metadata"]["uid"]] = parse_metrics(resp.read().decode())
        except Exception as exc:  # noqa: BLE001 - a pod that does not answer adds no data
            log.info("no metrics from pod %s: %s", pod["metadata"].get("name"), exc)
    return out


def judge(key: tuple[str, str, str, int], analysis: Analysis, port: int,
          candidate_pods: list[dict[str, Any]], stable_pods: list[dict[str, Any]],
          now: Optional[float] = None) -> Verdict:
    """The verdict of the window ``key`` so far, re-judged every ``interval``."""
    now = time.time() if now is None else now
    interval = seconds(analysis.interval)
    window = _windows.get(key)
    if window is None:
        for old in [k for k in _windows if k[:2] == key[:2] and k != key]:
            _windows.pop(old, None)  # an earlier step, or another revision's rollout
        window = _windows[key] = Window(started=now, start={**fetch(candidate_pods, port), **fetch(stable_pods, port)})
    if window.last is not None and now - window.judged < interval:
        return window.last
    if now - window.started < interval:
        return Verdict("inconclusive", "Collecting",
                       f"collecting metrics for {interval - (now - window.started):.0f}s more")
    current = fetch(candidate_pods, port)
    baseline_now = fetch(stable_pods, port)
    canary = total(since(window.start.get(uid), s) for uid, s in current.items())
    baseline = total(since(window.start.get(uid), s) for uid, s in baseline_now.items()) if baseline_now else None
    window.last, window.judged = evaluate(canary, analysis, baseline), now
    log.info("analysis %s: %s", "/".join(map(str, key)), window.last.message)
    return window.last


def forget(namespace: str, name: str) -> None:
    for key in [k for k in _windows if k[:2] == (namespace, name)]:
        _windows.pop(key, None)
