"""The Job that builds a BentoML project into a ``.bento`` archive.

One Job per source version: its name carries the source hash, so a changed
source is a new Job and an unchanged one never builds twice. The pod runs as
the runtime image's unprivileged user and passes Pod Security "restricted".
Its steps (kubento.builders.one_shot), one container each, hold these
credentials — none where code kubento did not write runs:

  source    git.secretRef (a git source)   the project into the work volume
  build     none                           bentoml build: the project's own code
  plan      output.secretRef               what the environment needs; in the store?
  download  python.index.secretRef         pip resolves and downloads (it prepares a
                                           source distribution's metadata here: with
                                           onlyBinary no package code runs in this step)
  install   none                           pip installs from the downloads (builds sdists)
  upload    output.secretRef               the archive and the environment; the result

The source volume (ConfigMap snapshot or PVC) is mounted in the source step
only; an output PVC only in the plan (read-only) and upload steps.
"""

from __future__ import annotations

from typing import Any, Optional

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import BuildSource, PackageIndex
from kubento.builders.bento import (
    BENTOML_HOME,
    BENTOML_HOME_VOLUME,
    SOURCE_DIR,
    pvc_location,
    pvc_mount,
    pvc_volume,
    scratch_volumes,
)
from kubento.builders.env_job import index_env, package_steps, resources_of, work_mounts
from kubento.builders.meta import Owner, app_labels, digest, with_applied_hash
from kubento.builders.one_shot import one_shot_job, step
from kubento.builders.validate import validated

LABEL_BUILD_OF = f"{api.GROUP}/build-of"
LABEL_SOURCE_HASH = f"{api.GROUP}/source-hash"
ANNOTATION_ARCHIVE = f"{api.GROUP}/archive"  # where this Job writes its archive
ANNOTATION_SETTINGS = f"{api.GROUP}/build-settings"  # timeout and resources it ran with
BUILD_CONTAINER = "build"  # the step that runs bentoml build (`kubectl logs job/NAME` shows it)
BUILD_STEPS = ("source", BUILD_CONTAINER, "plan", "download", "install", "upload")
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
    """(env, volumes, mounts) that give the source step its project."""
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
    name = job_name(owner, hash_)
    senv, svolumes, smounts = _source(build, name)
    archive = archive_uri(build, owner, hash_, build_id)
    resources = resources_of(build)
    secret = build.output.secret_ref.name if build.output.secret_ref else None
    # The bento's Python environment is prepared in the same pod, kept beside
    # the archives (<output>/envs/<key>.tar.gz).
    store = {"name": "KUBENTO_ENV_STORE", "value": build.output.uri.rstrip("/")}
    settings = [e for e in index_env(index)[0] if e["name"] == "KUBENTO_INDEX"]
    volumes = scratch_volumes() + svolumes
    plan_mounts, upload_mounts = work_mounts(), work_mounts()
    if build.output.uri.startswith("pvc://"):
        claim = pvc_location(build.output.uri)[0]
        # The same claim may hold the source too: one volume, mounted read-only by the source step.
        volumes = [v for v in volumes if v.get("persistentVolumeClaim", {}).get("claimName") != claim]
        volumes.append(pvc_volume(claim, read_only=False))
        plan_mounts.append(pvc_mount(claim, read_only=True))
        upload_mounts.append(pvc_mount(claim, read_only=False))
    packages, ivolumes = package_steps(runtime_image, index, resources)
    steps = [
        step("source", runtime_image, senv, work_mounts() + smounts, resources),
        step(BUILD_CONTAINER, runtime_image, [], work_mounts() + [{"name": BENTOML_HOME_VOLUME, "mountPath": BENTOML_HOME}],
             resources),
        step("plan", runtime_image, [store, {"name": "KUBENTO_RUNTIME_IMAGE", "value": runtime_image}] + settings,
             plan_mounts, resources, secret=secret),
        *packages,
        step("upload", runtime_image, [{"name": "KUBENTO_OUTPUT_URI", "value": archive}, store], upload_mounts,
             resources, secret=secret),
    ]
    labels = build_labels(owner, hash_)
    annotations = {
        f"{api.GROUP}/source": build.source.describe(),
        ANNOTATION_ARCHIVE: archive,
        ANNOTATION_SETTINGS: settings_hash(build),
    }
    manifest = one_shot_job(name, owner, labels, annotations, build.timeout_seconds, steps, volumes + ivolumes,
                            logs_of=BUILD_CONTAINER)
    return validated(with_applied_hash(manifest))
