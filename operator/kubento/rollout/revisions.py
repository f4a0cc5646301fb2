"""Which revision runs how many pods, what the Service selects, and what
status remembers: a pure function of the revisions the operator observed.

``decide`` wraps :func:`kubento.rollout.strategy.plan` with the bookkeeping
around it: the stable revision, the candidate (the spec's revision when it
differs), revisions left from an abandoned rollout, the remembered failed
revision (not retried until the spec changes) and the history. Status keeps
all of it, so an operator restart resumes where the last one stopped.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Optional

from kubento.api.traffic import MirrorCheck
from kubento.api.v1alpha1 import Agreement, HistoryEntry, ModelDeploymentStatus, Rollout, RolloutStatus
from kubento.rollout import strategy, traffic
from kubento.rollout.analysis import Verdict, seconds


@dataclass(frozen=True)
class Seen:
    """One revision's Deployment as observed."""

    desired: int  # its spec.replicas
    ready: int
    pods: int = 0  # pods that exist (any state): a revision is drained when 0
    failure: str = ""  # why its pods cannot serve (crash loop, pull failure), empty if none
    failure_reason: str = "CandidateFailed"  # e.g. PredictionCheckFailed: the rollback's reason


@dataclass(frozen=True)
class Decision:
    replicas: dict[str, int]  # revision -> replicas its Deployment should have
    delete: tuple[str, ...]  # revisions whose Deployments go (drained, out of history)
    selects: Optional[str]  # the revision the Service selects; None: every pod of the model
    stable: Optional[str]
    rollout: Optional[RolloutStatus]  # status.rollout
    failed: Optional[str]  # status.failedRevision
    history: list[HistoryEntry]
    plan: Optional[strategy.Plan] = None  # None: no rollout under way
    weight: Optional[int] = None  # status.canaryWeight
    analyze: Optional[str] = None  # the revision whose metrics should be judged now
    notes: list[str] = field(default_factory=list)  # what changed, for the log
    route: Optional[traffic.Route] = None  # gateway mode: what the model's HTTPRoute should carry


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def _record(history: list[HistoryEntry], revision: str, now: float, outcome: str, *,
            bento: Optional[str] = None, reason: str = "", message: str = "",
            agreement: Optional[float] = None) -> list[HistoryEntry]:
    """Set ``revision``'s outcome. A revision starting again (a rollback to
    it) moves to the end with a new number, as `kubectl rollout undo` does."""
    out = list(history)
    old = next((h for h in out if h.revision == revision), None)
    if outcome == "Progressing" or old is None:
        if old is not None:
            out.remove(old)
        number = max((h.number for h in out), default=0) + 1
        entry = HistoryEntry(number=number, revision=revision, bento=bento or (old.bento if old else ""),
                             time=rfc3339(now), outcome=outcome,
                             environment=old.environment if old else None)
        out.append(entry)
    else:
        entry = old
    new = entry.model_copy(update={"time": rfc3339(now), "outcome": outcome, "reason": reason or None,
                                   "message": message or "",
                                   "agreement": agreement if agreement is not None else entry.agreement})
    return [new if h is entry else h for h in out]


def _supersede(history: list[HistoryEntry], keep: set[str], now: float) -> list[HistoryEntry]:
    """Entries neither stable nor the candidate any more: a revision that
    served is Superseded, one that never finished rolling out Abandoned (so
    `kubento rollback` never picks it as a good one)."""
    for h in history:
        if h.revision not in keep and h.outcome in ("Serving", "Progressing"):
            outcome = "Superseded" if h.outcome == "Serving" else "Abandoned"
            history = _record(history, h.revision, now, outcome)
    return history


def _bounded(history: list[HistoryEntry], keep: set[str], limit: int) -> list[HistoryEntry]:
    """The entries of ``keep`` plus the newest ``limit`` others, oldest first."""
    others = [h for h in history if h.revision not in keep]
    dropped = {h.revision for h in others[: max(0, len(others) - limit)]}
    return [h for h in history if h.revision not in dropped]


