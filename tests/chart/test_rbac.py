"""The operator's RBAC, exactly, as the chart renders it (the security
review in the README's "Security" section): every rule is listed here, so a
new permission is a visible change to this file. No wildcard, Secrets by
name only (``get``: existence checks asking for metadata only, see
kubento.controller.kube.secret_exists), nothing cluster-wide in namespaced
mode beyond read-only discovery, leases only in the operator's namespace.
Also the optional NetworkPolicy."""

from __future__ import annotations

import pytest

from tests.chart.test_chart import by_kind, render

WORK_RULES = [
    {"apiGroups": ["serving.kubento.io"], "resources": ["modeldeployments"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["serving.kubento.io"], "resources": ["modeldeployments/status"], "verbs": ["patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
     "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    # prediction checks: the readiness-gate condition on each checked pod (its own condition only)
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": ["apps"], "resources": ["controllerrevisions"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"],
     "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
]
DISCOVERY_RULES = [
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    # traffic.gateway: a route's Gateways, read by name (they may be in another namespace)
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gateways"], "verbs": ["get"]},
]
LEASE_RULES = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
SUBJECTS = [{"kind": "ServiceAccount", "name": "kubento", "namespace": "kubento-system"}]


def grants(docs: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """(kind, namespace, name) of every role -> its rules, after checking each
    binding binds exactly the operator's ServiceAccount to a role of this release."""
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d["rules"]
             for d in docs if d["kind"] in ("ClusterRole", "Role")}
    bound = set()
    for b in docs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        assert b["subjects"] == SUBJECTS, b
        role_kind = b["roleRef"]["kind"]
        ns = "" if role_kind == "ClusterRole" else b["metadata"]["namespace"]
        key = (role_kind, ns, b["roleRef"]["name"])
        assert key in roles, f"{b['metadata']['name']} binds {key}, which the chart does not make"
        assert (b["kind"] == "ClusterRoleBinding") == (role_kind == "ClusterRole"), b  # no ClusterRole bound per namespace
        bound.add(key)
    assert bound == set(roles), f"roles nobody is bound to: {set(roles) - bound}"
    return roles


def no_wildcards(roles: dict) -> None:
    for key, rules in roles.items():
        for rule in rules:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (key, rule)
            assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), (key, rule)
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), (key, rule)


def test_cluster_wide_rbac_is_exactly_the_design(helm):
    roles = grants(render(helm))
    no_wildcards(roles)
    assert roles == {
        ("ClusterRole", "", "kubento"): WORK_RULES,
        ("ClusterRole", "", "kubento-discovery"): DISCOVERY_RULES,
        ("Role", "kubento-system", "kubento-leader-election"): LEASE_RULES,
    }


def test_namespaced_rbac_is_roles_in_the_watched_namespaces_only(helm):
    roles = grants(render(helm, "--set", "watch.namespaces={team-a,team-b}"))
    no_wildcards(roles)
    assert roles == {
        ("Role", "team-a", "kubento"): WORK_RULES,
        ("Role", "team-b", "kubento"): WORK_RULES,
        # Read-only: kopf discovers the CRD and namespaces (README: Security).
        ("ClusterRole", "", "kubento-discovery"): DISCOVERY_RULES,
        ("Role", "kubento-system", "kubento-leader-election"): LEASE_RULES,
    }


def test_secrets_are_never_listed_watched_or_written():
    """Only existence checks by name: a list or watch would bring every
    Secret's data of the namespace into the operator's memory."""
    secret_rules = [r for r in WORK_RULES + DISCOVERY_RULES + LEASE_RULES if "secrets" in r["resources"]]
    assert secret_rules == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]


def test_network_policy_is_off_by_default(helm):
    assert not by_kind(render(helm), "NetworkPolicy")


def test_network_policy_admits_health_and_metrics_only(helm):
    docs = render(helm, "--set", "networkPolicy.enabled=true",
                  "--set", "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring")
    [policy] = by_kind(docs, "NetworkPolicy")
    dep = by_kind(docs, "Deployment")[0]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert policy["metadata"]["namespace"] == "kubento-system"
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress open unless given
    ports = {p["name"]: p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert policy["spec"]["ingress"] == [
        {"ports": [{"port": "health", "protocol": "TCP"}]},
        {"ports": [{"port": "metrics", "protocol": "TCP"}],
         "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
    ]
    assert set(ports) == {"health", "metrics"}  # every named port the policy admits exists, and no other


def test_network_policy_without_metrics_and_with_egress_rules(helm):
    docs = render(helm, "--set", "networkPolicy.enabled=true", "--set", "metrics.port=0",
                  "--set", "networkPolicy.egress[0].to[0].ipBlock.cidr=10.0.0.0/8",
                  "--set", "networkPolicy.egress[0].ports[0].port=443")
    [policy] = by_kind(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "health", "protocol": "TCP"}]}]
    assert policy["spec"]["egress"] == [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 443}]}]


@pytest.mark.parametrize("flag", ["networkPolicy.enabled=maybe", "networkPolicy.metricsFrom=x", "networkPolicy.bogus=1"])
def test_network_policy_values_are_checked(helm, flag):
    import subprocess

    from tests.chart.test_chart import CHART

    proc = subprocess.run([helm, "template", "kubento", str(CHART), "--kube-version", "1.34.4", "--set", flag],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "networkPolicy" in proc.stderr, proc.stderr


def test_the_chart_grants_exactly_what_the_kinds_registry_needs(helm):
    """Every kind the operator watches or makes declares its verbs once
    (kubento.controller.kinds): the chart's work rules are those, plus
    Secrets (existence checks) and Events."""
    from kubento.controller import kinds

    needed = [rule for kind in kinds.REGISTRY for rule in kind.rbac_rules()]
    roles = grants(render(helm))
    work = roles[("ClusterRole", "", "kubento")]
    for rule in needed:
        assert rule in work, f"the chart does not grant {rule}, which the kinds registry needs"
    extra = [rule for rule in work if rule not in needed]
    assert extra == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
                     {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}], extra
