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

from kubento.api.v1alpha1 import Rollout
from kubento.rollout import strategy
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
    rollout: Optional[dict[str, Any]]  # status.rollout
    failed: Optional[str]  # status.failedRevision
    history: list[dict[str, Any]]
    plan: Optional[strategy.Plan] = None  # None: no rollout under way
    weight: Optional[int] = None  # status.canaryWeight
    analyze: Optional[str] = None  # the revision whose metrics should be judged now
    notes: list[str] = field(default_factory=list)  # what changed, for the log


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def _record(history: list[dict[str, Any]], revision: str, now: float, outcome: str, *,
            bento: Optional[str] = None, reason: str = "", message: str = "",
            agreement: Optional[float] = None) -> list[dict[str, Any]]:
    """Set ``revision``'s outcome. A revision starting again (a rollback to
    it) moves to the end with a new number, as `kubectl rollout undo` does."""
    out = [dict(h) for h in history]
    entry = next((h for h in out if h["revision"] == revision), None)
    if outcome == "Progressing" or entry is None:
        if entry is not None:
            out.remove(entry)
        number = max((h.get("number", 0) for h in out), default=0) + 1
        entry = {"number": number, "revision": revision, "bento": bento or (entry or {}).get("bento", "")}
        out.append(entry)
    entry.update(time=rfc3339(now), outcome=outcome)
    entry.pop("reason", None)
    entry.pop("message", None)
    if reason:
        entry["reason"] = reason
    if message:
        entry["message"] = message
    if agreement is not None:
        entry["agreement"] = agreement
    return out


def _supersede(history: list[dict[str, Any]], keep: set[str], now: float) -> list[dict[str, Any]]:
    """Entries neither stable nor the candidate any more: a revision that
    served is Superseded, one that never finished rolling out Abandoned (so
    `kubento rollback` never picks it as a good one)."""
    for h in history:
        if h["revision"] not in keep and h.get("outcome") in ("Serving", "Progressing"):
            outcome = "Superseded" if h["outcome"] == "Serving" else "Abandoned"
            history = _record(history, h["revision"], now, outcome)
    return history


def _bounded(history: list[dict[str, Any]], keep: set[str], limit: int) -> list[dict[str, Any]]:
    """The entries of ``keep`` plus the newest ``limit`` others, oldest first."""
    others = [h for h in history if h["revision"] not in keep]
    dropped = {h["revision"] for h in others[: max(0, len(others) - limit)]}
    return [h for h in history if h["revision"] not in dropped]


def decide(*, revision: Optional[str], bento: str, rollout: Rollout, replicas: int,
           previous: dict[str, Any], seen: dict[str, Seen], now: float,
           verdict: Optional[Verdict] = None, promote: bool = False, abort: bool = False,
           agreement: Optional[dict[str, Any]] = None) -> Decision:
    """What every revision's Deployment and the Service should look like now.

    ``revision`` is the spec's revision (None while it is not known yet, e.g.
    while its bento builds: then a rollout under way carries on, nothing new
    starts). ``seen`` holds every revision Deployment the model has.
    ``agreement`` is a new comparison of the candidate with stable
    (prediction checks), kept in status.rollout and then in its history entry.
    """
    stable = previous.get("stableRevision")
    if stable not in seen:
        stable = None  # never set, or its Deployment was deleted
    failed = previous.get("failedRevision")
    state = dict(previous.get("rollout") or {}) or None
    history = [dict(h) for h in previous.get("history") or []]
    if revision is None:
        revision = (state or {}).get("revision") or stable
        if revision is None or revision not in seen:
            return Decision({}, (), None, stable, state, failed, history)
    elif failed is not None and revision != failed:
        failed = None  # the spec moved on: going back to that revision later is a new try

    if stable is not None and revision not in (stable, failed):
        return _rolling(revision, bento, rollout, replicas, stable, state, failed, history, seen, now,
                        verdict, promote, abort, agreement)

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
    if state is not None and state.get("revision") != serving:
        notes.append(f"rollout of {state.get('revision')} abandoned: the spec changed")
    state = None
    if stable is None and s.ready >= replicas and s.desired == replicas:
        stable = serving
        notes.append(f"revision {serving} is stable")
    if stable == serving:
        if not any(h["revision"] == serving and h.get("outcome") == "Serving" for h in history):
            history = _record(history, serving, now, "Serving", bento=bento)
    elif not any(h["revision"] == serving for h in history):
        history = _record(history, serving, now, "Progressing", bento=bento)
    keep = {serving, revision}
    history = _bounded(_supersede(history, keep, now), keep, rollout.revision_history_limit)
    delete = _deletable(seen, wanted, history, keep)
    return Decision(_without(wanted, delete), delete, selects, stable, state, failed, history, notes=notes)


def _others_down(seen: dict[str, Seen], wanted: dict[str, int], serving_ready: int, replicas: int) -> dict[str, int]:
    """``wanted`` plus every other revision (an abandoned rollout, a reverted
    spec): those keep their pods until what replaces them is ready."""
    out = dict(wanted)
    for rev, s in seen.items():
        if rev not in out:
            out[rev] = 0 if serving_ready >= replicas else s.desired
    return out


