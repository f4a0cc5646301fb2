"""The operator against a real API server: children, status, updates,
deletion, run-time failures and write-free resyncs."""

import os
import time

from kubernetes import client

from tests.helpers import condition, wait_for, with_ready_reason
from tests.integration.conftest import (
    OPERATOR_USER,
    RESYNC_SECONDS,
    audit_events,
    get_json,
    newest_deployment,
    model_deployments,
)
from tests.specs import VALID_SPEC

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def play_deployment_controller(admin, namespace, name, ready=None):
    """Do what the Deployment controller and kubelets would, for every
    revision Deployment of the model: report each desired replica of the
    current generation as updated and ready."""
    apps = client.AppsV1Api(admin)
    deps = apps.list_namespaced_deployment(namespace, label_selector=f"serving.kubento.io/model-deployment={name}")
    for dep in deps.items:
        _report_ready(apps, dep, dep.spec.replicas if ready is None else ready)


def settle(controlplane, admin, namespace, name, timeout=30):
    """Play the Deployment controller until the spec's revision is stable and Ready."""
    def done():
        play_deployment_controller(admin, namespace, name)
        obj = md_get(controlplane, namespace, name)
        st = obj.get("status", {})
        ok = st.get("phase") == "Ready" and st.get("stableRevision") == st.get("currentRevision") and not st.get("rollout")
        return obj if ok else None
    return wait_for("the rollout to settle", done, timeout=timeout, interval=0.5)


def _report_ready(apps, dep, replicas):
    status = {
        "observedGeneration": dep.metadata.generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "done"},
        ],
    }
    apps.patch_namespaced_deployment_status(dep.metadata.name, dep.metadata.namespace, {"status": status})


def md_get(cp, namespace, name):
    return get_json(cp, "md", name, "-n", namespace)


