"""The ModelDeployment API (serving.kubento.io/v1alpha1): pydantic models are the
single source of truth; crds/ is generated from them by :mod:`kubento.api.crd`."""

from kubento.api.v1alpha1 import (  # noqa: F401
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
