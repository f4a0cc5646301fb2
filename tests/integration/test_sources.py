"""Archive and build sources against a real API server. No kubelet and no
Job controller run here: the tests report build Jobs' outcomes themselves
(the e2e tier runs real builds and real fetches)."""

import datetime
import json
import time
import uuid

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


def finish_env_job(admin, namespace, job, message: str, ok: bool = True):
    """What the Job controller and the kubelet leave when the environment pod
    ends: a pod with the helper's termination message, the Job's condition."""
    core = client.CoreV1Api(admin)
    pod_name = f"{job}-p{uuid.uuid4().hex[:4]}"
    labels = {"batch.kubernetes.io/job-name": job, "app.kubernetes.io/managed-by": "kubento",
              "serving.kubento.io/build-of": get_json_job(admin, namespace, job)["metadata"]["labels"]["serving.kubento.io/build-of"]}
    core.create_namespaced_pod(namespace, {"metadata": {"name": pod_name, "labels": labels}, "spec": {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1034, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "upload", "image": "registry.local/runtime:1", "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}})
    t = now()
    core.patch_namespaced_pod_status(pod_name, namespace, {"status": {"phase": "Succeeded" if ok else "Failed", "containerStatuses": [{
        "name": "upload", "image": "registry.local/runtime:1", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0 if ok else 1, "reason": "Completed" if ok else "Error",
                                 "message": message, "startedAt": t, "finishedAt": t}}}]}})
    finish_job(admin, namespace, job, ok)


def get_json_job(admin, namespace, job):
    return client.BatchV1Api(admin).read_namespaced_job(job, namespace).to_dict()


def env_jobs(cp, namespace, archive_prefix: str = ""):
    jobs = get_json(cp, "jobs", "-n", namespace, "-l", "app.kubernetes.io/component=bento-environment")["items"]
    return [j for j in jobs if j["metadata"]["annotations"]["serving.kubento.io/archive"].startswith(archive_prefix)
            and not j["metadata"].get("deletionTimestamp")]


NOTHING_EXTRA = json.dumps({"environment": {"packages": 0, "python": "3.11", "requirements": 1}})


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
    # First use: its Python environment is looked at by a Job (here: nothing the runtime lacks).
    (job,) = wait_for("the environment Job", lambda: env_jobs(controlplane, namespace, "s3://models/iris.bento"),
                      timeout=3 * RESYNC_SECONDS + 10)
    assert md_get(controlplane, namespace, name)["status"]["phase"] == "PreparingEnvironment"
    finish_env_job(admin, namespace, job["metadata"]["name"], NOTHING_EXTRA)
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


def test_an_archive_environment_is_prepared_once_shared_and_a_failure_names_the_package(controlplane, admin, namespace, md):
    """Two models serving one archive: one environment Job (restricted, no
    token, the only pod with the index credentials); both serve with the
    environment; a new archive whose package does not exist fails by name
    while the serving revision stays, with a Warning event."""
    core = client.CoreV1Api(admin)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "index-auth"},
                                              "stringData": {"username": "u", "password": "index-password-1"}})
    python = {"index": {"url": "https://pypi.internal/simple", "secretRef": {"name": "index-auth"},
                        "caBundle": {"configMap": "index-ca"}}}
    ensure_secret(admin, namespace)
    spec = {"bento": {"archive": {"uri": "s3://models/iris/v1.bento", "secretRef": {"name": SECRET}}},
            "runtimeImage": "registry.local/runtime:1", "python": python}
    first, second = md(spec), md(spec)
    (job,) = wait_for("one environment Job", lambda: env_jobs(controlplane, namespace, "s3://models/iris/"), timeout=3 * RESYNC_SECONDS + 10)
    wait_for("both PreparingEnvironment", lambda: all(
        md_get(controlplane, namespace, n).get("status", {}).get("phase") == "PreparingEnvironment" for n in (first, second)))
    assert len(env_jobs(controlplane, namespace, "s3://models/iris/")) == 1
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    steps = {c["name"]: c for c in pod["initContainers"] + pod["containers"]}
    assert all(c["securityContext"]["capabilities"] == {"drop": ["ALL"]} for c in steps.values())
    # the index credentials: the download step's only (as the API server stored the Job)
    with_index_credentials = [n for n, c in steps.items()
                              if {"KUBENTO_INDEX_USERNAME", "KUBENTO_INDEX_PASSWORD"} & {e["name"] for e in c["env"]}]
    assert with_index_credentials == ["download"]
    assert {"KUBENTO_INDEX", "KUBENTO_INDEX_CA"} <= {e["name"] for e in steps["download"]["env"]}

    result = {"environment": {"hash": "0123456789abcdef", "uri": "s3://models/iris/envs/0123456789abcdef.tar.gz",
                              "sha256": "e" * 64, "size": 52_000_000, "unpacked": 160_000_000, "packages": 4,
                              "python": "3.11", "reused": False,
                              # what the Job read from bento.yaml (kubento.runtime.services)
                              "services": {"entry": "Iris", "services": [
                                  {"name": "Iris", "dependsOn": ["Scaler"], "resources": {"cpu": "250m"}},
                                  {"name": "Scaler", "resources": {"cpu": "1", "memory": "256Mi"}, "timeout": 90,
                                   "workers": "cpu_count", "maxConcurrency": 16}]}}}
    finish_env_job(admin, namespace, job["metadata"]["name"], json.dumps(result))
    for name in (first, second):
        dep = wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name), timeout=3 * RESYNC_SECONDS + 10)
        spec_ = dep["spec"]["template"]["spec"]
        fetch = {e["name"]: e.get("value") for e in spec_["initContainers"][0]["env"]}
        assert fetch["KUBENTO_ENV_URI"] == result["environment"]["uri"]
        server = spec_["containers"][0]
        assert {"name": "PYTHONPATH", "value": "/var/lib/kubento/env/site-packages"} in server["env"]
        # Two BentoML services: the revision's Deployment runs the entry, sized as it declares (the spec says
        # no resources), wired to Scaler's own Deployment and Service, which it calls with the revision's token
        assert server["resources"] == {"requests": {"cpu": "250m"}}
        served = {e["name"]: e.get("value") for e in server["env"]}
        rev = dep["metadata"]["labels"]["serving.kubento.io/revision"]
        apps, core = client.AppsV1Api(admin), client.CoreV1Api(admin)
        scaler = wait_for("Scaler's Deployment", lambda: apps.list_namespaced_deployment(
            namespace, label_selector=f"serving.kubento.io/service-of={name},serving.kubento.io/graph-revision={rev}"
        ).items, timeout=3 * RESYNC_SECONDS + 10)
        (scaler,) = [apps.api_client.sanitize_for_serialization(d) for d in scaler]
        dep_name = scaler["metadata"]["name"]
        assert served["BENTOML_SERVE_SERVICE_NAME"] == "Iris"
        assert served["BENTOML_SERVE_DEPENDS"] == f"Scaler=http://{dep_name}.{namespace}:80"
        token = served["BENTO_CLOUD_API_KEY"]
        assert len(token) == 32 and "KUBENTO_GRAPH_TOKEN" not in served
        pod_ = scaler["spec"]["template"]
        own = {e["name"]: e.get("value") for e in pod_["spec"]["containers"][0]["env"]}
        assert (own["BENTOML_SERVE_SERVICE_NAME"], own["KUBENTO_GRAPH_TOKEN"]) == ("Scaler", token)
        assert "BENTOML_SERVE_DEPENDS" not in own
        # Scaler as it declares (workers: cpu_count: a CPU limit for BentoML to count), its timeout as grace
        assert pod_["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "1", "memory": "256Mi"},
                                                              "limits": {"cpu": "1"}}
        assert pod_["spec"]["terminationGracePeriodSeconds"] == 5 + 90 + 5
        # its pods are not the model's: the model's Service never sends them a request
        assert "serving.kubento.io/model-deployment" not in pod_["metadata"]["labels"]
        svc = core.read_namespaced_service(dep_name, namespace)
        assert svc.spec.selector == scaler["spec"]["selector"]["matchLabels"]
        assert svc.metadata.owner_references[0].name == name
        shown = json.dumps(spec_) + json.dumps(scaler)
        assert "index-auth" not in shown and "KUBENTO_INDEX" not in shown  # model pods never see the index credentials
        play_deployment_controller(admin, namespace, name)
        obj = wait_for("Ready", lambda: (o := md_get(controlplane, namespace, name))["status"].get("phase") == "Ready" and o)
        env = obj["status"]["environment"]
        assert (env["hash"], env["packages"], env["size"]) == ("0123456789abcdef", 4, 52_000_000)
        assert condition(obj, "EnvironmentReady")["status"] == "True"
        assert env["services"] == result["environment"]["services"]  # kept as the API server stores it
        assert obj["status"]["history"][-1]["environment"] == "0123456789abcdef (4 packages, 49.6 MiB)"
    assert len(env_jobs(controlplane, namespace, "s3://models/iris/")) == 1
    serving = md_get(controlplane, namespace, first)["status"]["currentRevision"]

    # A new archive that needs a package the index does not have.
    controlplane.kubectl("patch", "md", first, "-n", namespace, "--type=merge", "-p",
                         json.dumps({"spec": {"bento": {"archive": {"uri": "s3://models/iris/v2.bento"}}}}))
    new = wait_for("a second environment Job", lambda: [j for j in env_jobs(controlplane, namespace, "s3://models/iris/")
                                                         if j["metadata"]["name"] != job["metadata"]["name"]])[0]
    tail = ("PackageNotFound: no-such-package==9.9 is not on https://pypi.internal/simple (no matching distribution); "
            "pip's log ends:\nERROR: No matching distribution found for no-such-package==9.9")
    finish_env_job(admin, namespace, new["metadata"]["name"], tail, ok=False)
    obj = wait_for("PackageNotFound", lambda: with_ready_reason(md_get(controlplane, namespace, first), "PackageNotFound"))
    assert condition(obj, "EnvironmentReady")["status"] == "False"
    assert "no-such-package==9.9" in condition(obj, "EnvironmentReady")["message"]
    assert obj["status"]["phase"] == "Degraded" and obj["status"]["currentRevision"] == serving
    assert condition(obj, "Available")["status"] == "True"
    events = get_json(controlplane, "events", "-n", namespace, "--field-selector", f"involvedObject.name={first}")["items"]
    assert any(e["reason"] == "PackageNotFound" and e["type"] == "Warning" and "no-such-package" in e["message"]
               for e in events), [e["reason"] for e in events]
    assert "index-password-1" not in json.dumps(obj) + json.dumps(events)
