"""One reconcile pass over a ModelDeployment.

Level-triggered and idempotent: read the world (the bento to serve, every
revision's Deployment and pods, an analysis verdict), decide the rollout's
next step (a pure function), apply what differs (controller.children), then
write status only if it changed. A pass over an unchanged object makes no
write call.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from typing import Any, Callable, Optional

from pydantic import ValidationError

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders import Owner
from kubento.builders.bento import DEFAULT_RUNTIME_IMAGE, ServedBento
from kubento.builders.deployment import OWN_METRICS, model_replicas, revision
from kubento.builders.meta import ANNOTATION_ABORT, ANNOTATION_PROMOTE, rollout_token, selector_string, service_url
from kubento.controller import analysis, autoscaler, children, kube, metrics
from kubento.controller.build import BuildState, delete_builds, sync_build
from kubento.controller.status import (
    Observed,
    Problem,
    RolloutView,
    compute_status,
    merge_conditions,
    pod_problems,
    status_patch,
    transition_events,
)
from kubento.rollout.analysis import Verdict
from kubento.rollout.revisions import Decision, decide

log = logging.getLogger("kubento.reconcile")

# The same object can be reconciled from its own handler and from a child's
# event at once; one lock per object keeps passes in order.
_locks: dict[tuple[str, str], threading.RLock] = {}
_locks_guard = threading.Lock()


def _lock(namespace: str, name: str) -> threading.RLock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.RLock())

EventSink = Callable[[str, str, str], None]


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def referenced_secrets(spec: ModelDeploymentSpec) -> list[tuple[str, str]]:
    """(field, Secret name) of every Secret the spec names."""
    refs = [("imagePullSecrets", s.name) for s in spec.image_pull_secrets]
    bento = spec.bento
    if bento.archive and bento.archive.secret_ref:
        refs.append(("bento.archive.secretRef", bento.archive.secret_ref.name))
    if bento.build and bento.build.output.secret_ref:
        refs.append(("bento.build.output.secretRef", bento.build.output.secret_ref.name))
    if bento.build and bento.build.source.git and bento.build.source.git.secret_ref:
        refs.append(("bento.build.source.git.secretRef", bento.build.source.git.secret_ref.name))
    return refs


def missing_secret_problem(spec: ModelDeploymentSpec, namespace: str) -> Optional[Problem]:
    refs = referenced_secrets(spec)
    missing = set(kube.missing_secrets(namespace, sorted({name for _, name in refs}))) if refs else set()
    if not missing:
        return None
    named = ", ".join(f"{name} ({field})" for field, name in refs if name in missing)
    return Problem(
        "SecretNotFound",
        f"Secret(s) named in the spec do not exist in namespace {namespace}: {named}; the model server was not changed",
    )


def served_bento(spec: ModelDeploymentSpec, owner: Owner, recorded_build: Optional[dict[str, Any]] = None
                 ) -> tuple[Optional[ServedBento], Optional[BuildState]]:
    """What the pods should run; for a build source, only once it is built."""
    if spec.bento.image:
        return ServedBento(spec.bento.image), None
    runtime = spec.runtime_image or os.environ.get("KUBENTO_RUNTIME_IMAGE") or DEFAULT_RUNTIME_IMAGE
    archive = spec.bento.archive
    if archive:
        secret = archive.secret_ref.name if archive.secret_ref else None
        return ServedBento(runtime, archive_uri=archive.uri, sha256=archive.sha256, secret=secret), None
    assert spec.bento.build is not None
    state, bento = sync_build(spec.bento.build, owner, runtime, recorded_build)
    return bento, state


def _flag(body: dict[str, Any], annotation: str, rev: Optional[str]) -> bool:
    """`kubento promote|abort` name the rollout they are meant for: a
    leftover annotation never acts on a later one."""
    state = (body.get("status") or {}).get("rollout") or {}
    if rev is None or state.get("revision") != rev:
        return False
    return (body["metadata"].get("annotations") or {}).get(annotation) == rollout_token(state)


def _verdict(spec: ModelDeploymentSpec, owner: Owner, rev: Optional[str], previous: dict[str, Any],
             revisions: children.Revisions) -> Optional[Verdict]:
    state = previous.get("rollout") or {}
    stable = previous.get("stableRevision")
    if spec.rollout.analysis is None or not state.get("stepReached") or state.get("rollback"):
        return None
    if state["revision"] != rev:
        return None  # the spec moved on: that rollout's verdict is not the new one's
    key = (owner.namespace, owner.name, rollout_token(state), state.get("step", 0))
    return analysis.judge(key, spec.rollout.analysis, spec.port,
                          revisions.pods.get(state["revision"], []), revisions.pods.get(stable, []))


def observe(spec: ModelDeploymentSpec, generation: int, owner: Owner, rev: Optional[str], problems: list[Problem],
            build: Optional[BuildState], decision: Decision, revisions: children.Revisions,
            scaling: Optional[dict[str, Any]]) -> Observed:
    """What status is computed from: the serving revision's Deployment and
    pods when nothing rolls out, and the rollout's plan when something does."""
    rolling = decision.plan is not None and not decision.plan.done
    rolled_back = rev is not None and rev == decision.failed and rev != decision.stable
    if rolling:
        shown = decision.rollout["revision"]
    elif rolled_back:
        shown = decision.stable  # the stable revision serves
    else:
        shown = rev if rev in revisions.deployments else decision.stable
    failed_entry = None
    if rolled_back:
        failed_entry = next((h for h in decision.history if h["revision"] == rev), {"revision": rev})
    deps = revisions.deployments.values()
    return Observed(
        spec=spec,
        generation=generation,
        revision=rev,
        url=service_url(owner),
        selector=selector_string(owner),
        deployment=revisions.deployments.get(shown) if shown else None,
        problems=problems,
        pods=revisions.pods.get(shown, []) if shown else [],
        build=build,
        rollout=RolloutView(
            plan=decision.plan if rolling else None,
            stable=decision.stable,
            candidate=(decision.rollout or {}).get("revision"),
            rolled_back=failed_entry,
            pods=sum((d.get("status") or {}).get("replicas", 0) for d in deps),
            ready=sum((d.get("status") or {}).get("readyReplicas", 0) for d in deps),
            stable_problems=pod_problems(revisions.pods.get(decision.stable, [])) if rolling and decision.stable else [],
            record={"stableRevision": decision.stable, "rollout": decision.rollout,
                    "failedRevision": decision.failed, "history": decision.history,
                    "canaryWeight": decision.weight, "autoscaling": scaling},
        ),
    )


