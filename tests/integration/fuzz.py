"""Hypothesis strategies for ModelDeployment specs that mix valid and invalid
values in every field (tests/integration/test_fuzz.py sends them to a real
API server and the running operator).

Each field draws from pools of values a user could plausibly write, right
and wrong: names and label keys with bad characters or lengths, quantities
Kubernetes cannot parse, enums with typos, paths with '..', ports out of
range, GPUs requested above their limits, and so on; plus random text and
random values matching the schema's own patterns. A spec is a valid bento
and one to four such fields.
"""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import strategies as st

from kubento.api.common import DNS1123_LABEL, DNS1123_SUBDOMAIN, LABEL_VALUE, QUALIFIED_NAME

PULL_SECRET = "fuzz-pull"  # created by the test: a valid imagePullSecrets entry that exists


def pool(valid: list[Any], invalid: list[Any], *more: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(valid), st.sampled_from(invalid), *more)


def pattern(fmt) -> st.SearchStrategy:
    return st.from_regex(fmt.pattern, fullmatch=True).filter(lambda s: len(s) <= fmt.max_length)


text = st.text(max_size=12)
label_key = pool(
    ["team", "app", "example.com/tier", "a.b-c/d_e.f", "x" * 63, "kubernetes.io/arch", "topology.kubernetes.io/zone"],
    ["bad key!", "", "-lead", "trail-", "a/b/c", "/x", "Example.com/x", "x" * 64, "ä", "a" * 254 + "/b", "a b"],
    pattern(QUALIFIED_NAME), text,
)
label_value = pool(["", "ml", "a.b_c-d", "v" * 63, "1"], ["machine learning", "-x", "x-", "v" * 64, "a/b", "ü"],
                   pattern(LABEL_VALUE), text)
dns_label = pool(["a", "weights", "w-1", "x" * 63], ["A", "-a", "a-", "a.b", "x" * 64, "", "a_b"], pattern(DNS1123_LABEL))
dns_subdomain = pool(["a", "model-config", "a.b.c", "x" * 253], ["A", "a..b", ".a", "x" * 254, "", "a_b", "a b"],
                     pattern(DNS1123_SUBDOMAIN))
quantity = pool(["1", "500m", "1Gi", "2", "1e3", ".5", "1.5", "0", "64Mi", "100Ki", "1000m"],
                ["lots", "1e3.5", "-1", "1.5.5", "", "1 Gi", "1GB", "0x10", "1e1000"],
                st.integers(-2, 10**6))
small_int = st.integers(-3, 130)
any_int = st.one_of(small_int, st.sampled_from([0, 1, 600, 86400, 86401, 2**31 - 1, 2**31, 2**40, -(2**31) - 1]))
port_number = st.one_of(st.integers(-1, 70000), st.sampled_from([0, 1, 80, 3000, 8080, 65535, 65536]))
port_name = pool(["http", "metrics", "side", "a1", "x" * 15], ["HTTP", "1234", "a--b", "x" * 16, "-a", "", "a_b"])
port_ref = st.one_of(port_number, port_name)
env_name = pool(["A", "MODEL_X", "a.b", "with space", "x" * 100, "LD_PRELOAD"], ["A=B", "", "é", "BENTOML_PORT", "\n"])
abs_path = pool(["/models", "/cache", "/var/cache/m", "/dev/shm", "/"], ["models", "", "/var/lib/kubento", "/var/lib/kubento/x",
                                                                        "/dev/shm/"])
rel_path = pool(["a", "a/b", "conf/x.yaml", "..data", "./a"], ["../etc", "/abs", "a/../../b", "", ".."])
image = pool(["registry.local/iris:1.0", "busybox:1", "proxy@sha256:" + "a" * 64], ["", "has space:1", " lead:1"])
bools = st.booleans()