def decide(*, revision: Optional[str], bento: str, rollout: Rollout, replicas: int,
           previous: ModelDeploymentStatus, seen: dict[str, Seen], now: float,
           verdict: Optional[Verdict] = None, promote: bool = False, abort: bool = False,
           agreement: Optional[Agreement] = None, route: Optional[traffic.RouteSeen] = None,
           mirror_check: Optional[MirrorCheck] = None) -> Decision:
    """What every revision's Deployment and the Service should look like now.

    ``revision`` is the spec's revision (None while it is not known yet, e.g.
    while its bento builds: then a rollout under way carries on, nothing new
    starts). ``seen`` holds every revision Deployment the model has.
    ``agreement`` is a new comparison of the candidate with stable
    (prediction checks), kept in status.rollout and then in its history entry.
    ``route`` is the model's HTTPRoute as it is, in gateway mode (None: replicas
    mode); ``mirror_check`` the last probe of the Gateways' mirroring.
    """
    stable = previous.stable_revision
    if stable not in seen:
        stable = None  # never set, or its Deployment was deleted (and nothing keeps it)
    failed = previous.failed_revision
    if stable is None and previous.stable_revision and revision is not None and revision == failed:
        # The revision that served is gone for good and the spec names the one that failed:
        # serve nothing rather than the failed revision; a spec change rolls out again.
        return Decision({revision: 0} if revision in seen else {}, (), None, previous.stable_revision,
                        None, failed, list(previous.history),
                        notes=[f"stable revision {previous.stable_revision} is gone and nothing keeps it; "
                               f"revision {revision} failed: nothing to serve until the spec changes"])
    state = previous.rollout
    history = list(previous.history)
    if revision is None:
        revision = (state.revision if state else None) or stable
        if revision is None or revision not in seen:
            return Decision({}, (), None, stable, state, failed, history)
    elif failed is not None and revision != failed:
        failed = None  # the spec moved on: going back to that revision later is a new try

    if stable is not None and revision not in (stable, failed):
        return _rolling(revision, bento, rollout, replicas, stable, state, failed, history, seen, now,
                        verdict, promote, abort, agreement, route, mirror_check)

    # Settled: the spec's revision serves alone (first deploy, no change,
    # a reverted spec), or the spec is the revision that failed and stable serves.
    notes = []
    serving = revision if stable is None else stable
    s = seen.get(serving, Seen(0, 0))
    wanted = {serving: replicas}
    if revision != serving:
        wanted[revision] = 0  # the failed revision stays at zero until the spec changes
    wanted = _others_down(seen, wanted, s.ready, replicas)
    others_ready = sum(x.ready for rev, x in seen.items() if rev != serving)
    selects = serving if (s.ready >= replicas or others_ready == 0) else None
    if state is not None and state.revision != serving:
        notes.append(f"rollout of {state.revision} abandoned: the spec changed")
    state = None
    if stable is None and s.ready >= replicas and s.desired == replicas:
        stable = serving
        notes.append(f"revision {serving} is stable")
    if stable == serving:
        if not any(h.revision == serving and h.outcome == "Serving" for h in history):
            history = _record(history, serving, now, "Serving", bento=bento)
    elif not any(h.revision == serving for h in history):
        history = _record(history, serving, now, "Progressing", bento=bento)
    keep = {serving, revision}
    history = _bounded(_supersede(history, keep, now), keep, rollout.revision_history_limit)
    wanted, routed = _routed(wanted, seen, route, {serving: 100}, stable=serving, notes=notes)
    delete = _deletable(seen, wanted, history, keep)
    return Decision(_without(wanted, delete), delete, selects, stable, state, failed, history, notes=notes,
                    route=routed)


def _others_down(seen: dict[str, Seen], wanted: dict[str, int], serving_ready: int, replicas: int) -> dict[str, int]:
    """``wanted`` plus every other revision (an abandoned rollout, a reverted
    spec): those keep their pods until what replaces them is ready."""
    out = dict(wanted)
    for rev, s in seen.items():
        if rev not in out:
            out[rev] = 0 if serving_ready >= replicas else s.desired
    return out


