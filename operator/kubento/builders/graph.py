"""A bento of several BentoML services served as BentoML means it: each
service in its own pods ("if you define multiple Services, they run as
processes in different containers"), sized by its own declared resources.

The model's revision Deployment runs the entry service (the one the model's
Service reaches); each other service of the bento gets a Deployment and a
Service of its own per revision, named from the revision, so a new revision's
entry only ever calls its own revision's services and the old one keeps its
own until its pods are gone (kubento.controller.plan_children). BentoML wires
them: ``BENTOML_SERVE_SERVICE_NAME`` (the service a server runs) and
``BENTOML_SERVE_DEPENDS`` (``Name=URL`` of the others), the options of its
own container entrypoint (``bentoml_cli._internal.start start-http-server``);
kubento's runtime starts that instead of ``bentoml serve`` when they are set
(kubento.runtime.serving). The entry's ``/readyz`` asks its dependencies, so a
revision is Ready only once all of its services are.

BentoML's services call each other with pickled bodies, which a dependency
unpickles: a dependency answers only calls that carry the revision's token
(kubento.runtime.guard), which BentoML's client sends as a bearer token
(``BENTO_CLOUD_API_KEY``) on every call to a dependency.

A bento with one service, an image source, or services status could not list
in full (``more``) is served as before: every service in each pod."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Optional

from kubento import api
from kubento.api.status import BentoService, BentoServices
from kubento.api.v1alpha1 import ModelDeploymentSpec, ServiceAutoscaling, ServiceSettings
from kubento.builders import defaults
from kubento.builders.bento import ServedBento
from kubento.builders.deployment import PORT_NAME, pod_spec, revision
from kubento.builders.meta import ANNOTATION_BENTO, Owner, app_labels, digest, object_meta, with_applied_hash
from kubento.builders.validate import validated

LABEL_SERVICE_OF = f"{api.GROUP}/service-of"  # a dependency's pods: their model (never the model label,
# which the model's Service selects)
LABEL_GRAPH_REVISION = f"{api.GROUP}/graph-revision"  # the entry revision whose dependency it is
LABEL_BENTO_SERVICE = f"{api.GROUP}/bento-service"  # the BentoML service, as a label value
COMPONENT = "bento-service"
PORT = 80
TOKEN_LENGTH = 32


@dataclass(frozen=True)
class Graph:
    """A bento split into one Deployment per BentoML service."""

    bento: ServedBento  # as prepared: every service's settings
    app: BentoServices
    key: str  # names the dependencies' objects: the hash of the bento served in one pod (and spec.services' resources)
    token: str

    @property
    def dependencies(self) -> list[BentoService]:
        return [s for s in self.app.services if s.name != self.app.entry]


def dns_part(service: str) -> str:
    """A BentoML service name (a Python class name) as part of a DNS label."""
    return re.sub(r"[^a-z0-9-]+", "-", service.lower()).strip("-")[:40].strip("-") or "service"


def label_value(service: str) -> str:
    """A BentoML service name as a label value: itself when it is one (a class name mostly is)."""
    return service if _LABEL_VALUE.fullmatch(service) else dns_part(service)


_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def dependency_name(owner: Owner, key: str, service: str) -> str:
    """The Deployment and Service of ``service`` for the revision keyed ``key`` (≤ 63 characters)."""
    base = f"{owner.name}-{key}-{dns_part(service)}"
    return base if len(base) <= 63 else f"{base[:52].rstrip('-')}-{digest(base, 10)}"


def url(owner: Owner, key: str, service: str) -> str:
    return f"http://{dependency_name(owner, key, service)}.{owner.namespace}:{PORT}"


def split(spec: ModelDeploymentSpec, owner: Owner, bento: ServedBento) -> tuple[ServedBento, Optional[Graph]]:
    """The bento the model's revision Deployment serves (the entry service
    alone, wired to the others) and the graph, or ``bento`` as it is and None
    when it is served in one pod."""
    app = defaults.parsed(bento.services) if bento.archive_uri else None
    if app is None or app.more or len(app.services) < 2 or app.entry not in {s.name for s in app.services}:
        return bento, None
    key = revision(spec, bento)
    sized = {name: settings.resources.wire() for name, settings in sorted((spec.services or {}).items())
             if settings.resources is not None}
    if sized:  # a service's own resources shape its pods: a new revision of the whole graph
        key = digest([key, sized])
    graph = Graph(bento, app, key, digest([owner.uid, owner.namespace, owner.name, key], TOKEN_LENGTH))
    return served(graph, owner, app.entry), graph


def served(graph: Graph, owner: Owner, name: str) -> ServedBento:
    """The bento one service's pods serve: that service's settings only, the others' URLs."""
    app = graph.app
    own = next(s for s in app.services if s.name == name)
    depends = tuple((s.name, url(owner, graph.key, s.name)) for s in graph.dependencies if s.name != name)
    return dataclasses.replace(
        graph.bento,
        services=BentoServices(entry=app.entry, services=[own]).model_dump_json(by_alias=True, exclude_none=True),
        serve_service=name, depends=depends, graph_token=graph.token, guarded=name != app.entry,
    )


