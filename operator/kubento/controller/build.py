"""In-cluster builds (``bento.build``): one Job per source version.

``build_state`` reads a Job and its pod into a BuildState (pure); ``sync_build``
is the I/O: hash the source, create the Job if it is missing, and once a
build succeeded delete the Jobs of older source versions.
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Optional

from kubernetes.client.exceptions import ApiException

from kubento.api.v1alpha1 import BuildSource
from kubento.builders.bento import ServedBento
from kubento.builders.build_job import (
    ANNOTATION_ARCHIVE,
    ANNOTATION_SETTINGS,
    BUILD_CONTAINER,
    LABEL_BUILD_OF,
    LABEL_SOURCE_HASH,
    build_job,
    job_name,
    settings_hash,
    snapshot_name,
    source_hash,
    source_snapshot,
)
from kubento.builders.meta import Owner
from kubento.controller import kube
from kubento.controller.status import pod_problems

log = logging.getLogger("kubento.build")
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

    @property
    def summary(self) -> str:
        """One line for Ready/Degraded; BuildSucceeded carries the whole message."""
        if self.phase == "Failed" and self.job:
            return f"the build of {self.source} failed (Job {self.job}); the BuildSucceeded condition shows the end of its log"
        return self.message

    def status(self) -> dict[str, Any]:
        out = {"source": self.source, "sourceHash": self.source_hash, "job": self.job}
        if self.phase == "Succeeded":
            out["archive"] = self.archive
            for key in ("tag", "sha256"):
                if getattr(self, key):
                    out[key] = getattr(self, key)
        return out


def _condition(job: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return {}


def _terminated(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """How the build container of the newest pod ended: its termination
    message is the helper's summary, or the tail of its log."""
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            if cs.get("name") == BUILD_CONTAINER and terminated:
                return terminated
    return {}


def build_state(build: BuildSource, job: dict[str, Any], pods: list[dict[str, Any]], hash_: str,
                age_seconds: float = 0.0) -> BuildState:
    meta = job["metadata"]
    name = meta["name"]
    archive = (meta.get("annotations") or {}).get(ANNOTATION_ARCHIVE)
    base = {"source": build.source.describe(), "source_hash": hash_, "job": name, "archive": archive}
    end = _terminated(pods)
    if _condition(job, "Complete"):
        result: Any = {}
        try:
            result = json.loads((end.get("message") or "").strip() or "{}")
        except ValueError:
            pass
        result = result if isinstance(result, dict) else {}
        tag, sha = result.get("tag"), result.get("sha256")
        return BuildState("Succeeded", "BuildSucceeded", f"built {tag or 'the bento'} from {base['source']} (Job {name})",
                          sha256=sha, tag=tag, **base)
    failed = _condition(job, "Failed")
    if failed:
        if failed.get("reason") == "DeadlineExceeded":
            return BuildState("Failed", "BuildTimedOut",
                              f"Job {name} ran longer than timeoutSeconds ({build.timeout_seconds}s) and was stopped", **base)
        tail = (end.get("message") or "").strip() or failed.get("message") or "the build pod failed"
        if end.get("reason") == "OOMKilled":
            tail = f"the build ran out of memory (OOMKilled): raise bento.build.resources.limits.memory. {tail}"
        return BuildState("Failed", "BuildFailed", f"Job {name} failed: {tail}", **base)
    stuck = pod_problems(pods)
    if stuck:
        return BuildState("Building", stuck[0].reason, f"Job {name}: {stuck[0].message}", **base)
    if not pods and age_seconds > NO_POD_GRACE:
        # Quota, LimitRange or admission refused the pod: only the Job's events say which.
        return BuildState("Building", "BuildPodNotCreated",
                          f"Job {name} has created no pod for {age_seconds:.0f}s: see `kubectl describe job {name}` "
                          "(a ResourceQuota may require bento.build.resources)", **base)
    return BuildState("Building", "Building", f"building {base['source']} (Job {name})", **base)