def _rolling(candidate: str, bento: str, rollout: Rollout, replicas: int, stable: str,
             state: Optional[RolloutStatus], failed: Optional[str], history: list[HistoryEntry],
             seen: dict[str, Seen], now: float, verdict: Optional[Verdict], promote: bool, abort: bool,
             agreement: Optional[Agreement] = None, route: Optional[traffic.RouteSeen] = None,
             mirror_check: Optional[MirrorCheck] = None) -> Decision:
    notes = []
    if state is None or state.revision != candidate:
        if state is not None:
            notes.append(f"rollout of {state.revision} abandoned: the spec changed")
        history = _record(history, candidate, now, "Progressing", bento=bento)
        # The Service keeps selecting stable only if stable alone has the capacity
        # (a spec change right after a BlueGreen switch may find it scaled down).
        full = seen[stable].ready >= replicas
        state = RolloutStatus(revision=candidate, number=history[-1].number, strategy=rollout.strategy, step=0,
                              since=rfc3339(now), service="stable" if full else "both")
        notes.append(f"rolling out {candidate} ({rollout.strategy}) from {stable}")
    if promote and not state.promoted:
        # A promotion is a new wait for pods: the deadline starts over.
        state = state.model_copy(update={"promoted": True, "since": rfc3339(now)})
        notes.append(f"promoting {candidate}")
    s, c = seen[stable], seen.get(candidate, Seen(0, 0))
    if c.ready > (state.ready or 0) and not state.rollback:
        # Progress: the deadline is for time without any, as a Deployment's is.
        state = state.model_copy(update={"since": rfc3339(now)})
    since = epoch(state.since) or now
    carried = route.carries(candidate) if route is not None else (0, 0)
    checked = mirror_check if mirror_check is not None and mirror_check.revision == candidate else None
    observed = strategy.Observed(
        strategy=rollout.strategy,
        replicas=replicas,
        stable=strategy.Revision(s.desired, s.ready, s.failure),
        candidate=strategy.Revision(c.desired, c.ready, c.failure, c.failure_reason),
        now=now,
        since=since,
        deadline=float(rollout.progress_deadline_seconds),
        steps=tuple(strategy.Step(st.weight, seconds(st.pause) if st.pause else None, st.mirror or 0)
                    for st in rollout.steps),
        step=state.step,
        step_reached=epoch(state.step_reached),
        service=state.service,
        analysis=rollout.analysis is not None,
        verdict=verdict.result if verdict else None,
        verdict_message=verdict.message if verdict else "",
        verdict_reason=verdict.rollback_reason if verdict else "AnalysisFailed",
        auto_rollback=rollout.auto_rollback,
        promote=bool(state.promoted),
        abort=abort,
        rollback=state.rollback,
        rollback_message=state.rollback_message or "",
        scale_down_delay=float(rollout.scale_down_delay_seconds),
        gateway=route is not None,
        route=carried[0],
        mirror=carried[1],
        acked=route.acked if route is not None else True,
        mirror_probed=checked is not None,
        mirror_failure=checked.message if checked is not None and checked.supported == "False" else "",
    )
    p = strategy.plan(observed)
    if agreement is not None:
        state = state.model_copy(update={"agreement": agreement})
    rate = state.agreement.rate if state.agreement else None
    wanted = _others_down(seen, {stable: p.stable, candidate: p.candidate}, s.ready + c.ready, replicas)
    selects = {"stable": stable, "candidate": candidate, "both": None}[p.service]
    if selects is not None and seen.get(selects, Seen(0, 0)).ready == 0 and any(x.ready for x in seen.values()):
        selects = None  # never a Service with no ready pod behind it while another revision has some
    new_stable = stable
    new_state: Optional[RolloutStatus]
    if p.outcome == "Promoted":
        new_stable, new_state = candidate, None
        history = _record(history, candidate, now, "Serving", agreement=rate)
        notes.append(f"promoted {candidate}")
    elif p.outcome in ("RolledBack", "Aborted"):
        failed, new_state = candidate, None
        history = _record(history, candidate, now, p.outcome, reason=p.reason, message=p.rollback_message or p.message,
                          agreement=rate)
        notes.append(f"{p.outcome.lower()} {candidate}: {p.message}")
    else:
        since_text = rfc3339(p.since) if p.since is not None else state.since
        if p.rollback and not state.rollback:
            since_text = rfc3339(now)  # the rollback's own deadline starts now
        new_state = state.model_copy(update={
            "ready": c.ready,
            "step": p.step,
            "since": since_text,
            "step_reached": rfc3339(p.step_reached) if p.step_reached is not None else None,
            "service": p.service,
            "requested_weight": p.requested,
            "rollback": p.rollback,
            "rollback_message": p.rollback_message or None,
            "analysis": verdict.message if verdict and rollout.analysis is not None else state.analysis,
        })
    keep = {new_stable, candidate}
    history = _bounded(_supersede(history, keep, now), keep, rollout.revision_history_limit)
    if new_state is None:  # done: the route's every request to the revision that serves
        weights, routing = {new_stable: 100}, {}
    else:
        weights = {stable: 100 - p.route, candidate: p.route}
        routing = {"candidate": candidate, "mirror": p.mirror, "probe": p.probe}
    wanted, routed = _routed(wanted, seen, route, weights, stable=new_stable, notes=notes, **routing)
    delete = _deletable(seen, wanted, history, keep)
    return Decision(
        _without(wanted, delete), delete, selects, new_stable, new_state, failed, history,
        plan=p, weight=None if new_state is None else p.weight, analyze=candidate if p.analyze else None,
        notes=notes, route=routed,
    )


def _routed(wanted: dict[str, int], seen: dict[str, Seen], route: Optional[traffic.RouteSeen],
            weights: dict[str, int], *, stable: Optional[str], notes: list[str], candidate: Optional[str] = None,
            mirror: int = 0, probe: bool = False) -> tuple[dict[str, int], Optional[traffic.Route]]:
    """Gateway mode: the replicas, with the pods of revisions the route still
    sends to kept until it stops (kubento.rollout.traffic.hold), and the route."""
    if route is None:
        return wanted, None
    wanted, held = traffic.hold(wanted, {rev: s.desired for rev, s in seen.items()}, route)
    notes += [f"revision {rev} keeps its pods until the route sends it nothing" for rev in held]
    ready = {rev: s.ready for rev, s in seen.items()}
    return wanted, traffic.route(weights, wanted, ready, stable=stable, candidate=candidate, mirror=mirror, probe=probe)


def _deletable(seen: dict[str, Seen], wanted: dict[str, int], history: list[HistoryEntry],
               keep: set[str]) -> tuple[str, ...]:
    """Drained revisions that fell out of history: their Deployments go.
    Those still in history stay at zero replicas, for `kubento rollback`."""
    in_history = {h.revision for h in history} | keep
    return tuple(sorted(rev for rev, s in seen.items()
                        if rev not in in_history and wanted.get(rev, 0) == 0 and s.pods == 0))


def _without(replicas: dict[str, int], revisions: tuple[str, ...]) -> dict[str, int]:
    return {rev: n for rev, n in replicas.items() if rev not in revisions}
