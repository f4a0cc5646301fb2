"""e2e tier: a full single-node cluster (e2e/cluster: kubelet + containerd +
kube-proxy) or, with KUBENTO_E2E_KUBECONFIG, any cluster you point it at
(e2e/kind/run does that for kind, with KUBENTO_E2E_LOAD, _IN_CLUSTER, _HOST_IP
and _VOLUME_DIR). The operator runs as a pod installed by
`helm install` from locally built images; real BentoML pods answer.

Fails, never skips, when the cluster or the images cannot be made.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shlex
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests import s3server
from tests.helpers import get_json, tail_logs

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "e2e" / "cluster"
OPERATOR_NAMESPACE = "kubento-system"
NAMESPACE = "kubento-e2e"
IMAGES = ("operator", "iris", "crashing", "runtime")
S3_SECRET = "e2e-s3"
S3_WRONG_SECRET = "e2e-s3-wrong"
# Where Service and pod IPs answer only inside the cluster (kind; e2e/kind/run
# sets it), the tests' HTTP clients run in a pod there (in_cluster_client).
IN_CLUSTER = bool(os.environ.get("KUBENTO_E2E_IN_CLUSTER"))
CLIENT_POD = "e2e-client"


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
    client_pod: str | None = None  # in_cluster_client's pod, with IN_CLUSTER

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
def cluster() -> Iterator[Cluster]:
    kube_bin = run(str(ROOT / "e2e" / "kubebin" / "build.sh")).stdout.strip()
    external = os.environ.get("KUBENTO_E2E_KUBECONFIG")
    if external:
        yield Cluster(external, kube_bin, None)
        return
    proc = subprocess.run([str(CLUSTER), "up"], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"the local cluster did not start:\n{proc.stderr[-6000:]}", pytrace=False)
    kubeconfig = run(str(CLUSTER), "kubeconfig").stdout.strip()
    log_dir = run(str(CLUSTER), "logs").stdout.strip()
    yield Cluster(kubeconfig, kube_bin, log_dir)
    if not os.environ.get("KUBENTO_KEEP_CLUSTER"):
        subprocess.run([str(CLUSTER), "down"], capture_output=True, text=True, timeout=600)


def _data_plane(cluster, name: str):
    """Start one of e2e/gateway's data planes for the session (fail, never
    skip, when it cannot be built or started); stopped at the end. On a
    cluster given by KUBENTO_E2E_KUBECONFIG whose nodes take images by
    KUBENTO_E2E_LOAD (kind), Traefik runs in the cluster; Envoy Gateway only
    beside e2e/cluster."""
    from e2e import gateway

    if os.environ.get("KUBENTO_E2E_KUBECONFIG") and (name != "traefik" or not os.environ.get("KUBENTO_E2E_LOAD")):
        pytest.fail(f"the {name} data plane runs as a host process beside e2e/cluster (e2e/gateway/dataplane); "
                    "on a cluster given by KUBENTO_E2E_KUBECONFIG only Traefik runs, in the cluster, and that needs "
                    "KUBENTO_E2E_LOAD (how its nodes take an image archive)", pytrace=False)
    try:
        plane = gateway.start(name)
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield plane
    if not os.environ.get("KUBENTO_KEEP_CLUSTER"):
        gateway.stop(name)


@pytest.fixture(scope="session")
def envoy_gateway(cluster):
    """Envoy Gateway (host mode, its Envoy as a process) and its Gateway
    kubento-gateway/kubento-e2e: an e2e.gateway.DataPlane."""
    yield from _data_plane(cluster, "envoy-gateway")


@pytest.fixture(scope="session")
def traefik_gateway(cluster):
    """Traefik (its Kubernetes Gateway provider) and its Gateway
    kubento-gateway/kubento-e2e-traefik: an e2e.gateway.DataPlane. A host
    process beside e2e/cluster; on kind a Deployment in the cluster (its
    image built here from the same binary), at its Service's address."""
    yield from _data_plane(cluster, "traefik")


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
        manifest = json.loads(run("tar", "-xOf", path, "index.json").stdout)["manifests"][0]
        refs[name] = manifest["annotations"]["io.containerd.image.name"]
        refs[f"{name}-digest"] = manifest["digest"]
    return refs


