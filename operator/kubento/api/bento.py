"""spec.bento: where a model's bento comes from (an image, a .bento archive, a BentoML project
built in the cluster). Part of the ModelDeployment API (kubento.api.v1alpha1)."""

from __future__ import annotations

from typing import Optional

from pydantic import ConfigDict, Field, model_validator

from kubento.api.common import DNS_SUBDOMAIN_PATTERN, Model, SecretReference, cel, rules as _rules
from kubento.api.environment import CABundle
from kubento.api.resources import Resources


# oci://REGISTRY[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST] (kubento.runtime.oci parses the same shape)
OCI_URI_PATTERN = (r"oci://[A-Za-z0-9.-]+(:[0-9]+)?/[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
                   r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?")
ARCHIVE_URI_PATTERN = rf"^((s3|https?|pvc)://[^\s]+|{OCI_URI_PATTERN})$"


class ArchiveSource(Model):
    """A ``.bento`` archive written by ``bentoml export``, imported into the
    runtime image by an init container when each pod starts."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel("!has(self.caBundle) || self.uri.startsWith('oci://')", "caBundle applies to oci:// archives only"),
            cel("!has(self.plainHTTP) || !self.plainHTTP || self.uri.startsWith('oci://')",
                "plainHTTP applies to oci:// archives only"),
            cel("!has(self.secretRef) || !self.uri.startsWith('oci://')",
                "an oci:// archive is fetched with the ModelDeployment's imagePullSecrets, not secretRef"),
        )
    )

    uri: str = Field(
        pattern=ARCHIVE_URI_PATTERN,
        max_length=2048,
        description=(
            "Where the archive is: s3://bucket/key.bento, http(s)://host/path.bento, "
            "pvc://claim-name/path/in/volume.bento, or oci://registry/repository:tag (or @sha256:digest): a bento "
            "pushed to an OCI registry by `kubento push` or `kubento deploy`, fetched with the model's "
            "imagePullSecrets. A new URI (or sha256) is a new revision; replacing the object behind the same URI is "
            "not noticed (an oci:// tag is resolved to its digest once, when the bento's environment is prepared: "
            "status.environment.archive; its pods fetch that digest)."
        ),
    )
    sha256: Optional[str] = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        description="Expected SHA-256 of the archive (hex); pods refuse an archive that does not match.",
    )
    secret_ref: Optional[SecretReference] = Field(
        default=None,
        description=(
            "Secret whose keys become the fetcher's environment. s3: AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN, AWS_ENDPOINT_URL (S3-compatible "
            "stores) and AWS_REGION; http(s): HTTP_AUTHORIZATION (an Authorization header value). "
            "Only the init container that fetches sees them. Not for oci:// (imagePullSecrets)."
        ),
    )
    ca_bundle: Optional["CABundle"] = Field(
        default=None,
        description="oci://: the CA (PEM, in a ConfigMap) that signs the registry's certificate, trusted besides the "
        "public CAs.",
    )
    plain_http: Optional[bool] = Field(
        default=None, alias="plainHTTP",
        description="oci://: the registry speaks plain HTTP, not TLS (a registry for tests; never for credentials).",
    )

    @model_validator(mode="after")
    def _oci_only(self) -> "ArchiveSource":
        oci = self.uri.startswith("oci://")
        if self.ca_bundle is not None and not oci:
            raise ValueError("caBundle applies to oci:// archives only")
        if self.plain_http and not oci:
            raise ValueError("plainHTTP applies to oci:// archives only")
        if self.secret_ref is not None and oci:
            raise ValueError("an oci:// archive is fetched with the ModelDeployment's imagePullSecrets, not secretRef")
        return self


class ConfigMapProjectSource(Model):
    """A BentoML project (service.py, bentofile.yaml, ...) stored as ConfigMap
    keys, one file per key (a flat directory)."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="ConfigMap name.")


class PVCProjectSource(Model):
    """A BentoML project in a PersistentVolumeClaim."""

    claim_name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="PersistentVolumeClaim name."
    )
    path: str = Field(
        default="/",
        max_length=1024,
        # no whitespace, and no ".." segment (the build never leaves the volume); no look-ahead in
        # the API server's regular expressions: a segment is "." or starts with a non-dot, ".x" or "..x"
        pattern=r"^/*(([^/.\s][^/\s]*|\.[^/.\s][^/\s]*|\.\.[^/\s]+|\.)/+)*([^/.\s][^/\s]*|\.[^/.\s][^/\s]*|\.\.[^/\s]+|\.)?$",
        description=(
            "Directory of the project inside the volume ('..' is not allowed). kubento cannot see the files: "
            "change path (e.g. a versioned directory) to build again."
        ),
    )


