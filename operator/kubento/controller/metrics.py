"""The operator's own Prometheus metrics (``kubento run --metrics-port``):
reconcile passes, each model's state, rollouts and rollbacks, and kubento's
autoscaler inputs and decisions.

Each model's state is a pure function of its stored status
(:func:`model_series`); :func:`publish_model` sets it after every pass and
:func:`forget` drops it when the model is gone. Labels are bounded: the
model's ``namespace`` and ``model`` name, and per metric a small fixed set
(phase, condition, revision role, rollout event, rollback reason). Never a pod
name or anything from requests. A model publishes at most
:data:`MAX_SERIES_PER_MODEL` series (tests/unit/test_metrics.py counts them).

Prometheus adds its target labels (the operator pod's ``namespace``, ``pod``)
to what it scrapes: scrape the operator with ``honor_labels: true`` (the
chart's ServiceMonitor does) so that ``namespace`` stays the model's.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from kubento.api.v1alpha1 import ModelDeploymentSpec, ModelDeploymentStatus
from kubento.builders.deployment import model_replicas

if TYPE_CHECKING:
    from kubento.autoscale.decision import Decision
    from kubento.quality.drift import RevisionScores

RECONCILE_SECONDS = Histogram("kubento_reconcile_duration_seconds", "Time one reconcile pass took.",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LEADER = Gauge("kubento_leader", "1 while this replica leads (runs passes); standbys keep their caches warm.")
QUEUE_DEPTH = Gauge("kubento_workqueue_depth", "Models waiting for a worker (not those waiting for a timer).")
RECONCILE_ERRORS = Counter("kubento_reconcile_errors_total", "Passes that failed (retried at the next event or resync).")

MODEL = ("namespace", "model")

# Each model's state and transitions are kept as plain values per model and
# rendered when Prometheus scrapes (a collector, as kube-state-metrics does):
# one prometheus_client child per series would cost about 1 kB each, some
# 40 MB at 1,000 models. name -> (type, help, extra label names)
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "kubento_model_ready": ("gauge", "1 when the model's Ready condition is True: its spec is rolled out and serves.", ()),
    "kubento_model_phase": ("gauge", "1 for the model's current status.phase, 0 for the other phases.", ("phase",)),
    "kubento_model_condition": ("gauge", "1 for each status condition of the model, with its status (true, false, "
                                "unknown) and reason.", ("condition", "status", "reason")),
    "kubento_model_desired_replicas": ("gauge", "Replicas the model should have (spec.replicas, or what its "
                                       "autoscaler decided).", ()),
    "kubento_model_replicas": ("gauge", "Model server pods, all revisions (status.replicas).", ()),
    "kubento_model_ready_replicas": ("gauge", "Ready model server pods, all revisions (status.readyReplicas).", ()),
    "kubento_model_canary_weight_ratio": ("gauge", "Share of the replicas on the new revision during a rollout "
                                          "(0 to 1; 0 when none).", ()),
    "kubento_model_revision_info": ("gauge", "1 per revision role: stable (last Ready), current (the spec's) and "
                                    "failed (last rolled back).", ("role", "revision")),
    "kubento_model_autoscaling_min_replicas": ("gauge", "spec.autoscaling.minReplicas (autoscaled models only).", ()),
    "kubento_model_autoscaling_max_replicas": ("gauge", "spec.autoscaling.maxReplicas (autoscaled models only).", ()),
    "kubento_rollout_events_total": ("counter", "Rollouts started, promoted, rolled back or aborted.", ("event",)),
    "kubento_rollbacks_total": ("counter", "Revisions rolled back (or aborted), by the RolledBack reason.", ("reason",)),
    "kubento_autoscaler_desired_replicas": ("gauge", "Replicas kubento's autoscaler decided.", ()),
    "kubento_autoscaler_ready_replicas": ("gauge", "Ready pods the metric came from.", ()),
    "kubento_autoscaler_metric_value": ("gauge", "The metric summed over ready pods, per averaging window.", ("window",)),
    "kubento_autoscaler_panic": ("gauge", "1 while in panic mode.", ()),
    # Prediction checks (kubento.predictions), set where kubento writes a pod's gate or compares a revision.
    "kubento_prediction_check_pods_total": ("counter", "Readiness gates kubento set on the model's pods, by reason: "
                                            "ChecksPassed, PredictionCheckFailed, PredictionMismatch, or why a pod "
                                            "waits.", ("reason",)),
    "kubento_prediction_agreement_ratio": ("gauge", "Share of compareWithStable inputs on which the last new "
                                           "revision compared agreed with stable.", ()),
    # Data quality (spec.monitoring.statistics; kubento.controller.quality), over statistics.window, per
    # serving revision (stable, and the one rolling out), per feature of the spec: bounded label sets.
    "kubento_model_input_drift": ("gauge", "Jensen-Shannon distance (0-1) of a feature's distribution from the "
                                  "reference profile's.", ("revision", "feature")),
    "kubento_model_feature_missing_ratio": ("gauge", "Share of input rows without the feature (missing, null or "
                                            "unusable).", ("revision", "feature")),
    "kubento_model_feature_reference_missing_ratio": ("gauge", "The same share in the reference profile.",
                                                      ("revision", "feature")),
    "kubento_model_output_shift": ("gauge", "Jensen-Shannon distance (0-1) of the output distribution from the "
                                   "reference profile's (against=reference) or, for a revision rolling out, from "
                                   "the stable revision's over the same window (against=stable).",
                                   ("revision", "against")),
    "kubento_model_monitored_rows": ("gauge", "Rows counted in the window, by side (input, output).",
                                     ("revision", "side")),
}

PHASES = ("Pending", "Building", "PreparingEnvironment", "Progressing", "Ready", "Degraded", "RolledBack", "Failed")
CONDITIONS = ("Ready", "Available", "Progressing", "Degraded", "RolledBack", "BuildSucceeded", "EnvironmentReady")
ROLES = ("stable", "current", "failed")
EVENTS = ("started", "promoted", "rolled_back", "aborted")
ROLLBACK_REASONS = ("CandidateFailed", "ProgressDeadlineExceeded", "AnalysisFailed", "AnalysisInconclusive",
                    "PredictionCheckFailed", "PredictionMismatch", "OutputShift", "Aborted")
# The reasons a pod's prediction-check gate can have (kubento.predictions.gate).
GATE_REASONS = ("ChecksPassed", "PredictionCheckFailed", "PredictionMismatch", "CheckRetrying", "Comparing",
                "CheckInputsMissing", "ContainersNotReady")

# Every gauge publish_model sets; the autoscaler's are set elsewhere but forgotten with the model.
STATE_GAUGES = ("kubento_model_ready", "kubento_model_phase", "kubento_model_condition", "kubento_model_desired_replicas",
                "kubento_model_replicas", "kubento_model_ready_replicas", "kubento_model_canary_weight_ratio",
                "kubento_model_revision_info", "kubento_model_autoscaling_min_replicas",
                "kubento_model_autoscaling_max_replicas")
AUTOSCALER_GAUGES = ("kubento_autoscaler_desired_replicas", "kubento_autoscaler_ready_replicas",
                     "kubento_autoscaler_metric_value", "kubento_autoscaler_panic")
QUALITY_GAUGES = ("kubento_model_input_drift", "kubento_model_feature_missing_ratio",
                  "kubento_model_feature_reference_missing_ratio", "kubento_model_output_shift",
                  "kubento_model_monitored_rows")
QUALITY_REVISIONS = 2  # stable and the one rolling out
MAX_FEATURES = 32  # spec.monitoring.statistics.inputs
MAX_SERIES_PER_MODEL = (1 + len(PHASES) + len(CONDITIONS) + 4 + len(ROLES) + 2  # state gauges
                        + len(EVENTS) + len(ROLLBACK_REASONS)  # counters, each made at 0
                        + 5  # autoscaler: desired, ready, panic, value{stable,panic}
                        + len(GATE_REASONS) + 1  # prediction checks: pods checked by reason, agreement
                        + QUALITY_REVISIONS * (3 * MAX_FEATURES + 2 + 2))  # data quality

Labels = tuple[str, ...]  # the label values after namespace and model
Series = dict[str, dict[Labels, float]]  # metric name -> extra label values -> value

_guard = threading.Lock()
# (namespace, model) -> metric name -> label values (without namespace, model) -> value
_published: dict[tuple[str, str], Series] = {}


def serve(port: int) -> None:
    start_http_server(port)


# ------------------------------------------------------------------ pure


def desired_replicas(spec: Optional[ModelDeploymentSpec], status: ModelDeploymentStatus) -> int:
    """What the model should run, as the reconcile pass sizes it: kubento's
    autoscaler's decision, else kubento.builders.deployment.model_replicas
    (0 for a spec that does not validate)."""
    own = status.autoscaling.desired_replicas if status.autoscaling else None
    if spec is not None and spec.autoscaling and own is not None:
        return int(own)
    return model_replicas(spec) if spec is not None else 0


def model_series(spec: Optional[ModelDeploymentSpec], status: Optional[ModelDeploymentStatus]) -> Series:
    """The state gauges of one model: metric name -> {extra label values: value}.

    ``spec`` is the model's, as the pass parsed it (None: it does not
    validate). A model without status yet publishes its desired replicas
    and zeros."""
    status = status or ModelDeploymentStatus()
    conditions = {c.type: c for c in status.conditions if c.type in CONDITIONS}
    ready = "Ready" in conditions and conditions["Ready"].status == "True"
    phase = status.phase
    out: Series = {
        "kubento_model_ready": {(): 1.0 if ready else 0.0},
        "kubento_model_phase": {(p,): 1.0 if p == phase else 0.0 for p in PHASES},
        "kubento_model_condition": {
            (t, c.status.lower(), c.reason or ""): 1.0 for t, c in sorted(conditions.items())
        },
        "kubento_model_desired_replicas": {(): float(desired_replicas(spec, status))},
        "kubento_model_replicas": {(): float(status.replicas or 0)},
        "kubento_model_ready_replicas": {(): float(status.ready_replicas or 0)},
        "kubento_model_canary_weight_ratio": {(): float(status.canary_weight or 0) / 100},
        "kubento_model_revision_info": {
            (role, rev): 1.0
            for role, rev in (("stable", status.stable_revision), ("current", status.current_revision),
                              ("failed", status.failed_revision))
            if rev
        },
    }
    scaling = spec.autoscaling if spec is not None else None
    if scaling:
        out["kubento_model_autoscaling_min_replicas"] = {(): float(scaling.min_replicas)}
        out["kubento_model_autoscaling_max_replicas"] = {(): float(scaling.max_replicas)}
    return out


def transitions(previous: Optional[ModelDeploymentStatus], new: ModelDeploymentStatus) -> list[tuple[str, Labels]]:
    """Counter increments for one stored status change: (metric name, extra
    label values). Rollouts started and promoted, and a rollback with its
    reason (the RolledBack condition's) as it happens."""
    previous = previous or ModelDeploymentStatus()
    out: list[tuple[str, Labels]] = []
    before = previous.rollout.revision if previous.rollout else None
    after = new.rollout.revision if new.rollout else None
    if after and after != before:
        out.append(("kubento_rollout_events_total", ("started",)))
    old_stable, new_stable = previous.stable_revision, new.stable_revision
    if old_stable and new_stable and new_stable != old_stable:
        out.append(("kubento_rollout_events_total", ("promoted",)))
    if new.phase == "RolledBack" and previous.phase != "RolledBack":
        cond = next((c for c in new.conditions if c.type == "RolledBack"), None)
        reason = (cond.reason if cond else "") or "RolledBack"
        out.append(("kubento_rollout_events_total", ("aborted" if reason == "Aborted" else "rolled_back",)))
        if reason in ROLLBACK_REASONS:
            out.append(("kubento_rollbacks_total", (reason,)))
    return out


# ------------------------------------------------------------------ I/O (the registry)

COUNTERS = {"kubento_rollout_events_total": EVENTS, "kubento_rollbacks_total": ROLLBACK_REASONS}


def _entry(namespace: str, name: str) -> Series:
    """What is published for the model (call under _guard). A model's
    counters exist at 0 from the start, so that Prometheus sees its first
    rollout or rollback as an increase."""
    published = _published.get((namespace, name))
    if published is None:
        published = _published[(namespace, name)] = {
            metric: {(v,): 0.0 for v in values} for metric, values in COUNTERS.items()}
    return published


def publish_model(namespace: str, name: str, spec: Optional[ModelDeploymentSpec],
                  status: Optional[ModelDeploymentStatus]) -> None:
    """Set the model's state gauges from its stored spec and status; label
    sets it no longer has (an old revision, a reason that changed) go."""
    series = model_series(spec, status)
    with _guard:
        published = _entry(namespace, name)
        for gauge_name in STATE_GAUGES:
            if series.get(gauge_name):
                published[gauge_name] = series[gauge_name]
            else:
                published.pop(gauge_name, None)
        if status is None or not status.autoscaling:
            for gauge_name in AUTOSCALER_GAUGES:  # kubento's autoscaler is off (or never was)
                published.pop(gauge_name, None)


def count_transitions(namespace: str, name: str, previous: Optional[ModelDeploymentStatus],
                      new: ModelDeploymentStatus) -> None:
    """Count rollouts and rollbacks as a new status is stored."""
    with _guard:
        published = _entry(namespace, name)
        for metric, labels in transitions(previous, new):
            values = published.setdefault(metric, {})
            values[labels] = values.get(labels, 0.0) + 1


def autoscaler(namespace: str, name: str, decision: "Decision", ready: int) -> None:
    values: dict[str, dict[Labels, float]] = {
        "kubento_autoscaler_desired_replicas": {(): float(decision.replicas)},
        "kubento_autoscaler_ready_replicas": {(): float(ready)},
        "kubento_autoscaler_panic": {(): 1.0 if decision.panic else 0.0},
    }
    if decision.window_value is not None:
        values["kubento_autoscaler_metric_value"] = {("stable",): decision.window_value,
                                                     ("panic",): decision.panic_value or 0.0}
    with _guard:
        _entry(namespace, name).update(values)


def pod_checked(namespace: str, name: str, reason: str) -> None:
    """kubento set a pod's prediction-check gate with ``reason``."""
    if reason not in GATE_REASONS:
        return
    with _guard:
        values = _entry(namespace, name).setdefault("kubento_prediction_check_pods_total", {})
        values[(reason,)] = values.get((reason,), 0.0) + 1


def agreement(namespace: str, name: str, rate: float) -> None:
    """A new revision was compared with stable (predictionChecks.compareWithStable)."""
    with _guard:
        _entry(namespace, name)["kubento_prediction_agreement_ratio"] = {(): float(rate)}


def quality_series(scores: "list[RevisionScores]") -> Series:
    """The data-quality gauges of a model's scored revisions (pure)."""
    out: Series = {g: {} for g in QUALITY_GAUGES}
    for r in scores[:QUALITY_REVISIONS]:
        for f in r.inputs[:MAX_FEATURES]:
            if f.drift is not None:
                out["kubento_model_input_drift"][(r.revision, f.name)] = f.drift
            if f.missing_ratio is not None:
                out["kubento_model_feature_missing_ratio"][(r.revision, f.name)] = f.missing_ratio
                if f.reference_missing is not None:
                    out["kubento_model_feature_reference_missing_ratio"][(r.revision, f.name)] = f.reference_missing
        if r.output is not None and r.output.drift is not None:
            out["kubento_model_output_shift"][(r.revision, "reference")] = r.output.drift
        if r.against_stable is not None:
            out["kubento_model_output_shift"][(r.revision, "stable")] = r.against_stable
        out["kubento_model_monitored_rows"][(r.revision, "input")] = r.input_rows
        out["kubento_model_monitored_rows"][(r.revision, "output")] = r.output_rows
    return {g: v for g, v in out.items() if v}


def quality(namespace: str, name: str, scores: "list[RevisionScores]") -> None:
    """Replace the model's data-quality gauges (revisions no longer scored go)."""
    series = quality_series(scores)
    with _guard:
        published = _entry(namespace, name)
        for gauge_name in QUALITY_GAUGES:
            if gauge_name in series:
                published[gauge_name] = series[gauge_name]
            else:
                published.pop(gauge_name, None)


def forget(namespace: str, name: str) -> None:
    """The model is gone: every series of it goes."""
    with _guard:
        _published.pop((namespace, name), None)


class ModelCollector:
    """Renders every model's series at scrape time."""

    def describe(self) -> list[Any]:
        return []  # unchecked collector: families are known only at collect time

    def collect(self) -> Any:
        with _guard:
            snapshot = [(key, {m: dict(v) for m, v in series.items()}) for key, series in _published.items()]
        for metric, (kind, doc, extra) in FAMILIES.items():
            labels = [*MODEL, *extra]
            if kind == "counter":
                family: Any = CounterMetricFamily(metric.removesuffix("_total"), doc, labels=labels)
            else:
                family = GaugeMetricFamily(metric, doc, labels=labels)
            for (namespace, name), series in snapshot:
                for values, value in series.get(metric, {}).items():
                    family.add_metric([namespace, name, *values], value)
            yield family


REGISTRY.register(ModelCollector())
