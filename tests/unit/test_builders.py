import copy

from hypothesis import given, strategies as st

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders import Owner
from kubento.builders.bento import BENTOML_HOME, ServedBento
from kubento.builders.deployment import revision as _revision
from kubento.builders.meta import ANNOTATION_APPLIED_HASH, LABEL_MODEL, LABEL_REVISION
from tests.specs import FULL_SPEC, VALID_SPEC

OWNER = Owner(name="iris", namespace="models", uid="1234")
RUNTIME = "registry.local/bentoml-runtime:1.4.39"


def served(spec):
    if spec.bento.image:
        return ServedBento(spec.bento.image)
    a = spec.bento.archive
    return ServedBento(spec.runtime_image or RUNTIME, a.uri, a.sha256, a.secret_ref.name if a.secret_ref else None)


def desired_children(spec, owner):
    """What the operator applies for a new model: the plan of a pass over it
    with no children yet (the Deployment first)."""
    from kubento.controller.observation import Inputs, Observation
    from kubento.controller.plan import plan
    from kubento.controller.world import World

    from kubento.builders.env_job import env_source

    body = {"metadata": {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid, "generation": 1},
            "spec": spec.wire()}
    if spec.bento.archive:  # its environment was looked at: the runtime image has every package
        body["status"] = {"environment": {"source": env_source(served(spec), None), "packages": 0}}
    actions = plan(Observation.of(World(body), Inputs(now=0.0, default_runtime_image=RUNTIME))).actions
    return [a.manifest for a in actions.applies]


def revision(spec):
    return _revision(spec, served(spec))


def children(raw):
    return {c["kind"]: c for c in desired_children(ModelDeploymentSpec.model_validate(raw), OWNER)}


def test_image_bento_gets_deployment_and_service_owned_by_the_model():
    kids = children(VALID_SPEC)
    assert set(kids) == {"Deployment", "Service"}
    for child in kids.values():
        meta = child["metadata"]
        assert meta["namespace"] == "models"
        assert meta["ownerReferences"][0]["uid"] == "1234"
        assert meta["ownerReferences"][0]["controller"] is True
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "kubento"
        assert meta["labels"]["app.kubernetes.io/instance"] == "iris"
    svc = kids["Service"]["spec"]
    rev = kids["Deployment"]["metadata"]["labels"][LABEL_REVISION]
    assert kids["Deployment"]["metadata"]["name"] == f"iris-{rev}"
    # Revisions never share pods; the Service selects the serving revision.
    assert kids["Deployment"]["spec"]["selector"]["matchLabels"] == {LABEL_MODEL: "iris", LABEL_REVISION: rev}
    assert svc["selector"] == {LABEL_MODEL: "iris", LABEL_REVISION: rev}
    assert svc["ports"][0]["targetPort"] == "http"


