"""spec.services: settings of the BentoML services of a multi-service bento
other than the entry (kubento.builders.graph). Part of the ModelDeployment API
(kubento.api.v1alpha1)."""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import ConfigDict, Field

from kubento.api.common import Model, cel, rules as _rules
from kubento.api.resources import Resources

SERVICE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"  # a BentoML service's name: its class's
SERVICE_NAME_RE = re.compile(SERVICE_NAME)
SERVICE_KEYS_RULE = cel(
    f"self.all(k, k.matches('{SERVICE_NAME}'))",
    "services are keyed by the BentoML service's name (its class name, e.g. Model)",
    message_expression=f"'services: ' + self.filter(k, !k.matches('{SERVICE_NAME}'))[0] + "
                       "' is not a BentoML service name (its class name, e.g. Model)'",
)


class ServiceAutoscaling(Model):
    """A HorizontalPodAutoscaler on the service's own Deployment (each revision's)."""

    model_config = ConfigDict(json_schema_extra=_rules(
        cel("self.minReplicas <= self.maxReplicas", "minReplicas must be less than or equal to maxReplicas",
            ".minReplicas")))

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    metric: Literal["cpu", "memory"] = Field(default="cpu", description="What to scale on.")
    target: int = Field(default=80, ge=1, le=1000,
                        description="Average utilization, in percent of the service's request of the metric.")


class ServiceSettings(Model):
    """One BentoML service's own settings (the entry's are the model's own fields)."""

    model_config = ConfigDict(json_schema_extra=_rules(
        cel("!has(self.replicas) || !has(self.autoscaling)", "replicas and autoscaling exclude each other",
            ".replicas")))

    replicas: Optional[int] = Field(
        default=None, ge=0, le=1000,
        description="Its pods (default: as many as the entry service has at the time).")
    autoscaling: Optional[ServiceAutoscaling] = Field(
        default=None, description="Scale it by its own CPU or memory use instead (its resources must request it).")
    resources: Optional[Resources] = Field(
        default=None, description="Its container's resources (default: what the service declares in the bento).")
