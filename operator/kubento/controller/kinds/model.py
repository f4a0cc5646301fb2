"""ModelDeployments: kept whole (but managedFields); each is its own key."""

from __future__ import annotations

from typing import Any, Optional

from kubento.api import v1alpha1 as api
from kubento.controller.kinds import MODEL, Kind


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    out = {k: v for k, v in obj.items() if k != "metadata"}
    out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def own_name(obj: dict[str, Any]) -> Optional[str]:
    return (obj.get("metadata") or {}).get("name")


KIND = Kind(MODEL, f"{api.GROUP}/{api.VERSION}", api.PLURAL, strip, model_of=own_name, watch="all", child=False,
            verbs=("get", "list", "watch"), subresources=(("status", ("patch",)),))
