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

Gateway mode (spec.traffic.gateway, ``Observed.gateway``): each plan also
says what share of requests the model's HTTPRoute sends to the candidate
(``Plan.route``) and mirrors to it (``Plan.mirror``); a step counts as
reached only once the route carries its weight (``Observed.acked``), and a
revision gives up its pods only after the route stopped sending to it
(kubento.rollout.traffic). The pods each strategy runs for a share of
requests are in its module; kubento.rollout.traffic has what they share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

if TYPE_CHECKING:
    from kubento.api.v1alpha1 import ModelDeploymentSpec, Rollout, RolloutStatus
    from kubento.builders.meta import Owner

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
    weight: int  # percent on the candidate: of replicas (replicas mode) or of requests (gateway mode)
    pause: Optional[float] = None  # seconds to hold once reached; None: no hold
    mirror: int = 0  # gateway mode, shadow step (weight 0): percent of requests mirrored to the candidate


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
    verdict_reason: str = "AnalysisFailed"  # the rollback's reason if the verdict fails (OutputShift, or this)
    auto_rollback: bool = True
    promote: bool = False  # `kubento promote`: skip the remaining steps and analysis
    abort: bool = False  # `kubento abort`: back to stable
    rollback: Optional[str] = None  # a rollback under way (its reason, remembered in status)
    rollback_message: str = ""
    scale_down_delay: float = 0.0  # BlueGreen: seconds the old revision keeps its pods after the switch
    # Gateway mode: the model's HTTPRoute as it is now.
    gateway: bool = False
    route: int = 0  # percent of requests its main rule sends to the candidate
    mirror: int = 0  # percent of requests it mirrors to the candidate
    acked: bool = True  # every Gateway of the route has seen it as it is (or none can carry it)
    mirror_probed: bool = False  # a probe found out whether the Gateways mirror (MirrorCheck), for this candidate
    mirror_failure: str = ""  # and found they do not: why

    @property
    def carries(self) -> tuple[int, int]:
        """(weight, mirror) the route carries for the candidate, once acknowledged; (-1, -1) while in flux."""
        return (self.route, self.mirror) if self.acked else (-1, -1)


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
    route: int = 0  # gateway mode: percent of requests the route should send to the candidate now
    mirror: int = 0  # gateway mode: percent of requests the route should mirror to the candidate now
    probe: bool = False  # gateway mode: the route should carry the mirror probe rule (before a shadow step)

    @property
    def done(self) -> bool:
        return self.outcome in ("Promoted", "RolledBack", "Aborted")


# Plans that wait for candidate pods: the deadline applies to them.
WAITING_FOR_PODS = {"RollingOut", "CanaryStep", "PreviewStarting", "Switching"}




@dataclass(frozen=True)
class Strategy:
    """One rollout strategy (one module of kubento.rollout each): its steps,
    the extra children it needs, when it wants another pass and what it
    says about a rollout under way. The controller and the CLI hold no
    strategy-specific branch: they ask the strategy of ``spec.rollout``."""

    name: str
    step: Callable[[Observed], Plan]  # the next step of a healthy rollout (failures, aborts, deadlines: plan())
    # when a rollout under way needs a pass without any event (seconds from now; None: no timer of its own)
    wake_after: Callable[["Rollout", "RolloutStatus", float], Optional[float]] = lambda rollout, state, now: None
    # what to say about a rollout under way beyond the common parts (status, `kubento history`)
    describe: Callable[["Rollout", "RolloutStatus"], list[str]] = lambda rollout, state: []
    # the same for `kubento status`, with the effective weight (status.canaryWeight)
    screen: Callable[["Rollout", "RolloutStatus", Optional[int]], list[str]] = lambda rollout, state, weight: []
    # why a healthy rollout waits for `kubento promote` (a canary step's pause), or None
    held: Callable[["Rollout", "RolloutStatus"], Optional[str]] = lambda rollout, state: None
    # children it needs besides the revisions and the Service: (spec, owner, the revision to show) -> manifests
    children: Callable[["ModelDeploymentSpec", "Owner", Optional[str]], list[dict[str, Any]]] = \
        lambda spec, owner, revision: []
    # every child it may make, as (apiVersion, kind, name): those it does not want now go
    child_names: Callable[["Owner"], list[tuple[str, str, str]]] = lambda owner: []


def gateway_mode(spec: "ModelDeploymentSpec") -> bool:
    """Whether the model's requests are split by its HTTPRoute (spec.traffic.gateway)."""
    return spec.traffic is not None and spec.traffic.gateway is not None


