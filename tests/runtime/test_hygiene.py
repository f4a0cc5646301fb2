"""The runtime image has only kubento/__init__.py and kubento/runtime/ next
to bentoml, minio, dulwich and oras: the runtime package must need nothing
else. (oras, the OCI registry client, and requests, its HTTP client, are
imported only when an oci:// archive is fetched.)"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "operator" / "kubento" / "runtime"
# minio and dulwich and what they pull in (urllib3 is also used directly: the
# HTTP client of both)
ALLOWED = {"kubento", "minio", "dulwich", "urllib3", "certifi", "argon2", "_argon2_cffi_bindings", "cffi",
           "_cffi_backend", "pycparser", "Crypto", "typing_extensions"}
FORBIDDEN = {"kopf", "kubernetes", "pydantic", "yaml", "bentoml", "boto3", "botocore",
             "kubento.api", "kubento.controller", "kubento.builders", "kubento.cli"}


# The modules that run inside BentoML's own server processes (the model
# server's drain at stop, kubento.runtime.drain) may also import what that
# server is made of, inside functions only: importing them loads none of it.
SERVER_SIDE = {"drain.py", "serving.py", "worker.py", "monitor.py", "tasks.py", "guard.py"}
# prometheus_client: BentoML's metrics registry (the monitor's counters join it); httpx: BentoML's
# HTTP client (the task forwarder's)
SERVER_IMPORTS = {"uvicorn", "_bentoml_impl", "bentoml_cli", "prometheus_client", "httpx"}
# PyYAML: BentoML's own dependency (wherever a bento is read, BentoML is), for bento.yaml's services
BENTO_SIDE = {"services.py"}
BENTO_IMPORTS = {"yaml"}


def test_sources_import_only_stdlib_minio_dulwich_oras_and_the_runtime() -> None:
    for path in sorted(RUNTIME.glob("*.py")):
        tree = ast.parse(path.read_text())
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                ok = top in sys.stdlib_module_names or top in {"minio", "dulwich", "urllib3", "certifi", "oras", "requests"} \
                    or name == "kubento.runtime" or name.startswith("kubento.runtime.")
                server = path.name in SERVER_SIDE and top in SERVER_IMPORTS and id(node) not in top_level
                bento = path.name in BENTO_SIDE and top in BENTO_IMPORTS and id(node) not in top_level
                assert ok or server or bento, f"{path.name} imports {name}"


def test_runs_from_a_copy_of_only_the_runtime_files(tmp_path: Path) -> None:
    """What the image holds: kubento/__init__.py + kubento/runtime/*.py. Import
    every module there and list what got loaded."""
    pkg = tmp_path / "kubento"
    (pkg / "runtime").mkdir(parents=True)
    shutil.copy(ROOT / "operator" / "kubento" / "__init__.py", pkg)
    for f in RUNTIME.glob("*.py"):
        shutil.copy(f, pkg / "runtime")
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"  # (the interpreter's own start-up: site, .pth hooks)
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import kubento.runtime, kubento.runtime.__main__, kubento.runtime.storage, kubento.runtime.bento, "
        "kubento.runtime.source, kubento.runtime.environment, kubento.runtime.drain, kubento.runtime.serving, "
        "kubento.runtime.worker, kubento.runtime.oci, kubento.runtime.fields, kubento.runtime.monitor, "
        "kubento.runtime.services, kubento.runtime.tasks\n"
        "assert kubento.runtime.__file__.startswith(sys.path[0]), kubento.runtime.__file__\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(proc.stdout))
    loaded = {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names and m != "__main__"}
    assert not {m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f + ".")}, sorted(loaded)
    assert {m.split(".")[0] for m in loaded} <= ALLOWED, sorted({m.split(".")[0] for m in loaded} - ALLOWED)
    assert {m for m in loaded if m.startswith("kubento")} <= {
        "kubento", "kubento.runtime", "kubento.runtime.__main__", "kubento.runtime.storage", "kubento.runtime.bento",
        "kubento.runtime.source", "kubento.runtime.environment", "kubento.runtime.drain", "kubento.runtime.serving",
        "kubento.runtime.worker", "kubento.runtime.oci", "kubento.runtime.fields", "kubento.runtime.monitor",
        "kubento.runtime.services", "kubento.runtime.tasks"}

    helped = subprocess.run([sys.executable, "-m", "kubento.runtime", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert helped.returncode == 0 and "fetch" in helped.stdout, helped.stderr
