"""Build Jobs and environment Jobs (created, never updated: a new source is a new Job)."""

from __future__ import annotations

from typing import Any, Optional

from kubento.builders.build_job import ANNOTATION_ARCHIVE, ANNOTATION_SETTINGS, LABEL_BUILD_OF
from kubento.controller.kinds import JOB, Kind
from kubento.controller.kinds.strip import conditions, meta


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": meta(obj, (ANNOTATION_ARCHIVE, ANNOTATION_SETTINGS)),
            "status": {"conditions": conditions(obj.get("status") or {})}}


def model_of(obj: dict[str, Any]) -> Optional[str]:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_BUILD_OF)


KIND = Kind(JOB, "batch/v1", "jobs", strip, model_of=model_of, verbs=("get", "list", "watch", "create", "delete"))