def strategies() -> dict[str, Strategy]:
    """Every strategy, by its name in spec.rollout.strategy."""
    from kubento.rollout import bluegreen, canary, rolling

    return {s.name: s for s in (rolling.STRATEGY, canary.STRATEGY, bluegreen.STRATEGY)}


def of(name: str) -> Strategy:
    return strategies()[name]


def plan(o: Observed) -> Plan:
    """What to do now. Called on every event; applying its result and
    calling again converges on Promoted or RolledBack. Failures, aborts,
    promotion and deadlines are the same for every strategy; the strategy
    of ``o.strategy`` takes the next step."""
    from kubento.rollout import rolling

    if o.rollback:
        outcome: Outcome = "Aborted" if o.rollback == "Aborted" else "RolledBack"
        return back_to_stable(o, outcome, o.rollback, o.rollback_message)
    if o.abort:
        return back_to_stable(o, "Aborted", "Aborted", "the rollout was aborted")
    if o.candidate.failure:
        return fail(o, o.candidate.failure_reason, o.candidate.failure)
    if o.analysis and o.verdict == "fail" and not o.promote:
        return fail(o, o.verdict_reason, o.verdict_message or "analysis failed")
    if o.replicas == 0:
        return Plan(0, 0, "candidate", "Promoted", "Promoted", "replicas is 0", step=o.step, route=100)
    p = rolling.shift_all(o) if o.promote else of(o.strategy).step(o)
    waited = o.now - (p.since if p.since is not None else o.since)
    if p.reason in WAITING_FOR_PODS and waited > o.deadline:
        if o.gateway and o.candidate.ready >= p.candidate:  # its pods are there: the route was not
            return fail(o, "ProgressDeadlineExceeded", f"the step was not in place within {o.deadline:.0f}s: {p.message}")
        return fail(o, "ProgressDeadlineExceeded",
                    f"the new revision was not ready within {o.deadline:.0f}s ({o.candidate.ready} of {p.candidate} replicas ready)")
    if p.reason == "AnalysisInconclusive" and p.step_reached is not None and o.now - p.step_reached > o.deadline:
        return fail(o, "AnalysisInconclusive", f"no analysis verdict within {o.deadline:.0f}s: {p.message}")
    return p


def fail(o: Observed, reason: str, message: str) -> Plan:
    if o.auto_rollback:
        return back_to_stable(o, "RolledBack", reason, message)
    # Hold where we are: no new capacity for a failing revision, nothing removed (and the route as it is).
    return Plan(o.stable.desired, o.candidate.desired, o.service, "Failed", reason,
                message + " (autoRollback is off: holding)", step=o.step, route=o.route, weight=o.route,
                mirror=0 if reason == "MirrorNotSupported" else o.mirror)


def back_to_stable(o: Observed, outcome: Outcome, reason: str, message: str) -> Plan:
    """Restore stable capacity first; remove the candidate once stable is
    ready. Meanwhile the candidate keeps only its ready pods (the others serve
    nothing and may hold the resources stable needs), and a stable revision
    that cannot recover within the deadline does not hold the rollback
    forever (``since`` is when the rollback began). In gateway mode the
    route sends every request back to stable first (once stable has a ready
    pod); kubento.rollout.traffic keeps the candidate's pods until the
    route has stopped sending to it."""
    if o.gateway and o.carries != (0, 0):
        restoring = o.stable.ready == 0 and o.candidate.ready > 0
        return Plan(max(o.replicas, o.stable.desired), o.candidate.desired, o.service, "Progressing", reason,
                    f"{message}; " + ("restoring the stable revision before the route moves back to it" if restoring
                                      else "moving the route's requests back to the stable revision"),
                    step=o.step, route=o.route if restoring else 0, rollback=reason, rollback_message=message)
    stuck = o.rollback is not None and o.now - o.since > o.deadline
    if o.stable.ready >= o.replicas or stuck:
        note = f" (the stable revision has {o.stable.ready} of {o.replicas} replicas ready)" if stuck else ""
        return Plan(o.replicas, 0, "stable", outcome, reason, message + note, step=o.step,
                    rollback=reason, rollback_message=message)
    return Plan(o.replicas, min(o.candidate.desired, o.candidate.ready), o.service, "Progressing", reason,
                f"{message}; restoring the stable revision ({o.stable.ready} of {o.replicas} ready)",
                step=o.step, rollback=reason, rollback_message=message)