def opt(d: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A dict with any subset of these keys."""
    return st.fixed_dictionaries({}, optional=d)


# ----------------------------------------------------------------- resources

resource_name = pool(["cpu", "memory", "ephemeral-storage", "nvidia.com/gpu", "example.com/fpga", "hugepages-2Mi"],
                     ["gpu", "requests.x/y", "bad name", "CPU", "kubernetes.io/x", ""])
resource_map = st.dictionaries(resource_name, quantity, max_size=4)
resources = opt({"requests": resource_map, "limits": resource_map})
gpus = st.builds(lambda r, l: {"requests": {"nvidia.com/gpu": r}, "limits": {"nvidia.com/gpu": l}},
                 st.sampled_from([1, 2, "1", "0.5", "500m"]), st.sampled_from([1, 2, "2", "1.5"]))

# ----------------------------------------------------------------------- env

field_path = pool(["metadata.name", "metadata.namespace", "status.podIP", "spec.nodeName",
                   "metadata.labels['team']", "metadata.annotations['a/b']"],
                  ["spec.nope", "metadata.labels", "metadata.annotations", "status.phase", "", "metadata.labels[team]"])
value_from = st.one_of(
    st.builds(lambda p, v: {"fieldRef": {"fieldPath": p, **({"apiVersion": v} if v else {})}}, field_path,
              st.sampled_from([None, "v1", "v2"])),
    st.builds(lambda r, d: {"resourceFieldRef": {"resource": r, **({"divisor": d} if d is not None else {})}},
              pool(["limits.cpu", "requests.memory", "limits.ephemeral-storage"], ["cpu", "limits.gpu", ""]),
              st.one_of(st.none(), quantity, st.sampled_from(["1m", "1Mi", "1k", "1Ki", "3"]))),
    st.builds(lambda k, n, key: {k: {"name": n, "key": key}}, st.sampled_from(["configMapKeyRef", "secretKeyRef"]),
              dns_subdomain, pool(["key", "a.b", "A_1-b"], ["", "a/b", "a b"])),
    st.just({}),
    st.just({"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}}),
)
env_var = st.one_of(
    st.builds(lambda n, v: {"name": n, "value": v}, env_name, text),
    st.builds(lambda n, f: {"name": n, "valueFrom": f}, env_name, value_from),
    st.builds(lambda n, v, f: {"name": n, "value": v, "valueFrom": f}, env_name, st.sampled_from(["", "x"]), value_from),
)
env = st.lists(env_var, max_size=3)
env_from = st.lists(st.one_of(
    st.builds(lambda k, n, p: {k: {"name": n}, **({"prefix": p} if p is not None else {})},
              st.sampled_from(["configMapRef", "secretRef"]), dns_subdomain,
              st.one_of(st.none(), env_name)),
    st.just({"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}),
    st.just({"prefix": "P_"}),
), max_size=2)

# ---------------------------------------------------------------- scheduling

toleration = opt({
    "key": st.one_of(st.just(""), label_key),
    "operator": pool(["Equal", "Exists"], ["", "Sometimes", "Lt", "exists"]),
    "value": st.one_of(st.just(""), label_value),
    "effect": pool(["", "NoSchedule", "PreferNoSchedule", "NoExecute"], ["Never", "noschedule"]),
    "tolerationSeconds": any_int,
})
selector_operator = pool(["In", "NotIn", "Exists", "DoesNotExist"], ["Gt", "Lt", "Equals", ""])
node_operator = pool(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"], ["Equals", "", "in"])
values = st.lists(st.one_of(label_value, st.sampled_from(["1", "10", "-3"])), max_size=3)
node_requirement = st.fixed_dictionaries({"key": label_key, "operator": node_operator}, optional={"values": values})
field_requirement = st.fixed_dictionaries(
    {"key": pool(["metadata.name"], ["metadata.namespace", "spec.nodeName"]), "operator": node_operator},
    optional={"values": st.lists(dns_subdomain, max_size=2)})
node_term = opt({"matchExpressions": st.lists(node_requirement, max_size=2),
                 "matchFields": st.lists(field_requirement, max_size=1)})
label_selector = opt({
    "matchLabels": st.dictionaries(label_key, label_value, max_size=2),
    "matchExpressions": st.lists(st.fixed_dictionaries({"key": label_key, "operator": selector_operator},
                                                       optional={"values": values}), max_size=2),
})
label_keys = st.lists(label_key, max_size=2)
pod_affinity_term = st.fixed_dictionaries(
    {"topologyKey": st.one_of(st.just(""), label_key)},
    optional={"labelSelector": label_selector, "namespaces": st.lists(dns_label, max_size=2),
              "namespaceSelector": label_selector, "matchLabelKeys": label_keys, "mismatchLabelKeys": label_keys})
weight = st.integers(-1, 101)
pod_affinity = opt({
    "requiredDuringSchedulingIgnoredDuringExecution": st.lists(pod_affinity_term, max_size=2),
    "preferredDuringSchedulingIgnoredDuringExecution": st.lists(
        st.builds(lambda w, t: {"weight": w, "podAffinityTerm": t}, weight, pod_affinity_term), max_size=2),
})
affinity = opt({
    "nodeAffinity": opt({
        "requiredDuringSchedulingIgnoredDuringExecution": st.fixed_dictionaries(
            {"nodeSelectorTerms": st.lists(node_term, max_size=2)}),
        "preferredDuringSchedulingIgnoredDuringExecution": st.lists(
            st.builds(lambda w, t: {"weight": w, "preference": t}, weight, node_term), max_size=2),
    }),
    "podAffinity": pod_affinity,
    "podAntiAffinity": pod_affinity,
})
spread = st.fixed_dictionaries(
    {"maxSkew": any_int, "topologyKey": st.one_of(st.just(""), label_key),
     "whenUnsatisfiable": pool(["DoNotSchedule", "ScheduleAnyway"], ["Maybe", ""])},
    optional={"minDomains": any_int, "nodeAffinityPolicy": pool(["Honor", "Ignore"], ["honor", ""]),
              "nodeTaintsPolicy": pool(["Honor", "Ignore"], ["Always"]), "labelSelector": label_selector,
              "matchLabelKeys": label_keys})

# ------------------------------------------------------------------- volumes

volume_name = pool(["weights", "cache", "cfg", "w1"], ["bentoml-home", "work", "dshm", "pvc-0123456789ab", "Weights",
                                                      "a_b", ""])
key_to_path = st.fixed_dictionaries({"key": pool(["a.yaml", "k"], ["", "a/b"]), "path": rel_path},
                                    optional={"mode": st.integers(-1, 0o1000)})
volume_source = st.one_of(
    st.builds(lambda c, r: {"persistentVolumeClaim": {"claimName": c, "readOnly": r}}, dns_subdomain, bools),
    st.builds(lambda n, i, m: {"configMap": {"name": n, "items": i, **({"defaultMode": m} if m is not None else {})}},
              dns_subdomain, st.lists(key_to_path, max_size=2), st.one_of(st.none(), st.integers(-1, 0o1000))),
    st.builds(lambda n: {"secret": {"secretName": n}}, dns_subdomain),
    st.builds(lambda d, a: {"csi": {"driver": d, "volumeAttributes": a}}, dns_subdomain,
              st.dictionaries(text, text, max_size=2)),
    st.builds(lambda m, s: {"emptyDir": {**({"medium": m} if m is not None else {}), **({"sizeLimit": s} if s is not None else {})}},
              st.one_of(st.none(), pool(["", "Memory", "HugePages"], ["RAM", "memory"])), st.one_of(st.none(), quantity)),
    st.builds(lambda a, s, c: {"ephemeral": {"volumeClaimTemplate": {"spec": {
        "accessModes": a, "resources": {"requests": {"storage": s}}, **({"storageClassName": c} if c else {})}}}},
        st.lists(pool(["ReadWriteOnce", "ReadWriteOncePod", "ReadOnlyMany"], ["RWO", ""]), max_size=2),
        quantity, st.one_of(st.none(), dns_subdomain)),
    st.builds(lambda p, e: {"projected": {"sources": [{"serviceAccountToken": {"path": p, **({"expirationSeconds": e} if e else {})}}]}},
              rel_path, st.one_of(st.none(), st.sampled_from([599, 600, 3600, 2**33]))),
    st.builds(lambda p, f: {"downwardAPI": {"items": [{"path": p, "fieldRef": {"fieldPath": f}}]}}, rel_path,
              pool(["metadata.labels", "metadata.name"], ["status.podIP", "spec.nodeName"])),
    st.builds(lambda s, p: {"nfs": {"server": s, "path": p}}, pool(["10.0.0.5", "nfs.local"], [""]), abs_path),
    st.builds(lambda p, t: {"hostPath": {"path": p, **({"type": t} if t is not None else {})}}, abs_path,
              st.one_of(st.none(), pool(["Directory", "DirectoryOrCreate", ""], ["Dir"]))),
    st.just({}),
    st.just({"emptyDir": {}, "secret": {"secretName": "s"}}),
    st.just({"gcePersistentDisk": {"pdName": "d"}}),
)
volume = st.builds(lambda n, s: {"name": n, **s}, volume_name, volume_source)
volume_mount = st.fixed_dictionaries(
    {"name": volume_name, "mountPath": abs_path},
    optional={"readOnly": bools, "subPath": rel_path, "subPathExpr": rel_path,
              "mountPropagation": pool(["None", "HostToContainer"], ["Bidirectional", "Both"]),
              "recursiveReadOnly": pool(["Disabled", "IfPossible", "Enabled"], ["Yes"])})

# ---------------------------------------------------------------- containers

handler = st.one_of(
    st.builds(lambda c: {"exec": {"command": c}}, st.lists(text, max_size=2)),
    st.builds(lambda p, port, s, h: {"httpGet": {"path": p, "port": port, **({"scheme": s} if s else {}),
                                                  **({"httpHeaders": [{"name": h, "value": "v"}]} if h is not None else {})}},
              pool(["/", "/healthz"], [""]), port_ref, pool([None, "HTTP", "HTTPS"], ["http", "FTP"]),
              st.one_of(st.none(), pool(["X-Key", "Accept"], ["bad header", "", "a:b"]))),
    st.builds(lambda port: {"tcpSocket": {"port": port}}, port_ref),
    st.builds(lambda port: {"grpc": {"port": port}}, port_number),
    st.just({}),
    st.just({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}),
)
probe = st.builds(lambda h, extra: {**h, **extra}, handler, opt({
    "initialDelaySeconds": small_int, "timeoutSeconds": small_int, "periodSeconds": small_int,
    "successThreshold": small_int, "failureThreshold": small_int, "terminationGracePeriodSeconds": small_int}))
lifecycle_handler = st.one_of(handler, st.builds(lambda s: {"sleep": {"seconds": s}}, st.integers(-1, 100)))
security_context = opt({
    "runAsUser": any_int, "runAsGroup": any_int, "runAsNonRoot": bools, "privileged": bools,
    "allowPrivilegeEscalation": bools, "readOnlyRootFilesystem": bools,
    "capabilities": opt({"add": st.lists(pool(["NET_BIND_SERVICE", "CAP_SYS_ADMIN"], ["SYS_ADMIN", ""]), max_size=2),
                         "drop": st.lists(st.sampled_from(["ALL", "NET_RAW"]), max_size=1)}),
    "procMount": pool(["Default", "Unmasked"], ["Masked"]),
    "seccompProfile": st.builds(lambda t, p: {"type": t, **({"localhostProfile": p} if p else {})},
                                pool(["RuntimeDefault", "Localhost", "Unconfined"], ["Default"]),
                                st.one_of(st.none(), st.just("profiles/x.json"))),
})
container_name = pool(["sidecar", "auth-proxy", "logs", "bento"], ["fetch-bento", "Sidecar", "a_b", ""])


def container(volume_names: list[str]) -> st.SearchStrategy:
    mounts = st.lists(st.fixed_dictionaries({"name": st.sampled_from(volume_names + ["nope", "dshm"]),
                                             "mountPath": abs_path}), max_size=2)
    return st.fixed_dictionaries({"name": container_name}, optional={
        "image": image, "command": st.lists(text, max_size=2), "args": st.lists(text, max_size=2),
        "ports": st.lists(st.fixed_dictionaries({"containerPort": port_number}, optional={
            "name": port_name, "hostPort": port_number, "protocol": pool(["TCP", "UDP", "SCTP"], ["HTTP", "tcp"])}),
            max_size=2),
        "env": env, "envFrom": env_from, "resources": st.one_of(resources, gpus), "volumeMounts": mounts,
        "livenessProbe": probe, "readinessProbe": probe, "startupProbe": probe,
        "lifecycle": opt({"postStart": lifecycle_handler, "preStop": lifecycle_handler}),
        "securityContext": security_context,
        "imagePullPolicy": pool(["Always", "IfNotPresent", "Never"], ["always", "Sometimes"]),
        "terminationMessagePolicy": pool(["File", "FallbackToLogsOnError"], ["Logs"]),
        "restartPolicy": pool(["Always"], ["Never", "OnFailure"]),
        "workingDir": pool(["/srv", "/"], ["relative"]), "tty": bools,
        "resizePolicy": st.lists(st.fixed_dictionaries({
            "resourceName": pool(["cpu", "memory"], ["gpu"]),
            "restartPolicy": pool(["NotRequired", "RestartContainer"], ["Always"])}), max_size=2),
    })


def pod_overlay(volume_names: list[str]) -> st.SearchStrategy:
    return opt({
        "containers": st.lists(container(volume_names), max_size=2),
        "initContainers": st.lists(container(volume_names), max_size=2),
        "securityContext": opt({
            "runAsUser": any_int, "runAsGroup": any_int, "fsGroup": any_int, "runAsNonRoot": bools,
            "supplementalGroups": st.lists(any_int, max_size=2),
            "fsGroupChangePolicy": pool(["OnRootMismatch", "Always"], ["Sometimes"]),
            "sysctls": st.lists(st.fixed_dictionaries({"name": pool(["net.ipv4.ip_local_port_range", "kernel.shm_rmid_forced"],
                                                                    ["bad name", "", "net..x"]),
                                                       "value": text}), max_size=1),
            "seccompProfile": st.fixed_dictionaries({"type": pool(["RuntimeDefault", "Unconfined"], ["Localhost", "x"])}),
        }),
        "dnsPolicy": pool(["ClusterFirst", "Default", "None", "ClusterFirstWithHostNet"], ["none", ""]),
        "dnsConfig": opt({"nameservers": st.lists(pool(["10.96.0.10", "::1"], ["dns.local", "300.1.1.1"]), max_size=4),
                          "searches": st.lists(dns_subdomain, max_size=2),
                          "options": st.lists(opt({"name": pool(["ndots"], [""]), "value": text}), max_size=2)}),
        "hostAliases": st.lists(st.fixed_dictionaries({"ip": pool(["10.0.0.1", "fe80::1"], ["host", "", "1.2.3"])},
                                                      optional={"hostnames": st.lists(dns_subdomain, max_size=2)}),
                                max_size=2),
        "hostUsers": bools, "enableServiceLinks": bools, "automountServiceAccountToken": bools,
        "shareProcessNamespace": bools, "schedulerName": dns_subdomain,
        "affinity": st.just({}),  # a first-class field: refused in the overlay
    })


# ---------------------------------------------------------------------- spec

rollout = opt({
    "strategy": pool(["RollingUpdate", "Canary", "BlueGreen"], ["Shadow", ""]),
    "steps": st.lists(opt({"weight": st.integers(-1, 101), "pause": pool(["30s", "1m", "1h30m"], ["soon", "1d", ""])}),
                      max_size=3),
    "analysis": opt({"maxErrorRate": st.floats(-1, 2, allow_nan=False), "maxLatencyP95": pool(["500ms"], ["fast"]),
                     "minRequests": small_int, "interval": pool(["30s"], ["0"])}),
    "progressDeadlineSeconds": any_int,
    "revisionHistoryLimit": small_int,
})
autoscaling = opt({
    "minReplicas": small_int, "maxReplicas": small_int,
    "metric": pool(["cpu", "memory", "concurrency", "rps"], ["gpu", ""]),
    "target": any_int, "window": pool(["60s", "6s"], ["2s", "forever"]),
    "provider": pool(["kubento", "keda"], ["hpa"]),
})


@st.composite
def spec(draw) -> dict[str, Any]:
    bento = draw(st.one_of(
        st.builds(lambda i: {"image": i}, st.sampled_from(["registry.local/iris:1.0", "registry.local/model:2"])),
        st.just({"archive": {"uri": "pvc://models/iris.bento"}}),
        st.just({"archive": {"uri": "s3://models/iris.bento", "sha256": "a" * 64}}),
    ))
    volumes = draw(st.lists(volume, max_size=3))
    names = [v["name"] for v in volumes if isinstance(v.get("name"), str)]
    fields: dict[str, st.SearchStrategy] = {
        "replicas": st.integers(-2, 1002),
        "port": port_number,
        "resources": st.one_of(resources, gpus),
        "env": env,
        "envFrom": env_from,
        "nodeSelector": st.dictionaries(label_key, label_value, max_size=2),
        "tolerations": st.lists(toleration, max_size=2),
        "affinity": affinity,
        "serviceAccountName": dns_subdomain,
        "imagePullSecrets": st.lists(st.fixed_dictionaries({"name": st.one_of(st.just(PULL_SECRET), dns_subdomain)}),
                                     max_size=2),
        "podLabels": st.dictionaries(st.one_of(label_key, st.just("serving.kubento.io/revision")), label_value,
                                     max_size=2),
        "podAnnotations": st.one_of(
            st.dictionaries(st.one_of(label_key, st.just("Example.COM/Key")), st.one_of(text, st.just("x" * 3701)),
                            max_size=2),
            st.just({f"example.com/k{i}": "x" * 3700 for i in range(64)}),  # the most the API allows
            st.just({f"k{i}": "x" * 3700 for i in range(65)})),
        "autoscaling": autoscaling,
        "rollout": rollout,
        "startupTimeoutSeconds": any_int,
        "terminationGracePeriodSeconds": any_int,
        "runtimeClassName": dns_subdomain,
        "priorityClassName": dns_subdomain,
        "topologySpreadConstraints": st.lists(spread, max_size=2),
        "volumes": st.just(volumes),
        "volumeMounts": st.lists(st.one_of(volume_mount, st.builds(
            lambda n, p: {"name": n, "mountPath": p}, st.sampled_from(names or ["weights"]), abs_path)), max_size=2),
        "shmSize": quantity,
        "podOverlay": pod_overlay(names),
        "runtimeImage": image,
    }
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=4, unique=True))
    out: dict[str, Any] = {"bento": bento}
    for name in chosen:
        out[name] = draw(fields[name])
    if "volumeMounts" in out or "podOverlay" in out:
        out.setdefault("volumes", volumes)  # mounts usually name volumes that exist
    return out


# ------------------------------------------------- values from the schema itself

def from_schema(node: dict[str, Any], depth: int = 0) -> st.SearchStrategy:
    """Values the CRD's structural schema allows (types, enums, patterns,
    bounds), whatever Kubernetes thinks of them: what a user could write
    that the schema lets through. Only CEL rules stand between these and
    the API server's pod validation."""
    if node.get("x-kubernetes-int-or-string"):
        strings = st.from_regex(node["pattern"], fullmatch=True) if "pattern" in node else st.text(max_size=8)
        return st.one_of(st.integers(node.get("minimum", -5), node.get("maximum", 70000)), strings)
    kind = node.get("type")
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if kind == "string":
        if "pattern" in node:
            s = st.from_regex(node["pattern"], fullmatch=True)
        else:
            s = st.one_of(st.text(max_size=8), st.sampled_from(["a", "x:1", "/p", "10.0.0.1", "metadata.name"]))
        if "maxLength" in node:
            s = s.filter(lambda v, n=node["maxLength"]: len(v) <= n)
        return s
    if kind == "integer":
        lo, hi = node.get("minimum", -(2**31)), node.get("maximum", 2**31 - 1)
        return st.one_of(st.integers(max(lo, -3), max(min(hi, 130), max(lo, -3))), st.sampled_from([lo, hi]))
    if kind == "number":
        return st.floats(node.get("minimum", -10), node.get("maximum", 10), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        item = from_schema(node["items"], depth + 1)
        return st.lists(item, min_size=node.get("minItems", 0), max_size=min(node.get("maxItems", 2), 2 if depth < 4 else 1))
    if kind == "object" and "additionalProperties" in node:
        value = from_schema(node["additionalProperties"], depth + 1)
        return st.dictionaries(st.one_of(label_key, st.sampled_from(["storage", "cpu", "a"])), value, max_size=2)
    if kind == "object":
        props = node.get("properties") or {}
        required = set(node.get("required") or [])
        if depth > 6:
            return st.fixed_dictionaries({k: from_schema(props[k], depth + 1) for k in required})
        return st.fixed_dictionaries({k: from_schema(props[k], depth + 1) for k in required},
                                     optional={k: from_schema(v, depth + 1) for k, v in props.items() if k not in required})
    return st.nothing()


@functools.cache
def schema_fields() -> dict[str, st.SearchStrategy]:
    from kubento.api import crd

    spec_schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    return {name: from_schema(spec_schema[name]) for name in (
        "env", "envFrom", "tolerations", "affinity", "topologySpreadConstraints", "volumes", "volumeMounts",
        "podOverlay", "resources", "nodeSelector", "shmSize")}


@st.composite
def schema_spec(draw) -> dict[str, Any]:
    """A valid bento and one to three fields drawn from the schema itself."""
    fields = schema_fields()
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3, unique=True))
    out: dict[str, Any] = {"bento": {"image": "registry.local/iris:1.0"}}
    for name in chosen:
        out[name] = draw(fields[name])
    return out