def _rolling(candidate, bento, rollout, replicas, stable, state, failed, history, seen, now,
             verdict, promote, abort, agreement=None) -> Decision:
    notes = []
    if state is None or state.get("revision") != candidate:
        if state is not None:
            notes.append(f"rollout of {state.get('revision')} abandoned: the spec changed")
        history = _record(history, candidate, now, "Progressing", bento=bento)
        # The Service keeps selecting stable only if stable alone has the capacity
        # (a spec change right after a BlueGreen switch may find it scaled down).
        full = seen[stable].ready >= replicas
        state = {"revision": candidate, "number": history[-1]["number"], "strategy": rollout.strategy, "step": 0,
                 "since": rfc3339(now), "service": "stable" if full else "both"}
        notes.append(f"rolling out {candidate} ({rollout.strategy}) from {stable}")
    if promote and not state.get("promoted"):
        # A promotion is a new wait for pods: the deadline starts over.
        state = {**state, "promoted": True, "since": rfc3339(now)}
        notes.append(f"promoting {candidate}")
    s, c = seen[stable], seen.get(candidate, Seen(0, 0))
    if c.ready > state.get("ready", 0) and not state.get("rollback"):
        # Progress: the deadline is for time without any, as a Deployment's is.
        state = {**state, "since": rfc3339(now)}
    since = epoch(state.get("since")) or now
    observed = strategy.Observed(
        strategy=rollout.strategy,
        replicas=replicas,
        stable=strategy.Revision(s.desired, s.ready, s.failure),
        candidate=strategy.Revision(c.desired, c.ready, c.failure, c.failure_reason),
        now=now,
        since=since,
        deadline=float(rollout.progress_deadline_seconds),
        steps=tuple(strategy.Step(st.weight, seconds(st.pause) if st.pause else None) for st in rollout.steps),
        step=state.get("step", 0),
        step_reached=epoch(state.get("stepReached")),
        service=state.get("service", "stable"),
        analysis=rollout.analysis is not None,
        verdict=verdict.result if verdict else None,
        verdict_message=verdict.message if verdict else "",
        auto_rollback=rollout.auto_rollback,
        promote=bool(state.get("promoted")),
        abort=abort,
        rollback=state.get("rollback"),
        rollback_message=state.get("rollbackMessage") or "",
        scale_down_delay=float(rollout.scale_down_delay_seconds),
    )
    p = strategy.plan(observed)
    if agreement is not None:
        state = {**state, "agreement": agreement}
    rate = (state.get("agreement") or {}).get("rate")
    wanted = _others_down(seen, {stable: p.stable, candidate: p.candidate}, s.ready + c.ready, replicas)
    selects = {"stable": stable, "candidate": candidate, "both": None}[p.service]
    if selects is not None and seen.get(selects, Seen(0, 0)).ready == 0 and any(x.ready for x in seen.values()):
        selects = None  # never a Service with no ready pod behind it while another revision has some
    new_stable = stable
    if p.outcome == "Promoted":
        new_stable, state = candidate, None
        history = _record(history, candidate, now, "Serving", agreement=rate)
        notes.append(f"promoted {candidate}")
    elif p.outcome in ("RolledBack", "Aborted"):
        failed, state = candidate, None
        history = _record(history, candidate, now, p.outcome, reason=p.reason, message=p.rollback_message or p.message,
                          agreement=rate)
        notes.append(f"{p.outcome.lower()} {candidate}: {p.message}")
    else:
        since_text = rfc3339(p.since) if p.since is not None else state.get("since")
        if p.rollback and not state.get("rollback"):
            since_text = rfc3339(now)  # the rollback's own deadline starts now
        state = {k: v for k, v in {
            **state,
            "ready": c.ready,
            "step": p.step,
            "since": since_text,
            "stepReached": rfc3339(p.step_reached) if p.step_reached is not None else None,
            "service": p.service,
            "requestedWeight": p.requested,
            "rollback": p.rollback,
            "rollbackMessage": p.rollback_message or None,
            "analysis": verdict.message if verdict and rollout.analysis is not None else state.get("analysis"),
        }.items() if v is not None}
    keep = {new_stable, candidate}
    history = _bounded(_supersede(history, keep, now), keep, rollout.revision_history_limit)
    delete = _deletable(seen, wanted, history, keep)
    return Decision(
        _without(wanted, delete), delete, selects, new_stable, state, failed, history,
        plan=p, weight=None if state is None else p.weight, analyze=candidate if p.analyze else None, notes=notes,
    )


def _deletable(seen: dict[str, Seen], wanted: dict[str, int], history: list[dict[str, Any]],
               keep: set[str]) -> tuple[str, ...]:
    """Drained revisions that fell out of history: their Deployments go.
    Those still in history stay at zero replicas, for `kubento rollback`."""
    in_history = {h["revision"] for h in history} | keep
    return tuple(sorted(rev for rev, s in seen.items()
                        if rev not in in_history and wanted.get(rev, 0) == 0 and s.pods == 0))


def _without(replicas: dict[str, int], revisions: tuple[str, ...]) -> dict[str, int]:
    return {rev: n for rev, n in replicas.items() if rev not in revisions}
