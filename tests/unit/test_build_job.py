"""The build Job builder and the reading of a Job into a build state."""

from kubento.api.v1alpha1 import BuildSource
from kubento.builders import Owner
from kubento.builders.build_job import (
    ANNOTATION_ARCHIVE,
    BUILD_STEPS,
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


def steps(j):
    """The Job's steps by name, in order (init containers, then the container)."""
    pod = j["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["initContainers"] + pod["containers"]}


def credentials(container):
    """The Secrets a container gets anything from: (variable or envFrom, Secret name)."""
    out = [(e["name"], e["valueFrom"]["secretKeyRef"]["name"]) for e in container.get("env", []) if "valueFrom" in e]
    return out + [("envFrom", f["secretRef"]["name"]) for f in container.get("envFrom", [])]


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
    assert pod["shareProcessNamespace"] is False  # no step sees another's processes
    by_name = steps(j)
    assert tuple(by_name) == BUILD_STEPS and [c["name"] for c in pod["containers"]] == ["upload"]
    for c in by_name.values():
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"  # a failed step's log tail reaches status
        assert c["command"][-1] == c["name"]
    env = {e["name"]: e.get("value") for e in by_name["upload"]["env"]}
    assert env["KUBENTO_OUTPUT_URI"] == archive_uri(CM_BUILD, OWNER, h, "b1d") == f"s3://bento-store/built/models-iris-{h}-b1d.bento"
    assert j["metadata"]["annotations"][ANNOTATION_ARCHIVE] == env["KUBENTO_OUTPUT_URI"]
    source_env = {e["name"]: e.get("value") for e in by_name["source"]["env"]}
    assert source_env["KUBENTO_SOURCE_DIR"] == "/var/lib/kubento/source"
    # the build reads an immutable copy of what was hashed, owned by the Job, in the source step only
    assert {"name": "source", "configMap": {"name": f"{j['metadata']['name']}-source"}} in pod["volumes"]
    assert [n for n, c in by_name.items() if any(m["name"] == "source" for m in c["volumeMounts"])] == ["source"]
    assert spec["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "build"
    snapshot = source_snapshot({"metadata": {**j["metadata"], "uid": "job-uid"}}, {"data": {"service.py": "x"}, "binaryData": {}})
    assert snapshot["metadata"]["name"] == f"{j['metadata']['name']}-source" and snapshot["immutable"] is True
    assert snapshot["metadata"]["ownerReferences"][0]["uid"] == "job-uid"
    assert snapshot["data"] == {"service.py": "x"} and "binaryData" not in snapshot
    # the store's credentials: the plan and upload steps' only
    assert {n: credentials(c) for n, c in by_name.items()} == {
        "source": [], "build": [], "plan": [("envFrom", "s3")], "download": [], "install": [], "upload": [("envFrom", "s3")]}


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
    j = build_job(build, OWNER, "rt:1", "h" * 12, "b1d")
    pod = j["spec"]["template"]["spec"]
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [{"name": claims[0]["name"], "persistentVolumeClaim": {"claimName": "work", "readOnly": False}}]
    by_name = steps(j)
    env = {e["name"]: e.get("value") for e in by_name["source"]["env"]}
    assert env["KUBENTO_SOURCE_DIR"] == "/var/lib/kubento/pvc/work/projects/iris"
    # read-only where the project is read and the store looked at; writable only where the archive is stored
    mounted = {n: [m.get("readOnly", False) for m in c["volumeMounts"] if m["name"] == claims[0]["name"]]
               for n, c in by_name.items()}
    assert mounted == {"source": [True], "build": [], "plan": [True], "download": [], "install": [], "upload": [False]}


def test_git_credentials_come_from_the_secret_by_reference():
    build = BuildSource.model_validate(
        {"source": {"git": {"url": "https://git.local/ml/iris.git", "ref": "v1", "secretRef": {"name": "git"}}},
         "output": {"uri": "s3://b"}}
    )
    by_step = steps(build_job(build, OWNER, "rt:1", "h" * 12, "b1d"))
    by_name = {e["name"]: e for e in by_step["source"]["env"]}
    assert by_name["KUBENTO_GIT_REF"]["value"] == "v1"
    assert by_name["GIT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "git"
    # the git credentials: the source step's only (the project's build code runs in the next one)
    assert {n: credentials(c) for n, c in by_step.items() if credentials(c)} == {
        "source": [("GIT_USERNAME", "git"), ("GIT_PASSWORD", "git")]}


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
    # every step (they run one after the other: the pod asks for what one step asks for)
    for c in steps(build_job(build, OWNER, "rt:1", "h" * 12, "b1d")).values():
        assert c["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert not any("resources" in c for c in steps(build_job(CM_BUILD, OWNER, "rt:1", "h" * 12, "b1d")).values())


def steps_pod(ended: dict[str, tuple[int, str, str]]):
    """A build pod whose steps ``ended`` (name -> (exit code, reason, message)); the rest wait."""
    def status(name):
        if name in ended:
            code, reason, message = ended[name]
            return {"name": name, "state": {"terminated": {"exitCode": code, "reason": reason, "message": message}}}
        return {"name": name, "state": {"waiting": {"reason": "PodInitializing"}}}

    return {"metadata": {"name": "iris-build-abc-x", "creationTimestamp": "2026-11-21T00:00:00Z"},
            "status": {"initContainerStatuses": [status(n) for n in BUILD_STEPS[:-1]],
                       "containerStatuses": [status(BUILD_STEPS[-1])]}}


def test_the_failed_step_says_why_and_the_last_step_gives_the_result():
    failed = job(conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])
    git = build_state(CM_BUILD, failed, [steps_pod({"source": (1, "Error", "git: ref v2 not found in https://g/r.git")})], "h")
    assert (git.phase, git.reason) == ("Failed", "BuildFailed") and "git: ref v2 not found" in git.message
    ok = (0, "Completed", "")
    missing = "PackageNotFound: nope==1 is not on https://pypi.internal/simple (no matching distribution); pip's log ends:"
    pip = build_state(CM_BUILD, failed, [steps_pod({"source": ok, "build": ok, "plan": ok, "download": (1, "Error", missing)})], "h")
    assert pip.reason == "PackageNotFound" and "nope==1" in pip.message
    oom = build_state(CM_BUILD, failed, [steps_pod({"source": ok, "build": ok, "plan": ok, "download": ok,
                                                      "install": (137, "OOMKilled", "")})], "h")
    assert oom.reason == "BuildFailed" and "OOMKilled" in oom.message
    result = '{"tag": "iris:v9", "sha256": "' + "c" * 64 + '", "uri": "s3://x/a.bento"}'
    done = build_state(CM_BUILD, job(conditions=[{"type": "Complete", "status": "True"}]),
                       [steps_pod({**{n: ok for n in BUILD_STEPS[:-1]}, "upload": (0, "Completed", result)})], "h")
    assert (done.phase, done.tag, done.sha256) == ("Succeeded", "iris:v9", "c" * 64)
    # a step that cannot start (e.g. the index Secret's key is missing) is named while the Job waits
    stuck = steps_pod({"source": ok, "build": ok, "plan": ok})
    stuck["status"]["initContainerStatuses"][3]["state"] = {
        "waiting": {"reason": "CreateContainerConfigError", "message": 'secret "pypi-auth" not found'}}
    waiting = build_state(CM_BUILD, job(active=1), [stuck], "h")
    assert (waiting.phase, waiting.reason) == ("Building", "CreateContainerConfigError")
    assert "pypi-auth" in waiting.message
