"""The chart's API Priority and Fairness objects against the real API server:
rendered by helm with apiPriority on and applied; the API server accepts
both, reports the FlowSchema not Dangling (its priority level exists), lists
the level in its APF debug dump, and classifies a request of the operator's
ServiceAccount (impersonated) into kubento's FlowSchema and level, and
another ServiceAccount's request not."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.helpers import condition, get_json, wait_for
from tests.integration.conftest import OPERATOR_NAMESPACE

ROOT = Path(__file__).resolve().parents[2]
NAME = "kubento"  # the release's full name, as the chart names both objects


def render(helm: str, *values: str) -> str:
    args = [a for v in ("apiPriority.enabled=true", *values) for a in ("--set", v)]
    proc = subprocess.run([helm, "template", "kubento", str(ROOT / "charts" / "kubento"), "--namespace", OPERATOR_NAMESPACE,
                           "--kube-version", "1.34.4", "--show-only", "templates/api-priority.yaml", *args],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def classified(controlplane, user: str) -> tuple[str, str]:
    """(FlowSchema UID, PriorityLevel UID) the API server put a GET /version of
    ``user`` in (impersonated by the admin: APF classifies the impersonated
    user), from its X-Kubernetes-PF-* response headers."""
    cfg = yaml.safe_load(controlplane.admin_kubeconfig.read_text())
    cluster, user_cfg = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    req = urllib.request.Request(cluster["server"] + "/version", headers={
        "Authorization": f"Bearer {user_cfg['token']}", "Impersonate-User": user})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        assert json.load(resp)["major"] == "1"
        return resp.headers["X-Kubernetes-PF-FlowSchema-UID"], resp.headers["X-Kubernetes-PF-PriorityLevel-UID"]


def dangling(controlplane, name: str = NAME) -> str | None:
    """The FlowSchema's Dangling condition ("True", "False"; None before the API server sets it)."""
    return condition(get_json(controlplane.kubectl, "flowschema", name), "Dangling").get("status")


@pytest.fixture(scope="module")
def apf(controlplane, helm):
    manifest = render(helm)
    controlplane.kubectl("apply", "-f", "-", input=manifest)
    yield manifest
    controlplane.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifest, check=False)


def test_the_api_server_accepts_both_and_the_flowschema_is_not_dangling(controlplane, apf):
    level = get_json(controlplane.kubectl, "prioritylevelconfiguration", NAME)
    assert level["spec"]["type"] == "Limited"
    assert level["spec"]["limited"]["nominalConcurrencyShares"] == 10
    # The API server's APF configuration controller writes the condition (True for a
    # moment if the FlowSchema was stored before its level).
    wait_for("the FlowSchema's Dangling condition False", lambda: dangling(controlplane) == "False", timeout=30)
    schema = get_json(controlplane.kubectl, "flowschema", NAME)
    assert schema["spec"]["priorityLevelConfiguration"]["name"] == NAME
    assert schema["spec"]["distinguisherMethod"]["type"] == "ByNamespace"


def test_the_debug_dump_lists_the_level(controlplane, apf):
    def listed():
        dump = controlplane.kubectl("get", "--raw", "/debug/api_priority_and_fairness/dump_priority_levels").stdout
        return next((line for line in dump.splitlines() if line.split(",")[0].strip() == NAME), None)
    assert wait_for("kubento's level in dump_priority_levels", listed, timeout=30)


def test_the_metrics_give_it_its_seats_and_no_more(controlplane, apf):
    """On this API server's default concurrency limit (600), the default 10 shares
    are the 24 seats values.yaml promises, and borrowingLimitPercent 0 caps it there."""
    def seats():
        metrics = controlplane.kubectl("get", "--raw", "/metrics").stdout
        found = dict(re.findall(r'^apiserver_flowcontrol_(nominal|upper)_limit_seats\{priority_level="kubento"\} (\S+)$',
                                metrics, re.M))
        return found if len(found) == 2 else None
    assert wait_for("kubento's seats in the API server's metrics", seats, timeout=30) == {"nominal": "24", "upper": "24"}


def test_the_operators_requests_are_classified_into_kubentos_level(controlplane, apf):
    schema = get_json(controlplane.kubectl, "flowschema", NAME)["metadata"]["uid"]
    level = get_json(controlplane.kubectl, "prioritylevelconfiguration", NAME)["metadata"]["uid"]
    operator = f"system:serviceaccount:{OPERATOR_NAMESPACE}:kubento"
    # The API server's dispatcher picks a new configuration up within moments of the objects' writes.
    assert wait_for("the operator's request in kubento's FlowSchema",
                    lambda: classified(controlplane, operator) == (schema, level) or None, timeout=30)
    other, _ = classified(controlplane, "system:serviceaccount:default:someone-else")
    assert other != schema
    assert get_json(controlplane.kubectl, "flowschema", "service-accounts")["metadata"]["uid"] == other


def test_a_dangling_flowschema_is_reported(controlplane, apf, helm):
    """The condition the first test reads does say True when the level is missing
    (the FlowSchema alone, pointing at a level that does not exist)."""
    docs = [d for d in yaml.safe_load_all(render(helm)) if d and d["kind"] == "FlowSchema"]
    [schema] = docs
    schema["metadata"]["name"] = "kubento-dangling-check"
    schema["spec"]["priorityLevelConfiguration"]["name"] = "no-such-level"
    schema["spec"]["matchingPrecedence"] = 9999  # never wins over the real one
    controlplane.kubectl("apply", "-f", "-", input=yaml.safe_dump(schema))
    try:
        wait_for("the dangling FlowSchema's condition True",
                 lambda: dangling(controlplane, "kubento-dangling-check") == "True", timeout=30)
    finally:
        controlplane.kubectl("delete", "flowschema", "kubento-dangling-check", "--ignore-not-found", check=False)
