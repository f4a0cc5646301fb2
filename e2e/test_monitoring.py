"""Monitoring and alerting on a real node: a real Prometheus and Alertmanager
(e2e/monitoring.py) scrape the cluster with the chart's documented scrape
configuration and evaluate the chart's alert rules, rendered with short
``for:`` durations; alerts are read from Alertmanager's API, and every
notification it sends (firing, resolved) reaches a webhook in the test.

Scenarios: a model that cannot become ready (not-ready alert, then resolved
once fixed); a canary answering 30% errors (error-ratio alert, then the
rollback alert when kubento rolls it back, both resolved afterwards); every
query of the Grafana dashboard answered by that Prometheus; ``kubento top``
reading the same pods. Times from each fault to the alert are printed (-s).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from e2e import monitoring as prometheus_stack
from e2e.conftest import NAMESPACE, S3_SECRET, run
from e2e.support import TrafficCounter, apply_md, example_spec, md, settled
from e2e.test_rollout import serving
from e2e.test_sources import project_files, put_project
from tests.cloudevents import Receiver
from tests.helpers import condition, wait_for

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "kubento" / "files" / "grafana-dashboard.json"
# The chart's rules with durations a test can wait for; thresholds stay the defaults.
RULE_VALUES = {
    "alerts.rateWindow": "20s",
    "alerts.modelNotReady.for": "10s",
    "alerts.errorRatio.for": "4s",
    "alerts.modelRolledBack.for": "0s",
}
INTERVAL = "2s"  # scrape and rule evaluation


class Webhook(Receiver):
    """Alertmanager's receiver: every notification, with the time it came."""

    @property
    def notifications(self) -> list[tuple[float, dict]]:
        return [(at, json.loads(body)) for at, (_, body) in zip(list(self.times), list(self.events))]

    def first(self, status: str, **labels: str) -> float | None:
        """When the first notification of an alert with ``labels`` in ``status`` came."""
        for at, body in self.notifications:
            for alert in body.get("alerts", []):
                if alert["status"] == status and labels.items() <= alert["labels"].items():
                    return at
        return None


def rules(helm: str, values: dict[str, str] = RULE_VALUES) -> str:
    args = [helm, "template", "kubento", str(ROOT / "charts" / "kubento"), "--namespace", "kubento-system",
            "--kube-version", "1.34.4", "--set", "alerts.configMap.enabled=true",
            "--show-only", "templates/prometheus-rules.yaml"]
    for key, value in values.items():
        args += ["--set", f"{key}={value}"]
    return yaml.safe_load(run(*args).stdout)["data"]["kubento-rules.yaml"]


def running_stack(cluster, helm, directory, values: dict[str, str] = RULE_VALUES):
    """Prometheus and Alertmanager with the chart's rules (``values`` set), a
    webhook on the Alertmanager (``stack.hook``), until the generator ends."""
    hook = Webhook()
    stack = prometheus_stack.start(cluster.kubeconfig, rules(helm, values), directory, webhook=hook.url,
                                   interval=INTERVAL)
    stack.hook = hook
    try:
        # The documented scrape configuration finds the operator (its metrics port) on its own.
        wait_for("the operator's scrape to be up", lambda: stack.query('up{job="kubento-operator"} == 1'),
                 timeout=60, interval=1)
        yield stack
    finally:
        stack.stop()
        hook.server.shutdown()


@pytest.fixture(scope="module")
def monitoring_stack(cluster, operator, helm, tmp_path_factory):
    yield from running_stack(cluster, helm, tmp_path_factory.mktemp("monitoring"))


@pytest.fixture
def monitoring(monitoring_stack):
    """The stack, named for the log hook in conftest.py (its logs show on failure)."""
    return monitoring_stack


def active(stack, alertname: str, **labels: str) -> list[dict]:
    return [a for a in stack.alerts(alertname=alertname, **labels) if a["status"]["state"] == "active"]


def fired(stack, alertname: str, **labels: str) -> dict | None:
    """The alert, active in Alertmanager now or already notified as firing: a
    short-lived alert can fire and resolve between two polls of the API."""
    now = active(stack, alertname, **labels)
    if now:
        return now[0]
    want = {"alertname": alertname, **labels}
    for _, body in stack.hook.notifications:
        for alert in body.get("alerts", []):
            if alert["status"] == "firing" and want.items() <= alert["labels"].items():
                return alert
    return None