def test_create_makes_children_that_match_the_spec(controlplane, namespace, md):
    spec = {
        **VALID_SPEC,
        "port": 3100,
        "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
        "env": [{"name": "MODEL_MODE", "value": "fast"}],
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4, "metric": "cpu", "target": 60},
    }
    name = md(spec)
    dep = wait_for(
        "the Deployment",
        lambda: newest_deployment(controlplane, namespace, name, "--show-managed-fields"),
    )
    svc = wait_for("the Service", lambda: get_json(controlplane, "service", name, "-n", namespace))
    hpa = wait_for("the HPA", lambda: get_json(controlplane, "hpa", name, "-n", namespace))
    owner = md_get(controlplane, namespace, name)

    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == VALID_SPEC["bento"]["image"]
    assert container["ports"][0]["containerPort"] == 3100
    assert {"name": "MODEL_MODE", "value": "fast"} in container["env"]
    assert container["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for child in (dep, svc, hpa):
        ref = child["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["uid"]) == ("ModelDeployment", name, owner["metadata"]["uid"])
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubento"
    revision = dep["metadata"]["labels"]["serving.kubento.io/revision"]
    assert dep["metadata"]["name"] == f"{name}-{revision}"
    # One Deployment per revision; the Service selects the serving one.
    assert svc["spec"]["selector"] == {"serving.kubento.io/model-deployment": name, "serving.kubento.io/revision": revision}
    # The HPA sizes the model as a whole, through its scale subresource.
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "serving.kubento.io/v1alpha1", "kind": "ModelDeployment", "name": name}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    # All of it by server-side apply, under one field manager.
    managers = {m["manager"] for m in dep["metadata"]["managedFields"] if m["operation"] == "Apply"}
    assert managers == {"kubento"}

    status = wait_for("status", lambda: md_get(controlplane, namespace, name).get("status", {}).get("url"))
    assert status == f"http://{name}.{namespace}.svc.cluster.local"
    st = md_get(controlplane, namespace, name)["status"]
    assert st["observedGeneration"] == 1
    assert st["selector"] == f"serving.kubento.io/model-deployment={name}"
    assert st["currentRevision"] == dep["metadata"]["labels"]["serving.kubento.io/revision"]


def test_status_follows_the_deployment_and_events_mark_transitions(controlplane, admin, namespace, md):
    name = md({**VALID_SPEC, "replicas": 2})
    wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name))
    progressing = wait_for(
        "phase Progressing", lambda: md_get(controlplane, namespace, name) if md_get(controlplane, namespace, name).get("status", {}).get("phase") == "Progressing" else None
    )
    assert condition(progressing, "Ready")["status"] == "False"

    play_deployment_controller(admin, namespace, name)
    ready = wait_for(
        "phase Ready",
        lambda: (lambda o: o if o.get("status", {}).get("phase") == "Ready" else None)(md_get(controlplane, namespace, name)),
    )
    assert condition(ready, "Ready")["status"] == "True"
    assert condition(ready, "Available")["status"] == "True"
    assert ready["status"]["readyReplicas"] == 2
    assert ready["status"]["stableRevision"] == ready["status"]["currentRevision"]
    events = wait_for(
        "a Ready event",
        lambda: [e for e in get_json(controlplane, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"] if e["reason"] == "Ready"],
    )
    assert events[0]["type"] == "Normal"
    printed = controlplane.kubectl("get", "md", name, "-n", namespace).stdout.splitlines()[1].split()
    assert printed[1:3] == ["True", "Ready"]


def test_spec_update_updates_children_and_observed_generation(controlplane, admin, namespace, md):
    name = md({**VALID_SPEC, "resources": {"requests": {"cpu": "100m"}}, "autoscaling": {"maxReplicas": 3}})
    wait_for("the HPA", lambda: get_json(controlplane, "hpa", name, "-n", namespace))
    first_rev = wait_for("a revision", lambda: md_get(controlplane, namespace, name).get("status", {}).get("currentRevision"))

    md({"bento": {"image": "registry.local/iris:2.0"}, "replicas": 3}, name=name)
    dep = wait_for(
        "the new image",
        lambda: (lambda d: d if d["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0") else None)(
            newest_deployment(controlplane, namespace, name)
        ),
    )
    settle(controlplane, admin, namespace, name)
    dep = newest_deployment(controlplane, namespace, name)
    assert dep["spec"]["replicas"] == 3
    wait_for("the HPA to go", lambda: get_json(controlplane, "hpa", name, "-n", namespace) is None)
    st = wait_for(
        "observedGeneration 2",
        lambda: (lambda s: s if s.get("observedGeneration") == 2 else None)(md_get(controlplane, namespace, name).get("status", {})),
    )
    assert st["currentRevision"] != first_rev
    assert condition({"status": st}, "Ready")["observedGeneration"] == 2

    # `kubectl scale` works through the scale subresource.
    controlplane.kubectl("scale", "md", name, "-n", namespace, "--replicas=5")
    wait_for("5 replicas", lambda: newest_deployment(controlplane, namespace, name)["spec"]["replicas"] == 5)


def test_delete_garbage_collects_the_children(controlplane, namespace, md):
    name = md({**VALID_SPEC, "resources": {"requests": {"memory": "64Mi"}}, "autoscaling": {"maxReplicas": 2, "metric": "memory"}})
    wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name))
    for kind in ("service", "hpa"):
        wait_for(f"the {kind}", lambda kind=kind: get_json(controlplane, kind, name, "-n", namespace))
    controlplane.kubectl("delete", "md", name, "-n", namespace)
    wait_for("the Deployments to be collected", lambda: model_deployments(controlplane, namespace, name) == [], timeout=60)
    for kind in ("service", "hpa"):
        wait_for(f"the {kind} to be collected", lambda kind=kind: get_json(controlplane, kind, name, "-n", namespace) is None, timeout=60)


def test_missing_pull_secret_gives_condition_and_event_then_recovers(controlplane, admin, namespace, md, operator):
    name = md({**VALID_SPEC, "imagePullSecrets": [{"name": "regcred-missing"}]})
    failed = wait_for(
        "condition SecretNotFound",
        lambda: with_ready_reason(md_get(controlplane, namespace, name), "SecretNotFound"),
    )
    assert failed["status"]["phase"] == "Failed"
    assert "regcred-missing" in condition(failed, "Ready")["message"]
    events = wait_for(
        "a SecretNotFound event",
        lambda: [e for e in get_json(controlplane, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"] if e["reason"] == "SecretNotFound"],
    )
    assert events[0]["type"] == "Warning" and "regcred-missing" in events[0]["message"]
    assert newest_deployment(controlplane, namespace, name) is None  # nothing half-applied

    # The operator keeps working: other models reconcile...
    other = md(VALID_SPEC)
    wait_for("another model's Deployment", lambda: newest_deployment(controlplane, namespace, other))
    # ...and this one recovers on its own once the Secret exists.
    client.CoreV1Api(admin).create_namespaced_secret(
        namespace,
        {"metadata": {"name": "regcred-missing"}, "type": "kubernetes.io/dockerconfigjson",
         "data": {".dockerconfigjson": "eyJhdXRocyI6e319"}},
    )
    wait_for("recovery", lambda: newest_deployment(controlplane, namespace, name), timeout=5 * RESYNC_SECONDS + 10)


def _passes() -> float:
    from kubento.controller import metrics

    return next(s.value for m in metrics.RECONCILE_SECONDS.collect() for s in m.samples if s.name.endswith("_count"))


def test_resync_of_a_settled_model_reads_and_writes_nothing(controlplane, admin, namespace, md):
    """A settled model costs no API request: passes read the watch caches,
    and find nothing to write."""
    name = md({**VALID_SPEC, "replicas": 1, "imagePullSecrets": [{"name": "regcred-present"}]})
    client.CoreV1Api(admin).create_namespaced_secret(namespace, {"metadata": {"name": "regcred-present"},
                                                                 "stringData": {"x": "y"}})
    wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name), timeout=5 * RESYNC_SECONDS + 10)
    play_deployment_controller(admin, namespace, name)
    wait_for("phase Ready", lambda: md_get(controlplane, namespace, name).get("status", {}).get("phase") == "Ready")
    time.sleep(RESYNC_SECONDS)  # let in-flight passes and event posting settle

    start, passes = os.path.getsize(controlplane.audit_log), _passes()
    time.sleep(4 * RESYNC_SECONDS + 1)
    calls = [
        e for e in audit_events(controlplane, start)
        if e.get("stage") == "ResponseComplete" and e["user"]["username"] == OPERATOR_USER
        and (e.get("objectRef") or {}).get("namespace") in (namespace, None)
    ]
    mine = [e for e in calls if name in ((e.get("objectRef") or {}).get("name") or "") or name in e.get("requestURI", "")]
    writes = [(e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("subresource")) for e in mine if e["verb"] in WRITE_VERBS]
    reads = [(e["verb"], e["requestURI"]) for e in calls if e["verb"] in ("get", "list")]
    assert _passes() - passes >= 3, "expected several resync passes"
    assert reads == []  # not even the Secret: it was checked when the spec named it
    assert writes == []


