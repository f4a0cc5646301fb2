"""spec.environment (and a build's): the Python environment kubento installs a bento's
packages into, its package index and CA bundle. Part of the ModelDeployment API."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import ConfigDict, Field, model_validator

from kubento.api.common import DNS_SUBDOMAIN_PATTERN, Model, SecretReference, cel, rules as _rules
from kubento.api.resources import Resources


class CABundle(Model):
    """A CA bundle (PEM) in a ConfigMap of the ModelDeployment's namespace."""

    config_map: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the ConfigMap."
    )
    key: str = Field(
        default="ca.crt", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key of the ConfigMap that holds the PEM bundle.",
    )


class PackageIndex(Model):
    """The Python package index the bento's packages are installed from
    (pip's --index-url, --extra-index-url, --cert, --only-binary). Part of
    the environment's key: changing it prepares a new environment."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            cel("!has(self.secretRef) || has(self.url)", "secretRef needs url (credentials go to the index's host only)",
                ".secretRef"),
        )
    )

    url: Optional[str] = Field(
        default=None,
        pattern=r"^https?://[^\s@]+$",
        max_length=2048,
        description=(
            "Index URL (PEP 503 simple API), e.g. https://pypi.internal/simple. Unset: pip's default (pypi.org). "
            "No credentials in the URL: use secretRef."
        ),
    )
    extra_urls: list[Annotated[str, Field(pattern=r"^https?://[^\s@]+$", max_length=2048)]] = Field(
        default_factory=list, max_length=8, description="More indexes to look in (pip's --extra-index-url)."
    )
    ca_bundle: Optional[CABundle] = Field(
        default=None, description="CA bundle to trust for the index (a private CA); only the preparation pod mounts it."
    )
    secret_ref: Optional[SecretReference] = Field(
        default=None,
        description=(
            "Secret with basic-auth credentials under the keys 'username' and 'password', sent to the host of url "
            "(and of extraUrls on that host) only. Only the preparation pod sees them; never the model pods."
        ),
    )
    only_binary: bool = Field(
        default=False,
        description=(
            "Install wheels only, never build from a source distribution (pip --only-binary :all:): the runtime "
            "image has no compiler, and building runs the package's own setup code."
        ),
    )

    @model_validator(mode="after")
    def _auth_needs_url(self) -> "PackageIndex":
        if self.secret_ref is not None and not self.url:
            raise ValueError("secretRef needs url (credentials go to the index's host only)")
        return self


class PythonEnvironment(Model):
    """How the bento's own Python packages are prepared. A bento whose
    requirements (bentofile python.packages / requirements_txt, locked by
    bentoml build when lock_packages is on) are not all in the runtime image
    gets an environment: installed once, with the runtime image's Python, by
    an unprivileged Job (the build Job for bento.build), packed and stored
    beside the bento (s3 or pvc), shared by every model with the same
    dependency set, unpacked by each model pod next to the bento."""

    index: Optional[PackageIndex] = Field(
        default=None, description="Package index settings (default: the operator's, chart value packageIndex)."
    )
    timeout_seconds: int = Field(
        default=1800, ge=60, le=86400, description="An environment Job running longer than this fails."
    )
    resources: Optional["Resources"] = Field(
        default=None, description="CPU and memory requests and limits of the environment Job's pod."
    )