def prometheus_view(stack, name: str) -> str:
    """What Prometheus saw of a model's requests and targets (for a failure message)."""
    requests = stack.query(f'sum by (revision, http_response_code) (bentoml_service_request_total{{model="{name}"}})')
    targets = [(t["labels"].get("pod"), t["health"], t.get("lastError")) for t in stack.targets()
               if t["labels"].get("model") == name]
    return f"requests by revision/code: {[(r['metric'], r['value'][1]) for r in requests]}; targets: {targets}"


def report(what: str, seconds: float) -> None:
    print(f"\n[monitoring] {what}: {seconds:.1f}s")


def test_a_model_that_cannot_become_ready_fires_not_ready_then_resolves(cluster, model, images, monitoring):
    name = model("mon-broken", {"bento": {"image": images["crashing"]}})
    start = time.monotonic()
    wait_for("the not-ready alert in Alertmanager", lambda: active(monitoring, "KubentoModelNotReady", model=name),
             timeout=120, interval=0.5)
    fired = time.monotonic() - start
    alert = active(monitoring, "KubentoModelNotReady", model=name)[0]
    phase = md(cluster, name)["status"]["phase"]
    reason = condition(md(cluster, name), "Ready")["reason"]
    report(f"not-ready alert in Alertmanager after the apply (for: {RULE_VALUES['alerts.modelNotReady.for']}, "
           f"phase {phase}, Ready reason {reason})", fired)
    assert alert["labels"]["namespace"] == NAMESPACE and alert["labels"]["severity"] == "warning"
    assert f"{NAMESPACE}/{name}" in alert["annotations"]["summary"]
    assert f"Ready reason: {reason}" in alert["annotations"]["description"], alert["annotations"]
    wait_for("the firing notification", lambda: monitoring.hook.first("firing", alertname="KubentoModelNotReady",
                                                                      model=name), timeout=30, interval=0.5)

    apply_md(cluster, name, example_spec(images))  # fixed: the iris image
    wait_for("the model to be Ready", lambda: settled(cluster, name), timeout=300, interval=0.5)
    ready = time.monotonic()
    wait_for("the resolved notification", lambda: monitoring.hook.first("resolved", alertname="KubentoModelNotReady",
                                                                         model=name), timeout=60, interval=0.5)
    report("not-ready alert resolved (webhook) after the model became Ready", time.monotonic() - ready)
    assert not active(monitoring, "KubentoModelNotReady", model=name)


def flaky_v2(cluster, name: str) -> str:
    """examples/iris-source answering 500 to 3 requests in 10 (as e2e/test_rollout.py's failing canary)."""
    files = project_files()
    files["service.py"] = files["service.py"].replace(
        '        """Predict the species of each row of four measurements."""\n',
        '        """Predict the species of each row of four measurements."""\n'
        '        self.calls = getattr(self, "calls", 0) + 1\n'
        '        if self.calls % 10 < 3:\n'
        '            raise RuntimeError("injected failure")\n',
    )
    assert "injected failure" in files["service.py"]
    put_project(cluster, f"{name}-v2", files)
    return f"{name}-v2"


def kubento_top(cluster, name: str) -> dict:
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "kubento"), "top", name, "-n", NAMESPACE, "-o", "json",
                           "--interval", "3"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


