"""kopf registrations. Every trigger runs the same idempotent pass
(:func:`kubento.controller.reconcile.reconcile_named`):

- any watch event of a ModelDeployment (including the initial listing when
  the operator starts, so nothing is missed while it was down);
- any event of a Deployment, pod or build Job kubento manages (their status
  drives ours);
- a periodic resync of every known ModelDeployment, which reverts changes
  others made to its Deployment or HPA spec and notices conditions that
  resolve by themselves (a Secret that appears later);
- while a rollout is under way or kubento's own autoscaler sizes the model,
  a pass every TICK seconds: pauses, deadlines and analysis intervals end,
  and load is sampled, without any watch event.

Only watch-event handlers are used: kopf's change handlers and timers would
add annotations and a finalizer, and a finalizer would block deleting models
whenever the operator is not running.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from kubento.api import v1alpha1 as api
from kubento.builders.build_job import LABEL_BUILD_OF
from kubento.builders.meta import LABEL_MODEL, MANAGED_BY
from kubento.controller import kube, metrics
from kubento.controller.reconcile import reconcile_named

RESYNC_SECONDS = float(os.environ.get("KUBENTO_RESYNC_SECONDS", "30"))
TICK = 2.0

log = logging.getLogger("kubento")

# ModelDeployments seen in the watched namespaces: what the resync walks.
_known: set[tuple[str, str]] = set()
# Those with a rollout under way or kubento's own autoscaler: passed every TICK seconds.
_ticking: set[tuple[str, str]] = set()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf posts no per-handler events; kubento posts its own on transitions.
    settings.posting.level = logging.WARNING
    memo.resync = asyncio.create_task(_resync_forever())


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if task is not None:
        task.cancel()


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf's watches use exactly the credentials of kubento's own API calls."""
    cfg = kube.configuration()
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        trust_env=settings.networking.trust_env,
    )


def _pass(namespace: str, name: str) -> None:
    try:
        with metrics.RECONCILE_SECONDS.time():
            status = reconcile_named(namespace, name)
    except ApiException as exc:
        metrics.RECONCILE_ERRORS.inc()
        # Retried by the next event or resync: never a tight loop.
        log.warning("reconcile of %s/%s failed (retry within %ss): %s %s",
                    namespace, name, RESYNC_SECONDS, exc.status, exc.reason)
        return
    if status and (status.get("rollout") or status.get("autoscaling")):
        _ticking.add((namespace, name))
    else:
        _ticking.discard((namespace, name))


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
def model_deployment_event(type: str, namespace: str, name: str, **_: Any) -> None:
    if type == "DELETED":
        _known.discard((namespace, name))
        _ticking.discard((namespace, name))
        return
    _known.add((namespace, name))
    _pass(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_MODEL: kopf.PRESENT, "app.kubernetes.io/managed-by": MANAGED_BY})
def child_deployment_event(namespace: str, labels: dict[str, str], **_: Any) -> None:
    _pass(namespace, labels[LABEL_MODEL])


@kopf.on.event("", "v1", "pods", labels={LABEL_MODEL: kopf.PRESENT, "app.kubernetes.io/managed-by": MANAGED_BY})
def model_pod_event(namespace: str, labels: dict[str, str], **_: Any) -> None:
    # Image pull failures and crash loops show on pods first.
    _pass(namespace, labels[LABEL_MODEL])


# A finished build is served (or reported) at once, not at the next resync; a
# builder pod that cannot pull its image or be scheduled leaves its Job unchanged.
@kopf.on.event("batch", "v1", "jobs", labels={LABEL_BUILD_OF: kopf.PRESENT, "app.kubernetes.io/managed-by": MANAGED_BY})
@kopf.on.event("", "v1", "pods", labels={LABEL_BUILD_OF: kopf.PRESENT, "app.kubernetes.io/managed-by": MANAGED_BY})
def build_event(namespace: str, labels: dict[str, str], **_: Any) -> None:
    _pass(namespace, labels[LABEL_BUILD_OF])


async def _resync_forever() -> None:
    last = asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(TICK)
        due = asyncio.get_running_loop().time() - last >= RESYNC_SECONDS
        if due:
            last = asyncio.get_running_loop().time()
        for namespace, name in sorted(_known if due else _ticking & _known):
            try:
                await asyncio.to_thread(_pass, namespace, name)
            except Exception:  # noqa: BLE001 - the loop must outlive any one object
                log.exception("resync of %s/%s failed", namespace, name)