def test_model_server_pod_probes_security_and_passthrough():
    dep = children(FULL_SPEC)["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "registry.local/iris:1.0"
    assert c["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert all(c[p]["timeoutSeconds"] > 0 for p in ("startupProbe", "readinessProbe", "livenessProbe"))
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    # Pod Security "restricted"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    # passed through
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "MODEL_THRESHOLD", "value": "0.5"} in c["env"]
    assert pod["nodeSelector"] == FULL_SPEC["nodeSelector"]
    assert pod["tolerations"] == FULL_SPEC["tolerations"]
    assert pod["affinity"] == FULL_SPEC["affinity"]
    assert pod["serviceAccountName"] == "model-runner"
    assert dep["spec"]["template"]["metadata"]["labels"]["team"] == "ml"
    assert dep["spec"]["template"]["metadata"]["annotations"]["owner"] == "ml-platform"
    assert dep["spec"]["progressDeadlineSeconds"] == 300


def test_zero_downtime_rolling_update():
    strategy = children(VALID_SPEC)["Deployment"]["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_cpu_autoscaling_makes_an_hpa_that_sizes_the_model_as_a_whole():
    kids = children({**FULL_SPEC, "replicas": 9})
    hpa = kids["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)
    assert hpa["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    # The ModelDeployment's scale subresource, not one revision's Deployment.
    assert hpa["scaleTargetRef"] == {"apiVersion": "serving.kubento.io/v1alpha1", "kind": "ModelDeployment", "name": "iris"}
    assert kids["Deployment"]["spec"]["replicas"] == 5  # spec.replicas, kept within [min, max]


def test_the_server_listens_on_spec_port_and_user_env_follows():
    raw = {**VALID_SPEC, "port": 4000, "env": [{"name": "A", "value": "1"}]}
    env = children(raw)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "BENTOML_PORT", "value": "4000"}, {"name": "A", "value": "1"}]


ARCHIVE = {"bento": {"archive": {"uri": "s3://models/iris.bento", "sha256": "a" * 64, "secretRef": {"name": "s3"}}}}


def test_archive_pods_import_the_bento_in_an_init_container_with_the_secret_only_there():
    pod = children({**ARCHIVE, "runtimeImage": "rt:2"})["Deployment"]["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    (server,) = pod["containers"]
    assert fetch["image"] == server["image"] == "rt:2"
    assert fetch["command"][-1] == "fetch" and server["command"][-1] == "serve"
    env = {e["name"]: e.get("value") for e in fetch["env"]}
    assert env["KUBENTO_ARCHIVE_URI"] == "s3://models/iris.bento"
    assert env["KUBENTO_ARCHIVE_SHA256"] == "a" * 64
    assert env["BENTOML_HOME"] == BENTOML_HOME
    assert fetch["envFrom"] == [{"secretRef": {"name": "s3"}}]
    assert "envFrom" not in server  # credentials never reach the model server
    assert fetch["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert fetch["securityContext"]["allowPrivilegeEscalation"] is False
    # the server reads what the init container imported
    home = next(v["name"] for v in pod["volumes"] if "emptyDir" in v and v["name"] == "bentoml-home")
    assert {"name": home, "mountPath": BENTOML_HOME} in server["volumeMounts"]
    assert {"name": "BENTOML_HOME", "value": BENTOML_HOME} in server["env"]


def test_pvc_archive_mounts_its_claim_read_only():
    pod = children({"bento": {"archive": {"uri": "pvc://models/v1/iris.bento"}}})["Deployment"]["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    mount = next(m for m in pod["initContainers"][0]["volumeMounts"] if m["name"] == claim["name"])
    assert mount["mountPath"] == "/var/lib/kubento/pvc/models" and mount["readOnly"] is True


def test_a_new_archive_uri_or_digest_is_a_new_revision():
    a = ModelDeploymentSpec.model_validate(ARCHIVE)
    b = ModelDeploymentSpec.model_validate({"bento": {"archive": {**ARCHIVE["bento"]["archive"], "sha256": "b" * 64}}})
    c = ModelDeploymentSpec.model_validate({"bento": {"archive": {**ARCHIVE["bento"]["archive"], "uri": "s3://models/v2.bento"}}})
    assert len({revision(a), revision(b), revision(c)}) == 3


def test_revision_tracks_the_pod_template_not_the_scale():
    base = ModelDeploymentSpec.model_validate(VALID_SPEC)
    scaled = ModelDeploymentSpec.model_validate({**VALID_SPEC, "replicas": 7})
    new_image = ModelDeploymentSpec.model_validate({"bento": {"image": "registry.local/iris:2.0"}})
    assert revision(base) == revision(scaled)
    assert revision(base) != revision(new_image)
    dep = desired_children(base, OWNER)[0]
    assert dep["metadata"]["labels"][LABEL_REVISION] == revision(base)


@given(
    image=st.from_regex(r"[a-z0-9]{1,12}(/[a-z0-9]{1,8})?:[a-z0-9.]{1,6}", fullmatch=True),
    replicas=st.integers(0, 1000),
    port=st.integers(1, 65535),
)
def test_builders_are_deterministic_and_hash_what_they_apply(image, replicas, port):
    raw = {"bento": {"image": image}, "replicas": replicas, "port": port}
    first = desired_children(ModelDeploymentSpec.model_validate(raw), OWNER)
    second = desired_children(ModelDeploymentSpec.model_validate(copy.deepcopy(raw)), OWNER)
    assert first == second
    dep = first[0]
    assert dep["spec"]["replicas"] == replicas
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == port
    other = desired_children(ModelDeploymentSpec.model_validate({**raw, "replicas": (replicas + 1) % 1001}), OWNER)
    assert other[0]["metadata"]["annotations"][ANNOTATION_APPLIED_HASH] != dep["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]


def test_hpa_behavior_comes_from_spec_autoscaling_behavior():
    raw = {**FULL_SPEC, "autoscaling": {**FULL_SPEC["autoscaling"], "behavior": {
        "scaleUp": {"percent": 200, "pods": 5, "periodSeconds": 30},
        "scaleDown": {"stabilizationWindowSeconds": 60, "percent": 50}}}}
    behavior = children(raw)["HorizontalPodAutoscaler"]["spec"]["behavior"]
    assert behavior == {
        "scaleUp": {"policies": [{"type": "Percent", "value": 200, "periodSeconds": 30},
                                 {"type": "Pods", "value": 5, "periodSeconds": 30}], "selectPolicy": "Max"},
        "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                      "policies": [{"type": "Percent", "value": 50, "periodSeconds": 15}]},
    }
    assert "behavior" not in children(FULL_SPEC)["HorizontalPodAutoscaler"]["spec"]  # Kubernetes' defaults


def test_keda_provider_makes_a_scaled_object_on_the_model_instead_of_an_hpa():
    from kubento.builders.keda import scaled_object

    raw = {**FULL_SPEC, "autoscaling": {**FULL_SPEC["autoscaling"], "provider": "keda"}}
    kids = children(raw)
    assert "HorizontalPodAutoscaler" not in kids
    so = scaled_object(ModelDeploymentSpec.model_validate(raw), OWNER)
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "serving.kubento.io/v1alpha1", "kind": "ModelDeployment", "name": "iris"}
    assert so["spec"]["triggers"] == [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}]
    custom = {**raw, "autoscaling": {**raw["autoscaling"], "metric": "rps",
                                     "kedaTriggers": [{"type": "prometheus", "metadata": {"query": "sum(rate(x[1m]))"}}]}}
    assert so is not None and scaled_object(ModelDeploymentSpec.model_validate(custom), OWNER)["spec"]["triggers"][0]["type"] == "prometheus"


def test_prediction_checks_gate_the_pods_and_are_part_of_the_revision():
    from kubento.predictions.gate import ANNOTATION_CHECKS, GATE, revision_checks
    from tests.specs import checks

    plain, checked = children(VALID_SPEC)["Deployment"], children(checks())["Deployment"]
    assert "readinessGates" not in plain["spec"]["template"]["spec"]
    assert ANNOTATION_CHECKS not in plain["metadata"]["annotations"]
    assert checked["spec"]["template"]["spec"]["readinessGates"] == [{"conditionType": GATE}]
    rev = checked["metadata"]["labels"][LABEL_REVISION]
    parsed = revision_checks({rev: checked})[rev]
    assert parsed.port == 3000 and parsed.checks.checks[0].name == "setosa"
    # Other checks are another revision (rolled out, checked by their own pods)...
    other = checks(expect=[{"jsonPath": "$[0]", "equals": "virginica"}])
    assert len({revision(ModelDeploymentSpec.model_validate(s)) for s in (VALID_SPEC, checks(), other)}) == 3


def test_a_model_without_checks_keeps_the_revision_it_had_before_checks_existed():
    # Computed by the operator before prediction checks: upgrading kubento rolls nothing out.
    archive = {"bento": {"archive": {"uri": "s3://b/k.bento"}}}
    assert revision(ModelDeploymentSpec.model_validate(VALID_SPEC)) == "ca8bfbe0c1"
    assert revision(ModelDeploymentSpec.model_validate(FULL_SPEC)) == "58352cb01e"
    assert _revision(ModelDeploymentSpec.model_validate(archive),
                     ServedBento("runtime:1", archive_uri="s3://b/k.bento")) == "fec13089cf"


def test_an_upgraded_operator_keeps_every_existing_models_revision():
    """The hashes the last released operator gave these specs (main at 39b3bd1):
    a changed hash would roll out every model in the cluster on upgrade."""
    released = {"image": "ca8bfbe0c1", "full": "58352cb01e", "archive": "5d4a37a863"}
    now = {name: revision(ModelDeploymentSpec.model_validate(raw))
           for name, raw in (("image", VALID_SPEC), ("full", FULL_SPEC), ("archive", ARCHIVE))}
    assert now == released


def test_a_longer_grace_lets_archive_pods_wait_longer_for_their_tasks():
    def env(raw):
        return children(raw)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]

    linger = {"name": "KUBENTO_TASK_LINGER_SECONDS", "value": "110"}
    assert linger in env({**ARCHIVE, "terminationGracePeriodSeconds": 120})
    # unset, the server's default fits the default grace: the pod template is as before
    assert not [e for e in env(ARCHIVE) if e["name"] == "KUBENTO_TASK_LINGER_SECONDS"]
    # an image runs its own server: kubento's helper is not in it
    assert not [e for e in env({**VALID_SPEC, "terminationGracePeriodSeconds": 120})
                if e["name"] == "KUBENTO_TASK_LINGER_SECONDS"]
