"""What runs in the model server container: a ready image, or a runtime image
that imports a ``.bento`` archive when the pod starts.

The in-pod half is ``python -m kubento.runtime`` (operator/kubento/runtime),
shipped in the runtime image; the paths below are its contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from kubento import __version__
from kubento.builders.meta import digest

# spec.runtimeImage when unset: the runtime image of this kubento release (it
# carries kubento's in-pod helper, so it is tagged with kubento's version, like
# the operator). The operator's KUBENTO_RUNTIME_IMAGE (the chart's
# image.registry/image.tag, or runtimeImage) overrides it.
DEFAULT_RUNTIME_IMAGE = f"kubento.local/bentoml-runtime:{__version__}"

RUNTIME_DIR = "/var/lib/kubento"
BENTOML_HOME = f"{RUNTIME_DIR}/bentoml"  # emptyDir: the imported bento
WORK_DIR = f"{RUNTIME_DIR}/work"  # emptyDir: downloads, build directory
PVC_ROOT = f"{RUNTIME_DIR}/pvc"  # pvc://CLAIM/PATH is PVC_ROOT/CLAIM/PATH
SOURCE_DIR = f"{RUNTIME_DIR}/source"  # a build's project files
ENV_DIR = f"{RUNTIME_DIR}/env"  # emptyDir: the bento's Python environment, unpacked
ENV_SITE = f"{ENV_DIR}/site-packages"  # first on the server's PYTHONPATH
RUNTIME = ["python", "-m", "kubento.runtime"]
FETCH_CONTAINER = "fetch-bento"
BENTOML_HOME_VOLUME = "bentoml-home"
WORK_VOLUME = "work"
ENV_VOLUME = "python-env"


@dataclass(frozen=True)
class ServedBento:
    """The bento one revision serves."""

    image: str  # the container image that runs it
    archive_uri: Optional[str] = None  # None: the image itself contains the bento
    sha256: Optional[str] = None
    secret: Optional[str] = None  # Secret whose keys the fetcher gets as environment
    secret_field: str = "bento.archive.secretRef"  # named in the fetcher's credential hints
    env_uri: Optional[str] = None  # its Python environment (stored beside it, same Secret), if it needs one
    env_sha256: Optional[str] = None

    def describe(self) -> str:
        return self.archive_uri or self.image


def pvc_location(uri: str) -> tuple[str, str]:
    """pvc://claim/some/path -> (claim, "some/path")."""
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


def pvc_volume_name(claim: str) -> str:
    return f"pvc-{digest(claim, 12)}"


def pvc_volume(claim: str, read_only: bool) -> dict[str, Any]:
    return {"name": pvc_volume_name(claim), "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}


def pvc_mount(claim: str, read_only: bool) -> dict[str, Any]:
    return {"name": pvc_volume_name(claim), "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": read_only}


def secret_env(secret: Optional[str]) -> list[dict[str, Any]]:
    """All keys of the Secret as environment (only fetch and build containers get it)."""
    return [{"secretRef": {"name": secret}}] if secret else []


def runtime_env() -> list[dict[str, Any]]:
    return [
        {"name": "BENTOML_HOME", "value": BENTOML_HOME},
        {"name": "BENTOML_DO_NOT_TRACK", "value": "True"},
        {"name": "KUBENTO_WORK_DIR", "value": WORK_DIR},
        {"name": "KUBENTO_PVC_ROOT", "value": PVC_ROOT},
    ]


def scratch_volumes() -> list[dict[str, Any]]:
    return [{"name": BENTOML_HOME_VOLUME, "emptyDir": {}}, {"name": WORK_VOLUME, "emptyDir": {}}]


def scratch_mounts() -> list[dict[str, Any]]:
    return [
        {"name": BENTOML_HOME_VOLUME, "mountPath": BENTOML_HOME},
        {"name": WORK_VOLUME, "mountPath": WORK_DIR},
    ]


def fetch_container(bento: ServedBento, security_context: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
    """The init container that downloads the archive and ``bentoml import``s it
    into BENTOML_HOME; a failure's cause is its termination message."""
    assert bento.archive_uri is not None
    env = runtime_env() + [
        {"name": "KUBENTO_ARCHIVE_URI", "value": bento.archive_uri},
        {"name": "KUBENTO_SECRET_FIELD", "value": bento.secret_field},
    ]
    if bento.sha256:
        env.append({"name": "KUBENTO_ARCHIVE_SHA256", "value": bento.sha256})
    mounts = scratch_mounts()
    if bento.env_uri:
        env += [{"name": "KUBENTO_ENV_URI", "value": bento.env_uri}, {"name": "KUBENTO_ENV_DIR", "value": ENV_DIR}]
        if bento.env_sha256:
            env.append({"name": "KUBENTO_ENV_SHA256", "value": bento.env_sha256})
        mounts.append(env_mount())
    if bento.archive_uri.startswith("pvc://"):
        mounts.append(pvc_mount(pvc_location(bento.archive_uri)[0], read_only=True))
    container = {
        "name": FETCH_CONTAINER,
        "image": bento.image,
        "command": RUNTIME + ["fetch"],
        "env": env,
        "volumeMounts": mounts,
        "resources": resources,
        "securityContext": security_context,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if bento.secret:
        container["envFrom"] = secret_env(bento.secret)
    return container


def env_mount() -> dict[str, Any]:
    return {"name": ENV_VOLUME, "mountPath": ENV_DIR}


def server_env(bento: ServedBento) -> list[dict[str, Any]]:
    """The model server's own variables for its bento: the environment's
    packages first on the import path."""
    return [{"name": "PYTHONPATH", "value": ENV_SITE}] if bento.env_uri else []


def server_mounts(bento: ServedBento) -> list[dict[str, Any]]:
    return [env_mount()] if bento.env_uri else []


def archive_volumes(bento: ServedBento) -> list[dict[str, Any]]:
    volumes = scratch_volumes()
    if bento.env_uri:
        volumes.append({"name": ENV_VOLUME, "emptyDir": {}})
    if bento.archive_uri and bento.archive_uri.startswith("pvc://"):
        volumes.append(pvc_volume(pvc_location(bento.archive_uri)[0], read_only=True))
    return volumes