def test_a_canary_with_30_percent_errors_fires_error_ratio_then_rollback_then_both_resolve(
        cluster, model, images, s3, monitoring):
    # A second model, autoscaled by kubento, for the dashboard's autoscaler panel.
    steady = model("mon-steady", {**example_spec(images),
                                  "autoscaling": {"metric": "concurrency", "minReplicas": 1, "maxReplicas": 2}})
    spec = {**example_spec(images), "replicas": 2}
    name = serving(cluster, model, "mon-canary", spec)
    wait_for(f"{steady} to be Ready", lambda: settled(cluster, steady), timeout=300, interval=1)
    configmap = flaky_v2(cluster, name)
    with TrafficCounter(cluster, name) as traffic, TrafficCounter(cluster, steady) as steady_traffic:
        apply_md(cluster, name, {
            "bento": {"build": {"source": {"configMap": {"name": configmap}},
                                "output": {"uri": "s3://built/monitoring", "secretRef": {"name": S3_SECRET}}}},
            "runtimeImage": images["iris"],
            "replicas": 2,
            # A verdict every 30s: the canary serves long enough for Prometheus to see it.
            "rollout": {"strategy": "Canary", "steps": [{"weight": 50}],
                        "analysis": {"maxErrorRate": 0.1, "minRequests": 20, "interval": "30s"}},
        })
        wait_for("the canary's first error", lambda: traffic.failed, timeout=300, interval=0.2)
        fault = time.monotonic()
        v2 = md(cluster, name)["status"]["currentRevision"]

        top = kubento_top(cluster, name)  # the same pods, read directly
        try:
            alert = wait_for("the error-ratio alert in Alertmanager",
                             lambda: fired(monitoring, "KubentoModelErrorRatioHigh", model=name, revision=v2),
                             timeout=90, interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{prometheus_view(monitoring, name)}") from None
        error_alert_after = time.monotonic() - fault

        obj = wait_for("the rollback", lambda: (o := md(cluster, name))["status"].get("phase") == "RolledBack" and o,
                       timeout=120, interval=0.5)
        rolled_back = time.monotonic()
        wait_for("the rollback alert in Alertmanager",
                 lambda: active(monitoring, "KubentoModelRolledBack", model=name), timeout=60, interval=0.5)
        rollback_alert_after = time.monotonic() - rolled_back
        rollback_alert = active(monitoring, "KubentoModelRolledBack", model=name)[0]
        wait_for("the rollback's firing notification",
                 lambda: monitoring.hook.first("firing", alertname="KubentoModelRolledBack", model=name),
                 timeout=30, interval=0.5)

        wait_for("the error-ratio alert to be resolved",
                 lambda: monitoring.hook.first("resolved", alertname="KubentoModelErrorRatioHigh", model=name),
                 timeout=90, interval=0.5)
        error_resolved_after = time.monotonic() - rolled_back
        check_dashboard(monitoring, [name, steady])

    report(f"error-ratio alert in Alertmanager after the canary's first 500 (for: {RULE_VALUES['alerts.errorRatio.for']}, "
           f"window {RULE_VALUES['alerts.rateWindow']}, scrape/eval {INTERVAL})", error_alert_after)
    report("rollback alert in Alertmanager after status.phase became RolledBack", rollback_alert_after)
    report("error-ratio alert resolved (webhook) after the rollback", error_resolved_after)
    print(f"[monitoring] kubento top during the canary: {top}")
    assert condition(obj, "RolledBack")["reason"] == "AnalysisFailed"
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["namespace"] == NAMESPACE
    assert "%" in alert["annotations"]["summary"] and f"Revision {v2}" in alert["annotations"]["description"]
    assert rollback_alert["labels"]["reason"] == "AnalysisFailed"
    assert 0 < traffic.failed < traffic.ok and steady_traffic.failed == 0
    assert top["requestsPerSecond"] > 0 and top["pods"] >= 2 and top["canaryWeight"] == 50
    assert top["errorRatio"] is not None and 0 < top["errorRatio"] < 0.5  # the canary's share of 30%

    # Recovery: the spec goes back to the stable revision; the rollback alert resolves.
    apply_md(cluster, name, spec)
    wait_for("the model to be Ready on v1", lambda: settled(cluster, name), timeout=120, interval=0.5)
    recovered = time.monotonic()
    wait_for("the rollback alert to be resolved",
             lambda: monitoring.hook.first("resolved", alertname="KubentoModelRolledBack", model=name),
             timeout=60, interval=0.5)
    report("rollback alert resolved (webhook) after the spec was put back", time.monotonic() - recovered)


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    out += [(f"annotation {a['name']!r}", a["expr"]) for a in dash["annotations"]["list"] if a.get("expr")]
    out += [(f"variable {v['name']}", v["definition"]) for v in dash["templating"]["list"] if v["type"] == "query"]
    return out


def check_dashboard(stack, models: list[str]) -> None:
    """Every query of the dashboard, with its variables set to this
    namespace and these models, returns series from this Prometheus."""
    values = {"$namespace": NAMESPACE, "$model": "|".join(models), "$__rate_interval": "5m"}
    empty = []
    for where, expr in dashboard_queries():
        for var, value in values.items():
            expr = expr.replace(var, value)
        if expr.startswith("label_values("):  # a variable: the series it takes its values from
            inner = expr[len("label_values("):].rsplit(",", 1)[0]
            expr = inner
        if not stack.query(expr):
            empty.append(f"{where}: {expr}")
    assert not empty, "dashboard queries without series:\n" + "\n".join(empty)
