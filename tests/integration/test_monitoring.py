"""Monitoring against a real API server: the operator publishes each model's
state as it reconciles (and drops it when the model goes), and the chart's
PodMonitor, ServiceMonitor and PrometheusRule are valid objects of
prometheus-operator's own CRDs (from its Go module, hack/prometheus-operator-crds.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from tests.helpers import wait_for
from tests.integration.test_reconcile import settle
from tests.specs import VALID_SPEC

ROOT = Path(__file__).resolve().parents[2]


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_model_state_is_published_as_it_reconciles_and_dropped_with_the_model(controlplane, admin, namespace, md):
    name = md({**VALID_SPEC, "replicas": 2})
    model = {"namespace": namespace, "model": name}
    wait_for("the model's metrics", lambda: sample("kubento_model_desired_replicas", **model) == 2, timeout=30)
    assert sample("kubento_model_ready", **model) == 0
    obj = settle(controlplane, admin, namespace, name)
    rev = obj["status"]["stableRevision"]
    wait_for("ready in the metrics", lambda: sample("kubento_model_ready", **model) == 1, timeout=30)
    assert sample("kubento_model_phase", **model, phase="Ready") == 1
    assert sample("kubento_model_phase", **model, phase="Progressing") == 0
    assert sample("kubento_model_ready_replicas", **model) == 2
    assert sample("kubento_model_revision_info", **model, role="stable", revision=rev) == 1
    assert sample("kubento_model_condition", **model, condition="Ready", status="true", reason="Ready") == 1
    assert sample("kubento_rollbacks_total", **model, reason="AnalysisFailed") == 0

    controlplane.kubectl("delete", "md", name, "-n", namespace)
    wait_for("the model's series to go", lambda: sample("kubento_model_ready", **model) is None, timeout=60)
    assert sample("kubento_model_phase", **model, phase="Ready") is None
    assert sample("kubento_rollout_events_total", **model, event="started") is None


def test_chart_monitors_and_rules_are_valid_prometheus_operator_objects(controlplane, helm):
    crds = Path(subprocess.run([str(ROOT / "hack" / "prometheus-operator-crds.sh")], capture_output=True, text=True,
                               check=True).stdout.strip())
    for kind in ("podmonitors", "servicemonitors", "prometheusrules"):
        controlplane.kubectl("apply", "--server-side", "-f", str(crds / f"monitoring.coreos.com_{kind}.yaml"))
        controlplane.kubectl("wait", "--for=condition=Established", f"crd/{kind}.monitoring.coreos.com", "--timeout=30s")
    rendered = subprocess.run(
        [helm, "template", "kubento", str(ROOT / "charts" / "kubento"), "--namespace", "kubento-system",
         "--kube-version", "1.34.4", "--set", "metrics.serviceMonitor.enabled=true",
         "--set", "metrics.podMonitor.enabled=true", "--set", "alerts.prometheusRule.enabled=true"],
        capture_output=True, text=True, check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in ("PodMonitor", "ServiceMonitor", "PrometheusRule")]
    assert sorted(d["kind"] for d in docs) == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    controlplane.kubectl("create", "namespace", "kubento-system", check=False)
    # Server-side dry run with strict field validation: an unknown or misplaced field is an error.
    proc = controlplane.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                                input=yaml.safe_dump_all(docs), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == 3, proc.stdout
