"""A model's Service (and BlueGreen's preview Service, and in gateway mode
each revision's Service, <model>-<revision>)."""

from __future__ import annotations

import re
from typing import Any

from kubento.controller.kinds import SERVICE, Kind
from kubento.controller.kinds.strip import meta

PREVIEW_SUFFIX = "-preview"


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": meta(obj), "spec": {"selector": dict((obj.get("spec") or {}).get("selector") or {})}}


def names_of(model: str) -> tuple[str, ...]:
    return model, f"{model}{PREVIEW_SUFFIX}"


REVISION_SERVICE = re.compile(r"(.+)-[0-9a-f]{10}")  # gateway mode: <model>-<revision>


def models_named(name: str) -> tuple[str, ...]:
    per_revision = REVISION_SERVICE.fullmatch(name)
    return tuple(dict.fromkeys((name, name.removesuffix(PREVIEW_SUFFIX), *(per_revision.groups() if per_revision else ()))))


# Watched whatever made them: a Service named like a model may be someone else's.
KIND = Kind(SERVICE, "v1", "services", strip, watch="all", names_of=names_of, models_named=models_named)
