"""The build Job builder and the reading of a Job into a build state."""

from kubento.api.v1alpha1 import BuildSource
from kubento.builders import Owner
from kubento.builders.build_job import (
    ANNOTATION_ARCHIVE,
    archive_uri,
    build_job,
    job_name,
    settings_hash,
    source_hash,
    source_snapshot,
)
from kubento.builders.meta import LABEL_MODEL
from kubento.controller.build import build_state

OWNER = Owner(name="iris", namespace="models", uid="1234")
CM_BUILD = BuildSource.model_validate(
    {"source": {"configMap": {"name": "iris-src"}}, "output": {"uri": "s3://bento-store/built/", "secretRef": {"name": "s3"}}}
)


def job(**status):
    return {"metadata": {"name": "iris-build-abc", "annotations": {ANNOTATION_ARCHIVE: "s3://x/a.bento"}}, "status": status}


def pod(message="", exit_code=None, waiting=None, name="iris-build-abc-x"):
    state = {"terminated": {"exitCode": exit_code, "message": message}} if exit_code is not None else {}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": "no such image"}}
    return {"metadata": {"name": name, "creationTimestamp": "2026-11-21T00:00:00Z"},
            "status": {"containerStatuses": [{"name": "build", "image": "rt:1", "state": state}]}}


def test_the_source_hash_follows_content_image_and_output():
    h = source_hash(CM_BUILD, "rt:1", {"data": {"service.py": "v1"}})
    assert h == source_hash(CM_BUILD, "rt:1", {"data": {"service.py": "v1"}})
    assert h != source_hash(CM_BUILD, "rt:1", {"data": {"service.py": "v2"}})
    assert h != source_hash(CM_BUILD, "rt:2", {"data": {"service.py": "v1"}})
    other_output = BuildSource.model_validate({**CM_BUILD.model_dump(by_alias=True), "output": {"uri": "s3://elsewhere"}})
    assert h != source_hash(other_output, "rt:1", {"data": {"service.py": "v1"}})


def test_the_job_is_unprivileged_runs_once_and_never_gets_service_traffic():
    h = source_hash(CM_BUILD, "rt:1", {"data": {}})
    j = build_job(CM_BUILD, OWNER, "rt:1", h, "b1d")
    assert j["metadata"]["name"] == job_name(OWNER, h) and len(j["metadata"]["name"]) <= 63
    assert j["metadata"]["ownerReferences"][0]["uid"] == "1234"
    spec = j["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 1800
    pod = spec["template"]["spec"]
    assert LABEL_MODEL not in spec["template"]["metadata"]["labels"]  # the Service selects by that label
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False  # the project's code gets no API credentials
    (c,) = pod["containers"]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KUBENTO_OUTPUT_URI"] == archive_uri(CM_BUILD, OWNER, h, "b1d") == f"s3://bento-store/built/models-iris-{h}-b1d.bento"
    assert j["metadata"]["annotations"][ANNOTATION_ARCHIVE] == env["KUBENTO_OUTPUT_URI"]
    assert env["KUBENTO_SOURCE_DIR"] == "/var/lib/kubento/source"
    # the build reads an immutable copy of what was hashed, owned by the Job
    assert {"name": "source", "configMap": {"name": f"{j['metadata']['name']}-source"}} in pod["volumes"]
    snapshot = source_snapshot({"metadata": {**j["metadata"], "uid": "job-uid"}}, {"data": {"service.py": "x"}, "binaryData": {}})
    assert snapshot["metadata"]["name"] == f"{j['metadata']['name']}-source" and snapshot["immutable"] is True
    assert snapshot["metadata"]["ownerReferences"][0]["uid"] == "job-uid"
    assert snapshot["data"] == {"service.py": "x"} and "binaryData" not in snapshot
    assert c["envFrom"] == [{"secretRef": {"name": "s3"}}]


def test_job_names_are_valid_and_never_shared_between_models():
    a, b = Owner(name="m" * 52, namespace="ns", uid="u1"), Owner(name="m" * 51 + "x", namespace="ns", uid="u2")
    assert len(job_name(a, "0123456789ab")) <= 63
    assert job_name(a, "0123456789ab") != job_name(b, "0123456789ab")
    assert job_name(a, "0123456789ab") != job_name(Owner(a.name, "ns", "u3"), "0123456789ab")  # recreated model


def test_a_new_timeout_or_resources_changes_the_build_settings():
    longer = BuildSource.model_validate({**CM_BUILD.model_dump(by_alias=True, exclude_none=True), "timeoutSeconds": 3600})
    assert settings_hash(longer) != settings_hash(CM_BUILD)


def test_a_pvc_holding_source_and_output_is_mounted_once_writable():
    build = BuildSource.model_validate(
        {"source": {"pvc": {"claimName": "work", "path": "/projects/iris"}}, "output": {"uri": "pvc://work/bentos"}}
    )
    pod = build_job(build, OWNER, "rt:1", "h" * 12, "b1d")["spec"]["template"]["spec"]
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"name": claims[0]["name"], "persistentVolumeClaim": {"claimName": "work", "readOnly": False}}]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["KUBENTO_SOURCE_DIR"] == "/var/lib/kubento/pvc/work/projects/iris"


