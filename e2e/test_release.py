"""The release path of docs/install.md, as a user runs it: `make release-images`
builds the operator image with e2e/images/operator.Dockerfile on a Docker
engine and pushes it to a registry; the chart, given only that registry
(image.registry; the tag defaults to the chart's appVersion), makes the node
pull the operator from there, and the operator runs.

Here: Debian's docker.io (e2e/kind/docker starts it), the Dockerfile's base
made locally (no base image can be pulled: the debootstrapped Python rootfs of
`e2e/images/build base`, `docker import`ed, as BASE_IMAGE), a CNCF
Distribution registry built from its Go module (hack/registry.sh) on
localhost, and the local cluster's containerd allowed to pull from it over
plain HTTP (`e2e/cluster registry`). Only the operator image is built in the
test (the runtime image, with BentoML, takes minutes on a fresh machine; see
docs/install.md for its command). Fails, never skips, when a part is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from e2e.conftest import CLUSTER, ROOT, run
from tests.helpers import wait_for

NAMESPACE = "kubento-release-e2e"
RELEASE = "kubento-release"
DOCKER = "/usr/bin/docker"  # Debian's CLI, matching the dockerd e2e/kind/docker starts


@pytest.fixture(scope="module", autouse=True)
def local_cluster_only():
    """The node must pull from this machine's localhost registry through the
    local cluster's containerd (e2e/cluster registry): another cluster's
    nodes cannot. Pointed at one, this fails (the kind tier leaves it out)."""
    if os.environ.get("KUBENTO_E2E_KUBECONFIG"):
        pytest.fail("e2e/test_release.py needs the local cluster (e2e/cluster), not KUBENTO_E2E_KUBECONFIG's: "
                    "run it without that variable", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry on localhost:<port>, storage in a temporary directory."""
    binary = run(str(ROOT / "hack" / "registry.sh"), timeout=1200).stdout.strip()
    port = free_port()
    root = tmp_path_factory.mktemp("registry")
    config = root / "config.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    log = open(root / "registry.log", "w")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"})
    try:
        wait_for("the registry to answer /v2/", lambda: proc.poll() is None and urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v2/", timeout=2).status == 200, timeout=30)
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(root / "data", ignore_errors=True)  # the pushed image (~300 MB)


@pytest.fixture(scope="module")
def docker():
    """A Docker engine (e2e/kind/docker: Debian's docker.io, installed and started
    if none answers) and, in it, the base image the Dockerfiles build FROM."""
    run(str(ROOT / "e2e" / "kind" / "docker"), "up", timeout=600)
    try:
        rootfs = Path(run(str(ROOT / "e2e" / "images" / "build"), "base", timeout=1800).stdout.strip())
        base = f"kubento.local/python-base:{rootfs.parent.name.rsplit('-', 1)[-1]}"
        if run(DOCKER, "image", "inspect", base, check=False).returncode != 0:
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            subprocess.run([DOCKER, "import", "-", base], stdin=tar.stdout, check=True, capture_output=True, timeout=600)
            assert tar.wait() == 0
        yield base
    finally:
        subprocess.run([str(ROOT / "e2e" / "kind" / "docker"), "down"], capture_output=True, text=True, timeout=600)


def version() -> str:
    return next(line.split('"')[1] for line in (ROOT / "pyproject.toml").read_text().splitlines()
                if line.startswith("version"))


def test_operator_image_built_pushed_and_pulled_by_the_cluster_from_a_registry(cluster, helm, registry, docker):
    # 1. make release-images, as docs/install.md says (only the operator here), pushing to the registry.
    repo = f"{registry}/kubento"
    start = time.monotonic()
    proc = run("make", "-s", "-C", str(ROOT), "release-images", f"REGISTRY={repo}", timeout=1800, env={
        **os.environ, "IMAGES": "operator", "BASE_IMAGE": docker, "DOCKER": DOCKER,
        "CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"})
    built = time.monotonic() - start
    ref = f"{repo}/kubento-operator:{version()}"
    lines = proc.stdout.split()
    assert len(lines) == 1 and lines[0].startswith(f"{ref}@sha256:"), proc.stdout
    digest = lines[0].split("@", 1)[1]
    # The registry has it under that tag and digest.
    port = registry.rsplit(":", 1)[1]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/kubento/kubento-operator/manifests/{version()}", method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Docker-Content-Digest"] == digest

    # 2. The node may pull from it (plain HTTP); the chart gets only the registry.
    run(str(CLUSTER), "registry", registry)
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    cluster.kubectl("label", "--overwrite", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    try:
        start = time.monotonic()
        run(helm, "upgrade", "--install", RELEASE, str(ROOT / "charts" / "kubento"), "--kubeconfig", cluster.kubeconfig,
            "--namespace", NAMESPACE, "--set", f"image.registry={repo}", "--set", "image.pullPolicy=Always",
            # its own namespace only: the suite's operator (cluster-wide) keeps the models elsewhere
            "--set", f"watch.namespaces={{{NAMESPACE}}}", "--wait", "--timeout", "3m")
        installed = time.monotonic() - start
        pods = cluster.get("pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        pod = pods[0]
        container = pod["spec"]["containers"][0]
        status = pod["status"]["containerStatuses"][0]
        assert container["image"] == ref
        # Pulled from the registry: the image the node runs is the pushed digest.
        assert status["imageID"] == f"{repo}/kubento-operator@{digest}", status
        assert status["ready"] is True
        # The runtime image it hands to models: same registry, same tag (one place).
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["KUBENTO_RUNTIME_IMAGE"] == f"{repo}/bentoml-runtime:{version()}"
        # It runs: it leads on its Lease in its namespace (the API server answers it).
        lease = wait_for("the operator to take its Lease", lambda: cluster.get("lease", "kubento", "-n", NAMESPACE), timeout=60)
        assert lease["spec"]["holderIdentity"].startswith(pod["metadata"]["name"] + "-"), lease["spec"]
        print(f"\nrelease path: make release-images (operator) {built:.0f}s, helm install + pull + ready {installed:.0f}s")
    finally:
        run(helm, "uninstall", RELEASE, "--kubeconfig", cluster.kubeconfig, "--namespace", NAMESPACE, "--wait", check=False)
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
