"""A model's Service (and BlueGreen's preview Service)."""

from __future__ import annotations

from typing import Any

from kubento.controller.kinds import SERVICE, Kind
from kubento.controller.kinds.strip import meta

PREVIEW_SUFFIX = "-preview"


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": meta(obj), "spec": {"selector": dict((obj.get("spec") or {}).get("selector") or {})}}


def names_of(model: str) -> tuple[str, ...]:
    return model, f"{model}{PREVIEW_SUFFIX}"


def models_named(name: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((name, name.removesuffix(PREVIEW_SUFFIX))))


# Watched whatever made them: a Service named like a model may be someone else's.
KIND = Kind(SERVICE, "v1", "services", strip, watch="all", names_of=names_of, models_named=models_named)
