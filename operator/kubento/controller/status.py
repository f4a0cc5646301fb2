"""Status as a pure function of what the operator observed.

``compute_status`` takes the spec, the live Deployment (or None) and the
problems found on this pass, and returns the whole status. Conditions keep
their lastTransitionTime while their status holds, so an unchanged world
yields an identical status and the controller writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from pydantic import ValidationError

from kubento.api.traffic import TrafficStatus
from kubento.api.v1alpha1 import Condition, HistoryEntry, ModelDeploymentSpec, ModelDeploymentStatus
from kubento.builders.bento import FETCH_CONTAINER

log = logging.getLogger("kubento.status")

if TYPE_CHECKING:
    from kubento.controller.build import BuildState
    from kubento.controller.environment import EnvState
    from kubento.rollout.strategy import Plan


@dataclass(frozen=True)
class Problem:
    """Something that stops the spec from being applied (``blocking``) or
    from being fully honoured (not blocking)."""

    reason: str
    message: str
    blocking: bool = True


@dataclass
class RolloutView:
    """The revisions' side of one pass (kubento.rollout.revisions.decide)."""

    plan: Optional["Plan"]  # a rollout under way; None when settled
    stable: Optional[str]
    candidate: Optional[str]
    rolled_back: Optional[HistoryEntry]  # history entry of the spec's revision, when it was rolled back
    pods: int  # all revisions
    ready: int
    stable_problems: list[Problem] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)  # status fields the decision owns (ModelDeploymentStatus's)


@dataclass
class Observed:
    """Everything one pass saw."""

    spec: ModelDeploymentSpec
    generation: int
    revision: Optional[str]
    url: str
    selector: str
    deployment: Optional[dict[str, Any]] = None
    problems: list[Problem] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    build: Optional["BuildState"] = None  # bento.build only
    environment: Optional["EnvState"] = None  # archive and build: the bento's Python environment
    rollout: Optional[RolloutView] = None  # None: status without revisions (unit tests of serving alone)
    traffic: Optional[TrafficStatus] = None  # status.traffic
    route_condition: Optional[Condition] = None  # gateway mode: RouteAccepted
    external_url: Optional[str] = None  # gateway mode: the model's URL through a Gateway that accepted its route


# Container waiting reasons that mean the pod will not start on its own.
PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONFIG_FAILURES = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


def _startup_budget_spent(pod: dict[str, Any], cs: dict[str, Any], last: dict[str, Any]) -> Optional[int]:
    """The container's startup probe budget in seconds, if its last run never
    passed the probe and lasted that long (the kubelet killed it), else None."""
    if cs.get("started") or not last.get("startedAt") or not last.get("finishedAt"):
        return None
    spec = next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == cs.get("name")), {})
    probe = spec.get("startupProbe") or {}
    budget = probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10)
    ran = (datetime.fromisoformat(last["finishedAt"].replace("Z", "+00:00"))
           - datetime.fromisoformat(last["startedAt"].replace("Z", "+00:00"))).total_seconds()
    return budget if probe and ran >= budget else None


def pod_problems(pods: list[dict[str, Any]]) -> list[Problem]:
    """Why the model's pods are not becoming ready, one Problem per kind of
    failure (the first pod showing it is named)."""
    found: dict[str, Problem] = {}
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        name = (pod.get("metadata") or {}).get("name", "?")
        st = pod.get("status") or {}
        for cond in st.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                found.setdefault("Unschedulable", Problem("Unschedulable", f"pod {name} cannot be scheduled: {cond.get('message', '')}".strip(), False))
        for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            last = ((cs.get("lastState") or {}).get("terminated")) or {}
            detail = waiting.get("message", "")
            failed = (cs.get("state") or {}).get("terminated") or last
            if cs.get("name") == FETCH_CONTAINER and failed and failed.get("exitCode", 0) != 0:
                # The fetcher's termination message names the cause (wrong URI,
                # credentials, digest); it never contains the credentials.
                why = (failed.get("message") or "").strip() or f"exited with code {failed.get('exitCode')}"
                found.setdefault("BentoFetchFailed", Problem(
                    "BentoFetchFailed", f"pod {name} cannot fetch the bento archive: {why[-900:]}", False))
            elif reason in PULL_FAILURES:
                found.setdefault("ImagePullBackOff", Problem(
                    "ImagePullBackOff",
                    f"pod {name} cannot pull image {cs.get('image', '')} ({reason}){': ' + detail if detail else ''}",
                    False,
                ))
            elif reason == "CrashLoopBackOff" or (last and cs.get("restartCount", 0) > 0 and not cs.get("ready")):
                # Between restarts a crash-looping container runs (not ready):
                # still the same failure, so the status does not flap.
                why = last.get("reason", "Error")
                key = "OOMKilled" if why == "OOMKilled" else "CrashLoopBackOff"
                budget = _startup_budget_spent(pod, cs, last)
                found.setdefault(key, Problem(
                    key,
                    f"container {cs.get('name')} in pod {name} is crash-looping: "
                    + (f"it did not answer its startup probe within {budget}s and was restarted "
                       "— raise spec.startupTimeoutSeconds if the model loads slowly, "
                       if budget and key != "OOMKilled" else "")
                    + f"exited with code {last.get('exitCode', '?')} ({why}), {cs.get('restartCount', 0)} restarts"
                    + (" — raise resources.limits.memory" if key == "OOMKilled" else ""),
                    False,
                ))
            elif reason in CONFIG_FAILURES:
                found.setdefault(reason, Problem(reason, f"pod {name}: {detail or reason}", False))
    return list(found.values())


