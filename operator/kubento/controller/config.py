"""What ``kubento run`` is told: the operator's configuration, read once.

The chart passes it as environment variables (``KUBENTO_*``); ``kubento run``'s
arguments override them. Nothing else in the operator reads the environment.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from pydantic import ValidationError

from kubento.api.v1alpha1 import PackageIndex
from kubento.builders.bento import DEFAULT_RUNTIME_IMAGE
from kubento.builders.defaults import Gpus, parse_gpus
from kubento.controller.progress import STALL_SECONDS

log = logging.getLogger("kubento")


@dataclass(frozen=True)
class Config:
    workers: int = 8
    resync_seconds: float = 300.0
    stall_seconds: float = STALL_SECONDS
    election_namespace: str = ""  # empty: this process leads alone
    lease_name: str = "kubento"
    identity: str = ""  # this replica's name on the Lease (default: pod or host name + a random suffix)
    runtime_image: str = DEFAULT_RUNTIME_IMAGE  # for archive and build sources without spec.runtimeImage
    package_index: Optional[dict[str, Any]] = field(default=None, hash=False)  # spec.python.index's default
    gpus: Gpus = Gpus()  # what a GPU is here: its resource name, the node labels of each gpu_type

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: Any) -> "Config":
        """What the chart passes as environment variables (KUBENTO_*), then ``overrides``."""
        values: dict[str, Any] = {
            "workers": int(env.get("KUBENTO_WORKERS", "8")),
            "resync_seconds": float(env.get("KUBENTO_RESYNC_SECONDS", "300")),
            "stall_seconds": float(env.get("KUBENTO_STALL_SECONDS", str(STALL_SECONDS))),
            "election_namespace": env.get("KUBENTO_LEADER_ELECTION_NAMESPACE", ""),
            "lease_name": env.get("KUBENTO_LEASE_NAME", "kubento"),
            "identity": env.get("POD_NAME", ""),
            "runtime_image": env.get("KUBENTO_RUNTIME_IMAGE") or DEFAULT_RUNTIME_IMAGE,
            "package_index": package_index(env.get("KUBENTO_PACKAGE_INDEX", "")),
            "gpus": gpus(env.get("KUBENTO_GPUS", "")),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def gpus(raw: str) -> Gpus:
    """The cluster's GPUs (JSON, chart value gpus); invalid: the defaults, and a warning."""
    try:
        return parse_gpus(raw)
    except ValueError as exc:
        log.warning("KUBENTO_GPUS is not valid (%s): GPUs are nvidia.com/gpu, no gpu_type is placed", exc)
        return Gpus()


def package_index(raw: str) -> Optional[dict[str, Any]]:
    """The operator's package index (JSON in the shape of spec.python.index;
    chart value packageIndex), used when the spec sets none."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
        PackageIndex.model_validate(value)
    except (ValueError, ValidationError):
        log.warning("KUBENTO_PACKAGE_INDEX is not a valid package index: ignored")
        return None
    return value or None


