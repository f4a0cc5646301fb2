"""Rollouts against a real API server: one Deployment per revision, the
Service moving between them, history, rollback, promote and abort. No
kubelet here: the test reports pods ready (or crash-looping) as one would."""

import argparse
import contextlib
import io
import os
import subprocess
import sys
import time

import pytest
from kubernetes import client

from kubento.cli import rollout as cli_rollout

from tests.helpers import condition, wait_for
from tests.integration.conftest import RESYNC_SECONDS, get_json, model_deployments
from tests.integration.test_reconcile import md_get, play_deployment_controller, settle
from tests.specs import VALID_SPEC

REVISION = "serving.kubento.io/revision"


def kubento(controlplane, *args, check=True):
    """The CLI as a user runs it (`kubento ...` or `kubectl kubento ...`)."""
    env = {**os.environ, "KUBECONFIG": str(controlplane.admin_kubeconfig)}
    proc = subprocess.run([sys.executable, "-m", "kubento.cli.main", *args], env=env, capture_output=True, text=True, timeout=60)
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def status(controlplane, namespace, name):
    return md_get(controlplane, namespace, name).get("status", {})


def replicas_by_revision(controlplane, namespace, name):
    return {d["metadata"]["labels"][REVISION]: d["spec"]["replicas"] for d in model_deployments(controlplane, namespace, name)}


def service_selector(controlplane, namespace, name):
    return get_json(controlplane, "service", name, "-n", namespace)["spec"]["selector"]


