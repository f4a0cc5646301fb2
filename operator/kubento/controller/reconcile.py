"""One reconcile pass over a ModelDeployment: observe -> plan -> apply.

- observe: the model and its children from the watch caches (no request),
  plus what only I/O can tell and only when it is needed: the Secrets the
  spec names (checked when that set changes, and again with backoff while
  one is missing), a build source ConfigMap not seen before, the pods'
  /metrics when an analysis verdict or an autoscaler sample is due, and the
  prediction checks of pods whose containers just became ready (and a new
  revision's comparison with stable). Requests to pods are jobs that run
  off the workers (kubento.controller.podio): a pass starts them and a later
  pass, woken by their end, takes their results; a pass never waits for a
  pod;
- plan: kubento.controller.plan.plan, a pure function;
- apply: kubento.controller.apply sends only what the plan asks for. If the
  API server refuses a child, the pass plans once more with that answer so
  status says so in the same pass.

Returns when the model next needs a pass without any watch event (a pause's
end, a deadline, an analysis interval, the autoscaler's next sample).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pydantic import ValidationError

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.build_job import snapshot_name
from kubento.builders.deployment import OWN_METRICS
from kubento.builders.keda import KEDA_API_VERSION
from kubento.builders.meta import rollout_token, selector_labels
from kubento.controller import analysis, apply, autoscaler, kube, metrics, podio, probe
from kubento.controller import cache as kinds
from kubento.controller.cache import Cache, Key
from kubento.controller.memory import ModelMemory, SecretCheck
from kubento.controller.podio import PodIO
from kubento.builders.env_job import JOB_PREFIX, LABEL_BUILD_OF
from kubento.controller.environment import JOB_NAME_LABEL, recorded_result
from kubento.predictions import gate
from kubento.controller.plan import (
    Inputs,
    World,
    analysis_due,
    default_package_index,
    default_runtime_image,
    environment_job_wanted,
    plan,
    referenced_secrets,
    revisions_of,
)

log = logging.getLogger("kubento.reconcile")

# What a model's jobs of requests to its pods are for (one of each at a time).
CHECKS, ANALYSIS, AUTOSCALER = "checks", "analysis", "autoscaler"
CONFLICT_RETRY_SECONDS = 1.0  # a status refused as stale: look again this soon
SECRET_RECHECK_CAP = 30.0  # a missing Secret is looked for again at most this often (backoff from 1 s)


@dataclass
class Outcome:
    writes: int
    requeue_after: Optional[float]
    deleted: bool = False


def _secrets(spec: ModelDeploymentSpec, namespace: str, memory: ModelMemory, now: float,
             recheck_cap: float) -> tuple[frozenset[str], Optional[float]]:
    """Missing Secrets of the spec, from memory unless the names changed or
    a missing one is due for another look; and when to look again."""
    names = frozenset(name for _, name in referenced_secrets(spec))
    check = memory.secrets
    if not names:
        memory.secrets = None
        return frozenset(), None
    wait = min(recheck_cap, 2.0 ** (check.attempts - 1)) if check and check.missing else None
    if check is None or check.names != names or (wait is not None and now - check.checked >= wait):
        missing = frozenset(n for n in sorted(names) if not kube.secret_exists(namespace, n))
        attempts = (check.attempts + 1) if check and check.names == names and missing else (1 if missing else 0)
        check = memory.secrets = SecretCheck(names, missing, now, attempts)
        wait = min(recheck_cap, 2.0 ** (check.attempts - 1)) if missing else None
    if not check.missing:
        return frozenset(), None
    return check.missing, max(0.1, check.checked + (wait or recheck_cap) - now)


def _config_map(cache: Cache, namespace: str, name: str) -> Optional[dict[str, Any]]:
    known, content = cache.config_map(namespace, name)
    if known:
        return content
    live = kube.get("v1", "ConfigMap", namespace, name)  # first read by a build: the watch keeps it from now on
    if live is None:
        return None
    cache.update(kinds.CONFIG_MAP, live)
    return {"data": live.get("data") or {}, "binaryData": live.get("binaryData") or {}}


def gather(key: Key, world: World, cache: Cache, memory: ModelMemory, now: float, mono: float,
           recheck_cap: float, pods: PodIO) -> tuple[Inputs, Optional[float]]:
    """Inputs for the plan beyond the cached objects, and the soonest time
    one of them wants another pass."""
    body = world.model
    owner = world.owner
    inputs = Inputs(now=now, default_runtime_image=default_runtime_image(), default_index=default_package_index(),
                    generations=memory.generations, rejected=memory.rejected)
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return inputs, None
    requeue: Optional[float] = None
    inputs.missing_secrets, requeue = _secrets(spec, owner.namespace, memory, mono, recheck_cap)
    build = spec.bento.build
    if build is not None and build.source.config_map is not None:
        inputs.config_map = _config_map(cache, owner.namespace, build.source.config_map.name)
        inputs.snapshots = frozenset(
            snapshot_name(j["metadata"]["name"]) for j in world.jobs
            if cache.exists(kinds.CONFIG_MAP, owner.namespace, snapshot_name(j["metadata"]["name"])))
    _shared_environment_job(spec, world, cache, inputs)
    if world.scaled_objects:
        inputs.keda_served = True  # watched: KEDA is there (and one of ours may have to go)
    elif spec.autoscaling and spec.autoscaling.provider == "keda":
        inputs.keda_served = kube.served(KEDA_API_VERSION, "ScaledObject")
        if not inputs.keda_served:
            requeue = _soonest(requeue, kube.REDISCOVER_SECONDS)
    previous = body.get("status") or {}
    model_pods = [p for p in world.pods
                  if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                         for k, v in selector_labels(owner).items())]
    scaling = spec.autoscaling
    over, scraped = podio.take(memory.jobs, AUTOSCALER)
    if scaling and scaling.metric in OWN_METRICS and scaling.provider == "kubento":
        def scrape_for_autoscaler() -> None:
            memory.jobs[AUTOSCALER] = pods.submit(key, analysis.scrape_job({"pods": model_pods}, spec.port, now))
        inputs.scaling = autoscaler.scale(owner.namespace, owner.name, memory.autoscaler, scaling, spec.replicas,
                                          model_pods, previous.get("autoscaling"), now, scraped if over else None,
                                          scrape_for_autoscaler, podio.busy(memory.jobs, AUTOSCALER))
        requeue = _soonest(requeue, autoscaler.SAMPLE_SECONDS)
    elif memory.autoscaler.metric is not None:
        memory.autoscaler = type(memory.autoscaler)()  # turned off: nothing stale if it comes back
    state = previous.get("rollout") or {}
    due = analysis_due(spec, previous, state.get("revision"))
    over, scraped = podio.take(memory.jobs, ANALYSIS)
    if due is not None and spec.rollout.analysis is not None:
        revisions = revisions_of(world)
        groups = {"candidate": revisions.pods.get(state["revision"], []),
                  "stable": revisions.pods.get(previous.get("stableRevision"), [])}

        def scrape_for_analysis() -> None:
            memory.jobs[ANALYSIS] = pods.submit(key, analysis.scrape_job(groups, spec.port, now, tag=due))
        inputs.verdict = analysis.judge(memory.windows, due, spec.rollout.analysis, now, scraped if over else None,
                                        scrape_for_analysis, podio.busy(memory.jobs, ANALYSIS))
        requeue = _soonest(requeue, max(0.2, analysis.next_judgement(memory.windows, due, spec.rollout.analysis, now)))
    elif memory.windows and not state:
        memory.windows.clear()
    inputs.check_results, inputs.agreement, wait = _prediction_checks(key, world, cache, memory, previous, mono,
                                                                      pods)
    if inputs.agreement is not None:
        metrics.agreement(owner.namespace, owner.name, inputs.agreement["rate"])
    return inputs, _soonest(requeue, wait)


def _prediction_checks(key: Key, world: World, cache: Cache, memory: ModelMemory, previous: dict[str, Any],
                       mono: float, pods: PodIO) -> tuple[dict[str, gate.PodResult], Optional[dict[str, Any]],
                                                          Optional[float]]:
    """The results of the model's checks job if it is over, and a new job
    for the pods that are due (their containers just became ready; the
    rollout's new revision compared with stable once one of its pods
    passed). Nothing for a model whose pods are all checked."""
    revisions = revisions_of(world)
    checks = gate.revision_checks(revisions.deployments)
    mem = memory.predictions
    seen = memory.jobs.get(CHECKS)
    over, checked = podio.peek(memory.jobs, CHECKS)  # forgotten once the pass has written what it says
    if over:
        memory.checked = seen
    if not checks:
        mem.attempts.clear()
        mem.comparisons.clear()
        return {}, None, None
    state = previous.get("rollout") or {}
    stable, candidate = previous.get("stableRevision"), state.get("revision")
    requeue: Optional[float] = None
    results: dict[str, gate.PodResult] = {}
    agreement: Optional[dict[str, Any]] = None
    if over and checked is not None:
        for uid, result in checked.results.items():
            results[uid] = result
            if result.undecided:
                mem.attempts[uid] = (result.attempt, mono)
                requeue = _soonest(requeue, gate.RETRY_SECONDS)
            else:
                mem.attempts.pop(uid, None)
        if checked.agreement is not None and state:
            agreement, token = checked.agreement, rollout_token(state)
            if agreement["compared"] == 0:
                tries = mem.comparisons.get(token, 0) + 1
                mem.comparisons[token] = tries
                if tries < gate.MAX_ATTEMPTS:
                    agreement = None
                    requeue = _soonest(requeue, gate.RETRY_SECONDS)
            if agreement is not None:
                mem.comparisons.pop(token, None)
    dues = gate.due(revisions.pods, checks, stable, candidate, state.get("agreement") or agreement)
    live = {p["metadata"].get("uid") for pods_ in revisions.pods.values() for p in pods_}
    for uid in [u for u in mem.attempts if u not in live]:
        del mem.attempts[uid]
    if not dues or podio.busy(memory.jobs, CHECKS):
        return results, agreement, requeue
    namespace = world.owner.namespace
    contents: dict[str, Optional[dict[str, Any]]] = {}
    jobs: list[probe.CheckJob] = []
    comparisons: dict[str, probe.Comparison] = {}
    for d in dues:
        uid = d.pod["metadata"]["uid"]
        if uid in results:
            continue  # judged this pass: its gate is being written
        runs, last = mem.attempts.get(uid, (0, float("-inf")))
        if last + gate.RETRY_SECONDS > mono:
            requeue = _soonest(requeue, last + gate.RETRY_SECONDS - mono)
            continue
        rc = checks[d.revision]
        for name in sorted(rc.checks.config_maps() - contents.keys()):
            contents[name] = _config_map(cache, namespace, name)
        jobs.append((d.pod, rc.port, rc.checks, gate.resolve(rc.checks, contents), runs + 1))
        if d.compare:
            stable_pods = sorted((p for p in revisions.pods.get(stable, []) if analysis.is_ready(p)
                                  and not p["metadata"].get("deletionTimestamp")), key=lambda p: p["metadata"]["name"])
            if stable_pods:
                port = checks[stable].port if stable in checks else rc.port
                comparisons[uid] = probe.Comparison(uid, stable_pods[0], port)
            else:
                requeue = _soonest(requeue, gate.RETRY_SECONDS)  # no stable pod to compare with yet
    if jobs:
        memory.jobs[CHECKS] = pods.submit(key, probe.checks_job(jobs, comparisons))
    return results, agreement, requeue


def _shared_environment_job(spec: ModelDeploymentSpec, world: World, cache: Cache, inputs: Inputs) -> None:
    """An archive's environment Job that another model made (same archive,
    runtime image and index): from the cache, with its pods, so this model
    waits for it instead of preparing the same environment twice."""
    name = environment_job_wanted(spec, inputs)
    if name is None or any(j["metadata"]["name"] == name for j in world.jobs):
        return
    if recorded_result((world.model.get("status") or {}).get("environment"), name[len(JOB_PREFIX):]) is not None:
        return  # settled: no Job needed
    ns = world.owner.namespace
    job = cache.get(kinds.JOB, ns, name)
    if job is None:
        return
    inputs.shared_jobs = [job]
    creator = ((job.get("metadata") or {}).get("labels") or {}).get(LABEL_BUILD_OF)
    if creator:
        inputs.shared_pods = [p for p in cache.model((ns, creator)).pods
                              if ((p.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL) == name]


def _soonest(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None:
        return b
    return a if b is None else min(a, b)


def reconcile(key: Key, cache: Cache, memory: ModelMemory, pods: PodIO, *, clock: Callable[[], float] = time.time,
              monotonic: Callable[[], float] = time.monotonic, recheck_cap: float = SECRET_RECHECK_CAP,
              post_event: Optional[Callable[..., None]] = None, verify: bool = False) -> Outcome:
    """One pass over the model ``key``: observe, plan, apply. ``verify``:
    read the model first (a new leader's first pass: its cache may lag)."""
    if verify:
        seen = cache.version(kinds.MODEL, *key)
        live = kube.get_model(*key)
        # Unless the watch delivered a version meanwhile (then the cache is at least as new as the read):
        if cache.version(kinds.MODEL, *key) == seen:
            if live is None:
                cache.delete(kinds.MODEL, {"metadata": {"namespace": key[0], "name": key[1]}})
            elif live["metadata"].get("resourceVersion") != seen:
                cache.update(kinds.MODEL, live)
    snapshot = cache.model(key)
    if snapshot.model is None or (snapshot.model.get("metadata") or {}).get("deletionTimestamp"):
        return Outcome(0, None, deleted=True)  # its children go by garbage collection
    world = World(snapshot.model, snapshot.deployments, snapshot.pods, snapshot.services, snapshot.hpas,
                  snapshot.scaled_objects, snapshot.jobs)
    now = clock()
    inputs, requeue = gather(key, world, cache, memory, now, monotonic(), recheck_cap, pods)
    planned = plan(world, inputs)
    actions = planned.actions
    for note in actions.notes:
        log.info("%s/%s: %s", key[0], key[1], note)
    result = apply.children(world.owner, actions, cache, memory, now)
    if result.problems:
        # Refused: plan again with the answers, so status says so now.
        inputs.apply_problems = result.problems
        again = plan(world, inputs).actions
        actions.status, actions.events, actions.new_status = again.status, again.events, again.new_status
    if memory.checked is not None:  # the checks' results are written (or moot): a failed pass would have kept them
        podio.done_with(memory.jobs, CHECKS, memory.checked)
        memory.checked = None
    refused = apply.status(world.model, actions, cache, post_event)
    if refused == 404:
        cache.delete(kinds.MODEL, world.model)  # gone while the cache still had it
        return Outcome(actions.writes, None, deleted=True)
    metrics.publish_model(key[0], key[1], world.model.get("spec"), actions.new_status)
    if refused == 409:  # another version is on its way through the watch (which brings a pass); in case not:
        return Outcome(actions.writes, _soonest(CONFLICT_RETRY_SECONDS, _soonest(requeue, actions.requeue_after)))
    return Outcome(actions.writes, _soonest(requeue, actions.requeue_after))

