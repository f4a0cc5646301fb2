"""The Job that builds a BentoML project into a ``.bento`` archive.

One Job per source version: its name carries the source hash, so a changed
source is a new Job and an unchanged one never builds twice. The pod runs as
the runtime image's unprivileged user and passes Pod Security "restricted".
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import BuildSource, PackageIndex
from kubento.builders.bento import (
    RUNTIME,
    SOURCE_DIR,
    pvc_location,
    pvc_mount,
    pvc_volume,
    runtime_env,
    scratch_mounts,
    scratch_volumes,
    secret_env,
)
from kubento.builders.deployment import CONTAINER_SECURITY
from kubento.builders.env_job import index_env
from kubento.builders.meta import Owner, app_labels, digest, with_applied_hash
from kubento.builders.one_shot import one_shot_job
from kubento.builders.validate import validated

LABEL_BUILD_OF = f"{api.GROUP}/build-of"
LABEL_SOURCE_HASH = f"{api.GROUP}/source-hash"
ANNOTATION_ARCHIVE = f"{api.GROUP}/archive"  # where this Job writes its archive
ANNOTATION_SETTINGS = f"{api.GROUP}/build-settings"  # timeout and resources it ran with
BUILD_CONTAINER = "build"
SOURCE_VOLUME = "source"
MAX_NAME = 63  # Job names end up in pod labels


def source_hash(build: BuildSource, runtime_image: str, content: Optional[dict[str, Any]],
                index: Optional[dict[str, Any]] = None) -> str:
    """Hash of what a build's result depends on: the project's files (when
    kubento can read them: a ConfigMap's data), where it comes from, the
    builder image, the output and the package index its environment is
    installed from."""
    wanted = {
        "source": build.source.model_dump(mode="json"),
        "content": content,
        "image": runtime_image,
        "output": build.output.uri,
    }
    if index:
        wanted["index"] = index
    return digest(wanted, 12)


def settings_hash(build: BuildSource) -> str:
    """What a failed build may be retried with: a new timeout or resources."""
    return digest({"timeout": build.timeout_seconds, "resources": build.resources.model_dump(mode="json") if build.resources else None})


def job_name(owner: Owner, hash_: str) -> str:
    # The owner's uid is in the hash: two models whose names share a prefix,
    # or a model recreated under the same name, never share a Job.
    suffix = f"-build-{digest([owner.uid, hash_], 8)}"
    return owner.name[: MAX_NAME - len(suffix)] + suffix


def archive_uri(build: BuildSource, owner: Owner, hash_: str, build_id: str) -> str:
    """Where one build stores its archive: unique per build, so a rebuild
    never overwrites an archive that pods may still fetch."""
    return f"{build.output.uri.rstrip('/')}/{owner.namespace}-{owner.name}-{hash_}-{build_id}.bento"


def build_labels(owner: Owner, hash_: str) -> dict[str, str]:
    # Not the model's selector label: a running build pod must never receive
    # the Service's traffic.
    return {**app_labels(owner, "bento-builder"), LABEL_BUILD_OF: owner.name, LABEL_SOURCE_HASH: hash_}


def snapshot_name(job: str) -> str:
    return f"{job}-source"


def source_snapshot(job: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    """An immutable copy of the ConfigMap content that was hashed, owned by
    its Job: the build reads exactly what its name promises, even if the
    user's ConfigMap changes while the pod is pending."""
    meta = job["metadata"]
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": snapshot_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": dict(meta.get("labels") or {}),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"]}],
        },
        "immutable": True,
    }
    if content.get("data"):
        manifest["data"] = content["data"]
    if content.get("binaryData"):
        manifest["binaryData"] = content["binaryData"]
    return manifest


def _source(build: BuildSource, job: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, volumes, mounts) that give the build container its project."""
    src = build.source
    if src.config_map:
        volume = {"name": SOURCE_VOLUME, "configMap": {"name": snapshot_name(job)}}
        mount = {"name": SOURCE_VOLUME, "mountPath": SOURCE_DIR, "readOnly": True}
        return [{"name": "KUBENTO_SOURCE_DIR", "value": SOURCE_DIR}], [volume], [mount]
    if src.pvc:
        claim = src.pvc.claim_name
        path = f"{pvc_mount(claim, True)['mountPath']}/{src.pvc.path.strip('/')}".rstrip("/")
        return [{"name": "KUBENTO_SOURCE_DIR", "value": path}], [pvc_volume(claim, True)], [pvc_mount(claim, True)]
    assert src.git is not None
    env = [
        {"name": "KUBENTO_GIT_URL", "value": src.git.url},
        {"name": "KUBENTO_GIT_REF", "value": src.git.ref},
        {"name": "KUBENTO_GIT_PATH", "value": src.git.path},
    ]
    if src.git.secret_ref:
        for var, key in (("GIT_USERNAME", "username"), ("GIT_PASSWORD", "password")):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": src.git.secret_ref.name, "key": key, "optional": True}}})
    return env, [], []


def build_job(build: BuildSource, owner: Owner, runtime_image: str, hash_: str, build_id: str,
              index: Optional[PackageIndex] = None) -> dict[str, Any]:
    env, volumes, mounts = _source(build, job_name(owner, hash_))
    archive = archive_uri(build, owner, hash_, build_id)
    # The bento's Python environment is prepared in the same pod, kept beside
    # the archives (<output>/envs/<key>.tar.gz).
    ienv, ivolumes, imounts = index_env(index)
    env = runtime_env() + env + [{"name": "KUBENTO_OUTPUT_URI", "value": archive},
                                 {"name": "KUBENTO_ENV_STORE", "value": build.output.uri.rstrip("/")},
                                 {"name": "KUBENTO_RUNTIME_IMAGE", "value": runtime_image}] + ienv
    volumes = scratch_volumes() + volumes + ivolumes
    mounts = scratch_mounts() + mounts + imounts
    if build.output.uri.startswith("pvc://"):
        claim = pvc_location(build.output.uri)[0]
        # The same claim may hold the source (read-only) too: one writable volume then.
        volumes = [v for v in volumes if v.get("persistentVolumeClaim", {}).get("claimName") != claim]
        mounts = [m for m in mounts if m["mountPath"] != pvc_mount(claim, False)["mountPath"]]
        volumes.append(pvc_volume(claim, read_only=False))
        mounts.append(pvc_mount(claim, read_only=False))
    container: dict[str, Any] = {
        "name": BUILD_CONTAINER,
        "image": runtime_image,
        "command": RUNTIME + ["build"],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        # The build log's tail becomes the failure message users see in status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if build.output.secret_ref:
        container["envFrom"] = secret_env(build.output.secret_ref.name)
    if build.resources is not None:
        container["resources"] = {
            key: {name: str(q) for name, q in getattr(build.resources, key).items()}
            for key in ("requests", "limits") if getattr(build.resources, key)
        }
    labels = build_labels(owner, hash_)
    annotations = {
        f"{api.GROUP}/source": build.source.describe(),
        ANNOTATION_ARCHIVE: archive,
        ANNOTATION_SETTINGS: settings_hash(build),
    }
    manifest = one_shot_job(job_name(owner, hash_), owner, labels, annotations, build.timeout_seconds,
                            container, volumes)
    return validated(with_applied_hash(manifest))
