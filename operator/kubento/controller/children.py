"""Children of a ModelDeployment in the cluster: read every revision's
Deployment and pods, and make them, the Services and the HPA look like a
rollout decision (kubento.rollout.revisions.decide).

The spec's own revision is sent whole by server-side apply; other revisions
are only resized, through their scale subresource, so their templates stay
exactly as they were. A child is applied only when its applied-hash differs
or someone else changed it (its generation moved): a pass over an unchanged
model writes nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Optional

from kubernetes.client.exceptions import ApiException

from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.bento import ServedBento
from kubento.builders.deployment import deployment
from kubento.builders.hpa import horizontal_pod_autoscaler
from kubento.builders.keda import KEDA_API_VERSION, scaled_object
from kubento.builders.meta import ANNOTATION_APPLIED_HASH, LABEL_REVISION, Owner, preview_name, selector_string
from kubento.builders.service import preview_service, service
from kubento.controller import kube
from kubento.controller.status import Problem, pod_problems
from kubento.rollout.revisions import Decision, Seen

log = logging.getLogger("kubento.children")

LEGACY = "legacy-"


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
    wanted = (manifest.get("spec") or {}).get("replicas")
    if wanted is not None and (live.get("spec") or {}).get("replicas") != wanted:
        return "replicas differ"  # resized while it was not the spec's revision
    seen = _seen_generation.setdefault(_key(manifest), meta.get("generation", 0))
    if seen != meta.get("generation", 0):
        return "changed by someone else"
    return None


# Pod failures that mean a revision will not serve on its own: a rollout
# fails at once instead of waiting for progressDeadlineSeconds.
CANDIDATE_FAILURES = {"CrashLoopBackOff", "OOMKilled", "ImagePullBackOff", "BentoFetchFailed",
                      "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass
class Revisions:
    """Every revision Deployment of one model, with its pods."""

    deployments: dict[str, dict[str, Any]]
    pods: dict[str, list[dict[str, Any]]]

    def seen(self) -> dict[str, Seen]:
        out = {}
        for rev, dep in self.deployments.items():
            st = dep.get("status") or {}
            pods = self.pods.get(rev, [])
            failures = [p for p in pod_problems(pods) if p.reason in CANDIDATE_FAILURES]
            out[rev] = Seen(
                desired=(dep.get("spec") or {}).get("replicas", 1),
                ready=st.get("readyReplicas", 0),
                pods=len(pods),
                failure=failures[0].message if failures else "",
            )
        return out


def observe_revisions(owner: Owner) -> Revisions:
    deployments: dict[str, dict[str, Any]] = {}
    for dep in kube.list_objects("apps/v1", "Deployment", owner.namespace, selector_string(owner)):
        rev = ((dep.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION)
        if rev and owner.controls(dep):
            selector = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if LABEL_REVISION not in selector:
                # From kubento before per-revision Deployments (its selector is
                # immutable): an old revision like any other, drained once the
                # revision's own Deployment is ready.
                rev = f"{LEGACY}{rev}"
            deployments[rev] = dep
    pods: dict[str, list[dict[str, Any]]] = {}
    for pod in kube.list_pods(owner.namespace, selector_string(owner)):
        rev = ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION) or ""
        if f"{LEGACY}{rev}" in deployments and rev not in deployments:
            rev = f"{LEGACY}{rev}"
        pods.setdefault(rev, []).append(pod)
    return Revisions(deployments, pods)


def apply_child(owner: Owner, manifest: dict[str, Any], live: Optional[dict[str, Any]] = None,
                read: bool = True) -> tuple[Optional[dict[str, Any]], Optional[Problem]]:
    """Apply ``manifest`` if the live object differs (or was changed by
    someone else). Returns the live object and the problem that stopped it."""
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    if live is None and read:
        live = kube.get(manifest["apiVersion"], kind, owner.namespace, name)
    if live is not None and not owner.controls(live):
        return None, Problem(
            "ChildConflict",
            f"{kind} {name} already exists and is not controlled by this ModelDeployment; "
            "kubento leaves it alone (delete or rename it)",
        )
    why = _needs_apply(live, manifest)
    if not why:
        return live, None
    log.info("applying %s %s/%s (%s)", kind, owner.namespace, name, why)
    try:
        live = kube.apply(manifest)
    except kube.NotInstalled as exc:
        return None, Problem("ApplyFailed", f"the API server does not serve {kind}: {exc}")
    except ApiException as exc:
        if exc.status in (409, 429) or exc.status >= 500:
            raise  # transient: retried by the next event or resync
        return live, Problem("ApplyFailed", f"the API server rejected {kind} {name}: {kube.rejection(exc)}")
    _seen_generation[_key(manifest)] = (live.get("metadata") or {}).get("generation", 0)
    return live, None


def _sync_scaled_object(spec: ModelDeploymentSpec, owner: Owner) -> Optional[Problem]:
    """autoscaling.provider keda: a ScaledObject (KEDA's CRDs must be there)."""
    wanted = scaled_object(spec, owner)
    if not kube.served(KEDA_API_VERSION, "ScaledObject"):
        if wanted is None:
            return None
        return Problem("KEDANotInstalled", "autoscaling.provider is keda but this cluster does not serve KEDA's "
                       f"ScaledObject ({KEDA_API_VERSION}): install KEDA; running {wanted['spec']['minReplicaCount']} "
                       "or spec.replicas replicas meanwhile", blocking=False)
    if wanted is None:
        _delete_if_ours(owner, KEDA_API_VERSION, "ScaledObject", owner.name)
        return None
    return apply_child(owner, wanted)[1]


def _delete_if_ours(owner: Owner, api_version: str, kind: str, name: str) -> None:
    live = kube.get(api_version, kind, owner.namespace, name)
    if live is not None and owner.controls(live):
        log.info("deleting %s %s/%s: no longer wanted", kind, owner.namespace, name)
        kube.delete(api_version, kind, owner.namespace, name)


def apply_decision(spec: ModelDeploymentSpec, owner: Owner, bento: Optional[ServedBento], rev: Optional[str],
                   decision: Decision, revisions: Revisions) -> list[Problem]:
    """Make the children look like ``decision``: the spec's revision by
    server-side apply, other revisions resized through their scale
    subresource (their templates stay as they were), then the Services."""
    problems = []
    for r, replicas in decision.replicas.items():
        live = revisions.deployments.get(r)
        if r == rev and bento is not None:
            name = live["metadata"]["name"] if live else None
            manifest = deployment(spec, owner, bento, replicas, name=name)
            live, problem = apply_child(owner, manifest, live, read=live is None)
            if problem:
                problems.append(problem)
            elif live is not None:
                revisions.deployments[r] = live
        elif live is not None and (live.get("spec") or {}).get("replicas") != replicas:
            log.info("scaling revision %s of %s/%s to %d", r, owner.namespace, owner.name, replicas)
            kube.scale_deployment(owner.namespace, live["metadata"]["name"], replicas)
            live.setdefault("spec", {})["replicas"] = replicas
    for r in decision.delete:
        live = revisions.deployments.pop(r)
        log.info("deleting revision %s of %s/%s: out of history", r, owner.namespace, owner.name)
        kube.delete("apps/v1", "Deployment", owner.namespace, live["metadata"]["name"])
    if problems and not revisions.deployments:
        return problems  # nothing to serve: no Service pointing nowhere
    wanted = [service(spec, owner, decision.selects)]
    if spec.rollout.strategy == "BlueGreen":
        preview = (decision.rollout or {}).get("revision") or decision.stable or rev
        if preview:
            wanted.append(preview_service(spec, owner, preview))
    else:
        _delete_if_ours(owner, "v1", "Service", preview_name(owner))
    hpa = horizontal_pod_autoscaler(spec, owner)
    if hpa is not None:
        wanted.append(hpa)
    else:
        _delete_if_ours(owner, "autoscaling/v2", "HorizontalPodAutoscaler", owner.name)
    for manifest in wanted:
        _, problem = apply_child(owner, manifest)
        if problem:
            problems.append(problem)
    problem = _sync_scaled_object(spec, owner)
    if problem:
        problems.append(problem)
    return problems


def forget(namespace: str, name: str) -> None:
    """Drop what is remembered about a deleted model's children."""
    ours = re.compile(rf"{re.escape(name)}(-[0-9a-f]{{10}}|-preview)?")
    for key in [k for k in _seen_generation if k[1] == namespace and ours.fullmatch(k[2])]:
        _seen_generation.pop(key, None)
