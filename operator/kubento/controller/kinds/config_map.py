"""ConfigMaps of the watched namespaces: a build's source and prediction
checks' inputs are read from them (content kept only for those a model
reads, see Cache.update); kubento creates a build's immutable source copy."""

from __future__ import annotations

from typing import Any, Optional

from kubento.controller.kinds import CONFIG_MAP, Kind
from kubento.controller.kinds.strip import meta


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    out = {"metadata": meta(obj, ())}
    for key in ("data", "binaryData"):
        if obj.get(key):
            out[key] = dict(obj[key])
    return out


def no_model(obj: dict[str, Any]) -> Optional[str]:
    return None  # its readers are found by name (Cache.models_reading)


KIND = Kind(CONFIG_MAP, "v1", "configmaps", strip, model_of=no_model, watch="all", child=False,
            verbs=("get", "list", "watch", "create"))
