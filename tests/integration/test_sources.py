"""Archive and build sources against a real API server. No kubelet and no
Job controller run here: the tests report build Jobs' outcomes themselves
(the e2e tier runs real builds and real fetches)."""

import datetime
import time

from kubernetes import client

from tests.helpers import condition, wait_for, with_ready_reason
from tests.integration.conftest import RESYNC_SECONDS, get_json, newest_deployment
from tests.integration.test_reconcile import md_get, play_deployment_controller

SECRET = "store-credentials"
OUTPUT = {"uri": "s3://bento-store/built", "secretRef": {"name": SECRET}}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ensure_secret(admin, namespace):
    core = client.CoreV1Api(admin)
    try:
        core.read_namespaced_secret(SECRET, namespace)
    except client.ApiException:
        core.create_namespaced_secret(namespace, {"metadata": {"name": SECRET}, "stringData": {
            "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret-value-1234"}})


def put_project(admin, namespace, name, service_py):
    core = client.CoreV1Api(admin)
    body = {"metadata": {"name": name}, "data": {"service.py": service_py, "bentofile.yaml": 'service: "service:Svc"\n'}}
    try:
        core.replace_namespaced_config_map(name, namespace, body)
    except client.ApiException:
        core.create_namespaced_config_map(namespace, body)


def finish_job(admin, namespace, job, ok: bool):
    """What the Job controller does when the build pod ends."""
    t = now()
    if ok:
        conditions = [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "", "lastTransitionTime": t, "lastProbeTime": t},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "", "lastTransitionTime": t, "lastProbeTime": t},
        ]
        status = {"startTime": t, "completionTime": t, "succeeded": 1, "conditions": conditions}
    else:
        conditions = [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastTransitionTime": t, "lastProbeTime": t},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastTransitionTime": t, "lastProbeTime": t},
        ]
        status = {"startTime": t, "failed": 1, "conditions": conditions}
    client.BatchV1Api(admin).patch_namespaced_job_status(job, namespace, {"status": status})


def jobs_of(cp, namespace, name):
    return [j["metadata"]["name"] for j in get_json(cp, "jobs", "-n", namespace, "-l", f"serving.kubento.io/build-of={name}")["items"]]


