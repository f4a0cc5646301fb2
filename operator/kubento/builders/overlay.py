"""spec.podOverlay merged into the pod kubento generates.

The merge is Kubernetes' strategic merge (what ``kubectl patch`` does by
default), driven by the patch metadata in Kubernetes' own OpenAPI (the
vendored document spec.podOverlay's schema comes from): maps merge key by
key; lists with a merge key (containers and initContainers by name, ports by
containerPort, ...) merge item by item; other lists and scalars are replaced.
One difference on purpose: kubectl puts a list's new items first, kubento
appends them, so the model container stays the pod's first (default)
container and kubento's fetch runs before the user's init containers
(tests/integration/test_pods.py compares the two). The API refuses at admission every overlay field that
would replace something kubento owns, so the merge only adds and adjusts.

Containers the overlay adds start from the model container's restricted
security context (Pod Security "restricted" needs it on every container);
their own securityContext fields override it.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from kubento.api.k8s import SCHEMAS, schema_ref

POD_SPEC = "io.k8s.api.core.v1.PodSpec"


def _merge_key(prop: dict[str, Any]) -> Optional[str]:
    strategy = prop.get("x-kubernetes-patch-strategy") or ""
    return prop.get("x-kubernetes-patch-merge-key") if "merge" in strategy.split(",") else None


def strategic_merge(base: Any, patch: Any, schema: Optional[str]) -> Any:
    """``patch`` merged into ``base`` (neither is modified) for objects of the
    OpenAPI definition ``schema``."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    props = (SCHEMAS.get(schema) or {}).get("properties") or {} if schema else {}
    out = copy.deepcopy(base)
    for key, value in patch.items():
        prop = props.get(key) or {}
        if key not in out:
            out[key] = copy.deepcopy(value)
            continue
        if isinstance(value, list):
            merge_key = _merge_key(prop)
            item_schema = schema_ref(prop.get("items") or {})
            if merge_key and all(isinstance(v, dict) for v in value + out[key]):
                out[key] = _merge_list(out[key], value, merge_key, item_schema)
            else:
                out[key] = copy.deepcopy(value)
        elif isinstance(value, dict):
            out[key] = strategic_merge(out[key], value, schema_ref(prop))
        else:
            out[key] = value
    return out


def _merge_list(base: list[dict[str, Any]], patch: list[dict[str, Any]], key: str,
                item_schema: Optional[str]) -> list[dict[str, Any]]:
    out = [copy.deepcopy(item) for item in base]
    index = {item.get(key): i for i, item in enumerate(out)}
    for item in patch:
        if item.get(key) in index:
            i = index[item.get(key)]
            out[i] = strategic_merge(out[i], item, item_schema)
        else:
            index[item.get(key)] = len(out)
            out.append(copy.deepcopy(item))
    return out


def prepared(pod: dict[str, Any], overlay: dict[str, Any], container_security: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` (spec.podOverlay, wire form) as the patch kubento merges:
    the containers it adds to ``pod`` start from ``container_security``."""
    overlay = copy.deepcopy(overlay)
    for list_name in ("containers", "initContainers"):
        existing = {c["name"] for c in pod.get(list_name) or []}
        for c in overlay.get(list_name) or []:
            if c["name"] not in existing:
                c["securityContext"] = strategic_merge(container_security, c.get("securityContext") or {},
                                                       "io.k8s.api.core.v1.SecurityContext")
    return overlay


def apply_overlay(pod: dict[str, Any], overlay: dict[str, Any], container_security: dict[str, Any]) -> dict[str, Any]:
    """The pod spec ``pod`` with ``overlay`` merged in."""
    return strategic_merge(pod, prepared(pod, overlay, container_security), POD_SPEC)
