"""e2e tier: a full single-node cluster (e2e/cluster: kubelet + containerd +
kube-proxy) or, with KUBENTO_E2E_KUBECONFIG, any cluster you point it at
(e2e/kind/run does that for kind). The operator runs as a pod installed by
`helm install` from locally built images; real BentoML pods answer.

Fails, never skips, when the cluster or the images cannot be made.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import get_json, tail_logs

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "e2e" / "cluster"
OPERATOR_NAMESPACE = "kubento-system"
NAMESPACE = "kubento-e2e"
IMAGES = ("operator", "iris", "crashing")


def run(*args: str, check: bool = True, timeout: float = 1800, **kw: Any) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{shlex.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


@dataclass
class Cluster:
    kubeconfig: str
    kubectl_bin: str
    log_dir: str | None

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return run(self.kubectl_bin, "kubectl", "--kubeconfig", self.kubeconfig, *args, check=check, input=input, timeout=120)

    def get(self, *args: str) -> dict[str, Any] | None:
        return get_json(self.kubectl, *args)

    def log_tail(self, lines: int = 30) -> str:
        out = tail_logs(self.log_dir, lines)
        operator = self.kubectl("logs", "-n", OPERATOR_NAMESPACE, "deployment/kubento", "--tail=60", check=False)
        out.append("--- operator logs")
        out.append(operator.stdout + operator.stderr)
        return "\n".join(out)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    kube_bin = run(str(ROOT / "e2e" / "kubebin" / "build.sh")).stdout.strip()
    external = os.environ.get("KUBENTO_E2E_KUBECONFIG")
    if external:
        return Cluster(external, kube_bin, None)
    proc = subprocess.run([str(CLUSTER), "up"], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"the local cluster did not start:\n{proc.stderr[-6000:]}", pytrace=False)
    kubeconfig = run(str(CLUSTER), "kubeconfig").stdout.strip()
    log_dir = run(str(CLUSTER), "logs").stdout.strip()
    yield Cluster(kubeconfig, kube_bin, log_dir)
    if not os.environ.get("KUBENTO_KEEP_CLUSTER"):
        subprocess.run([str(CLUSTER), "down"], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def images(cluster) -> dict[str, str]:
    """Build the images (cached) and load them into the cluster's runtime."""
    paths = run(str(ROOT / "e2e" / "images" / "build"), *IMAGES, timeout=3600).stdout.split()
    assert len(paths) == len(IMAGES), paths
    loader = os.environ.get("KUBENTO_E2E_LOAD")  # e.g. "kind load image-archive --name kubento"
    for path in paths:
        if loader:
            run(*shlex.split(loader), path)
        else:
            run(str(CLUSTER), "import", path)
    refs = {}
    for name, path in zip(IMAGES, paths):
        index = run("tar", "-xOf", path, "index.json").stdout
        refs[name] = json.loads(index)["manifests"][0]["annotations"]["io.containerd.image.name"]
    return refs


@pytest.fixture(scope="session")
def operator(cluster, images, helm) -> None:
    repo, tag = images["operator"].rsplit(":", 1)
    # Both namespaces enforce Pod Security "restricted": the operator's and the
    # model servers' pods must pass it, or they are never created.
    for ns in (OPERATOR_NAMESPACE, NAMESPACE):
        cluster.kubectl("create", "namespace", ns, check=False)
        cluster.kubectl("label", "--overwrite", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    run(
        helm, "upgrade", "--install", "kubento", str(ROOT / "charts" / "kubento"),
        "--kubeconfig", cluster.kubeconfig, "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", f"image.repository={repo}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=IfNotPresent",
        "--set", "resyncSeconds=10", "--wait", "--timeout", "5m",
    )


