"""The Job that prepares an archive's Python environment, and the package
index settings every preparing pod gets (this Job and the build Job).

One Job per (archive, runtime image, index settings, store): models in a
namespace that serve the same archive share it; models whose bentos have the
same dependency set share the environment it stores (keyed by the
requirements, see kubento.runtime.environment). The pod passes Pod Security
"restricted", mounts no API token, and is the only pod that sees the index
credentials (model pods only fetch the packed result).
"""

from __future__ import annotations

import copy
import json
from typing import Any, Optional

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import PackageIndex, PythonEnvironment
from kubento.builders.bento import (
    RUNTIME,
    RUNTIME_DIR,
    ServedBento,
    pvc_location,
    pvc_mount,
    pvc_volume,
    registry_env,
    registry_mounts,
    registry_volumes,
    runtime_env,
    scratch_mounts,
    scratch_volumes,
    secret_env,
)
from kubento.builders.deployment import CONTAINER_SECURITY
from kubento.builders.meta import Owner, app_labels, digest, with_applied_hash
from kubento.builders.one_shot import one_shot_job
from kubento.builders.validate import validated

LABEL_BUILD_OF = f"{api.GROUP}/build-of"  # the model that created it (the cache groups it there)
LABEL_ENV_SOURCE = f"{api.GROUP}/environment-source"
ANNOTATION_SETTINGS = f"{api.GROUP}/build-settings"
COMPONENT = "bento-environment"
ENV_CONTAINER = "prepare"
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
    """(env, volumes, mounts) that give a preparing container the index:
    settings as JSON, the CA bundle as a file, credentials from the Secret."""
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
    if index.secret_ref is not None:
        for var, key in (("KUBENTO_INDEX_USERNAME", "username"), ("KUBENTO_INDEX_PASSWORD", "password")):
            env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": index.secret_ref.name, "key": key}}})
    return env, volumes, mounts


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
    env = runtime_env() + [
        {"name": "KUBENTO_ARCHIVE_URI", "value": bento.archive_uri},
        {"name": "KUBENTO_SECRET_FIELD", "value": bento.secret_field},
        {"name": "KUBENTO_RUNTIME_IMAGE", "value": bento.image},
    ]
    if bento.sha256:
        env.append({"name": "KUBENTO_ARCHIVE_SHA256", "value": bento.sha256})
    if store:
        env.append({"name": "KUBENTO_ENV_STORE", "value": store})
    ienv, volumes, mounts = index_env(index)
    env += ienv + registry_env(bento)
    volumes = scratch_volumes() + volumes + registry_volumes(bento)
    mounts = scratch_mounts() + mounts + registry_mounts(bento)
    if bento.archive_uri.startswith("pvc://"):
        claim = pvc_location(bento.archive_uri)[0]
        volumes.append(pvc_volume(claim, read_only=False))  # it writes the environment beside the archive
        mounts.append(pvc_mount(claim, read_only=False))
    container: dict[str, Any] = {
        "name": ENV_CONTAINER,
        "image": bento.image,
        "command": RUNTIME + ["prepare"],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if bento.secret:
        container["envFrom"] = secret_env(bento.secret)
    if python is not None and python.resources is not None:
        container["resources"] = {
            key: {name: str(q) for name, q in getattr(python.resources, key).items()}
            for key in ("requests", "limits") if getattr(python.resources, key)
        }
    labels = env_labels(owner, source)
    annotations = {f"{api.GROUP}/archive": bento.archive_uri, ANNOTATION_SETTINGS: settings_hash(python)}
    deadline = python.timeout_seconds if python is not None else 1800
    manifest = one_shot_job(job_name(source), owner, labels, annotations, deadline, container, volumes)
    return validated(with_applied_hash(manifest))
