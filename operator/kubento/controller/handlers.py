"""kopf registrations: watches feed the cache and the work queue; workers
run passes (kubento.controller.reconcile) from the queue.

- kopf watches ModelDeployments, and kubento's own children (the API server
  filters on app.kubernetes.io/managed-by=kubento): revision Deployments,
  pods, HPAs, ScaledObjects, build Jobs; and every Service and ConfigMap of
  the watched namespaces (a Service named like a model may be someone
  else's; a build may read any ConfigMap). Each event updates the cache and
  puts the model's key on the queue.
- The cache is written by kopf *index* handlers: kopf runs them for every
  object of the initial listings before any other handler, so no pass ever
  works from a half-filled cache.
- Workers (``KUBENTO_WORKERS``, default 8 threads) take keys from the queue:
  repeated events merge, one model is never in two workers, a pass says
  when it next needs to run, a failing pass backs off per model.
- A resync puts every model on the queue once per ``KUBENTO_RESYNC_SECONDS``
  (spread over the period). A settled model's pass reads and writes nothing.
- kopf sends nothing for objects deleted while a watch was away; its
  relists are seen in kubento.controller.watches: the cache drops what a
  relist no longer has, and no pass runs while a watch relists.
- With ``KUBENTO_LEADER_ELECTION_NAMESPACE`` set (the chart sets it), replicas
  elect a leader on a Lease there (kubento.controller.leader): every replica
  keeps its cache warm, only the leader's workers run passes. A new leader
  starts from a full resync with empty memory (analysis and autoscaler
  windows fill again: no verdict, promotion or scale-down from half a window).

Only watch-event handlers are used: kopf's change handlers and timers would
add annotations and a finalizer, and a finalizer would block deleting models
whenever the operator is not running.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any, Optional

import kopf

from kubento.api import v1alpha1 as api
from kubento.builders.meta import MANAGED_BY
from kubento.controller import cache as kinds
from kubento.controller import apply, kube, metrics, progress
from kubento.controller import kopfadapter as watches
from kubento.controller.cache import Cache, Key
from kubento.controller.leader import LeaderElector
from kubento.controller.memory import Registry
from kubento.controller.podio import PodIO
from kubento.controller.reconcile import reconcile
from kubento.controller.kopfadapter import NoDiffBase as _NoDiffBase
from kubento.controller.kopfadapter import Watches
from kubento.controller.workqueue import WorkQueue

RESYNC_SECONDS = float(os.environ.get("KUBENTO_RESYNC_SECONDS", "300"))
WORKERS = int(os.environ.get("KUBENTO_WORKERS", "8"))
ELECTION_NAMESPACE = os.environ.get("KUBENTO_LEADER_ELECTION_NAMESPACE", "")
LEASE_NAME = os.environ.get("KUBENTO_LEASE_NAME", "kubento")
STALL_SECONDS = float(os.environ.get("KUBENTO_STALL_SECONDS", str(progress.STALL_SECONDS)))
WRITE_STREAK = 10
MANAGED = f"app.kubernetes.io/managed-by={MANAGED_BY}"

log = logging.getLogger("kubento")

CACHE = Cache()
QUEUE: WorkQueue[Key] = WorkQueue()
MEMORY = Registry()
LEADING = threading.Event()  # this replica's workers may run passes
WATCHES = Watches()  # passes wait while a watch relists (its cache may miss what changed meanwhile)
PODS = PodIO(wake=QUEUE.add)  # requests to model pods, off the workers; a job's end wakes its model
PROGRESS = progress.Progress()  # which pass each worker is in: the liveness probe
_threads: list[threading.Thread] = []
_stopping = threading.Event()
_elector: Optional[LeaderElector] = None


def _started_leading() -> None:
    metrics.LEADER.set(1)
    LEADING.set()
    for key in CACHE.keys():  # everything once: the last leader's timers are not ours
        QUEUE.add(key)


def _stopped_leading() -> None:
    LEADING.clear()
    metrics.LEADER.set(0)
    for key in CACHE.keys():  # a standby publishes no model's state, and keeps no stale windows
        metrics.forget(*key)
        MEMORY.forget(key)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf posts no per-handler events; kubento posts its own on transitions.
    settings.posting.level = logging.WARNING
    settings.persistence.diffbase_storage = _NoDiffBase()
    for group, plural in (("apps", "deployments"), ("", "pods"), ("autoscaling", "horizontalpodautoscalers"),
                          ("keda.sh", "scaledobjects"), ("batch", "jobs")):
        settings.watching.label_selectors[group or "v1", plural] = MANAGED
    kube.configuration().connection_pool_maxsize = max(WORKERS * 2, 10) + apply.PARALLEL
    _stopping.clear()
    global _elector
    if ELECTION_NAMESPACE:
        identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        _elector = LeaderElector(kube.api_client(), ELECTION_NAMESPACE, LEASE_NAME, identity,
                                 on_started=_started_leading, on_stopped=_stopped_leading)
        _threads.append(threading.Thread(target=_elector.run, name="kubento-leader-election", daemon=True))
    else:
        _started_leading()  # one replica, no election
    for i in range(WORKERS):
        _threads.append(threading.Thread(target=_work, name=f"kubento-worker-{i}", daemon=True))
    _threads.append(threading.Thread(target=_resync, name="kubento-resync", daemon=True))
    for t in _threads:
        t.start()


@kopf.on.cleanup()
def stop(**_: Any) -> None:
    """Finish the passes under way, then hand the Lease over at once."""
    LEADING.clear()
    metrics.LEADER.set(0)  # from now on: the next leader may start before this process ends
    _stopping.set()
    QUEUE.close()
    for t in _threads:
        if t.name.startswith("kubento-worker"):
            t.join(timeout=10)
    PODS.stop()
    if _elector is not None:
        _elector.stop(release=True)


@kopf.on.probe(id="workers")
def workers_progress(**_: Any) -> dict[str, Any]:
    """Part of the liveness endpoint: fails (HTTP 500) while a worker is stuck
    in one pass or has died, so the kubelet restarts the operator."""
    workers = [t for t in _threads if t.name.startswith("kubento-worker")]
    passes = PROGRESS.passes()
    why = progress.stalled(passes, [t.name for t in workers if not _stopping.is_set() and not t.is_alive()],
                           PROGRESS.now(), STALL_SECONDS)
    if why is not None:
        log.error("not making progress: %s", why)
        raise kopf.PermanentError(why)
    return {"workers": len(workers), "passes": len(passes)}


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


# ------------------------------------------------------------ the workers


def _work() -> None:
    CACHE.synced.wait()
    while not _stopping.is_set():
        if not LEADING.wait(1.0) or not WATCHES.fresh.wait(1.0):
            continue
        key = QUEUE.get(timeout=1.0)
        if key is None:
            continue
        if not LEADING.is_set() or not WATCHES.fresh.is_set():  # the key stays for later
            QUEUE.done(key)
            QUEUE.add(key)
            continue
        metrics.QUEUE_DEPTH.set(QUEUE.depth())
        memory = MEMORY.get(key)
        PROGRESS.began(key)
        try:
            with metrics.RECONCILE_SECONDS.time():
                # A leader's first pass over a model reads the model itself: the
                # cache of a replica that was cut off may lag behind the Lease.
                outcome = reconcile(key, CACHE, memory, PODS, verify=_elector is not None and not memory.verified)
            memory.verified = True
        except Exception as exc:  # noqa: BLE001 - a worker outlives any one model
            metrics.RECONCILE_ERRORS.inc()
            delay = QUEUE.failed(key)
            log.warning("reconcile of %s/%s failed (retry in %.0fs): %s", key[0], key[1], delay,
                        getattr(exc, "reason", None) or exc, exc_info=not hasattr(exc, "status"))
        else:
            QUEUE.succeeded(key)
            if not outcome.writes:
                memory.write_streak = 0
            if outcome.deleted:
                MEMORY.forget(key)
                QUEUE.forget(key)
                metrics.forget(*key)
            elif outcome.writes:
                # Once more, on what it wrote (the watch's echoes of its own writes bring
                # no pass); a model whose passes keep writing fights someone: slow down.
                memory.write_streak += 1
                if memory.write_streak > WRITE_STREAK:
                    delay = min(60.0, 2.0 ** (memory.write_streak - WRITE_STREAK))
                    log.warning("%s/%s: %d passes in a row changed something; next in %.0fs",
                                key[0], key[1], memory.write_streak, delay)
                    QUEUE.add_after(key, delay)
                else:
                    QUEUE.add(key)
            elif outcome.requeue_after is not None:
                QUEUE.add_after(key, outcome.requeue_after)
        finally:
            PROGRESS.ended()
            QUEUE.done(key)


def _resync() -> None:
    """Every model once per RESYNC_SECONDS, spread evenly over the period
    (a model's passes are never more than two periods apart)."""
    CACHE.synced.wait()
    while not _stopping.wait(RESYNC_SECONDS):
        keys = CACHE.keys()
        for i, key in enumerate(keys):
            QUEUE.add_after(key, RESYNC_SECONDS * i / max(1, len(keys)))


# ------------------------------------------------------ the cache's writers


def _indexer(kind: str):
    async def index(body: kopf.Body, **_: Any) -> None:
        CACHE.update(kind, dict(body))
        return None  # kubento's cache keeps the object, not kopf's index
    return index


def _events(kind: str):
    async def event(type: str, body: kopf.Body, **_: Any) -> None:
        key = CACHE.delete(kind, dict(body)) if type == "DELETED" else CACHE.update(kind, dict(body))
        CACHE.synced.set()  # handlers run only once every initial listing is indexed
        if key is not None:
            QUEUE.add(key)
    return event


def _relisted(group: str, plural: str, namespace: Optional[str], uids: set[str]) -> int:
    """A watch listed again: what it no longer has was deleted meanwhile."""
    kind = _KINDS.get((group, plural))
    if kind is None:
        return 0
    keys = CACHE.relisted(kind, namespace, uids)
    for key in keys:
        QUEUE.add(key)
    return len(keys)


_WATCHED = [
    (kinds.DEPLOYMENT, ("apps", "v1", "deployments")),
    (kinds.POD, ("", "v1", "pods")),
    (kinds.SERVICE, ("", "v1", "services")),
    (kinds.HPA, ("autoscaling", "v2", "horizontalpodautoscalers")),
    (kinds.SCALED_OBJECT, ("keda.sh", "v1alpha1", "scaledobjects")),
    (kinds.JOB, ("batch", "v1", "jobs")),
]
for _kind, (_group, _version, _plural) in _WATCHED:
    kopf.index(_group, _version, _plural, id=f"cache-{_plural}")(_indexer(_kind))
    kopf.on.event(_group, _version, _plural, id=f"queue-{_plural}")(_events(_kind))

_KINDS = {(group, plural): kind for kind, (group, _, plural) in _WATCHED}
_KINDS |= {(api.GROUP, api.PLURAL): kinds.MODEL, ("", "configmaps"): kinds.CONFIG_MAP}
watches.install(WATCHES, _relisted)

kopf.index(api.GROUP, api.VERSION, api.PLURAL, id="cache-modeldeployments")(_indexer(kinds.MODEL))
kopf.index("", "v1", "configmaps", id="cache-configmaps")(_indexer(kinds.CONFIG_MAP))


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def model_deployment_event(type: str, namespace: str, name: str, body: kopf.Body, **_: Any) -> None:
    CACHE.synced.set()
    if type == "DELETED":
        CACHE.delete(kinds.MODEL, dict(body))
        QUEUE.add((namespace, name))  # its pass forgets it
    elif CACHE.update(kinds.MODEL, dict(body)) is not None:
        QUEUE.add((namespace, name))


@kopf.on.event("", "v1", "configmaps")
async def config_map_event(type: str, namespace: str, name: str, body: kopf.Body, **_: Any) -> None:
    """A build source changed (or appeared, or went): rebuild or say so."""
    CACHE.synced.set()
    if type == "DELETED":
        CACHE.delete(kinds.CONFIG_MAP, dict(body))
    else:
        CACHE.update(kinds.CONFIG_MAP, dict(body))
    for key in CACHE.models_reading(namespace, name):
        QUEUE.add(key)