def test_pod_image_pull_failure_becomes_a_condition_and_event(controlplane, admin, namespace, md):
    """No kubelet here: the test creates the model's pod and reports the
    pull failure in its status, as a kubelet would."""
    name = md({"bento": {"image": "registry.local/does-not-exist:1"}})
    dep = wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name))
    revision = dep["metadata"]["labels"]["serving.kubento.io/revision"]
    core = client.CoreV1Api(admin)
    pod_name = f"{name}-7d9f-abcde"
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": pod_name, "labels": {"serving.kubento.io/model-deployment": name, "app.kubernetes.io/managed-by": "kubento",
                                                  "serving.kubento.io/revision": revision}},
        "spec": {"containers": [{"name": "bento", "image": "registry.local/does-not-exist:1"}]},
    })
    core.patch_namespaced_pod_status(pod_name, namespace, {"status": {"containerStatuses": [{
        "name": "bento", "image": "registry.local/does-not-exist:1", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
    }]}})
    failed = wait_for(
        "condition ImagePullBackOff",
        lambda: with_ready_reason(md_get(controlplane, namespace, name), "ImagePullBackOff"),
    )
    assert "registry.local/does-not-exist:1" in condition(failed, "Ready")["message"]
    assert failed["status"]["phase"] == "Failed"
    wait_for(
        "a Warning event",
        lambda: [e for e in get_json(controlplane, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
                 if e["reason"] == "ImagePullBackOff" and e["type"] == "Warning"],
    )
    core.delete_namespaced_pod(pod_name, namespace, grace_period_seconds=0)


DENY_POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: kubento-it-deny-team-x}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  validations:
  - expression: "!has(object.spec.template.metadata.labels) || !('team' in object.spec.template.metadata.labels) || object.spec.template.metadata.labels['team'] != 'x'"
    message: "team x may not deploy here (cluster policy)"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: kubento-it-deny-team-x}
spec:
  policyName: kubento-it-deny-team-x
  validationActions: [Deny]