def test_archive_source_fetches_in_an_init_container_and_names_a_missing_secret(controlplane, admin, namespace, md):
    spec = {"bento": {"archive": {"uri": "s3://models/iris.bento", "secretRef": {"name": "archive-creds"}}},
            "runtimeImage": "registry.local/runtime:1"}
    name = md(spec)
    obj = wait_for("SecretNotFound", lambda: with_ready_reason(md_get(controlplane, namespace, name), "SecretNotFound"))
    assert "archive-creds (bento.archive.secretRef)" in condition(obj, "Ready")["message"]
    assert newest_deployment(controlplane, namespace, name) is None

    client.CoreV1Api(admin).create_namespaced_secret(namespace, {"metadata": {"name": "archive-creds"}, "stringData": {"AWS_ACCESS_KEY_ID": "k"}})
    dep = wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name), timeout=3 * RESYNC_SECONDS + 10)
    pod = dep["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["fetch-bento"]
    assert pod["initContainers"][0]["envFrom"] == [{"secretRef": {"name": "archive-creds"}}]
    assert pod["containers"][0]["image"] == "registry.local/runtime:1"
    play_deployment_controller(admin, namespace, name)
    wait_for("phase Ready", lambda: md_get(controlplane, namespace, name).get("status", {}).get("phase") == "Ready")


def test_build_from_a_configmap_builds_once_serves_and_keeps_serving_through_a_failed_build(controlplane, admin, namespace, md):
    ensure_secret(admin, namespace)
    project = "proj-" + namespace
    spec = {"bento": {"build": {"source": {"configMap": {"name": project}}, "output": OUTPUT}}}
    name = md(spec)
    obj = wait_for("SourceNotFound", lambda: with_ready_reason(md_get(controlplane, namespace, name), "SourceNotFound"))
    assert f"ConfigMap {project}" in condition(obj, "Ready")["message"]

    # The project appears: the next resync starts a build.
    put_project(admin, namespace, project, "v1 = 1\n")
    (v1_job,) = wait_for("a build Job", lambda: jobs_of(controlplane, namespace, name), timeout=3 * RESYNC_SECONDS + 10)
    obj = wait_for("phase Building", lambda: (o := md_get(controlplane, namespace, name)).get("status", {}).get("phase") == "Building" and o)
    assert condition(obj, "BuildSucceeded")["status"] == "Unknown"
    assert obj["status"]["build"]["job"] == v1_job
    # The Job builds an immutable copy of what was hashed, whatever happens to the ConfigMap.
    snapshot = wait_for("the source snapshot", lambda: get_json(controlplane, "configmap", f"{v1_job}-source", "-n", namespace))
    assert snapshot["immutable"] is True and snapshot["data"]["service.py"] == "v1 = 1\n"
    assert snapshot["metadata"]["ownerReferences"][0]["name"] == v1_job
    assert newest_deployment(controlplane, namespace, name) is None

    finish_job(admin, namespace, v1_job, ok=True)
    dep = wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name))
    fetch = dep["spec"]["template"]["spec"]["initContainers"][0]
    uri = next(e["value"] for e in fetch["env"] if e["name"] == "KUBENTO_ARCHIVE_URI")
    assert uri.startswith(f"s3://bento-store/built/{namespace}-{name}-") and uri.endswith(".bento")
    assert fetch["envFrom"] == [{"secretRef": {"name": SECRET}}]
    play_deployment_controller(admin, namespace, name)
    obj = wait_for("phase Ready", lambda: (o := md_get(controlplane, namespace, name))["status"].get("phase") == "Ready" and o)
    assert condition(obj, "BuildSucceeded")["status"] == "True"
    assert obj["status"]["build"]["archive"] == uri
    v1_revision = dep["metadata"]["labels"]["serving.kubento.io/revision"]

    # A broken change: a new build, which fails; v1 keeps serving untouched.
    put_project(admin, namespace, project, "def broken(:\n")
    v2_job = wait_for("a second build Job", lambda: [j for j in jobs_of(controlplane, namespace, name) if j != v1_job],
                      timeout=3 * RESYNC_SECONDS + 10)[0]
    finish_job(admin, namespace, v2_job, ok=False)
    obj = wait_for("BuildFailed", lambda: with_ready_reason(md_get(controlplane, namespace, name), "BuildFailed"))
    assert obj["status"]["phase"] == "Degraded"
    assert condition(obj, "BuildSucceeded")["status"] == "False"
    assert condition(obj, "Available")["status"] == "True"
    assert obj["status"]["currentRevision"] == v1_revision
    dep = newest_deployment(controlplane, namespace, name)
    assert dep["metadata"]["labels"]["serving.kubento.io/revision"] == v1_revision
    events = get_json(controlplane, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    assert any(e["reason"] == "BuildFailed" and e["type"] == "Warning" for e in events)
    # It is not retried while the source stays the same (through a few resyncs).
    time.sleep(2 * RESYNC_SECONDS + 1)
    assert sorted(jobs_of(controlplane, namespace, name)) == sorted([v1_job, v2_job])

    # Fixed: built and served; the older build Jobs are cleaned up.
    put_project(admin, namespace, project, "v3 = 3\n")
    v3_job = wait_for("a third build Job", lambda: [j for j in jobs_of(controlplane, namespace, name) if j not in (v1_job, v2_job)],
                      timeout=3 * RESYNC_SECONDS + 10)[0]
    finish_job(admin, namespace, v3_job, ok=True)
    wait_for("old build Jobs deleted", lambda: jobs_of(controlplane, namespace, name) == [v3_job])
    dep = wait_for("the v3 Deployment", lambda: (d := newest_deployment(controlplane, namespace, name))
                   ["metadata"]["labels"]["serving.kubento.io/revision"] != v1_revision and d)
    play_deployment_controller(admin, namespace, name)
    wait_for("phase Ready", lambda: md_get(controlplane, namespace, name)["status"].get("phase") == "Ready")

    # The succeeded build is recorded in status: losing its Job rebuilds nothing and changes nothing.
    revision = newest_deployment(controlplane, namespace, name)["metadata"]["labels"]["serving.kubento.io/revision"]
    client.BatchV1Api(admin).delete_namespaced_job(v3_job, namespace, propagation_policy="Background")
    time.sleep(2 * RESYNC_SECONDS + 1)
    assert jobs_of(controlplane, namespace, name) == []
    dep = newest_deployment(controlplane, namespace, name)
    assert dep["metadata"]["labels"]["serving.kubento.io/revision"] == revision
    assert md_get(controlplane, namespace, name)["status"]["build"]["job"] == v3_job