def events(controlplane, namespace, name, reason):
    items = get_json(controlplane, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    return [e for e in items if e["reason"] == reason]


def crash_loop(admin, namespace, name, revision):
    """A pod of ``revision`` whose container keeps exiting, as a kubelet reports it."""
    core = client.CoreV1Api(admin)
    pod = f"{name}-{revision}-crash"
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": pod, "labels": {"serving.kubento.io/model-deployment": name, REVISION: revision,
                                             "app.kubernetes.io/managed-by": "kubento"}},
        "spec": {"containers": [{"name": "bento", "image": "registry.local/iris:broken"}]},
    })
    core.patch_namespaced_pod_status(pod, namespace, {"status": {"containerStatuses": [{
        "name": "bento", "image": "registry.local/iris:broken", "imageID": "", "ready": False, "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    }]}})
    return pod


def deploy_v1(controlplane, admin, namespace, md, spec):
    name = md(spec)
    wait_for("the v1 Deployment", lambda: model_deployments(controlplane, namespace, name))
    v1 = settle(controlplane, admin, namespace, name)["status"]["stableRevision"]
    return name, v1


def test_rolling_update_moves_traffic_revision_by_revision_and_records_history(controlplane, admin, namespace, md):
    spec = {**VALID_SPEC, "replicas": 2}
    name, v1 = deploy_v1(controlplane, admin, namespace, md, spec)
    assert service_selector(controlplane, namespace, name) == {"serving.kubento.io/model-deployment": name, REVISION: v1}

    md({**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=name)
    st = wait_for("a rollout", lambda: (s := status(controlplane, namespace, name)).get("rollout") and s)
    v2 = st["rollout"]["revision"]
    assert v2 != v1 and st["currentRevision"] == v2 and st["stableRevision"] == v1
    # One new pod at a time; v1 keeps both until v2 pods are ready; the Service selects both.
    wait_for("v2 surging by one", lambda: replicas_by_revision(controlplane, namespace, name) == {v1: 2, v2: 1})
    assert service_selector(controlplane, namespace, name) == {"serving.kubento.io/model-deployment": name}
    assert st["phase"] == "Progressing"

    done = settle(controlplane, admin, namespace, name)
    assert done["status"]["stableRevision"] == v2
    assert replicas_by_revision(controlplane, namespace, name) == {v1: 0, v2: 2}  # v1 kept for rollback
    assert service_selector(controlplane, namespace, name)[REVISION] == v2
    assert [(h["number"], h["revision"], h["outcome"]) for h in done["status"]["history"]] == [
        (1, v1, "Superseded"), (2, v2, "Serving")]
    assert wait_for("a RolloutStarted event", lambda: events(controlplane, namespace, name, "RolloutStarted"))
    assert wait_for("a Promoted event", lambda: events(controlplane, namespace, name, "Promoted"))

    # A rollback over a spec that changed after it was read is refused, not merged.
    custom, apps = client.CustomObjectsApi(admin), client.AppsV1Api(admin)
    args = argparse.Namespace(command="rollback", name=name, namespace=namespace, to_revision=None, dry_run=False)
    stale = md_get(controlplane, namespace, name)
    md({**VALID_SPEC, "replicas": 3, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=name)
    with pytest.raises(cli_rollout.Refused, match="the spec changed while kubento read it"):
        cli_rollout._rollback(args, stale, custom, apps)
    md({**VALID_SPEC, "replicas": 2, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=name)
    assert settle(controlplane, admin, namespace, name)["status"]["stableRevision"] == v2

    # `kubento history`, then `kubento rollback`: v1's spec comes back from its
    # kept Deployment and rolls out again, under a new number. A write between
    # its read and its patch that is no spec edit (status, an annotation) does not stop it.
    table = kubento(controlplane, "history", name, "-n", namespace).stdout
    assert v1 in table and v2 in table and "Serving" in table
    read = md_get(controlplane, namespace, name)
    custom.patch_namespaced_custom_object("serving.kubento.io", "v1alpha1", namespace, "modeldeployments", name,
                                          {"metadata": {"annotations": {"team": "ml"}}})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_rollout._rollback(args, read, custom, apps) == 0
    assert "revision 1" in out.getvalue()
    assert not md_get(controlplane, namespace, name)["spec"].get("env")
    back = settle(controlplane, admin, namespace, name)
    assert back["status"]["stableRevision"] == v1
    assert [(h["number"], h["revision"], h["outcome"]) for h in back["status"]["history"]] == [
        (2, v2, "Superseded"), (3, v1, "Serving")]
    assert kubento(controlplane, "promote", name, "-n", namespace, check=False).returncode == 1  # nothing to promote


def test_crash_looping_revision_is_rolled_back_and_not_retried(controlplane, admin, namespace, md):
    name, v1 = deploy_v1(controlplane, admin, namespace, md, {**VALID_SPEC, "replicas": 2})
    md({**VALID_SPEC, "replicas": 2, "bento": {"image": "registry.local/iris:broken"}}, name=name)
    v2 = wait_for("a rollout", lambda: (status(controlplane, namespace, name).get("rollout") or {}).get("revision"))
    crash_loop(admin, namespace, name, v2)

    obj = wait_for("phase RolledBack", lambda: (o := md_get(controlplane, namespace, name))["status"].get("phase") == "RolledBack" and o)
    st = obj["status"]
    assert (st["stableRevision"], st["failedRevision"], st["currentRevision"]) == (v1, v2, v2)
    rolled = condition(obj, "RolledBack")
    assert rolled["status"] == "True" and rolled["reason"] == "CandidateFailed"
    assert "crash-looping" in rolled["message"] and v1 in rolled["message"]
    assert condition(obj, "Ready")["reason"] == "RolledBack"
    assert condition(obj, "Available")["status"] == "True"
    assert replicas_by_revision(controlplane, namespace, name) == {v1: 2, v2: 0}
    assert service_selector(controlplane, namespace, name)[REVISION] == v1
    assert st["history"][-1]["outcome"] == "RolledBack"
    (event,) = wait_for("a RolledBack event", lambda: events(controlplane, namespace, name, "RolledBack"))
    assert event["type"] == "Warning" and "crash-looping" in event["message"]

    # Not retried while the spec stays the same.
    time.sleep(2 * RESYNC_SECONDS + 1)
    assert replicas_by_revision(controlplane, namespace, name) == {v1: 2, v2: 0}
    assert "rollout" not in status(controlplane, namespace, name)


def test_canary_holds_its_step_then_promote_finishes_it(controlplane, admin, namespace, md):
    rollout = {"strategy": "Canary", "steps": [{"weight": 25, "pause": "1h"}]}
    spec = {**VALID_SPEC, "replicas": 4, "rollout": rollout}
    name, v1 = deploy_v1(controlplane, admin, namespace, md, spec)
    md({**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=name)
    v2 = wait_for("a rollout", lambda: (status(controlplane, namespace, name).get("rollout") or {}).get("revision"))

    def paused():
        play_deployment_controller(admin, namespace, name)
        obj = md_get(controlplane, namespace, name)
        # The weight is that of ready pods: 25% once the stable pod that goes is gone.
        return obj if condition(obj, "Ready").get("reason") == "CanaryPaused" and obj["status"]["canaryWeight"] == 25 else None

    obj = wait_for("the canary step to hold at 25%", paused)
    assert replicas_by_revision(controlplane, namespace, name) == {v1: 3, v2: 1}
    assert obj["status"]["canaryWeight"] == 25
    assert "step 1/1 (25%)" in condition(obj, "Ready")["message"]
    assert service_selector(controlplane, namespace, name) == {"serving.kubento.io/model-deployment": name}

    kubento(controlplane, "promote", name, "-n", namespace)
    assert md_get(controlplane, namespace, name)["metadata"]["annotations"]["serving.kubento.io/promote"].startswith(v2)
    done = settle(controlplane, admin, namespace, name)
    assert done["status"]["stableRevision"] == v2
    assert replicas_by_revision(controlplane, namespace, name) == {v1: 0, v2: 4}


def test_abort_returns_to_stable_and_blue_green_switches_only_when_ready(controlplane, admin, namespace, md):
    spec = {**VALID_SPEC, "replicas": 2, "rollout": {"strategy": "BlueGreen", "scaleDownDelaySeconds": 6}}
    name, v1 = deploy_v1(controlplane, admin, namespace, md, spec)
    preview = get_json(controlplane, "service", f"{name}-preview", "-n", namespace)
    assert preview["spec"]["selector"][REVISION] == v1

    md({**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=name)
    v2 = wait_for("a rollout", lambda: (status(controlplane, namespace, name).get("rollout") or {}).get("revision"))
    wait_for("the preview of v2", lambda: get_json(controlplane, "service", f"{name}-preview", "-n", namespace)["spec"]["selector"][REVISION] == v2)
    wait_for("v2 at full size beside v1", lambda: replicas_by_revision(controlplane, namespace, name) == {v1: 2, v2: 2})
    assert service_selector(controlplane, namespace, name)[REVISION] == v1  # not ready yet: no switch

    kubento(controlplane, "abort", name, "-n", namespace)
    obj = wait_for("phase RolledBack", lambda: (o := md_get(controlplane, namespace, name))["status"].get("phase") == "RolledBack" and o)
    assert condition(obj, "RolledBack")["reason"] == "Aborted"
    assert obj["status"]["history"][-1]["outcome"] == "Aborted"
    assert replicas_by_revision(controlplane, namespace, name) == {v1: 2, v2: 0}
    assert service_selector(controlplane, namespace, name)[REVISION] == v1

    # A new spec rolls out; BlueGreen switches once v3 is fully ready, and the
    # old pods stay for scaleDownDelaySeconds after the switch.
    md({**spec, "env": [{"name": "MODEL_VERSION", "value": "3"}]}, name=name)
    v3 = wait_for("the v3 rollout", lambda: (status(controlplane, namespace, name).get("rollout") or {}).get("revision"))
    def switched():
        play_deployment_controller(admin, namespace, name)
        return service_selector(controlplane, namespace, name)[REVISION] == v3
    wait_for("the switch to v3", switched, interval=0.2)
    assert replicas_by_revision(controlplane, namespace, name) == {v1: 2, v2: 0, v3: 2}
    assert condition(md_get(controlplane, namespace, name), "Progressing")["reason"] == "ScalingDownOld"
    done = settle(controlplane, admin, namespace, name)
    assert done["status"]["stableRevision"] == v3 not in (v1, v2)
    assert replicas_by_revision(controlplane, namespace, name) == {v1: 0, v2: 0, v3: 2}


def test_a_deleted_stable_deployment_comes_back_from_its_controller_revision(controlplane, admin, namespace, md):
    """#24: after `kubento abort`, `kubectl delete deployment` of the stable
    revision: kubento makes it again from its ControllerRevision, with its
    replicas, at once, says so in a Warning event, and never rolls out the
    aborted revision instead."""
    spec = {**VALID_SPEC, "replicas": 2, "rollout": {"strategy": "Canary", "steps": [{"weight": 50, "pause": "1h"}]}}
    name, v1 = deploy_v1(controlplane, admin, namespace, md, spec)

    def kept_revisions():
        return get_json(controlplane, "controllerrevisions", "-n", namespace, "-l",
                        f"serving.kubento.io/model-deployment={name}")["items"]
    assert kept_revisions() == []  # the spec's own revision: the spec makes it again

    md({**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=name)
    v2 = wait_for("a rollout", lambda: (status(controlplane, namespace, name).get("rollout") or {}).get("revision"))
    kept = wait_for("v1 kept once the spec moved on", kept_revisions)
    assert [k["metadata"]["name"] for k in kept] == [f"{name}-{v1}"]
    assert kept[0]["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    assert kept[0]["data"]["spec"]["template"]["metadata"]["labels"][REVISION] == v1
    kubento(controlplane, "abort", name, "-n", namespace)
    wait_for("phase RolledBack", lambda: status(controlplane, namespace, name).get("phase") == "RolledBack")
    wait_for("v2 at zero", lambda: replicas_by_revision(controlplane, namespace, name).get(v2) == 0)

    gone = time.monotonic()
    controlplane.kubectl("delete", "deployment", f"{name}-{v1}", "-n", namespace)
    back = wait_for("the stable Deployment made again", lambda: (d := get_json(
        controlplane, "deployment", f"{name}-{v1}", "-n", namespace)) and not d["metadata"].get("deletionTimestamp")
        and d, interval=0.1)
    took = time.monotonic() - gone
    print(f"stable Deployment deleted -> made again: {took:.2f}s")
    assert back["spec"]["replicas"] == 2 and back["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    repaired = wait_for("the event", lambda: events(controlplane, namespace, name, "RevisionRepaired"))
    assert repaired[0]["type"] == "Warning" and v1 in repaired[0]["message"]
    def serving_again():
        play_deployment_controller(admin, namespace, name)
        st = status(controlplane, namespace, name)
        return st.get("readyReplicas") == 2 and st.get("phase") == "RolledBack" and st
    st = wait_for("v1 serving again", serving_again, interval=0.5)
    assert (st["stableRevision"], st["failedRevision"]) == (v1, v2)
    assert replicas_by_revision(controlplane, namespace, name) == {v1: 2, v2: 0}
    assert service_selector(controlplane, namespace, name)[REVISION] == v1


def test_a_refused_controller_revision_is_a_condition_not_a_retry_per_pass(controlplane, admin, namespace, md):
    """#24: the API server refuses the ControllerRevision that keeps a revision
    (here a ValidatingAdmissionPolicy; in a cluster, e.g. an old chart's RBAC):
    the model serves, is Degraded with reason RevisionNotKept and the API
    server's message, and kubento does not ask again on every pass."""
    policy = f"no-revisions-{namespace}"
    controlplane.kubectl("apply", "-f", "-", input=f"""
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {policy}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules: [{{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [controllerrevisions]}}]
  validations: [{{expression: "false", message: "revisions are not kept in this namespace"}}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {policy}}}
spec:
  policyName: {policy}
  validationActions: [Deny]
  matchResources: {{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {namespace}}}}}}}
""")
    probe = {"metadata": {"name": "probe"}, "revision": 1, "data": {}}

    def in_force():  # a policy takes effect some time after it is written
        try:
            client.AppsV1Api(admin).create_namespaced_controller_revision(namespace, probe, dry_run="All")
        except client.ApiException as exc:
            return exc.status == 422 and "revisions are not kept" in (exc.body or "")
        return False
    try:
        wait_for("the policy in force", in_force, timeout=30, interval=0.2)
        name, v1 = deploy_v1(controlplane, admin, namespace, md, VALID_SPEC)
        md({**VALID_SPEC, "env": [{"name": "MODEL_VERSION", "value": "2"}]}, name=name)

        def refused():
            play_deployment_controller(admin, namespace, name)
            c = condition(md_get(controlplane, namespace, name), "Degraded")
            return c.get("reason") == "RevisionNotKept" and c
        degraded = wait_for("Degraded: RevisionNotKept", refused, timeout=60, interval=0.5)
        assert f"ControllerRevision {name}-{v1}" in degraded["message"], degraded
        assert "revisions are not kept in this namespace" in degraded["message"], degraded

        def rolled_out():
            play_deployment_controller(admin, namespace, name)
            st = status(controlplane, namespace, name)
            return (st.get("stableRevision") == st.get("currentRevision") != v1 and not st.get("rollout")
                    and st.get("readyReplicas") and st)
        st = wait_for("v2 rolled out and serving", rolled_out, timeout=60, interval=0.5)
        assert st["phase"] == "Degraded", st  # serving, but its history is not durable: said, not hidden
        assert condition({"status": st}, "Degraded")["reason"] == "RevisionNotKept"
        assert get_json(controlplane, "controllerrevisions", "-n", namespace, "-l",
                        f"serving.kubento.io/model-deployment={name}")["items"] == []
    finally:
        controlplane.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy,
                             "--ignore-not-found")
