"""The tenancy guard's templates: nothing by default, a policy and its binding
when enabled, values carried into them and checked by the values schema.
What the policy refuses is tested against a real API server in
tests/integration/test_tenancy.py."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.chart.test_chart import CHART, by_kind, render

KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def guard(helm: str, *values: str) -> tuple[dict, dict]:
    docs = render(helm, "--set", "tenancyGuard.enabled=true", *[a for v in values for a in ("--set", v)])
    [policy] = by_kind(docs, "ValidatingAdmissionPolicy")
    [binding] = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    return policy, binding


def variables(policy: dict) -> dict[str, str]:
    return {v["name"]: v["expression"] for v in policy["spec"]["variables"]}


def test_the_guard_renders_nothing_by_default(helm):
    docs = render(helm)
    assert not [d for d in docs if d["kind"] in KINDS]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["tenancyGuard"]
    assert defaults["enabled"] is False


def test_enabled_it_renders_a_policy_and_a_binding_scoped_by_namespace_label(helm):
    policy, binding = guard(helm)
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert policy["metadata"]["name"] == binding["spec"]["policyName"] == "kubento-tenancy-guard"
    assert policy["spec"]["failurePolicy"] == "Fail"
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule == {"apiGroups": ["serving.kubento.io"], "apiVersions": ["v1alpha1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["modeldeployments"]}
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {"matchLabels": {"kubento.io/tenancy-guard": "enabled"}}
    [validation] = policy["spec"]["validations"]
    assert validation["reason"] == "Forbidden" and "variables.problems" in validation["messageExpression"]
    # Every check feeds the one refusal.
    checks = [n for n in variables(policy) if n not in ("volumes", "sidecars", "inits", "kedaTriggers", "problems")]
    assert variables(policy)["problems"] == " + ".join(f"variables.{n}" for n in checks)
    assert set(checks) == {"serviceAccountName", "serviceAccountToken", "volumeSources", "hostPort", "privileged",
                           "allowPrivilegeEscalation", "capabilities", "runtimeClassName", "priorityClassName",
                           "schedulerName", "kedaTriggerTypes", "kedaAuthentication"}


def test_values_become_the_policys_constants_and_the_bindings_scope(helm):
    policy, binding = guard(
        helm, "tenancyGuard.allowedServiceAccounts={default,model-runner}", "tenancyGuard.allowedRuntimeClassNames={nvidia}",
        "tenancyGuard.deniedVolumeSources={hostPath}", "tenancyGuard.allowedSecrets={model-creds}",
        "tenancyGuard.allowedKedaTriggerTypes={cpu,prometheus}", "tenancyGuard.validationActions={Warn,Audit}",
        "tenancyGuard.namespaceSelector.matchLabels.tenant=ml",
    )
    v = variables(policy)
    assert '["default","model-runner"]' in v["serviceAccountName"]
    assert "(allowed: default, model-runner)" in v["serviceAccountName"]
    assert '["nvidia"]' in v["runtimeClassName"]
    assert '["hostPath"]' in v["volumeSources"] and "nfs" not in v["volumeSources"]
    assert '["cpu","prometheus"]' in v["kedaTriggerTypes"]
    assert '["model-creds"]' in v["secrets"] and "spec.bento.archive.secretRef.name" in v["secrets"]
    assert binding["spec"]["validationActions"] == ["Warn", "Audit"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
        "kubento.io/tenancy-guard": "enabled", "tenant": "ml"}


def test_a_star_turns_a_check_off_and_an_empty_list_allows_nothing(helm):
    policy, _ = guard(helm, "tenancyGuard.allowedServiceAccounts={*}", "tenancyGuard.allowedKedaTriggerTypes={*}",
                      "tenancyGuard.allowServiceAccountToken=true", "tenancyGuard.deniedVolumeSources=null")
    v = variables(policy)
    for off in ("serviceAccountName", "kedaTriggerTypes", "serviceAccountToken", "volumeSources", "secrets"):
        assert off not in v and f"variables.{off}" not in v["problems"], off
    assert "kedaAuthentication" in v  # never off
    assert "[]" in v["priorityClassName"] and "none may be set" in v["priorityClassName"]


def test_helm_lint_is_clean_with_the_guard_on(helm):
    proc = subprocess.run([helm, "lint", "--strict", str(CHART), "--set", "tenancyGuard.enabled=true"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("flag, field", [
    ("tenancyGuard.validationActions={Deny,Warn}", "validationActions"),
    ("tenancyGuard.validationActions={Block}", "validationActions"),
    ("tenancyGuard.allowedServiceAccounts={Bad_Name}", "allowedServiceAccounts"),
    # A name is pasted into CEL: a quote must never get there.
    ("tenancyGuard.allowedSecrets={a'b}", "allowedSecrets"),
    ("tenancyGuard.allowedKedaTriggerTypes={Prometheus}", "allowedKedaTriggerTypes"),
    ("tenancyGuard.allowedCapabilities={sys_admin}", "allowedCapabilities"),
    ("tenancyGuard.deniedVolumeSources={gitRepo}", "deniedVolumeSources"),
    ("tenancyGuard.allowServiceAccountToken=yes", "allowServiceAccountToken"),
    ("tenancyGuard.enable=true", "enable"),
])
def test_values_schema_rejects_bad_guard_values(helm, flag, field):
    proc = subprocess.run([helm, "template", "kubento", str(CHART), "--kube-version", "1.34.4",
                           "--set", "tenancyGuard.enabled=true", "--set", flag], capture_output=True, text=True)
    assert proc.returncode != 0, f"{flag} was accepted"
    assert field in proc.stderr, proc.stderr
