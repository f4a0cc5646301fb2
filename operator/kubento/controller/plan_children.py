"""Which children a pass wants: the revisions' Deployments (applied, resized,
made again from their ControllerRevisions, deleted), the Services, the
HTTPRoute, the revisions to keep, and the prediction-check gates of pods.
Pure, like the rest of the plan (kubento.controller.plan)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from kubento.api.v1alpha1 import Agreement, ModelDeploymentSpec, ModelDeploymentStatus
from kubento.builders.bento import ServedBento
from kubento.builders import graph
from kubento.builders.deployment import deployment
from kubento.builders.hpa import horizontal_pod_autoscaler
from kubento.builders.keda import KEDA_API_VERSION, scaled_object
from kubento.builders.route import ROUTE_API_VERSION
from kubento.builders.meta import ANNOTATION_APPLIED_HASH, LABEL_REVISION
from kubento.builders.revision import stored_deployment
from kubento.builders.service import service
from kubento.controller.status import Problem, pod_problems
from kubento.controller import kinds, route as routing
from kubento.controller.kinds import CONTROLLER_REVISION, DEPLOYMENT, HPA, HTTP_ROUTE, SERVICE
from kubento.controller.actions import Apply, Delete, Keep, Scale
from kubento.controller.observation import Inputs
from kubento.controller.world import LEGACY, Revisions, World
from kubento.predictions import gate
from kubento.rollout import strategy as rollout_strategy
from kubento.rollout.revisions import Decision, Seen

REJECTION_RETRY_SECONDS = 300.0  # a manifest the API server refused is sent again after this, or when it changes

# Pod failures that mean a revision will not serve on its own: a rollout
# fails at once instead of waiting for progressDeadlineSeconds.
CANDIDATE_FAILURES = {"CrashLoopBackOff", "OOMKilled", "ImagePullBackOff", "BentoFetchFailed",
                      "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


# --------------------------------------------------------------- the world


def seen_of(revisions: Revisions) -> dict[str, Seen]:
    """What the rollout decision needs of each revision's Deployment and pods."""
    out = {}
    for rev, dep in revisions.deployments.items():
        st = dep.get("status") or {}
        pods = revisions.pods.get(rev, [])
        failures = [p for p in pod_problems(pods) if p.reason in CANDIDATE_FAILURES]
        out[rev] = Seen(
            desired=(dep.get("spec") or {}).get("replicas", 1),
            ready=st.get("readyReplicas", 0),
            pods=len(pods),
            failure=failures[0].message if failures else "",
        )
    for rev, pods in revisions.service_pods.items():  # a BentoML service of the revision that will not serve
        failures = [(graph.service_name(p), problem) for p in pods for problem in pod_problems([p])
                    if problem.reason in CANDIDATE_FAILURES]
        if rev in out and failures and not out[rev].failure:
            name, problem = failures[0]
            out[rev] = replace(out[rev], failure=f"service {name}: {problem.message}")
    return out


# ----------------------------------------------------------------- children


def _needs_apply(live: Optional[dict[str, Any]], manifest: dict[str, Any],
                 generations: dict[tuple[str, str], int], remember: dict[tuple[str, str], int]) -> Optional[str]:
    """Why ``manifest`` must be applied over ``live``, or None. A child's
    generation not in memory yet goes to ``remember``."""
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
    key = (manifest["kind"], manifest["metadata"]["name"])
    seen = generations.get(key)
    if seen is None:
        seen = remember[key] = meta.get("generation", 0)
    if meta.get("generation") is not None and seen != meta.get("generation", 0):
        return "changed by someone else"
    return None


