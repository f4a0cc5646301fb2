"""Canary: the new revision takes each step's weight of the replicas (a
replica ratio in which stable keeps its share), holds for the step's pause
and, with analysis, until its own requests pass; then the next step, then
everything.

In gateway mode a step's weight is a share of requests on the model's
HTTPRoute: the new revision runs the pods for that share (pods_for), stable
keeps all its replicas, and the step is reached once the route carries the
weight. A shadow step (weight 0, mirror m) runs the pods for m% of requests
and mirrors m% to them, once a probe found that the Gateways mirror."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Optional

from kubento.rollout.rolling import shift_all
from kubento.rollout.strategy import Observed, Plan, Strategy, fail
from kubento.rollout.traffic import pods_for

if TYPE_CHECKING:
    from kubento.api.v1alpha1 import Rollout, RolloutStatus


def canary_split(replicas: int, weight: int) -> tuple[int, int]:
    """(stable, candidate) pods for a canary step of ``weight`` percent.

    Stable keeps ceil((100 - weight) % of replicas) pods, never fewer than
    one; the candidate gets the most pods whose share of the two stays within
    ``weight`` (at least one), and the two together exceed ``replicas`` by at
    most one pod. With few replicas a step is coarser than asked: one replica
    splits 1 : 1 (50 %) whatever the weight, which status and events say."""
    if replicas <= 0:
        return 0, 0
    if weight >= 100:
        return 0, replicas
    stable = max(1, -(-replicas * (100 - weight) // 100))
    within = stable * weight // (100 - weight)  # largest c with c / (c + stable) <= weight %
    return stable, max(1, min(within, replicas + 1 - stable))


def effective_weight(stable: int, candidate: int) -> int:
    """Percent of the pods on the candidate."""
    return round(100 * candidate / (stable + candidate)) if stable + candidate else 0


def step(o: Observed) -> Plan:
    """The current step: its pods, then its pause and analysis, then the next step."""
    if o.step >= len(o.steps):  # every step done (or none given): everything moves
        return shift_all(o)
    if o.gateway:
        return _routed_step(o)
    current = o.steps[o.step]
    keep, want = canary_split(o.replicas, current.weight)
    planned = effective_weight(keep, want)
    label = f"step {o.step + 1}/{len(o.steps)} ({current.weight}%"
    if planned != current.weight:
        label += (f" requested; {want} new + {keep} stable pod{'s' if keep > 1 else ''} = {planned}% "
                  f"with {o.replicas} replica{'s' if o.replicas > 1 else ''}")
    label += ")"
    ready = min(o.candidate.ready, want)
    base = Plan(max(keep, o.replicas - ready), want, "both", "Progressing", "CanaryStep", "",
                step=o.step, weight=effective_weight(o.stable.ready, ready), requested=current.weight)
    if o.candidate.ready < want or o.stable.desired > keep:
        return replace(base, message=f"{label}: {ready} of {want} canary replicas ready")
    return _hold_or_next(o, base, label)


def _hold_or_next(o: Observed, base: Plan, label: str) -> Plan:
    """A step whose pods (and, in gateway mode, route) are in place: its pause, its analysis, then the next step."""
    current = o.steps[o.step]
    reached = o.step_reached if o.step_reached is not None else o.now
    base = replace(base, step_reached=reached, analyze=o.analysis)
    held = o.now - reached
    if current.pause is not None and held < current.pause:
        return replace(base, outcome="Paused", reason="CanaryPaused", message=f"{label}: holding for {current.pause:.0f}s once ready")
    if o.analysis and o.verdict != "pass":
        return replace(base, outcome="Paused", reason="AnalysisInconclusive",
                       message=f"{label}: {o.verdict_message or 'waiting for enough requests'}")
    following = replace(o, step=o.step + 1, step_reached=None, verdict=None, verdict_message="", since=o.now)
    return replace(step(following), since=o.now)


def _routed_step(o: Observed) -> Plan:
    """Gateway mode: the step's pods, then its weight (or mirror) on the route, then its pause and analysis."""
    r, current = o.replicas, o.steps[o.step]
    share = current.weight or current.mirror
    want = pods_for(r, share)
    before = o.steps[o.step - 1].weight if o.step else 0  # what the route carries until this step's pods are ready
    label = (f"step {o.step + 1}/{len(o.steps)} (" + (f"{current.weight}% of requests" if current.weight
                                                      else f"shadow: {current.mirror}% of requests mirrored") + ")")
    base = Plan(r, want, "both", "Progressing", "CanaryStep", "", step=o.step, weight=before, requested=current.weight,
                route=before)
    if o.candidate.ready < want:
        return replace(base, message=f"{label}: {min(o.candidate.ready, want)} of {want} canary replicas ready")
    if current.mirror:
        if o.mirror_failure:
            return fail(o, "MirrorNotSupported", o.mirror_failure)
        if not o.mirror_probed:
            return replace(base, probe=True, message=f"{label}: checking that the Gateways mirror requests")
    wanted = (current.weight, current.mirror)
    routed = replace(base, weight=current.weight, route=current.weight, mirror=current.mirror)
    if o.carries != wanted:
        return replace(routed, message=f"{label}: the route is taking the step's "
                       + ("weight" if current.weight else "mirror"))
    return _hold_or_next(o, routed, label)


