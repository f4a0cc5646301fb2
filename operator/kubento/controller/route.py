"""Gateway mode, as observed (pure): what the model's cached HTTPRoute
carries (kubento.rollout.traffic.RouteSeen), what each of its Gateways said
about it (status.traffic.parents, the RouteAccepted condition), the model's
external URL, and where a probe of the route can be sent.

Gateways are read by observe (kubento.controller.observe) and given here
stripped (:func:`strip_gateway`); a Gateway looked up and not found is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from kubento.api.traffic import (
    BackendWeight,
    GatewayParent,
    GatewayTraffic,
    MirrorCheck,
    RouteParentStatus,
    TrafficStatus,
)
from kubento.api.v1alpha1 import Condition, ModelDeploymentSpec
from kubento.builders.meta import Owner
from kubento.builders.route import PROBE_HEADER, http_route, revision_service, revision_service_name
from kubento.rollout.traffic import NO_ROUTE, Route, RouteSeen

GatewayKey = tuple[str, str]  # (namespace, name)
Gateways = Mapping[GatewayKey, Optional[dict[str, Any]]]  # looked up: stripped, or None when missing


def gateway_of(spec: ModelDeploymentSpec) -> Optional[GatewayTraffic]:
    return spec.traffic.gateway if spec.traffic is not None else None


def key(parent: GatewayParent, namespace: str) -> GatewayKey:
    return parent.namespace or namespace, parent.name


def strip_gateway(obj: dict[str, Any]) -> dict[str, Any]:
    """What kubento keeps of a Gateway: its class, listeners and addresses."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "class": spec.get("gatewayClassName", ""),
        "listeners": [{k: item[k] for k in ("name", "protocol", "port", "hostname") if k in item}
                      for item in spec.get("listeners") or []],
        "addresses": [a["value"] for a in status.get("addresses") or [] if a.get("value")],
    }


def _revision(owner: Owner, service: str) -> Optional[str]:
    prefix = revision_service_name(owner, "")
    return service[len(prefix):] if service.startswith(prefix) else None