class _Children:
    """Collects the applies, scales and deletes of children, and the
    problems that stop them (a child someone else owns, a refused manifest)."""

    def __init__(self, world: World, inputs: Inputs) -> None:
        self.world, self.inputs, self.owner = world, inputs, world.owner
        self.applies: list[Apply] = []
        self.scales: list[Scale] = []
        self.deletes: list[Delete] = []
        self.problems: list[Problem] = []
        self.remember: dict[tuple[str, str], int] = {}
        self.repaired: list[tuple[str, str, str]] = []  # events: revision Deployments made again

    def apply(self, manifest: dict[str, Any], live: Optional[dict[str, Any]] = None, lookup: bool = True,
              read_first: bool = False) -> bool:
        """Ask to apply ``manifest`` if the live child differs. False when it
        cannot be (someone else's object, or refused before)."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if live is None and lookup:
            live = self.world.named(kind, name)
        if live is not None and not self.owner.controls(live):
            self.problems.append(Problem(
                "ChildConflict",
                f"{kind} {name} already exists and is not controlled by this ModelDeployment; "
                "kubento leaves it alone (delete or rename it)",
            ))
            return False
        applied_hash = manifest["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]
        refused = self.inputs.rejected.get(applied_hash)
        if refused is not None and self.inputs.now - refused[1] < REJECTION_RETRY_SECONDS:
            self.problems.append(Problem("ApplyFailed", refused[0]))
            return False
        why = _needs_apply(live, manifest, self.inputs.generations, self.remember)
        if why:
            # A child missing from a cache that holds only kubento's own may
            # still exist under someone else: the apply layer reads it first.
            # Services are watched unfiltered: missing from the cache is missing.
            # A Service named only by revision (gateway mode) may be someone else's too: read it first.
            self.applies.append(Apply(manifest, why, read_first=live is None and (
                read_first or kinds.of(kind).watch == "managed")))
        return True

    def delete_if_ours(self, api_version: str, kind: str, name: str) -> None:
        live = self.world.named(kind, name)
        if live is not None and self.owner.controls(live) and not live["metadata"].get("deletionTimestamp"):
            self.deletes.append(Delete(api_version, kind, name))


def plan_children(spec: ModelDeploymentSpec, world: World, inputs: Inputs, bento: Optional[ServedBento],
                  rev: Optional[str], decision: Decision, revisions: Revisions,
                  view: Optional[routing.View] = None, served_graph: Optional[graph.Graph] = None) -> _Children:
    """Make the children look like ``decision``: the spec's revision by
    server-side apply, other revisions resized through their scale
    subresource (their templates stay as they were), a lost revision
    Deployment made again from its ControllerRevision, then the Services."""
    out = _Children(world, inputs)
    wanted_services: set[tuple[str, str]] = set()
    for r, replicas in decision.replicas.items():
        live = revisions.deployments.get(r)
        if r == rev and bento is not None:
            name = live["metadata"]["name"] if live else None
            out.apply(deployment(spec, out.owner, bento, replicas, name=name), live, lookup=False)
            if served_graph is not None:  # its other BentoML services, as many pods as the entry
                for manifest in graph.dependencies(spec, out.owner, served_graph, r, replicas):
                    out.apply(manifest)
                    wanted_services.add((manifest["kind"], manifest["metadata"]["name"]))
        elif live is None and r in inputs.stored_revisions:
            manifest = stored_deployment(out.owner, inputs.stored_revisions[r], replicas)
            role = "the stable revision" if r == decision.stable else "the revision rolling out"
            out.repaired.append(("Warning", "RevisionRepaired",
                                 f"Deployment {manifest['metadata']['name']} of {role} {r} was missing: made again "
                                 f"from its ControllerRevision with {replicas} replicas"))
            out.applies.append(Apply(manifest, "missing: made again from its ControllerRevision", read_first=True))
        elif live is not None and (live.get("spec") or {}).get("replicas") != replicas:
            out.scales.append(Scale(live["metadata"]["name"], replicas))
    plan_other_services(out, rev, decision, revisions)
    for r in decision.delete:
        live = revisions.deployments[r]
        out.deletes.append(Delete("apps/v1", "Deployment", live["metadata"]["name"]))
    alive = {r for r in revisions.deployments if r not in decision.delete}
    plan_services_gone(out, alive | {r for r, pods in revisions.pods.items() if pods}, wanted_services)
    if out.problems and not alive and not any(a.manifest["kind"] == "Deployment" for a in out.applies):
        return out  # nothing to serve: no Service pointing nowhere
    out.apply(service(spec, out.owner, decision.selects))
    # The strategy's own children (BlueGreen's preview Service); those of the others go.
    showing = (decision.rollout.revision if decision.rollout else None) or decision.stable or rev
    wanted = rollout_strategy.of(spec.rollout.strategy).children(spec, out.owner, showing)
    for manifest in wanted:
        out.apply(manifest)
    made = {(m["kind"], m["metadata"]["name"]) for m in wanted}
    for other in rollout_strategy.strategies().values():
        for api_version, kind, name in other.child_names(out.owner):
            if (kind, name) not in made:
                out.delete_if_ours(api_version, kind, name)
    plan_route(out, spec, inputs, decision, view)
    hpa = horizontal_pod_autoscaler(spec, out.owner)
    if hpa is not None:
        out.apply(hpa)
    else:
        out.delete_if_ours("autoscaling/v2", "HorizontalPodAutoscaler", out.owner.name)
    wanted = scaled_object(spec, out.owner)
    if not inputs.keda_served:
        if wanted is not None:
            out.problems.append(Problem(
                "KEDANotInstalled", "autoscaling.provider is keda but this cluster does not serve KEDA's "
                f"ScaledObject ({KEDA_API_VERSION}): install KEDA; running {wanted['spec']['minReplicaCount']} "
                "or spec.replicas replicas meanwhile", blocking=False))
    elif wanted is None:
        out.delete_if_ours(KEDA_API_VERSION, "ScaledObject", out.owner.name)
    else:
        out.apply(wanted)
    return out


def plan_other_services(out: _Children, rev: Optional[str], decision: Decision, revisions: Revisions) -> None:
    """The other BentoML services of revisions other than the spec's follow
    their entry's replicas through the scale subresource (their templates stay
    as they were): down to 0 once the entry has no pod left (a revision kept
    for rollback keeps no GPU), back up when it serves again."""
    for dep in out.world.of(DEPLOYMENT):
        r = graph.graph_revision(dep)
        if r is None or r == rev or not out.owner.controls(dep) or dep["metadata"].get("deletionTimestamp"):
            continue
        wanted = decision.replicas.get(r, 0)
        if wanted == 0 and revisions.pods.get(r):
            continue  # its entry pods are still finishing requests
        if (dep.get("spec") or {}).get("replicas") != wanted:
            out.scales.append(Scale(dep["metadata"]["name"], wanted))


def plan_services_gone(out: _Children, serving: set[str], wanted: set[tuple[str, str]]) -> None:
    """The other BentoML services of a revision (and their HPAs) go once it has
    neither its Deployment nor pods (its entry pods may call them until they
    stop); an HPA spec.services no longer asks for goes at once."""
    for kind, api_version in ((DEPLOYMENT, "apps/v1"), (SERVICE, "v1"), (HPA, "autoscaling/v2")):
        for obj in out.world.of(kind):
            owned_by = graph.graph_revision(obj)
            gone = owned_by not in serving or kind == HPA
            if owned_by and gone and (kind, obj["metadata"]["name"]) not in wanted:
                out.delete_if_ours(api_version, kind, obj["metadata"]["name"])


def plan_route(out: _Children, spec: ModelDeploymentSpec, inputs: Inputs, decision: Decision,
               view: Optional[routing.View]) -> None:
    """Gateway mode: the HTTPRoute and the revisions' Services it names; those
    no longer named (or, out of gateway mode, all of them) go."""
    made: set[str] = set()
    if view is not None and decision.route is not None and decision.route.weights:
        for manifest in routing.children(spec, out.owner, view, decision.route, inputs.retry_served):
            out.apply(manifest, read_first=manifest["kind"] == SERVICE)
            made.add(manifest["metadata"]["name"])
    for svc in out.world.of(SERVICE):
        name = svc["metadata"]["name"]
        if LABEL_REVISION in ((svc.get("metadata") or {}).get("labels") or {}) and name not in made:
            out.delete_if_ours("v1", SERVICE, name)
    if out.owner.name not in made:
        out.delete_if_ours(ROUTE_API_VERSION, HTTP_ROUTE, out.owner.name)


def kept_key(deployment: str) -> str:
    """The key of a refused Keep in the operator's memory of refusals."""
    return f"{CONTROLLER_REVISION}/{deployment}"