def reconcile(body: dict[str, Any], post_event: EventSink, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Bring the children and status of one ModelDeployment in line with its
    spec. Returns the status it stored (or found current)."""
    meta = body["metadata"]
    owner = Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
    generation = meta.get("generation", 1)
    previous = dict(body.get("status") or {})
    with _lock(owner.namespace, owner.name):
        try:
            spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            # Admission should have caught this (e.g. a CRD older than the operator).
            new = dict(previous)
            new.update({"phase": "Failed", "observedGeneration": generation})
            ready = {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": " ".join(str(exc).split())}
            new["conditions"] = merge_conditions(previous.get("conditions", []), [ready], generation, now())
            _store(owner, previous, new, post_event)
            return new

        problems: list[Problem] = []
        missing = missing_secret_problem(spec, owner.namespace)
        bento, build = None, None
        if missing:
            problems.insert(0, missing)
        else:
            bento, build = served_bento(spec, owner, previous.get("build"))
            if build is not None and build.phase != "Succeeded":
                problems.insert(0, Problem(build.reason, build.summary))
        if spec.bento.build is None and previous.get("build"):
            delete_builds(owner)  # the source is no longer a build
        rev = revision(spec, bento) if bento else None
        revisions = children.observe_revisions(owner)
        candidate = rev if rev != previous.get("stableRevision") else None
        replicas, scaling = model_replicas(spec), None
        if not (spec.autoscaling and spec.autoscaling.metric in OWN_METRICS) and previous.get("autoscaling"):
            autoscaler.forget(owner.namespace, owner.name)  # turned off: nothing stale if it comes back
        if spec.autoscaling and spec.autoscaling.metric in OWN_METRICS and spec.autoscaling.provider == "kubento":
            pods = [p for revision_pods in revisions.pods.values() for p in revision_pods]
            scaling = autoscaler.scale(owner.namespace, owner.name, spec.autoscaling, spec.replicas, spec.port, pods,
                                       previous.get("autoscaling"), clock())
            replicas = scaling["desiredReplicas"]
        decision = decide(
            revision=rev,
            bento=bento.describe() if bento else "",
            rollout=spec.rollout,
            replicas=replicas,
            previous=previous,
            seen=revisions.seen(),
            now=clock(),
            verdict=_verdict(spec, owner, rev, previous, revisions),
            promote=_flag(body, ANNOTATION_PROMOTE, candidate),
            abort=_flag(body, ANNOTATION_ABORT, candidate),
        )
        for note in decision.notes:
            log.info("%s/%s: %s", owner.namespace, owner.name, note)
        if decision.replicas or decision.delete:
            problems = children.apply_decision(spec, owner, bento, rev, decision, revisions) + problems
        observed = observe(spec, generation, owner, rev or previous.get("currentRevision"), problems, build,
                           decision, revisions, scaling)
        new = compute_status(observed, previous, now())
        _store(owner, previous, new, post_event)
        return new


def reconcile_named(namespace: str, name: str) -> Optional[dict[str, Any]]:
    """Reconcile the ModelDeployment as it is now in the API (read under the
    object's lock, so a pass never works from a status an earlier pass replaced)."""
    with _lock(namespace, name):
        body = kube.get(f"{api.GROUP}/{api.VERSION}", api.KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            with _locks_guard:
                _locks.pop((namespace, name), None)
            children.forget(namespace, name)
            analysis.forget(namespace, name)
            autoscaler.forget(namespace, name)
            metrics.forget(namespace, name)
            return None

        def post(type_: str, reason: str, message: str) -> None:
            kube.post_event(body, type_, reason, message)

        status = reconcile(body, post)
        metrics.publish_model(namespace, name, body.get("spec"), status)
        return status


def _store(owner: Owner, previous: dict[str, Any], new: dict[str, Any], post_event: EventSink) -> None:
    patch = status_patch(previous, new)
    if patch is None:
        return
    kube.patch_status(owner.namespace, owner.name, patch)
    metrics.count_transitions(owner.namespace, owner.name, previous, new)
    for event in transition_events(previous, new):
        post_event(*event)
