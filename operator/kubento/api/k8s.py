"""Kubernetes types in kubento's API, generated from Kubernetes' own OpenAPI.

The pod-shaped fields of a ModelDeployment (env, envFrom, tolerations,
affinity, topologySpreadConstraints, volumes, volumeMounts and the pod
overlay) are Kubernetes core/v1 types. They are generated here, as pydantic
models, from the OpenAPI document of the Kubernetes version kubento targets
(kubernetes-openapi.json, vendored by hack/k8s-openapi.py from
k8s.io/kubernetes): exactly the fields that API server knows, with their
descriptions (``kubectl explain``), list semantics and int-or-string types.
The Python client's models are a newer Kubernetes and know fields a 1.34
server does not have; a spec using them would pass admission and then fail
when its Deployment is applied.

The OpenAPI says little about validity (no enums, no name formats), so
:data:`FACTS` adds what the API server checks when it validates a pod
template (k8s.io/kubernetes pkg/apis/core/validation): enums, patterns and
bounds become schema keywords (the CRD and pydantic both enforce them); rules
across fields are CEL with a Python twin, side by side, as in v1alpha1.
Fields that are alpha in 1.34 (dropped silently by the API server), Windows
only, or deprecated in-tree volume plugins are left out.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Annotated, Any, Callable, Literal, Optional, Union

from pydantic import AfterValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema, create_model, model_validator
from pydantic.alias_generators import to_snake

from kubento.api.common import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    LABEL_VALUE,
    QUALIFIED_NAME,
    Format,
    Model,
    Quantity,
    cel,
    quantity_value,
)

OPENAPI = json.loads(resources.files("kubento.api").joinpath("kubernetes-openapi.json").read_text())
SCHEMAS: dict[str, Any] = OPENAPI["schemas"]
KUBERNETES_VERSION = OPENAPI["source"].split("@")[1].split()[0]

INT32 = (-(2**31), 2**31 - 1)
# metadata.labels['<key>'] in a field path: the key is a qualified name
# (annotations: once lowercased) whose prefix is at most 253 characters.
_QN = QUALIFIED_NAME.pattern[1:-1]
_QN_ANY_CASE = _QN.replace("a-z0-9", "a-zA-Z0-9")
_SUBSCRIPTS = rf"metadata\.labels\['{_QN}'\]|metadata\.annotations\['{_QN_ANY_CASE}'\]"
SUBSCRIPT_PREFIX = r"^([^\[]*|[^\[]*\['([^/']{1,253}/)?[^/']*'\])$"
PRINTABLE_NO_EQUALS = r"^[\x20-\x3c\x3e-\x7e]+$"  # IsRelaxedEnvVarName: printable ASCII except '='
CONFIG_KEY = r"^[-._a-zA-Z0-9]+$"
# A relative path with no '..' element (validateLocalDescendingPath).
_SEG = r"(\.|[^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)"
DESCENDING_PATH = rf"^{_SEG}(/({_SEG})?)*$"
# ... and not starting with '..' (ValidateLocalNonReservedPath: file names in volumes).
NONRESERVED_PATH = rf"^(\.|[^/.][^/]*|\.[^/.][^/]*)(/({_SEG})?)*$"
ABSOLUTE_PATH = r"^/"


# ----------------------------------------------------------------- facts


@dataclass(frozen=True)
class Rule:
    """A rule across fields of one object: CEL for the API server and the
    same rule in Python (``ok`` gets the object's wire form)."""

    rule: str
    message: str
    ok: Callable[[Any], bool]
    field_path: Optional[str] = None
    message_expression: Optional[str] = None

    def entry(self) -> dict[str, str]:
        return cel(self.rule, self.message, self.field_path, self.message_expression)


@dataclass(frozen=True)
class Prop:
    """What Kubernetes checks on one field, beyond its OpenAPI type."""

    enum: Optional[tuple[str, ...]] = None
    pattern: Optional[str] = None
    fmt: Optional[Format] = None  # a string in a Kubernetes name format
    min_length: Optional[int] = None
    max_length: Optional[int] = None
    ge: Optional[int] = None
    le: Optional[int] = None
    min_items: Optional[int] = None
    max_items: Optional[int] = None
    items: Optional["Prop"] = None  # for a list of strings
    keys: Optional[Format] = None  # for a map: every key
    values: Optional[Format] = None  # for a map: every value
    max_properties: Optional[int] = None
    rules: tuple[Rule, ...] = ()  # on the field's value
    quantity: bool = False  # a resource amount (int or string)
    empty_ok: bool = False  # fmt applies only to a non-empty string
    variant: str = ""  # for a field of a Kubernetes type: which variant of it (see VARIANTS)
    also: Optional[str] = None  # a second pattern (schema: allOf)
    doc: Optional[str] = None  # appended to the description


@dataclass(frozen=True)
class Facts:
    only: Optional[frozenset[str]] = None  # keep only these properties
    omit: frozenset[str] = frozenset()  # leave these out
    required: frozenset[str] = frozenset()  # required beyond the OpenAPI's list
    optional: frozenset[str] = frozenset()  # not required, whatever the OpenAPI says
    props: dict[str, Prop] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    doc: Optional[str] = None


def exactly_one(fields: tuple[str, ...], what: str, required: bool = True) -> Rule:
    listed = ", ".join(fields)
    test = "== 1" if required else "<= 1"
    return Rule(
        f"[{', '.join(f'has(self.{f})' for f in fields)}].filter(x, x).size() {test}",
        f"{'exactly' if required else 'at most'} one of {listed} must be set ({what})",
        lambda o: (sum(f in o for f in fields) == 1) if required else (sum(f in o for f in fields) <= 1),
    )


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def enum(*values: str) -> Prop:
    return Prop(enum=values)


NAME_DNS_LABEL = Prop(fmt=DNS1123_LABEL, max_length=63)
NAME_DNS_SUBDOMAIN = Prop(fmt=DNS1123_SUBDOMAIN, max_length=253)
QNAME = Prop(fmt=QUALIFIED_NAME, max_length=317)
LABEL_VALUES = Prop(max_items=32, items=Prop(fmt=LABEL_VALUE))
NON_NEGATIVE = Prop(ge=0, le=INT32[1])
PORT = Prop(ge=1, le=65535)
IANA_PORT_NAME = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"


def _iana_ok(v: str) -> bool:
    return len(v) <= 15 and bool(re.fullmatch(IANA_PORT_NAME[1:-1], v)) and "--" not in v and bool(re.search("[a-z]", v))


def _port_ok(v: Any) -> bool:
    return (1 <= v <= 65535) if isinstance(v, int) else _iana_ok(v)


# An int-or-string port: 1-65535, or an IANA service name (IsValidPortName).
PORT_OR_NAME = Prop(max_length=15, rules=(Rule(
    "type(self) == int ? (self >= 1 && self <= 65535) : ("
    "self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$') && self.matches('[a-z]') && !self.contains('--'))",
    "must be a port number (1-65535) or a port name (at most 15 lowercase letters, digits and '-', with a letter)",
    _port_ok,
),))
PORT_NAME = Prop(max_length=15, rules=(Rule(
    "self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$') && self.matches('[a-z]') && !self.contains('--')",
    "must be a port name: at most 15 lowercase letters, digits and '-', with at least one letter",
    _iana_ok,
),))


def _selector_requirement_rules(ops_with_values: tuple[str, ...], ops_without: tuple[str, ...],
                                single: tuple[str, ...] = ()) -> tuple[Rule, ...]:
    out = [
        Rule(f"!(self.operator in {_cel_list(ops_with_values)}) || (has(self.values) && size(self.values) > 0)",
             f"values must be given when operator is {' or '.join(ops_with_values)}",
             lambda o: o.get("operator") not in ops_with_values or bool(o.get("values")), ".values"),
        Rule(f"!(self.operator in {_cel_list(ops_without)}) || !has(self.values) || size(self.values) == 0",
             f"values must be empty when operator is {' or '.join(ops_without)}",
             lambda o: o.get("operator") not in ops_without or not o.get("values"), ".values"),
    ]
    if single:
        out.append(Rule(f"!(self.operator in {_cel_list(single)}) || (has(self.values) && size(self.values) == 1)",
                        f"exactly one value must be given when operator is {' or '.join(single)}",
                        lambda o: o.get("operator") not in single or len(o.get("values") or []) == 1, ".values"))
    return tuple(out)


def _match_label_keys_rules(has_mismatch: bool) -> tuple[Rule, ...]:
    out = [Rule(
        "!has(self.matchLabelKeys) || size(self.matchLabelKeys) == 0 || has(self.labelSelector)",
        "matchLabelKeys need a labelSelector",
        lambda o: not o.get("matchLabelKeys") or "labelSelector" in o, ".matchLabelKeys",
    ), Rule(
        "!has(self.matchLabelKeys) || !has(self.labelSelector) || self.matchLabelKeys.all(k, "
        "!(has(self.labelSelector.matchLabels) && k in self.labelSelector.matchLabels) && "
        "!(has(self.labelSelector.matchExpressions) && self.labelSelector.matchExpressions.exists(e, e.key == k)))",
        "a key in matchLabelKeys must not also be in labelSelector",
        lambda o: not any(k in ((o.get("labelSelector") or {}).get("matchLabels") or {})
                          or any(e.get("key") == k for e in (o.get("labelSelector") or {}).get("matchExpressions") or [])
                          for k in o.get("matchLabelKeys") or []),
        ".matchLabelKeys",
    )]
    if has_mismatch:
        out.append(Rule(
            "!has(self.mismatchLabelKeys) || size(self.mismatchLabelKeys) == 0 || has(self.labelSelector)",
            "mismatchLabelKeys need a labelSelector",
            lambda o: not o.get("mismatchLabelKeys") or "labelSelector" in o, ".mismatchLabelKeys",
        ))
        out.append(Rule(
            "!has(self.matchLabelKeys) || !has(self.mismatchLabelKeys) || "
            "!self.matchLabelKeys.exists(k, k in self.mismatchLabelKeys)",
            "a key must not be in both matchLabelKeys and mismatchLabelKeys",
            lambda o: not set(o.get("matchLabelKeys") or []) & set(o.get("mismatchLabelKeys") or []),
            ".matchLabelKeys",
        ))
    return tuple(out)


# Resource names a container may request (validateContainerResourceName) and
# the rules between requests and limits (validateResourceRequirements):
# extended resources (example.com/gpu) and hugepages are not overcommitted,
# so requests must equal limits; extended resources come in whole units.
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _extended(name: str) -> bool:
    return not _native(name) and not name.startswith("requests.")


def _overcommit(name: str) -> bool:
    return _native(name) and not name.startswith("hugepages-")


_CEL_EXTENDED = "(k.contains('/') && !k.contains('kubernetes.io/'))"
_CEL_OVERCOMMIT = "(!k.contains('/') || k.contains('kubernetes.io/')) && !k.startsWith('hugepages-')"
_QTY = "quantity(string({}))"


def resource_rules(prefix: str = "") -> tuple[Rule, ...]:
    """Rules on an object with requests and limits (maps of quantities)."""

    def names_ok(o: dict) -> bool:
        return all(("/" in k or k in STANDARD_RESOURCES or k.startswith("hugepages-")) and QUALIFIED_NAME.valid(k)
                   and not k.startswith("requests.")
                   for part in ("requests", "limits") for k in o.get(part) or {})

    def integers_ok(o: dict) -> bool:
        return all(quantity_value(v) == int(quantity_value(v))
                   for part in ("requests", "limits") for k, v in (o.get(part) or {}).items() if _extended(k))

    def equal_ok(o: dict) -> bool:
        lim = o.get("limits") or {}
        return all(k in lim and quantity_value(v) == quantity_value(lim[k])
                   for k, v in (o.get("requests") or {}).items() if not _overcommit(k))

    def below_ok(o: dict) -> bool:
        lim = o.get("limits") or {}
        return all(k not in lim or quantity_value(v) <= quantity_value(lim[k])
                   for k, v in (o.get("requests") or {}).items())

    def pages_ok(o: dict) -> bool:
        for part in ("requests", "limits"):
            for k, v in (o.get(part) or {}).items():
                if k.startswith("hugepages-"):
                    try:
                        page = quantity_value(k[len("hugepages-"):])
                    except ValueError:
                        return False
                    if page <= 0 or page != int(page) or math.ceil(quantity_value(v)) % int(page):
                        return False
        return True

    def huge_ok(o: dict) -> bool:
        names = set(o.get("requests") or {}) | set(o.get("limits") or {})
        return not any(k.startswith("hugepages-") for k in names) or bool(names & {"cpu", "memory"})

    def each(part: str, test: str) -> str:
        return f"(!has(self.{part}) || self.{part}.all(k, {test}))"

    name_test = ("!format.qualifiedName().validate(k).hasValue() && !k.startsWith('requests.') && "
                 "(k.contains('/') || k in ['cpu', 'memory', 'ephemeral-storage'] || k.startsWith('hugepages-'))")
    int_test = "!{ext} || {q}.isInteger()"
    return (
        Rule(f"{each('requests', name_test)} && {each('limits', name_test)}",
             "resource names are cpu, memory, ephemeral-storage, hugepages-<size> or a qualified extended resource "
             "name such as nvidia.com/gpu", names_ok),
        Rule(f"{each('requests', int_test.format(ext=_CEL_EXTENDED, q=_QTY.format('self.requests[k]')))} && "
             f"{each('limits', int_test.format(ext=_CEL_EXTENDED, q=_QTY.format('self.limits[k]')))}",
             f"extended resources (such as nvidia.com/gpu) must be whole numbers in {prefix}requests and limits",
             integers_ok),
        Rule("!has(self.requests) || self.requests.all(k, " + _CEL_OVERCOMMIT + " || (has(self.limits) && k in self.limits && "
             + _QTY.format("self.requests[k]") + ".compareTo(" + _QTY.format("self.limits[k]") + ") == 0))",
             f"{prefix}requests of extended resources (such as nvidia.com/gpu) and hugepages must equal their "
             f"{prefix}limits (they cannot be overcommitted): set limits, or both to the same value",
             equal_ok, ".requests"),
        Rule("!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
             + _QTY.format("self.requests[k]") + ".compareTo(" + _QTY.format("self.limits[k]") + ") <= 0)",
             f"{prefix}requests must be less than or equal to {prefix}limits",
             below_ok, ".requests"),
        Rule(" && ".join(
                 f"(!has(self.{part}) || self.{part}.all(k, !k.startsWith('hugepages-') || "
                 "(isQuantity(k.substring(10)) && quantity(k.substring(10)).isInteger() && "
                 "quantity(k.substring(10)).isGreaterThan(quantity('0')) && "
                 f"{_QTY.format(f'self.{part}[k]')}.isInteger() && "
                 f"{_QTY.format(f'self.{part}[k]')}.asInteger() % quantity(k.substring(10)).asInteger() == 0)))"
                 for part in ("requests", "limits")),
             f"{prefix}hugepages-<size> amounts must be whole multiples of the page size",
             pages_ok),
        Rule("!((has(self.requests) && self.requests.exists(k, k.startsWith('hugepages-'))) || "
             "(has(self.limits) && self.limits.exists(k, k.startsWith('hugepages-')))) || "
             "(has(self.requests) && (('cpu' in self.requests) || ('memory' in self.requests))) || "
             "(has(self.limits) && (('cpu' in self.limits) || ('memory' in self.limits)))",
             "hugepages need a cpu or memory request or limit", huge_ok),
    )


RESOURCE_MAP = Prop(max_properties=16)

_PROBE_COMMON = {
    "initialDelaySeconds": NON_NEGATIVE, "timeoutSeconds": NON_NEGATIVE, "periodSeconds": NON_NEGATIVE,
    "successThreshold": NON_NEGATIVE, "failureThreshold": NON_NEGATIVE,
    "terminationGracePeriodSeconds": Prop(ge=1),
}
HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")

SECCOMP_RULES = (
    Rule("self.type == 'Localhost' ? (has(self.localhostProfile) && size(self.localhostProfile) > 0) : !has(self.localhostProfile)",
         "localhostProfile must be set with type Localhost, and only then",
         lambda o: bool(o.get("localhostProfile")) if o.get("type") == "Localhost" else "localhostProfile" not in o,
         ".localhostProfile"),
)

FACTS: dict[str, Facts] = {
    # ------------------------------------------------------------ env
    "EnvVar": Facts(
        props={"name": Prop(pattern=PRINTABLE_NO_EQUALS, max_length=1024,
                            doc="Any printable ASCII characters except '='.")},
        rules=(Rule("!has(self.valueFrom) || !has(self.value) || size(self.value) == 0",
                    "value and valueFrom are exclusive", lambda o: "valueFrom" not in o or not o.get("value"),
                    ".valueFrom"),),
    ),
    "EnvVarSource": Facts(
        omit=frozenset({"fileKeyRef"}),  # alpha in 1.34 (EnvFiles)
        rules=(exactly_one(("configMapKeyRef", "fieldRef", "resourceFieldRef", "secretKeyRef"), "valueFrom"),),
    ),
    "ConfigMapKeySelector": Facts(
        required=frozenset({"name"}),
        props={"name": NAME_DNS_SUBDOMAIN, "key": Prop(pattern=CONFIG_KEY, max_length=253)},
    ),
    "SecretKeySelector": Facts(
        required=frozenset({"name"}),
        props={"name": NAME_DNS_SUBDOMAIN, "key": Prop(pattern=CONFIG_KEY, max_length=253)},
    ),
    "ObjectFieldSelector": Facts(
        props={
            "apiVersion": enum("v1"),
            "fieldPath": Prop(
                pattern=r"^(metadata\.(name|namespace|uid)|spec\.(nodeName|serviceAccountName)|"
                        r"status\.(hostIP|hostIPs|podIP|podIPs)|" + _SUBSCRIPTS + ")$",
                also=SUBSCRIPT_PREFIX, max_length=400,
                doc="One of metadata.name, metadata.namespace, metadata.uid, metadata.labels['<key>'], "
                    "metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, status.hostIP, "
                    "status.hostIPs, status.podIP, status.podIPs.",
            ),
        },
    ),
    "ResourceFieldSelector": Facts(
        props={
            "resource": Prop(pattern=r"^(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-.+)$", max_length=128),
            "containerName": NAME_DNS_LABEL,
            "divisor": Prop(quantity=True),
        },
        rules=(Rule(
            "!has(self.divisor) || (self.resource.endsWith('.cpu') ? string(self.divisor) in ['1m', '1'] : "
            "string(self.divisor) in ['1', '1k', '1M', '1G', '1T', '1P', '1E', '1Ki', '1Mi', '1Gi', '1Ti', '1Pi', '1Ei'])",
            "divisor must be 1m or 1 for cpu, and 1 or a power of 1000 or 1024 (1k, 1Ki, ..., 1Ei) otherwise",
            lambda o: "divisor" not in o or str(o["divisor"]) in (
                ("1m", "1") if o.get("resource", "").endswith(".cpu") else
                tuple("1" + s for s in ("", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))),
            ".divisor",
        ),),
    ),
    "EnvFromSource": Facts(
        props={"prefix": Prop(pattern=PRINTABLE_NO_EQUALS, max_length=1024)},
        rules=(exactly_one(("configMapRef", "secretRef"), "envFrom"),),
    ),
    "ConfigMapEnvSource": Facts(required=frozenset({"name"}), props={"name": NAME_DNS_SUBDOMAIN}),
    "SecretEnvSource": Facts(required=frozenset({"name"}), props={"name": NAME_DNS_SUBDOMAIN}),
    # ------------------------------------------------------ scheduling
    "Toleration": Facts(
        props={
            "key": Prop(fmt=QUALIFIED_NAME, max_length=317, empty_ok=True),
            "operator": enum("Equal", "Exists"),
            "effect": enum("", "NoSchedule", "PreferNoSchedule", "NoExecute"),
            "value": Prop(max_length=63),
        },
        rules=(
            Rule("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                 "tolerationSeconds is only allowed with effect NoExecute",
                 lambda o: "tolerationSeconds" not in o or o.get("effect") == "NoExecute", ".tolerationSeconds"),
            Rule("(has(self.key) && size(self.key) > 0) || (has(self.operator) && self.operator == 'Exists')",
                 "operator must be Exists when key is empty (which matches every taint)",
                 lambda o: bool(o.get("key")) or o.get("operator") == "Exists", ".operator"),
            Rule("!has(self.operator) || self.operator != 'Exists' || !has(self.value) || size(self.value) == 0",
                 "value must be empty when operator is Exists",
                 lambda o: o.get("operator") != "Exists" or not o.get("value"), ".value"),
            Rule(f"(has(self.operator) && self.operator == 'Exists') || !has(self.value) || !{LABEL_VALUE.cel_invalid('self.value')}",
                 f"value must be {LABEL_VALUE.what}",
                 lambda o: o.get("operator") == "Exists" or LABEL_VALUE.valid(o.get("value", "")), ".value"),
        ),
    ),
    "NodeSelector": Facts(props={"nodeSelectorTerms": Prop(min_items=1, max_items=8)}),
    "NodeSelectorTerm": Facts(props={"matchExpressions": Prop(max_items=16),
                                     "matchFields": Prop(max_items=4, variant="field")}),
    "NodeSelectorRequirement": Facts(
        props={"key": QNAME, "operator": enum("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"),
               "values": LABEL_VALUES},
        rules=_selector_requirement_rules(("In", "NotIn"), ("Exists", "DoesNotExist"), ("Gt", "Lt")),
    ),
    "PreferredSchedulingTerm": Facts(props={"weight": Prop(ge=1, le=100)}),
    "WeightedPodAffinityTerm": Facts(props={"weight": Prop(ge=1, le=100)}),
    "PodAffinityTerm": Facts(
        props={"topologyKey": QNAME, "namespaces": Prop(max_items=16, items=Prop(fmt=DNS1123_LABEL)),
               "matchLabelKeys": Prop(max_items=16, items=QNAME), "mismatchLabelKeys": Prop(max_items=16, items=QNAME)},
        rules=_match_label_keys_rules(True),
    ),
    "PodAffinity": Facts(props={"requiredDuringSchedulingIgnoredDuringExecution": Prop(max_items=8),
                                "preferredDuringSchedulingIgnoredDuringExecution": Prop(max_items=8)}),
    "PodAntiAffinity": Facts(props={"requiredDuringSchedulingIgnoredDuringExecution": Prop(max_items=8),
                                    "preferredDuringSchedulingIgnoredDuringExecution": Prop(max_items=8)}),
    "NodeAffinity": Facts(props={"preferredDuringSchedulingIgnoredDuringExecution": Prop(max_items=8)}),
    "LabelSelector": Facts(
        props={"matchLabels": Prop(keys=QUALIFIED_NAME, values=LABEL_VALUE, max_properties=16),
               "matchExpressions": Prop(max_items=16)},
    ),
    "LabelSelectorRequirement": Facts(
        props={"key": QNAME, "operator": enum("In", "NotIn", "Exists", "DoesNotExist"), "values": LABEL_VALUES},
        rules=_selector_requirement_rules(("In", "NotIn"), ("Exists", "DoesNotExist")),
    ),
    "TopologySpreadConstraint": Facts(
        props={
            "maxSkew": Prop(ge=1, le=INT32[1]),
            "topologyKey": QNAME,
            "whenUnsatisfiable": enum("DoNotSchedule", "ScheduleAnyway"),
            "minDomains": Prop(ge=1, le=INT32[1]),
            "nodeAffinityPolicy": enum("Honor", "Ignore"),
            "nodeTaintsPolicy": enum("Honor", "Ignore"),
            "matchLabelKeys": Prop(max_items=16, items=QNAME),
            "labelSelector": Prop(doc="Default: this model's pods (kubento fills it in when left out)."),
        },
        rules=(
            Rule("!has(self.minDomains) || self.whenUnsatisfiable == 'DoNotSchedule'",
                 "minDomains is only allowed with whenUnsatisfiable DoNotSchedule",
                 lambda o: "minDomains" not in o or o.get("whenUnsatisfiable") == "DoNotSchedule", ".minDomains"),
        ) + _match_label_keys_rules(False)[1:],  # kubento provides a labelSelector when left out
    ),
    # ------------------------------------------------------ containers
    "Container": Facts(
        omit=frozenset({"volumeDevices", "restartPolicyRules"}),  # block devices: not offered; rules: alpha in 1.34
        props={
            "name": NAME_DNS_LABEL,
            "image": Prop(pattern=r"^\S+$", max_length=1024),
            "imagePullPolicy": enum("", "Always", "Never", "IfNotPresent"),
            "terminationMessagePolicy": enum("", "File", "FallbackToLogsOnError"),
            "ports": Prop(max_items=32), "env": Prop(max_items=256), "envFrom": Prop(max_items=32),
            "volumeMounts": Prop(max_items=64), "resizePolicy": Prop(max_items=2),
            "command": Prop(max_items=256), "args": Prop(max_items=256),
        },
        rules=(
            Rule("!has(self.ports) || self.ports.all(p, !has(p.name) || self.ports.filter(q, has(q.name) && q.name == p.name).size() == 1)",
                 "port names must be unique in a container",
                 lambda o: len([p["name"] for p in o.get("ports", []) if "name" in p]) == len({p["name"] for p in o.get("ports", []) if "name" in p}),
                 ".ports"),
            Rule("!has(self.livenessProbe) || !has(self.livenessProbe.successThreshold) || self.livenessProbe.successThreshold <= 1",
                 "a liveness probe's successThreshold must be 1",
                 lambda o: (o.get("livenessProbe") or {}).get("successThreshold", 1) <= 1, ".livenessProbe"),
            Rule("!has(self.startupProbe) || !has(self.startupProbe.successThreshold) || self.startupProbe.successThreshold <= 1",
                 "a startup probe's successThreshold must be 1",
                 lambda o: (o.get("startupProbe") or {}).get("successThreshold", 1) <= 1, ".startupProbe"),
            Rule("!has(self.readinessProbe) || !has(self.readinessProbe.terminationGracePeriodSeconds)",
                 "a readiness probe has no terminationGracePeriodSeconds",
                 lambda o: "terminationGracePeriodSeconds" not in (o.get("readinessProbe") or {}), ".readinessProbe"),
        ),
    ),
    "ContainerPort": Facts(
        props={"containerPort": PORT, "hostPort": Prop(ge=0, le=65535), "name": PORT_NAME,
               "protocol": enum("TCP", "UDP", "SCTP"), "hostIP": Prop(max_length=64)},
    ),
    "Probe": Facts(props=dict(_PROBE_COMMON), rules=(exactly_one(HANDLERS, "the probe's handler"),)),
    "LifecycleHandler": Facts(rules=(exactly_one(LIFECYCLE_HANDLERS, "the handler"),)),
    "Lifecycle": Facts(omit=frozenset({"stopSignal"})),  # needs spec.os, alpha in 1.34
    "ExecAction": Facts(required=frozenset({"command"}), props={"command": Prop(min_items=1)}),
    "HTTPGetAction": Facts(props={"port": PORT_OR_NAME, "scheme": enum("", "HTTP", "HTTPS")}),
    "HTTPHeader": Facts(props={"name": Prop(pattern=r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$", max_length=256)}),
    "TCPSocketAction": Facts(props={"port": PORT_OR_NAME}),
    "GRPCAction": Facts(props={"port": PORT}),
    "SleepAction": Facts(props={"seconds": Prop(ge=0, le=INT32[1])}),
    "ResourceRequirements": Facts(
        omit=frozenset({"claims"}),  # needs pod resourceClaims (DRA), not offered
        props={"requests": RESOURCE_MAP, "limits": RESOURCE_MAP},
        rules=resource_rules(),
    ),
    "ContainerResizePolicy": Facts(props={"resourceName": enum("cpu", "memory"),
                                          "restartPolicy": enum("NotRequired", "RestartContainer")}),
    "VolumeMount": Facts(
        props={
            "name": NAME_DNS_LABEL,
            "mountPath": Prop(pattern=ABSOLUTE_PATH, max_length=1024, doc="An absolute path in the container."),
            "subPath": Prop(pattern=DESCENDING_PATH, max_length=1024),
            "subPathExpr": Prop(pattern=DESCENDING_PATH, max_length=1024),
            "mountPropagation": enum("None", "HostToContainer"),  # Bidirectional needs a privileged container
            "recursiveReadOnly": enum("Disabled", "IfPossible", "Enabled"),
        },
        rules=(
            Rule("!has(self.subPath) || !has(self.subPathExpr) || size(self.subPath) == 0 || size(self.subPathExpr) == 0",
                 "subPath and subPathExpr are exclusive",
                 lambda o: not (o.get("subPath") and o.get("subPathExpr")), ".subPathExpr"),
            Rule("!has(self.recursiveReadOnly) || self.recursiveReadOnly == 'Disabled' || "
                 "((has(self.readOnly) && self.readOnly) && (!has(self.mountPropagation) || self.mountPropagation == 'None'))",
                 "recursiveReadOnly needs readOnly true (and mountPropagation None)",
                 lambda o: o.get("recursiveReadOnly", "Disabled") == "Disabled"
                 or (o.get("readOnly") is True and o.get("mountPropagation", "None") == "None"),
                 ".recursiveReadOnly"),
        ),
    ),
    "SecurityContext": Facts(
        omit=frozenset({"windowsOptions"}),
        props={"runAsUser": NON_NEGATIVE, "runAsGroup": NON_NEGATIVE, "procMount": enum("Default", "Unmasked")},
        rules=(
            Rule("!(has(self.privileged) && self.privileged) || !has(self.allowPrivilegeEscalation) || self.allowPrivilegeEscalation",
                 "allowPrivilegeEscalation false and privileged true are contradictory",
                 lambda o: not o.get("privileged") or o.get("allowPrivilegeEscalation", True), ".allowPrivilegeEscalation"),
            Rule("!has(self.capabilities) || !has(self.capabilities.add) || !('CAP_SYS_ADMIN' in self.capabilities.add) "
                 "|| !has(self.allowPrivilegeEscalation) || self.allowPrivilegeEscalation",
                 "capability CAP_SYS_ADMIN needs allowPrivilegeEscalation",
                 lambda o: "CAP_SYS_ADMIN" not in ((o.get("capabilities") or {}).get("add") or [])
                 or o.get("allowPrivilegeEscalation", True), ".allowPrivilegeEscalation"),
        ),
    ),
    "PodSecurityContext": Facts(
        omit=frozenset({"windowsOptions"}),
        props={
            "runAsUser": NON_NEGATIVE, "runAsGroup": NON_NEGATIVE, "fsGroup": NON_NEGATIVE,
            "supplementalGroups": Prop(max_items=32, items=Prop(ge=0, le=INT32[1])),
            "fsGroupChangePolicy": enum("OnRootMismatch", "Always"),
            "seLinuxChangePolicy": enum("Recursive"),  # MountOption needs the SELinuxMount gate (off in 1.34)
            "supplementalGroupsPolicy": enum("Merge", "Strict"),
            "sysctls": Prop(max_items=32, rules=(Rule(
                "self.all(s, self.exists_one(t, t.name == s.name))", "sysctl names must be unique",
                lambda l: len({x["name"] for x in l}) == len(l)),)),
        },
    ),
    "Sysctl": Facts(props={"name": Prop(pattern=r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
                                        max_length=253)}),
    "SeccompProfile": Facts(props={"type": enum("RuntimeDefault", "Unconfined", "Localhost"),
                                   "localhostProfile": Prop(pattern=DESCENDING_PATH, max_length=4095,
                                                            doc="A relative path under the kubelet's seccomp directory.")},
                            rules=SECCOMP_RULES),
    "AppArmorProfile": Facts(props={"type": enum("RuntimeDefault", "Unconfined", "Localhost"),
                                    "localhostProfile": Prop(pattern=r"^\S(.*\S)?$", max_length=4095)},
                             rules=SECCOMP_RULES),
    "Capabilities": Facts(props={"add": Prop(max_items=64), "drop": Prop(max_items=64)}),
    # --------------------------------------------------------- volumes
    "Volume": Facts(
        only=frozenset({"name", "persistentVolumeClaim", "configMap", "secret", "csi", "emptyDir", "ephemeral",
                        "projected", "downwardAPI", "nfs", "hostPath"}),
        props={"name": NAME_DNS_LABEL},
        rules=(exactly_one(("persistentVolumeClaim", "configMap", "secret", "csi", "emptyDir", "ephemeral",
                            "projected", "downwardAPI", "nfs", "hostPath"), "the volume's source"),),
        doc="Sources offered: persistentVolumeClaim, configMap, secret, csi, emptyDir, ephemeral, projected, "
            "downwardAPI, nfs, hostPath (the deprecated in-tree cloud disks are reached through CSI).",
    ),
    "PersistentVolumeClaimVolumeSource": Facts(props={"claimName": Prop(fmt=DNS1123_SUBDOMAIN, max_length=253)}),
    "ConfigMapVolumeSource": Facts(required=frozenset({"name"}),
                                   props={"name": NAME_DNS_SUBDOMAIN, "defaultMode": Prop(ge=0, le=0o777),
                                          "items": Prop(max_items=64)}),
    "SecretVolumeSource": Facts(required=frozenset({"secretName"}),
                                props={"secretName": NAME_DNS_SUBDOMAIN, "defaultMode": Prop(ge=0, le=0o777),
                                       "items": Prop(max_items=64)}),
    "KeyToPath": Facts(props={"key": Prop(pattern=CONFIG_KEY, max_length=253), "mode": Prop(ge=0, le=0o777),
                              "path": Prop(pattern=NONRESERVED_PATH, max_length=1024)}),
    "CSIVolumeSource": Facts(props={"driver": Prop(fmt=DNS1123_SUBDOMAIN, max_length=63),
                                    "volumeAttributes": Prop(max_properties=64)}),
    "LocalObjectReference": Facts(required=frozenset({"name"}), props={"name": NAME_DNS_SUBDOMAIN}),
    "EmptyDirVolumeSource": Facts(props={"medium": Prop(pattern=r"^(|Memory|HugePages|HugePages-.+)$", max_length=64),
                                         "sizeLimit": Prop(quantity=True)}),
    "EphemeralVolumeSource": Facts(required=frozenset({"volumeClaimTemplate"})),
    "PersistentVolumeClaimTemplate": Facts(),
    "ObjectMeta": Facts(only=frozenset({"labels", "annotations"}),
                        props={"labels": Prop(keys=QUALIFIED_NAME, values=LABEL_VALUE, max_properties=64),
                               "annotations": Prop(keys=QUALIFIED_NAME, max_properties=64)}),
    "PersistentVolumeClaimSpec": Facts(
        only=frozenset({"accessModes", "resources", "storageClassName", "volumeMode"}),
        required=frozenset({"accessModes", "resources"}),
        props={"accessModes": Prop(min_items=1, max_items=4, items=enum("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")),
               "storageClassName": NAME_DNS_SUBDOMAIN, "volumeMode": enum("Filesystem", "Block")},
        rules=(Rule("!('ReadWriteOncePod' in self.accessModes) || size(self.accessModes) == 1",
                    "ReadWriteOncePod cannot be combined with other access modes",
                    lambda o: "ReadWriteOncePod" not in o.get("accessModes", []) or len(o["accessModes"]) == 1,
                    ".accessModes"),),
    ),
    "VolumeResourceRequirements": Facts(
        required=frozenset({"requests"}),
        props={"requests": Prop(max_properties=1), "limits": Prop(max_properties=1)},
        rules=(Rule("'storage' in self.requests && self.requests.all(k, k == 'storage') && "
                    "(!has(self.limits) || self.limits.all(k, k == 'storage'))",
                    "the claim needs requests.storage (and only storage)",
                    lambda o: set(o.get("requests") or {}) == {"storage"} and set(o.get("limits") or {}) <= {"storage"},
                    ".requests"),
               Rule("quantity(string(self.requests['storage'])).isGreaterThan(quantity('0'))",
                    "requests.storage must be greater than 0",
                    lambda o: quantity_value((o.get("requests") or {}).get("storage", 0)) > 0, ".requests"),),
    ),
    "ProjectedVolumeSource": Facts(props={"defaultMode": Prop(ge=0, le=0o777), "sources": Prop(max_items=8)}),
    "VolumeProjection": Facts(
        only=frozenset({"configMap", "secret", "downwardAPI", "serviceAccountToken"}),
        rules=(exactly_one(("configMap", "secret", "downwardAPI", "serviceAccountToken"), "the projection's source"),),
    ),
    "ConfigMapProjection": Facts(required=frozenset({"name"}), props={"name": NAME_DNS_SUBDOMAIN, "items": Prop(max_items=64)}),
    "SecretProjection": Facts(required=frozenset({"name"}), props={"name": NAME_DNS_SUBDOMAIN, "items": Prop(max_items=64)}),
    "DownwardAPIProjection": Facts(props={"items": Prop(max_items=16)}),
    "ServiceAccountTokenProjection": Facts(
        props={"path": Prop(pattern=NONRESERVED_PATH, max_length=1024), "expirationSeconds": Prop(ge=600, le=2**32)},
    ),
    "DownwardAPIVolumeSource": Facts(props={"defaultMode": Prop(ge=0, le=0o777), "items": Prop(max_items=16)}),
    "DownwardAPIVolumeFile": Facts(
        props={"path": Prop(pattern=NONRESERVED_PATH, max_length=1024), "mode": Prop(ge=0, le=0o777),
               "fieldRef": Prop(variant="volume"), "resourceFieldRef": Prop(variant="volume")},
        rules=(exactly_one(("fieldRef", "resourceFieldRef"), "the file's source"),),
    ),
    "NFSVolumeSource": Facts(props={"server": Prop(min_length=1, max_length=253),
                                    "path": Prop(pattern=ABSOLUTE_PATH, max_length=1024)}),
    "HostPathVolumeSource": Facts(props={
        "path": Prop(pattern=DESCENDING_PATH.replace("^", "^/?", 1), max_length=1024),
        "type": enum("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"),
    }),
    # ------------------------------------------------------------- pod
    "HostAlias": Facts(props={"ip": Prop(max_length=45, rules=(Rule("isIP(self)", "must be an IP address",
                                                                      lambda v: _is_ip(v)),)),
                              "hostnames": Prop(max_items=32, items=Prop(fmt=DNS1123_SUBDOMAIN, max_length=253))}),
    "PodDNSConfig": Facts(props={
        "nameservers": Prop(max_items=3, items=Prop(max_length=45, rules=(Rule("isIP(self)", "must be an IP address",
                                                                              lambda v: _is_ip(v)),))),
        "searches": Prop(max_items=32, items=Prop(fmt=DNS1123_SUBDOMAIN, max_length=253)),
        "options": Prop(max_items=32),
    }),
    "PodDNSConfigOption": Facts(required=frozenset({"name"}), props={"name": Prop(min_length=1, max_length=253)}),
}


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# Variants: the same Kubernetes type with rules that depend on where it is.
# The names kubento gives the parts of the pod it owns.
MODEL_CONTAINER = "bento"
FETCH_CONTAINER = "fetch-bento"
MODEL_PORT_NAME = "http"
SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"

# The model container's fields kubento owns, and where to set them instead.
OWNED_CONTAINER_FIELDS = {
    "image": "set spec.bento (or spec.runtimeImage)",
    "command": "kubento runs the bento",
    "args": "kubento runs the bento",
    "ports": "set spec.port",
    "env": "set spec.env",
    "envFrom": "set spec.envFrom",
    "resources": "set spec.resources",
    "volumeMounts": "set spec.volumeMounts",
    "startupProbe": "set spec.startupTimeoutSeconds",
    "readinessProbe": "kubento probes /readyz",
    "livenessProbe": "kubento probes /livez",
    "lifecycle": "kubento drains the pod before it stops (spec.terminationGracePeriodSeconds)",
    "restartPolicy": "only init containers have one",
}


def _owned(name: str, hint: str) -> Rule:
    return Rule(f"self.name != '{MODEL_CONTAINER}' || !has(self.{name})",
                f"the model container's {name} is kubento's: {hint}",
                lambda o, n=name: o.get("name") != MODEL_CONTAINER or n not in o, f".{name}")


_IMAGE_REQUIRED = Rule(f"self.name == '{MODEL_CONTAINER}' || (has(self.image) && size(self.image) > 0)",
                       "an added container needs an image",
                       lambda o: o.get("name") == MODEL_CONTAINER or bool(o.get("image")), ".image")
_INIT_PROBES = ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe")

# Variants: the same Kubernetes type with rules that depend on where it is.
VARIANTS: dict[str, Facts] = {
    # podOverlay.containers: sidecars, and the model container ("bento") for
    # the few fields kubento leaves to the user.
    "Container@sidecar": Facts(
        props={"securityContext": Prop(variant="overlay")},
        rules=tuple(_owned(n, h) for n, h in OWNED_CONTAINER_FIELDS.items()) + (
            _IMAGE_REQUIRED,
            Rule(f"self.name != '{FETCH_CONTAINER}'", f"{FETCH_CONTAINER} is kubento's init container's name",
                 lambda o: o.get("name") != FETCH_CONTAINER, ".name"),
            Rule("!has(self.restartPolicy)",
                 "restartPolicy is for initContainers only (restartPolicy: Always there makes a native sidecar)",
                 lambda o: "restartPolicy" not in o, ".restartPolicy"),
            Rule(f"!has(self.ports) || !self.ports.exists(p, has(p.name) && p.name == '{MODEL_PORT_NAME}')",
                 f"the port name {MODEL_PORT_NAME} is the model's (the Service targets it)",
                 lambda o: not any(p.get("name") == MODEL_PORT_NAME for p in o.get("ports") or []), ".ports"),
        ),
    ),
    # A node field selector: only metadata.name, In or NotIn one node name
    # (ValidateNodeFieldSelectorRequirement).
    "NodeSelectorRequirement@field": Facts(
        required=frozenset({"values"}),
        props={"key": enum("metadata.name"), "operator": enum("In", "NotIn"),
               "values": Prop(min_items=1, max_items=1, items=Prop(fmt=DNS1123_SUBDOMAIN))},
    ),
    # downwardAPI volume files: other fields than environment variables.
    "ObjectFieldSelector@volume": Facts(props={"fieldPath": Prop(
        pattern=r"^(metadata\.(name|namespace|uid|labels|annotations)|" + _SUBSCRIPTS + ")$",
        also=SUBSCRIPT_PREFIX, max_length=400,
        doc="One of metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, "
            "metadata.labels['<key>'], metadata.annotations['<key>'].",
    )}),
    "ResourceFieldSelector@volume": Facts(required=frozenset({"containerName"})),
    # A container's securityContext in the overlay is merged over kubento's
    # restricted one, whose allowPrivilegeEscalation is false.
    "SecurityContext@overlay": Facts(
        rules=(
            Rule("!(has(self.privileged) && self.privileged) || (has(self.allowPrivilegeEscalation) && self.allowPrivilegeEscalation)",
                 "privileged needs allowPrivilegeEscalation: true (kubento's default is false)",
                 lambda o: not o.get("privileged") or o.get("allowPrivilegeEscalation") is True, ".allowPrivilegeEscalation"),
            Rule("!has(self.capabilities) || !has(self.capabilities.add) || !('CAP_SYS_ADMIN' in self.capabilities.add) "
                 "|| (has(self.allowPrivilegeEscalation) && self.allowPrivilegeEscalation)",
                 "capability CAP_SYS_ADMIN needs allowPrivilegeEscalation: true (kubento's default is false)",
                 lambda o: "CAP_SYS_ADMIN" not in ((o.get("capabilities") or {}).get("add") or [])
                 or o.get("allowPrivilegeEscalation") is True, ".allowPrivilegeEscalation"),
        ),
    ),
    # podOverlay.initContainers: run after kubento's (the bento fetch).
    "Container@init": Facts(
        props={"securityContext": Prop(variant="overlay"),
               "restartPolicy": Prop(enum=("Always",), doc="Always: a native sidecar (starts before the model and "
                                                           "runs beside it)."),
               "resizePolicy": Prop(max_items=0)},
        rules=(
            Rule(f"!(self.name in ['{MODEL_CONTAINER}', '{FETCH_CONTAINER}'])",
                 f"{MODEL_CONTAINER} and {FETCH_CONTAINER} are kubento's container names",
                 lambda o: o.get("name") not in (MODEL_CONTAINER, FETCH_CONTAINER), ".name"),
            Rule("has(self.image) && size(self.image) > 0", "an init container needs an image",
                 lambda o: bool(o.get("image")), ".image"),
        ) + tuple(Rule(f"!has(self.{n}) || (has(self.restartPolicy) && self.restartPolicy == 'Always')",
                       f"{n} is only allowed on init containers with restartPolicy Always (native sidecars)",
                       lambda o, n=n: n not in o or o.get("restartPolicy") == "Always", f".{n}")
                  for n in _INIT_PROBES),
    ),
    # podOverlay: what the generated pod may be given beyond kubento's fields.
    "PodSpec@overlay": Facts(
        only=frozenset({"containers", "initContainers", "securityContext", "hostAliases", "dnsPolicy", "dnsConfig",
                        "enableServiceLinks", "automountServiceAccountToken", "shareProcessNamespace", "hostUsers",
                        "schedulerName"}),
        optional=frozenset({"containers"}),
        props={
            "containers": Prop(variant="sidecar", max_items=16,
                               doc="Merged by name into the pod's containers: new names are added (sidecars); "
                                   f"'{MODEL_CONTAINER}' is the model container, of which only securityContext, "
                                   "imagePullPolicy, workingDir, terminationMessagePath, terminationMessagePolicy, "
                                   "resizePolicy, stdin, stdinOnce and tty may be set. Added containers start from "
                                   "the model container's restricted securityContext."),
            "initContainers": Prop(variant="init", max_items=16,
                                   doc="Added after kubento's own (which fetches an archive bento)."),
            "dnsPolicy": enum("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"),
            "schedulerName": NAME_DNS_SUBDOMAIN,
            "hostAliases": Prop(max_items=32),
        },
        rules=(
            Rule("!has(self.dnsPolicy) || self.dnsPolicy != 'None' || (has(self.dnsConfig) && has(self.dnsConfig.nameservers) "
                 "&& size(self.dnsConfig.nameservers) > 0)",
                 "dnsPolicy None needs dnsConfig.nameservers",
                 lambda o: o.get("dnsPolicy") != "None" or bool((o.get("dnsConfig") or {}).get("nameservers")),
                 ".dnsConfig"),
            Rule("(has(self.hostUsers) && !self.hostUsers) || ("
                 + " && ".join(f"(!has(self.{l}) || self.{l}.all(c, !has(c.securityContext) || "
                               "!has(c.securityContext.procMount) || c.securityContext.procMount != 'Unmasked'))"
                               for l in ("containers", "initContainers")) + ")",
                 "procMount Unmasked needs hostUsers: false",
                 lambda o: o.get("hostUsers") is False or not any(
                     (c.get("securityContext") or {}).get("procMount") == "Unmasked"
                     for c in (o.get("containers") or []) + (o.get("initContainers") or [])),
                 ".hostUsers"),
            Rule("!has(self.containers) || !has(self.initContainers) || "
                 "!self.initContainers.exists(i, self.containers.exists(c, c.name == i.name))",
                 "container names must be unique across containers and initContainers",
                 lambda o: not ({c["name"] for c in o.get("containers") or []}
                                & {c["name"] for c in o.get("initContainers") or []}),
                 ".initContainers"),
        ),
        doc="An overlay merged into the pod kubento generates (a strategic merge, like kubectl patch).",
    ),
}


# ------------------------------------------------------------ generation

CORE = "io.k8s.api.core.v1."
SPECIAL = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "int-or-string",
}

# A quantity in a Kubernetes type goes out as a string: the Python client's
# models (which check every manifest kubento builds) type quantities as
# strings, and Kubernetes reads "1" as it reads 1 (the fuzzer found a pass
# crashing on emptyDir.sizeLimit: 99999).
K8sQuantity = Annotated[Quantity, PlainSerializer(str, return_type=str)]

IntOrString = Annotated[
    Union[int, str],
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}),
]


class K8sModel(Model):
    """Base of the generated Kubernetes types (aliases are the OpenAPI's names)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=None)


def short_name(ref: str) -> str:
    return ref.rsplit(".", 1)[-1]


def schema_ref(prop: dict[str, Any]) -> Optional[str]:
    if "$ref" in prop:
        return prop["$ref"].split("/")[-1]
    for sub in prop.get("allOf") or []:
        if "$ref" in sub:
            return sub["$ref"].split("/")[-1]
    return None


def _full_name(short: str) -> str:
    for name in SCHEMAS:
        if name.endswith("." + short):
            return name
    raise KeyError(short)


def _check_rules(rules: tuple[Rule, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        def wire_of(v: Any) -> Any:
            return v.wire() if isinstance(v, Model) else v
        wire = [wire_of(v) for v in value] if isinstance(value, list) else (
            {k: wire_of(v) for k, v in value.items()} if isinstance(value, dict) else wire_of(value))
        for r in rules:
            if not r.ok(wire):
                raise ValueError(r.message)
        return value
    return check


def _scalar(schema: dict[str, Any], prop: Prop) -> tuple[Any, dict[str, Any], list[Any]]:
    """Annotation, Field kwargs and Annotated metadata of a scalar."""
    kind = schema.get("type")
    kwargs: dict[str, Any] = {}
    meta: list[Any] = []
    extra_rules: list[dict[str, str]] = []
    if kind == "string":
        ann: Any = str
        if prop.enum is not None:
            ann = Literal[prop.enum]  # type: ignore[valid-type]
        for key in ("pattern", "min_length", "max_length"):
            if getattr(prop, key) is not None:
                kwargs[key] = getattr(prop, key)
        if prop.fmt is not None:
            kwargs["pattern"] = f"^(|{prop.fmt.pattern[1:-1]})$" if prop.empty_ok else prop.fmt.pattern
            kwargs["max_length"] = min(prop.max_length or prop.fmt.max_length, prop.fmt.max_length)
        also = prop.also or (prop.fmt.also if prop.fmt is not None else None)
        if also:  # a second pattern: allOf in the schema, a validator in Python
            kwargs["json_schema_extra"] = {"allOf": [{"pattern": also}]}
            what = f"must be {prop.fmt.what}" if prop.fmt is not None else f"must match {also}"
            meta.append(AfterValidator(_check_rules((Rule("", what, lambda v, a=also: re.fullmatch(a[1:-1], v) is not None),))))
    elif kind == "integer":
        ann = int
        lo, hi = INT32 if schema.get("format") == "int32" else (None, None)
        kwargs["ge"] = prop.ge if prop.ge is not None else lo
        kwargs["le"] = prop.le if prop.le is not None else hi
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
    elif kind == "boolean":
        ann = bool
    elif kind == "number":
        ann = float
    else:
        raise ValueError(f"unexpected scalar schema {schema}")
    if prop.rules:
        meta.append(AfterValidator(_check_rules(prop.rules)))
        extra_rules.extend(r.entry() for r in prop.rules)
    if extra_rules:
        kwargs.setdefault("json_schema_extra", {})["x-kubernetes-validations"] = extra_rules
    if meta:
        # pydantic leaves a field's own constraints out of its schema once a
        # validator follows them: state them in the schema as well.
        names = {"pattern": "pattern", "max_length": "maxLength", "min_length": "minLength",
                 "ge": "minimum", "le": "maximum"}
        kwargs.setdefault("json_schema_extra", {}).update({names[k]: v for k, v in kwargs.items() if k in names})
    return ann, kwargs, meta


def _item_type(schema: dict[str, Any], prop: Prop, ctx: str) -> Any:
    """The annotation of a list item or map value."""
    ref = schema_ref(schema)
    if ref in SPECIAL:
        return K8sQuantity if SPECIAL[ref] == "quantity" else IntOrString
    if ref:
        return k8s_model(short_name(ref), prop.variant)
    if schema.get("type") in ("string", "integer", "boolean", "number"):
        ann, kwargs, meta = _scalar(schema, prop)
        return Annotated[(ann, Field(**kwargs), *meta)] if kwargs or meta else ann
    raise ValueError(f"{ctx}: unexpected item schema {schema}")


def _field(owner: str, name: str, schema: dict[str, Any], prop: Prop, required: bool,
           list_keys_default: Optional[str]) -> tuple[Any, Any]:
    """(annotation, FieldInfo) of one property."""
    description = " ".join((schema.get("description") or "").split())
    if prop.doc:
        description = f"{description} {prop.doc}".strip()
    kwargs: dict[str, Any] = {"alias": name}
    if description:
        kwargs["description"] = description
    extra: dict[str, Any] = {}
    meta: list[Any] = []
    ref = schema_ref(schema)
    kind = schema.get("type")
    if ref in SPECIAL or prop.quantity:
        ann: Any = K8sQuantity if (prop.quantity or SPECIAL.get(ref) == "quantity") else IntOrString
        if prop.max_length is not None:
            extra["maxLength"] = prop.max_length
            meta.append(AfterValidator(_check_rules((Rule("", f"at most {prop.max_length} characters",
                                                          lambda v, n=prop.max_length: not isinstance(v, str) or len(v) <= n),))))
        if prop.rules:
            meta.append(AfterValidator(_check_rules(prop.rules)))
            extra["x-kubernetes-validations"] = [r.entry() for r in prop.rules]
    elif ref:
        ann = k8s_model(short_name(ref), prop.variant)
        if prop.rules:
            meta.append(AfterValidator(_check_rules(prop.rules)))
            extra["x-kubernetes-validations"] = [r.entry() for r in prop.rules]
    elif kind == "array":
        item = _item_type(schema["items"], prop.items or Prop(variant=prop.variant), f"{owner}.{name}")
        ann = list[item]  # type: ignore[valid-type]
        if prop.min_items is not None:
            kwargs["min_length"] = prop.min_items
        kwargs["max_length"] = prop.max_items if prop.max_items is not None else 128
        for key in ("x-kubernetes-list-type", "x-kubernetes-list-map-keys"):
            if key in schema:
                extra[key] = schema[key]
        if prop.rules:
            meta.append(AfterValidator(_check_rules(prop.rules)))
            extra["x-kubernetes-validations"] = [r.entry() for r in prop.rules]
            extra["maxItems"] = kwargs["max_length"]  # (dropped by pydantic once a validator follows)
            if "min_length" in kwargs:
                extra["minItems"] = kwargs["min_length"]
    elif kind == "object" and "additionalProperties" in schema:
        value = _item_type(schema["additionalProperties"], Prop(), f"{owner}.{name}")
        if prop.values is not None:
            value = Annotated[str, Field(max_length=prop.values.max_length, pattern=prop.values.pattern)]
        elif value is str:
            value = Annotated[str, Field(max_length=4096)]
        ann = dict[str, value]  # type: ignore[valid-type]
        extra["maxProperties"] = prop.max_properties if prop.max_properties is not None else 64
        rules = list(prop.rules)
        if prop.keys is not None:
            also = f" && k.matches(r'{prop.keys.also}')" if prop.keys.also else ""
            rules.append(Rule(
                f"self.all(k, size(k) <= {prop.keys.max_length} && k.matches(r'{prop.keys.pattern}'){also})",
                f"keys must be {prop.keys.what}",
                lambda m, f=prop.keys: all(f.matches(k) for k in m),
            ))
        entries = [r.entry() for r in rules]
        if entries:
            extra["x-kubernetes-validations"] = entries
        if rules:
            meta.append(AfterValidator(_check_rules(tuple(rules))))
        kwargs["max_length"] = extra["maxProperties"]
    else:
        ann, scalar_kwargs, meta = _scalar(schema, prop)
        extra.update(scalar_kwargs.pop("json_schema_extra", {}))
        kwargs.update(scalar_kwargs)
    if extra:
        kwargs["json_schema_extra"] = extra
    if meta:
        ann = Annotated[(ann, *meta)]
    if required:
        return ann, Field(**kwargs)
    if list_keys_default is not None:
        return ann, Field(default=list_keys_default, **kwargs)
    return Optional[ann], Field(default=None, **kwargs)


def _list_map_keys(short: str) -> set[str]:
    """Properties of ``short`` that some list uses as a map key (the CRD needs them required or defaulted)."""
    keys: set[str] = set()
    for schema in SCHEMAS.values():
        for prop in (schema.get("properties") or {}).values():
            if prop.get("x-kubernetes-list-type") == "map" and schema_ref(prop.get("items") or {}) == CORE + short:
                keys.update(prop.get("x-kubernetes-list-map-keys") or [])
    return keys


@cache
def k8s_model(short: str, variant: str = "") -> type[K8sModel]:
    """The pydantic model of core/v1 ``short`` (e.g. "Toleration"), with FACTS."""
    full = _full_name(short)
    schema = SCHEMAS[full]
    facts = FACTS.get(short, Facts())
    if variant:
        extra = VARIANTS[f"{short}@{variant}"]
        facts = Facts(
            only=extra.only if extra.only is not None else facts.only,
            omit=facts.omit | extra.omit,
            required=facts.required | extra.required,
            optional=facts.optional | extra.optional,
            props={**facts.props, **extra.props},
            rules=facts.rules + extra.rules,
            doc=extra.doc or facts.doc,
        )
    required = (set(schema.get("required") or []) | facts.required) - facts.optional
    map_keys = _list_map_keys(short)
    fields: dict[str, Any] = {}
    for name, prop_schema in sorted((schema.get("properties") or {}).items()):
        if name in facts.omit or (facts.only is not None and name not in facts.only):
            continue
        default = None
        if name in map_keys and name not in required:
            default = prop_schema.get("default")
            if default is None:
                required.add(name)
        py = to_snake(name).replace(".", "_")
        fields[py] = _field(short, name, prop_schema, facts.props.get(name, Prop()), name in required, default)
    doc = " ".join((schema.get("description") or short).split())
    if facts.doc:
        doc = f"{doc} {facts.doc}"
    extra: dict[str, Any] = {}
    if facts.rules:
        extra["x-kubernetes-validations"] = [r.entry() for r in facts.rules]
    if schema.get("x-kubernetes-map-type"):
        extra["x-kubernetes-map-type"] = schema["x-kubernetes-map-type"]
    validators = {}
    if facts.rules:
        def _rules_hold(self: K8sModel, _rules: tuple[Rule, ...] = facts.rules) -> K8sModel:
            wire = self.wire()
            for r in _rules:
                if not r.ok(wire):
                    raise ValueError(f"{r.field_path.lstrip('.') + ': ' if r.field_path else ''}{r.message}")
            return self
        validators["_rules_hold"] = model_validator(mode="after")(_rules_hold)
    base: type[K8sModel] = K8sModel
    if extra:
        base = type(f"_K8s{short}Base", (K8sModel,), {"model_config": ConfigDict(json_schema_extra=extra),
                                                      "__module__": __name__})
    return create_model(  # type: ignore[call-overload]
        f"K8s{short}{variant.title().replace('-', '')}",
        __base__=base,
        __doc__=doc,
        __validators__=validators,
        __module__=__name__,
        **fields,
    )