def wake_after(rollout: "Rollout", state: "RolloutStatus", now: float) -> Optional[float]:
    """A step's pause ends."""
    from kubento.rollout.analysis import seconds
    from kubento.rollout.revisions import epoch

    reached = epoch(state.step_reached)
    i = state.step
    if reached is None or i >= len(rollout.steps) or not rollout.steps[i].pause:
        return None
    return reached + seconds(rollout.steps[i].pause) - now + 0.05


def describe(rollout: "Rollout", state: "RolloutStatus") -> list[str]:
    steps = rollout.steps
    if not steps:
        return []
    i = min(state.step, len(steps) - 1)
    if steps[i].mirror:
        return [f"step {i + 1}/{len(steps)} (shadow: {steps[i].mirror}% of requests mirrored)"]
    requested = state.requested_weight if state.requested_weight is not None else steps[i].weight
    return [f"step {i + 1}/{len(steps)} (weight {requested}% requested)"]


def screen(rollout: "Rollout", state: "RolloutStatus", effective: Optional[int]) -> list[str]:
    steps = rollout.steps
    if not steps:
        return []
    i = min(state.step, len(steps) - 1)
    requested = state.requested_weight if state.requested_weight is not None else steps[i].weight
    parts = [f"step {i + 1}/{len(steps)}, " + (f"shadow: {steps[i].mirror}% of requests mirrored" if steps[i].mirror else
             f"weight {requested}% requested / {f'{effective}%' if effective is not None else '-'} effective")]
    if state.promoted:
        parts.append("promoted")
    elif state.step_reached:
        parts.append(f"holding ({steps[i].pause} from {state.step_reached})" if steps[i].pause else "holding")
    else:
        parts.append("waiting for its pods")
    return parts


def held(rollout: "Rollout", state: "RolloutStatus") -> Optional[str]:
    """A step whose pods are ready, held until its pause ends or `kubento promote`."""
    if not state.step_reached or state.rollback or state.promoted:
        return None
    steps = rollout.steps
    current = steps[min(state.step, len(steps) - 1)] if steps else None
    weight = state.requested_weight if state.requested_weight is not None else (current.weight if current else "?")
    what = f"shadow, {current.mirror}% mirrored" if current is not None and current.mirror else f"{weight}%"
    pause = f" for {current.pause}" if current is not None and current.pause else ""
    return f"the canary holds at step {state.step + 1}/{len(steps)} ({what}){pause}"


STRATEGY = Strategy("Canary", step, wake_after=wake_after, describe=describe, screen=screen, held=held)
