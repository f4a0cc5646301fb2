"""Names, labels and the revision hash shared by every child."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from kubento.api import v1alpha1 as api

MANAGED_BY = "kubento"
LABEL_MODEL = f"{api.GROUP}/model-deployment"
LABEL_REVISION = f"{api.GROUP}/revision"
ANNOTATION_APPLIED_HASH = f"{api.GROUP}/applied-hash"
ANNOTATION_SPEC = f"{api.GROUP}/spec"  # on a revision's Deployment: the spec that made it
ANNOTATION_BENTO = f"{api.GROUP}/bento"  # on a revision's Deployment: what it serves
# On the ModelDeployment, set by `kubento promote|abort` to the rollout they
# apply to (rollout_token): a leftover never acts on a later rollout, even of
# the same revision.
ANNOTATION_PROMOTE = f"{api.GROUP}/promote"
ANNOTATION_ABORT = f"{api.GROUP}/abort"
COMPONENT = "model-server"


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment a child belongs to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{api.GROUP}/{api.VERSION}",
            "kind": api.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def controls(self, obj: dict[str, Any]) -> bool:
        """Whether a live object names this ModelDeployment as its controller."""
        refs = (obj.get("metadata") or {}).get("ownerReferences") or []
        return any(r.get("uid") == self.uid and r.get("controller") for r in refs)


def selector_labels(owner: Owner) -> dict[str, str]:
    """Labels that select a model's pods (stable across revisions)."""
    return {LABEL_MODEL: owner.name}


def app_labels(owner: Owner, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels of everything kubento makes for a model."""
    return {
        "app.kubernetes.io/name": owner.name,
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "kubento",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def common_labels(owner: Owner) -> dict[str, str]:
    return {**app_labels(owner, COMPONENT), **selector_labels(owner)}


def selector_string(owner: Owner) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(owner).items()))


def digest(obj: Any, length: int = 10) -> str:
    """A short, stable hash of a JSON-able value."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def object_meta(owner: Owner, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**common_labels(owner), **(labels or {})},
        "ownerReferences": [owner.reference()],
    }


def with_applied_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp a manifest with the hash of its own content, so the controller can
    tell without a write whether the live child already matches."""
    meta = manifest["metadata"]
    meta.setdefault("annotations", {})[ANNOTATION_APPLIED_HASH] = digest(manifest, 16)
    return manifest


def rollout_token(rollout: api.RolloutStatus) -> str:
    """Names one rollout (status.rollout): its revision and history number."""
    return f"{rollout.revision}-{rollout.number or 0}"


def preview_name(owner: Owner) -> str:
    return f"{owner.name}-preview"


def service_url(owner: Owner) -> str:
    return f"http://{owner.name}.{owner.namespace}.svc.cluster.local"
