"""The apply layer: send what a plan asks for, nothing else.

Every write goes through here (server-side apply with kubento's field
manager, scale subresources, deletes, build Jobs, the status patch, events)
and is shown to the cache at once (an overlay until the watch catches up).
A refusal by the API server (4xx, not a conflict or throttling) becomes a
Problem for status and is remembered by the manifest's applied-hash, so the
same manifest is not sent again in a loop; transient errors (409, 429, 5xx,
connection errors) propagate and the work queue backs the model off.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import ModelDeploymentStatus
from kubento.builders.meta import ANNOTATION_APPLIED_HASH, Owner
from kubento.builders.revision import controller_revision
from kubento.controller import kinds, metrics
from kubento.controller.kube import ApiError, Kube, NotInstalled, rejection
from kubento.controller.cache import Cache
from kubento.controller.memory import ModelMemory
from kubento.controller.actions import Actions, Keep
from kubento.controller.plan_children import kept_key
from kubento.controller.status import Problem

log = logging.getLogger("kubento.apply")

def transient(exc: ApiError) -> bool:
    return exc.status in (409, 429) or (exc.status or 500) >= 500


@dataclass
class Result:
    problems: list[Problem] = field(default_factory=list)  # refusals found by this pass


def children(owner: Owner, actions: Actions, cache: Cache, memory: ModelMemory, now: float, kube: Kube,
             pool: Executor) -> Result:
    """Creates and applies (together), then scales, then deletes (after
    keeping what the plan asked the operator to remember)."""
    memory.generations.update(actions.remember_generations)
    result = Result()
    transient_error: Optional[BaseException] = None
    # A model's children are independent objects: send them together (a new
    # model's Deployment and Service in one round trip's time, not two; the
    # revision a spec change moved on from is kept beside the new one's).
    sends = [_Create(m) for m in actions.creates] + list(actions.applies) + list(actions.keeps)
    for step, sent in zip(sends, _send_all(sends, owner, cache, kube, pool)):
        if isinstance(step, Keep):
            if isinstance(sent, _Raise):
                transient_error = transient_error or sent.error
            elif isinstance(sent, ApiError):  # refused: said in status, asked again after a while
                message = (f"the API server refused ControllerRevision {step.deployment}: {rejection(sent)}; the "
                           "revision is not kept (were its Deployment deleted, it could not be made again)")
                log.warning("%s/%s: %s", owner.namespace, owner.name, message)
                memory.rejected[kept_key(step.deployment)] = (message, now)
                result.problems.append(Problem("RevisionNotKept", message, blocking=False))
            elif sent is not None:
                live, before = sent
                cache.wrote(kinds.CONTROLLER_REVISION, live, replaced=before)
            continue
        manifest = step.manifest
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if isinstance(sent, Problem):
            result.problems.append(sent)
            continue
        if isinstance(sent, _Raise):
            transient_error = transient_error or sent.error
            continue
        if isinstance(sent, ApiError):
            if isinstance(step, _Create):
                result.problems.append(Problem("BuildJobRejected" if kind == "Job" else "ApplyFailed",
                                               f"the API server refused {kind} {name}: {rejection(sent)}"))
                continue
            message = f"the API server rejected {kind} {name}: {rejection(sent)}"
            memory.rejected[manifest["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]] = (message, now)
            result.problems.append(Problem("ApplyFailed", message))
            continue
        live, before = sent
        cache.wrote(kind, live, replaced=before)
        if isinstance(step, _Create):
            if kind == "Job" and not owner.controls(live):
                result.problems.append(Problem("ChildConflict",
                                               f"Job {name} exists and is not controlled by this ModelDeployment"))
            continue
        memory.generations[(kind, name)] = (live.get("metadata") or {}).get("generation", 0)
    if transient_error is not None:
        raise transient_error  # what was written is in the cache; the queue retries the rest
    for step in actions.scales:
        log.info("scaling Deployment %s/%s to %d", owner.namespace, step.name, step.replicas)
        before = cache.version(kinds.DEPLOYMENT, owner.namespace, step.name)
        live = cache.get(kinds.DEPLOYMENT, owner.namespace, step.name)
        rv = kube.scale_deployment(owner.namespace, step.name, step.replicas)
        if live is not None:
            live["spec"]["replicas"] = step.replicas
            live["metadata"]["resourceVersion"] = rv
            cache.wrote(kinds.DEPLOYMENT, live, replaced=before)
    for pod, condition in actions.pod_conditions:
        log.info("pod %s/%s: %s %s (%s)", owner.namespace, pod, condition["type"], condition["status"],
                 condition["reason"])
        before = cache.version(kinds.POD, owner.namespace, pod)
        live = kube.set_pod_condition(owner.namespace, pod, condition)
        if live is not None:
            cache.wrote(kinds.POD, live, replaced=before)
            metrics.pod_checked(owner.namespace, owner.name, condition["reason"])
    for step in actions.deletes:
        log.info("deleting %s %s/%s", step.kind, owner.namespace, step.name)
        before = cache.version(step.kind, owner.namespace, step.name)
        kube.delete(step.api_version, step.kind, owner.namespace, step.name, step.propagation)
        cache.wrote(step.kind, None, owner.namespace, step.name, replaced=before)
        memory.generations.pop((step.kind, step.name), None)
    return result


PARALLEL = 16  # applies in flight at once, across all workers (the operator's pool)


@dataclass
class _Create:
    manifest: dict[str, Any]  # created, never applied: a Job, a ControllerRevision


@dataclass
class _Raise:
    error: BaseException  # transient (409, 429, 5xx, a connection error): the queue retries the model


def _send(step: Any, owner: Owner, cache: Cache, kube: Kube) -> Any:
    """One create or apply: (live, the cache's version before) when written; a Problem
    (someone else's object, a kind not served); the ApiError of a
    refusal; or _Raise."""
    if isinstance(step, Keep):
        return _keep(step, owner, cache, kube)
    manifest = step.manifest
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    try:
        if isinstance(step, _Create):
            log.info("creating %s %s/%s", kind, owner.namespace, name)
            before = cache.version(kind, owner.namespace, name)
            return kube.create(manifest), before
        if step.read_first:
            live = kube.metadata(manifest["apiVersion"], kind, owner.namespace, name)
            if live is not None and not owner.controls(live):
                return Problem("ChildConflict", f"{kind} {name} already exists and is not controlled by this "
                               "ModelDeployment; kubento leaves it alone (delete or rename it)")
        log.info("applying %s %s/%s (%s)", kind, owner.namespace, name, step.why)
        before = cache.version(kind, owner.namespace, name)
        return kube.apply(manifest), before
    except NotInstalled as exc:
        return Problem("ApplyFailed", f"the API server does not serve {kind}: {exc}")
    except ApiError as exc:
        return _Raise(exc) if transient(exc) else exc
    except Exception as exc:  # noqa: BLE001 - raised in the worker, as before
        return _Raise(exc)


def _keep(step: Keep, owner: Owner, cache: Cache, kube: Kube) -> Any:
    """Read a revision's Deployment (the cache keeps only its metadata; the
    API server's watch cache has it, and an old revision no longer changes) and
    create its ControllerRevision: (live, the cache's version before); None
    when the Deployment is gone; the ApiError of a refusal; or _Raise."""
    try:
        live = kube.get_cached("apps/v1", kinds.DEPLOYMENT, owner.namespace, step.deployment)
        if live is None or not owner.controls(live):
            return None
        log.info("keeping revision %s/%s as a ControllerRevision", owner.namespace, step.deployment)
        before = cache.version(kinds.CONTROLLER_REVISION, owner.namespace, step.deployment)
        return kube.create(controller_revision(owner, live, step.number)), before
    except ApiError as exc:
        return _Raise(exc) if transient(exc) else exc
    except Exception as exc:  # noqa: BLE001 - raised in the worker, as before
        return _Raise(exc)


def _send_all(steps: list[Any], owner: Owner, cache: Cache, kube: Kube, pool: Executor) -> list[Any]:
    if len(steps) <= 1:
        return [_send(step, owner, cache, kube) for step in steps]
    return list(pool.map(lambda step: _send(step, owner, cache, kube), steps))


def status(body: dict[str, Any], previous: ModelDeploymentStatus, actions: Actions, cache: Cache, kube: Kube,
           post_event: Optional[Callable[[dict[str, Any], str, str, str], None]] = None) -> Optional[int]:
    """The status patch, of the version of the model the pass saw (a status
    for an older spec is never written: 409), then the events of its
    transitions (and of pods failing prediction checks). Returns the HTTP
    status that refused the patch (409: the model changed meanwhile, its
    watch event brings a pass; 404: it is gone), None when written."""
    meta = body["metadata"]
    if actions.status is not None:
        before = cache.version(kinds.MODEL, meta["namespace"], meta["name"])
        try:
            live = kube.patch_status(meta["namespace"], meta["name"], actions.status, meta.get("resourceVersion"))
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise
            log.info("%s/%s: status not written (%s): the model %s", meta["namespace"], meta["name"], exc.status,
                     "is gone" if exc.status == 404 else "changed since this pass read it")
            return exc.status
        if live is not None:
            cache.wrote(kinds.MODEL, live, replaced=before)
        metrics.count_transitions(meta["namespace"], meta["name"], previous, actions.new_status)
    for event in actions.events:
        try:
            (post_event or kube.post_event)(body, *event)
        except ApiError as exc:  # an event lost is not worth failing the pass
            log.warning("could not post event %s for %s/%s: %s", event[1], meta["namespace"], meta["name"], exc.reason)
    return None


GROUP_VERSION = f"{api.GROUP}/{api.VERSION}"
