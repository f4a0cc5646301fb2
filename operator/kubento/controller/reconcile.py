"""One reconcile pass over a ModelDeployment: observe -> plan -> apply.

- observe: kubento.controller.observe makes one Observation — the model and
  its children from the watch caches, its spec validated once, and the few
  inputs only I/O can tell (a Secret's existence, a ConfigMap not seen
  before, the results of requests to its pods, which run off the workers);
- plan: kubento.controller.plan.plan, a pure function of the Observation;
- apply: kubento.controller.apply sends only what the plan asks for, and
  keeps what it asks the operator to remember. If the API server refuses a
  child, the pass plans once more with that answer so status says so in the
  same pass.

Returns when the model next needs a pass without any watch event (a pause's
end, a deadline, an analysis interval, the autoscaler's next sample).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Optional

from kubento.controller import apply, metrics, podio
from kubento.controller.cache import Cache, Key
from kubento.controller.config import Config
from kubento.controller.kinds import MODEL
from kubento.controller.kube import Kube
from kubento.controller.memory import ModelMemory
from kubento.controller.observe import CHECKS, Observer, soonest
from kubento.controller.plan import plan
from kubento.controller.podio import PodIO

log = logging.getLogger("kubento.reconcile")

CONFLICT_RETRY_SECONDS = 1.0  # a status refused as stale: look again this soon
SECRET_RECHECK_CAP = 30.0  # a missing Secret is looked for again at most this often (backoff from 1 s)


@dataclass(frozen=True)
class Services:
    """What every pass uses (the operator owns them)."""

    cache: Cache
    pods: PodIO  # requests to model pods, off the workers
    kube: Kube  # the API server
    config: Config
    applies: Executor  # a pass's applies go out together


@dataclass
class Outcome:
    writes: int
    requeue_after: Optional[float]
    deleted: bool = False
    conflict: bool = False  # the status was refused: the model changed since the cache's version


def reconcile(key: Key, services: Services, memory: ModelMemory, *, clock: Callable[[], float] = time.time,
              monotonic: Callable[[], float] = time.monotonic, recheck_cap: float = SECRET_RECHECK_CAP,
              post_event: Optional[Callable[..., None]] = None, verify: bool = False) -> Outcome:
    """One pass over the model ``key``: observe, plan, apply. ``verify``:
    read the model first (a new leader's first pass, or the pass after a
    status refused as stale: the cache may lag)."""
    cache, kube = services.cache, services.kube
    if verify:
        seen = cache.version(MODEL, *key)
        live = kube.get_model(*key)
        # Unless the watch delivered a version meanwhile (then the cache is at least as new as the read):
        if cache.version(MODEL, *key) == seen:
            if live is None:
                cache.delete(MODEL, {"metadata": {"namespace": key[0], "name": key[1]}})
            elif live["metadata"].get("resourceVersion") != seen:
                log.info("%s/%s: read the model: version %s, the watch had brought %s", key[0], key[1],
                         live["metadata"].get("resourceVersion"), seen)
                cache.update(MODEL, live)
    world = cache.model(key)
    if world.model is None or (world.model.get("metadata") or {}).get("deletionTimestamp"):
        return Outcome(0, None, deleted=True)  # its children go by garbage collection
    now = clock()
    observation = Observer(key, services, memory, now, monotonic(), recheck_cap).observe(world)
    if observation.inputs.agreement is not None:
        metrics.agreement(key[0], key[1], observation.inputs.agreement.rate)
    actions = plan(observation).actions
    for note in actions.notes:
        log.info("%s/%s: %s", key[0], key[1], note)
    result = apply.children(world.owner, actions, cache, memory, now, kube, services.applies)
    if result.problems:
        # Refused: plan again with the answers, so status says so now.
        observation.inputs.apply_problems = result.problems
        again = plan(observation).actions
        actions.status, actions.events, actions.new_status = again.status, again.events, again.new_status
    if observation.checked is not None:  # the checks' results are written (or moot): a failed pass keeps them
        podio.done_with(memory.jobs, CHECKS, observation.checked)
        memory.checked = None
    refused = apply.status(world.model, observation.status, actions, cache, kube, post_event)
    if refused == 404:
        cache.delete(MODEL, world.model)  # gone while the cache still had it
        return Outcome(actions.writes, None, deleted=True)
    metrics.publish_model(key[0], key[1], observation.spec, actions.new_status)
    wake = soonest(observation.wake_after, actions.requeue_after)
    if refused == 409:  # another version is on its way through the watch (which brings a pass); in case
        # the watch lags or stalls, the next pass reads the model itself (one GET per conflict).
        return Outcome(actions.writes, soonest(CONFLICT_RETRY_SECONDS, wake), conflict=True)
    return Outcome(actions.writes, wake)
