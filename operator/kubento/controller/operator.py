"""One running operator: everything ``kubento run`` keeps while it runs.

An :class:`Operator` owns the cache the watches fill, the work queue, the
per-model memory, the pools that talk to the API server and to model pods,
leadership and the workers. kubento.controller.handlers registers kopf
handlers that call into it; nothing in kubento.controller keeps mutable
state at module level (the Prometheus collectors aside). Its configuration
is a :class:`Config` that ``kubento run`` builds from its arguments.

- Workers (``Config.workers`` threads) take keys from the queue: repeated
  events merge, one model is never in two workers, a pass says when it next
  needs to run, a failing pass backs off per model (:meth:`Operator.work_one`).
- A resync puts every model on the queue once per ``resync_seconds``
  (spread over the period). A settled model's pass reads and writes nothing.
- With ``election_namespace`` set (the chart sets it), replicas elect a
  leader on a Lease there (kubento.controller.leader): every replica keeps
  its cache warm, only the leader's workers run passes. A new leader starts
  from a full resync with empty memory (analysis and autoscaler windows fill
  again: no verdict, promotion or scale-down from half a window).
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from kubento.controller import apply, metrics, progress
from kubento.controller.cache import Cache, Key
from kubento.controller.config import Config
from kubento.controller.kube import Kube
from kubento.controller.leader import LeaderElector
from kubento.controller.memory import Registry
from kubento.controller.podio import PodIO
from kubento.controller.reconcile import Outcome, Services, reconcile
from kubento.controller.kopfadapter import Watches
from kubento.controller.workqueue import WorkQueue

log = logging.getLogger("kubento")

WRITE_STREAK = 10  # passes in a row that write before the model is slowed down (someone fights it)


Pass = Callable[..., Outcome]


class Operator:
    def __init__(self, config: Config, kube: Optional[Kube] = None, *, run_pass: Pass = reconcile) -> None:
        self.config = config
        self.kube = kube  # None until start() (unit tests of the loop need none)
        self.cache = Cache()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.memory = Registry()
        self.watches = Watches()  # passes wait while a watch relists (its cache may miss what changed meanwhile)
        self.pods = PodIO(wake=self.queue.add)  # requests to model pods, off the workers; a job's end wakes its model
        self.applies = ThreadPoolExecutor(max_workers=apply.PARALLEL, thread_name_prefix="kubento-apply")
        self.progress = progress.Progress()  # which pass each worker is in: the liveness probe
        self.leading = threading.Event()  # this replica's workers may run passes
        self.stopping = threading.Event()
        self.run_pass = run_pass
        self.services: Optional[Services] = Services(self.cache, self.pods, kube, config, self.applies) if kube else None
        self.elector: Optional[LeaderElector] = None
        self.threads: list[threading.Thread] = []

    # ------------------------------------------------------------ lifecycle

    def start(self, kube: Kube) -> None:
        """Start leading (or electing), the workers and the resync."""
        self.kube = kube
        self.services = Services(self.cache, self.pods, kube, self.config, self.applies)
        self.stopping.clear()
        if self.config.election_namespace:
            identity = f"{self.config.identity or socket.gethostname()}-{uuid.uuid4().hex[:6]}"
            self.elector = LeaderElector(kube, self.config.election_namespace, self.config.lease_name,
                                         identity, on_started=self.started_leading, on_stopped=self.stopped_leading)
            self.threads.append(threading.Thread(target=self.elector.run, name="kubento-leader-election", daemon=True))
        else:
            self.started_leading()  # one replica, no election
        for i in range(self.config.workers):
            self.threads.append(threading.Thread(target=self._work, name=f"kubento-worker-{i}", daemon=True))
        self.threads.append(threading.Thread(target=self._resync, name="kubento-resync", daemon=True))
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        """Finish the passes under way, then hand the Lease over at once."""
        self.leading.clear()
        metrics.LEADER.set(0)  # from now on: the next leader may start before this process ends
        self.stopping.set()
        self.queue.close()
        for t in self.threads:
            if t.name.startswith("kubento-worker"):
                t.join(timeout=10)
        self.pods.stop()
        self.applies.shutdown(wait=False)
        if self.elector is not None:
            self.elector.stop(release=True)

    def started_leading(self) -> None:
        metrics.LEADER.set(1)
        self.leading.set()
        for key in self.cache.keys():  # everything once: the last leader's timers are not ours
            self.queue.add(key)

    def stopped_leading(self) -> None:
        self.leading.clear()
        metrics.LEADER.set(0)
        for key in self.cache.keys():  # a standby publishes no model's state, and keeps no stale windows
            metrics.forget(*key)
            self.memory.forget(key)

    def liveness(self) -> Optional[str]:
        """Why the workers are not making progress, or None."""
        workers = [t for t in self.threads if t.name.startswith("kubento-worker")]
        dead = [t.name for t in workers if not self.stopping.is_set() and not t.is_alive()]
        return progress.stalled(self.progress.passes(), dead, self.progress.now(), self.config.stall_seconds)

    # ------------------------------------------------------------ watches

    def observed(self, kind: str, type_: Optional[str], body: dict[str, Any]) -> None:
        """A watch event: the cache takes it, the models it concerns are queued."""
        keys = self.cache.delete(kind, body) if type_ == "DELETED" else self.cache.update(kind, body)
        self.cache.synced.set()  # event handlers run only once every initial listing is indexed
        for key in keys:
            self.queue.add(key)  # a deleted model's own pass forgets it

    def relisted(self, kind: str, namespace: Optional[str], uids: set[str]) -> int:
        """A watch listed again: what it no longer has was deleted meanwhile."""
        keys = self.cache.relisted(kind, namespace, uids)
        for key in keys:
            self.queue.add(key)
        return len(keys)

    # ------------------------------------------------------------ workers

    def work_one(self, timeout: float = 1.0) -> bool:
        """One turn of a worker: take a key (if this replica leads and no
        watch relists), run its pass, and schedule what comes next. False
        when there was nothing to do."""
        if not self.leading.wait(timeout) or not self.watches.fresh.wait(timeout):
            return False
        key = self.queue.get(timeout=timeout)
        if key is None:
            return False
        if not self.leading.is_set() or not self.watches.fresh.is_set():  # the key stays for later
            self.queue.done(key)
            self.queue.add(key)
            return False
        metrics.QUEUE_DEPTH.set(self.queue.depth())
        memory = self.memory.get(key)
        self.progress.began(key)
        try:
            with metrics.RECONCILE_SECONDS.time():
                # A leader's first pass over a model reads the model itself (the cache
                # of a replica that was cut off may lag behind the Lease), and so does
                # the pass after a status refused as stale (the model's watch may lag).
                outcome = self.run_pass(key, self.services, memory,
                                        verify=(self.elector is not None and not memory.verified) or memory.conflicted)
            memory.verified, memory.conflicted = True, outcome.conflict
        except Exception as exc:  # noqa: BLE001 - a worker outlives any one model
            metrics.RECONCILE_ERRORS.inc()
            delay = self.queue.failed(key)
            log.warning("reconcile of %s/%s failed (retry in %.0fs): %s", key[0], key[1], delay,
                        getattr(exc, "reason", None) or exc, exc_info=not hasattr(exc, "status"))
        else:
            self.queue.succeeded(key)
            self._next(key, memory, outcome)
        finally:
            self.progress.ended()
            self.queue.done(key)
        return True

    def _next(self, key: Key, memory: Any, outcome: Outcome) -> None:
        if not outcome.writes:
            memory.write_streak = 0
        if outcome.deleted:
            self.memory.forget(key)
            self.queue.forget(key)
            metrics.forget(*key)
        elif outcome.writes:
            # Once more, on what it wrote (the watch's echoes of its own writes bring
            # no pass); a model whose passes keep writing fights someone: slow down.
            memory.write_streak += 1
            if memory.write_streak > WRITE_STREAK:
                delay = min(60.0, 2.0 ** (memory.write_streak - WRITE_STREAK))
                log.warning("%s/%s: %d passes in a row changed something; next in %.0fs",
                            key[0], key[1], memory.write_streak, delay)
                self.queue.add_after(key, delay)
            else:
                self.queue.add(key)
        elif outcome.requeue_after is not None:
            self.queue.add_after(key, outcome.requeue_after)

    def _work(self) -> None:
        self.cache.synced.wait()
        while not self.stopping.is_set():
            self.work_one()

    def _resync(self) -> None:
        """Every model once per resync_seconds, spread evenly over the period
        (a model's passes are never more than two periods apart)."""
        self.cache.synced.wait()
        period = self.config.resync_seconds
        while not self.stopping.wait(period):
            keys = self.cache.keys()
            for i, key in enumerate(keys):
                self.queue.add_after(key, period * i / max(1, len(keys)))
