"""Generate the ModelDeployment CRD from the pydantic models.

Pydantic emits JSON Schema (with $refs, anyOf-null for optionals, titles); a
CRD needs a *structural* OpenAPI v3 schema (everything inlined, one type per
node). ``structural`` does that translation and keeps descriptions, enums,
bounds, patterns, defaults and the CEL rules attached to the models.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from kubento.api import v1alpha1 as api

CRD_FILENAME = f"{api.GROUP}_{api.PLURAL}.yaml"

# The Service is named after the ModelDeployment (a DNS-1035 label). 52, not
# 63, leaves room for the "-<10 char revision>" suffix that per-revision
# Deployments (canary, blue-green) will need.
NAME_RULE = api.cel(
    "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 52",
    "metadata.name must start with a letter, contain only lowercase letters, digits and '-', "
    "and be at most 52 characters (it names the model's Service and Deployments)",
)

PRINTER_COLUMNS = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Revision", "type": "string", "jsonPath": ".status.currentRevision"},
    {"name": "Stable", "type": "string", "jsonPath": ".status.stableRevision", "priority": 1},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight", "priority": 1},
    {"name": "Requested", "type": "integer", "jsonPath": ".status.rollout.requestedWeight", "priority": 1},
    {"name": "Traffic", "type": "string", "jsonPath": ".status.traffic.mode", "priority": 1},
    {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
    {"name": "Available", "type": "integer", "jsonPath": ".status.readyReplicas", "priority": 1},
    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

_DROP = {"title", "discriminator"}


def _clean_description(text: str) -> str:
    # The kubernetes client's models append codegen boilerplate to docstrings.
    text = text.split("\n\nAttributes:")[0]
    return " ".join(text.split())


def _merge_into(target: dict[str, Any], field: dict[str, Any]) -> None:
    """Put a field's own keywords on the schema of its type: its description
    wins, its CEL rules are added, other keywords fill what the type lacks."""
    for key, value in field.items():
        if key == "description":
            target[key] = value
        elif key == "x-kubernetes-validations":
            target[key] = list(target.get(key, [])) + [v for v in value if v not in target.get(key, [])]
        else:
            target.setdefault(key, value)


def structural(node: Any, defs: dict[str, Any]) -> Any:
    """Translate one pydantic JSON Schema node into a structural CRD schema node."""
    if isinstance(node, list):
        return [structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        # The field's own description wins over the model's docstring; its
        # rules add to the model's.
        _merge_into(target, {k: v for k, v in node.items() if k in ("description", "default") or k.startswith("x-")})
        node = target
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        variants = [v for v in node.pop("anyOf") if v != {"type": "null"}]
        if len(variants) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {variants}")
        merged = dict(variants[0])
        if "$ref" in merged:
            merged = structural(merged, defs)
        _merge_into(merged, {k: v for k, v in node.items() if not (k == "default" and v is None)})
        node = merged
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "additionalProperties" and value is False:
            continue  # unknown fields are rejected by the API server's strict field validation
        if key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True  # any JSON object (dict[str, Any])
            continue
        if key == "description":
            out[key] = _clean_description(value)
        elif key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = structural(value, defs)
        elif key == "const":  # a one-value Literal; CRDs have no const (it would be ignored)
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # pydantic's gt/lt, JSON Schema 2020 style; the API server's OpenAPI v3 has a bound and a flag
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "anyOf":
            out[key] = [{k: v for k, v in variant.items() if k != "title"} for variant in value]
        else:
            out[key] = value
    if out.get("type") is None and "anyOf" not in out and "properties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def model_schema(model: type[api.Model]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def crd() -> dict[str, Any]:
    """The ModelDeployment CustomResourceDefinition as a dict."""
    spec = model_schema(api.ModelDeploymentSpec)
    status = model_schema(api.ModelDeploymentStatus)
    root = {
        "type": "object",
        "description": (
            "ModelDeployment serves a BentoML service on Kubernetes: kubento builds or imports the "
            "bento, runs it behind a Service, scales it and rolls new revisions out (and back)."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "serving.kubento.io/v1alpha1"},
            "kind": {"type": "string", "description": "ModelDeployment"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [NAME_RULE],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/name": "kubento", "app.kubernetes.io/part-of": "kubento"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": api.CATEGORIES,
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


HEADER = "# Generated by `kubento crds` from operator/kubento/api/v1alpha1.py. Do not edit.\n"


def render() -> dict[str, str]:
    """File name -> YAML text of every generated CRD."""
    text = yaml.safe_dump(crd(), sort_keys=False, width=120, allow_unicode=True)
    return {CRD_FILENAME: HEADER + text}


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
