"""The operator's own Prometheus metrics (``kubento run --metrics-port``):
reconcile passes, rollouts, and kubento's autoscaler inputs and decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from kubento.autoscale.decision import Decision

RECONCILE_SECONDS = Histogram("kubento_reconcile_duration_seconds", "Time one reconcile pass took.",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
QUEUE_DEPTH = Gauge("kubento_workqueue_depth", "Models waiting for a worker (not those waiting for a timer).")
RECONCILE_ERRORS = Counter("kubento_reconcile_errors_total", "Passes that failed (retried at the next event or resync).")
ROLLOUT_EVENTS = Counter("kubento_rollout_events_total", "Rollouts started, promoted, rolled back or aborted.",
                         ["namespace", "name", "event"])
AUTOSCALER_DESIRED = Gauge("kubento_autoscaler_desired_replicas", "Replicas kubento's autoscaler decided.",
                           ["namespace", "name"])
AUTOSCALER_READY = Gauge("kubento_autoscaler_ready_replicas", "Ready pods the metric came from.", ["namespace", "name"])
AUTOSCALER_VALUE = Gauge("kubento_autoscaler_metric_value", "The metric summed over ready pods, per averaging window.",
                         ["namespace", "name", "window"])
AUTOSCALER_PANIC = Gauge("kubento_autoscaler_panic", "1 while in panic mode.", ["namespace", "name"])

ROLLOUT_REASONS = {"RolloutStarted": "started", "Promoted": "promoted", "RolledBack": "rolled_back", "Aborted": "aborted"}


def serve(port: int) -> None:
    start_http_server(port)


def rollout_event(namespace: str, name: str, reason: str) -> None:
    if reason in ROLLOUT_REASONS:
        ROLLOUT_EVENTS.labels(namespace, name, ROLLOUT_REASONS[reason]).inc()


def autoscaler(namespace: str, name: str, decision: "Decision", ready: int) -> None:
    AUTOSCALER_DESIRED.labels(namespace, name).set(decision.replicas)
    AUTOSCALER_READY.labels(namespace, name).set(ready)
    AUTOSCALER_PANIC.labels(namespace, name).set(1 if decision.panic else 0)
    if decision.window_value is not None:
        AUTOSCALER_VALUE.labels(namespace, name, "stable").set(decision.window_value)
        AUTOSCALER_VALUE.labels(namespace, name, "panic").set(decision.panic_value or 0.0)


def forget(namespace: str, name: str) -> None:
    for gauge in (AUTOSCALER_DESIRED, AUTOSCALER_READY, AUTOSCALER_PANIC):
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass
    for window in ("stable", "panic"):
        try:
            AUTOSCALER_VALUE.remove(namespace, name, window)
        except KeyError:
            pass
