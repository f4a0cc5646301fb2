"""What the bento declares for itself, as defaults of its pods: the resources
of its BentoML services (``@bentoml.service(resources=...)``) and their
``traffic.timeout``. The spec's own fields win (spec.resources,
spec.terminationGracePeriodSeconds). Every service of a bento runs in each
pod today, so a pod asks for the sum of their resources.

Known only once the bento's environment was prepared (its Job reads
bento.yaml): ServedBento.services; None adds nothing, so the revision of a
model prepared before stays as it was."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional

from kubento.api.common import quantity_value
from kubento.api.status import BentoServices

GPU_RESOURCE = "nvidia.com/gpu"  # what BentoML's gpu count asks for on Kubernetes (BentoCloud's too)
_RESOURCE = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
TIMEOUT_MARGIN = 5  # seconds after the slowest request: the drain and BentoML's own shutdown


@dataclass(frozen=True)
class Gpus:
    """The cluster's GPUs, as the operator is told (chart value ``gpus``): the
    extended resource a GPU is, and the node labels of each ``gpu_type`` a bento may ask for."""

    resource: str = GPU_RESOURCE
    types: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def node_selector(self, gpu_type: Optional[str]) -> dict[str, str]:
        return dict(next((labels for name, labels in self.types if name == gpu_type), ())) if gpu_type else {}


def parse_gpus(raw: str) -> Gpus:
    """``{"resource": "nvidia.com/gpu", "types": {"nvidia-tesla-t4": {"<label>": "<value>"}}}``
    (KUBENTO_GPUS, JSON). ValueError names what is wrong."""
    value = json.loads(raw) if raw.strip() else {}
    if not isinstance(value, dict) or set(value) - {"resource", "types"}:
        raise ValueError("gpus has resource and types only")
    resource = value.get("resource") or GPU_RESOURCE
    if not isinstance(resource, str) or not _RESOURCE.fullmatch(resource):
        raise ValueError(f"gpus.resource {resource!r} is not an extended resource name (vendor/name)")
    types = value.get("types") or {}
    if not isinstance(types, dict):
        raise ValueError("gpus.types maps a gpu_type to node labels")
    out = []
    for name, labels in sorted(types.items()):
        if not isinstance(labels, dict) or not labels or not all(
                isinstance(k, str) and _LABEL_KEY.fullmatch(k) and isinstance(v, str) and _LABEL_VALUE.fullmatch(v)
                for k, v in labels.items()):
            raise ValueError(f"gpus.types.{name}: node labels, e.g. {{cloud.google.com/gke-accelerator: {name}}}")
        out.append((str(name), tuple(sorted(labels.items()))))
    return Gpus(resource, tuple(out))


def node_selector(services: Optional[str], gpus: Gpus) -> dict[str, str]:
    """The node labels of the GPU types the bento's services ask for (those ``gpus`` knows)."""
    app = parsed(services)
    out: dict[str, str] = {}
    for s in app.services if app else []:
        if s.resources and s.resources.gpu and s.resources.gpu_type:
            out.update(gpus.node_selector(s.resources.gpu_type))
    return out


def parsed(services: Optional[str]) -> Optional[BentoServices]:
    return BentoServices.model_validate_json(services) if services else None


def _format_cpu(total: Decimal) -> str:
    return str(int(total)) if total == total.to_integral_value() else f"{math.ceil(total * 1000)}m"


def _format_memory(total: Decimal) -> str:
    value = int(total)
    for suffix, size in (("Gi", 2 ** 30), ("Mi", 2 ** 20), ("G", 10 ** 9), ("M", 10 ** 6), ("Ki", 2 ** 10)):
        if value and value % size == 0:
            return f"{value // size}{suffix}"
    return str(value)


def resources(services: Optional[str], gpu_resource: str = GPU_RESOURCE) -> dict[str, Any]:
    """The container's resources from the bento's services: cpu and memory
    requests (their sum), and their GPUs as a limit. {} when none declares any."""
    app = parsed(services)
    declared = [s.resources for s in (app.services if app else []) if s.resources]
    out: dict[str, dict[str, str]] = {}
    requests = {}
    for name, fmt in (("cpu", _format_cpu), ("memory", _format_memory)):
        values = [getattr(r, name) for r in declared if getattr(r, name)]
        if len(values) == 1:
            requests[name] = values[0]
        elif values:
            try:
                requests[name] = fmt(sum((quantity_value(v) for v in values), Decimal(0)))
            except ValueError:
                continue  # not a Kubernetes quantity (BentoML is laxer): not a default
    if requests:
        out["requests"] = requests
    limits = {}
    if "cpu" in requests and any(s.workers == "cpu_count" for s in app.services):
        # BentoML counts CPUs from the container's CPU limit (cgroup quota), else the node's: a worker
        # per node CPU would not fit what the bento asks for.
        limits["cpu"] = requests["cpu"]
    gpus = sum(r.gpu or 0 for r in declared)
    if gpus:
        limits[gpu_resource] = str(gpus)
    if limits:
        out["limits"] = limits
    return out


def grace_seconds(services: Optional[str], default: int, prestop: int) -> Optional[int]:
    """A grace period that lets the slowest declared ``traffic.timeout`` finish
    after the preStop pause; None when ``default`` already does (or none is declared)."""
    app = parsed(services)
    timeouts = [s.timeout for s in (app.services if app else []) if s.timeout]
    if not timeouts:
        return None
    needed = prestop + math.ceil(max(timeouts)) + TIMEOUT_MARGIN
    return needed if needed > default else None
