"""Prediction checks' pure parts: does an answer match what a check expects
(kubento.predictions.expect), and the gate decision on each pod
(kubento.predictions.gate). No cluster, no HTTP."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given, strategies as st

from kubento.api.v1alpha1 import Agreement, Expectation, PredictionCheck, PredictionChecks, StableComparison
from kubento.predictions import gate
from kubento.predictions.expect import (
    Response,
    agreement,
    judge,
    judge_response,
    parse_answer,
    same,
    select,
    within,
)


def check(**kw) -> PredictionCheck:
    base = {"name": "setosa", "path": "/classify", "body": {"features": [[5.1, 3.5, 1.4, 0.2]]},
            "expect": [{"jsonPath": "$[0]", "equals": "setosa"}]}
    return PredictionCheck.model_validate({**base, **kw})


def exp(**kw) -> Expectation:
    return Expectation.model_validate(kw)


# ------------------------------------------------------------- equality


def test_json_equality_is_json_not_python():
    assert same({"a": [1, "x", None]}, {"a": [1.0, "x", None]})
    assert not same(True, 1) and not same(1, True) and not same(0, False)
    assert same(False, False) and not same(False, True)
    assert not same("1", 1) and not same(1, "1")
    assert not same([1, 2], [2, 1]) and not same([1], [1, 1])
    assert not same({"a": 1}, {"a": 1, "b": 2})
    assert not same(None, 0) and same(None, None)
    assert same({"p": [0.9, 0.1]}, {"p": [Decimal("0.91"), Decimal("0.09")]}, tolerance=0.01)


def test_numbers_within_tolerance_at_the_edge_as_on_paper():
    # Binary floats say 0.8 - 0.7 > 0.1; kubento compares the decimals that were written.
    assert 0.8 - 0.7 > 0.1
    assert within(0.7, 0.8, 0.1) and within(0.8, 0.7, 0.1)
    assert not within(0.7, 0.8000001, 0.1)
    assert within(0.1, Decimal("0.3"), 0.2) and not within(0.1, Decimal("0.30000000000000004"), 0.2)
    assert within(10**30, 10**30 + 1, 1) and not within(10**30, 10**30 + 2, 1)


def test_nan_never_matches_and_infinity_only_itself():
    nan, inf = float("nan"), float("inf")
    assert not within(nan, nan, 1) and not within(1, nan, inf) and not within(nan, 1, inf)
    assert within(inf, inf, 0) and not within(inf, -inf, inf) and not within(1e308, inf, 1e308)
    assert within(1, 1e300, inf)
    assert not within(1, 1, -1)


decimals = st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=6, allow_nan=False,
                       allow_infinity=False)


@given(decimals, st.decimals(min_value=0, max_value=Decimal("1e6"), places=6))
def test_tolerance_edges_hold_for_values_written_in_decimal(expected, tolerance):
    """Values a user writes (decimals, then parsed as floats from the spec and
    as text from the answer) are within tolerance exactly up to the edge,
    and not one written digit beyond it."""
    e, t = float(str(expected)), float(str(tolerance))
    assume(Decimal(repr(e)) == expected and Decimal(repr(t)) == tolerance)  # the float is that decimal
    for sign in (1, -1):
        edge = expected + sign * tolerance
        beyond = edge + sign * Decimal("0.000001")
        assert within(e, parse_answer(str(edge)), t), (expected, tolerance, edge)
        assert not within(e, parse_answer(str(beyond)), t), (expected, tolerance, beyond)


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(finite, finite, st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_tolerance_is_the_exact_distance_between_the_floats_shortest_decimals(a, b, t):
    distance = abs(Fraction(repr(b)) - Fraction(repr(a)))
    assert within(a, b, t) == (distance <= Fraction(repr(t)))
    assert within(a, b, t) == within(b, a, t)  # symmetric
    if within(a, b, t):
        assert within(a, b, t * 2 if math.isfinite(t * 2) else t)  # a larger tolerance never fails what passed


@given(finite)
def test_a_value_is_within_zero_of_itself(x):
    assert within(x, x, 0) and within(x, parse_answer(json.dumps(x)), 0)


@given(st.booleans(), st.integers(-2, 2))
def test_a_boolean_is_never_a_number(b, n):
    e = exp(jsonPath="$.x", number=n, tolerance=5)
    assert not judge(e, {"x": b}).ok
    assert not same(b, n)


# ------------------------------------------------------------ expectations


def test_equals_at_a_json_path():
    e = exp(jsonPath="$[0]", equals="setosa")
    assert judge(e, ["setosa"]).ok
    j = judge(e, ["virginica"])
    assert not j.ok and (j.expected, j.got) == ('$[0] = "setosa"', '"virginica"')
    assert judge(exp(equals=["setosa", "virginica"]), ["setosa", "virginica"]).ok  # the whole answer


def test_several_matches_are_a_list_for_equals_and_each_for_number_and_labels():
    answer = {"rows": [{"label": "a", "p": 0.9}, {"label": "b", "p": 0.8}]}
    assert judge(exp(jsonPath="$.rows[*].label", equals=["a", "b"]), answer).ok
    assert judge(exp(jsonPath="$.rows[*].p", number=0.85, tolerance=0.05), answer).ok
    assert not judge(exp(jsonPath="$.rows[*].p", number=0.9, tolerance=0.05), answer).ok
    assert judge(exp(jsonPath="$.rows[*].label", oneOf=["a", "b", "c"]), answer).ok
    assert not judge(exp(jsonPath="$.rows[*].label", oneOf=["a"]), answer).ok


def test_a_number_must_be_a_number_and_a_label_one_of_the_set():
    assert judge(exp(jsonPath="$.p", number=0.97, tolerance=0.02), {"p": Decimal("0.955")}).ok
    assert not judge(exp(jsonPath="$.p", number=0.97, tolerance=0.02), {"p": "0.97"}).ok
    j = judge(exp(jsonPath="$[0]", oneOf=["versicolor", "virginica"]), ["setosa"])
    assert not j.ok and j.expected == '$[0] in ["versicolor","virginica"]'


def test_nothing_at_the_path_fails_and_says_so():
    j = judge(exp(jsonPath="$.label", equals="setosa"), ["setosa"])
    assert not j.ok and j.got.startswith("nothing at $.label")
    assert select("$.a.b", {"a": {"b": [1]}}) == [[1]]


# ----------------------------------------------------------------- responses


def test_a_wrong_answer_fails_at_once_with_expected_and_got():
    r = judge_response(check(), Response(200, '["virginica"]', 0.01))
    assert (r.ok, r.retry) == (False, False)
    assert r.message == 'check setosa: expected $[0] = "setosa", got "virginica"'
    assert judge_response(check(), Response(200, '["setosa"]', 0.01)).ok


def test_no_answer_and_5xx_are_retried_4xx_is_not():
    assert judge_response(check(), Response(None, error="timed out after 5.0s")).retry
    assert judge_response(check(), Response(503, "overloaded")).retry
    r = judge_response(check(), Response(400, '{"error":"features: field required"}'))
    assert not r.ok and not r.retry and r.got.startswith("HTTP 400")


def test_long_values_are_shortened_in_messages():
    r = judge_response(check(expect=[{"equals": ["x" * 300]}]), Response(200, json.dumps(["y" * 300])))
    assert len(r.expected) <= 80 and len(r.got) <= 80 and r.got.endswith("…")


def test_every_expectation_of_a_check_must_hold():
    c = check(expect=[{"jsonPath": "$.label", "equals": "setosa"}, {"jsonPath": "$.p", "number": 0.9, "tolerance": 0.05}])
    assert judge_response(c, Response(200, '{"label":"setosa","p":0.93}')).ok
    r = judge_response(c, Response(200, '{"label":"setosa","p":0.5}'))
    assert not r.ok and r.expected == "$.p = 0.9 ± 0.05" and r.got == "0.5"


# ------------------------------------------------------------------ agreement


COMPARE = StableComparison.model_validate({"inputs": {"configMapKeyRef": {"name": "in", "key": "rows"}},
                                           "path": "/classify", "minAgreement": 0.95})


def test_agreement_rate_leaves_out_what_stable_did_not_answer():
    ok = lambda body: Response(200, body)  # noqa: E731
    pairs = [({"i": 1}, ok('["a"]'), ok('["a"]')), ({"i": 2}, ok('["b"]'), ok('["c"]')),
             ({"i": 3}, Response(500, "boom"), ok('["x"]')), ({"i": 4}, ok('["d"]'), Response(None, error="refused"))]
    a = agreement(COMPARE, pairs)
    assert (a.agreed, a.compared, a.rate, a.passed) == (1, 3, 0.3333, False)
    assert 'first disagreement: input {"i":2}: stable ["b"], new ["c"]' in a.message
    assert "agreement 33% (1 of 3 inputs) < minAgreement 95%" in a.message


def test_agreement_within_tolerance_and_at_a_path():
    spec = COMPARE.model_copy(update={"json_path": "$.label", "tolerance": 0.0, "min_agreement": 1.0})
    pairs = [(1, Response(200, '{"label":"a","p":0.9}'), Response(200, '{"label":"a","p":0.4}'))]
    assert agreement(spec, pairs).passed
    spec = COMPARE.model_copy(update={"tolerance": 0.05, "min_agreement": 1.0})
    assert agreement(spec, [(1, Response(200, "[0.9]"), Response(200, "[0.94]"))]).passed
    assert not agreement(spec, [(1, Response(200, "[0.9]"), Response(200, "[0.96]"))]).passed


def test_no_comparable_input_is_no_pass():
    a = agreement(COMPARE, [(1, Response(None, error="refused"), Response(200, "[1]"))])
    assert (a.compared, a.passed) == (0, False)


# --------------------------------------------------------------------- inputs


def test_bodies_from_config_maps_and_what_is_missing():
    checks = PredictionChecks.model_validate({
        "checks": [{"name": "a", "path": "/p", "bodyFrom": {"configMapKeyRef": {"name": "golden", "key": "a.json"}},
                    "expect": [{"equals": 1}]},
                   {"name": "b", "path": "/p", "body": {"x": 1.5}, "expect": [{"equals": 1}]},
                   {"name": "c", "path": "/healthz", "method": "GET", "expect": [{"equals": "ok"}]}],
        "compareWithStable": {"inputs": {"configMapKeyRef": {"name": "golden", "key": "rows"}}, "path": "/p",
                              "minAgreement": 0.9, "maxInputs": 2}})
    assert checks.config_maps() == {"golden"}
    got = gate.resolve(checks, {"golden": {"data": {"a.json": '{"x": 0.10}', "rows": '[1]\n\n[2]\n[3]\n'}}})
    assert got.error == "" and got.bodies == {"a": b'{"x":0.1}', "b": b'{"x":1.5}', "c": None}
    assert got.lines == [[1], [2]]
    assert gate.resolve(checks, {"golden": None}).error == \
        "ConfigMap golden (predictionChecks.checks[a].bodyFrom) does not exist"
    assert "has no key rows" in gate.resolve(checks, {"golden": {"data": {"a.json": "{}"}}}).error
    assert "line 2 of ConfigMap golden key rows is not JSON" in gate.resolve(
        checks, {"golden": {"data": {"a.json": "{}", "rows": "[1]\nnope"}}}).error


# ------------------------------------------------------------------- the gate


STAMP = "2026-01-01T00:00:10Z"
READY_AT = "2026-01-01T00:00:05Z"


def pod(name, *, ready=True, gate_=None, deleting=False, ready_at=READY_AT):
    conditions = [{"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": ready_at}]
    if gate_ is not None:
        conditions.append({"type": gate.GATE, **gate_})
    meta = {"name": name, "uid": f"uid-{name}"}
    if deleting:
        meta["deletionTimestamp"] = STAMP
    return {"metadata": meta, "status": {"podIP": "10.0.0.1", "conditions": conditions}}


PASSED = {"status": "True", "reason": gate.PASSED, "message": "1 check passed", "lastProbeTime": READY_AT}


def test_pod_states():
    assert gate.pod_state(pod("a", ready=False)) == "waiting"
    assert gate.pod_state(pod("a")) == "due"
    assert gate.pod_state(pod("a", gate_=PASSED)) == "passed"
    assert gate.pod_state(pod("a", gate_=PASSED, ready=False)) == "revoke"  # a container restarted
    # Ready again since it passed (the operator missed the restart): checked again.
    assert gate.pod_state(pod("a", gate_=PASSED, ready_at="2026-01-01T00:09:00Z")) == "due"
    assert gate.pod_state(pod("a", gate_={"status": "False", "reason": gate.FAILED})) == "failed"
    assert gate.pod_state(pod("a", gate_={"status": "False", "reason": "CheckRetrying"})) == "due"
    assert gate.pod_state(pod("a", deleting=True)) == "gone"


CHECKS = {"r1": gate.RevisionChecks(PredictionChecks.model_validate({"checks": [check().wire()]}), 3000)}


def result(ok=True, retry=False, attempt=1, error=""):
    from kubento.predictions.expect import CheckResult
    r = CheckResult("setosa", ok, retry, '$[0] = "setosa"', '"setosa"' if ok else '"virginica"', 0.012)
    return gate.PodResult((r,), attempt, error, READY_AT)


def test_a_passing_pod_gets_its_gate_with_the_ready_time_recorded():
    out = gate.plan_gates({"r1": [pod("a")]}, CHECKS, {"uid-a": result()}, stable=None, candidate=None,
                          agreement=None, stamp=STAMP)
    [(name, cond)] = out.conditions
    assert name == "a" and (cond["status"], cond["reason"], cond["lastProbeTime"]) == ("True", gate.PASSED, READY_AT)
    assert cond["message"] == "1 check passed (slowest 12ms)" and not out.failures and not out.events


def test_a_failing_pod_is_held_out_named_and_its_revision_failed():
    out = gate.plan_gates({"r1": [pod("a")]}, CHECKS, {"uid-a": result(ok=False)}, stable=None, candidate=None,
                          agreement=None, stamp=STAMP)
    [(_, cond)] = out.conditions
    assert (cond["status"], cond["reason"]) == ("False", gate.FAILED)
    assert cond["message"] == 'check setosa: expected $[0] = "setosa", got "virginica"'
    assert out.failures == {"r1": (gate.FAILED, f"pod a: {cond['message']}")}
    assert out.events == [("Warning", gate.FAILED, f"pod a (revision r1): {cond['message']}")]


def test_no_answer_is_retried_then_fails():
    first = gate.plan_gates({"r1": [pod("a")]}, CHECKS, {"uid-a": result(ok=False, retry=True)}, stable=None,
                            candidate=None, agreement=None, stamp=STAMP)
    assert first.conditions[0][1]["reason"] == "CheckRetrying" and not first.failures
    assert first.requeue_after == gate.RETRY_SECONDS
    last = gate.plan_gates({"r1": [pod("a")]}, CHECKS, {"uid-a": result(ok=False, retry=True, attempt=3)},
                           stable=None, candidate=None, agreement=None, stamp=STAMP)
    assert last.conditions[0][1]["reason"] == gate.FAILED and "r1" in last.failures


def test_settled_pods_ask_for_nothing_and_failures_stay_failures():
    failed = {"status": "False", "reason": gate.FAILED, "message": "check setosa: ..."}
    out = gate.plan_gates({"r1": [pod("a", gate_=PASSED), pod("b", gate_=failed), pod("c", ready=False)]}, CHECKS,
                          {}, stable=None, candidate=None, agreement=None, stamp=STAMP)
    assert out.conditions == [] and out.failures == {"r1": (gate.FAILED, "pod b: check setosa: ...")}
    assert gate.due({"r1": [pod("a", gate_=PASSED), pod("b", gate_=failed), pod("c", ready=False)]}, CHECKS,
                    None, None, None) == []


def test_a_pass_is_revoked_when_the_containers_stop_being_ready():
    out = gate.plan_gates({"r1": [pod("a", gate_=PASSED, ready=False)]}, CHECKS, {}, stable=None, candidate=None,
                          agreement=None, stamp=STAMP)
    assert [(n, c["status"], c["reason"]) for n, c in out.conditions] == [("a", "False", "ContainersNotReady")]


def test_a_new_revision_waits_for_its_comparison_with_stable_and_fails_on_a_mismatch():
    checks = {"r2": gate.RevisionChecks(PredictionChecks.model_validate({
        "checks": [check().wire()], "compareWithStable": COMPARE.wire()}), 3000)}
    pods = {"r2": [pod("new")]}
    [d] = gate.due(pods, checks, "r1", "r2", None)
    assert d.compare  # its comparison runs with its checks
    recorded = Agreement(rate=1.0, agreed=5, compared=5, min_agreement=0.95, passed=True)
    assert not gate.due(pods, checks, "r1", "r2", recorded)[0].compare  # recorded: not again
    assert not gate.due(pods, checks, None, None, None)[0].compare  # nothing to compare with
    kw = dict(stable="r1", candidate="r2", stamp=STAMP)
    waiting = gate.plan_gates(pods, checks, {"uid-new": result()}, agreement=None, **kw)
    assert waiting.conditions[0][1]["reason"] == "Comparing" and not waiting.failures
    good = Agreement(rate=1.0, agreed=5, compared=5, min_agreement=0.95, passed=True,
                     message="agreement 100% (5 of 5 inputs) >= minAgreement 95% with the stable revision")
    passed = gate.plan_gates(pods, checks, {"uid-new": result()}, agreement=good, **kw)
    assert passed.conditions[0][1]["status"] == "True" and "agreement 100%" in passed.conditions[0][1]["message"]
    bad = Agreement(rate=0.6, agreed=3, compared=5, min_agreement=0.95, passed=False,
                    message="agreement 60% (3 of 5 inputs) < minAgreement 95% with the stable revision")
    failed = gate.plan_gates(pods, checks, {"uid-new": result()}, agreement=bad, **kw)
    assert failed.conditions[0][1]["reason"] == gate.MISMATCH and failed.failures["r2"][0] == gate.MISMATCH


def test_missing_inputs_hold_the_pod_and_say_why_without_failing_it():
    out = gate.plan_gates({"r1": [pod("a")]}, CHECKS, {"uid-a": result(error="ConfigMap golden ... does not exist")},
                          stable=None, candidate=None, agreement=None, stamp=STAMP)
    assert out.conditions[0][1]["reason"] == "CheckInputsMissing" and not out.failures
    assert out.problems == [("CheckInputsMissing", "pods of revision r1 cannot be checked: ConfigMap golden ... "
                             "does not exist")]


@pytest.mark.parametrize("bad", ["not json", json.dumps({"port": 3000}), json.dumps({"predictionChecks": {}})])
def test_an_unreadable_checks_annotation_is_ignored(bad):
    dep = {"metadata": {"annotations": {gate.ANNOTATION_CHECKS: bad}}}
    assert gate.revision_checks({"r1": dep}) == {}


def test_the_readme_example_is_valid_and_its_inputs_resolve():
    from pathlib import Path

    import yaml

    from kubento.api.v1alpha1 import ModelDeploymentSpec

    path = Path(__file__).resolve().parents[2] / "examples" / "iris" / "modeldeployment-checks.yaml"
    config_map, md = yaml.safe_load_all(path.read_text())
    checks = ModelDeploymentSpec.model_validate(md["spec"]).prediction_checks
    got = gate.resolve(checks, {config_map["metadata"]["name"]: config_map})
    assert got.error == "" and len(got.lines) == 6
    assert json.loads(got.bodies["many-rows"])["features"][2] == [5.9, 3.0, 4.2, 1.5]
    page = (path.parents[2] / "docs" / "concepts" / "prediction-checks.md").read_text()
    assert "predictionChecks:" in page and "kubento check iris" in page
