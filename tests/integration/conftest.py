"""Integration tier: a real kube-apiserver + etcd + kube-controller-manager
(started by e2e/controlplane), the CRD applied with kubectl, and the operator
running in-process under kopf's KopfRunner.

There is no kubelet and the controller-manager runs without its Deployment,
ReplicaSet and HPA controllers: the tests play the Deployment controller by
writing Deployment status. Garbage collection is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import helpers
from tests.helpers import tail_logs
from tests.specs import model_deployment

ROOT = Path(__file__).resolve().parents[2]
RESYNC_SECONDS = 2.0
STALL_SECONDS = 6.0  # the liveness probe fails after a pass this long (test_untrusted_pods holds one)


@dataclass
class ControlPlane:
    dir: Path
    kube_bin: str

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        return self.dir / "operator.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.dir / "audit.log"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [self.kube_bin, "kubectl", "--kubeconfig", str(self.admin_kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(tail_logs(self.dir / "logs", lines))


@pytest.fixture(scope="session")
def controlplane() -> ControlPlane:
    env = {
        **os.environ,
        "KUBENTO_CP_DIR": os.environ.get("KUBENTO_CP_DIR", "/tmp/kubento-controlplane"),
        "KUBENTO_CP_CONTROLLERS": "*,-deployment-controller,-replicaset-controller,-horizontal-pod-autoscaler-controller,-job-controller",
    }
    script = str(ROOT / "e2e" / "controlplane")
    subprocess.run([script, "down"], env=env, capture_output=True)  # a fresh state every session
    proc = subprocess.run([script, "up"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        # Fail, never skip: this tier is meaningless without a real API server.
        pytest.fail(f"the control plane did not start:\n{proc.stderr}", pytrace=False)
    kube_bin = subprocess.run(
        [str(ROOT / "e2e" / "kubebin" / "build.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    cp = ControlPlane(Path(proc.stdout.strip().splitlines()[-1]), kube_bin)
    cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    # The Gateway API's standard channel (HTTPRoute, Gateway), as a cluster with a Gateway has it: gateway
    # mode's routes are validated by the real schema and CEL (tests/integration/test_routes.py).
    gateway_crds = subprocess.run([str(ROOT / "e2e" / "gateway" / "build.sh"), "crds"], capture_output=True, text=True)
    if gateway_crds.returncode != 0:
        pytest.fail(f"the Gateway API CRDs could not be collected:\n{gateway_crds.stderr}", pytrace=False)
    cp.kubectl("apply", "--server-side", "-f", str(Path(gateway_crds.stdout.strip()) / "gateway-api"))
    helpers.wait_established(cp.kubectl, "modeldeployments.serving.kubento.io")
    helpers.wait_established(cp.kubectl, "httproutes.gateway.networking.k8s.io")
    yield cp
    if not os.environ.get("KUBENTO_KEEP_CLUSTER"):
        subprocess.run([script, "down"], env=env, capture_output=True)


@pytest.fixture(scope="session")
def admin(controlplane):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(controlplane.admin_kubeconfig))


@pytest.fixture(scope="session")
def namespace(controlplane) -> str:
    name = "kubento-it"
    controlplane.kubectl("create", "namespace", name)
    return name


OPERATOR_NAMESPACE = "kubento-system"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:kubento"


@pytest.fixture(scope="session")
def operator_kubeconfig(controlplane, namespace, helm) -> Path:
    """Install the chart (namespaced mode) and return a kubeconfig holding a
    token of its ServiceAccount: the in-process operator gets exactly the
    chart's RBAC, no more."""
    proc = subprocess.run(
        [helm, "install", "kubento", str(ROOT / "charts" / "kubento"), "--namespace", OPERATOR_NAMESPACE,
         "--create-namespace", "--skip-crds", "--set", f"watch.namespaces={{{namespace}}}",
         "--kubeconfig", str(controlplane.admin_kubeconfig), "--wait=false"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    token = controlplane.kubectl("create", "token", "kubento", "-n", OPERATOR_NAMESPACE, "--duration=6h").stdout.strip()
    cfg = yaml.safe_load(controlplane.admin_kubeconfig.read_text())
    cfg["users"] = [{"name": "kubento", "user": {"token": token}}]
    cfg["contexts"] = [{"name": "kubento", "context": {"cluster": cfg["clusters"][0]["name"], "user": "kubento"}}]
    cfg["current-context"] = "kubento"
    path = controlplane.dir / "operator-sa.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def operator(controlplane, namespace, operator_kubeconfig):
    """kubento's Operator under KopfRunner, as the chart's ServiceAccount
    (``runner.operator``: the Operator object)."""
    from kopf.testing import KopfRunner

    from kubento.controller.config import Config
    from kubento.controller.handlers import registry
    from kubento.controller.operator import Operator

    os.environ["KUBECONFIG"] = str(operator_kubeconfig)
    liveness = f"http://127.0.0.1:{helpers.free_port()}/healthz"
    op = Operator(Config(resync_seconds=RESYNC_SECONDS, stall_seconds=STALL_SECONDS))
    args = ["run", "--standalone", "--namespace", namespace, "--verbose", f"--liveness={liveness}"]
    with KopfRunner(args, registry=registry(op), timeout=60) as runner:
        runner.liveness_url, runner.operator = liveness, op
        time.sleep(2)  # let the watches start
        yield runner
    assert runner.exception is None, runner.exception
    assert runner.exit_code == 0, runner.output[-3000:]


@pytest.fixture
def md(controlplane, namespace, operator):
    """Apply ModelDeployments with kubectl; deletes them after the test."""
    created: list[str] = []

    def apply(spec: dict[str, Any], name: str | None = None) -> str:
        name = name or f"md-{uuid.uuid4().hex[:6]}"
        controlplane.kubectl("apply", "-f", "-", input=yaml.safe_dump(model_deployment(name, namespace, spec)))
        created.append(name)
        return name

    yield apply
    for name in created:
        controlplane.kubectl("delete", "md", name, "-n", namespace, "--ignore-not-found", "--wait=false", check=False)

def get_json(cp: ControlPlane, *args: str) -> dict[str, Any] | None:
    return helpers.get_json(cp.kubectl, *args)


def model_deployments(cp: ControlPlane, namespace: str, name: str, *args: str) -> list[dict[str, Any]]:
    """The model's revision Deployments, oldest first (not those of its other BentoML services)."""
    items = get_json(cp, "deployments", "-n", namespace, "-l",
                     f"serving.kubento.io/model-deployment={name},serving.kubento.io/revision", *args)["items"]
    return sorted(items, key=lambda d: (d["metadata"]["creationTimestamp"], d["metadata"]["name"]))


def newest_deployment(cp: ControlPlane, namespace: str, name: str, *args: str) -> dict[str, Any] | None:
    """The Deployment of the spec's revision (status.currentRevision), else the
    newest one (creationTimestamp has whole seconds: two can tie), or None."""
    items = model_deployments(cp, namespace, name, *args)
    current = ((get_json(cp, "md", name, "-n", namespace) or {}).get("status") or {}).get("currentRevision")
    for dep in items:
        if dep["metadata"]["labels"].get("serving.kubento.io/revision") == current:
            return dep
    return items[-1] if items else None


def audit_events(cp: ControlPlane, since: int) -> list[dict[str, Any]]:
    """The operator's audited API calls after byte offset ``since``."""
    with open(cp.audit_log, "rb") as fh:
        fh.seek(since)
        return [json.loads(line) for line in fh.read().splitlines() if line.strip()]
