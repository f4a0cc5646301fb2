"""What a real model's pod needs, on a real node (issue #18): weights read
from a PersistentVolumeClaim at startup, an in-memory /dev/shm of a given
size, a sidecar answering on its own port, configuration from a ConfigMap,
a priority class; and a model that loads longer than its startup budget is
rolled back with a reason that says so, then rolls out once
startupTimeoutSeconds allows the load.

The model is e2e/test_pods_project (standard library only), built into an
archive with `kubento build` and served to the pods over HTTP from this
machine; it runs in the iris image (bentoml and kubento's fetch helper).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from e2e.conftest import NAMESPACE
from e2e.support import ROOT, apply_md, md, settled
from e2e.test_sources_git_pvc import BENTO_UID, claim  # noqa: F401 - a fixture: a bound PVC on this node
from tests.helpers import condition, wait_for

PROJECT = ROOT / "e2e" / "test_pods_project"


@pytest.fixture(scope="module")
def pods_archive(cluster, host_ip, tmp_path_factory):
    """(uri, sha256) of the test project's archive, served over HTTP on the node's address."""
    root = tmp_path_factory.mktemp("pods-store")
    out = root / "pods.bento"
    kubento = Path(sys.executable).parent / "kubento"
    subprocess.run([str(kubento), "build", str(PROJECT), "-o", str(out)], check=True, capture_output=True,
                   env={**os.environ, "BENTOML_HOME": str(root / "bentoml")}, timeout=300)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((host_ip, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{host_ip}:{server.server_address[1]}/pods.bento", hashlib.sha256(out.read_bytes()).hexdigest()
    server.shutdown()


def probe_spec(images, archive, **extra) -> dict:
    uri, digest = archive
    return {"bento": {"archive": {"uri": uri, "sha256": digest}}, "runtimeImage": images["iris"], **extra}


def model_pod(cluster, name: str) -> dict:
    pods = cluster.get("pods", "-n", NAMESPACE, "-l", f"serving.kubento.io/model-deployment={name}",
                       "--field-selector", "status.phase=Running")["items"]
    current = md(cluster, name)["status"]["currentRevision"]
    return next(p for p in pods if p["metadata"]["labels"]["serving.kubento.io/revision"] == current)


def in_pod(cluster, pod: dict, container: str, url: str, body: dict | None = None) -> str:
    """GET (or POST ``body`` to) ``url`` from inside ``container`` of ``pod``."""
    script = ("import json,sys,urllib.request as u; b=sys.argv[2]; "
              "r=u.Request(sys.argv[1], data=b.encode() if b else None, headers={'content-type':'application/json'}); "
              "print(u.urlopen(r, timeout=10).read().decode())")
    return cluster.kubectl("exec", "-n", NAMESPACE, pod["metadata"]["name"], "-c", container, "--",
                           "python3", "-c", script, url, json.dumps(body) if body is not None else "").stdout


def info(cluster, name: str) -> dict:
    """The model's /info, through its Service (asked from inside its pod: works on kind too)."""
    ip = cluster.get("service", name, "-n", NAMESPACE)["spec"]["clusterIP"]
    return json.loads(in_pod(cluster, model_pod(cluster, name), "bento", f"http://{ip}/info", {}))


@pytest.fixture
def priority_class(cluster):
    name = f"kubento-e2e-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "priorityclass", name, "--value=1000", "--description=kubento e2e")
    yield name
    cluster.kubectl("delete", "priorityclass", name, "--ignore-not-found", check=False)


