"""kubento's own autoscaler, the I/O half: every SAMPLE_SECONDS it starts a
read of the model's ready pods' ``/metrics`` (all revisions: it sizes the
model as a whole; off the workers, see kubento.controller.podio) and, when
that ends, asks :func:`kubento.autoscale.decision.decide` for the replica
count. The rollout then splits that count between revisions.

The metric windows live in memory: after an operator restart they fill
again, and until a whole window has been sampled the last decided count
(from status) does not go down.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

from kubento.api.status import BentoServices
from kubento.api.v1alpha1 import Autoscaling, AutoscalingStatus, ScalingRules
from kubento.autoscale.decision import DEFAULT_DOWN, DEFAULT_UP, Policy, Rules, decide
from kubento.controller import analysis, metrics
from kubento.controller.analysis import Scrape
from kubento.controller.memory import AutoscalerMemory
from kubento.rollout.analysis import Sample, seconds
from kubento.rollout.revisions import rfc3339

SAMPLE_SECONDS = 2.0
PUBLISH_SECONDS = 30.0


def _rules(rules: Optional[ScalingRules], default: Rules) -> Rules:
    if rules is None:
        return default
    stabilization = rules.stabilization_window_seconds
    limited = rules.percent is not None or rules.pods is not None
    return Rules(
        stabilization=float(default.stabilization if stabilization is None else stabilization),
        # No limit given: the defaults' (as an HPA keeps its default policies).
        percent=float(rules.percent) if rules.percent is not None else (None if limited else default.percent),
        pods=rules.pods if limited else default.pods,
        period=float(rules.period_seconds),
    )


def with_bento_target(scaling: Autoscaling, services: Optional[BentoServices]) -> Autoscaling:
    """``scaling`` whose concurrency target, when the spec gives none, is the one the bento's entry
    service is sized for (its traffic.concurrency, as BentoCloud scales on it)."""
    if scaling.metric != "concurrency" or scaling.target is not None or services is None:
        return scaling
    entry = next((s for s in services.services if s.name == services.entry), None)
    if entry is None or not entry.concurrency:
        return scaling
    return scaling.model_copy(update={"target": entry.concurrency})


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


def _value(memory: AutoscalerMemory, metric: str, samples: dict[str, Sample], ready: int, now: float) -> Optional[float]:
    """The metric for the model: per answering pod on average, times the
    ready pods (a pod too busy to answer /metrics in time still carries
    load, as in Knative's KPA). Requests in flight, or requests per second
    since the previous sample."""
    if not samples:
        return None
    if metric == "concurrency":
        per_pod = [s.in_progress for s in samples.values()]
    else:
        before = memory.counts
        memory.counts = (now, samples)
        if before is None or now <= before[0]:
            return None
        elapsed, previous = now - before[0], before[1]
        # Pods seen both times whose counter did not go down (a restart is no burst).
        per_pod = [(samples[uid].requests - previous[uid].requests) / elapsed
                   for uid in samples if uid in previous and samples[uid].requests >= previous[uid].requests]
        if not per_pod:
            return None
    return sum(per_pod) / len(per_pod) * max(ready, len(samples))


def scale(namespace: str, name: str, memory: AutoscalerMemory, scaling: Autoscaling, replicas: int,
          pods: list[dict[str, Any]], previous: Optional[AutoscalingStatus], now: float,
          scraped: Optional[Scrape], scrape: Callable[[], None], scraping: bool) -> AutoscalingStatus:
    """status.autoscaling for now; its desiredReplicas is the model's size.
    ``replicas`` is the spec's count, where a newly autoscaled model starts.
    ``scraped``: the pods' counters, when a scrape just ended; ``scrape()``
    starts the next one (at most every SAMPLE_SECONDS; ``scraping``: one is
    under way, and its end brings a pass)."""
    if previous is not None and previous.metric == scaling.metric:
        current = previous.desired_replicas
    else:  # just turned on (or another metric): start from the size the model has
        current = min(max(replicas, scaling.min_replicas), scaling.max_replicas)
    ready = sum(1 for p in pods if analysis.is_ready(p))
    if memory.metric != scaling.metric:
        memory.__init__()  # a window of another metric means nothing for this one
        memory.metric = scaling.metric
        scraped = None  # begun for another metric
    if scraped is not None:
        value = _value(memory, scaling.metric, scraped.samples["pods"], ready, scraped.at)
        decision = decide(policy(scaling), memory.decision_memory, now=scraped.at, value=value, ready=ready,
                          current=current)
        if value is None and scraped.problem():
            decision = replace(decision, message=f"{decision.message}; {scraped.problem()}")
        memory.decision_memory = decision.memory
        memory.last = (scraped.at, decision)
        metrics.autoscaler(namespace, name, decision, ready)
    elif memory.last is not None:
        decision = memory.last[1]  # until the next scrape ends: the same answer
    else:  # nothing read yet
        decision = decide(policy(scaling), memory.decision_memory, now=now, value=None, ready=ready, current=current)
    if not scraping and now - memory.scrape_started >= SAMPLE_SECONDS * 0.9:
        memory.scrape_started = now
        scrape()
    changed = decision.replicas != current or previous is None
    if previous is not None and not changed and previous.reason == decision.reason \
            and now - memory.published < PUBLISH_SECONDS:
        return previous  # the same decision: fresh inputs at most every PUBLISH_SECONDS (fewer status writes)
    memory.published = now
    windowed = decision.window_value is not None
    return AutoscalingStatus(
        metric=scaling.metric,
        target=float(scaling.effective_target),
        panic=decision.panic,
        ready_replicas=ready,
        desired_replicas=decision.replicas,
        reason=decision.reason,
        message=decision.message,
        last_scale_time=rfc3339(now) if changed else previous.last_scale_time if previous is not None else None,
        window_value=round(decision.window_value, 3) if windowed else None,
        panic_value=round(decision.panic_value or 0.0, 3) if windowed else None,
    )
