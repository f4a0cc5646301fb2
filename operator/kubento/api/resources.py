"""Compute resources of kubento's containers (model pods, build and environment Jobs).
Part of the ModelDeployment API (kubento.api.v1alpha1)."""

from __future__ import annotations


from pydantic import ConfigDict, Field, model_validator

from kubento.api.common import Model, Quantity, rules as _rules
from kubento.api.k8s import resource_rules


RESOURCE_RULES = resource_rules()


class Resources(Model):
    """Compute resources of each model server container. Keys are resource
    names: cpu, memory, ephemeral-storage, hugepages-<size>, or extended
    resources such as nvidia.com/gpu (whole numbers; requests, if set, must
    equal limits: they are not overcommitted)."""

    model_config = ConfigDict(json_schema_extra=_rules(*(r.entry() for r in RESOURCE_RULES)))

    requests: dict[str, Quantity] = Field(
        default_factory=dict, max_length=16, description="Minimum resources reserved, e.g. {cpu: 500m, memory: 1Gi}."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, max_length=16, description="Maximum resources, e.g. {memory: 2Gi, nvidia.com/gpu: 1}."
    )

    @model_validator(mode="after")
    def _kubernetes_rules(self) -> "Resources":
        wire = self.wire()
        for rule in RESOURCE_RULES:
            if not rule.ok(wire):
                raise ValueError(rule.message)
        return self