def _content(build: BuildSource, namespace: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """The project files kubento can see (a ConfigMap's data), or why not."""
    if build.source.config_map is None:
        return None, None  # pvc and git: hashed by where they point
    cm = kube.get("v1", "ConfigMap", namespace, build.source.config_map.name)
    if cm is None:
        return None, f"ConfigMap {build.source.config_map.name} (bento.build.source.configMap) does not exist in namespace {namespace}"
    return {"data": cm.get("data") or {}, "binaryData": cm.get("binaryData") or {}}, None


def _age(obj: dict[str, Any]) -> float:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return 0.0
    if isinstance(created, str):
        created = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    return (datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()


def _served(build: BuildSource, runtime_image: str, state: BuildState) -> ServedBento:
    secret = build.output.secret_ref.name if build.output.secret_ref else None
    return ServedBento(runtime_image, archive_uri=state.archive, sha256=state.sha256, secret=secret,
                       secret_field="bento.build.output.secretRef")


def sync_build(build: BuildSource, owner: Owner, runtime_image: str,
               recorded: Optional[dict[str, Any]] = None) -> tuple[BuildState, Optional[ServedBento]]:
    """Make sure the current source is built; return its state and, once
    built, the archive to serve. ``recorded`` is status.build: a succeeded
    build of this source is served from it, whatever became of its Job."""
    content, missing = _content(build, owner.namespace)
    if missing:
        return BuildState("Failed", "SourceNotFound", missing, source=build.source.describe()), None
    hash_ = source_hash(build, runtime_image, content)
    if recorded and recorded.get("sourceHash") == hash_ and recorded.get("archive"):
        state = BuildState("Succeeded", "BuildSucceeded", f"built {recorded.get('tag') or 'the bento'} from "
                           f"{build.source.describe()} (Job {recorded.get('job', '')})", source=build.source.describe(),
                           source_hash=hash_, job=recorded.get("job", ""), archive=recorded["archive"],
                           sha256=recorded.get("sha256"), tag=recorded.get("tag"))
        return state, _served(build, runtime_image, state)
    name = job_name(owner, hash_)
    job = kube.get("batch/v1", "Job", owner.namespace, name)
    if job is not None and not _usable(job, owner, build):
        log.info("replacing build Job %s/%s: it failed with other settings", owner.namespace, name)
        kube.delete("batch/v1", "Job", owner.namespace, name, propagation="Background")
        return BuildState("Building", "Building", f"restarting the build of {build.source.describe()} with the new settings",
                          source=build.source.describe(), source_hash=hash_, job=name), None
    if job is None:
        log.info("building %s/%s from %s (Job %s)", owner.namespace, owner.name, build.source.describe(), name)
        try:
            job = kube.create(build_job(build, owner, runtime_image, hash_, secrets.token_hex(4)))
        except ApiException as exc:
            if exc.status in (409, 429) or exc.status >= 500:
                raise  # transient: the next event or resync retries
            return BuildState("Failed", "BuildJobRejected", f"the API server refused build Job {name}: {kube.rejection(exc)}",
                              source=build.source.describe(), source_hash=hash_, job=name), None
        delete_builds(owner, keep=hash_, unfinished_only=True)  # superseded builds stop
    if not owner.controls(job):
        return BuildState("Failed", "ChildConflict", f"Job {name} exists and is not controlled by this ModelDeployment",
                          source=build.source.describe(), source_hash=hash_, job=name), None
    if content is not None and not (_condition(job, "Complete") or _condition(job, "Failed")):
        # The Job's pod mounts this copy (it waits until it exists).
        if kube.get("v1", "ConfigMap", owner.namespace, snapshot_name(name)) is None:
            kube.create(source_snapshot(job, content))
    pods = kube.list_pods(owner.namespace, f"batch.kubernetes.io/job-name={name}")
    state = build_state(build, job, pods, hash_, _age(job))
    if state.phase != "Succeeded":
        return state, None
    delete_builds(owner, keep=hash_)
    return state, _served(build, runtime_image, state)


def _usable(job: dict[str, Any], owner: Owner, build: BuildSource) -> bool:
    """False for a Job to replace: being deleted, or failed with a timeout or
    resources the spec has since changed (a retry the user asked for)."""
    meta = job.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    ran_with = (meta.get("annotations") or {}).get(ANNOTATION_SETTINGS)
    return not (_condition(job, "Failed") and owner.controls(job) and ran_with != settings_hash(build))


def delete_builds(owner: Owner, keep: Optional[str] = None, unfinished_only: bool = False) -> None:
    """Delete this model's build Jobs (and their pods) except ``keep``'s;
    with ``unfinished_only``, only those still running (superseded)."""
    for job in kube.list_objects("batch/v1", "Job", owner.namespace, f"{LABEL_BUILD_OF}={owner.name}"):
        labels = job["metadata"].get("labels") or {}
        if labels.get(LABEL_SOURCE_HASH) == keep or not owner.controls(job):
            continue
        if unfinished_only and (_condition(job, "Complete") or _condition(job, "Failed")):
            continue
        log.info("deleting build Job %s/%s", owner.namespace, job["metadata"]["name"])
        kube.delete("batch/v1", "Job", owner.namespace, job["metadata"]["name"], propagation="Background")