def plan_kept_revisions(world: World, rev: Optional[str], decision: Decision, revisions: Revisions, inputs: Inputs
                        ) -> tuple[list[Keep], list[Delete], list[Problem]]:
    """Each revision's Deployment kept as a ControllerRevision once the spec
    has moved on from it (the spec that made it is gone; the spec's own
    revision can always be made again from the spec, so a model never
    changed costs no ControllerRevision); those of revisions no longer kept
    (out of history, their Deployment deleted) go. A Keep the API server
    refused is asked again only after REJECTION_RETRY_SECONDS; meanwhile the
    model is Degraded with the refusal (serving, but its revision not kept)."""
    owner = world.owner
    kept = {((o.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION): o
            for o in world.of(CONTROLLER_REVISION) if owner.controls(o)}
    numbers = {h.revision: h.number for h in decision.history}
    keeps = [Keep(dep["metadata"]["name"], numbers.get(r, 0)) for r, dep in sorted(revisions.deployments.items())
             if r not in kept and r != rev and not r.startswith(LEGACY)
             and not dep["metadata"].get("deletionTimestamp")]
    problems = []
    for keep in list(keeps):
        refused = inputs.rejected.get(kept_key(keep.deployment))
        if refused is not None and inputs.now - refused[1] < REJECTION_RETRY_SECONDS:
            keeps.remove(keep)
            problems.append(Problem("RevisionNotKept", refused[0], blocking=False))
    wanted = set(numbers) | set(decision.replicas) | {decision.stable, rev}
    deletes = [Delete("apps/v1", CONTROLLER_REVISION, o["metadata"]["name"]) for r, o in sorted(kept.items())
               if (r not in wanted or r in decision.delete) and not o["metadata"].get("deletionTimestamp")]
    return keeps, deletes, problems


# -------------------------------------------------------- prediction checks


def plan_gates(revisions: Revisions, inputs: Inputs, previous: ModelDeploymentStatus, stamp: str,
               rev: Optional[str]) -> tuple[gate.Gates, dict[str, Seen], Optional[Agreement]]:
    """The readiness gates of the pods of revisions with prediction checks
    (kubento.predictions.gate), and what the rollout decision sees: a new
    revision whose pod failed its checks or disagreed with stable has
    failed (rolled back with that reason); a new comparison for status.rollout."""
    seen = seen_of(revisions)
    checks = gate.revision_checks(revisions.deployments)
    if not checks:
        return gate.Gates(), seen, None
    state = previous.rollout
    stable, candidate = previous.stable_revision, state.revision if state else None
    new_agreement = inputs.agreement if candidate is not None and candidate == rev else None
    agreement = new_agreement or (state.agreement if state else None)
    gates = gate.plan_gates(revisions.pods, checks, inputs.check_results, stable=stable, candidate=candidate,
                            agreement=agreement, stamp=stamp)
    for r, (reason, message) in gates.failures.items():
        if r == candidate and r != stable and r in seen and not seen[r].failure:
            seen[r] = replace(seen[r], failure=message, failure_reason=reason)
        elif r != candidate:
            gates.problems.append((reason, f"revision {r}: {message}; the pod stays out of the Service"))
    return gates, seen, new_agreement
