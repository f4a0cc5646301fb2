"""The ControllerRevision that keeps one revision's Deployment: what a
revision is survives the loss of its Deployment (someone deletes it; a
namespace restored without it) and `kubento rollback` reads it."""

from __future__ import annotations

import copy
from typing import Any

from kubento.builders.meta import LABEL_REVISION, Owner, object_meta


def controller_revision(owner: Owner, deployment: dict[str, Any], number: int) -> dict[str, Any]:
    """``deployment`` (a revision's manifest as kubento applies it, or as read
    back) kept as a ControllerRevision of the same name, owned by the model."""
    meta = deployment["metadata"]
    rev = meta["labels"][LABEL_REVISION]
    data = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {k: copy.deepcopy(meta[k]) for k in ("name", "namespace", "labels", "annotations") if k in meta},
        "spec": copy.deepcopy(deployment["spec"]),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": object_meta(owner, meta["name"], {LABEL_REVISION: rev}),
        "revision": max(0, number),
        "data": data,
    }


def stored_deployment(owner: Owner, revision: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The Deployment a ControllerRevision keeps, at ``replicas``, owned by the model again."""
    manifest = copy.deepcopy(revision["data"])
    manifest["metadata"]["ownerReferences"] = [owner.reference()]
    manifest["metadata"]["namespace"] = owner.namespace
    manifest["spec"]["replicas"] = replicas
    manifest["metadata"].pop("resourceVersion", None)
    return manifest
