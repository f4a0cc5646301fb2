"""The one-shot Job both build Jobs and environment Jobs are: run once, never
retried (a failure fails the same way again: no hot loop), within a deadline,
with no API credentials (they run code kubento did not write: a project's
build, pip's package builds), under the restricted pod security context."""

from __future__ import annotations

import copy
from typing import Any

from kubento.builders.deployment import POD_SECURITY
from kubento.builders.meta import Owner


def one_shot_job(name: str, owner: Owner, labels: dict[str, str], annotations: dict[str, str],
                 deadline_seconds: int, container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
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
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": copy.deepcopy(POD_SECURITY),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
