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
from typing import TYPE_CHECKING, Any, Mapping, Optional

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from pydantic import ValidationError

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.deployment import model_replicas

if TYPE_CHECKING:
    from kubento.autoscale.decision import Decision

RECONCILE_SECONDS = Histogram("kubento_reconcile_duration_seconds", "Time one reconcile pass took.",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LEADER = Gauge("kubento_leader", "1 while this replica leads (runs passes); standbys keep their caches warm.")
QUEUE_DEPTH = Gauge("kubento_workqueue_depth", "Models waiting for a worker (not those waiting for a timer).")
RECONCILE_ERRORS = Counter("kubento_reconcile_errors_total", "Passes that failed (retried at the next event or resync).")

MODEL = ("namespace", "model")
_BY_NAME: dict[str, Any] = {}  # exposition name (counters with _total) -> metric


def _gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
    _BY_NAME[name] = Gauge(name, doc, labels)
    return _BY_NAME[name]


def _counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
    _BY_NAME[name] = Counter(name, doc, labels)
    return _BY_NAME[name]


# Each model's state, from its status (publish_model).
READY = _gauge("kubento_model_ready",
               "1 when the model's Ready condition is True: its spec is rolled out and serves.", MODEL)
PHASE = _gauge("kubento_model_phase", "1 for the model's current status.phase, 0 for the other phases.",
               (*MODEL, "phase"))
CONDITION = _gauge("kubento_model_condition",
                   "1 for each status condition of the model, with its status (true, false, unknown) and reason.",
                   (*MODEL, "condition", "status", "reason"))
DESIRED = _gauge("kubento_model_desired_replicas",
                 "Replicas the model should have (spec.replicas, or what its autoscaler decided).", MODEL)
REPLICAS = _gauge("kubento_model_replicas", "Model server pods, all revisions (status.replicas).", MODEL)
READY_REPLICAS = _gauge("kubento_model_ready_replicas",
                        "Ready model server pods, all revisions (status.readyReplicas).", MODEL)
CANARY_WEIGHT = _gauge("kubento_model_canary_weight_ratio",
                       "Share of the replicas on the new revision during a rollout (0 to 1; 0 when none).", MODEL)
REVISION = _gauge("kubento_model_revision_info",
                  "1 per revision role: stable (last Ready), current (the spec's) and failed (last rolled back).",
                  (*MODEL, "role", "revision"))
MIN_REPLICAS = _gauge("kubento_model_autoscaling_min_replicas",
                      "spec.autoscaling.minReplicas (autoscaled models only).", MODEL)
MAX_REPLICAS = _gauge("kubento_model_autoscaling_max_replicas",
                      "spec.autoscaling.maxReplicas (autoscaled models only).", MODEL)

# Transitions between two stored statuses (count_transitions).
ROLLOUT_EVENTS = _counter("kubento_rollout_events_total", "Rollouts started, promoted, rolled back or aborted.",
                          (*MODEL, "event"))
ROLLBACKS = _counter("kubento_rollbacks_total", "Revisions rolled back (or aborted), by the RolledBack reason.",
                     (*MODEL, "reason"))

# kubento's own autoscaler (concurrency/rps), set where it decides.
AUTOSCALER_DESIRED = _gauge("kubento_autoscaler_desired_replicas", "Replicas kubento's autoscaler decided.", MODEL)
AUTOSCALER_READY = _gauge("kubento_autoscaler_ready_replicas", "Ready pods the metric came from.", MODEL)
AUTOSCALER_VALUE = _gauge("kubento_autoscaler_metric_value",
                          "The metric summed over ready pods, per averaging window.", (*MODEL, "window"))
AUTOSCALER_PANIC = _gauge("kubento_autoscaler_panic", "1 while in panic mode.", MODEL)

PHASES = ("Pending", "Building", "Progressing", "Ready", "Degraded", "RolledBack", "Failed")
CONDITIONS = ("Ready", "Available", "Progressing", "Degraded", "RolledBack", "BuildSucceeded")
ROLES = ("stable", "current", "failed")
EVENTS = ("started", "promoted", "rolled_back", "aborted")
ROLLBACK_REASONS = ("CandidateFailed", "ProgressDeadlineExceeded", "AnalysisFailed", "AnalysisInconclusive", "Aborted")

# Every gauge publish_model sets; the autoscaler's are set elsewhere but forgotten with the model.
STATE_GAUGES = ("kubento_model_ready", "kubento_model_phase", "kubento_model_condition", "kubento_model_desired_replicas",
                "kubento_model_replicas", "kubento_model_ready_replicas", "kubento_model_canary_weight_ratio",
                "kubento_model_revision_info", "kubento_model_autoscaling_min_replicas",
                "kubento_model_autoscaling_max_replicas")
AUTOSCALER_GAUGES = ("kubento_autoscaler_desired_replicas", "kubento_autoscaler_ready_replicas",
                     "kubento_autoscaler_metric_value", "kubento_autoscaler_panic")
MAX_SERIES_PER_MODEL = (1 + len(PHASES) + len(CONDITIONS) + 4 + len(ROLES) + 2  # state gauges
                        + len(EVENTS) + len(ROLLBACK_REASONS)  # counters, each made at 0
                        + 5)  # autoscaler: desired, ready, panic, value{stable,panic}

Labels = tuple[str, ...]  # the label values after namespace and model
Series = dict[str, dict[Labels, float]]  # metric name -> extra label values -> value

_guard = threading.Lock()
# (namespace, model) -> metric name -> label values (without namespace, model) currently set
_published: dict[tuple[str, str], dict[str, set[Labels]]] = {}


def serve(port: int) -> None:
    start_http_server(port)


# ------------------------------------------------------------------ pure


def desired_replicas(spec: Mapping[str, Any], status: Mapping[str, Any]) -> int:
    """What the model should run, as the reconcile pass sizes it: kubento's
    autoscaler's decision, else kubento.builders.deployment.model_replicas."""
    own = (status.get("autoscaling") or {}).get("desiredReplicas")
    if spec.get("autoscaling") and own is not None:
        return int(own)
    try:
        return model_replicas(ModelDeploymentSpec.model_validate(spec))
    except ValidationError:
        return int(spec.get("replicas", 1) or 0)


def model_series(spec: Optional[Mapping[str, Any]], status: Optional[Mapping[str, Any]]) -> Series:
    """The state gauges of one model: metric name -> {extra label values: value}.

    ``spec`` and ``status`` are the ModelDeployment's, as stored (camelCase).
    A model without status yet publishes its desired replicas and zeros."""
    spec, status = spec or {}, status or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("type") in CONDITIONS}
    ready = conditions.get("Ready", {}).get("status") == "True"
    phase = status.get("phase")
    out: Series = {
        "kubento_model_ready": {(): 1.0 if ready else 0.0},
        "kubento_model_phase": {(p,): 1.0 if p == phase else 0.0 for p in PHASES},
        "kubento_model_condition": {
            (t, str(c.get("status", "Unknown")).lower(), str(c.get("reason") or "")): 1.0
            for t, c in sorted(conditions.items())
        },
        "kubento_model_desired_replicas": {(): float(desired_replicas(spec, status))},
        "kubento_model_replicas": {(): float(status.get("replicas") or 0)},
        "kubento_model_ready_replicas": {(): float(status.get("readyReplicas") or 0)},
        "kubento_model_canary_weight_ratio": {(): float(status.get("canaryWeight") or 0) / 100},
        "kubento_model_revision_info": {
            (role, rev): 1.0
            for role, rev in (("stable", status.get("stableRevision")), ("current", status.get("currentRevision")),
                              ("failed", status.get("failedRevision")))
            if rev
        },
    }
    scaling = spec.get("autoscaling")
    if scaling:
        out["kubento_model_autoscaling_min_replicas"] = {(): float(scaling.get("minReplicas", 1))}
        out["kubento_model_autoscaling_max_replicas"] = {(): float(scaling.get("maxReplicas", 1))}
    return out


