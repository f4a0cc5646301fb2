"""The rollout state machine: one step of a rollout as a pure function.

``plan(observed) -> Plan`` looks at the stable revision (the one serving
before the change) and the candidate (the new one), each with its desired
and ready replicas, plus what status remembers (canary step, when it was
reached) and the analysis verdict, and says how many replicas each revision
should have now, what the Service selects, and whether the rollout is done.
The controller applies the plan and calls ``plan`` again on the next event;
no I/O here, so every rule is unit- and property-tested.

Guarantees (see tests/unit/test_strategy.py):
- capacity: while the stable revision is healthy, stable replicas plus the
  candidate's *ready* replicas never drop below the requested count — one
  replica included — so a request always finds a ready pod;
- canary steps only move forward, and the weight is a replica ratio in
  which the stable revision keeps its share: a step of weight w < 100 never
  takes stable below ceil((100 - w) % of replicas) pods (at least one), and
  the candidate gets the most pods that stay within w (at least one), so a
  10 % step with one replica runs one stable and one new pod (50 %), never a
  full cutover; a step runs at most one pod above replicas;
- a failing candidate (crash loop, pull failure, deadline, failed analysis)
  is rolled back: stable capacity is restored first, the candidate removed
  only once stable is ready again;
- BlueGreen keeps the old revision's pods for ``scale_down_delay`` after
  the Service switches, so a node whose kube-proxy has not caught up yet
  still reaches a pod that answers;
- no data is never a pass: an inconclusive analysis holds the step until
  the deadline, then fails it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, Optional

Strategy = Literal["RollingUpdate", "Canary", "BlueGreen"]
Target = Literal["stable", "both", "candidate"]
Outcome = Literal["Progressing", "Paused", "Promoted", "RolledBack", "Aborted", "Failed"]
VerdictResult = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Revision:
    """What one revision's Deployment shows."""

    desired: int
    ready: int
    failure: str = ""  # why its pods cannot serve (crash loop, pull failure, ...), empty if none
    failure_reason: str = "CandidateFailed"  # the rollback's reason when it is the candidate's failure


@dataclass(frozen=True)
class Step:
    weight: int  # percent of replicas on the candidate
    pause: Optional[float] = None  # seconds to hold once reached; None: no hold


@dataclass(frozen=True)
class Observed:
    strategy: Strategy
    replicas: int  # requested total
    stable: Revision
    candidate: Revision
    now: float
    since: float  # when the current wait began: the rollout's start, the last step change or progress,
    #               or (with ``rollback``) the rollback's start
    deadline: float  # progressDeadlineSeconds: the longest wait for pods or for a verdict
    steps: tuple[Step, ...] = ()
    step: int = 0  # canary step index remembered in status
    step_reached: Optional[float] = None  # when the current step's replicas were first ready
    service: Target = "stable"  # what the Service selects now
    analysis: bool = False  # spec.rollout.analysis is set
    verdict: Optional[VerdictResult] = None  # of the current step's window
    verdict_message: str = ""
    auto_rollback: bool = True
    promote: bool = False  # `kubento promote`: skip the remaining steps and analysis
    abort: bool = False  # `kubento abort`: back to stable
    rollback: Optional[str] = None  # a rollback under way (its reason, remembered in status)
    rollback_message: str = ""
    scale_down_delay: float = 0.0  # BlueGreen: seconds the old revision keeps its pods after the switch


@dataclass(frozen=True)
class Plan:
    stable: int  # replicas for the stable revision's Deployment
    candidate: int  # replicas for the candidate's Deployment
    service: Target  # what the Service selects
    outcome: Outcome
    reason: str
    message: str
    step: int = 0
    since: Optional[float] = None  # new value for Observed.since (None: unchanged)
    step_reached: Optional[float] = None
    preview: bool = False  # BlueGreen: a preview Service may select the candidate
    weight: int = 0  # percent of the model's ready replicas on the candidate (the effective weight)
    requested: Optional[int] = None  # the canary step's weight, when a step is under way
    analyze: bool = False  # the controller should collect a verdict for this step
    rollback: Optional[str] = None  # set once a rollback starts: it finishes whatever happens next
    rollback_message: str = ""  # why, to remember with it

    @property
    def done(self) -> bool:
        return self.outcome in ("Promoted", "RolledBack", "Aborted")


# Plans that wait for candidate pods: the deadline applies to them.
WAITING_FOR_PODS = {"RollingOut", "CanaryStep", "PreviewStarting"}


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


def plan(o: Observed) -> Plan:
    """What to do now. Called on every event; applying its result and
    calling again converges on Promoted or RolledBack."""
    if o.rollback:
        outcome: Outcome = "Aborted" if o.rollback == "Aborted" else "RolledBack"
        return _back_to_stable(o, outcome, o.rollback, o.rollback_message)
    if o.abort:
        return _back_to_stable(o, "Aborted", "Aborted", "the rollout was aborted")
    if o.candidate.failure:
        return _fail(o, o.candidate.failure_reason, o.candidate.failure)
    if o.analysis and o.verdict == "fail" and not o.promote:
        return _fail(o, "AnalysisFailed", o.verdict_message or "analysis failed")
    if o.replicas == 0:
        return Plan(0, 0, "candidate", "Promoted", "Promoted", "replicas is 0", step=o.step)
    if o.promote or o.strategy == "RollingUpdate" or (o.strategy == "Canary" and not o.steps):
        p = _shift_all(o)
    elif o.strategy == "BlueGreen":
        p = _blue_green(o)
    else:
        p = _canary(o)
    waited = o.now - (p.since if p.since is not None else o.since)
    if p.reason in WAITING_FOR_PODS and waited > o.deadline:
        return _fail(o, "ProgressDeadlineExceeded",
                     f"the new revision was not ready within {o.deadline:.0f}s ({o.candidate.ready} of {p.candidate} replicas ready)")
    if p.reason == "AnalysisInconclusive" and p.step_reached is not None and o.now - p.step_reached > o.deadline:
        return _fail(o, "AnalysisInconclusive", f"no analysis verdict within {o.deadline:.0f}s: {p.message}")
    return p


