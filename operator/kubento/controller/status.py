"""Status as a pure function of what the operator observed.

``compute_status`` takes the spec, the live Deployment (or None) and the
problems found on this pass, and returns the whole status. Conditions keep
their lastTransitionTime while their status holds, so an unchanged world
yields an identical status and the controller writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from kubento.api.v1alpha1 import ModelDeploymentSpec


@dataclass(frozen=True)
class Problem:
    """Something that stops the spec from being applied (``blocking``) or
    from being fully honoured (not blocking)."""

    reason: str
    message: str
    blocking: bool = True


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


# Container waiting reasons that mean the pod will not start on its own.
PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONFIG_FAILURES = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


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
            if reason in PULL_FAILURES:
                found.setdefault("ImagePullBackOff", Problem(
                    "ImagePullBackOff",
                    f"pod {name} cannot pull image {cs.get('image', '')} ({reason}){': ' + detail if detail else ''}",
                    False,
                ))
            elif reason == "CrashLoopBackOff":
                why = last.get("reason", "Error")
                key = "OOMKilled" if why == "OOMKilled" else "CrashLoopBackOff"
                found.setdefault(key, Problem(
                    key,
                    f"container {cs.get('name')} in pod {name} is crash-looping: exited with code "
                    f"{last.get('exitCode', '?')} ({why}), {cs.get('restartCount', 0)} restarts"
                    + (" — raise resources.limits.memory" if key == "OOMKilled" else ""),
                    False,
                ))
            elif reason in CONFIG_FAILURES:
                found.setdefault(reason, Problem(reason, f"pod {name}: {detail or reason}", False))
    return list(found.values())


@dataclass(frozen=True)
class RolloutState:
    """The child Deployment's progress, read from its status."""

    desired: int
    replicas: int
    ready: int
    updated: int
    available: bool
    current: bool  # the Deployment controller has seen its latest spec
    deadline_exceeded: bool
    message: str

    @property
    def complete(self) -> bool:
        return self.current and self.updated >= self.desired and self.ready >= self.desired and self.replicas <= self.desired


