"""What the API server would do with an object under the CRD's structural
schema: the fields it prunes (not declared, no x-kubernetes-preserve-unknown-
fields) and the values of the wrong type it refuses. For tests that check
what kubento writes against the CRD it installs."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "serving.kubento.io_modeldeployments.yaml"

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


@functools.lru_cache(maxsize=1)
def status_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def problems(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    """Where ``value`` does not fit ``schema``: "<path>: pruned" or "<path>: not a <type>"."""
    out: list[str] = []
    kind = schema.get("type")
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = kind is None or isinstance(value, _TYPES[kind])
    if not ok:
        return [f"{path}: not a {kind} ({value!r})"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                out += problems(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += problems(item, extra, f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                out.append(f"{path}.{key}: pruned (not in the CRD's schema)")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += problems(item, schema["items"], f"{path}[{i}]")
    return out


def status_problems(status: dict[str, Any]) -> list[str]:
    return problems(status, status_schema())
