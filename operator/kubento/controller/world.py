"""One model and its children as the cache holds them: what a pass reads.

``World.of(kind)`` lists the model's objects of a child kind
(kubento.controller.kinds); ``revisions_of`` groups its revision Deployments
and their pods by revision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from kubento.builders.graph import LABEL_GRAPH_REVISION, LABEL_SERVICE_OF
from kubento.builders.meta import LABEL_REVISION, Owner, selector_labels
from kubento.controller.kinds import DEPLOYMENT, POD

LEGACY = "legacy-"


@dataclass
class World:
    model: Optional[dict[str, Any]]  # None: not in the cache (deleted)
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # kind -> the model's objects

    def of(self, kind: str) -> list[dict[str, Any]]:
        return self.children.get(kind, [])

    @property
    def owner(self) -> Owner:
        assert self.model is not None
        meta = self.model["metadata"]
        return Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])

    def named(self, kind: str, name: str) -> Optional[dict[str, Any]]:
        return next((o for o in self.of(kind) if o["metadata"]["name"] == name), None)


@dataclass
class Revisions:
    """Every revision Deployment of one model, with its pods."""

    deployments: dict[str, dict[str, Any]]
    pods: dict[str, list[dict[str, Any]]]
    # the pods of its other BentoML services (kubento.builders.graph), by the revision whose they are
    service_pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def revisions_of(world: World) -> Revisions:
    owner = world.owner
    deployments: dict[str, dict[str, Any]] = {}
    for dep in world.of(DEPLOYMENT):
        rev = ((dep.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION)
        if rev and owner.controls(dep):
            selector = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if LABEL_REVISION not in selector:
                # From kubento before per-revision Deployments (its selector is
                # immutable): an old revision like any other, drained once the
                # revision's own Deployment is ready.
                rev = f"{LEGACY}{rev}"
            deployments[rev] = dep
    pods: dict[str, list[dict[str, Any]]] = {}
    model_label = selector_labels(owner)
    service_pods: dict[str, list[dict[str, Any]]] = {}
    for pod in world.of(POD):
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if labels.get(LABEL_SERVICE_OF) == owner.name and labels.get(LABEL_GRAPH_REVISION):
            service_pods.setdefault(labels[LABEL_GRAPH_REVISION], []).append(pod)
            continue
        if any(labels.get(k) != v for k, v in model_label.items()):
            continue  # a build pod
        rev = labels.get(LABEL_REVISION) or ""
        if f"{LEGACY}{rev}" in deployments and rev not in deployments:
            rev = f"{LEGACY}{rev}"
        pods.setdefault(rev, []).append(pod)
    return Revisions(deployments, pods, service_pods)
