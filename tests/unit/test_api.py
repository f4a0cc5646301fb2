import pytest
from pydantic import ValidationError

from kubento.api.v1alpha1 import ModelDeploymentSpec
from tests.specs import FULL_SPEC, INVALID, VALID_SPEC


def test_minimal_spec_gets_documented_defaults():
    spec = ModelDeploymentSpec.model_validate(VALID_SPEC)
    assert spec.replicas == 1
    assert spec.port == 3000
    assert spec.rollout.strategy == "RollingUpdate"
    assert spec.rollout.auto_rollback is True
    assert spec.bento.kind == "image"


def test_full_spec_round_trips_to_the_same_wire_form():
    spec = ModelDeploymentSpec.model_validate(FULL_SPEC)
    wire = spec.wire()
    for key, value in FULL_SPEC.items():
        if key in ("rollout", "autoscaling"):  # with their defaults filled in
            assert {k: wire[key][k] for k in value} == value
        else:
            assert wire[key] == value, key


def test_autoscaling_target_defaults_by_metric():
    spec = ModelDeploymentSpec.model_validate(
        {**VALID_SPEC, "autoscaling": {"maxReplicas": 3, "metric": "concurrency"}}
    )
    assert spec.autoscaling.effective_target == 10


@pytest.mark.parametrize("case", [c for c in INVALID if c.pydantic], ids=lambda c: c.id)
def test_invalid_spec_is_rejected_by_the_models(case):
    with pytest.raises(ValidationError):
        ModelDeploymentSpec.model_validate(case.spec)


def test_a_json_path_must_parse():
    """Syntax beyond the leading $ is the models' rule (CEL has no JSONPath parser): the operator
    refuses such a spec with InvalidSpec naming the path."""
    from tests.specs import checks

    with pytest.raises(ValidationError, match="not an RFC 9535 JSONPath"):
        ModelDeploymentSpec.model_validate(checks(expect=[{"jsonPath": "$[", "equals": "setosa"}]))
    spec = ModelDeploymentSpec.model_validate(checks(expect=[{"jsonPath": "$.rows[?@.p > 0.5].label",
                                                              "oneOf": ["a", "b"]}]))
    assert spec.prediction_checks.checks[0].method == "POST" and spec.prediction_checks.checks[0].timeout == "5s"
