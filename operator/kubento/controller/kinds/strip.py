"""Helpers the kinds' strip functions share: what the cache keeps of metadata and conditions."""

from __future__ import annotations

from typing import Any, Optional

from kubento.builders.meta import ANNOTATION_APPLIED_HASH


def pick(obj: Optional[dict[str, Any]], *keys: str) -> dict[str, Any]:
    obj = obj or {}
    return {k: obj[k] for k in keys if obj.get(k) is not None}


def meta(obj: dict[str, Any], annotations: tuple[str, ...] = (ANNOTATION_APPLIED_HASH,)) -> dict[str, Any]:
    m = obj.get("metadata") or {}
    out = pick(m, "name", "namespace", "uid", "resourceVersion", "generation", "labels",
               "creationTimestamp", "deletionTimestamp")
    refs = [pick(r, "uid", "controller", "kind", "name") for r in m.get("ownerReferences") or []]
    if refs:
        out["ownerReferences"] = refs
    kept = {k: v for k, v in (m.get("annotations") or {}).items() if k in annotations}
    if kept:
        out["annotations"] = kept
    return out


def conditions(status: dict[str, Any], *times: str) -> list[dict[str, Any]]:
    return [pick(c, "type", "status", "reason", "message", *times) for c in status.get("conditions") or []]


def meta_only(obj: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": meta(obj)}
