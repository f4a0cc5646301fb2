"""What `kubento run` loads: kopf and kubento's controller, never the typed
Kubernetes client (its 1,000+ modules were half the operator's memory)."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json, sys
from kubento.cli import main
main.without_typed_client()
import kopf
from kubento.controller import config, handlers, metrics, operator
from kubento.builders.validate import validated
validated({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}})  # under a test: no check, no error
print(json.dumps(sorted(m for m, v in sys.modules.items() if v is not None)))
"""


def test_the_operator_process_loads_no_typed_kubernetes_client() -> None:
    env = {"PATH": "/usr/bin:/bin", "KUBENTO_CHECK_MANIFESTS": "1"}  # as `kubento run` started by a test
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout)
    assert "kopf" in modules and "kubento.controller.handlers" in modules
    assert [m for m in modules if m == "kubernetes" or m.startswith("kubernetes.")] == []
    assert len(modules) < 800, len(modules)  # 1,086 with the typed client
