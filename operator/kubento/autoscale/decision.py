"""kubento's own autoscaler (concurrency, rps) as a pure function.

Like Knative's KPA: the metric, summed over the model's ready pods, is
averaged over ``window`` (60 s by default) and divided by the target per
replica. A tenth of the window is the *panic* window: when load there
reaches ``panic_threshold`` times what the ready replicas are sized for, the
autoscaler scales on it at once and does not scale down until the load has
stayed below that for a whole window. Rate limits and stabilisation windows
work as an HPA's ``behavior`` does. Nothing here does I/O: the controller
samples the pods on an interval and keeps ``Memory`` between calls.

Guarantees (tests/unit/test_autoscale.py): the result is always within
[min, max]; constant load settles and stays; a load step is acted on within
a bounded number of samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional


@dataclass(frozen=True)
class Rules:
    """Limits for one direction: the most conservative recommendation of the
    last ``stabilization`` seconds wins, and per ``period`` seconds replicas
    change by at most max(percent of them, pods)."""

    stabilization: float
    percent: Optional[float]
    pods: Optional[int]
    period: float = 15.0

    def step(self, base: int) -> int:
        allowed = [math.ceil(base * self.percent / 100)] if self.percent is not None else []
        allowed += [self.pods] if self.pods is not None else []
        return max(allowed) if allowed else 10**6


# Kubernetes' HPA defaults, but a 30 s scale-down stabilisation (the metric
# window already smooths; 300 s would keep idle replicas for 5 minutes).
DEFAULT_UP = Rules(stabilization=0.0, percent=100.0, pods=4)
TOLERANCE = 0.1  # scale down only to replicas that would run at most 90 % of their target
DEFAULT_DOWN = Rules(stabilization=30.0, percent=100.0, pods=None)


@dataclass(frozen=True)
class Policy:
    target: float  # per replica: in-flight requests (concurrency) or requests/s (rps)
    min_replicas: int
    max_replicas: int
    window: float = 60.0
    panic_threshold: float = 2.0  # times the ready replicas' capacity
    up: Rules = DEFAULT_UP
    down: Rules = DEFAULT_DOWN

    @property
    def panic_window(self) -> float:
        return max(self.window / 10, 1.0)


@dataclass(frozen=True)
class Memory:
    """What the autoscaler carries from one call to the next."""

    samples: tuple[tuple[float, float], ...] = ()  # (time, metric summed over ready pods)
    recommendations: tuple[tuple[float, int], ...] = ()
    decisions: tuple[tuple[float, int], ...] = ()  # (time, replicas) for the rate limits
    panic_since: Optional[float] = None
    started: Optional[float] = None  # first sample: no scale-down before a whole window of them


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str  # ScaleUp, ScaleDown, Steady, Panic, NoData, RateLimited, Stabilizing
    message: str
    window_value: Optional[float]
    panic_value: Optional[float]
    panic: bool
    memory: Memory


def _mean(samples: tuple[tuple[float, float], ...], since: float) -> Optional[float]:
    values = [v for t, v in samples if t >= since]
    return sum(values) / len(values) if values else None


def decide(policy: Policy, memory: Memory, *, now: float, value: Optional[float], ready: int,
           current: int) -> Decision:
    """Replicas for the model now. ``value`` is the metric summed over the
    ``ready`` pods at ``now`` (None: no pod answered); ``current`` is the
    replica count last decided."""
    lo, hi = policy.min_replicas, policy.max_replicas
    current = min(max(current, lo), hi)
    samples = memory.samples + (((now, value),) if value is not None else ())
    samples = tuple(s for s in samples if s[0] > now - policy.window)
    memory = replace(memory, samples=samples)
    window_value = _mean(samples, now - policy.window)
    if window_value is None:
        return Decision(current, "NoData", "no metrics from ready pods yet: keeping the replica count",
                        None, None, False, memory)
    panic_value = _mean(samples, now - policy.panic_window)
    assert panic_value is not None  # the newest sample is in both windows
    unit = policy.target
    want = math.ceil(window_value / unit - 1e-9)
    want_panic = math.ceil(panic_value / unit - 1e-9)
    started = memory.started if memory.started is not None else now
    if want < current:
        # Scale down only to a count that leaves TOLERANCE headroom (hysteresis:
        # load hovering at a multiple of the target does not flap), and not on a
        # window that is not full yet (a new or restarted operator).
        want = current if now - started < policy.window else min(
            current, math.ceil(window_value / (unit * (1 - TOLERANCE)) - 1e-9))

    capacity = max(ready, 1) * unit
    panic_since = memory.panic_since
    if panic_value >= policy.panic_threshold * capacity:
        panic_since = now  # (re)entering: it lasts a whole window from the last trigger
    elif panic_since is not None and now - panic_since >= policy.window:
        panic_since = None
    panic = panic_since is not None
    recommendation = max(current, want_panic) if panic else want
    recommendation = min(max(recommendation, lo), hi)

    horizon = max(policy.up.stabilization, policy.down.stabilization, policy.up.period, policy.down.period)
    recs = tuple(r for r in memory.recommendations if r[0] > now - horizon) + ((now, recommendation),)
    reason = "Panic" if panic and recommendation > current else None
    replicas = recommendation
    if replicas < current:  # scale down to the highest recommendation of the window
        stable = max(n for t, n in recs if t > now - policy.down.stabilization or t == now)
        if stable > replicas:
            replicas, reason = min(stable, current), "Stabilizing"
    elif replicas > current:  # scale up to the lowest recommendation of the window
        stable = min(n for t, n in recs if t > now - policy.up.stabilization or t == now)
        if stable < replicas:
            replicas, reason = max(stable, current), "Stabilizing"

    decisions = tuple(d for d in memory.decisions if d[0] > now - horizon)
    if replicas > current:
        base = min([n for t, n in decisions if t > now - policy.up.period] + [current])
        limit = base + policy.up.step(base)
        if replicas > limit:
            replicas, reason = max(limit, current), "RateLimited"
    elif replicas < current:
        base = max([n for t, n in decisions if t > now - policy.down.period] + [current])
        limit = base - policy.down.step(base)
        if replicas < limit:
            replicas, reason = min(limit, current), "RateLimited"
    replicas = min(max(replicas, lo), hi)
    if reason is None:
        reason = "ScaleUp" if replicas > current else "ScaleDown" if replicas < current else "Steady"

    message = (f"{window_value:.1f} over {policy.window:.0f}s and {panic_value:.1f} over "
               f"{policy.panic_window:.0f}s across {ready} ready replicas (target {unit:g} each)"
               f"{'; panic mode' if panic else ''}: {current} -> {replicas} replicas")
    memory = Memory(samples, recs, decisions + ((now, replicas),), panic_since, started)
    return Decision(replicas, reason, message, window_value, panic_value, panic, memory)
