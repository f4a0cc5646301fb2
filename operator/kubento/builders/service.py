"""The Service in front of the model's pods."""

from __future__ import annotations

from typing import Any, Optional

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.deployment import PORT_NAME
from kubento.builders.meta import LABEL_REVISION, Owner, object_meta, preview_name, selector_labels, with_applied_hash
from kubento.builders.validate import validated

SERVICE_PORT = 80


def service(spec: ModelDeploymentSpec, owner: Owner, revision: Optional[str] = None,
            name: Optional[str] = None) -> dict[str, Any]:
    """The model's Service: all its pods, or only those of ``revision``
    (which is how a rollout moves traffic without a router)."""
    selector = selector_labels(owner)
    if revision is not None:
        selector = {**selector, LABEL_REVISION: revision}
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(owner, name or owner.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }
    return validated(with_applied_hash(manifest))


def preview_service(spec: ModelDeploymentSpec, owner: Owner, revision: str) -> dict[str, Any]:
    """BlueGreen: ``<name>-preview`` selects the new revision before the switch
    (and the serving one otherwise), to try it before it takes traffic."""
    return service(spec, owner, revision, name=preview_name(owner))
