"""kopf registrations for one Operator (kubento.controller.operator).

``registry(operator)`` returns a kopf registry whose handlers call into the
operator: kopf runs the watches, kubento runs everything else.

- Every kind of kubento.controller.kinds is watched: ModelDeployments, the
  children kubento makes (the API server filters on
  app.kubernetes.io/managed-by=kubento), and every Service and ConfigMap of
  the watched namespaces (a Service named like a model may be someone
  else's; a build or a check may read any ConfigMap). Each event updates the
  cache and puts the models it concerns on the queue.
- The cache is written by kopf *index* handlers: kopf runs them for every
  object of the initial listings before any other handler, so no pass ever
  works from a half-filled cache.
- kopf sends nothing for objects deleted while a watch was away; its
  relists are seen through kubento.controller.kopfadapter: the cache drops
  what a relist no longer has, and no pass runs while a watch relists.
- The liveness endpoint fails while a worker is stuck in one pass
  (kubento.controller.progress).

Only watch-event handlers are used: kopf's change handlers and timers would
add annotations and a finalizer, and a finalizer would block deleting models
whenever the operator is not running.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kubento.builders.meta import MANAGED_BY
from kubento.controller import apply, kinds, kopfadapter
from kubento.controller import credentials
from kubento.controller.kube import Kube
from kubento.controller.operator import Operator

MANAGED = f"app.kubernetes.io/managed-by={MANAGED_BY}"

log = logging.getLogger("kubento")


def registry(op: Operator) -> kopf.OperatorRegistry:
    """kopf handlers that feed ``op`` and start and stop it."""
    reg = kopf.OperatorRegistry()
    kopfadapter.quiet_toggles()  # before kopf's first listing (kubento.controller.kopfadapter)
    # Made at once (not at startup): kopf logs in (below) before any startup handler runs.
    creds = credentials.load()
    kube = Kube(creds, pool_size=max(op.config.workers * 2, 10) + apply.PARALLEL)
    uninstall: list[Any] = []

    def relisted(group: str, plural: str, namespace: Any, uids: set[str]) -> int:
        kind = by_resource.get((group, plural))
        return op.relisted(kind, namespace, uids) if kind is not None else 0

    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf posts no per-handler events; kubento posts its own on transitions.
        settings.posting.level = logging.WARNING
        settings.persistence.diffbase_storage = kopfadapter.NoDiffBase()
        for kind in kinds.REGISTRY:
            if kind.watch == "managed":  # the API server sends only kubento's own
                settings.watching.label_selectors[kind.group or "v1", kind.plural] = MANAGED
        # This operator's watch streams report their listings (the cache drops what a relist lacks).
        uninstall.append(kopfadapter.install(op.watches, relisted, settings=settings))
        op.start(kube)

    @kopf.on.cleanup(registry=reg)
    def stop(**_: Any) -> None:
        """Finish the passes under way, then hand the Lease over at once."""
        op.stop()
        for done in uninstall:
            done()

    @kopf.on.login(registry=reg)
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        """kopf's watches use exactly the credentials of kubento's own API calls."""
        creds.expire()  # kopf logs in again on a 401: a rotated token is read anew
        header = creds.authorization()
        scheme, _, token = (header or "").partition(" ")
        basic = scheme == "Basic"
        return kopf.ConnectionInfo(
            server=creds.server,
            ca_path=creds.ca_file,
            insecure=creds.insecure,
            username=creds.username if basic else None,
            password=creds.password if basic else None,
            scheme=None if basic else scheme or None,
            token=None if basic else token or None,
            certificate_path=creds.cert_file,
            private_key_path=creds.key_file,
            trust_env=settings.networking.trust_env,
        )

    @kopf.on.probe(id="workers", registry=reg)
    def workers_progress(**_: Any) -> dict[str, Any]:
        """Part of the liveness endpoint: fails (HTTP 500) while a worker is stuck
        in one pass or has died, so the kubelet restarts the operator."""
        why = op.liveness()
        if why is not None:
            log.error("not making progress: %s", why)
            raise kopf.PermanentError(why)
        return {"workers": op.config.workers, "passes": len(op.progress.passes())}

    def indexer(kind: str) -> Any:
        async def index(body: kopf.Body, **_: Any) -> None:
            op.cache.update(kind, dict(body))
            return None  # kubento's cache keeps the object, not kopf's index
        return index

    def event(kind: str) -> Any:
        async def on_event(type: str, body: kopf.Body, **_: Any) -> None:
            op.observed(kind, type, dict(body))
        return on_event

    # kopf index handlers fill the cache (kopf runs them for the whole initial
    # listing first); event handlers keep it and queue the models concerned.
    by_resource = {(k.group, k.plural): k.name for k in kinds.REGISTRY}
    for kind in kinds.REGISTRY:
        kopf.index(kind.group, kind.version, kind.plural, id=f"cache-{kind.plural}", registry=reg)(indexer(kind.name))
        kopf.on.event(kind.group, kind.version, kind.plural, id=f"queue-{kind.plural}", registry=reg)(event(kind.name))

    return reg