@pytest.fixture(scope="session")
def in_cluster_client(cluster, images):
    """With IN_CLUSTER: a pod (the iris image: python3) the tests' HTTP
    clients run in (e2e/support.py, e2e/traffic.py), as restricted as the models."""
    if not IN_CLUSTER:
        yield None
        return
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": CLIENT_POD, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": CLIENT_POD}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1034, "seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "client", "image": images["iris"], "imagePullPolicy": "IfNotPresent",
                "command": ["python3", "-c", "import signal, time; signal.signal(signal.SIGTERM, lambda *a: exit(0)); "
                            "time.sleep(10**9)"],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
            }],
        },
    }
    cluster.kubectl("delete", "pod", CLIENT_POD, "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    cluster.kubectl("wait", "-n", NAMESPACE, f"pod/{CLIENT_POD}", "--for=condition=Ready", "--timeout=100s")
    cluster.client_pod = CLIENT_POD
    yield CLIENT_POD
    cluster.kubectl("delete", "pod", CLIENT_POD, "-n", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator(cluster, images, helm, in_cluster_client) -> None:
    # One registry and tag for both images (the chart's image.registry/image.tag):
    # the runtime image the operator hands to models is named like the operator's.
    repo, tag = images["operator"].rsplit(":", 1)
    registry = repo.rsplit("/", 1)[0]
    assert images["runtime"] == f"{registry}/bentoml-runtime:{tag}", images
    # Both namespaces enforce Pod Security "restricted": the operator's and the
    # model servers' pods must pass it, or they are never created.
    for ns in (OPERATOR_NAMESPACE, NAMESPACE):
        cluster.kubectl("create", "namespace", ns, check=False)
        cluster.kubectl("label", "--overwrite", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    # Helm installs the chart's CRD on the first install only: on a cluster kept from an earlier
    # run, this checkout's CRD must be applied first (as docs/install.md says for upgrades).
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    run(
        helm, "upgrade", "--install", "kubento", str(ROOT / "charts" / "kubento"),
        "--kubeconfig", cluster.kubeconfig, "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", f"image.registry={registry}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=IfNotPresent",
        "--set", "resyncSeconds=10", "--wait", "--timeout", "5m",
        # A rebuilt image keeps its tag: a new digest must still restart the operator.
        "--set", f"podAnnotations.kubento\\.local/image-digest={images['operator-digest'].split(':')[-1][:16]}",
    )


@pytest.fixture
def model(cluster, operator):
    """Apply ModelDeployments under fresh names; delete them afterwards."""
    from e2e.support import apply_md

    names = []

    def apply(prefix: str, spec: dict) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        apply_md(cluster, name, spec)
        names.append(name)
        return name

    yield apply
    for name in names:
        cluster.kubectl("delete", "md", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)


def image_cache() -> Path:
    return Path(os.environ.get("KUBENTO_IMAGE_CACHE")
                or Path(os.environ.get("KUBENTO_CACHE") or Path.home() / ".cache" / "kubento") / "images")


@pytest.fixture(scope="session")
def iris_bento(images) -> Path:
    """The .bento archive of examples/iris, left by the iris image build."""
    path = (image_cache() / "latest-iris.bento").resolve()
    assert path.is_file(), f"{path} missing: e2e/images/build iris leaves it"
    return path


@pytest.fixture(scope="session")
def host_ip(cluster) -> str:
    """An address of this machine that pods reach (the node's bridge IP on
    the local cluster; kind's Docker network gateway, KUBENTO_E2E_HOST_IP);
    the test storage servers listen there only."""
    if os.environ.get("KUBENTO_E2E_HOST_IP"):
        return os.environ["KUBENTO_E2E_HOST_IP"]
    nodes = cluster.get("nodes")["items"]
    return next(a["address"] for a in nodes[0]["status"]["addresses"] if a["type"] == "InternalIP")


def volume_dir() -> str:
    """Where the tests make hostPath volumes' directories: this machine's /tmp
    on the local cluster; on kind (KUBENTO_E2E_VOLUME_DIR), a directory mounted
    into the node at the same path (e2e/kind/cluster.yaml's extraMounts)."""
    path = os.environ.get("KUBENTO_E2E_VOLUME_DIR", "/tmp")
    os.makedirs(path, exist_ok=True)
    return path


def put_secret(cluster, name: str, data: dict[str, str]) -> None:
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE}, "stringData": data}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


@pytest.fixture(scope="session")
def s3(cluster, host_ip, iris_bento, operator):
    """moto's S3 server on the node's address, with the iris archive in
    bucket "models", an empty bucket "built", and two Secrets: working and
    wrong credentials."""
    with s3server.running(host=host_ip) as server:
        server.create_bucket("models")
        server.create_bucket("built")
        server.upload("models", "iris/v1.bento", iris_bento)
        put_secret(cluster, S3_SECRET, server.env(host=host_ip))
        put_secret(cluster, S3_WRONG_SECRET, server.env("wrong-key", host=host_ip))
        yield server


@pytest.fixture(scope="session")
def http_store(host_ip, iris_bento, tmp_path_factory):
    """A plain HTTP server on the node's address serving the iris archive."""
    root = tmp_path_factory.mktemp("http-store")
    shutil.copy(iris_bento, root / "iris.bento")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((host_ip, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{host_ip}:{server.server_address[1]}"
    server.shutdown()
