"""The Service in front of the model's pods."""

from __future__ import annotations

from typing import Any

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.deployment import PORT_NAME
from kubento.builders.meta import Owner, object_meta, selector_labels, with_applied_hash
from kubento.builders.validate import validated

SERVICE_PORT = 80


def service(spec: ModelDeploymentSpec, owner: Owner) -> dict[str, Any]:
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(owner, owner.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner),
            "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }
    return validated(with_applied_hash(manifest))
