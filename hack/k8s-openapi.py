#!/usr/bin/env python3
"""Vendor the part of Kubernetes' own OpenAPI that kubento's pod fields use.

kubento's pod-shaped fields (env, volumes, affinity, the pod overlay, ...) are
typed from the OpenAPI v3 document of the Kubernetes version the project
targets (e2e/kubebin/VERSION), not from the Python client's models: the
client (37) knows fields a 1.34 API server does not, which would pass
admission and then fail when the Deployment is applied.

Usage: hack/k8s-openapi.py [--check]   (needs Go; the module is downloaded once)
Writes operator/kubento/api/kubernetes-openapi.json: the definitions reachable
from core/v1 PodSpec, with the source version and the document's sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "operator" / "kubento" / "api" / "kubernetes-openapi.json"
ROOTS = ["io.k8s.api.core.v1.PodSpec"]


def module_dir(version: str) -> Path:
    proc = subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
                          capture_output=True, text=True, check=True, cwd="/")
    return Path(json.loads(proc.stdout)["Dir"])


def render(version: str) -> str:
    source = module_dir(version) / "api" / "openapi-spec" / "v3" / "api__v1_openapi.json"
    raw = source.read_bytes()
    schemas = json.loads(raw)["components"]["schemas"]
    keep: dict[str, dict] = {}
    stack = list(ROOTS)
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        keep[name] = schemas[name]
        stack.extend(re.findall(r"#/components/schemas/([\w.\-]+)", json.dumps(schemas[name])))
    doc = {
        "source": f"k8s.io/kubernetes@{version} api/openapi-spec/v3/api__v1_openapi.json",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "schemas": dict(sorted(keep.items())),
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def main() -> int:
    version = (ROOT / "e2e" / "kubebin" / "VERSION").read_text().strip()
    text = render(version)
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            print(f"{OUT} is out of date: run hack/k8s-openapi.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