def _fail(o: Observed, reason: str, message: str) -> Plan:
    if o.auto_rollback:
        return _back_to_stable(o, "RolledBack", reason, message)
    # Hold where we are: no new capacity for a failing revision, nothing removed.
    return Plan(o.stable.desired, o.candidate.desired, o.service, "Failed", reason,
                message + " (autoRollback is off: holding)", step=o.step)


def _back_to_stable(o: Observed, outcome: Outcome, reason: str, message: str) -> Plan:
    """Restore stable capacity first; remove the candidate once stable is
    ready. Meanwhile the candidate keeps only its ready pods (the others serve
    nothing and may hold the resources stable needs), and a stable revision
    that cannot recover within the deadline does not hold the rollback
    forever (``since`` is when the rollback began)."""
    stuck = o.rollback is not None and o.now - o.since > o.deadline
    if o.stable.ready >= o.replicas or stuck:
        note = f" (the stable revision has {o.stable.ready} of {o.replicas} replicas ready)" if stuck else ""
        return Plan(o.replicas, 0, "stable", outcome, reason, message + note, step=o.step,
                    rollback=reason, rollback_message=message)
    return Plan(o.replicas, min(o.candidate.desired, o.candidate.ready), o.service, "Progressing", reason,
                f"{message}; restoring the stable revision ({o.stable.ready} of {o.replicas} ready)",
                step=o.step, rollback=reason, rollback_message=message)


def _shift_all(o: Observed) -> Plan:
    """Move everything to the candidate: RollingUpdate surges one pod at a
    time; stable shrinks only by candidate pods that are ready."""
    r = o.replicas
    if o.candidate.ready >= r and o.stable.desired == 0:
        return Plan(0, r, "candidate", "Promoted", "Promoted", f"the new revision serves all {r} replicas",
                    step=o.step, weight=100)
    candidate = min(r, o.candidate.ready + 1) if o.strategy == "RollingUpdate" and not o.promote else r
    return Plan(max(0, r - o.candidate.ready), candidate, "both", "Progressing", "RollingOut",
                f"{min(o.candidate.ready, r)} of {r} new replicas ready", step=o.step,
                weight=round(100 * min(o.candidate.ready, r) / r))


def _canary(o: Observed) -> Plan:
    if o.step >= len(o.steps):
        return _shift_all(o)
    step = o.steps[o.step]
    keep, want = canary_split(o.replicas, step.weight)
    planned = effective_weight(keep, want)
    label = f"step {o.step + 1}/{len(o.steps)} ({step.weight}%"
    if planned != step.weight:
        label += (f" requested; {want} new + {keep} stable pod{'s' if keep > 1 else ''} = {planned}% "
                  f"with {o.replicas} replica{'s' if o.replicas > 1 else ''}")
    label += ")"
    ready = min(o.candidate.ready, want)
    base = Plan(max(keep, o.replicas - ready), want, "both", "Progressing", "CanaryStep", "",
                step=o.step, weight=effective_weight(o.stable.ready, ready), requested=step.weight)
    if o.candidate.ready < want or o.stable.desired > keep:
        return replace(base, message=f"{label}: {ready} of {want} canary replicas ready")
    reached = o.step_reached if o.step_reached is not None else o.now
    base = replace(base, step_reached=reached, analyze=o.analysis)
    held = o.now - reached
    if step.pause is not None and held < step.pause:
        return replace(base, outcome="Paused", reason="CanaryPaused", message=f"{label}: holding for {step.pause:.0f}s once ready")
    if o.analysis and o.verdict != "pass":
        return replace(base, outcome="Paused", reason="AnalysisInconclusive",
                       message=f"{label}: {o.verdict_message or 'waiting for enough requests'}")
    following = replace(o, step=o.step + 1, step_reached=None, verdict=None, verdict_message="", since=o.now)
    return replace(_canary(following), since=o.now)


def _blue_green(o: Observed) -> Plan:
    r = o.replicas
    if o.service != "candidate":
        if o.candidate.ready < r:
            return Plan(max(r, o.stable.desired), r, "stable", "Progressing", "PreviewStarting",
                        f"{o.candidate.ready} of {r} new replicas ready (not serving yet)", preview=True)
        reached = o.step_reached if o.step_reached is not None else o.now
        if o.analysis and o.verdict != "pass":
            return Plan(r, r, "stable", "Paused", "AnalysisInconclusive",
                        o.verdict_message or "waiting for an analysis verdict on the preview",
                        preview=True, analyze=True, step_reached=reached)
        return Plan(r, r, "candidate", "Progressing", "Switching", "the Service now selects the new revision",
                    preview=True, weight=100, since=o.now)
    left = o.since + o.scale_down_delay - o.now
    if o.stable.desired > 0 and left > 0:
        # Every node's kube-proxy learns of the switch on its own time; until
        # then some connections still reach old pods, which must answer them.
        return Plan(o.stable.desired, r, "candidate", "Progressing", "ScalingDownOld",
                    f"the Service selects the new revision; the old one keeps its pods {left:.0f}s more "
                    "while every node catches up", weight=100)
    if o.stable.desired > 0:
        return Plan(0, r, "candidate", "Progressing", "ScalingDownOld",
                    "the Service selects the new revision; removing the old one", weight=100)
    return Plan(0, r, "candidate", "Promoted", "Promoted", f"the new revision serves all {r} replicas", weight=100)