def test_git_credentials_come_from_the_secret_by_reference():
    build = BuildSource.model_validate(
        {"source": {"git": {"url": "https://git.local/ml/iris.git", "ref": "v1", "secretRef": {"name": "git"}}},
         "output": {"uri": "s3://b"}}
    )
    env = build_job(build, OWNER, "rt:1", "h" * 12, "b1d")["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["KUBENTO_GIT_REF"]["value"] == "v1"
    assert by_name["GIT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "git"


def test_reading_a_job_into_a_build_state():
    running = build_state(CM_BUILD, job(active=1), [pod()], "hash")
    assert (running.phase, running.reason) == ("Building", "Building")
    done = build_state(CM_BUILD, job(conditions=[{"type": "Complete", "status": "True"}]),
                       [pod('{"tag": "iris:v9", "sha256": "' + "c" * 64 + '"}', exit_code=0)], "hash")
    assert (done.phase, done.tag, done.sha256, done.archive) == ("Succeeded", "iris:v9", "c" * 64, "s3://x/a.bento")
    assert done.status().sha256 == "c" * 64  # recorded: served from status even if the Job goes
    failed = build_state(CM_BUILD, job(conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]),
                         [pod("bentoml build failed (exit 1):\nSyntaxError: invalid syntax", exit_code=1)], "hash")
    assert (failed.phase, failed.reason) == ("Failed", "BuildFailed")
    assert "SyntaxError" in failed.message and "iris-build-abc" in failed.message
    timed_out = build_state(CM_BUILD, job(conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]), [], "hash")
    assert timed_out.reason == "BuildTimedOut" and "1800" in timed_out.message
    stuck = build_state(CM_BUILD, job(active=1), [pod(waiting="ImagePullBackOff")], "hash")
    assert (stuck.phase, stuck.reason) == ("Building", "ImagePullBackOff")
    no_pod = build_state(CM_BUILD, job(), [], "hash", age_seconds=90)
    assert (no_pod.phase, no_pod.reason) == ("Building", "BuildPodNotCreated")
    assert build_state(CM_BUILD, job(), [], "hash", age_seconds=5).reason == "Building"


def test_build_resources_are_passed_to_the_build_container():
    build = BuildSource.model_validate({**CM_BUILD.model_dump(by_alias=True, exclude_none=True),
                                        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}})
    (c,) = build_job(build, OWNER, "rt:1", "h" * 12, "b1d")["spec"]["template"]["spec"]["containers"]
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert "resources" not in build_job(CM_BUILD, OWNER, "rt:1", "h" * 12, "b1d")["spec"]["template"]["spec"]["containers"][0]
