"""ModelDeployments: kept whole (but managedFields and kubectl's copy of the
last applied spec); each is its own key."""

from __future__ import annotations

from typing import Any, Optional

from kubento.api import v1alpha1 as api
from kubento.controller.kinds import MODEL, Kind

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    out = {k: v for k, v in obj.items() if k != "metadata"}
    out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = meta.get("annotations") or {}
    if LAST_APPLIED in annotations:  # `kubectl apply`'s copy of the spec: as big again, read by nothing here
        out["metadata"]["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return out


def own_name(obj: dict[str, Any]) -> Optional[str]:
    return (obj.get("metadata") or {}).get("name")


KIND = Kind(MODEL, f"{api.GROUP}/{api.VERSION}", api.PLURAL, strip, model_of=own_name, watch="all", child=False,
            verbs=("get", "list", "watch"), subresources=(("status", ("patch",)),))
