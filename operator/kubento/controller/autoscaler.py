"""kubento's own autoscaler, the I/O half: every SAMPLE_SECONDS it reads the
model's ready pods' ``/metrics`` (all revisions: it sizes the model as a
whole) and asks :func:`kubento.autoscale.decision.decide` for the replica
count. The rollout then splits that count between revisions.

The metric windows live in memory: after an operator restart they fill
again, and until they do the last decided count (from status) holds.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from kubento.api.v1alpha1 import Autoscaling, ScalingRules
from kubento.autoscale.decision import DEFAULT_DOWN, DEFAULT_UP, Decision, Memory, Policy, Rules, decide
from kubento.controller import analysis, metrics
from kubento.rollout.analysis import Sample, seconds, since
from kubento.rollout.revisions import rfc3339

SAMPLE_SECONDS = 2.0
PUBLISH_SECONDS = 10.0

_guard = threading.Lock()
_memory: dict[tuple[str, str], Memory] = {}
_counts: dict[tuple[str, str], tuple[float, dict[str, Sample]]] = {}  # for rps: the previous sample
_last: dict[tuple[str, str], tuple[float, Decision]] = {}
_published: dict[tuple[str, str], float] = {}


def _rules(rules: Optional[ScalingRules], default: Rules) -> Rules:
    if rules is None:
        return default
    stabilization = rules.stabilization_window_seconds
    return Rules(
        stabilization=float(default.stabilization if stabilization is None else stabilization),
        percent=float(rules.percent) if rules.percent is not None else (None if rules.pods else default.percent),
        pods=rules.pods,
        period=float(rules.period_seconds),
    )


def policy(scaling: Autoscaling) -> Policy:
    behavior = scaling.behavior
    return Policy(
        target=float(scaling.effective_target),
        min_replicas=scaling.min_replicas,
        max_replicas=scaling.max_replicas,
        window=seconds(scaling.window),
        panic_threshold=scaling.panic_threshold / 100,
        up=_rules(behavior.scale_up if behavior else None, DEFAULT_UP),
        down=_rules(behavior.scale_down if behavior else None, DEFAULT_DOWN),
    )


def _value(key: tuple[str, str], metric: str, samples: dict[str, Sample], now: float) -> Optional[float]:
    """The metric summed over the pods that answered: requests in flight, or
    requests per second since the previous sample (pods seen both times)."""
    if not samples:
        return None
    if metric == "concurrency":
        return sum(s.in_progress for s in samples.values())
    before = _counts.get(key)
    _counts[key] = (now, samples)
    if before is None or now <= before[0]:
        return None
    elapsed, previous = now - before[0], before[1]
    common = [uid for uid in samples if uid in previous]
    if not common:
        return None
    return sum(since(previous[uid], samples[uid]).requests for uid in common) / elapsed


def scale(namespace: str, name: str, scaling: Autoscaling, port: int, pods: list[dict[str, Any]],
          previous: Optional[dict[str, Any]], now: float) -> dict[str, Any]:
    """status.autoscaling for now; its desiredReplicas is the model's size."""
    key = (namespace, name)
    current = (previous or {}).get("desiredReplicas", scaling.min_replicas)
    with _guard:
        last = _last.get(key)
        if last is not None and now - last[0] < SAMPLE_SECONDS * 0.9:
            decision = last[1]  # sampled moments ago (a burst of events): same answer
        else:
            samples = analysis.fetch(pods, port)
            value = _value(key, scaling.metric, samples, now)
            decision = decide(policy(scaling), _memory.get(key, Memory()), now=now, value=value,
                              ready=len(samples), current=current)
            _memory[key] = decision.memory
            _last[key] = (now, decision)
            metrics.autoscaler(namespace, name, decision, len(samples))
    changed = decision.replicas != current or not previous
    if previous and not changed and previous.get("reason") == decision.reason \
            and now - _published.get(key, 0.0) < PUBLISH_SECONDS:
        return previous  # the same decision: fresh inputs at most every PUBLISH_SECONDS (fewer status writes)
    _published[key] = now
    status = {
        "metric": scaling.metric,
        "target": float(scaling.effective_target),
        "panic": decision.panic,
        "readyReplicas": sum(1 for p in pods if analysis.is_ready(p)),
        "desiredReplicas": decision.replicas,
        "reason": decision.reason,
        "message": decision.message,
        "lastScaleTime": rfc3339(now) if changed else (previous or {}).get("lastScaleTime"),
    }
    if decision.window_value is not None:
        status["windowValue"] = round(decision.window_value, 3)
        status["panicValue"] = round(decision.panic_value or 0.0, 3)
    return {k: v for k, v in status.items() if v is not None}


def forget(namespace: str, name: str) -> None:
    with _guard:
        for store in (_memory, _counts, _last, _published):
            store.pop((namespace, name), None)