def transitions(previous: Optional[Mapping[str, Any]], new: Mapping[str, Any]) -> list[tuple[str, Labels]]:
    """Counter increments for one stored status change: (metric name, extra
    label values). Rollouts started and promoted, and a rollback with its
    reason (the RolledBack condition's) as it happens."""
    previous = previous or {}
    out: list[tuple[str, Labels]] = []
    before, after = (previous.get("rollout") or {}).get("revision"), (new.get("rollout") or {}).get("revision")
    if after and after != before:
        out.append(("kubento_rollout_events_total", ("started",)))
    old_stable, new_stable = previous.get("stableRevision"), new.get("stableRevision")
    if old_stable and new_stable and new_stable != old_stable:
        out.append(("kubento_rollout_events_total", ("promoted",)))
    if new.get("phase") == "RolledBack" and previous.get("phase") != "RolledBack":
        cond = next((c for c in new.get("conditions") or [] if c.get("type") == "RolledBack"), {})
        reason = cond.get("reason") or "RolledBack"
        out.append(("kubento_rollout_events_total", ("aborted" if reason == "Aborted" else "rolled_back",)))
        if reason in ROLLBACK_REASONS:
            out.append(("kubento_rollbacks_total", (reason,)))
    return out


# ------------------------------------------------------------------ I/O (the registry)

