"""A pass as a value: what one plan asks the apply layer (kubento.controller.apply)
to do. Nothing here reads or writes; the one writer applies it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from kubento.api.v1alpha1 import ModelDeploymentStatus


@dataclass(frozen=True)
class Apply:
    manifest: dict[str, Any]
    why: str
    read_first: bool = False  # not in the cache: check it is not someone else's before taking it over


@dataclass(frozen=True)
class Scale:
    name: str  # a Deployment
    replicas: int


@dataclass(frozen=True)
class Delete:
    api_version: str
    kind: str
    name: str
    propagation: Optional[str] = None


@dataclass(frozen=True)
class Keep:
    """Keep a revision's Deployment as a ControllerRevision: the apply layer
    reads the Deployment (the cache holds only its metadata) and creates it."""

    deployment: str  # the Deployment's name (the ControllerRevision's too)
    number: int  # the revision's number in status.history (0: none)


@dataclass
class Actions:
    """What one pass asks the apply layer to do, in this order."""

    creates: list[dict[str, Any]] = field(default_factory=list)  # build Jobs and source snapshots (never updated)
    applies: list[Apply] = field(default_factory=list)
    scales: list[Scale] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    keeps: list[Keep] = field(default_factory=list)  # revisions to keep as ControllerRevisions (with the applies)
    pod_conditions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # prediction-check gates
    status: Optional[dict[str, Any]] = None  # a merge patch of status (its one serialisation: status.to_wire)
    new_status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: Optional[float] = None
    notes: list[str] = field(default_factory=list)
    # memory to keep: (kind, name) -> a child's generation as first seen (someone else's edit moves it)
    remember_generations: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def writes(self) -> int:
        return (len(self.creates) + len(self.applies) + len(self.keeps) + len(self.scales) + len(self.deletes)
                + len(self.pod_conditions) + (self.status is not None))
