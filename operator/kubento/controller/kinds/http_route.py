"""The model's Gateway API HTTPRoute (gateway mode; the kind may not be
served). The cache keeps what kubento reads back: the parents, each rule's
header matches, backends and mirror, and each Gateway's conditions."""

from __future__ import annotations

from typing import Any

from kubento.builders.route import ROUTE_API_VERSION
from kubento.controller.kinds import HTTP_ROUTE, Kind
from kubento.controller.kinds.strip import meta, pick


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    headers = [pick(h, "name", "value") for m in rule.get("matches") or [] for h in m.get("headers") or []]
    mirrors = [pick(f.get("requestMirror") or {}, "percent", "fraction") | {
        "backendRef": pick((f.get("requestMirror") or {}).get("backendRef"), "name")}
        for f in rule.get("filters") or [] if f.get("type") == "RequestMirror"]
    out: dict[str, Any] = {"backendRefs": [pick(b, "name", "weight") for b in rule.get("backendRefs") or []]}
    if headers:
        out["headers"] = headers
    if mirrors:
        out["mirrors"] = mirrors
    return out


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    parents = [{"parentRef": pick(p.get("parentRef"), "name", "namespace", "sectionName", "port"),
                "conditions": [pick(c, "type", "status", "reason", "message", "observedGeneration")
                               for c in p.get("conditions") or []]}
               for p in status.get("parents") or []]
    return {"metadata": meta(obj),
            "spec": {"parentRefs": [pick(p, "name", "namespace", "sectionName", "port") for p in spec.get("parentRefs") or []],
                     "hostnames": list(spec.get("hostnames") or []),
                     "rules": [_rule(r) for r in spec.get("rules") or []]},
            "status": {"parents": parents}}


def names_of(model: str) -> tuple[str, ...]:
    return (model,)


KIND = Kind(HTTP_ROUTE, ROUTE_API_VERSION, "httproutes", strip, names_of=names_of, models_named=names_of)
