"""The bento's Python environment, decided without I/O.

An archive (``bento.archive``) gets an environment Job on first use
(kubento.builders.env_job): it reads the archive's requirements and
prepares, or finds in the store, the environment of its dependency set. A
build (``bento.build``) prepares it in the build Job, whose result carries
it (kubento.controller.build). Either way the result is kept in
status.environment, keyed by what it was prepared from: a settled model
needs neither the Job nor any read.

``plan_environment`` says what to create or delete and what the pods get;
``env_state`` reads a Job and its pod into an EnvState.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from pydantic import ValidationError

from kubento.api.status import BentoServices
from kubento.api.v1alpha1 import EnvironmentStatus, PackageIndex, PythonEnvironment
from kubento.builders.bento import ServedBento, pinned
from kubento.builders.env_job import (
    ANNOTATION_SETTINGS,
    env_job,
    env_source,
    is_env_job,
    job_name,
    settings_hash,
)
from kubento.builders.meta import Owner
from kubento.controller.status import pod_problems

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
NO_POD_GRACE = 60
SHARED_POLL_SECONDS = 5.0  # another model's Job: its events reach that model, not this one
REASONS = ("PackageNotFound", "PythonVersionMismatch", "EnvironmentFailed", "EnvironmentStoreMissing",
           "BentoFetchFailed")  # what a preparation's message may start with (runtime.environment.REASONS)


@dataclass(frozen=True)
class EnvState:
    phase: str  # Preparing, Ready or Failed (Building: a build prepares it)
    reason: str
    message: str
    source: str
    job: str = ""
    result: Optional[dict[str, Any]] = None  # the preparation's result (see runtime.environment.summary)

    def status(self) -> EnvironmentStatus:
        result = self.result if self.phase == "Ready" and self.result is not None else {}
        fields = EnvironmentStatus.model_fields
        return EnvironmentStatus(source=self.source, job=self.job or None, services=services_of(result),
                                 **{k: v for k, v in result.items() if k in fields
                                    and k not in ("source", "job", "services") and v is not None})

    @property
    def packages(self) -> int:
        return int((self.result or {}).get("packages") or 0)


def services_of(result: Optional[dict[str, Any]]) -> Optional[BentoServices]:
    """The bento's services a preparation read (its Job's message, or status as kept); None when it
    read none, or (a runtime image of another kubento) in a form this operator does not know."""
    raw = (result or {}).get("services")
    if not isinstance(raw, dict):
        return None
    try:
        return BentoServices.model_validate(raw)
    except ValidationError:
        return None


def describe(result: Optional[dict[str, Any]]) -> str:
    """One line for history and messages: hash, packages, size."""
    if not result:
        return ""
    if not result.get("packages"):
        return "none (the runtime image has every package)"
    size = result.get("size") or 0
    return f"{result.get('hash', '?')} ({result['packages']} packages, {size / 1048576:.1f} MiB)"


def with_environment(bento: ServedBento, result: Optional[dict[str, Any]]) -> ServedBento:
    """The bento as pods serve it: with its environment when it has one, and
    (oci://) at the digest its tag had when the environment was prepared."""
    bento = pinned(bento, (result or {}).get("archive"))
    services = services_of(result)
    if services is not None:
        bento = replace(bento, services=services.model_dump_json(by_alias=True, exclude_none=True))
    if result and result.get("packages") and result.get("uri"):
        return replace(bento, env_uri=result["uri"], env_sha256=result.get("sha256"))
    return bento


def failure_reason(text: str, default: str) -> str:
    """The reason a preparation's message starts with ("PackageNotFound: ...")."""
    head = text.strip().split(":", 1)[0]
    return head if head in REASONS else default


def recorded_result(recorded: Optional[EnvironmentStatus], source: str) -> Optional[dict[str, Any]]:
    """status.environment's result when it was prepared from ``source``."""
    if recorded is None or recorded.source != source or recorded.packages is None:
        return None
    return {k: v for k, v in recorded.model_dump(exclude={"source", "job"}).items() if v is not None}


# ------------------------------------------------------------- the Job


def _condition(job: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return {}


def step_outcome(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """How the newest pod of a one-shot Job (kubento.builders.one_shot: its
    steps are init containers, then one container) ended: the step that
    failed — its termination message says why, or its log's tail — else the
    last step, whose message is the result. Empty while nothing ended."""
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True):
        status = pod.get("status") or {}
        steps = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
        ended = [(cs.get("state") or {}).get("terminated") or {} for cs in steps]
        failed = next((t for t in ended if t and t.get("exitCode", 0) != 0), None)
        if failed:
            return failed
        last = [(cs.get("state") or {}).get("terminated") or {} for cs in status.get("containerStatuses") or []]
        if any(last):
            return next(t for t in last if t)
    return {}


def finished(job: dict[str, Any]) -> bool:
    return bool(_condition(job, "Complete") or _condition(job, "Failed"))


def env_state(job: dict[str, Any], pods: list[dict[str, Any]], source: str, timeout: int,
              age_seconds: float = 0.0) -> EnvState:
    name = job["metadata"]["name"]
    end = step_outcome(pods)
    if _condition(job, "Complete"):
        try:
            result = (json.loads((end.get("message") or "").strip() or "{}") or {}).get("environment")
        except (ValueError, AttributeError):
            result = None
        if not isinstance(result, dict):
            # The pod (and its message) is gone: prepare again, cheaply (the store has it).
            return EnvState("Failed", "EnvironmentLost", f"Job {name} succeeded but its result is gone "
                            f"(its pod was deleted): delete Job {name} to prepare again", source, name)
        return EnvState("Ready", "EnvironmentReady", f"{describe(result)} (Job {name})", source, name, result)
    failed = _condition(job, "Failed")
    if failed:
        if failed.get("reason") == "DeadlineExceeded":
            return EnvState("Failed", "EnvironmentTimedOut", f"Job {name} ran longer than python.timeoutSeconds "
                            f"({timeout}s) and was stopped", source, name)
        tail = (end.get("message") or "").strip() or failed.get("message") or "the environment pod failed"
        if end.get("reason") == "OOMKilled":
            tail = f"the preparation ran out of memory (OOMKilled): raise python.resources.limits.memory. {tail}"
        return EnvState("Failed", failure_reason(tail, "EnvironmentFailed"), f"Job {name} failed: {tail}", source, name)
    stuck = pod_problems(pods)
    if stuck:
        return EnvState("Preparing", stuck[0].reason, f"Job {name}: {stuck[0].message}", source, name)
    if not pods and age_seconds > NO_POD_GRACE:
        return EnvState("Preparing", "EnvironmentPodNotCreated", f"Job {name} has created no pod for "
                        f"{age_seconds:.0f}s: see `kubectl describe job {name}` (a ResourceQuota may require "
                        "python.resources)", source, name)
    return EnvState("Preparing", "PreparingEnvironment", f"preparing the Python environment (Job {name})", source, name)


def _usable(job: dict[str, Any], owner: Owner, python: Optional[PythonEnvironment]) -> bool:
    meta = job.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    ran_with = (meta.get("annotations") or {}).get(ANNOTATION_SETTINGS)
    return not (_condition(job, "Failed") and owner.controls(job) and ran_with != settings_hash(python))


# ------------------------------------------------------------------ plan


@dataclass
class EnvPlan:
    state: EnvState
    bento: Optional[ServedBento]  # with its environment; None until it is ready
    creates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)  # names of kubento's environment Jobs to delete
    requeue_after: Optional[float] = None


def wanted_job(bento: ServedBento, index: Optional[PackageIndex]) -> str:
    return job_name(env_source(bento, index))


def plan_environment(bento: ServedBento, owner: Owner, jobs: list[dict[str, Any]], pods: list[dict[str, Any]],
                     index: Optional[PackageIndex], python: Optional[PythonEnvironment],
                     recorded: Optional[EnvironmentStatus], age: float) -> EnvPlan:
    """The environment of an archive: from status when it was prepared from
    the same inputs; else from its Job (created when missing, replaced when
    it failed with settings since changed). ``jobs`` holds this model's
    environment Jobs and, when another model made it, the shared one."""
    source = env_source(bento, index)
    name = job_name(source)
    ours = [j for j in jobs if is_env_job(j) and owner.controls(j)]
    stale = [j["metadata"]["name"] for j in ours
             if j["metadata"]["name"] != name and not j["metadata"].get("deletionTimestamp")]
    result = recorded_result(recorded, source)
    if result is not None:
        state = EnvState("Ready", "EnvironmentReady", describe(result), source, (recorded.job if recorded else "") or "",
                         result)
        return EnvPlan(state, with_environment(bento, result), deletes=stale)
    job = next((j for j in jobs if j["metadata"]["name"] == name), None)
    timeout = python.timeout_seconds if python is not None else 1800
    if job is None:
        return EnvPlan(EnvState("Preparing", "PreparingEnvironment", f"preparing the Python environment (Job {name})",
                                source, name), None, creates=[env_job(bento, owner, index, python)],
                       deletes=[n for n in stale if not finished(next(j for j in ours if j["metadata"]["name"] == n))])
    if not _usable(job, owner, python):
        state = EnvState("Preparing", "PreparingEnvironment", "preparing the Python environment again with the new "
                         "settings", source, name)
        return EnvPlan(state, None, deletes=[] if job["metadata"].get("deletionTimestamp") else [name])
    mine = [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL) == name]
    state = env_state(job, mine, source, timeout, age)
    plan = EnvPlan(state, None)
    if state.phase == "Ready":
        plan.bento = with_environment(bento, state.result)
        plan.deletes = stale
    elif state.phase == "Preparing":
        if not owner.controls(job):
            plan.requeue_after = SHARED_POLL_SECONDS
        elif not mine and age <= NO_POD_GRACE:
            plan.requeue_after = NO_POD_GRACE - age + 1
    return plan


def build_environment(build_state: Any, recorded: Optional[EnvironmentStatus]) -> Optional[EnvState]:
    """The environment a build prepared (its Job's result), for status."""
    if build_state is None:
        return None
    source = build_state.source_hash
    if build_state.phase == "Succeeded":
        result = build_state.environment if build_state.environment is not None else recorded_result(recorded, source)
        if result is None:  # a build from before environments: the runtime image has what it needs
            return None
        return EnvState("Ready", "EnvironmentReady", describe(result), source, build_state.job, result)
    if build_state.phase == "Failed" and build_state.reason in REASONS:
        return EnvState("Failed", build_state.reason, build_state.message, source, build_state.job)
    if build_state.phase == "Failed":
        return None
    return EnvState("Building", "Building", "prepared by the build, after bentoml build", source, build_state.job)
