"""Gateway mode's children: the model's HTTPRoute and one Service per revision
it names (spec.traffic.gateway; kubento.rollout.traffic decides what the
route carries).

The route's rules, all under the spec's path prefix (Gateway API gives a
rule with more header matches precedence over one with fewer, whatever the
order, so the header rules win over the main rule):

- the main rule, always the first: every request without kubento's headers,
  split by weight between revisions (``backendRefs[].weight``: percent),
  with a RequestMirror during a shadow step. First, so that header rules
  coming and going never renumber it: Envoy Gateway names a rule's upstream
  cluster by its index, and a renumbered main rule answered 503
  (``cluster_not_found``: the route's update reached Envoy after the old
  cluster was removed) to a request of the e2e tier's BlueGreen switch;
- ``<header>: stable`` to the stable revision, ``<header>: candidate`` to
  the revision rolling out (once it has a ready pod), ``<header>: <revision>``
  to every revision that runs pods;
- ``x-kubento-probe: mirror`` (only before a shadow step), last: to stable,
  with a RequestMirror of every request to the candidate: kubento probes
  through it whether the Gateways mirror before the filter touches real
  traffic. Its answers carry ``x-kubento-probe: mirror`` too (a
  ResponseHeaderModifier): until a Gateway has programmed the rule, a probe
  falls through to the main rule and answers 200 without it (seen on
  Traefik, whose 200 was taken for a working mirror).

A path prefix other than ``/`` is removed before the model sees the request
(URLRewrite ReplacePrefixMatch); the request timeout and retry apply to
every rule (retry only where the cluster's HTTPRoute has the field).
"""

from __future__ import annotations

from typing import Any, Optional

from kubento.api.traffic import GatewayTraffic
from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.meta import LABEL_REVISION, Owner, object_meta, with_applied_hash
from kubento.builders.service import SERVICE_PORT, service
from kubento.rollout.traffic import Route

ROUTE_API_VERSION = "gateway.networking.k8s.io/v1"
PROBE_HEADER = "x-kubento-probe"
PROBE_VALUE = "mirror"
COMPONENT = "route"


def revision_service_name(owner: Owner, revision: str) -> str:
    return f"{owner.name}-{revision}"


def revision_service(spec: ModelDeploymentSpec, owner: Owner, revision: str) -> dict[str, Any]:
    """The Service of one revision's pods: a backend of the model's HTTPRoute."""
    manifest = service(spec, owner, revision, name=revision_service_name(owner, revision))
    manifest["metadata"]["labels"][LABEL_REVISION] = revision
    manifest["metadata"]["annotations"].clear()
    return with_applied_hash(manifest)


def _backend(owner: Owner, revision: str, weight: Optional[int] = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": "", "kind": "Service", "name": revision_service_name(owner, revision),
                           "port": SERVICE_PORT}
    if weight is not None:
        ref["weight"] = weight
    return ref


def _mirror(owner: Owner, revision: str, percent: int) -> dict[str, Any]:
    return {"type": "RequestMirror", "requestMirror": {"backendRef": {
        k: v for k, v in _backend(owner, revision).items() if k != "weight"}, "percent": percent}}


def _match(gateway: GatewayTraffic, header: Optional[tuple[str, str]] = None) -> dict[str, Any]:
    match: dict[str, Any] = {"path": {"type": "PathPrefix", "value": gateway.path_prefix}}
    if header is not None:
        match["headers"] = [{"type": "Exact", "name": header[0], "value": header[1]}]
    return match


def http_route(spec: ModelDeploymentSpec, owner: Owner, route: Route, retry_served: bool = False) -> dict[str, Any]:
    """The model's HTTPRoute carrying ``route``. ``retry_served``: the
    cluster's HTTPRoute has rules[].retry (Gateway API's experimental channel)."""
    gateway = spec.traffic.gateway if spec.traffic else None
    assert gateway is not None and route.weights

    def rule(backends: list[dict[str, Any]], header: Optional[tuple[str, str]] = None,
             mirror: Optional[tuple[str, int]] = None) -> dict[str, Any]:
        filters = []
        if gateway.path_prefix != "/":
            filters.append({"type": "URLRewrite",
                            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}})
        if mirror is not None:
            filters.append(_mirror(owner, *mirror))
        if header == (PROBE_HEADER, PROBE_VALUE):
            filters.append({"type": "ResponseHeaderModifier",
                            "responseHeaderModifier": {"set": [{"name": PROBE_HEADER, "value": PROBE_VALUE}]}})
        out: dict[str, Any] = {"matches": [_match(gateway, header)]}
        if filters:
            out["filters"] = filters
        out["backendRefs"] = backends
        if gateway.request_timeout:
            out["timeouts"] = {"request": gateway.request_timeout}
        if gateway.retry is not None and retry_served:
            retry: dict[str, Any] = {"attempts": gateway.retry.attempts}
            if gateway.retry.backoff:
                retry["backoff"] = gateway.retry.backoff
            if gateway.retry.codes:
                retry["codes"] = list(gateway.retry.codes)
            out["retry"] = retry
        return out

    header = gateway.revision_header
    rules = [rule([_backend(owner, rev, w) for rev, w in route.weights], mirror=route.mirror)]
    if route.stable is not None and route.stable in route.revisions:
        rules.append(rule([_backend(owner, route.stable)], (header, "stable")))
    if route.candidate is not None:
        rules.append(rule([_backend(owner, route.candidate)], (header, "candidate")))
    rules += [rule([_backend(owner, rev)], (header, rev)) for rev in route.revisions]
    if route.probe is not None:
        to, mirrored = route.probe
        rules.append(rule([_backend(owner, to)], (PROBE_HEADER, PROBE_VALUE), (mirrored, 100)))
    parents = []
    for p in gateway.parent_refs:
        ref: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": p.name}
        if p.namespace:
            ref["namespace"] = p.namespace
        if p.section_name:
            ref["sectionName"] = p.section_name
        if p.port:
            ref["port"] = p.port
        parents.append(ref)
    manifest: dict[str, Any] = {
        "apiVersion": ROUTE_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": object_meta(owner, owner.name, labels={"app.kubernetes.io/component": COMPONENT}),
        "spec": {"parentRefs": parents, "rules": rules},
    }
    if gateway.hostnames:
        manifest["spec"]["hostnames"] = list(gateway.hostnames)
    return with_applied_hash(manifest)
