"""The pod fields (issue #18): each reaches the pod, each is part of the
revision, unset fields change nothing, and the pod overlay merges like a
strategic merge patch without touching what kubento owns."""

import copy

import pytest
from pydantic import ValidationError

from kubento.api.k8s import MODEL_CONTAINER, OWNED_CONTAINER_FIELDS
from kubento.api.v1alpha1 import KUBENTO_VOLUMES, RUNTIME_DIR, ModelDeploymentSpec
from kubento.builders import bento as bento_builder
from kubento.builders.deployment import CONTAINER_SECURITY, deployment, pod_spec
from kubento.builders.meta import ANNOTATION_APPLIED_HASH, LABEL_MODEL, Owner
from tests.specs import FULL_SPEC, VALID_SPEC, POD_SPEC
from tests.unit.test_builders import revision, served

OWNER = Owner(name="iris", namespace="models", uid="uid-1")
ARCHIVE = {"bento": {"archive": {"uri": "s3://models/iris.bento", "sha256": "a" * 64, "secretRef": {"name": "s3"}}},
           "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
PVC_ARCHIVE = {"bento": {"archive": {"uri": "pvc://claim/iris.bento"}}, "podLabels": {"a": "b"},
               "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30}]}
RUNTIME = "kubento.local/bentoml-runtime:1.4.39"


def spec(raw):
    return ModelDeploymentSpec.model_validate(raw)


def pod(raw):
    s = spec(raw)
    return pod_spec(s, served(s))


# Revisions and Deployments of specs written before the pod fields existed,
# computed with the code on main before this change: an upgraded operator
# must neither roll these models out again nor even rewrite their Deployments.
BEFORE = [
    ("minimal-image", VALID_SPEC, None, "ca8bfbe0c1", "d872e6700db25847"),
    ("full-image", FULL_SPEC, None, "58352cb01e", "af8c8b5a371b10d1"),
    ("s3-archive", ARCHIVE, ("s3://models/iris.bento", "a" * 64, "s3"), "85cdfdd3d0", "2ed6421b76b6d611"),
    ("pvc-archive", PVC_ARCHIVE, ("pvc://claim/iris.bento", None, None), "5656dd0091", "6fea8b2752640260"),
]


@pytest.mark.parametrize("name, raw, archive, rev, applied", BEFORE, ids=[b[0] for b in BEFORE])
def test_existing_revisions_keep_their_hash_and_deployment(name, raw, archive, rev, applied):
    s = spec(raw)
    bento = bento_builder.ServedBento(RUNTIME, *archive) if archive else bento_builder.ServedBento(s.bento.image)
    from kubento.builders.deployment import revision as _revision

    assert _revision(s, bento) == rev
    dep = deployment(s, OWNER, bento, 2)
    assert dep["metadata"]["annotations"][ANNOTATION_APPLIED_HASH] == applied


# One value per new field; each must be a new revision (a change rolls out).
NEW_FIELDS = {
    "startupTimeoutSeconds": 1200,
    "terminationGracePeriodSeconds": 90,
    "runtimeClassName": "nvidia",
    "priorityClassName": "models-high",
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway"}],
    "envFrom": [{"configMapRef": {"name": "model-config"}}],
    "volumes": [{"name": "weights", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}}],
    "shmSize": "1Gi",
    "podOverlay": {"containers": [{"name": "logs", "image": "fluent-bit:3"}]},
}


@pytest.mark.parametrize("field", sorted(NEW_FIELDS))
def test_each_new_field_is_part_of_the_revision(field):
    base = {**VALID_SPEC, "rollout": {"progressDeadlineSeconds": 1200}}
    assert revision(spec({**base, field: NEW_FIELDS[field]})) != revision(spec(base))


def test_volume_mounts_are_part_of_the_revision():
    base = {**VALID_SPEC, "volumes": NEW_FIELDS["volumes"]}
    mounted = {**base, "volumeMounts": [{"name": "weights", "mountPath": "/models"}]}
    elsewhere = {**base, "volumeMounts": [{"name": "weights", "mountPath": "/weights"}]}
    assert len({revision(spec(base)), revision(spec(mounted)), revision(spec(elsewhere))}) == 3


def test_every_pod_field_reaches_the_pod():
    p = pod(POD_SPEC)
    (server, logs) = p["containers"]
    assert p["terminationGracePeriodSeconds"] == 90
    assert p["runtimeClassName"] == "nvidia" and p["priorityClassName"] == "models-high"
    assert server["envFrom"] == [{"configMapRef": {"name": "model-config"}}, {"secretRef": {"name": "model-keys"}}]
    volumes = {v["name"]: v for v in p["volumes"]}
    assert volumes["weights"]["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}
    assert volumes["cache"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert {"name": "weights", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in server["volumeMounts"]
    # the startup budget: one probe a second, each failing after 1 s
    probe = server["startupProbe"]
    assert (probe["periodSeconds"], probe["timeoutSeconds"], probe["failureThreshold"]) == (1, 1, 1200)
    (spread,) = p["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert logs["image"] == "fluent-bit:3"


def test_unset_fields_leave_the_defaults():
    p = pod(VALID_SPEC)
    (server,) = p["containers"]
    assert p["terminationGracePeriodSeconds"] == 35
    assert (server["startupProbe"]["failureThreshold"], server["startupProbe"]["timeoutSeconds"]) == (600, 3)
    for key in ("volumes", "runtimeClassName", "priorityClassName", "topologySpreadConstraints"):
        assert key not in p
    assert "volumeMounts" not in server and "envFrom" not in server


def test_a_spread_constraint_without_selector_counts_this_models_pods():
    (spread,) = pod({**VALID_SPEC, "topologySpreadConstraints": NEW_FIELDS["topologySpreadConstraints"]})[
        "topologySpreadConstraints"]
    # every kubento model pod, narrowed to this pod's model by its instance label
    assert spread["labelSelector"] == {"matchExpressions": [{"key": LABEL_MODEL, "operator": "Exists"}]}
    assert spread["matchLabelKeys"] == ["app.kubernetes.io/instance"]
    dep = deployment(spec({**VALID_SPEC, "topologySpreadConstraints": NEW_FIELDS["topologySpreadConstraints"]}),
                     OWNER, bento_builder.ServedBento("registry.local/iris:1.0"), 1)
    assert dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] == OWNER.name
    own = {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
           "labelSelector": {"matchLabels": {"team": "ml"}}}
    assert pod({**VALID_SPEC, "topologySpreadConstraints": [own]})["topologySpreadConstraints"] == [own]


def test_archive_pods_keep_kubentos_volumes_first_and_add_the_users():
    raw = {**ARCHIVE, **{k: POD_SPEC[k] for k in ("volumes", "volumeMounts", "shmSize")}}
    p = pod(raw)
    names = [v["name"] for v in p["volumes"]]
    assert names[:2] == ["bentoml-home", "work"] and names[2] == "dshm" and set(names[3:]) == {"weights", "cache"}
    mounts = [m["mountPath"] for m in p["containers"][0]["volumeMounts"]]
    assert mounts[0] == bento_builder.BENTOML_HOME and "/models" in mounts


def test_kubentos_own_names_are_the_ones_the_api_reserves():
    assert {bento_builder.BENTOML_HOME_VOLUME, bento_builder.WORK_VOLUME} <= set(KUBENTO_VOLUMES)
    assert bento_builder.RUNTIME_DIR == RUNTIME_DIR
    assert bento_builder.pvc_volume_name("any-claim").startswith("pvc-")


# ------------------------------------------------------------------ overlay


def test_overlay_adds_sidecars_with_the_restricted_security_context_and_merges_into_the_model_container():
    overlay = {
        "containers": [
            {"name": "auth-proxy", "image": "proxy:1", "ports": [{"containerPort": 8443, "name": "https"}],
             "securityContext": {"readOnlyRootFilesystem": True}},
            {"name": MODEL_CONTAINER, "securityContext": {"readOnlyRootFilesystem": True}, "workingDir": "/srv"},
        ],
        "initContainers": [{"name": "warm-cache", "image": "busybox:1", "command": ["true"]}],
        "securityContext": {"runAsUser": 2000, "supplementalGroups": [5]},
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["weights.local"]}],
    }
    p = pod({**ARCHIVE, "podOverlay": overlay})
    server, proxy = p["containers"]
    assert server["name"] == MODEL_CONTAINER and proxy["name"] == "auth-proxy"
    # the model container: adjusted, not replaced
    assert server["workingDir"] == "/srv"
    assert server["securityContext"] == {**CONTAINER_SECURITY, "readOnlyRootFilesystem": True}
    assert server["startupProbe"]["httpGet"]["path"] == "/readyz" and server["ports"][0]["name"] == "http"
    # an added container starts from the restricted context
    assert proxy["securityContext"] == {**CONTAINER_SECURITY, "readOnlyRootFilesystem": True}
    assert proxy["ports"] == [{"containerPort": 8443, "name": "https", "protocol": "TCP"}]
    # init containers run after kubento's fetch
    assert [c["name"] for c in p["initContainers"]] == ["fetch-bento", "warm-cache"]
    assert p["initContainers"][1]["securityContext"]["runAsNonRoot"] is True
    # the pod's security context: merged key by key
    assert p["securityContext"]["runAsUser"] == 2000 and p["securityContext"]["runAsNonRoot"] is True
    assert p["securityContext"]["supplementalGroups"] == [5]
    assert p["hostAliases"] == overlay["hostAliases"]


def test_overlay_can_loosen_a_sidecars_security_context_where_the_cluster_allows():
    sidecar = {"name": "shipper", "image": "s:1", "securityContext": {"runAsNonRoot": False, "runAsUser": 0,
                                                                      "capabilities": {"drop": ["NET_RAW"]}}}
    (_, shipper) = pod({**VALID_SPEC, "podOverlay": {"containers": [sidecar]}})["containers"]
    assert shipper["securityContext"]["runAsUser"] == 0 and shipper["securityContext"]["runAsNonRoot"] is False
    assert shipper["securityContext"]["capabilities"] == {"drop": ["NET_RAW"]}  # a list is replaced, not merged


def test_overlay_merge_is_pure():
    raw = {**VALID_SPEC, "podOverlay": {"containers": [{"name": MODEL_CONTAINER, "tty": True}]}}
    s = spec(raw)
    before = copy.deepcopy(s.wire())
    assert pod_spec(s, served(s)) == pod_spec(s, served(s))
    assert s.wire() == before


@pytest.mark.parametrize("field", sorted(OWNED_CONTAINER_FIELDS))
def test_overlay_cannot_set_what_kubento_owns_on_the_model_container(field):
    value = {"image": "x:1", "command": ["sh"], "args": ["-c"], "ports": [{"containerPort": 9000}],
             "env": [{"name": "A", "value": "1"}], "envFrom": [{"configMapRef": {"name": "c"}}],
             "resources": {"limits": {"cpu": "1"}}, "volumeMounts": [{"name": "v", "mountPath": "/v"}],
             "startupProbe": {"exec": {"command": ["true"]}}, "readinessProbe": {"exec": {"command": ["true"]}},
             "livenessProbe": {"exec": {"command": ["true"]}}, "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
             "restartPolicy": "Always"}[field]
    with pytest.raises(ValidationError, match=f"model container's {field} is kubento's"):
        spec({**VALID_SPEC, "podOverlay": {"containers": [{"name": MODEL_CONTAINER, field: value}]}})


def test_overlay_refuses_kubentos_init_container_and_first_class_fields():
    with pytest.raises(ValidationError, match="kubento's container names"):
        spec({**VALID_SPEC, "podOverlay": {"initContainers": [{"name": "fetch-bento", "image": "x:1"}]}})
    for field in ("volumes", "affinity", "tolerations", "nodeSelector", "terminationGracePeriodSeconds",
                  "runtimeClassName", "serviceAccountName", "restartPolicy", "ephemeralContainers"):
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            spec({**VALID_SPEC, "podOverlay": {field: {} if field != "terminationGracePeriodSeconds" else 5}})


def test_integer_quantities_anywhere_in_the_pod_build():
    """Found by the fuzzer: Kubernetes reads sizeLimit: 99999 as it reads
    "99999", but the client models kubento checks its manifests with take
    strings only; a pass crashed on it."""
    raw = {**VALID_SPEC,
           "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": 99999}},
                       {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {
                           "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": 10}}}}}},
                       {"name": "down", "downwardAPI": {"items": [{"path": "cpu", "resourceFieldRef": {
                           "containerName": "bento", "resource": "limits.cpu", "divisor": 1}}]}}],
           "podOverlay": {"containers": [{"name": "side", "image": "s:1", "resources": {"limits": {"cpu": 1, "memory": 1024}}}]}}
    s = spec(raw)
    dep = deployment(s, OWNER, bento_builder.ServedBento("registry.local/iris:1.0"), 1)
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["scratch"]["emptyDir"]["sizeLimit"] == "99999"
    assert dep["spec"]["template"]["spec"]["containers"][1]["resources"]["limits"] == {"cpu": "1", "memory": "1024"}
