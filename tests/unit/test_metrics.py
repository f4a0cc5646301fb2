"""Each model's state as Prometheus metrics (kubento.controller.metrics): a
pure function of the stored spec and status, published into the real
prometheus_client registry and read back from its exposition text."""

from __future__ import annotations

import itertools

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.controller import metrics
from kubento.controller import metrics as metrics_module
from kubento.controller.metrics import MAX_SERIES_PER_MODEL, model_series
from kubento.controller.status import parse_status


def series(spec, status):
    """model_series of a spec given as stored (the pass hands it in parsed)."""
    return model_series(ModelDeploymentSpec.model_validate(spec), parse_status(status))


def transitions(previous, new):
    return metrics_module.transitions(parse_status(previous), parse_status(new))


def publish(ns, name, spec, status):
    """What a pass publishes: its parsed spec and the status it wrote."""
    metrics.publish_model(ns, name, ModelDeploymentSpec.model_validate(spec), parse_status(status))


IMAGE = {"bento": {"image": "registry.local/iris:1.0"}}


def cond(type_, status, reason):
    return {"type": type_, "status": status, "reason": reason, "message": ""}


READY = {
    "phase": "Ready", "replicas": 2, "readyReplicas": 2, "stableRevision": "aaa", "currentRevision": "aaa",
    "conditions": [cond("Ready", "True", "Ready"), cond("Available", "True", "ReplicasAvailable"),
                   cond("Progressing", "False", "RolloutComplete"), cond("Degraded", "False", "AsExpected"),
                   cond("RolledBack", "False", "AsExpected")],
}
CANARY = {
    **READY, "phase": "Progressing", "currentRevision": "bbb", "canaryWeight": 50, "replicas": 3, "readyReplicas": 2,
    "rollout": {"revision": "bbb", "strategy": "Canary", "step": 0, "since": "2026-01-01T00:00:00Z"},
    "conditions": [cond("Ready", "False", "CanaryStep"), cond("Available", "True", "ReplicasAvailable"),
                   cond("Progressing", "True", "CanaryStep"), cond("Degraded", "False", "AsExpected"),
                   cond("RolledBack", "False", "AsExpected")],
}
ROLLED_BACK = {
    **READY, "phase": "RolledBack", "currentRevision": "bbb", "failedRevision": "bbb",
    "conditions": [cond("Ready", "False", "RolledBack"), cond("Available", "True", "ReplicasAvailable"),
                   cond("Progressing", "False", "RolledBack"), cond("Degraded", "True", "RolledBack"),
                   cond("RolledBack", "True", "AnalysisFailed")],
}


def test_a_ready_model():
    s = series({**IMAGE, "replicas": 2}, READY)
    assert s["kubento_model_ready"] == {(): 1.0}
    assert s["kubento_model_phase"] == {(p,): 1.0 if p == "Ready" else 0.0 for p in metrics.PHASES}
    assert s["kubento_model_condition"][("Ready", "true", "Ready")] == 1.0
    assert ("Degraded", "false", "AsExpected") in s["kubento_model_condition"]
    assert s["kubento_model_desired_replicas"] == {(): 2.0}
    assert s["kubento_model_ready_replicas"] == {(): 2.0}
    assert s["kubento_model_canary_weight_ratio"] == {(): 0.0}
    assert s["kubento_model_revision_info"] == {("stable", "aaa"): 1.0, ("current", "aaa"): 1.0}
    assert "kubento_model_autoscaling_max_replicas" not in s


def test_a_canary_and_a_rollback():
    canary = series({**IMAGE, "replicas": 3}, CANARY)
    assert canary["kubento_model_ready"] == {(): 0.0}
    assert canary["kubento_model_canary_weight_ratio"] == {(): 0.5}
    assert canary["kubento_model_revision_info"] == {("stable", "aaa"): 1.0, ("current", "bbb"): 1.0}
    back = series(IMAGE, ROLLED_BACK)
    assert back["kubento_model_phase"][("RolledBack",)] == 1.0
    assert back["kubento_model_condition"][("RolledBack", "true", "AnalysisFailed")] == 1.0
    assert back["kubento_model_revision_info"][("failed", "bbb")] == 1.0


