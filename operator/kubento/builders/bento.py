"""What runs in the model server container: a ready image, or a runtime image
that imports a ``.bento`` archive when the pod starts.

The in-pod half is ``python -m kubento.runtime`` (operator/kubento/runtime),
shipped in the runtime image; the paths below are its contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

from kubento import __version__
from kubento.builders.defaults import Gpus
from kubento.builders.meta import digest

if TYPE_CHECKING:
    from kubento.api.v1alpha1 import ArchiveSource, SecretReference

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
REGISTRY_VOLUME = "registry-auth"  # oci://: the pull secrets (and the CA), one projected volume
REGISTRY_DIR = f"{RUNTIME_DIR}/registry-auth"  # <dir>/<secret>/.dockerconfigjson; <dir>/ca/ca.crt


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
    # oci:// archives: the model's imagePullSecrets, the CA ConfigMap (name, key), plain HTTP
    pull_secrets: tuple[str, ...] = ()
    ca_bundle: Optional[tuple[str, str]] = None
    plain_http: bool = False
    # spec.monitoring as its pods are told (KUBENTO_MONITORING: the profile's buckets resolved), and what
    # its statistics are judged with (its Deployment's annotation): kubento.quality.profile.revision_monitoring
    monitoring: Optional[str] = None
    judged: Optional[str] = None
    # its BentoML services as its preparation read them (kubento.api.status.BentoServices, JSON): their
    # declared resources and timeouts are the pods' defaults (kubento.builders.defaults)
    services: Optional[str] = None
    gpus: Gpus = Gpus()  # what a GPU is on this cluster (the operator's configuration)
    # A bento split into one Deployment per BentoML service (kubento.builders.graph): the service this
    # server runs, the URLs of the others, and the token calls between them carry
    serve_service: Optional[str] = None
    depends: tuple[tuple[str, str], ...] = ()
    graph_token: Optional[str] = None
    guarded: bool = False  # a dependency service: it answers only calls with the token

    def describe(self) -> str:
        return self.archive_uri or self.image

    @property
    def oci(self) -> bool:
        return bool(self.archive_uri and self.archive_uri.startswith("oci://"))

    def registry_settings(self) -> dict[str, Any]:
        """What reaching the registry takes (part of what an environment is prepared from)."""
        if not self.oci:
            return {}
        return {"pullSecrets": list(self.pull_secrets), "caBundle": list(self.ca_bundle) if self.ca_bundle else None,
                "plainHTTP": self.plain_http}


def archive_bento(archive: "ArchiveSource", runtime: str, pull_secrets: "list[SecretReference]") -> ServedBento:
    """The bento of a ``bento.archive``: an oci:// one is fetched with the
    model's imagePullSecrets (the credentials the cluster pulls images with)."""
    secret = archive.secret_ref.name if archive.secret_ref else None
    base = ServedBento(runtime, archive_uri=archive.uri, sha256=archive.sha256, secret=secret)
    if not base.oci:
        return base
    ca = (archive.ca_bundle.config_map, archive.ca_bundle.key) if archive.ca_bundle else None
    return ServedBento(runtime, archive_uri=archive.uri, sha256=archive.sha256, secret=None,
                       pull_secrets=tuple(s.name for s in pull_secrets), ca_bundle=ca,
                       plain_http=bool(archive.plain_http))


def pinned(bento: ServedBento, archive: Optional[str]) -> ServedBento:
    """An oci:// bento as its pods fetch it: at the digest its tag resolved to
    when its environment was prepared (``archive``), so one revision never
    mixes two pushes of a tag."""
    if bento.oci and archive and archive.startswith("oci://") and "@sha256:" in archive:
        from dataclasses import replace

        return replace(bento, archive_uri=archive)
    return bento


def registry_env(bento: ServedBento) -> list[dict[str, Any]]:
    if not bento.oci:
        return []
    env = [{"name": "KUBENTO_OCI_AUTH_DIR", "value": REGISTRY_DIR},
           {"name": "KUBENTO_OCI_PULL_SECRETS", "value": ",".join(bento.pull_secrets)}]
    if bento.ca_bundle:
        env.append({"name": "KUBENTO_OCI_CA", "value": f"{REGISTRY_DIR}/.ca/ca.crt"})
    if bento.plain_http:
        env.append({"name": "KUBENTO_OCI_PLAIN_HTTP", "value": "true"})
    return env


def registry_volumes(bento: ServedBento) -> list[dict[str, Any]]:
    """One projected volume: each pull secret's Docker config under its name
    (optional: a missing Secret or key is named by the fetch), the CA."""
    if not bento.oci or not (bento.pull_secrets or bento.ca_bundle):
        return []
    sources: list[dict[str, Any]] = [
        {"secret": {"name": name, "optional": True,
                    "items": [{"key": key, "path": f"{name}/{key}"} for key in (".dockerconfigjson", ".dockercfg")]}}
        for name in bento.pull_secrets]
    if bento.ca_bundle:
        sources.append({"configMap": {"name": bento.ca_bundle[0], "items": [{"key": bento.ca_bundle[1],
                                                                             "path": ".ca/ca.crt"}]}})
    return [{"name": REGISTRY_VOLUME, "projected": {"sources": sources}}]


def registry_mounts(bento: ServedBento) -> list[dict[str, Any]]:
    if not registry_volumes(bento):
        return []
    return [{"name": REGISTRY_VOLUME, "mountPath": REGISTRY_DIR, "readOnly": True}]


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
    env += registry_env(bento)
    mounts = scratch_mounts() + registry_mounts(bento)
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
    out = [{"name": "PYTHONPATH", "value": ENV_SITE}] if bento.env_uri else []
    if bento.serve_service:
        out.append({"name": "BENTOML_SERVE_SERVICE_NAME", "value": bento.serve_service})
    if bento.depends:  # BentoML's own option (click splits it on spaces): NAME=URL ...
        out.append({"name": "BENTOML_SERVE_DEPENDS", "value": " ".join(f"{n}={u}" for n, u in bento.depends)})
    if bento.graph_token:
        # BentoML's client sends it as a bearer token on every call to a dependency; a dependency's
        # kubento helper (kubento.runtime.guard) refuses calls without it
        out.append({"name": "BENTO_CLOUD_API_KEY", "value": bento.graph_token})
        if bento.guarded:
            out.append({"name": "KUBENTO_GRAPH_TOKEN", "value": bento.graph_token})
    return out


def server_mounts(bento: ServedBento) -> list[dict[str, Any]]:
    return [env_mount()] if bento.env_uri else []


def archive_volumes(bento: ServedBento) -> list[dict[str, Any]]:
    volumes = scratch_volumes()
    if bento.env_uri:
        volumes.append({"name": ENV_VOLUME, "emptyDir": {}})
    if bento.archive_uri and bento.archive_uri.startswith("pvc://"):
        volumes.append(pvc_volume(pvc_location(bento.archive_uri)[0], read_only=True))
    return volumes + registry_volumes(bento)
