"""kubento on a real node: the operator as a pod (installed by Helm), BentoML
pods serving the example model, predictions through the Service."""

from __future__ import annotations

import uuid

import pytest

from e2e.conftest import NAMESPACE
from e2e.support import IRIS_CLASSES, IRIS_ROWS, apply_md, example_spec, md, model_deployments, predict, ready
from tests.helpers import condition, wait_for, with_ready_reason


@pytest.fixture
def iris(cluster, operator, images):
    name = f"iris-{uuid.uuid4().hex[:5]}"
    apply_md(cluster, name, example_spec(images))
    yield name
    cluster.kubectl("delete", "md", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)


def test_example_serves_correct_predictions_through_the_service(cluster, iris):
    obj = wait_for("the example to be Ready", lambda: ready(cluster, iris), timeout=300, interval=1)
    assert obj["status"]["phase"] == "Ready"
    assert obj["status"]["readyReplicas"] == 1
    assert wait_for("a prediction", lambda: predict(cluster, iris, IRIS_ROWS), timeout=60) == IRIS_CLASSES
    # What `kubectl get md` shows the user.
    row = cluster.kubectl("get", "md", iris, "-n", NAMESPACE).stdout.splitlines()[1].split()
    assert row[1:3] == ["True", "Ready"]


def test_changing_replicas_scales_and_deleting_removes_everything(cluster, iris, images):
    wait_for("the example to be Ready", lambda: ready(cluster, iris), timeout=300, interval=1)
    apply_md(cluster, iris, {**example_spec(images), "replicas": 2})
    wait_for("2 ready replicas", lambda: (md(cluster, iris)["status"].get("readyReplicas") == 2 and ready(cluster, iris)), timeout=300)
    pods = cluster.get("pods", "-n", NAMESPACE, "-l", f"serving.kubento.io/model-deployment={iris}")["items"]
    assert len([p for p in pods if p["status"].get("phase") == "Running"]) == 2
    assert predict(cluster, iris, IRIS_ROWS[:1]) == IRIS_CLASSES[:1]

    cluster.kubectl("delete", "md", iris, "-n", NAMESPACE)
    wait_for("the Deployments to go", lambda: not model_deployments(cluster, iris), timeout=120)
    wait_for("the Service to go", lambda: cluster.get("service", iris, "-n", NAMESPACE) is None, timeout=120)
    wait_for(
        "the pods to go",
        lambda: not cluster.get("pods", "-n", NAMESPACE, "-l", f"serving.kubento.io/model-deployment={iris}")["items"],
        timeout=120,
    )


def test_missing_image_gives_a_pull_failure_condition_and_event_within_60s(cluster, operator):
    name = f"noimage-{uuid.uuid4().hex[:5]}"
    apply_md(cluster, name, {"bento": {"image": "kubento.local/does-not-exist:1"}})
    try:
        obj = wait_for(
            "an image pull condition",
            lambda: with_ready_reason(md(cluster, name), "ImagePullBackOff"),
            timeout=60,
        )
        assert "kubento.local/does-not-exist:1" in condition(obj, "Ready")["message"]
        events = cluster.get("events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")["items"]
        assert any(e["reason"] == "ImagePullBackOff" and e["type"] == "Warning" for e in events), events
    finally:
        cluster.kubectl("delete", "md", name, "-n", NAMESPACE, "--wait=false", check=False)


def test_model_server_crashing_at_start_gives_a_crash_loop_condition(cluster, operator, images):
    name = f"crash-{uuid.uuid4().hex[:5]}"
    apply_md(cluster, name, {"bento": {"image": images["crashing"]}})
    try:
        obj = wait_for(
            "a crash loop condition",
            lambda: with_ready_reason(md(cluster, name), "CrashLoopBackOff"),
            timeout=180,
        )
        assert "crash-looping" in condition(obj, "Ready")["message"]
        assert obj["status"]["phase"] == "Failed"
    finally:
        cluster.kubectl("delete", "md", name, "-n", NAMESPACE, "--wait=false", check=False)