def main_rule(route: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The rule every request without kubento's headers takes (the first without a header match)."""
    rules = [r for r in (route.get("spec") or {}).get("rules") or [] if not r.get("headers")]
    return rules[0] if rules else None


def has_probe(route: Optional[dict[str, Any]]) -> bool:
    return route is not None and any(h.get("name") == PROBE_HEADER for r in (route.get("spec") or {}).get("rules") or []
                                     for h in r.get("headers") or [])


@dataclass(frozen=True)
class Parent:
    """One parentRef of the spec and what its Gateway said."""

    ref: GatewayParent
    key: GatewayKey
    status: RouteParentStatus
    answered: bool  # its Gateway has seen the route's current generation (or cannot carry it)
    gateway: Optional[dict[str, Any]]  # stripped; None when missing or not looked up


def _same(ref: GatewayParent, namespace: str, seen: dict[str, Any]) -> bool:
    return ((seen.get("name"), seen.get("namespace") or namespace, seen.get("sectionName"), seen.get("port"))
            == (ref.name, ref.namespace or namespace, ref.section_name, ref.port))


def parents(spec: ModelDeploymentSpec, owner: Owner, route: Optional[dict[str, Any]], gateways: Gateways) -> list[Parent]:
    gateway = gateway_of(spec)
    if gateway is None:
        return []
    generation = ((route or {}).get("metadata") or {}).get("generation")
    out = []
    for ref in gateway.parent_refs:
        k = key(ref, owner.namespace)
        name = f"{k[0]}/{k[1]}"
        looked = gateways.get(k, {}) if k in gateways else {}
        if k in gateways and gateways[k] is None:
            st = RouteParentStatus(gateway=name, section_name=ref.section_name, accepted="False", resolved_refs="Unknown",
                                   reason="GatewayNotFound", message=f"Gateway {name} does not exist")
            out.append(Parent(ref, k, st, True, None))
            continue
        entry = next((p for p in ((route or {}).get("status") or {}).get("parents") or []
                      if _same(ref, owner.namespace, p.get("parentRef") or {})), None)
        conds = {c.get("type"): c for c in (entry or {}).get("conditions") or []}
        current = bool(conds) and all(c.get("observedGeneration") in (None, generation) for c in conds.values())
        if route is None or not current:
            st = RouteParentStatus(gateway=name, section_name=ref.section_name, accepted="Unknown",
                                   resolved_refs="Unknown", reason="Pending",
                                   message=f"Gateway {name} has not answered for the route's current version yet")
            out.append(Parent(ref, k, st, False, looked or None))
            continue
        accepted, resolved = conds.get("Accepted") or {}, conds.get("ResolvedRefs") or {}
        bad = next((c for c in (accepted, resolved) if c and c.get("status") != "True"), None)
        shown = bad or accepted
        st = RouteParentStatus(gateway=name, section_name=ref.section_name,
                               accepted=accepted.get("status", "Unknown"), resolved_refs=resolved.get("status", "Unknown"),
                               reason=shown.get("reason") or "Unknown", message=(shown.get("message") or "")[:512])
        out.append(Parent(ref, k, st, True, looked or None))
    return out


def seen(owner: Owner, route: Optional[dict[str, Any]], found: list[Parent]) -> RouteSeen:
    """What the route carries (its main rule), and whether every Gateway that can carry it has seen it."""
    if route is None:
        return NO_ROUTE
    rule = main_rule(route) or {}
    raw = {rev: int(b.get("weight", 1)) for b in rule.get("backendRefs") or []
           if (rev := _revision(owner, b.get("name", ""))) is not None}
    total = sum(raw.values())
    weights = {rev: round(100 * w / total) for rev, w in raw.items()} if total else {}
    mirror = None
    for m in rule.get("mirrors") or []:
        rev = _revision(owner, (m.get("backendRef") or {}).get("name", ""))
        if rev is not None:
            fraction = m.get("fraction") or {}
            percent = m.get("percent", 100 * fraction.get("numerator", 1) // fraction.get("denominator", 100)
                            if fraction else 100)
            mirror = (rev, int(percent))
    return RouteSeen(weights=weights, mirror=mirror, acked=all(p.answered for p in found), exists=True)


def accepted_condition(found: list[Parent], retry_note: str = "") -> Condition:
    """RouteAccepted: True when every Gateway accepted the route and resolved its backends."""
    def describe(p: Parent) -> str:
        listener = f" (listener {p.ref.section_name})" if p.ref.section_name else ""
        return f"Gateway {p.status.gateway}{listener}: {p.status.reason}" + (f": {p.status.message}" if p.status.message else "")

    bad = [p for p in found if "False" in (p.status.accepted, p.status.resolved_refs)]
    waiting = [p for p in found if p.status.accepted == "Unknown"]
    note = f"; {retry_note}" if retry_note else ""
    if bad:
        return Condition(type="RouteAccepted", status="False", reason=bad[0].status.reason,
                         message="; ".join(describe(p) for p in bad) + note)
    if waiting:
        return Condition(type="RouteAccepted", status="Unknown", reason="Pending",
                         message="; ".join(describe(p) for p in waiting) + note)
    return Condition(type="RouteAccepted", status="True", reason="Accepted",
                     message="accepted by " + ", ".join(p.status.gateway for p in found) + note)


def _listener(p: Parent) -> Optional[dict[str, Any]]:
    listeners = (p.gateway or {}).get("listeners") or []
    for item in listeners:
        if (p.ref.section_name is None or item.get("name") == p.ref.section_name) and \
                (p.ref.port is None or item.get("port") == p.ref.port) and item.get("protocol") in ("HTTP", "HTTPS"):
            return item
    return None


def address(p: Parent, gateway: GatewayTraffic) -> Optional[tuple[str, str, Optional[str]]]:
    """(scheme://address:port to send to, the Host header, the public host) of an accepted parent, or None."""
    listener = _listener(p)
    if listener is None:
        return None
    scheme = "https" if listener.get("protocol") == "HTTPS" else "http"
    port = listener.get("port")
    named = [h for h in gateway.hostnames if not h.startswith("*")]
    listener_host = listener.get("hostname")
    host = named[0] if named else (listener_host if listener_host and not listener_host.startswith("*") else None)
    addresses = (p.gateway or {}).get("addresses") or []
    where = addresses[0] if addresses else host
    if where is None:
        return None
    where = f"[{where}]" if ":" in where else where
    return f"{scheme}://{where}:{port}", host or "", host or (addresses[0] if addresses else None)


def external_url(spec: ModelDeploymentSpec, found: list[Parent]) -> Optional[str]:
    """The model's URL through the first Gateway that accepted the route."""
    gateway = gateway_of(spec)
    if gateway is None:
        return None
    for p in found:
        if p.status.accepted != "True":
            continue
        listener, at = _listener(p), address(p, gateway)
        if listener is None or at is None or at[2] is None:
            continue
        scheme = "https" if listener.get("protocol") == "HTTPS" else "http"
        port = listener.get("port")
        default = (scheme, port) in (("http", 80), ("https", 443))
        host = f"[{at[2]}]" if ":" in at[2] else at[2]
        return f"{scheme}://{host}{'' if default else f':{port}'}{gateway.path_prefix}"
    return None


@dataclass(frozen=True)
class View:
    """Gateway mode in one pass: the live route (cached, kubento's), what its
    Gateways said, what it carries, and the last probe of mirroring."""

    live: Optional[dict[str, Any]]
    parents: list[Parent]
    seen: RouteSeen
    mirror_check: Optional[MirrorCheck]

    def referenced(self, owner: Owner) -> set[str]:
        """Every revision the live route names (any rule, mirrors too)."""
        out = set()
        for rule in ((self.live or {}).get("spec") or {}).get("rules") or []:
            names = [b.get("name", "") for b in rule.get("backendRefs") or []]
            names += [(m.get("backendRef") or {}).get("name", "") for m in rule.get("mirrors") or []]
            out |= {rev for n in names if (rev := _revision(owner, n)) is not None}
        return out


def view(spec: ModelDeploymentSpec, owner: Owner, routes: list[dict[str, Any]], gateways: Gateways,
         previous: Optional[MirrorCheck], probed: Optional[MirrorCheck]) -> View:
    live = next((r for r in routes if r["metadata"]["name"] == owner.name and owner.controls(r)), None)
    found = parents(spec, owner, live, gateways)
    return View(live, found, seen(owner, live, found), probed or previous)


def traffic_status(spec: ModelDeploymentSpec, owner: Owner, v: Optional[View], route: Optional[Route]
                   ) -> TrafficStatus:
    if v is None:
        return TrafficStatus(mode="replicas")
    weights = route.weights if route is not None else tuple(sorted(v.seen.weights.items()))
    mirror = (route.mirror if route is not None else v.seen.mirror)
    return TrafficStatus(mode="gateway", route=owner.name,
                         backends=[BackendWeight(revision=rev, weight=w) for rev, w in weights],
                         mirror=mirror[1] if mirror else None, parents=[p.status for p in v.parents],
                         mirror_check=v.mirror_check)


def children(spec: ModelDeploymentSpec, owner: Owner, v: View, route: Route, retry_served: bool
             ) -> list[dict[str, Any]]:
    """The route and the Services of every revision it names (and, until every
    Gateway has seen the change, of those its live version names)."""
    revisions = set(route.backends) | (v.referenced(owner) if not v.seen.acked else set())
    return [revision_service(spec, owner, rev) for rev in sorted(revisions)] + \
        [http_route(spec, owner, route, retry_served)]