"""


def test_rejected_child_becomes_a_condition_not_a_retry_loop(controlplane, namespace, md, request):
    # The spec is valid (the API refuses at apply whatever a pod could not
    # be made of), but a cluster's admission policy refuses the Deployment.
    controlplane.kubectl("apply", "-f", "-", input=DENY_POLICY)
    request.addfinalizer(lambda: controlplane.kubectl("delete", "-f", "-", "--ignore-not-found", input=DENY_POLICY,
                                                      check=False))
    time.sleep(2)  # the policy reaches the API server's admission
    name = md({**VALID_SPEC, "podLabels": {"team": "x"}})
    failed = wait_for(
        "condition ApplyFailed",
        lambda: with_ready_reason(md_get(controlplane, namespace, name), "ApplyFailed"),
    )
    assert "team x may not deploy here" in condition(failed, "Ready")["message"]
    assert failed["status"]["phase"] == "Failed"
    events = wait_for(
        "an ApplyFailed event",
        lambda: [e for e in get_json(controlplane, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"] if e["reason"] == "ApplyFailed"],
    )
    assert events[0]["type"] == "Warning"


def test_existing_object_with_the_same_name_is_not_taken_over(controlplane, admin, namespace, md):
    name = "taken"
    client.CoreV1Api(admin).create_namespaced_service(
        namespace, {"metadata": {"name": name}, "spec": {"ports": [{"port": 8080}], "selector": {"app": "theirs"}}}
    )
    md(VALID_SPEC, name=name)
    obj = wait_for(
        "condition ChildConflict",
        lambda: with_ready_reason(md_get(controlplane, namespace, name), "ChildConflict"),
    )
    assert "Service taken" in condition(obj, "Ready")["message"]
    svc = get_json(controlplane, "service", name, "-n", namespace)
    assert svc["spec"]["selector"] == {"app": "theirs"} and not svc["metadata"].get("ownerReferences")


def test_autoscaling_sizes_the_model_through_its_scale_subresource(controlplane, namespace, md):
    name = md({**VALID_SPEC, "replicas": 3, "resources": {"requests": {"cpu": "100m"}}})
    wait_for("3 replicas", lambda: (newest_deployment(controlplane, namespace, name) or {}).get("spec", {}).get("replicas") == 3)
    revision = newest_deployment(controlplane, namespace, name)["metadata"]["name"]
    md({**VALID_SPEC, "replicas": 3, "resources": {"requests": {"cpu": "100m"}},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 5}}, name=name)
    hpa = wait_for("the HPA", lambda: get_json(controlplane, "hpa", name, "-n", namespace))
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "ModelDeployment"
    time.sleep(RESYNC_SECONDS)
    dep = newest_deployment(controlplane, namespace, name)
    assert (dep["metadata"]["name"], dep["spec"]["replicas"]) == (revision, 3)  # same revision, same size
    # What the HPA does: write the model's scale subresource, within [min, max].
    controlplane.kubectl("scale", "md", name, "-n", namespace, "--replicas=4")
    wait_for("4 replicas", lambda: newest_deployment(controlplane, namespace, name)["spec"]["replicas"] == 4)
    controlplane.kubectl("scale", "md", name, "-n", namespace, "--replicas=9")
    wait_for("5 replicas (maxReplicas)", lambda: newest_deployment(controlplane, namespace, name)["spec"]["replicas"] == 5)


def test_changes_made_by_others_to_the_deployment_are_reverted(controlplane, admin, namespace, md):
    name = md(VALID_SPEC)
    dep = wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name))
    client.AppsV1Api(admin).patch_namespaced_deployment(
        dep["metadata"]["name"], namespace, {"spec": {"template": {"spec": {"containers": [{"name": "bento", "image": "someone/else:1"}]}}}}
    )
    wait_for(
        "the image to be reverted",
        lambda: newest_deployment(controlplane, namespace, name)["spec"]["template"]["spec"]["containers"][0]["image"]
        == VALID_SPEC["bento"]["image"],
        timeout=3 * RESYNC_SECONDS + 10,
    )


def test_a_stalled_model_watch_costs_a_read_per_refused_status_not_the_model(controlplane, admin, namespace, md,
                                                                              operator):
    """The operator's watch of one model stops delivering (as a stream that
    hangs would): a spec change is missed until a status patch is refused as
    stale (409); the next pass reads the model and catches up."""
    from kubento.controller.kinds import MODEL

    name = md(VALID_SPEC)
    settle(controlplane, admin, namespace, name)
    op = operator.operator
    cache, kube = op.cache, op.services.kube
    read: set[str] = set()  # versions the operator read itself (reconcile's verify)
    real_update, real_get = cache.update, kube.get_model

    def get_model(ns, model):
        live = real_get(ns, model)
        if live is not None:
            read.add(live["metadata"]["resourceVersion"])
        return live

    def update(kind, obj):
        stalled = kind == MODEL and obj["metadata"]["name"] == name
        if stalled and obj["metadata"].get("resourceVersion") not in read:
            return []
        return real_update(kind, obj)

    cache.update, kube.get_model = update, get_model
    try:
        md({**VALID_SPEC, "replicas": 2}, name=name)  # never reaches the cache through the watch
        time.sleep(3 * RESYNC_SECONDS)  # resyncs on the stale cache: nothing to write
        assert newest_deployment(controlplane, namespace, name)["spec"]["replicas"] == 1
        play_deployment_controller(admin, namespace, name, ready=0)  # its status must change: a patch, refused
        wait_for("the new spec applied after a read", lambda: newest_deployment(controlplane, namespace, name)
                 ["spec"]["replicas"] == 2, timeout=30)
        assert read, "the operator read the model"
        settle(controlplane, admin, namespace, name)
        assert md_get(controlplane, namespace, name)["status"]["observedGeneration"] == 2
    finally:
        cache.update, kube.get_model = real_update, real_get
