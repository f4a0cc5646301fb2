"""Bentos from an OCI registry on a real node: a real CNCF Distribution registry
(hack/registry.sh) on the node's address, with a user (htpasswd). A bento pushed by
`kubento push` serves from a registry whose certificate a private CA signs (the CA
in a ConfigMap, bento.archive.caBundle; the credentials in the model's
imagePullSecrets); a wrong tag, a missing repository and an artifact that is not a
bento each fail the model with BentoFetchFailed and a message that says which."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from e2e.conftest import NAMESPACE
from e2e.support import IRIS_CLASSES, IRIS_ROWS, md, predict, ready
from tests import ociregistry
from tests.helpers import condition, wait_for, with_ready_reason

SECRET = "e2e-registry"


@pytest.fixture(scope="module")
def registries(host_ip, tmp_path_factory):
    with ociregistry.running(tmp_path_factory.mktemp("oci-plain"), host=host_ip, auth=True) as plain, \
            ociregistry.running(tmp_path_factory.mktemp("oci-tls"), host=host_ip, auth=True, tls=True) as tls:
        yield plain, tls


def push(registry: ociregistry.Registry, bento, ref: str, tmp_path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBENTO_")}
    env["DOCKER_CONFIG"] = str(registry.docker_config(tmp_path / registry.host.replace(":", "_") / "config.json").parent)
    flags = ["--plain-http"] if registry.plain_http else ["--ca-file", str(registry.ca)]
    proc = subprocess.run([sys.executable, "-m", "kubento.cli.main", "push", str(bento), f"oci://{registry.host}/{ref}",
                           *flags], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return re.search(r"uri: (oci://\S+)", proc.stdout).group(1)


def pull_secret(cluster, registries) -> None:
    auths = {}
    for reg in registries:
        auths.update(json.loads(reg.dockerconfigjson())["auths"])
    manifest = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": SECRET, "namespace": NAMESPACE},
                "stringData": {".dockerconfigjson": json.dumps({"auths": auths})}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def spec(images, uri: str, **archive) -> dict:
    # The iris image has bentoml, scikit-learn and kubento's runtime helper (as in test_sources).
    return {"bento": {"archive": {"uri": uri, **archive}}, "runtimeImage": images["iris"],
            "imagePullSecrets": [{"name": SECRET}]}


def test_a_bento_from_a_private_registry_with_a_private_ca_serves(cluster, images, registries, iris_bento, model,
                                                                  tmp_path):
    plain, tls = registries
    pinned = push(tls, iris_bento, "team/iris:v1", tmp_path)
    pull_secret(cluster, registries)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "registry-ca", "namespace": NAMESPACE},
          "data": {"ca.crt": tls.ca.read_text()}}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(cm))
    tag_uri = pinned.split("@")[0]  # by tag: the operator pins the digest
    start = time.monotonic()
    name = model("oci-tls", spec(images, tag_uri, caBundle={"configMap": "registry-ca"}))
    obj = wait_for("Ready", lambda: ready(cluster, name), timeout=300, interval=1)
    print(f"\noci:// (TLS, private CA, pull secret): apply -> Ready {time.monotonic() - start:.0f}s")
    assert obj["status"]["environment"]["archive"] == pinned, obj["status"]["environment"]
    assert obj["status"]["history"][-1]["bento"] == pinned
    assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES
    dep = cluster.get("deployments", "-n", NAMESPACE, "-l", f"serving.kubento.io/model-deployment={name}")["items"][0]
    fetch = dep["spec"]["template"]["spec"]["initContainers"][0]
    assert {e["name"]: e.get("value") for e in fetch["env"]}["KUBENTO_ARCHIVE_URI"] == pinned


@pytest.mark.parametrize("case", ["wrong-tag", "missing-repository", "container-image"])
def test_a_wrong_tag_a_missing_artifact_or_a_non_bento_is_named(cluster, images, registries, iris_bento, model,
                                                                tmp_path, case):
    plain, _ = registries
    push(plain, iris_bento, "ml/iris:v1", tmp_path)
    pull_secret(cluster, registries)
    if case == "wrong-tag":
        uri, says = f"oci://{plain.host}/ml/iris:v9", f"no tag v9 in {plain.host}/ml/iris (MANIFEST_UNKNOWN); tags there: v1"
    elif case == "missing-repository":
        uri, says = f"oci://{plain.host}/ml/nope:v1", f"no repository ml/nope in the registry {plain.host} (NAME_UNKNOWN)"
    else:
        plain.push_image("ml/server", "1.0")
        uri, says = f"oci://{plain.host}/ml/server:1.0", "is a container image, not a bento: serve an image with bento.image"
    start = time.monotonic()
    name = model(f"oci-{case}", spec(images, uri, plainHTTP=True))
    obj = wait_for("BentoFetchFailed", lambda: with_ready_reason(md(cluster, name), "BentoFetchFailed"),
                   timeout=120, interval=1)
    message = condition(obj, "Ready")["message"]
    print(f"\n{case}: BentoFetchFailed after {time.monotonic() - start:.0f}s: {message}")
    assert says in message and uri in message, message
    events = cluster.get("events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")["items"]
    assert any(e["reason"] == "BentoFetchFailed" and e["type"] == "Warning" for e in events), events
    assert ociregistry.PASSWORD not in yaml.safe_dump(obj["status"]) + yaml.safe_dump(events)
