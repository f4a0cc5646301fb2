"""Pods of revisions (and of their other BentoML services) and of build/environment Jobs (read, and prediction-check gates set on them)."""

from __future__ import annotations

from typing import Any, Optional

from kubento.builders.build_job import LABEL_BUILD_OF
from kubento.builders.graph import LABEL_SERVICE_OF
from kubento.builders.meta import LABEL_MODEL
from kubento.controller.kinds import POD, Kind
from kubento.controller.kinds.strip import conditions, meta, pick


def _container_status(cs: dict[str, Any]) -> dict[str, Any]:
    state = cs.get("state") or {}
    out = pick(cs, "name", "ready", "restartCount", "image", "started")
    out["state"] = {k: pick(v, "reason", "message", "exitCode") for k, v in state.items() if v is not None}
    last = ((cs.get("lastState") or {}).get("terminated"))
    if last:  # how long it ran tells a startup-probe kill (status.pod_problems)
        out["lastState"] = {"terminated": pick(last, "reason", "message", "exitCode", "startedAt", "finishedAt")}
    return out


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status") or {}
    containers = ((obj.get("spec") or {}).get("containers")) or []
    return {
        "metadata": meta(obj),
        # the startup probes' budgets (a kill by the probe is named as such)
        "spec": {"containers": [{"name": c.get("name"), "startupProbe": pick(c.get("startupProbe") or {},
                                                                              "failureThreshold", "periodSeconds")}
                                for c in containers if c.get("startupProbe")]},
        "status": {
            **pick(status, "phase", "podIP"),
            # The times tell prediction checks whether a pod's containers restarted since they passed.
            "conditions": conditions(status, "lastTransitionTime", "lastProbeTime"),
            "containerStatuses": [_container_status(c) for c in status.get("containerStatuses") or []],
            "initContainerStatuses": [_container_status(c) for c in status.get("initContainerStatuses") or []],
        },
    }


def model_of(obj: dict[str, Any]) -> Optional[str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_MODEL) or labels.get(LABEL_BUILD_OF) or labels.get(LABEL_SERVICE_OF)


# Pods are the ReplicaSets' and Jobs' to make; kubento only sets its readiness gate's condition.
KIND = Kind(POD, "v1", "pods", strip, model_of=model_of, verbs=("list", "watch"),
            subresources=(("status", ("patch",)),))
