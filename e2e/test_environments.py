"""Bentos with their own Python packages (#16), on a real node, installed
from a private package index that the tests start on the host (wheels
fetched once with `pip download`, served over HTTPS with basic auth and a
private CA): nothing in the cluster reaches the public index.

examples/iris-source needs scikit-learn, which the default runtime image
lacks: built with bento.build on that image it serves the right predictions;
its exported archive served by two models as bento.archive takes one
environment Job and reuses the environment the build stored; a package that
does not exist fails by name while the serving revision keeps serving."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import yaml

from e2e.conftest import NAMESPACE, S3_SECRET, put_secret
from e2e.support import IRIS_CLASSES, IRIS_ROWS, TrafficCounter, md, predict, ready
from e2e.test_sources import project_files, put_project
from tests import pyindex
from tests.helpers import condition, wait_for, with_ready_reason

INDEX_SECRET = "e2e-index-auth"
INDEX_CA = "e2e-index-ca"
USER, PASSWORD = "kubento", f"index-pw-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def index(cluster, host_ip, operator):
    """The private index (HTTPS, basic auth, private CA) on the node's address,
    with its Secret and CA ConfigMap in the test namespace."""
    wheels = pyindex.wheels(["scikit-learn==1.6.1"])
    with pyindex.running(wheels, host=host_ip, auth=(USER, PASSWORD), tls=True) as served:
        put_secret(cluster, INDEX_SECRET, {"username": USER, "password": PASSWORD})
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": INDEX_CA, "namespace": NAMESPACE},
                    "data": {"ca.crt": served.ca_pem}}
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
        yield served


def python_settings(index) -> dict:
    return {"index": {"url": index.url, "secretRef": {"name": INDEX_SECRET}, "caBundle": {"configMap": INDEX_CA},
                      "onlyBinary": True}}


@pytest.fixture(scope="module")
def built(cluster, images, s3, index, request):
    """examples/iris-source built in the cluster on the default runtime image."""
    project = f"iris-env-{uuid.uuid4().hex[:5]}"
    put_project(cluster, project, project_files())
    name = f"env-build-{uuid.uuid4().hex[:5]}"
    spec = {"bento": {"build": {"source": {"configMap": {"name": project}},
                                "output": {"uri": "s3://built/envs-e2e", "secretRef": {"name": S3_SECRET}}}},
            "python": python_settings(index)}
    assert "runtimeImage" not in spec  # the operator's default: bentoml without scikit-learn
    from e2e.support import apply_md
    start = time.monotonic()
    apply_md(cluster, name, spec)
    request.addfinalizer(lambda: cluster.kubectl("delete", "md", name, "-n", NAMESPACE, "--wait=false", check=False))
    request.addfinalizer(lambda: cluster.kubectl("delete", "configmap", project, "-n", NAMESPACE, check=False))
    obj = wait_for("Ready", lambda: ready(cluster, name), timeout=600, interval=1)
    print(f"iris-source build + environment + serve: apply -> Ready in {time.monotonic() - start:.1f}s; "
          f"environment {json.dumps(obj['status'].get('environment'))}")
    return name, project, obj


def env_jobs(cluster) -> list[dict]:
    return cluster.get("jobs", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=bento-environment")["items"]


def test_a_build_on_the_default_runtime_image_serves_with_its_own_environment(cluster, images, built, index):
    name, _, obj = built
    assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES
    env = obj["status"]["environment"]
    assert env["packages"] >= 3 and env["size"] > 10_000_000 and len(env["hash"]) == 16
    assert env["uri"] == f"s3://built/envs-e2e/envs/{env['hash']}.tar.gz"
    assert condition(obj, "EnvironmentReady")["status"] == "True"
    assert obj["status"]["history"][-1]["environment"].startswith(env["hash"])
    # The runtime image itself has no scikit-learn: the pods run it from the environment.
    deployment = cluster.get("deployments", "-n", NAMESPACE, "-l", f"serving.kubento.io/model-deployment={name}")["items"][0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == images["runtime"]
    assert not any(e["name"].startswith("KUBENTO_INDEX") for c in pod["containers"] + pod["initContainers"]
                   for e in c.get("env", []))
    # Installed from the private index, with its credentials and CA.
    assert any(w.startswith("scikit_learn-1.6.1") for w in index.downloaded())
    shown = json.dumps(obj) + json.dumps(cluster.get("events", "-n", NAMESPACE)["items"])
    assert PASSWORD not in shown


def test_the_exported_archive_served_by_two_models_takes_one_job_and_the_stored_environment(cluster, images, built, index, model):
    _, _, obj = built
    archive = obj["status"]["build"]
    spec = {"bento": {"archive": {"uri": archive["archive"], "sha256": archive["sha256"], "secretRef": {"name": S3_SECRET}}},
            "python": python_settings(index)}
    before = {j["metadata"]["name"] for j in env_jobs(cluster)}
    start = time.monotonic()
    first, second = model("env-archive", spec), model("env-archive", spec)
    for name in (first, second):
        got = wait_for("Ready", lambda: ready(cluster, name), timeout=300, interval=1)
        assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES
        env = got["status"]["environment"]
        # The same dependency set: the environment the build stored, not a second install.
        assert env["hash"] == obj["status"]["environment"]["hash"] and env["reused"] is True
    print(f"two archive models (environment found in the store): apply -> both Ready in {time.monotonic() - start:.1f}s")
    new = [j for j in env_jobs(cluster) if j["metadata"]["name"] not in before]
    assert len(new) == 1, [j["metadata"]["name"] for j in new]


def test_a_package_that_does_not_exist_fails_by_name_and_the_serving_revision_keeps_serving(cluster, built):
    name, project, obj = built
    revision = obj["status"]["currentRevision"]
    files = project_files()
    files["bentofile.yaml"] = files["bentofile.yaml"].replace(
        "    - scikit-learn==1.6.1\n", "    - scikit-learn==1.6.1\n    - kubento-no-such-package==9.9\n")
    assert "kubento-no-such-package" in files["bentofile.yaml"]
    with TrafficCounter(cluster, name) as traffic:
        put_project(cluster, project, files)
        obj = wait_for("PackageNotFound", lambda: with_ready_reason(md(cluster, name), "PackageNotFound"),
                       timeout=400, interval=1)
        time.sleep(5)
    print(f"during the failed preparation: {traffic.ok} correct predictions, {traffic.failed} failed")
    assert traffic.failed == 0, dict(traffic.failures)
    assert traffic.ok > 50
    env = condition(obj, "EnvironmentReady")
    assert env["status"] == "False" and env["reason"] == "PackageNotFound"
    assert "kubento-no-such-package==9.9" in env["message"] and "pip's log ends" in env["message"]
    assert obj["status"]["phase"] == "Degraded" and obj["status"]["currentRevision"] == revision
    events = cluster.get("events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")["items"]
    assert any(e["reason"] == "PackageNotFound" and e["type"] == "Warning" and "kubento-no-such-package" in e["message"]
               for e in events)
    assert PASSWORD not in json.dumps(obj) + json.dumps(events)
    assert predict(cluster, name, IRIS_ROWS) == IRIS_CLASSES
