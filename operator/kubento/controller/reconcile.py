"""One reconcile pass over a ModelDeployment.

Level-triggered and idempotent: read the world, apply only children whose
applied-hash differs, delete children no longer wanted, then write status
only if it changed. A pass over an unchanged object makes no write call.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from typing import Any, Callable, Optional

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders import Owner, desired_children
from kubento.builders.bento import DEFAULT_RUNTIME_IMAGE, ServedBento
from kubento.builders.children import MANAGED_KINDS
from kubento.builders.deployment import revision
from kubento.builders.meta import ANNOTATION_APPLIED_HASH, LABEL_REVISION, selector_string, service_url
from kubento.controller import kube
from kubento.controller.build import BuildState, delete_builds, sync_build
from kubento.controller.status import (
    Observed,
    Problem,
    compute_status,
    merge_conditions,
    status_patch,
    transition_event,
)

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


def unsupported(spec: ModelDeploymentSpec) -> list[Problem]:
    """Spec fields whose behaviour later releases implement. Blocking when
    nothing sensible can run without them."""
    problems = []
    if spec.autoscaling and spec.autoscaling.metric in ("concurrency", "rps"):
        problems.append(
            Problem(
                "NotImplemented",
                f"autoscaling.metric {spec.autoscaling.metric} is not implemented yet; "
                f"running minReplicas ({spec.autoscaling.min_replicas}) replicas",
                blocking=False,
            )
        )
    if spec.rollout.strategy != "RollingUpdate" or spec.rollout.analysis is not None:
        problems.append(
            Problem(
                "NotImplemented",
                f"rollout strategy {spec.rollout.strategy}"
                + (" with analysis" if spec.rollout.analysis else "")
                + " is not implemented yet; new revisions replace old ones by a rolling update",
                blocking=False,
            )
        )
    return problems


# Generation of each child as kubento last applied or saw it: a different
# generation with the same applied-hash means someone else changed the spec.
_seen_generation: dict[tuple[str, str, str], int] = {}


def _key(manifest: dict[str, Any]) -> tuple[str, str, str]:
    return manifest["kind"], manifest["metadata"]["namespace"], manifest["metadata"]["name"]


def _needs_apply(live: Optional[dict[str, Any]], manifest: dict[str, Any]) -> Optional[str]:
    """Why ``manifest`` must be applied over ``live``, or None."""
    if live is None:
        return "missing"
    meta = live.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return "being deleted"
    if (meta.get("annotations") or {}).get(ANNOTATION_APPLIED_HASH) != manifest["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]:
        return "spec changed"
    seen = _seen_generation.setdefault(_key(manifest), meta.get("generation", 0))
    if seen != meta.get("generation", 0):
        return "changed by someone else"
    return None


def _applied_fields(live: dict[str, Any], manager: str) -> dict[str, Any]:
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            return entry.get("fieldsV1") or {}
    return {}


def _hand_over_replicas(live: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Switching to an HPA: kubento stops applying spec.replicas. Left alone,
    server-side apply would drop the field (back to 1 replica) before the HPA
    acts; another field manager keeps the live count until the HPA owns it."""
    if "replicas" in manifest["spec"] or "f:replicas" not in _applied_fields(live, kube.FIELD_MANAGER).get("f:spec", {}):
        return
    kube.apply(
        {"apiVersion": manifest["apiVersion"], "kind": manifest["kind"],
         "metadata": {"name": manifest["metadata"]["name"], "namespace": manifest["metadata"]["namespace"]},
         "spec": {"replicas": (live.get("spec") or {}).get("replicas", 1)}},
        field_manager=f"{kube.FIELD_MANAGER}-handover",
    )


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


def sync_children(spec: ModelDeploymentSpec, owner: Owner, bento: ServedBento) -> tuple[Optional[dict[str, Any]], list[Problem]]:
    """Apply what differs, delete what is no longer wanted. Returns the live
    Deployment and the problems that stopped a child from being applied."""
    wanted = desired_children(spec, owner, bento)
    wanted_kinds = {(m["apiVersion"], m["kind"]) for m in wanted}
    deployment, problems = None, []
    for manifest in wanted:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        live = kube.get(manifest["apiVersion"], kind, owner.namespace, name)
        if live is not None and not owner.controls(live):
            problems.append(Problem(
                "ChildConflict",
                f"{kind} {name} already exists and is not controlled by this ModelDeployment; "
                "kubento leaves it alone (delete or rename it)",
            ))
            continue
        why = _needs_apply(live, manifest)
        if why:
            log.info("applying %s %s/%s (%s)", kind, owner.namespace, name, why)
            try:
                if live is not None and kind == "Deployment":
                    _hand_over_replicas(live, manifest)
                live = kube.apply(manifest)
            except ApiException as exc:
                if exc.status in (409, 429) or exc.status >= 500:
                    raise  # transient: retried by the next event or resync
                problems.append(Problem("ApplyFailed", f"the API server rejected {kind} {name}: {kube.rejection(exc)}"))
            else:
                _seen_generation[_key(manifest)] = (live.get("metadata") or {}).get("generation", 0)
        if kind == "Deployment":
            deployment = live
    for api_version, kind in MANAGED_KINDS:
        if (api_version, kind) in wanted_kinds:
            continue
        live = kube.get(api_version, kind, owner.namespace, owner.name)
        if live is not None and owner.controls(live):
            log.info("deleting %s %s/%s: no longer wanted", kind, owner.namespace, owner.name)
            kube.delete(api_version, kind, owner.namespace, owner.name)
    return deployment, problems


def reconcile(body: dict[str, Any], post_event: EventSink) -> dict[str, Any]:
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

        problems = unsupported(spec)
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
        if bento is None:
            deployment = kube.get("apps/v1", "Deployment", owner.namespace, owner.name)
        else:
            deployment, rejected = sync_children(spec, owner, bento)
            problems = rejected + problems
        pods = kube.list_pods(owner.namespace, selector_string(owner)) if deployment is not None else []
        observed = Observed(
            spec=spec,
            generation=generation,
            revision=revision(spec, bento) if bento else None,
            url=service_url(owner),
            selector=selector_string(owner),
            deployment=deployment,
            problems=problems,
            pods=pods,
            build=build,
        )
        if bento is None and deployment is not None:
            # Still serving the last applied revision; say which.
            labels = (deployment.get("metadata") or {}).get("labels") or {}
            observed.revision = labels.get(LABEL_REVISION, observed.revision)
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
            for key in [k for k in _seen_generation if k[1:] == (namespace, name)]:
                _seen_generation.pop(key, None)
            return None

        def post(type_: str, reason: str, message: str) -> None:
            kube.post_event(body, type_, reason, message)

        return reconcile(body, post)


def _store(owner: Owner, previous: dict[str, Any], new: dict[str, Any], post_event: EventSink) -> None:
    patch = status_patch(previous, new)
    if patch is None:
        return
    kube.patch_status(owner.namespace, owner.name, patch)
    event = transition_event(previous, new)
    if event is not None:
        post_event(*event)
