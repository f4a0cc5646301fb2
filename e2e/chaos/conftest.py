"""The chaos tier: the operator as a process against a real control plane
(e2e/controlplane in a directory and ports of its own), killed, cut off and
restarted; a client plays the Deployment controller (tests.controlplane).
The leader-election test runs on the local node cluster with real pods
(e2e/conftest.py's fixtures).

Ports: $KUBENTO_CP_PORT + 100 and $KUBENTO_CP_ETCD_PORT + 100 (defaults
26543 and 22479), directory $KUBENTO_CP_DIR-chaos: beside the integration
tier's control plane, never on it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client

from tests.controlplane import ControlPlane, Operator, api

NAMESPACE = "chaos"
OPERATOR_NAMESPACE = "kubento-system"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Chaos:
    cp: ControlPlane
    admin: client.ApiClient
    operator_kubeconfig: Path
    operators: list[Operator] = field(default_factory=list)

    def operator(self, kubeconfig: Path | None = None, identity: str = "kubento-0", **kw) -> Operator:
        """``kubento run -n chaos`` with the chart's RBAC and leader election, as the chart runs it."""
        kw.setdefault("election_namespace", OPERATOR_NAMESPACE)
        op = Operator(kubeconfig or self.operator_kubeconfig, self.cp.dir / f"operator-{identity}.log",
                      namespaces=[NAMESPACE], metrics_port=free_port(), health_port=free_port(), identity=identity,
                      **kw)
        self.operators.append(op)
        return op

    def log_tail(self, lines: int = 30) -> str:
        out = [self.cp.log_tail(lines)]
        for op in self.operators:
            text = op.log_path.read_text(errors="replace").splitlines() if op.log_path.exists() else []
            out.append(f"--- {op.log_path} (last {lines * 2} lines)")
            out.extend(text[-lines * 2:])
        return "\n".join(out)


@pytest.fixture
def chaos() -> Chaos:
    base = os.environ.get("KUBENTO_CP_DIR", "/tmp/kubento-controlplane")
    cp = ControlPlane(f"{base}-chaos", int(os.environ.get("KUBENTO_CP_PORT", "26443")) + 100,
                      int(os.environ.get("KUBENTO_CP_ETCD_PORT", "22379")) + 100)
    try:
        cp.up()
    except RuntimeError as exc:  # fail, never skip: this tier means nothing without a real API server
        pytest.fail(str(exc), pytrace=False)
    cp.install_operator(OPERATOR_NAMESPACE, [NAMESPACE], watch=[NAMESPACE])
    kubeconfig = cp.token_kubeconfig("kubento", OPERATOR_NAMESPACE, cp.dir / "operator-sa.kubeconfig")
    made = Chaos(cp, api(cp.admin), kubeconfig)
    yield made
    for op in made.operators:
        op.terminate(20)
    if not os.environ.get("KUBENTO_KEEP_CLUSTER"):
        cp.down()
