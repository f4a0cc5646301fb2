"""API Priority and Fairness in the chart: nothing by default; enabled, a
PriorityLevelConfiguration and a FlowSchema that sends the chart's own
ServiceAccount to it by namespace; values carried through and checked by the
values schema. The API server's acceptance of both, and its classifying the
operator's requests into them, is tested in tests/integration/test_api_priority.py."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.chart.test_chart import CHART, by_kind, render

KINDS = ("FlowSchema", "PriorityLevelConfiguration")
API = "flowcontrol.apiserver.k8s.io/v1"


def apf(helm: str, *values: str, namespace: str = "kubento-system") -> tuple[dict, dict]:
    docs = render(helm, "--namespace", namespace, "--set", "apiPriority.enabled=true",
                  *[a for v in values for a in ("--set", v)])
    [level] = by_kind(docs, "PriorityLevelConfiguration")
    [schema] = by_kind(docs, "FlowSchema")
    return level, schema


def test_nothing_is_rendered_by_default(helm):
    docs = render(helm)
    assert not [d for d in docs if d["kind"] in KINDS]
    assert yaml.safe_load((CHART / "values.yaml").read_text())["apiPriority"]["enabled"] is False


def test_enabled_it_renders_a_limited_level_and_a_flowschema_for_the_operators_serviceaccount(helm):
    docs = render(helm, "--set", "apiPriority.enabled=true")
    [level] = by_kind(docs, "PriorityLevelConfiguration")
    [schema] = by_kind(docs, "FlowSchema")
    [sa] = by_kind(docs, "ServiceAccount")
    assert level["apiVersion"] == schema["apiVersion"] == API
    assert level["metadata"]["name"] == schema["metadata"]["name"] == "kubento"
    assert "namespace" not in level["metadata"] and "namespace" not in schema["metadata"]  # cluster-scoped
    assert level["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubento"

    assert level["spec"]["type"] == "Limited"
    assert level["spec"]["limited"] == {
        "nominalConcurrencyShares": 10, "lendablePercent": 50, "borrowingLimitPercent": 0,
        "limitResponse": {"type": "Queue", "queuing": {"queues": 64, "handSize": 6, "queueLengthLimit": 50}}}

    spec = schema["spec"]
    assert spec["priorityLevelConfiguration"] == {"name": level["metadata"]["name"]}
    assert spec["distinguisherMethod"] == {"type": "ByNamespace"}
    assert 1 <= spec["matchingPrecedence"] < 9000  # ahead of the suggested service-accounts schema
    [rule] = spec["rules"]
    # The subject is exactly the ServiceAccount the Deployment runs as.
    assert rule["subjects"] == [{"kind": "ServiceAccount", "serviceAccount": {
        "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}}]
    [dep] = by_kind(docs, "Deployment")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    # All of its requests: every verb and resource, namespaced and cluster-wide, and non-resource URLs.
    assert rule["resourceRules"] == [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                      "clusterScope": True, "namespaces": ["*"]}]
    assert rule["nonResourceRules"] == [{"verbs": ["*"], "nonResourceURLs": ["*"]}]


def test_the_subject_follows_the_release_and_the_serviceaccount_values(helm):
    _, schema = apf(helm, "serviceAccount.name=model-operator", namespace="ml-platform")
    assert schema["spec"]["rules"][0]["subjects"][0]["serviceAccount"] == {"name": "model-operator", "namespace": "ml-platform"}
    # Not created by the chart: the name given, else the namespace's default (what the pod then runs as).
    _, schema = apf(helm, "serviceAccount.create=false")
    assert schema["spec"]["rules"][0]["subjects"][0]["serviceAccount"] == {"name": "default", "namespace": "kubento-system"}
    # Another release's objects are named after it.
    docs = subprocess.run([helm, "template", "serving", str(CHART), "--kube-version", "1.34.4", "--namespace", "ns2",
                           "--set", "apiPriority.enabled=true"], capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(docs) if d and d["kind"] in KINDS]
    assert {d["metadata"]["name"] for d in docs} == {"serving-kubento"}
    [schema] = by_kind(docs, "FlowSchema")
    assert schema["spec"]["priorityLevelConfiguration"]["name"] == "serving-kubento"
    assert schema["spec"]["rules"][0]["subjects"][0]["serviceAccount"] == {"name": "serving-kubento", "namespace": "ns2"}


def test_values_flow_into_the_level_and_the_schema(helm):
    level, schema = apf(helm, "apiPriority.matchingPrecedence=850", "apiPriority.nominalConcurrencyShares=40",
                        "apiPriority.lendablePercent=90", "apiPriority.borrowingLimitPercent=200",
                        "apiPriority.queuing.queues=128", "apiPriority.queuing.handSize=8",
                        "apiPriority.queuing.queueLengthLimit=100")
    assert schema["spec"]["matchingPrecedence"] == 850
    limited = level["spec"]["limited"]
    assert (limited["nominalConcurrencyShares"], limited["lendablePercent"], limited["borrowingLimitPercent"]) == (40, 90, 200)
    assert limited["limitResponse"]["queuing"] == {"queues": 128, "handSize": 8, "queueLengthLimit": 100}


def test_a_null_borrowing_limit_leaves_the_field_out(helm):
    """The API's nil: no limit on borrowing (as the suggested levels)."""
    level, _ = apf(helm, "apiPriority.borrowingLimitPercent=null")
    assert "borrowingLimitPercent" not in level["spec"]["limited"]


def test_helm_lint_is_clean_with_api_priority_on(helm):
    proc = subprocess.run([helm, "lint", "--strict", str(CHART), "--set", "apiPriority.enabled=true"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("flag, field", [
    ("apiPriority.matchingPrecedence=0", "matchingPrecedence"),
    ("apiPriority.matchingPrecedence=10001", "matchingPrecedence"),
    ("apiPriority.nominalConcurrencyShares=0", "nominalConcurrencyShares"),
    ("apiPriority.lendablePercent=101", "lendablePercent"),
    ("apiPriority.borrowingLimitPercent=-1", "borrowingLimitPercent"),
    ("apiPriority.queuing.queues=0", "queues"),
    ("apiPriority.queuing.queueLengthLimit=0", "queueLengthLimit"),
    ("apiPriority.queuing.handSize=many", "handSize"),
    ("apiPriority.distinguisher=ByUser", "distinguisher"),
    # Not the schema: the template's own check (the API server would refuse it too).
    ("apiPriority.queuing.handSize=65", "handSize"),
])
def test_bad_values_are_refused(helm, flag, field):
    proc = subprocess.run([helm, "template", "kubento", str(CHART), "--kube-version", "1.34.4",
                           "--set", "apiPriority.enabled=true", "--set", flag], capture_output=True, text=True)
    assert proc.returncode != 0, f"{flag} was accepted"
    assert field in proc.stderr, proc.stderr