class GitProjectSource(Model):
    """A BentoML project in a git repository."""

    url: str = Field(
        pattern=r"^(https?|git)://[^\s/@]+(/[^\s]*)?$",
        max_length=2048,
        description=(
            "Repository URL: https://, http:// or git:// (ssh is not supported). Credentials go in "
            "secretRef, never in the URL (it is shown in status and events)."
        ),
    )
    ref: str = Field(
        default="HEAD",
        max_length=256,
        description=(
            "Branch, tag or commit to build. A new ref is a new build; pin a commit or tag, "
            "since kubento does not poll branches."
        ),
    )
    path: str = Field(default=".", max_length=1024, description="Directory of the project inside the repository.")
    secret_ref: Optional[SecretReference] = Field(
        default=None, description="Secret with https credentials under the keys 'username' and 'password'."
    )


class ProjectSource(Model):
    """Where the BentoML project is. Set exactly one of configMap, pvc or git."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "[has(self.configMap), has(self.pvc), has(self.git)].filter(x, x).size() == 1",
                "exactly one of configMap, pvc or git must be set",
            )
        )
    )

    config_map: Optional[ConfigMapProjectSource] = Field(default=None, description="Project files from a ConfigMap.")
    pvc: Optional[PVCProjectSource] = Field(default=None, description="Project directory in a PVC.")
    git: Optional[GitProjectSource] = Field(default=None, description="Project in a git repository.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "ProjectSource":
        if sum(x is not None for x in (self.config_map, self.pvc, self.git)) != 1:
            raise ValueError("exactly one of configMap, pvc or git must be set")
        return self

    def describe(self) -> str:
        if self.config_map:
            return f"configMap {self.config_map.name}"
        if self.pvc:
            return f"pvc {self.pvc.claim_name}:{self.pvc.path}"
        assert self.git is not None
        return f"git {self.git.url}@{self.git.ref}:{self.git.path}"


class BuildOutput(Model):
    """Where build Jobs store the ``.bento`` archives they make (one object
    per source version, named <namespace>-<name>-<source hash>.bento)."""

    uri: str = Field(
        pattern=r"^(s3|pvc)://[^\s]+$",
        max_length=1024,
        description=(
            "s3://bucket/prefix or pvc://claim-name/directory. A claim is mounted read-write by the build "
            "and read-only by every model pod: use ReadWriteMany storage unless all run on one node."
        ),
    )
    secret_ref: Optional[SecretReference] = Field(
        default=None,
        description=(
            "Secret with the store's credentials (s3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "optional AWS_ENDPOINT_URL and AWS_REGION), for the build Job and for the pods that fetch."
        ),
    )


class BuildSource(Model):
    """A BentoML project (service.py + bentofile.yaml) that kubento builds in the
    cluster with an unprivileged Job (``bentoml build``, then ``bentoml export``
    to output) and then serves like an archive. A new build runs only when the
    source changes."""

    source: ProjectSource = Field(description="The project: exactly one of configMap, pvc or git.")
    output: BuildOutput = Field(description="Where the built archive is stored.")
    timeout_seconds: int = Field(
        default=1800, ge=60, le=86400, description="A build running longer than this fails."
    )
    resources: Optional["Resources"] = Field(
        default=None,
        description=(
            "CPU and memory requests and limits of the build pod (needed where a ResourceQuota "
            "requires them; by default it sets none)."
        ),
    )


class BentoSource(Model):
    """The BentoML service to serve. Set exactly one of image, archive or build."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel(
                "[has(self.image), has(self.archive), has(self.build)].filter(x, x).size() == 1",
                "exactly one of image, archive or build must be set",
            )
        )
    )

    image: Optional[str] = Field(
        default=None,
        min_length=1,
        max_length=1024,
        pattern=r"^\S+$",
        description="A container image made by `bentoml containerize` (e.g. registry/iris:1.0).",
    )
    archive: Optional[ArchiveSource] = Field(
        default=None, description="A .bento archive (bentoml export), imported into runtimeImage at pod start."
    )
    build: Optional[BuildSource] = Field(
        default=None, description="A BentoML project that kubento builds into a .bento archive in the cluster."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "BentoSource":
        if sum(x is not None for x in (self.image, self.archive, self.build)) != 1:
            raise ValueError("exactly one of image, archive or build must be set")
        return self

    @property
    def kind(self) -> str:
        return "image" if self.image else "archive" if self.archive else "build"
