"""Every kind of object the operator watches, declared once.

A :class:`Kind` says how the kind is watched (only kubento's own objects,
filtered by the API server on ``app.kubernetes.io/managed-by=kubento``, or
every object of the watched namespaces), how an object is stripped into the
cache, which model it belongs to, whether a model's pass sees it in its
World, and which RBAC verbs the operator needs on it. The watches
(controller.handlers), the cache, the World a pass reads and the chart's RBAC
test (tests/chart/test_rbac.py) all read this registry: a new child kind is
one module here plus one line in ``REGISTRY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

from kubento.builders.meta import LABEL_MODEL

Obj = dict[str, Any]
FULL = ("get", "list", "watch", "create", "patch", "delete")


def labelled_model(obj: Obj) -> Optional[str]:
    """The model named by the object's ``serving.kubento.io/model-deployment`` label."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_MODEL)


def no_names(model: str) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Kind:
    name: str  # the API kind, e.g. Deployment
    api_version: str  # e.g. apps/v1
    plural: str  # e.g. deployments
    strip: Callable[[Obj], Obj]  # what the cache keeps of an object
    model_of: Callable[[Obj], Optional[str]] = labelled_model  # the model it belongs to (None: none)
    watch: Literal["managed", "all"] = "managed"  # managed: the API server sends only kubento's objects
    child: bool = True  # a model's pass sees its objects of this kind (World.of)
    # Names a model's object of this kind has whoever made it (one without kubento's
    # labels is then someone else's: a conflict), and back: the models a name may be of.
    names_of: Callable[[str], tuple[str, ...]] = no_names
    models_named: Callable[[str], tuple[str, ...]] = no_names
    verbs: tuple[str, ...] = FULL  # RBAC verbs on the kind
    subresources: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (subresource, verbs), e.g. ("scale", ("patch",))

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def rbac_rules(self) -> list[dict[str, Any]]:
        """The RBAC rules the operator needs for this kind (as the chart must grant them)."""
        rules = [{"apiGroups": [self.group], "resources": [self.plural], "verbs": list(self.verbs)}]
        rules += [{"apiGroups": [self.group], "resources": [f"{self.plural}/{sub}"], "verbs": list(verbs)}
                  for sub, verbs in self.subresources]
        return rules


# The kinds' names, as the rest of the controller says them.
MODEL = "ModelDeployment"
DEPLOYMENT = "Deployment"
POD = "Pod"
SERVICE = "Service"
HPA = "HorizontalPodAutoscaler"
SCALED_OBJECT = "ScaledObject"
JOB = "Job"
CONFIG_MAP = "ConfigMap"
CONTROLLER_REVISION = "ControllerRevision"
HTTP_ROUTE = "HTTPRoute"


def _registry() -> tuple[Kind, ...]:
    from kubento.controller.kinds import (
        config_map,
        controller_revision,
        deployment,
        hpa,
        http_route,
        job,
        model,
        pod,
        scaled_object,
        service,
    )

    return (model.KIND, deployment.KIND, pod.KIND, service.KIND, hpa.KIND, scaled_object.KIND, job.KIND,
            config_map.KIND, controller_revision.KIND, http_route.KIND)


REGISTRY: tuple[Kind, ...] = _registry()
BY_NAME: dict[str, Kind] = {k.name: k for k in REGISTRY}
CHILDREN: tuple[Kind, ...] = tuple(k for k in REGISTRY if k.child)


def of(name: str) -> Kind:
    return BY_NAME[name]