def test_weights_from_a_pvc_shm_a_sidecar_and_the_other_pod_fields(cluster, images, pods_archive, claim,  # noqa: F811
                                                                    priority_class, model, request):
    token = uuid.uuid4().hex
    weights = claim.directory / "weights.txt"
    weights.write_text(token + "\n")
    os.chown(weights, BENTO_UID, BENTO_UID)
    config = f"pods-config-{token[:5]}"
    cluster.kubectl("create", "configmap", config, "-n", NAMESPACE, f"--from-literal=GREETING=hello-{token[:8]}")
    request.addfinalizer(lambda: cluster.kubectl("delete", "configmap", config, "-n", NAMESPACE, check=False))
    spec = probe_spec(
        images, pods_archive,
        env=[{"name": "MODEL_FILE", "value": "/models/weights.txt"}],
        envFrom=[{"configMapRef": {"name": config}}],
        volumes=[{"name": "weights", "persistentVolumeClaim": {"claimName": claim.name, "readOnly": True}}],
        volumeMounts=[{"name": "weights", "mountPath": "/models", "readOnly": True}],
        shmSize="256Mi",
        terminationGracePeriodSeconds=20,
        priorityClassName=priority_class,
        topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                    "whenUnsatisfiable": "DoNotSchedule"}],
        podOverlay={"containers": [{
            "name": "sidecar", "image": images["iris"],
            "command": ["python3", "-m", "http.server", "8081", "--directory", "/tmp"],
            "ports": [{"containerPort": 8081, "name": "side"}],
            "readinessProbe": {"tcpSocket": {"port": "side"}, "periodSeconds": 1},
        }]},
    )
    name = model("pods", spec)
    wait_for(f"{name} to be Ready", lambda: settled(cluster, name), timeout=300, interval=1)

    seen = info(cluster, name)
    assert seen["weights"] == token  # read from the claim at startup
    assert seen["greeting"] == f"hello-{token[:8]}"  # envFrom the ConfigMap
    assert seen["shm_bytes"] == 256 * 2**20  # /dev/shm: a 256Mi tmpfs
    pod = model_pod(cluster, name)
    # the sidecar answers on its own port, beside the model
    assert "Directory listing" in in_pod(cluster, pod, "bento", "http://localhost:8081/")
    assert pod["spec"]["priority"] == 1000 and pod["spec"]["priorityClassName"] == priority_class
    assert pod["spec"]["terminationGracePeriodSeconds"] == 20
    sidecar = next(c for c in pod["spec"]["containers"] if c["name"] == "sidecar")
    assert sidecar["securityContext"]["runAsNonRoot"] is True  # it passed Pod Security "restricted"
    print(f"\n[pods] {name}: weights, envFrom, shm {seen['shm_bytes']} bytes, sidecar on 8081, priority 1000")


def test_a_slow_model_is_rolled_back_past_its_startup_budget_and_rolls_out_within_it(cluster, images, pods_archive,
                                                                                      model):
    load = [{"name": "LOAD_SECONDS", "value": "40"}]
    name = model("slow", probe_spec(images, pods_archive))
    wait_for(f"{name} to be Ready", lambda: settled(cluster, name), timeout=300, interval=1)
    v1 = md(cluster, name)["status"]["stableRevision"]

    # 40 s to load, 10 s allowed: the kubelet restarts it; kubento rolls back.
    start = time.monotonic()
    apply_md(cluster, name, probe_spec(images, pods_archive, env=load, startupTimeoutSeconds=10))
    obj = wait_for("the rollback", lambda: (o := md(cluster, name)) and condition(o, "RolledBack").get("status") == "True"
                   and o["status"].get("phase") == "RolledBack" and o, timeout=240, interval=1)
    took = time.monotonic() - start
    rolled = condition(obj, "RolledBack")
    print(f"\n[pods] over budget: rolled back after {took:.0f}s: {rolled['reason']}: {rolled['message']}")
    assert rolled["reason"] == "CandidateFailed"
    assert "did not answer its startup probe within 10s" in rolled["message"]
    assert "startupTimeoutSeconds" in rolled["message"]
    assert obj["status"]["stableRevision"] == v1
    assert info(cluster, name)["loaded_in"] < 10  # v1 serves

    # 90 s allowed: the same model rolls out.
    start = time.monotonic()
    apply_md(cluster, name, probe_spec(images, pods_archive, env=load, startupTimeoutSeconds=90))
    obj = wait_for("the slow revision to serve", lambda: (o := settled(cluster, name))
                   and o["status"]["stableRevision"] != v1 and o, timeout=300, interval=1)
    print(f"[pods] within budget: Ready after {time.monotonic() - start:.0f}s")
    # The old pod leaves the Service's endpoints as it terminates (kube-proxy follows within seconds).
    assert wait_for("the slow revision to answer through the Service",
                    lambda: info(cluster, name)["loaded_in"] >= 40, timeout=30, interval=1)
    assert obj["status"]["history"][-1]["outcome"] == "Serving"
