"""Revision Deployments: one per revision of a model (kubento.rollout)."""

from __future__ import annotations

from typing import Any

from kubento.builders.meta import ANNOTATION_APPLIED_HASH
from kubento.controller.kinds import DEPLOYMENT, Kind
from kubento.controller.kinds.strip import conditions, meta, pick
from kubento.predictions.gate import ANNOTATION_CHECKS
from kubento.quality.profile import ANNOTATION_MONITORING


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "metadata": meta(obj, (ANNOTATION_APPLIED_HASH, ANNOTATION_CHECKS, ANNOTATION_MONITORING)),
        "spec": {"replicas": spec.get("replicas", 1),
                 "selector": {"matchLabels": dict(((spec.get("selector") or {}).get("matchLabels")) or {})}},
        "status": {**pick(status, "observedGeneration", "replicas", "readyReplicas", "updatedReplicas",
                          "availableReplicas"), "conditions": conditions(status)},
    }


# Resized through the scale subresource (a revision's template stays as it was rolled out).
KIND = Kind(DEPLOYMENT, "apps/v1", "deployments", strip, subresources=(("scale", ("patch",)),))
