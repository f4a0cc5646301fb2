"""Autoscaling against a real API server: kubento's own autoscaler shows its
inputs and decision in status and sizes the model; the HPA gets the spec's
behavior. (No kubelet here: no pod answers /metrics, so the autoscaler has
no data; e2e/test_autoscaling.py drives it with real load.)"""

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import wait_established, condition, wait_for
from tests.integration.conftest import get_json, newest_deployment
from tests.integration.test_reconcile import md_get, play_deployment_controller
from tests.specs import VALID_SPEC


def test_own_autoscaler_without_data_holds_min_replicas_and_says_so(controlplane, namespace, md):
    name = md({**VALID_SPEC, "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "metric": "concurrency", "target": 4}})
    st = wait_for("status.autoscaling", lambda: md_get(controlplane, namespace, name).get("status", {}).get("autoscaling"))
    assert (st["metric"], st["target"], st["desiredReplicas"], st["reason"]) == ("concurrency", 4.0, 2, "NoData")
    assert "no metrics" in st["message"]
    wait_for("2 replicas", lambda: newest_deployment(controlplane, namespace, name)["spec"]["replicas"] == 2)
    assert get_json(controlplane, "hpa", name, "-n", namespace) is None  # kubento's own, not an HPA
    # Switching to cpu hands the model to an HPA with the spec's behavior.
    md({**VALID_SPEC, "resources": {"requests": {"cpu": "100m"}},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "metric": "cpu",
                        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}, name=name)
    hpa = wait_for("the HPA", lambda: get_json(controlplane, "hpa", name, "-n", namespace))
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60
    wait_for("status.autoscaling to go", lambda: "autoscaling" not in md_get(controlplane, namespace, name)["status"])


KEDA = "github.com/kedacore/keda/v2@v2.21.0"


@pytest.fixture(scope="session")
def keda_crd() -> Path:
    """KEDA's own ScaledObject CRD, from its Go module (downloaded through the
    module proxy into the Go module cache, as the Kubernetes sources are)."""
    proc = subprocess.run(["go", "mod", "download", "-json", KEDA], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"go mod download {KEDA} failed: {proc.stdout[-1000:]}{proc.stderr[-1000:]}"
    path = Path(json.loads(proc.stdout)["Dir"]) / "config" / "crd" / "bases" / "keda.sh_scaledobjects.yaml"
    assert path.is_file(), path
    return path


def test_keda_provider_waits_for_keda_then_makes_a_scaled_object(controlplane, admin, namespace, md, keda_crd):
    spec = {**VALID_SPEC, "resources": {"requests": {"cpu": "100m"}},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "metric": "cpu", "target": 60, "provider": "keda",
                            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}}}
    name = md(spec)
    # No KEDA yet: the model runs, and status says what is missing.
    wait_for("the Deployment", lambda: newest_deployment(controlplane, namespace, name))
    play_deployment_controller(admin, namespace, name)
    obj = wait_for("Degraded KEDANotInstalled",
                   lambda: (o := md_get(controlplane, namespace, name)) and condition(o, "Degraded").get("reason") == "KEDANotInstalled" and o)
    assert "install KEDA" in condition(obj, "Degraded")["message"]
    assert get_json(controlplane, "hpa", name, "-n", namespace) is None

    controlplane.kubectl("apply", "--server-side", "-f", str(keda_crd))
    wait_established(controlplane.kubectl, "scaledobjects.keda.sh")
    so = wait_for("the ScaledObject", lambda: get_json(controlplane, "scaledobjects.keda.sh", name, "-n", namespace), timeout=40)
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "serving.kubento.io/v1alpha1", "kind": "ModelDeployment", "name": name}
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 4)
    assert so["spec"]["triggers"] == [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}]
    assert so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30
    assert so["metadata"]["ownerReferences"][0]["name"] == name
    wait_for("the condition to clear",
             lambda: condition(md_get(controlplane, namespace, name), "Degraded").get("reason") != "KEDANotInstalled")

    # Back to kubento's provider: the ScaledObject goes, an HPA comes.
    md({**spec, "autoscaling": {**spec["autoscaling"], "provider": "kubento"}}, name=name)
    wait_for("the HPA", lambda: get_json(controlplane, "hpa", name, "-n", namespace))
    wait_for("the ScaledObject to go", lambda: get_json(controlplane, "scaledobjects.keda.sh", name, "-n", namespace) is None)
