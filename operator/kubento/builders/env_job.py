"""The Job that prepares an archive's Python environment, and the package
index settings every preparing pod gets (this Job and the build Job).

One Job per (archive, runtime image, index settings, store): models in a
namespace that serve the same archive share it; models whose bentos have the
same dependency set share the environment it stores (keyed by the
requirements, see kubento.runtime.environment). The pod passes Pod Security
"restricted" and mounts no API token; its steps (kubento.builders.one_shot)
hold these credentials:

  plan      the archive's Secret   fetch the archive, read its requirements, look in the store
  download  the index's Secret     pip resolves and downloads (it prepares a source
                                   distribution's metadata here: with onlyBinary no
                                   package code runs in this step)
  install   none                   pip installs from the downloads only (builds sdists)
  upload    the archive's Secret   store the packed environment

Model pods only fetch the packed result: they never see the index credentials.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import PackageIndex, PythonEnvironment
from kubento.builders.bento import (
    RUNTIME_DIR,
    WORK_DIR,
    WORK_VOLUME,
    ServedBento,
    pvc_location,
    pvc_mount,
    pvc_volume,
    registry_env,
    registry_mounts,
    registry_volumes,
)
from kubento.builders.meta import Owner, app_labels, digest, with_applied_hash
from kubento.builders.one_shot import one_shot_job, step
from kubento.builders.validate import validated

LABEL_BUILD_OF = f"{api.GROUP}/build-of"  # the model that created it (the cache groups it there)
LABEL_ENV_SOURCE = f"{api.GROUP}/environment-source"
ANNOTATION_SETTINGS = f"{api.GROUP}/build-settings"
COMPONENT = "bento-environment"
ENV_STEPS = ("plan", "download", "install", "upload")
CA_VOLUME = "index-ca"
CA_DIR = f"{RUNTIME_DIR}/index-ca"
JOB_PREFIX = "kubento-env-"


def index_of(python: Optional[PythonEnvironment], default: Optional[dict[str, Any]]) -> Optional[PackageIndex]:
    """The package index in force: the spec's, else the operator's default."""
    if python is not None and python.index is not None:
        return python.index
    return PackageIndex.model_validate(default) if default else None


def index_wire(index: Optional[PackageIndex]) -> Optional[dict[str, Any]]:
    return index.wire() if index is not None else None


def index_env(index: Optional[PackageIndex]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, volumes, mounts) that give a step the index settings: as JSON,
    and the CA bundle as a file. No credential (see index_credentials)."""
    if index is None:
        return [], [], []
    settings = {"url": index.url, "extraUrls": index.extra_urls, "onlyBinary": index.only_binary}
    env: list[dict[str, Any]] = [{"name": "KUBENTO_INDEX", "value": json.dumps({k: v for k, v in settings.items() if v})}]
    volumes, mounts = [], []
    if index.ca_bundle is not None:
        volumes.append({"name": CA_VOLUME, "configMap": {"name": index.ca_bundle.config_map,
                                                          "items": [{"key": index.ca_bundle.key, "path": "ca.crt"}]}})
        mounts.append({"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True})
        env.append({"name": "KUBENTO_INDEX_CA", "value": f"{CA_DIR}/ca.crt"})
    return env, volumes, mounts


def index_credentials(index: Optional[PackageIndex]) -> list[dict[str, Any]]:
    """The index's user name and password from its Secret: the download
    step's alone (a missing Secret or key stops that step with
    CreateContainerConfigError, which the model's status names)."""
    if index is None or index.secret_ref is None:
        return []
    return [{"name": var, "valueFrom": {"secretKeyRef": {"name": index.secret_ref.name, "key": key}}}
            for var, key in (("KUBENTO_INDEX_USERNAME", "username"), ("KUBENTO_INDEX_PASSWORD", "password"))]


def work_mounts() -> list[dict[str, Any]]:
    return [{"name": WORK_VOLUME, "mountPath": WORK_DIR}]


def package_steps(image: str, index: Optional[PackageIndex], resources: Optional[dict[str, Any]]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The download and install steps (the same in build and environment
    Jobs), and the volumes they add."""
    ienv, ivolumes, imounts = index_env(index)
    settings = [e for e in ienv if e["name"] == "KUBENTO_INDEX"]
    download = step("download", image, ienv + index_credentials(index), work_mounts() + imounts, resources)
    install = step("install", image, settings, work_mounts(), resources)
    return [download, install], ivolumes


def resources_of(python_or_build: Any) -> Optional[dict[str, Any]]:
    res = getattr(python_or_build, "resources", None) if python_or_build is not None else None
    if res is None:
        return None
    return {key: {name: str(q) for name, q in getattr(res, key).items()}
            for key in ("requests", "limits") if getattr(res, key)} or None


def archive_store(uri: str) -> Optional[str]:
    """Where an archive's environment is kept: beside it (s3 and pvc; an
    http(s) archive has no store)."""
    if not uri.startswith(("s3://", "pvc://")):
        return None
    head, _, _ = uri.rpartition("/")
    return head if head.count("/") >= 2 and not head.endswith(":/") else None


def env_source(bento: ServedBento, index: Optional[PackageIndex]) -> str:
    """What an archive's environment is prepared from: a new archive, runtime
    image or index (or store credentials) is a new preparation."""
    what: dict[str, Any] = {"archive": bento.archive_uri, "sha256": bento.sha256, "image": bento.image,
                            "index": index_wire(index), "secret": bento.secret}
    if bento.oci:  # (only then: the other archives keep their Jobs' names)
        what["registry"] = bento.registry_settings()
    return digest(what, 16)


def job_name(source: str) -> str:
    return f"{JOB_PREFIX}{source}"


def settings_hash(python: Optional[PythonEnvironment]) -> str:
    """What a failed preparation may be retried with: a new timeout or resources."""
    if python is None:
        return digest({"timeout": 1800, "resources": None})
    return digest({"timeout": python.timeout_seconds,
                   "resources": python.resources.model_dump(mode="json") if python.resources else None})


def env_labels(owner: Owner, source: str) -> dict[str, str]:
    return {**app_labels(owner, COMPONENT), LABEL_BUILD_OF: owner.name, LABEL_ENV_SOURCE: source}


def is_env_job(job: dict[str, Any]) -> bool:
    return ((job.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component") == COMPONENT


def env_job(bento: ServedBento, owner: Owner, index: Optional[PackageIndex],
            python: Optional[PythonEnvironment]) -> dict[str, Any]:
    """The Job that prepares ``bento``'s environment (``bento.archive_uri`` is an archive)."""
    assert bento.archive_uri is not None
    source = env_source(bento, index)
    store = archive_store(bento.archive_uri)
    resources = resources_of(python)
    settings, _, _ = index_env(index)
    settings = [e for e in settings if e["name"] == "KUBENTO_INDEX"]
    where = [{"name": "KUBENTO_ARCHIVE_URI", "value": bento.archive_uri},
             {"name": "KUBENTO_SECRET_FIELD", "value": bento.secret_field}]
    if store:
        where.append({"name": "KUBENTO_ENV_STORE", "value": store})
    # The archive is fetched in the plan step: an oci:// one with the model's pull secrets (and CA).
    plan_env = where + [{"name": "KUBENTO_RUNTIME_IMAGE", "value": bento.image}] + settings + registry_env(bento)
    if bento.sha256:
        plan_env.append({"name": "KUBENTO_ARCHIVE_SHA256", "value": bento.sha256})
    volumes = [{"name": WORK_VOLUME, "emptyDir": {}}] + registry_volumes(bento)
    plan_mounts, upload_mounts = work_mounts() + registry_mounts(bento), work_mounts()
    if bento.archive_uri.startswith("pvc://"):
        claim = pvc_location(bento.archive_uri)[0]
        volumes.append(pvc_volume(claim, read_only=False))  # the upload writes the environment beside the archive
        plan_mounts.append(pvc_mount(claim, read_only=True))
        upload_mounts.append(pvc_mount(claim, read_only=False))
    packages, ivolumes = package_steps(bento.image, index, resources)
    steps = [step("plan", bento.image, plan_env, plan_mounts, resources, secret=bento.secret),
             *packages,
             step("upload", bento.image, where, upload_mounts, resources, secret=bento.secret)]
    labels = env_labels(owner, source)
    annotations = {f"{api.GROUP}/archive": bento.archive_uri, ANNOTATION_SETTINGS: settings_hash(python)}
    deadline = python.timeout_seconds if python is not None else 1800
    manifest = one_shot_job(job_name(source), owner, labels, annotations, deadline, steps, volumes + ivolumes)
    return validated(with_applied_hash(manifest))