def test_desired_replicas_follow_the_autoscaler_that_sizes_the_model():
    own = {**IMAGE, "replicas": 1, "autoscaling": {"metric": "concurrency", "minReplicas": 1, "maxReplicas": 6}}
    s = series(own, {**READY, "autoscaling": {"metric": "concurrency", "target": 4.0, "desiredReplicas": 4}})
    assert s["kubento_model_desired_replicas"] == {(): 4.0}
    assert s["kubento_model_autoscaling_min_replicas"] == {(): 1.0}
    assert s["kubento_model_autoscaling_max_replicas"] == {(): 6.0}
    # before its first decision: minReplicas (as the reconcile pass sizes it)
    assert series({**own, "autoscaling": {**own["autoscaling"], "minReplicas": 2}}, READY)[
        "kubento_model_desired_replicas"] == {(): 2.0}
    # an HPA writes spec.replicas, kept within the bounds
    hpa = {**IMAGE, "replicas": 9, "resources": {"requests": {"cpu": "1"}},
           "autoscaling": {"metric": "cpu", "minReplicas": 2, "maxReplicas": 5}}
    assert series(hpa, READY)["kubento_model_desired_replicas"] == {(): 5.0}


def test_a_model_without_status_yet():
    s = series(IMAGE, None)
    assert s["kubento_model_ready"] == {(): 0.0}
    assert set(s["kubento_model_phase"].values()) == {0.0}
    assert s["kubento_model_condition"] == {} and s["kubento_model_revision_info"] == {}
    assert s["kubento_model_desired_replicas"] == {(): 1.0}


def test_transitions_count_rollouts_promotions_and_rollbacks_by_reason():
    assert transitions(READY, CANARY) == [("kubento_rollout_events_total", ("started",))]
    assert transitions(CANARY, CANARY) == []
    promoted = {**READY, "stableRevision": "bbb", "currentRevision": "bbb"}
    assert transitions(CANARY, promoted) == [("kubento_rollout_events_total", ("promoted",))]
    assert transitions(CANARY, ROLLED_BACK) == [("kubento_rollout_events_total", ("rolled_back",)),
                                                ("kubento_rollbacks_total", ("AnalysisFailed",))]
    assert transitions(ROLLED_BACK, ROLLED_BACK) == []  # counted once, not on every pass
    aborted = {**ROLLED_BACK, "conditions": [cond("RolledBack", "True", "Aborted")]}
    assert transitions(CANARY, aborted) == [("kubento_rollout_events_total", ("aborted",)),
                                            ("kubento_rollbacks_total", ("Aborted",))]


# ------------------------------------------------------------------ the registry


def exposed(namespace: str, model: str | None = None) -> dict[tuple[str, tuple], float]:
    """Samples of the real registry's exposition for models in ``namespace``."""
    out = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for s in family.samples:
            if s.labels.get("namespace") == namespace and (model is None or s.labels.get("model") == model):
                if s.name.endswith("_created"):
                    continue
                drop = ("namespace", "model") if model else ("namespace",)
                extra = tuple(sorted((k, v) for k, v in s.labels.items() if k not in drop))
                out[(s.name, extra)] = s.value
    return out


@pytest.fixture
def ns(request):
    name = f"unit-{request.node.name[:40]}"
    yield name
    for key in [k for k in metrics._published if k[0] == name]:
        metrics.forget(*key)


def test_published_series_follow_the_status_and_go_with_the_model(ns):
    publish(ns, "iris", IMAGE, CANARY)
    first = exposed(ns, "iris")
    assert first[("kubento_model_canary_weight_ratio", ())] == 0.5
    assert first[("kubento_model_condition", (("condition", "Ready"), ("reason", "CanaryStep"), ("status", "false")))] == 1
    # counters exist at 0 before anything happened, so the first rollback is an increase
    assert first[("kubento_rollbacks_total", (("reason", "AnalysisFailed"),))] == 0
    assert first[("kubento_rollout_events_total", (("event", "rolled_back"),))] == 0

    metrics.count_transitions(ns, "iris", parse_status(CANARY), parse_status(ROLLED_BACK))
    publish(ns, "iris", IMAGE, ROLLED_BACK)
    after = exposed(ns, "iris")
    assert after[("kubento_rollbacks_total", (("reason", "AnalysisFailed"),))] == 1
    assert after[("kubento_rollout_events_total", (("event", "rolled_back"),))] == 1
    # the Ready reason changed: the old label set is gone, not left at 1
    assert ("kubento_model_condition", (("condition", "Ready"), ("reason", "CanaryStep"), ("status", "false"))) not in after
    assert after[("kubento_model_condition", (("condition", "Ready"), ("reason", "RolledBack"), ("status", "false")))] == 1
    assert after[("kubento_model_revision_info", (("revision", "bbb"), ("role", "failed")))] == 1

    metrics.forget(ns, "iris")
    assert exposed(ns, "iris") == {}


