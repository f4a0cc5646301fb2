"""In-cluster builds (``bento.build``): one Job per source version.

``build_state`` reads a Job and its pod into a BuildState (pure); what to
create or delete is decided in kubento.controller.plan_bento.plan_build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from kubento.api.v1alpha1 import BuildSource, BuildStatus
from kubento.builders.build_job import ANNOTATION_ARCHIVE, ANNOTATION_SETTINGS, settings_hash
from kubento.builders.meta import Owner
from kubento.controller.environment import REASONS as ENV_REASONS, failure_reason, step_outcome
from kubento.controller.status import pod_problems

NO_POD_GRACE = 60  # seconds a Job may take to create its pod before we say so


@dataclass(frozen=True)
class BuildState:
    """Where the build of the current source stands."""

    phase: str  # Building, Failed or Succeeded
    reason: str  # Building, BuildSucceeded, BuildFailed, BuildTimedOut, SourceNotFound, or a pod problem
    message: str
    source: str
    source_hash: str = ""
    job: str = ""
    archive: Optional[str] = None
    sha256: Optional[str] = None
    tag: Optional[str] = None
    environment: Optional[dict[str, Any]] = None  # the Python environment the build prepared (its result)

    @property
    def summary(self) -> str:
        """One line for Ready/Degraded; BuildSucceeded carries the whole message."""
        if self.phase == "Failed" and self.job:
            if self.reason != "BuildFailed" and self.reason in ENV_REASONS:  # the environment: name the package
                first = self.message.split("\n", 1)[0]
                return f"the build of {self.source} could not prepare its Python environment: {first}"
            return f"the build of {self.source} failed (Job {self.job}); the BuildSucceeded condition shows the end of its log"
        return self.message

    def status(self) -> BuildStatus:
        done = self.phase == "Succeeded"
        return BuildStatus(source=self.source, source_hash=self.source_hash, job=self.job,
                           archive=self.archive if done else None, tag=(self.tag or None) if done else None,
                           sha256=(self.sha256 or None) if done else None)


def condition(job: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return {}


def build_state(build: BuildSource, job: dict[str, Any], pods: list[dict[str, Any]], hash_: str,
                age_seconds: float = 0.0) -> BuildState:
    meta = job["metadata"]
    name = meta["name"]
    archive = (meta.get("annotations") or {}).get(ANNOTATION_ARCHIVE)
    base = {"source": build.source.describe(), "source_hash": hash_, "job": name, "archive": archive}
    end = step_outcome(pods)  # the failed step, else the last one (its message is the result)
    if condition(job, "Complete"):
        result: Any = {}
        try:
            result = json.loads((end.get("message") or "").strip() or "{}")
        except ValueError:
            pass
        result = result if isinstance(result, dict) else {}
        tag, sha = result.get("tag"), result.get("sha256")
        env = result.get("environment") if isinstance(result.get("environment"), dict) else None
        return BuildState("Succeeded", "BuildSucceeded", f"built {tag or 'the bento'} from {base['source']} (Job {name})",
                          sha256=sha, tag=tag, environment=env, **base)
    failed = condition(job, "Failed")
    if failed:
        if failed.get("reason") == "DeadlineExceeded":
            return BuildState("Failed", "BuildTimedOut",
                              f"Job {name} ran longer than timeoutSeconds ({build.timeout_seconds}s) and was stopped", **base)
        tail = (end.get("message") or "").strip() or failed.get("message") or "the build pod failed"
        if end.get("reason") == "OOMKilled":
            tail = f"the build ran out of memory (OOMKilled): raise bento.build.resources.limits.memory. {tail}"
        # The build prepares the bento's Python environment too: a failed
        # install says so (PackageNotFound, PythonVersionMismatch, ...).
        reason = failure_reason(tail, "BuildFailed")
        return BuildState("Failed", reason, f"Job {name} failed: {tail}", **base)
    stuck = pod_problems(pods)
    if stuck:
        return BuildState("Building", stuck[0].reason, f"Job {name}: {stuck[0].message}", **base)
    if not pods and age_seconds > NO_POD_GRACE:
        # Quota, LimitRange or admission refused the pod: only the Job's events say which.
        return BuildState("Building", "BuildPodNotCreated",
                          f"Job {name} has created no pod for {age_seconds:.0f}s: see `kubectl describe job {name}` "
                          "(a ResourceQuota may require bento.build.resources)", **base)
    return BuildState("Building", "Building", f"building {base['source']} (Job {name})", **base)


def usable(job: dict[str, Any], owner: Owner, build: BuildSource) -> bool:
    """False for a Job to replace: being deleted, or failed with a timeout or
    resources the spec has since changed (a retry the user asked for)."""
    meta = job.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    ran_with = (meta.get("annotations") or {}).get(ANNOTATION_SETTINGS)
    return not (condition(job, "Failed") and owner.controls(job) and ran_with != settings_hash(build))
