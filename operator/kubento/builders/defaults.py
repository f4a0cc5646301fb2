"""What the bento declares for itself, as defaults of its pods: the resources
of its BentoML services (``@bentoml.service(resources=...)``) and their
``traffic.timeout``. The spec's own fields win (spec.resources,
spec.terminationGracePeriodSeconds). Every service of a bento runs in each
pod today, so a pod asks for the sum of their resources.

Known only once the bento's environment was prepared (its Job reads
bento.yaml): ServedBento.services; None adds nothing, so the revision of a
model prepared before stays as it was."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Optional

from kubento.api.common import quantity_value
from kubento.api.status import BentoServices

GPU_RESOURCE = "nvidia.com/gpu"  # what BentoML's gpu count asks for on Kubernetes (BentoCloud's too)
TIMEOUT_MARGIN = 5  # seconds after the slowest request: the drain and BentoML's own shutdown


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


def resources(services: Optional[str]) -> dict[str, Any]:
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
    gpus = sum(r.gpu or 0 for r in declared)
    if gpus:
        out["limits"] = {GPU_RESOURCE: str(gpus)}
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