@dataclass(frozen=True)
class RolloutState:
    """The child Deployment's progress, read from its spec and status."""

    desired: int
    replicas: int
    ready: int
    updated: int
    current: bool  # the Deployment controller has seen its latest spec
    rolled_out: bool  # its newest ReplicaSet became available (Progressing: NewReplicaSetAvailable)
    deadline_exceeded: bool
    replica_failure: str  # why pods cannot be created (quota, admission, missing ServiceAccount)
    message: str

    @property
    def done(self) -> bool:
        """The current template has replaced every old pod."""
        return self.current and self.rolled_out and self.updated >= self.desired and self.replicas <= self.desired


def _deployment_condition(dep: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (dep.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}


def rollout_state(dep: dict[str, Any]) -> RolloutState:
    spec = dep.get("spec") or {}
    st = dep.get("status") or {}
    progressing = _deployment_condition(dep, "Progressing")
    failure = _deployment_condition(dep, "ReplicaFailure")
    return RolloutState(
        desired=spec.get("replicas", 1),
        replicas=st.get("replicas", 0),
        ready=st.get("readyReplicas", 0),
        updated=st.get("updatedReplicas", 0),
        current=st.get("observedGeneration", 0) >= (dep.get("metadata") or {}).get("generation", 1),
        rolled_out=progressing.get("reason") == "NewReplicaSetAvailable",
        deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
        replica_failure=failure.get("message", "pods cannot be created") if failure.get("status") == "True" else "",
        message=progressing.get("message", ""),
    )


def _cond(type_: str, ok: bool, reason: str, message: str) -> Condition:
    return Condition(type=type_, status="True" if ok else "False", reason=reason, message=message)


def _joined(problems: list[Problem]) -> str:
    return "; ".join(p.message for p in problems)


def desired_conditions(obs: Observed) -> tuple[str, list[Condition]]:
    """Phase and conditions (without timestamps) for what was observed,
    with BuildSucceeded for a build source (phase Building while it runs:
    whatever revision was serving keeps serving)."""
    phase, conditions = _serving_conditions(obs)
    phase, conditions = _environment_conditions(obs, phase, conditions)
    build = obs.build
    if build is None:
        return phase, conditions
    ok = {"Succeeded": "True", "Failed": "False"}.get(build.phase, "Unknown")
    conditions.append(Condition(type="BuildSucceeded", status=ok, reason=build.reason, message=build.message))
    if build.phase == "Building":
        phase = "Building"
        replace = {"Progressing": _cond("Progressing", True, build.reason, build.message)}
        if build.reason == "Building":  # a build under way is not a problem
            replace["Degraded"] = _cond("Degraded", False, "AsExpected", "")
        conditions = [replace.get(c.type, c) for c in conditions]
    return phase, conditions


def _environment_conditions(obs: Observed, phase: str, conditions: list[Condition]
                            ) -> tuple[str, list[Condition]]:
    """EnvironmentReady, and phase PreparingEnvironment while an archive's
    environment Job runs (whatever revision was serving keeps serving)."""
    env = obs.environment
    if env is None:
        return phase, conditions
    ok = {"Ready": "True", "Failed": "False"}.get(env.phase, "Unknown")
    conditions = conditions + [Condition(type="EnvironmentReady", status=ok, reason=env.reason, message=env.message)]
    if env.phase == "Preparing":
        phase = "PreparingEnvironment"
        replace = {"Progressing": _cond("Progressing", True, env.reason, env.message)}
        if env.reason == "PreparingEnvironment":  # under way, not a problem
            replace["Degraded"] = _cond("Degraded", False, "AsExpected", "")
        conditions = [replace.get(c.type, c) for c in conditions]
    return phase, conditions


def _serving_conditions(obs: Observed) -> tuple[str, list[Condition]]:
    view = obs.rollout
    if view is None:
        return _deployment_conditions(obs)
    if view.plan is not None:
        return _rolling_conditions(obs, view, view.plan)
    phase, conditions = _deployment_conditions(obs)
    entry = view.rolled_back
    if entry is None:
        return phase, conditions + [_cond("RolledBack", False, "AsExpected", "")]
    aborted = entry.outcome == "Aborted"
    cause = entry.message or entry.reason or ""
    text = (f"revision {entry.revision} was {'aborted' if aborted else 'rolled back'}"
            f"{': ' + cause if cause else ''}; revision {view.stable} serves. "
            "Change the spec to roll out again")
    replace = {
        "Ready": _cond("Ready", False, "RolledBack", text),
        "Progressing": _cond("Progressing", False, "RolledBack", text),
        "Degraded": _cond("Degraded", True, "RolledBack", text),
    }
    rolled_back = _cond("RolledBack", True, entry.reason or ("Aborted" if aborted else "RolledBack"), text)
    return "RolledBack", [replace.get(c.type, c) for c in conditions] + [rolled_back]


def _rolling_conditions(obs: Observed, view: RolloutView, plan: "Plan") -> tuple[str, list[Condition]]:
    """A rollout under way: the stable revision serves (alone or with the
    new one); the plan says where it stands."""
    label = f"revision {view.candidate} ({obs.spec.rollout.strategy}): {plan.message}"
    available = _cond("Available", view.ready > 0, "ReplicasAvailable" if view.ready else "NoReplicasAvailable",
                      f"{view.ready} replicas ready across revisions")
    quiet = _cond("RolledBack", False, "AsExpected", "")
    if plan.outcome == "Failed":  # autoRollback off: holding
        return "Degraded", [_cond("Ready", False, plan.reason, label), available,
                            _cond("Progressing", False, plan.reason, label),
                            _cond("Degraded", True, plan.reason, label), quiet]
    reason = "RollingBack" if plan.rollback else plan.reason
    problems = view.stable_problems + obs.problems
    degraded = (_cond("Degraded", True, problems[0].reason, _joined(problems)) if problems
                else _cond("Degraded", False, "AsExpected", ""))
    return "Progressing", [_cond("Ready", False, reason, label), available,
                           _cond("Progressing", True, reason, label), degraded, quiet]


def _deployment_conditions(obs: Observed) -> tuple[str, list[Condition]]:
    """Phase and Ready/Available/Progressing/Degraded.

    Ready: the current spec is rolled out and at least one replica serves.
    Available: at least one replica serves (whatever revision).
    Progressing: a rollout of the current spec is under way.
    Degraded: something needs attention (its reason says what).
    """
    blocking = [p for p in obs.problems if p.blocking]
    if obs.deployment is None:
        if blocking:
            text = _joined(blocking)
            reason = blocking[0].reason
            return "Failed", [
                _cond("Ready", False, reason, text),
                _cond("Available", False, reason, "no model server is running"),
                _cond("Progressing", False, reason, text),
                _cond("Degraded", True, reason, text),
            ]
        return "Pending", [
            _cond("Ready", False, "Pending", "waiting for the model server Deployment"),
            _cond("Available", False, "Pending", "no model server is running yet"),
            _cond("Progressing", True, "Creating", "creating the model server Deployment"),
            _cond("Degraded", False, "AsExpected", ""),
        ]

    state = rollout_state(obs.deployment)
    counts = f"{state.ready} of {state.desired} replicas ready"
    serving = state.ready > 0
    available = _cond("Available", serving, "ReplicasAvailable" if serving else
                      ("ScaledToZero" if state.desired == 0 else "NoReplicasAvailable"), counts)

    # Problems found on this pass, most telling first.
    problems = list(blocking)
    if state.replica_failure:
        problems.append(Problem("ReplicaFailure", state.replica_failure))
    if state.deadline_exceeded:
        problems.append(Problem("ProgressDeadlineExceeded", state.message or "the rollout did not finish in time"))
    problems += pod_problems(obs.pods)
    problems += [p for p in obs.problems if not p.blocking]  # e.g. NotImplemented: serving, but not as asked

    failing = [p for p in problems if p.reason != "NotImplemented"]
    if state.done and state.desired == 0:
        ready = _cond("Ready", True, "ScaledToZero", "replicas is 0: no pod serves requests")
    elif state.done and serving and not blocking:
        ready = _cond("Ready", True, "Ready", counts)
    elif failing:
        ready = _cond("Ready", False, failing[0].reason, _joined(failing))
    elif state.done:
        ready = _cond("Ready", False, "NoReplicasReady", counts)
    else:
        ready = _cond("Ready", False, "RollingOut", f"{state.updated} of {state.desired} replicas updated, {state.ready} ready")

    rolling = not state.done and not state.deadline_exceeded
    progressing = _cond(
        "Progressing", rolling,
        "RollingOut" if rolling else ("ProgressDeadlineExceeded" if state.deadline_exceeded else "RolloutComplete"),
        f"{state.updated} of {state.desired} replicas updated" if rolling else state.message or f"revision {obs.revision} is serving",
    )
    degraded = (_cond("Degraded", True, problems[0].reason, _joined(problems)) if problems
                else _cond("Degraded", False, "AsExpected", ""))

    if ready.status == "True":
        phase = "Degraded" if problems else "Ready"
    elif failing:
        phase = "Degraded" if serving else "Failed"
    else:
        phase = "Progressing" if rolling else ("Degraded" if problems else "Progressing")
    return phase, [ready, available, progressing, degraded]


def merge_conditions(previous: list[Condition], desired: list[Condition], generation: int, now: str
                     ) -> list[Condition]:
    """Desired conditions, keeping lastTransitionTime where status did not change."""
    before = {c.type: c for c in previous or []}
    merged = []
    for cond in desired:
        old = before.get(cond.type)
        since = old.last_transition_time if old is not None and old.status == cond.status else None
        merged.append(cond.model_copy(update={"last_transition_time": since or now, "observed_generation": generation}))
    return merged


def compute_status(obs: Observed, previous: ModelDeploymentStatus, now: str) -> ModelDeploymentStatus:
    """The whole status to store. Without a rollout view (unit tests of
    serving alone), history and stableRevision are carried over."""
    phase, conditions = desired_conditions(obs)
    if obs.route_condition is not None:
        conditions = conditions + [obs.route_condition]
    state = rollout_state(obs.deployment) if obs.deployment is not None else None
    view = obs.rollout
    if view is None:
        status = ModelDeploymentStatus(history=previous.history, stable_revision=previous.stable_revision,
                                       canary_weight=previous.canary_weight)
    else:
        status = ModelDeploymentStatus(**view.record)
    status.phase = phase
    status.conditions = merge_conditions(previous.conditions, conditions, obs.generation, now)
    status.observed_generation = obs.generation
    status.replicas = view.pods if view else (state.replicas if state else 0)
    status.ready_replicas = view.ready if view else (state.ready if state else 0)
    status.selector = obs.selector
    if obs.revision and (obs.deployment is not None or view is not None and view.plan is not None):
        status.current_revision = obs.revision
        ready = next(c for c in conditions if c.type == "Ready").status == "True"
        if view is None and ready:
            status.stable_revision = obs.revision
    elif previous.current_revision:
        status.current_revision = previous.current_revision
    if obs.deployment is not None or view is not None and view.pods:
        status.url = obs.external_url or obs.url
    status.traffic = obs.traffic
    if obs.build is not None:
        status.build = obs.build.status()
    if obs.environment is not None and obs.environment.phase != "Building":
        status.environment = obs.environment.status()
    elif obs.environment is not None and previous.environment:
        status.environment = previous.environment  # the last build's, until this one is done
    return status


def to_wire(status: ModelDeploymentStatus) -> dict[str, Any]:
    """The status as the API stores it (camelCase, no nulls): the one place it is serialised."""
    return status.model_dump(by_alias=True, mode="json", exclude_none=True)


def parse_status(raw: Optional[dict[str, Any]]) -> ModelDeploymentStatus:
    """A stored status as the API's model (what every pass and the CLI read).
    The API server stores only what the CRD's schema allows; a field an
    older kubento wrote differently is dropped rather than failing the pass."""
    try:
        return ModelDeploymentStatus.model_validate(raw or {})
    except ValidationError:
        kept = {}
        for key, value in (raw or {}).items():
            try:
                ModelDeploymentStatus.model_validate({key: value})
            except ValidationError:
                log.warning("status.%s is not what this kubento reads: ignored", key)
                continue
            kept[key] = value
        return ModelDeploymentStatus.model_validate(kept)


def status_patch(previous: Optional[dict[str, Any]], new: ModelDeploymentStatus) -> Optional[dict[str, Any]]:
    """A JSON merge patch turning the stored ``previous`` into ``new``, or None
    if equal. Merge patches merge nested objects, so keys gone from a nested
    object (e.g. build.archive of an older build) are sent as null."""
    previous, wire = previous or {}, to_wire(new)
    if previous == wire:
        return None
    return _merge_diff(previous, wire)


def _merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = _merge_diff(before, value)
        else:
            patch[key] = value
    patch.update({k: None for k in old if k not in new})
    return patch


def _condition(status: ModelDeploymentStatus, type_: str) -> Optional[Condition]:
    return next((c for c in status.conditions if c.type == type_), None)


def transition_events(previous: ModelDeploymentStatus, new: ModelDeploymentStatus) -> list[tuple[str, str, str]]:
    """Events for a pass: a rollout starting, a promotion, and a phase or
    Ready reason change (:func:`transition_event`). A rollout's start or
    promotion and the Normal phase change of the same pass are one moment,
    said once (the promotion's event names the replicas ready): a fleet-wide
    change posts half the events, each a request the API server serves."""
    events = []
    before = previous.rollout.revision if previous.rollout else None
    after = new.rollout.revision if new.rollout else None
    if after and after != before:
        assert new.rollout is not None
        events.append(("Normal", "RolloutStarted",
                       f"rolling out revision {after} ({new.rollout.strategy}) replacing {new.stable_revision}"))
    old_stable, new_stable = previous.stable_revision, new.stable_revision
    if old_stable and new_stable and new_stable != old_stable:
        events.append(("Normal", "Promoted", f"revision {new_stable} serves all traffic (replaced {old_stable})"))
    event = transition_event(previous, new)
    if event is not None and event[0] == "Normal" and events:
        if events[-1][1] == "Promoted" and event[2]:
            events[-1] = (*events[-1][:2], f"{events[-1][2]}; {event[2]}")
        event = None
    if event is not None:
        events.append(event)
    route = route_event(previous, new)
    if route is not None and (event is None or event[1] != route[1]):
        events.append(route)
    return events


def route_event(previous: ModelDeploymentStatus, new: ModelDeploymentStatus) -> Optional[tuple[str, str, str]]:
    """Gateway mode: an event when a Gateway stops or starts accepting the model's route."""
    before, after = _condition(previous, "RouteAccepted"), _condition(new, "RouteAccepted")
    if after is None or (before is not None and (before.status, before.reason) == (after.status, after.reason)):
        return None
    if after.status == "False":
        return "Warning", after.reason, after.message
    if after.status == "True" and before is not None and before.status == "False":
        return "Normal", "RouteAccepted", after.message
    return None


def transition_event(previous: ModelDeploymentStatus, new: ModelDeploymentStatus) -> Optional[tuple[str, str, str]]:
    """(type, reason, message) of the event to post when the phase or the
    Ready condition's reason changed; None otherwise."""
    empty = Condition(type="", status="Unknown", reason="")
    old_ready, new_ready = _condition(previous, "Ready") or empty, _condition(new, "Ready") or empty
    if previous.phase == new.phase and old_ready.reason == new_ready.reason:
        return None
    if not previous.phase and new.phase == "Pending":
        return None  # a new model's first status says nothing an event would add
    degraded = _condition(new, "Degraded") or empty
    if new.phase == "Building" and new_ready.reason != "Building":
        return "Warning", new_ready.reason, new_ready.message  # a build that is stuck
    if new.phase == "PreparingEnvironment" and new_ready.reason != "PreparingEnvironment":
        return "Warning", new_ready.reason, new_ready.message
    if new.phase == "RolledBack":
        rolled = _condition(new, "RolledBack") or empty
        return "Warning", "Aborted" if rolled.reason == "Aborted" else "RolledBack", rolled.message
    if new.phase in ("Failed", "Degraded"):
        reason = degraded.reason or new_ready.reason or "Failed"
        build = _condition(new, "BuildSucceeded")
        if build is not None and build.status == "False" and build.reason == reason:
            return "Warning", reason, build.message  # with the end of the build log
        env = _condition(new, "EnvironmentReady")
        if env is not None and env.status == "False" and env.reason == reason:
            return "Warning", reason, env.message  # with the end of pip's log
        return "Warning", reason, degraded.message or new_ready.message
    return "Normal", new_ready.reason or (new.phase or ""), new_ready.message
