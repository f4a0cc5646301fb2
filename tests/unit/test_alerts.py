"""kubento's alert rules and Grafana dashboard, checked with promtool (Debian's
``prometheus`` package, installed by hack/install-deps.sh; these tests fail,
never skip, without it).

The rule file is dist/kubento-rules.yaml, rendered from the chart's
templates/_alerts.tpl with its default values (tests/chart keeps it in sync);
tests/unit/data/kubento-rules-test.yaml feeds each alert input series where it
must fire and where it must stay silent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kubento.rollout.analysis import is_infra

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dist" / "kubento-rules.yaml"
RULE_TESTS = ROOT / "tests" / "unit" / "data" / "kubento-rules-test.yaml"
DASHBOARD = ROOT / "charts" / "kubento" / "files" / "grafana-dashboard.json"
ALERTS = {
    "KubentoModelNotReady", "KubentoModelUnavailable", "KubentoModelRolledBack", "KubentoModelErrorRatioHigh",
    "KubentoModelLatencyHigh", "KubentoModelAtMaxReplicas", "KubentoModelBuildFailing", "KubentoModelEnvironmentFailing", "KubentoOperatorDown",
    "KubentoOperatorNotReconciling", "KubentoOperatorReconcileErrors",
    "KubentoModelInputDrift", "KubentoModelFeatureMissing", "KubentoModelOutputShift",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run hack/install-deps.sh (Debian package prometheus)", pytrace=False)
    return path


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_rule_file_is_valid(promtool):
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


def test_every_alert_fires_and_stays_silent_as_its_input_series_say(promtool):
    proc = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_silent_case():
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert {r["alert"] for r in rules()} == ALERTS
    assert fires == ALERTS, f"no firing case for {ALERTS - fires}"
    assert silent == ALERTS, f"no silent case for {ALERTS - silent}"


def test_every_alert_says_what_happened_to_which_model_and_what_to_do():
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
        assert summary and len(description) > 100, rule["alert"]
        if rule["alert"].startswith("KubentoModel"):
            assert "{{ $labels.namespace }}/{{ $labels.model }}" in summary + description, rule["alert"]
            assert re.search(r"kubectl|kubento|Raise|Check", description), rule["alert"]


ENDPOINTS = ["/classify", "/v1/predict", "/readyz", "/livez", "/healthz", "/metrics", "/docs.json", "/schema.json",
             "/", "", "/static_content/index.css", "/ui/assets/app.js", "/api/livez", "/livez/", "/readyzz",
             "/metrics_summary", "/assets"]


def infra_regexes(text: str) -> set[str]:
    return set(re.findall(r"endpoint!~`([^`]*)`", text))


@pytest.mark.parametrize("source", [RULES, DASHBOARD], ids=["rules", "dashboard"])
def test_probes_and_docs_are_left_out_as_the_rollout_analysis_does(source):
    """The rules and the dashboard leave out the endpoints kubento's own
    analysis leaves out (PromQL regexes match whole label values)."""
    found = infra_regexes(source.read_text().replace("\\\\", "\\"))
    assert len(found) == 1, found
    regex = re.compile(found.pop())
    for endpoint in ENDPOINTS:
        assert bool(regex.fullmatch(endpoint)) == is_infra(endpoint), endpoint


# ------------------------------------------------------------------ the dashboard

DASHBOARD_VARS = {"$namespace": "ml", "$model": "iris", "$__rate_interval": "1m", "$__interval": "30s"}


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) of every query in the dashboard: panels, annotations, variables."""
    dash = json.loads(DASHBOARD.read_text())
    out = [(f"panel {p['title']!r}", t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    out += [(f"annotation {a['name']!r}", a["expr"]) for a in dash["annotations"]["list"] if a.get("expr")]
    return out


def substitute(expr: str) -> str:
    for var, value in DASHBOARD_VARS.items():
        expr = expr.replace(var, value)
    return expr


def test_dashboard_is_a_grafana_dashboard_with_namespace_and_model_variables():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "kubento-models" and dash["title"] and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert "label_values(kubento_model_ready" in variables["namespace"]["definition"]
    assert '{namespace=~"$namespace"}' in variables["model"]["definition"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for what in ("requests/s", "error ratio", "p95", "desired vs ready", "canary weight", "rollout events", "build"):
        assert what in titles, what
    for panel in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            if "kubento_model" in target["expr"] or "bentoml_" in target["expr"]:
                assert 'namespace=~"$namespace"' in target["expr"] and 'model=~"$model"' in target["expr"], panel["title"]


def test_every_dashboard_query_parses(promtool, tmp_path):
    """promtool parses each query as a recording rule (e2e/test_monitoring.py
    runs them against a real Prometheus)."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    groups = [{"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": substitute(e)}
                                              for i, (_, e) in enumerate(exprs)]}]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