def _deployment_condition(dep: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (dep.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}


def rollout_state(dep: dict[str, Any]) -> RolloutState:
    spec = dep.get("spec") or {}
    st = dep.get("status") or {}
    progressing = _deployment_condition(dep, "Progressing")
    available = _deployment_condition(dep, "Available")
    desired = spec.get("replicas", 1)
    return RolloutState(
        desired=desired,
        replicas=st.get("replicas", 0),
        ready=st.get("readyReplicas", 0),
        updated=st.get("updatedReplicas", 0),
        available=available.get("status") == "True",
        current=st.get("observedGeneration", 0) >= (dep.get("metadata") or {}).get("generation", 1),
        deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
        message=progressing.get("message") or available.get("message") or "",
    )


def _cond(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def desired_conditions(obs: Observed) -> tuple[str, list[dict[str, Any]]]:
    """Phase and conditions (without timestamps) for what was observed."""
    blocking = [p for p in obs.problems if p.blocking]
    warnings = [p for p in obs.problems if not p.blocking]
    dep = obs.deployment
    state = rollout_state(dep) if dep is not None else None

    if state is None:
        if blocking:
            first = blocking[0]
            text = "; ".join(p.message for p in blocking)
            return "Failed", [
                _cond("Ready", False, first.reason, text),
                _cond("Available", False, first.reason, "no model server is running"),
                _cond("Progressing", False, first.reason, text),
                _cond("Degraded", True, first.reason, text),
            ]
        return "Pending", [
            _cond("Ready", False, "Pending", "waiting for the model server Deployment"),
            _cond("Available", False, "Pending", "no model server is running yet"),
            _cond("Progressing", True, "Creating", "creating the model server Deployment"),
            _cond("Degraded", False, "AsExpected", ""),
        ]

    available = _cond(
        "Available",
        state.available and (state.ready > 0 or state.desired == 0),
        "MinimumReplicasAvailable" if state.available else "MinimumReplicasUnavailable",
        f"{state.ready} of {state.desired} replicas ready",
    )
    if state.deadline_exceeded:
        ready = _cond("Ready", False, "ProgressDeadlineExceeded", state.message or "the rollout did not finish in time")
        progressing = _cond("Progressing", False, "ProgressDeadlineExceeded", ready["message"])
        phase = "Failed" if state.ready == 0 else "Degraded"
    elif not state.complete and pod_problems(obs.pods):
        failures = pod_problems(obs.pods)
        text = "; ".join(p.message for p in failures)
        ready = _cond("Ready", False, failures[0].reason, text)
        progressing = _cond("Progressing", True, "RollingOut", f"{state.updated} of {state.desired} replicas updated, {state.ready} ready")
        phase = "Failed" if state.ready == 0 else "Degraded"
    elif state.complete:
        if state.desired == 0:
            ready = _cond("Ready", True, "ScaledToZero", "replicas is 0: no pod serves requests")
        else:
            ready = _cond("Ready", True, "Ready", f"{state.ready} of {state.desired} replicas ready")
        progressing = _cond("Progressing", False, "RolloutComplete", f"revision {obs.revision} is serving")
        phase = "Ready"
    else:
        msg = f"{state.updated} of {state.desired} replicas updated, {state.ready} ready"
        ready = _cond("Ready", False, "RollingOut" if state.current else "Pending", msg)
        progressing = _cond("Progressing", True, "RollingOut", msg)
        phase = "Progressing"

    problems = blocking + warnings
    if problems:
        text = "; ".join(p.message for p in problems)
        degraded = _cond("Degraded", True, problems[0].reason, text)
        if blocking:
            ready = _cond("Ready", False, blocking[0].reason, text)
        phase = "Degraded" if phase in ("Ready", "Progressing") else phase
    elif phase in ("Failed", "Degraded"):
        degraded = _cond("Degraded", True, ready["reason"], ready["message"])
    else:
        degraded = _cond("Degraded", False, "AsExpected", "")
    return phase, [ready, available, progressing, degraded]


def merge_conditions(
    previous: list[dict[str, Any]], desired: list[dict[str, Any]], generation: int, now: str
) -> list[dict[str, Any]]:
    """Desired conditions, keeping lastTransitionTime where status did not change."""
    before = {c.get("type"): c for c in previous or []}
    merged = []
    for cond in desired:
        old = before.get(cond["type"], {})
        since = old.get("lastTransitionTime") if old.get("status") == cond["status"] else None
        merged.append({**cond, "lastTransitionTime": since or now, "observedGeneration": generation})
    return merged


def compute_status(obs: Observed, previous: dict[str, Any], now: str) -> dict[str, Any]:
    """The whole status to store. Fields this pass has no opinion on (history,
    stableRevision) are carried over from ``previous``."""
    phase, conditions = desired_conditions(obs)
    state = rollout_state(obs.deployment) if obs.deployment is not None else None
    status = {k: v for k, v in (previous or {}).items() if k in ("history", "stableRevision", "canaryWeight")}
    status.update(
        {
            "phase": phase,
            "conditions": merge_conditions((previous or {}).get("conditions", []), conditions, obs.generation, now),
            "observedGeneration": obs.generation,
            "replicas": state.replicas if state else 0,
            "readyReplicas": state.ready if state else 0,
            "selector": obs.selector,
        }
    )
    if obs.revision and obs.deployment is not None:
        status["currentRevision"] = obs.revision
        if phase == "Ready":
            status["stableRevision"] = obs.revision
    elif (previous or {}).get("currentRevision"):
        status["currentRevision"] = previous["currentRevision"]
    if obs.deployment is not None:
        status["url"] = obs.url
    return status


def status_patch(previous: dict[str, Any], new: dict[str, Any]) -> Optional[dict[str, Any]]:
    """A JSON merge patch turning ``previous`` into ``new``, or None if equal."""
    previous = previous or {}
    if previous == new:
        return None
    patch: dict[str, Any] = {k: v for k, v in new.items() if previous.get(k) != v}
    patch.update({k: None for k in previous if k not in new})
    return patch


def transition_event(previous: dict[str, Any], new: dict[str, Any]) -> Optional[tuple[str, str, str]]:
    """(type, reason, message) of the event to post when the phase or the
    Ready condition's reason changed; None otherwise."""

    def ready(status: dict[str, Any]) -> dict[str, Any]:
        return next((c for c in (status or {}).get("conditions", []) if c.get("type") == "Ready"), {})

    old_ready, new_ready = ready(previous), ready(new)
    if (previous or {}).get("phase") == new.get("phase") and old_ready.get("reason") == new_ready.get("reason"):
        return None
    degraded = next((c for c in new.get("conditions", []) if c.get("type") == "Degraded"), {})
    if new.get("phase") in ("Failed", "Degraded"):
        reason = degraded.get("reason") or new_ready.get("reason", "Failed")
        return "Warning", reason, degraded.get("message") or new_ready.get("message", "")
    return "Normal", new_ready.get("reason", new.get("phase", "")), new_ready.get("message", "")
