"""Invalid specs are rejected at `kubectl apply` by the real API server, with
the offending field named; the CRD explains itself and prints its columns."""

import pytest
import yaml

from tests.specs import FULL_SPEC, INVALID, model_deployment


def manifest(name, spec, namespace):
    return yaml.safe_dump(model_deployment(name, namespace, spec))


@pytest.mark.parametrize("case", [c for c in INVALID if c.admission], ids=lambda c: c.id)
def test_invalid_spec_is_rejected_naming_the_field(controlplane, namespace, case):
    proc = controlplane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=manifest(case.name, case.spec, namespace), check=False
    )
    assert proc.returncode != 0, f"{case.id} was accepted"
    assert case.field in proc.stderr, proc.stderr
    assert case.message in proc.stderr, proc.stderr


def test_full_valid_spec_is_accepted(controlplane, namespace):
    controlplane.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest("full", FULL_SPEC, namespace))


def test_kubectl_explain_describes_the_fields(controlplane):
    out = controlplane.kubectl("explain", "modeldeployment.spec.bento").stdout
    assert "exactly one of image, archive or build" in out
    assert "bentoml containerize" in out
    out = controlplane.kubectl("explain", "md.spec.autoscaling.metric").stdout
    assert "cpu, memory, concurrency or rps" in out
    out = " ".join(controlplane.kubectl("explain", "md.spec.podOverlay.containers").stdout.split())
    assert "Merged by name" in out and "securityContext" in out and "livenessProbe" in out
    out = " ".join(controlplane.kubectl("explain", "md.spec.volumes.persistentVolumeClaim.claimName").stdout.split())
    assert "claimName is the name of a PersistentVolumeClaim" in out
    out = " ".join(controlplane.kubectl("explain", "md.spec.startupTimeoutSeconds").stdout.split())
    assert "progressDeadlineSeconds must be at least as long" in out


def test_kubectl_get_shows_the_printer_columns(controlplane, namespace):
    controlplane.kubectl("apply", "-f", "-", input=manifest("columns", {"bento": {"image": "x:1"}}, namespace))
    try:
        header = controlplane.kubectl("get", "md", "columns", "-n", namespace).stdout.splitlines()[0].split()
        assert header == ["NAME", "READY", "PHASE", "REVISION", "REPLICAS", "URL", "AGE"]
        wide = controlplane.kubectl("get", "md", "columns", "-n", namespace, "-o", "wide").stdout.splitlines()[0]
        assert "AVAILABLE" in wide
        assert "md" in controlplane.kubectl("api-resources", "--api-group=serving.kubento.io").stdout
    finally:
        controlplane.kubectl("delete", "md", "columns", "-n", namespace)


@pytest.mark.parametrize("case", [c for c in INVALID if not c.admission], ids=lambda c: c.id)
def test_what_cel_cannot_see_the_operator_refuses_naming_the_field(controlplane, namespace, md, case):
    """CEL has no type for "any JSON" fields (an expected value), so a rule
    about them is the models' alone: the API server accepts the spec, the
    operator refuses it (phase Failed, InvalidSpec) and changes nothing."""
    from tests.helpers import condition, wait_for
    from tests.integration.conftest import get_json, model_deployments

    name = md(case.spec)
    obj = wait_for("InvalidSpec", lambda: (o := get_json(controlplane, "md", name, "-n", namespace))
                   and condition(o, "Ready").get("reason") == "InvalidSpec" and o)
    message = condition(obj, "Ready")["message"]
    assert case.field in message and case.message in message
    assert obj["status"]["phase"] == "Failed" and model_deployments(controlplane, namespace, name) == []