COUNTERS = {"kubento_rollout_events_total": EVENTS, "kubento_rollbacks_total": ROLLBACK_REASONS}


def _entry(namespace: str, name: str) -> dict[str, set[Labels]]:
    """What is published for the model (call under _guard). A model's
    counters exist at 0 from the start, so that Prometheus sees its first
    rollout or rollback as an increase."""
    published = _published.get((namespace, name))
    if published is None:
        published = _published[(namespace, name)] = {}
        for metric, values in COUNTERS.items():
            for value in values:
                _BY_NAME[metric].labels(namespace, name, value)
            published[metric] = {(v,) for v in values}
    return published


def publish_model(namespace: str, name: str, spec: Optional[Mapping[str, Any]],
                  status: Optional[Mapping[str, Any]]) -> None:
    """Set the model's state gauges from its stored spec and status; label
    sets it no longer has (an old revision, a reason that changed) go."""
    series = model_series(spec, status)
    with _guard:
        published = _entry(namespace, name)
        for gauge_name in STATE_GAUGES:
            gauge, now = _BY_NAME[gauge_name], series.get(gauge_name, {})
            for labels in published.get(gauge_name, set()) - set(now):
                _remove(gauge, namespace, name, labels)
            for labels, value in now.items():
                gauge.labels(namespace, name, *labels).set(value)
            published[gauge_name] = set(now)
        if not (status or {}).get("autoscaling"):
            _drop_autoscaler(namespace, name, published)  # kubento's autoscaler is off (or never was)


def count_transitions(namespace: str, name: str, previous: Optional[Mapping[str, Any]],
                      new: Mapping[str, Any]) -> None:
    """Count rollouts and rollbacks as a new status is stored."""
    with _guard:
        published = _entry(namespace, name)
        for metric, labels in transitions(previous, new):
            _BY_NAME[metric].labels(namespace, name, *labels).inc()
            published.setdefault(metric, set()).add(labels)


def autoscaler(namespace: str, name: str, decision: "Decision", ready: int) -> None:
    values: dict[str, dict[Labels, float]] = {
        "kubento_autoscaler_desired_replicas": {(): decision.replicas},
        "kubento_autoscaler_ready_replicas": {(): ready},
        "kubento_autoscaler_panic": {(): 1 if decision.panic else 0},
    }
    if decision.window_value is not None:
        values["kubento_autoscaler_metric_value"] = {("stable",): decision.window_value,
                                                     ("panic",): decision.panic_value or 0.0}
    with _guard:
        published = _entry(namespace, name)
        for metric, by_labels in values.items():
            for labels, value in by_labels.items():
                _BY_NAME[metric].labels(namespace, name, *labels).set(value)
                published.setdefault(metric, set()).add(labels)


def _drop_autoscaler(namespace: str, name: str, published: dict[str, set[Labels]]) -> None:
    for gauge_name in AUTOSCALER_GAUGES:
        for labels in published.pop(gauge_name, set()):
            _remove(_BY_NAME[gauge_name], namespace, name, labels)


def forget(namespace: str, name: str) -> None:
    """The model is gone: every series of it goes."""
    with _guard:
        published = _published.pop((namespace, name), {})
        for metric, label_sets in published.items():
            for labels in label_sets:
                _remove(_BY_NAME[metric], namespace, name, labels)


def _remove(metric: Any, namespace: str, name: str, labels: Labels) -> None:
    try:
        metric.remove(namespace, name, *labels)
    except KeyError:
        pass