def dependencies(spec: ModelDeploymentSpec, owner: Owner, graph: Graph, entry_revision: str,
                 replicas: int) -> list[dict[str, Any]]:
    """A Deployment and a Service for each service but the entry, of the
    revision ``entry_revision`` (the model's revision Deployment), with
    ``replicas`` (the entry's) unless spec.services says otherwise (and an
    HPA where it says autoscaling)."""
    out = []
    for s in graph.dependencies:
        settings = (spec.services or {}).get(s.name) or ServiceSettings()
        plain = spec.model_copy(update={"prediction_checks": None,  # checks are the entry's
                                        "resources": settings.resources or spec.resources})
        bento = dataclasses.replace(served(graph, owner, s.name), monitoring=None, judged=None)
        name = dependency_name(owner, graph.key, s.name)
        labels = {LABEL_SERVICE_OF: owner.name, LABEL_GRAPH_REVISION: entry_revision,
                  LABEL_BENTO_SERVICE: label_value(s.name)}
        pod_labels = {**spec.pod_labels, **app_labels(owner, COMPONENT), **labels}
        meta = object_meta(owner, name, labels)
        meta["annotations"] = {ANNOTATION_BENTO: f"{bento.describe()} ({s.name})"}
        deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
                "revisionHistoryLimit": 1,
                "template": {
                    "metadata": {"labels": pod_labels, "annotations": {
                        **spec.pod_annotations, "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(spec.port), "prometheus.io/path": "/metrics"}},
                    "spec": pod_spec(plain, bento),
                },
            },
        }
        service = {
            "apiVersion": "v1", "kind": "Service", "metadata": object_meta(owner, name, labels),
            "spec": {"type": "ClusterIP", "selector": labels,
                     "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT_NAME, "protocol": "TCP"}]},
        }
        if settings.autoscaling is not None:
            del deployment["spec"]["replicas"]  # its own HPA's to set
        elif settings.replicas is not None:
            deployment["spec"]["replicas"] = settings.replicas
        out += [validated(with_applied_hash(deployment)), validated(with_applied_hash(service))]
        if settings.autoscaling is not None:
            out.append(autoscaler(owner, name, labels, settings.autoscaling))
    return out


def autoscaler(owner: Owner, name: str, labels: dict[str, str], scaling: ServiceAutoscaling) -> dict[str, Any]:
    """The HPA of one service's Deployment (spec.services.<Name>.autoscaling)."""
    manifest = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": object_meta(owner, name, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": scaling.metric, "target": {"type": "Utilization", "averageUtilization": scaling.target}}}],
        },
    }
    return validated(with_applied_hash(manifest))


def settings_problems(spec: ModelDeploymentSpec, split_graph: Optional[Graph]) -> list[str]:
    """What in spec.services names no service it can apply to."""
    named = sorted(spec.services or {})
    if not named:
        return []
    if split_graph is None:
        return [f"spec.services ({', '.join(named)}) applies to a bento of several BentoML services, each in its own "
                "Deployment; this bento is served in one pod (one service, an image, or its services not known)"]
    entry, others = split_graph.app.entry, [s.name for s in split_graph.dependencies]
    out = []
    for name in named:
        if name == entry:
            out.append(f"spec.services.{name}: {name} is the entry service; spec.replicas, spec.resources and "
                       "spec.autoscaling size it")
        elif name not in others:
            out.append(f"spec.services.{name}: the bento has no service {name} (its other services: "
                       f"{', '.join(others)})")
    return out


def graph_revision(obj: dict[str, Any]) -> Optional[str]:
    """The entry revision a dependency's object or pod belongs to (None: not a dependency's)."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_GRAPH_REVISION)


def service_name(obj: dict[str, Any]) -> str:
    """The BentoML service of a dependency's object or pod, as its label says it."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_BENTO_SERVICE, "")