def test_autoscaler_series_go_when_it_is_turned_off(ns):
    from kubento.autoscale.decision import Decision, Memory

    decision = Decision(replicas=3, panic=False, window_value=7.5, panic_value=9.0, reason="ScaleUp", message="",
                        memory=Memory())
    metrics.autoscaler(ns, "busy", decision, ready=2)
    scaled = {**IMAGE, "autoscaling": {"metric": "concurrency", "minReplicas": 1, "maxReplicas": 4}}
    publish(ns, "busy", scaled, {**READY, "autoscaling": {"metric": "concurrency", "target": 4.0, "desiredReplicas": 3}})
    seen = exposed(ns, "busy")
    assert seen[("kubento_autoscaler_metric_value", (("window", "stable"),))] == 7.5
    assert seen[("kubento_model_desired_replicas", ())] == 3
    publish(ns, "busy", IMAGE, READY)
    names = {name for name, _ in exposed(ns, "busy")}
    assert not {n for n in names if n.startswith("kubento_autoscaler_") or "autoscaling" in n}, names


STATUSES = [READY, CANARY, ROLLED_BACK, {**READY, "conditions": READY["conditions"] + [
    cond("BuildSucceeded", "False", "BuildFailed")]}]
SPECS = [IMAGE, {**IMAGE, "autoscaling": {"metric": "concurrency", "minReplicas": 1, "maxReplicas": 4}}]


def full_quality():
    """Scores of two revisions with every gauge: MAX_FEATURES features each, outputs against both."""
    from kubento.quality.drift import FieldScore, RevisionScores

    def field(name):
        return FieldScore(name, 500, 0.1, 0.0, 0.2, {"a": 1.0}, {"a": 1.0}, ("a",))
    revisions = [RevisionScores(rev, tuple(field(f"f{i}") for i in range(metrics.MAX_FEATURES)), field("output"),
                                500, 500, against_stable=0.3) for rev in ("r1", "r2", "r3")]
    return revisions


def test_series_per_model_stay_bounded(ns):
    """Every combination of a status and a spec, after a rollback was
    counted, with kubento's autoscaler deciding: never more than
    MAX_SERIES_PER_MODEL series (printed for the note: ``-s``)."""
    from kubento.autoscale.decision import Decision, Memory

    decision = Decision(replicas=2, panic=True, window_value=1.0, panic_value=2.0, reason="Panic", message="",
                        memory=Memory())
    counts = {}
    for i, (spec, status) in enumerate(itertools.product(SPECS, STATUSES)):
        name = f"m{i}"
        metrics.count_transitions(ns, name, parse_status(CANARY), parse_status(ROLLED_BACK))
        if spec.get("autoscaling"):
            metrics.autoscaler(ns, name, decision, ready=1)
            status = {**status, "autoscaling": {"metric": "concurrency", "target": 4.0, "desiredReplicas": 2}}
            for reason in metrics.GATE_REASONS:  # and prediction checks with every gate reason
                metrics.pod_checked(ns, name, reason)
            metrics.agreement(ns, name, 0.6)
            metrics.quality(ns, name, full_quality())  # and data quality: every feature, two revisions
        publish(ns, name, spec, status)
        counts[(bool(spec.get("autoscaling")), status.get("phase"), len(status["conditions"]))] = len(exposed(ns, name))
    print(f"\nseries per model (autoscaled, phase, conditions): {counts}; bound {MAX_SERIES_PER_MODEL}")
    assert max(counts.values()) <= MAX_SERIES_PER_MODEL
    assert counts[(False, "Ready", 5)] == 1 + 8 + 5 + 3 + 1 + 2 + 4 + 8  # a settled model: 32


def test_a_thousand_models(ns):
    for i in range(1000):
        publish(ns, f"model-{i}", {**IMAGE, "replicas": 2}, READY)
    total = len(exposed(ns))
    print(f"\n1,000 settled models: {total} series")
    assert total == 32 * 1000
