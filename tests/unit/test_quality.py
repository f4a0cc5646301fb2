"""Data quality as pure functions (issue #28): field paths and buckets
(kubento.runtime.fields), profiles and what a revision is told and judged
with (kubento.quality.profile), Jensen-Shannon scores and windows
(kubento.quality.drift), the OutputShift verdict and rollback, the plan of a
monitored model, the operator's gauges and ``kubento drift``'s text."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, strategies as st

from kubento.api.v1alpha1 import Analysis, ModelDeploymentSpec, Statistics
from kubento.builders.env_job import env_source
from kubento.controller import metrics
from kubento.controller.observation import Inputs
from kubento.quality import drift
from kubento.quality.profile import (
    ANNOTATION_MONITORING,
    build_profile,
    deciles,
    judged_of,
    parse_profile,
    read_pairs,
    revision_monitoring,
)
from kubento.rollout import strategy
from kubento.rollout.analysis import Sample, evaluate, parse_metrics, since, total
from kubento.runtime import fields
from tests.unit.test_plan import Toy, settle

# ------------------------------------------------------------------ fields


def test_field_paths_select_rows_and_values_and_refuse_anything_else():
    body = {"features": [[5.1, 3.5], [6.2, None]], "user": {"email": "a@b", "id": 7}}
    assert fields.select(body, fields.compile_path("$.features[*]")) == [[5.1, 3.5], [6.2, None]]
    assert fields.select(body, fields.compile_path("$.features[*][1]")) == [3.5, None]
    assert fields.select(body, fields.compile_path("$['user'].email")) == ["a@b"]
    assert fields.select(body, fields.compile_path("$.features[-1][0]")) == [6.2]
    assert fields.select(body, fields.compile_path("$.missing[0]")) == []
    for bad in ("features", "$..x", "$[?@.a]", "$.a b", "$[1:2]", "$" + ".a" * 17):
        with pytest.raises(ValueError):
            fields.compile_path(bad)


def test_redact_drops_and_hashes_what_the_paths_reach_in_a_copy():
    body = {"rows": [{"email": "a@b", "id": 1, "x": 2}, {"email": "c@d", "id": 1, "x": 3}]}
    out = fields.redact(body, [fields.compile_path("$.rows[*].email")], [fields.compile_path("$.rows[*].id")], "s")
    assert [set(r) for r in out["rows"]] == [{"id", "x"}, {"id", "x"}]
    assert out["rows"][0]["id"] == out["rows"][1]["id"] != fields.hash_value(1, "other salt")
    assert body["rows"][0]["email"] == "a@b"  # the original is untouched
    assert fields.redact([1, 2, 3], [fields.compile_path("$[1]")]) == [1, 3]


def test_buckets_are_upper_bounds_and_categories_outside_the_list_are_other():
    bounds = [1.0, 2.5]
    assert [fields.bucket_of(v, "numeric", bounds) for v in (0, 1, 1.0001, 2.5, 9, None, "3", True, math.inf)] == \
        ["1.0", "1.0", "2.5", "2.5", "+Inf", None, None, None, None]
    cats = ["setosa", "1"]
    assert [fields.bucket_of(v, "categorical", categories=cats) for v in ("setosa", 1, "x", None, [1])] == \
        ["setosa", "1", fields.OTHER, None, None]


# ----------------------------------------------------------------- profile

STATS = Statistics.model_validate({
    "endpoint": "/classify", "inputRows": "$.features[*]", "outputRows": "$[*]",
    "inputs": [{"name": "sepal_length", "path": "$[0]"}, {"name": "petal_length", "path": "$[2]", "buckets": [2.5]},
               {"name": "site", "path": "$[4]", "type": "categorical"}],
    "output": {"path": "$"}, "reference": {"configMapKeyRef": {"name": "iris-profile", "key": "profile.json"}}})


def pairs(n: int, seed: int = 1):
    rng = random.Random(seed)
    for _ in range(n):
        rows = [[round(rng.gauss(5.8, 0.8), 1), 3.0, round(rng.uniform(1, 7), 1), 1.0, rng.choice("aab")]
                for _ in range(2)]
        yield {"features": rows}, ["setosa" if r[2] < 2.5 else "virginica" for r in rows]


def test_deciles_are_values_of_the_data_without_repeats():
    assert deciles(list(range(1, 101))) == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert deciles([1, 1, 1, 2]) == [1]
    assert deciles([]) == [] and deciles([3, 3]) == []


def test_a_profile_counts_every_field_with_the_specs_buckets_or_its_own():
    profile = build_profile(STATS, pairs(200), source="train.jsonl", now=0)
    assert profile.requests == 200 and profile.rows == 400
    sepal, petal, site = (profile.inputs[n] for n in ("sepal_length", "petal_length", "site"))
    assert len(sepal.buckets) == 9 and sum(sepal.counts.values()) == 400  # deciles of the data
    assert petal.buckets == [2.5] and set(petal.counts) == {"2.5", "+Inf"}  # the spec's
    assert site.categories == ["a", "b"] and site.counts["a"] > site.counts["b"]
    assert profile.output.categories == ["virginica", "setosa"] and sum(profile.output.counts.values()) == 400
    assert parse_profile(profile.model_dump_json()) == profile
    with pytest.raises(ValueError, match="not a kubento profile"):
        parse_profile('{"kind": "something else"}')


def test_profiles_read_request_bodies_and_payload_records():
    lines = [json.dumps({"features": [[5.0, 3, 1.4, 0.2, "a"]]}),
             json.dumps({"kind": "kubento.payload/v1", "status": 200, "input": {"features": [[6, 3, 5, 2, "b"]]},
                         "output": ["virginica"]}),
             json.dumps({"kind": "kubento.payload/v1", "status": 400, "input": {"features": [[6, None, 5, 2]]},
                         "output": {"error": "x"}}), ""]
    got = list(read_pairs(lines))
    assert got == [({"features": [[5.0, 3, 1.4, 0.2, "a"]]}, None), ({"features": [[6, 3, 5, 2, "b"]]}, ["virginica"]),
                   ({"features": [[6, None, 5, 2]]}, None)]
    profile = build_profile(STATS, got)
    assert profile.inputs["site"].missing == 1 and profile.output.counts == {"virginica": 1}
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        list(read_pairs(["{oops"]))


def monitoring(**stats):
    spec = ModelDeploymentSpec.model_validate({
        "bento": {"archive": {"uri": "s3://m/iris.bento"}},
        "monitoring": {"statistics": {**STATS.wire(), **stats},
                       "payloads": {"sampleRate": 0.1, "drop": ["$.user"], "http": {"url": "http://sink/"},
                                    "files": {"claimName": "logs"}}}})
    return spec.monitoring


def test_a_revision_is_told_the_profiles_buckets_and_judged_with_its_counts():
    profile = build_profile(STATS, pairs(300))
    told, judged = revision_monitoring(monitoring(), "iris", profile, "iris-profile/profile.json")
    sepal = next(f for f in told["statistics"]["inputs"] if f["name"] == "sepal_length")
    assert sepal["buckets"] == profile.inputs["sepal_length"].buckets and sepal["path"] == "$[0]"
    assert told["payloads"] == {"sampleRate": 0.1, "maxBytes": 16384, "stdout": True, "drop": ["$.user"],
                                "http": {"url": "http://sink/", "timeout": 2.0},
                                "files": {"dir": "/var/lib/kubento/payloads/payloads", "maxBytes": 64 << 20,
                                          "maxAge": 3600.0}}
    j = judged_of(json.dumps(judged))
    assert j["inputs"]["sepal_length"].reference == {k: profile.inputs["sepal_length"].counts.get(k, 0.0)
                                                     for k in j["inputs"]["sepal_length"].labels}
    assert j["output"].labels == ("virginica", "setosa", fields.OTHER)
    # No profile: the spec's buckets only, nothing to judge drift against (and it says so).
    told, judged = revision_monitoring(monitoring(), "iris", None, "iris-profile/profile.json")
    assert next(f for f in told["statistics"]["inputs"] if f["name"] == "sepal_length")["buckets"] == []
    assert judged["inputs"]["sepal_length"]["note"] == "not in the profile iris-profile/profile.json"
    # A profile made with other buckets than the spec now gives: not used for that field.
    other = monitoring(inputs=[{"name": "petal_length", "path": "$[2]", "buckets": [1.0, 2.0]}])
    _, judged = revision_monitoring(other, "iris", profile, "p")
    assert "other buckets" in judged["inputs"]["petal_length"]["note"]
    assert judged_of("not json") is None and judged_of(None) is None


# ------------------------------------------------------------------- drift


@given(st.dictionaries(st.sampled_from("abcdef"), st.floats(0, 1e6), min_size=1),
       st.dictionaries(st.sampled_from("abcdef"), st.floats(0, 1e6), min_size=1))
def test_the_jensen_shannon_distance_is_bounded_symmetric_and_zero_on_the_same_shares(p, q):
    d = drift.js_distance(p, q)
    if sum(p.values()) <= 0 or sum(q.values()) <= 0:
        assert d is None
        return
    assert 0 <= d <= 1 and d == pytest.approx(drift.js_distance(q, p), abs=1e-12)
    assert drift.js_distance(p, {k: v * 3 for k, v in p.items()}) == pytest.approx(0, abs=1e-6)


def test_known_distances():
    assert drift.js_distance({"a": 1}, {"b": 1}) == 1.0  # disjoint
    half = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)) + 0.5 * math.log2(1 / 0.75)
    assert drift.js_distance({"a": 1, "b": 1}, {"a": 1}) == pytest.approx(math.sqrt(half))
    # a sample of the reference itself reads about expected_noise
    rng = random.Random(3)
    ref = {str(i): 1.0 for i in range(10)}
    live = {}
    for _ in range(1000):
        k = str(rng.randrange(10))
        live[k] = live.get(k, 0) + 1
    assert drift.js_distance(live, ref) == pytest.approx(drift.expected_noise(10, 1000), rel=0.5)


METRICS = """# TYPE kubento_input_total counter
kubento_input_total{feature="sepal_length",bucket="5.0"} 30
kubento_input_total{feature="sepal_length",bucket="+Inf"} 70
kubento_input_total{feature="sepal_length",bucket="not-a-bucket"} 1e9
kubento_input_total{feature="unknown",bucket="+Inf"} 5
# TYPE kubento_input_missing_total counter
kubento_input_missing_total{feature="sepal_length"} 10
# TYPE kubento_output_total counter
kubento_output_total{bucket="setosa"} 60
kubento_output_total{bucket="__other__"} 40
# TYPE kubento_monitor_rows_total counter
kubento_monitor_rows_total{side="input"} 110
kubento_monitor_rows_total{side="output"} 100
"""
JUDGED = {"inputs": {"sepal_length": drift.Judged(("5.0", "+Inf"), {"5.0": 50.0, "+Inf": 50.0}, 0.0)},
          "output": drift.Judged(("setosa", "__other__"), {"setosa": 90.0, "__other__": 10.0})}


def test_a_pods_counts_keep_only_what_its_revision_counts():
    counts = drift.pod_counts(METRICS, drift.wanted(JUDGED))
    assert counts == {("in", "sepal_length", "5.0"): 30, ("in", "sepal_length", "+Inf"): 70,
                      ("miss", "sepal_length"): 10, ("out", "setosa"): 60, ("out", "__other__"): 40,
                      ("rows", "input"): 110, ("rows", "output"): 100}
    r = drift.score("r1", JUDGED, counts, min_rows=100)
    (sepal,) = r.inputs
    assert sepal.rows == 110 and sepal.missing_ratio == pytest.approx(10 / 110)
    assert sepal.drift == pytest.approx(drift.js_distance({"a": 30, "b": 70}, {"a": 50, "b": 50}))
    assert r.output.drift == pytest.approx(drift.js_distance({"a": 60, "b": 40}, {"a": 90, "b": 10}))
    few = drift.score("r1", JUDGED, counts, min_rows=1000)
    assert few.inputs[0].drift is None and few.inputs[0].missing_ratio is None and "minRows" in few.inputs[0].note


def test_a_pod_window_sums_differences_and_survives_a_restart():
    w = drift.PodWindow()
    a = {("in", "f", "1"): 10.0}
    w.add(0, a, window=60)
    w.add(30, {("in", "f", "1"): 25.0}, window=60)
    w.add(45, {("in", "f", "1"): 4.0}, window=60)  # restarted: counts from zero again
    assert w.counts() == {("in", "f", "1"): 19.0}
    w.add(100, {("in", "f", "1"): 6.0}, window=60)  # the readings before t=40 leave the window
    assert [t for t, _ in w.readings] == [30, 45, 100] and w.counts() == {("in", "f", "1"): 6.0}
    assert w.covers() == 70


def test_a_candidate_is_compared_with_stable_only_with_enough_outputs():
    counts = drift.pod_counts(METRICS, drift.wanted(JUDGED))
    stable = drift.score("s", JUDGED, counts, 10)
    shifted = {**counts, ("out", "setosa"): 5.0, ("out", "__other__"): 95.0}
    cand = drift.against(drift.score("c", JUDGED, shifted, 10), stable, 10)
    assert cand.against_stable == pytest.approx(drift.js_distance({"a": 5, "b": 95}, {"a": 60, "b": 40}))
    assert drift.against(drift.score("c", JUDGED, shifted, 10), stable, 1000).against_stable is None


def test_the_operators_gauges_are_per_scored_revision_and_feature():
    counts = drift.pod_counts(METRICS, drift.wanted(JUDGED))
    stable = drift.score("s", JUDGED, counts, 10)
    cand = drift.against(drift.score("c", JUDGED, counts, 10), stable, 10)
    series = metrics.quality_series([stable, cand])
    assert set(series["kubento_model_input_drift"]) == {("s", "sepal_length"), ("c", "sepal_length")}
    assert series["kubento_model_output_shift"][("c", "stable")] == 0.0
    assert ("s", "stable") not in series["kubento_model_output_shift"]
    assert series["kubento_model_feature_reference_missing_ratio"][("s", "sepal_length")] == 0.0
    assert series["kubento_model_monitored_rows"][("c", "output")] == 100


# ------------------------------------------------------------ the OutputShift gate

BENTOML = """# TYPE bentoml_service_request_total counter
bentoml_service_request_total{endpoint="/classify",http_response_code="200"} %d
# TYPE kubento_output_total counter
kubento_output_total{bucket="setosa"} %d
kubento_output_total{bucket="virginica"} %d
kubento_output_total{bucket="<script>"} 99999
"""
SHIFT = Analysis.model_validate({"minRequests": 10, "outputShift": {"maxDistance": 0.2, "minOutputs": 50}})


def sample(requests, setosa, virginica):
    return parse_metrics(BENTOML % (requests, setosa, virginica), outputs={"setosa", "virginica", "__other__"})


def test_output_counts_are_read_for_the_labels_asked_only_and_follow_since_and_total():
    a = sample(100, 60, 40)
    assert a.outputs == (("setosa", 60.0), ("virginica", 40.0))
    assert since(a, sample(150, 90, 60)).outputs == (("setosa", 30.0), ("virginica", 20.0))
    assert since(a, sample(150, 10, 60)).outputs == (("setosa", 10.0), ("virginica", 60.0))  # a restart
    assert total([a, a]).outputs == (("setosa", 120.0), ("virginica", 80.0))
    assert parse_metrics(BENTOML % (1, 1, 1)).outputs == ()


def test_a_candidate_answering_another_class_mix_fails_with_output_shift():
    stable, candidate = sample(200, 120, 80), sample(200, 10, 190)
    v = evaluate(candidate, SHIFT, stable, compare_outputs=True)
    assert (v.result, v.reason, v.rollback_reason) == ("fail", "OutputShift", "OutputShift")
    assert "maxDistance 0.2" in v.message and "virginica 95%" in v.message and v.output_distance > 0.2
    same = evaluate(sample(200, 118, 82), SHIFT, stable, compare_outputs=True)
    assert same.result == "pass" and "<= maxDistance" in same.message
    few = evaluate(sample(200, 5, 5), SHIFT, stable, compare_outputs=True)
    assert (few.result, few.reason) == ("inconclusive", "NotEnoughOutputs")
    unmonitored = evaluate(candidate, SHIFT, stable, compare_outputs=False)
    assert unmonitored.result == "pass" and "outputs not compared: a revision counts no output" in unmonitored.message
    errors = Analysis.model_validate({"minRequests": 10, "maxErrorRate": 0.0,
                                      "outputShift": {"maxDistance": 0.2}})
    v = evaluate(Sample(100, 50, outputs=candidate.outputs), errors, stable, compare_outputs=True)
    assert (v.reason, v.rollback_reason) == ("ErrorRateTooHigh", "AnalysisFailed")


def test_a_failed_output_shift_verdict_rolls_back_with_its_reason():
    o = strategy.Observed("Canary", 2, strategy.Revision(2, 2), strategy.Revision(1, 1), now=100, since=0,
                          deadline=600, steps=(strategy.Step(50),), step_reached=50, service="both", analysis=True,
                          verdict="fail", verdict_message="output distribution 0.6 > maxDistance 0.2",
                          verdict_reason="OutputShift")
    p = strategy.plan(o)
    assert (p.outcome, p.reason, p.candidate) == ("RolledBack", "OutputShift", 0)


# ------------------------------------------------------------ the plan


def monitored_toy(**stats):
    spec = {"bento": {"archive": {"uri": "s3://models/iris.bento"}}, "runtimeImage": "rt:1",
            "monitoring": {"statistics": {**STATS.wire(), **stats}, "payloads": {"sampleRate": 0.5}}}
    toy = Toy(spec)
    parsed = ModelDeploymentSpec.model_validate(spec)
    from kubento.builders.bento import archive_bento

    toy.model["status"] = {"environment": {"source": env_source(archive_bento(parsed.bento.archive, "rt:1", []),
                                                                None), "packages": 0}}
    return toy


def deployment(toy):
    (dep,) = [o for (k, _), o in toy.children.items() if k == "Deployment"]
    return dep


def test_a_monitored_model_tells_its_pods_and_keeps_what_its_revision_is_judged_with():
    toy = monitored_toy()
    profile = build_profile(STATS, pairs(300))
    settle(toy, inputs=Inputs(now=0, profile=profile))
    dep = deployment(toy)
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    told = json.loads(env["KUBENTO_MONITORING"]["value"])
    assert told["model"] == "iris" and told["payloads"]["sampleRate"] == 0.5
    assert next(f for f in told["statistics"]["inputs"] if f["name"] == "site")["categories"] == ["a", "b"]
    assert env["KUBENTO_REVISION"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['serving.kubento.io/revision']"
    judged = judged_of(dep["metadata"]["annotations"][ANNOTATION_MONITORING])
    assert judged["inputs"]["petal_length"].labels == ("2.5", "+Inf") and judged["output"].reference
    assert toy.model["status"]["phase"] == "Ready"
    rev = toy.model["status"]["currentRevision"]

    # New counts, same buckets: the same revision (its judging annotation follows the profile).
    recounted = build_profile(STATS, pairs(300, seed=2))
    recounted.inputs["sepal_length"].buckets = profile.inputs["sepal_length"].buckets
    recounted.inputs["sepal_length"].counts = {k: v + 1 for k, v in profile.inputs["sepal_length"].counts.items()}
    settle(toy, inputs=Inputs(now=0, profile=recounted))
    assert toy.model["status"]["currentRevision"] == rev
    assert judged_of(deployment(toy)["metadata"]["annotations"][ANNOTATION_MONITORING]) != judged
    # Other buckets: a new revision.
    rebinned = build_profile(STATS, pairs(50, seed=9))
    settle(toy, inputs=Inputs(now=0, profile=rebinned), passes=40)
    assert toy.model["status"]["currentRevision"] != rev


def test_a_missing_profile_degrades_the_model_but_it_serves():
    toy = monitored_toy()
    problem = ("ProfileNotFound", "ConfigMap iris-profile key profile.json (monitoring.statistics.reference) does "
               "not exist: no drift scores against a reference")
    settle(toy, inputs=Inputs(now=0, profile_problem=problem))
    conditions = {c["type"]: c for c in toy.model["status"]["conditions"]}
    assert toy.model["status"]["phase"] == "Degraded" and conditions["Ready"]["status"] == "True"
    assert conditions["Degraded"]["reason"] == "ProfileNotFound"


# ------------------------------------------------------------ kubento drift


def test_kubento_drift_shows_each_revision_its_fields_and_the_sampling_state():
    from kubento.cli.quality import as_json, profile_summary, report, sampling_line

    counts = drift.pod_counts(METRICS, drift.wanted(JUDGED))
    stable = drift.score("abc123", JUDGED, counts, 10)
    shifted = {**counts, ("out", "setosa"): 5.0, ("out", "__other__"): 95.0}
    cand = drift.against(drift.score("def456", JUDGED, shifted, 10), stable, 10)
    sampled = {("sampled",): 120, ("records", "stdout", "sent"): 120, ("records", "http", "sent"): 118,
               ("records", "http", "failed"): 2}
    text = report("iris", "ml", "since the pods started", [("stable", 2, stable), ("rolling out", 1, cand)],
                  sampling_line(monitoring(), sampled))
    lines = text.splitlines()
    assert lines[1] == ("payloads: 10% sampled -> stdout, http://sink/, pvc logs, 120 records, "
                        "http 118 sent, 2 failed; stdout 120 sent, 0 failed")
    assert "revision abc123 (stable, 2 pods): 110 input rows, 100 output rows" in lines
    assert "  feature sepal_length: drift 0.174, missing 9.1% (reference 0.0%)" in lines
    assert any(line.startswith("  output: drift 0.788") and line.endswith("vs stable 0.530") for line in lines)
    assert any(line.split()[:2] == ["≤", "5.0"] and line.split()[-1] == "30.0%" for line in lines)
    wire = as_json("iris", "ml", "since", [("stable", 2, stable)], {"sampleRate": 0.1})
    (feature,) = wire["revisions"][0]["inputs"]
    assert feature["buckets"] == [{"label": "5.0", "reference": 0.5, "live": 0.3, "liveRows": 30.0},
                                  {"label": "+Inf", "reference": 0.5, "live": 0.7, "liveRows": 70.0}]
    assert sampling_line(None, {}) == "payloads: not sampled (monitoring.payloads is not set)"
    summary = profile_summary(build_profile(STATS, pairs(100)))
    assert summary.startswith("profile of 100 requests, 200 input rows") and "  site (categorical): missing 0.0%" in summary
