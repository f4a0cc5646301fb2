"""Archive and build sources on a real node: real fetches from a real
S3-compatible server (moto's server mode) and an HTTP server, both started by
the tests on an address the pods reach; real in-cluster builds from a
ConfigMap; predictions through the Service."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from e2e.conftest import NAMESPACE, S3_SECRET, S3_WRONG_SECRET
from e2e.support import IRIS_CLASSES, IRIS_ROWS, ROOT, TrafficCounter, md, predict, ready
from tests.helpers import condition, wait_for, with_ready_reason

PROJECT = ROOT / "examples" / "iris-source"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def put_project(cluster, name: str, files: dict[str, str]) -> None:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE}, "data": files}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def project_files() -> dict[str, str]:
    return {name: (PROJECT / name).read_text() for name in ("service.py", "bentofile.yaml")}


def archive_spec(images, uri: str, secret: str | None = None, digest: str | None = None) -> dict:
    archive = {"uri": uri}
    if secret:
        archive["secretRef"] = {"name": secret}
    if digest:
        archive["sha256"] = digest
    # The iris image has bentoml, scikit-learn and kubento's runtime helper;
    # the archive's bento replaces the one baked into it (BENTOML_HOME is an emptyDir).
    return {"bento": {"archive": archive}, "runtimeImage": images["iris"]}


def test_archive_from_s3_with_digest_serves_correct_predictions(cluster, images, s3, iris_bento, model):
    name = model("s3-archive", archive_spec(images, "s3://models/iris/v1.bento", S3_SECRET, sha256(iris_bento)))
    obj = wait_for("Ready", lambda: ready(cluster, name), timeout=300, interval=1)
    assert obj["status"]["phase"] == "Ready"
    assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES


def test_archive_from_http_serves_correct_predictions(cluster, images, http_store, model):
    name = model("http-archive", archive_spec(images, f"{http_store}/iris.bento"))
    wait_for("Ready", lambda: ready(cluster, name), timeout=300, interval=1)
    assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES


@pytest.mark.parametrize(
    "case, uri, secret, says",
    [
        ("missing-object", "s3://models/iris/nope.bento", S3_SECRET, "NoSuchKey"),
        ("wrong-credentials", "s3://models/iris/v1.bento", S3_WRONG_SECRET, "credentials"),
    ],
)
def test_a_wrong_archive_uri_or_credentials_is_named_within_60s(cluster, images, s3, model, case, uri, secret, says):
    name = model(case, archive_spec(images, uri, secret))
    start = time.monotonic()
    obj = wait_for("BentoFetchFailed", lambda: with_ready_reason(md(cluster, name), "BentoFetchFailed"), timeout=60, interval=1)
    print(f"{case}: condition after {time.monotonic() - start:.1f}s: {condition(obj, 'Ready')['message']}")
    message = condition(obj, "Ready")["message"]
    assert says in message and uri in message
    events = cluster.get("events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")["items"]
    assert any(e["reason"] == "BentoFetchFailed" and e["type"] == "Warning" for e in events), events
    # Credentials never show, neither in status nor in events.
    shown = yaml.safe_dump(obj["status"]) + yaml.safe_dump(events)
    for value in (s3.secret_key, s3.wrong_secret_key):
        assert value not in shown


def test_build_from_a_configmap_serves_and_a_broken_build_never_disturbs_it(cluster, images, s3, model, request):
    project = f"iris-src-{uuid.uuid4().hex[:5]}"
    put_project(cluster, project, project_files())
    spec = {
        "bento": {"build": {"source": {"configMap": {"name": project}},
                            "output": {"uri": "s3://built/e2e", "secretRef": {"name": S3_SECRET}}}},
        "runtimeImage": images["iris"],
    }
    name = model("build", spec)
    request.addfinalizer(lambda: cluster.kubectl("delete", "configmap", project, "-n", NAMESPACE, "--ignore-not-found", check=False))
    wait_for("phase Building", lambda: md(cluster, name)["status"].get("phase") == "Building", timeout=60, interval=1)
    obj = wait_for("Ready", lambda: ready(cluster, name), timeout=420, interval=1)
    assert condition(obj, "BuildSucceeded")["status"] == "True"
    archive = obj["status"]["build"]["archive"]
    bucket, key = archive.removeprefix("s3://").split("/", 1)
    assert tarfile.is_tarfile(io.BytesIO(s3.get(bucket, key)))  # the exported archive is in the store
    assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES
    revision = obj["status"]["currentRevision"]

    broken = {**project_files(), "service.py": project_files()["service.py"] + "\ndef broken(:\n"}
    with TrafficCounter(cluster, name) as traffic:
        put_project(cluster, project, broken)
        obj = wait_for("BuildFailed", lambda: with_ready_reason(md(cluster, name), "BuildFailed"), timeout=300, interval=1)
        time.sleep(5)  # keep the client going a little after the failure
    print(f"during the broken build: {traffic.ok} correct predictions, {traffic.failed} failed {dict(traffic.failures)}")
    assert traffic.failed == 0, dict(traffic.failures)
    assert traffic.ok > 50
    message = condition(obj, "BuildSucceeded")["message"]
    assert condition(obj, "BuildSucceeded")["status"] == "False" and "SyntaxError" in message
    assert obj["status"]["phase"] == "Degraded"
    assert obj["status"]["currentRevision"] == revision
    events = cluster.get("events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")["items"]
    assert any(e["reason"] == "BuildFailed" and e["type"] == "Warning" and "SyntaxError" in e["message"] for e in events)
    assert predict(cluster, name, IRIS_ROWS) == IRIS_CLASSES
