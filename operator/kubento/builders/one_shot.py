"""The one-shot Job both build Jobs and environment Jobs are: run once, never
retried (a failure fails the same way again: no hot loop), within a deadline,
with no API credentials (they run code kubento did not write: a project's
build, pip's package builds), under the restricted pod security context.

Its pod is a sequence of steps: init containers, one after the other, then
the last step as the only container. Each step gets only the credentials it
needs; the steps that run code kubento did not write get none. Containers of
a pod do not see each other's processes (the process namespace is never
shared), init containers never run side by side, and the steps hand over
through the work volume only (never a credential).
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from kubento.builders.bento import RUNTIME, runtime_env
from kubento.builders.deployment import CONTAINER_SECURITY, POD_SECURITY
from kubento.builders.meta import Owner

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"  # what `kubectl logs job/NAME` shows


def step(name: str, image: str, env: list[dict[str, Any]], mounts: list[dict[str, Any]],
         resources: Optional[dict[str, Any]] = None, secret: Optional[str] = None) -> dict[str, Any]:
    """One step: ``python -m kubento.runtime <name>``; ``secret``: all its keys
    as environment (the store's credentials). Its termination message (or
    its log's tail) is how a failure reaches the model's status."""
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": RUNTIME + [name],
        "env": runtime_env() + env,
        "volumeMounts": mounts,
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    if resources:
        container["resources"] = copy.deepcopy(resources)
    return container


def one_shot_job(name: str, owner: Owner, labels: dict[str, str], annotations: dict[str, str],
                 deadline_seconds: int, steps: list[dict[str, Any]], volumes: list[dict[str, Any]],
                 logs_of: Optional[str] = None) -> dict[str, Any]:
    pod_meta: dict[str, Any] = {"labels": labels}
    if logs_of:
        pod_meta["annotations"] = {DEFAULT_CONTAINER: logs_of}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "template": {
                "metadata": pod_meta,
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "shareProcessNamespace": False,
                    "securityContext": copy.deepcopy(POD_SECURITY),
                    "initContainers": steps[:-1],
                    "containers": steps[-1:],
                    "volumes": volumes,
                },
            },
        },
    }
