"""In-cluster builds (``bento.build``): one Job per source version.

``build_state`` reads a Job and its pod into a BuildState (pure); ``sync_build``
is the I/O: hash the source, create the Job if it is missing, and once a
build succeeded delete the Jobs of older source versions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Optional

from kubento.api.v1alpha1 import BuildSource
from kubento.builders.bento import ServedBento
from kubento.builders.build_job import (
    BUILD_CONTAINER,
    LABEL_BUILD_OF,
    LABEL_SOURCE_HASH,
    archive_uri,
    build_job,
    job_name,
    source_hash,
)
from kubento.builders.meta import Owner
from kubento.controller import kube
from kubento.controller.status import pod_problems

log = logging.getLogger("kubento.build")


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
            if self.tag:
                out["tag"] = self.tag
        return out


def _condition(job: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return {}


def _termination(pods: list[dict[str, Any]]) -> str:
    """The build container's termination message (the helper's summary, or
    the tail of its log), from the newest pod."""
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            if cs.get("name") == BUILD_CONTAINER and terminated:
                return (terminated.get("message") or "").strip()
    return ""


def build_state(build: BuildSource, job: dict[str, Any], pods: list[dict[str, Any]], archive: str, hash_: str) -> BuildState:
    name = job["metadata"]["name"]
    base = {"source": build.source.describe(), "source_hash": hash_, "job": name, "archive": archive}
    if _condition(job, "Complete"):
        result: dict[str, Any] = {}
        try:
            result = json.loads(_termination(pods) or "{}")
        except ValueError:
            pass
        tag = result.get("tag") if isinstance(result, dict) else None
        sha = result.get("sha256") if isinstance(result, dict) else None
        return BuildState("Succeeded", "BuildSucceeded", f"built {tag or 'the bento'} from {base['source']} (Job {name})",
                          sha256=sha, tag=tag, **base)
    failed = _condition(job, "Failed")
    if failed:
        if failed.get("reason") == "DeadlineExceeded":
            return BuildState("Failed", "BuildTimedOut",
                              f"Job {name} ran longer than timeoutSeconds ({build.timeout_seconds}s) and was stopped", **base)
        tail = _termination(pods) or failed.get("message") or "the build pod failed"
        return BuildState("Failed", "BuildFailed", f"Job {name} failed: {tail}", **base)
    stuck = pod_problems(pods)
    if stuck:
        return BuildState("Building", stuck[0].reason, f"Job {name}: {stuck[0].message}", **base)
    return BuildState("Building", "Building", f"building {base['source']} (Job {name})", **base)


def _content(build: BuildSource, namespace: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """The project files kubento can see (a ConfigMap's data), or why not."""
    if build.source.config_map is None:
        return None, None  # pvc and git: hashed by where they point
    cm = kube.get("v1", "ConfigMap", namespace, build.source.config_map.name)
    if cm is None:
        return None, f"ConfigMap {build.source.config_map.name} (bento.build.source.configMap) does not exist in namespace {namespace}"
    return {"data": cm.get("data") or {}, "binaryData": cm.get("binaryData") or {}}, None


def sync_build(build: BuildSource, owner: Owner, runtime_image: str) -> tuple[BuildState, Optional[ServedBento]]:
    """Make sure the current source is built; return its state and, once
    built, the archive to serve."""
    content, missing = _content(build, owner.namespace)
    if missing:
        return BuildState("Failed", "SourceNotFound", missing, source=build.source.describe()), None
    hash_ = source_hash(build, runtime_image, content)
    name = job_name(owner, hash_)
    uri = archive_uri(build, owner, hash_)
    job = kube.get("batch/v1", "Job", owner.namespace, name)
    if job is None:
        log.info("building %s/%s from %s (Job %s)", owner.namespace, owner.name, build.source.describe(), name)
        job = kube.create(build_job(build, owner, runtime_image, hash_))
    pods = kube.list_pods(owner.namespace, f"batch.kubernetes.io/job-name={name}")
    state = build_state(build, job, pods, uri, hash_)
    if state.phase != "Succeeded":
        return state, None
    delete_builds(owner, keep=hash_)
    secret = build.output.secret_ref.name if build.output.secret_ref else None
    return state, ServedBento(runtime_image, archive_uri=uri, sha256=state.sha256, secret=secret,
                              secret_field="bento.build.output.secretRef")


def delete_builds(owner: Owner, keep: Optional[str] = None) -> None:
    """Delete this model's build Jobs (and their pods) except ``keep``'s."""
    for job in kube.list_objects("batch/v1", "Job", owner.namespace, f"{LABEL_BUILD_OF}={owner.name}"):
        labels = job["metadata"].get("labels") or {}
        if labels.get(LABEL_SOURCE_HASH) != keep:
            log.info("deleting old build Job %s/%s", owner.namespace, job["metadata"]["name"])
            kube.delete("batch/v1", "Job", owner.namespace, job["metadata"]["name"], propagation="Background")
