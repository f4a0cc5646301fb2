"""ControllerRevisions: each revision's Deployment as kubento built it, kept
apart from the Deployment (as Kubernetes keeps StatefulSet and DaemonSet
history), so a deleted revision Deployment can be made again. The cache
keeps their metadata and number; the data is read when it is needed."""

from __future__ import annotations

from typing import Any

from kubento.controller.kinds import CONTROLLER_REVISION, Kind
from kubento.controller.kinds.strip import meta, pick


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": meta(obj), **pick(obj, "revision")}


# Written once (its data never changes: a change is another revision), deleted with its revision.
KIND = Kind(CONTROLLER_REVISION, "apps/v1", "controllerrevisions", strip,
            verbs=("get", "list", "watch", "create", "delete"))
