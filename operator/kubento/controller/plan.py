"""One reconcile pass as a pure function: an observed world in, actions out.

``plan(observation)`` decides everything a pass does for one model: the
bento to serve (building it if needed), which revision Deployments run how
many pods (kubento.rollout.revisions.decide), the Services and the HPA or
ScaledObject, build Jobs to create or delete, the whole status, the events
to post, what the operator should remember and when to come back. No I/O
and no state: kubento.controller.observe made the Observation, and
kubento.controller.apply applies what comes out.

A plan only asks for writes that change something: a child is applied when
it is missing, its applied-hash differs, someone else changed its spec (its
generation moved) or it must be resized; the status only when it differs.
So a pass over a settled model asks for nothing.

Here: the pass itself and its status. Its parts have their own modules:
kubento.controller.plan_bento (which bento is served, builds, Secrets),
kubento.controller.plan_children (the children, the route, kept revisions,
prediction-check gates) and kubento.controller.actions (what comes out).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from kubento.api.v1alpha1 import AutoscalingStatus, Condition, HistoryEntry, ModelDeploymentSpec, ModelDeploymentStatus
from kubento.builders.deployment import model_replicas, revision
from kubento.builders.env_job import is_env_job
from kubento.builders.graph import Graph, settings_problems, split as split_graph
from kubento.builders.route import ROUTE_API_VERSION
from kubento.builders.meta import ANNOTATION_ABORT, ANNOTATION_PROMOTE, Owner, rollout_token, selector_string, service_url
from kubento.controller.build import BuildState
from kubento.controller.environment import EnvState, describe as describe_environment
from kubento.controller.status import (
    Observed, Problem, RolloutView, compute_status, merge_conditions, pod_problems, status_patch,
    transition_events,
)
from kubento.controller import route as routing
from kubento.controller.kinds import HTTP_ROUTE, JOB
from kubento.controller.actions import Actions, Delete
from kubento.controller.plan_bento import monitored, secret_problem, served_bento
from kubento.controller.plan_children import plan_children, plan_gates, plan_kept_revisions
from kubento.controller.observation import Inputs, Observation
from kubento.controller.world import Revisions, World, revisions_of
from kubento.rollout import strategy as rollout_strategy
from kubento.rollout.analysis import seconds
from kubento.rollout.revisions import Decision, Seen, decide, epoch, rfc3339


def _sooner(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None:
        return b
    return a if b is None else min(a, b)


# ------------------------------------------------------------------- status


def _flag(body: dict[str, Any], status: ModelDeploymentStatus, annotation: str, rev: Optional[str]) -> bool:
    """`kubento promote|abort` name the rollout they are meant for: a
    leftover annotation never acts on a later one."""
    state = status.rollout
    if rev is None or state is None or state.revision != rev:
        return False
    return (body["metadata"].get("annotations") or {}).get(annotation) == rollout_token(state)


def analysis_due(spec: ModelDeploymentSpec, previous: ModelDeploymentStatus, rev: Optional[str]
                 ) -> Optional[tuple[str, int]]:
    """The window (rollout token, step) whose verdict this pass needs, if any."""
    state = previous.rollout
    if spec.rollout.analysis is None or state is None or not state.step_reached or state.rollback:
        return None
    if state.revision != rev:
        return None  # the spec moved on: that rollout's verdict is not the new one's
    return rollout_token(state), state.step


def observe(spec: ModelDeploymentSpec, generation: int, owner: Owner, rev: Optional[str], problems: list[Problem],
            build: Optional[BuildState], decision: Decision, revisions: Revisions,
            scaling: Optional[AutoscalingStatus], environment: Optional[EnvState] = None) -> Observed:
    """What status is computed from: the serving revision's Deployment and
    pods when nothing rolls out, and the rollout's plan when something does."""
    rolling = decision.plan is not None and not decision.plan.done
    rolled_back = rev is not None and rev == decision.failed and rev != decision.stable
    if rolling:
        assert decision.rollout is not None
        shown = decision.rollout.revision
    elif rolled_back:
        shown = decision.stable  # the stable revision serves
    else:
        shown = rev if rev in revisions.deployments else decision.stable
    failed_entry = None
    if rolled_back:
        failed_entry = next((h for h in decision.history if h.revision == rev), None)
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
        environment=environment,
        rollout=RolloutView(
            plan=decision.plan if rolling else None,
            stable=decision.stable,
            candidate=decision.rollout.revision if decision.rollout else None,
            rolled_back=failed_entry,
            pods=sum((d.get("status") or {}).get("replicas", 0) for d in deps),
            ready=sum((d.get("status") or {}).get("readyReplicas", 0) for d in deps),
            stable_problems=pod_problems(revisions.pods.get(decision.stable, [])) if rolling and decision.stable else [],
            record={"stable_revision": decision.stable, "rollout": decision.rollout,
                    "failed_revision": decision.failed, "history": decision.history,
                    "canary_weight": decision.weight, "autoscaling": scaling},
        ),
    )


def _rollout_requeue(spec: ModelDeploymentSpec, decision: Decision, inputs: Inputs) -> Optional[float]:
    """When a rollout under way needs a pass without any watch event: a
    pause ends, a deadline passes, an analysis interval comes round."""
    state = decision.rollout
    if not state or decision.plan is None or decision.plan.done:
        return None
    now, rollout = inputs.now, spec.rollout
    since = epoch(state.since) or now
    out: Optional[float] = since + rollout.progress_deadline_seconds - now + 0.5
    out = _sooner(out, rollout_strategy.of(rollout.strategy).wake_after(rollout, state, now))
    reached = epoch(state.step_reached)
    if reached is not None:
        out = _sooner(out, reached + rollout.progress_deadline_seconds - now + 0.5)
        if rollout.analysis is not None and not state.rollback:
            out = _sooner(out, seconds(rollout.analysis.interval) / 2)
    return max(0.2, out) if out is not None else None


@dataclass
class Pass:
    """A plan and what it was made from (the apply layer needs both)."""

    actions: Actions
    spec: Optional[ModelDeploymentSpec] = None
    rev: Optional[str] = None
    problems: list[Problem] = field(default_factory=list)


def plan(observation: Observation) -> Pass:
    """Everything one pass over the observed model should do now."""
    world, inputs, spec = observation.world, observation.inputs, observation.spec
    body = world.model
    assert body is not None
    meta = body["metadata"]
    owner = world.owner
    generation = meta.get("generation", 1)
    previous = observation.status
    stamp = rfc3339(inputs.now)
    actions = Actions()
    if spec is None:
        # Admission should have caught this (e.g. a CRD older than the operator).
        ready = Condition(type="Ready", status="False", reason="InvalidSpec", message=observation.spec_error)
        new = previous.model_copy(update={
            "phase": "Failed", "observed_generation": generation,
            "conditions": merge_conditions(previous.conditions, [ready], generation, stamp)})
        _finish_status(actions, body.get("status"), previous, new)
        return Pass(actions)

    problems: list[Problem] = []
    bento, build, environment = None, None, None
    graph: Optional[Graph] = None
    missing = secret_problem(spec, owner.namespace, inputs.missing_secrets)
    if missing:
        problems.append(missing)
    else:
        served = served_bento(spec, world, inputs, previous)
        bento, build, environment = served.bento, served.build, served.environment
        if bento is not None and spec.monitoring is not None:
            bento = monitored(bento, spec, owner.name, inputs)
        if bento is not None and bento.services:
            bento = dataclasses.replace(bento, gpus=inputs.gpus)  # what its GPUs are on this cluster
        if bento is not None:
            bento, graph = split_graph(spec, owner, bento)  # several BentoML services: one Deployment each
            problems += [Problem("ServiceSettingsIgnored", m, blocking=False) for m in settings_problems(spec, graph)]
        if spec.monitoring is not None and inputs.profile_problem is not None:
            problems.append(Problem(*inputs.profile_problem, blocking=False))
        actions.creates += served.creates
        actions.deletes += served.deletes
        actions.requeue_after = _sooner(actions.requeue_after, served.requeue_after)
        if build is not None and build.state.phase != "Succeeded":
            problems.insert(0, Problem(build.state.reason, build.state.summary))
        elif environment is not None and environment.phase in ("Preparing", "Failed"):
            problems.insert(0, Problem(environment.reason, environment.message))
    if spec.bento.build is None:
        # The source is no longer a build: its Jobs go.
        actions.deletes += [Delete("batch/v1", "Job", j["metadata"]["name"], "Background") for j in world.of(JOB)
                            if owner.controls(j) and not is_env_job(j) and not j["metadata"].get("deletionTimestamp")]
    if spec.bento.image:
        # Nor an archive: its environment Jobs go.
        actions.deletes += [Delete("batch/v1", "Job", j["metadata"]["name"], "Background") for j in world.of(JOB)
                            if owner.controls(j) and is_env_job(j) and not j["metadata"].get("deletionTimestamp")]
    rev = revision(spec, bento) if bento else None
    revisions = revisions_of(world)
    candidate = rev if rev != previous.stable_revision else None
    replicas = model_replicas(spec)
    if inputs.scaling is not None:
        replicas = inputs.scaling.desired_replicas
    gates, seen, agreement = plan_gates(revisions, inputs, previous, stamp, rev)
    for r in inputs.stored_revisions:  # lost its Deployment, kept as a ControllerRevision: it still counts
        seen.setdefault(r, Seen(desired=0, ready=0))
    actions.pod_conditions += gates.conditions
    problems += [Problem(reason, message, blocking=False) for reason, message in gates.problems]
    view = traffic_view(spec, world, inputs, previous)
    decision = decide(
        revision=rev,
        bento=bento.describe() if bento else "",
        rollout=spec.rollout,
        replicas=replicas,
        previous=previous,
        seen=seen,
        now=inputs.now,
        verdict=inputs.verdict if analysis_due(spec, previous, rev) else None,
        promote=_flag(body, previous, ANNOTATION_PROMOTE, candidate),
        abort=_flag(body, previous, ANNOTATION_ABORT, candidate),
        agreement=agreement,
        route=view.seen if view else None,
        mirror_check=view.mirror_check if view else None,
    )
    actions.notes += decision.notes
    repaired: list[tuple[str, str, str]] = []
    if decision.replicas or decision.delete:
        children = plan_children(spec, world, inputs, bento, rev, decision, revisions, view, graph)
        actions.applies += children.applies
        actions.scales += children.scales
        actions.deletes += children.deletes
        actions.remember_generations.update(children.remember)
        problems = children.problems + problems
        repaired = children.repaired
    actions.keeps, kept_deletes, not_kept = plan_kept_revisions(world, rev, decision, revisions, inputs)
    actions.deletes += kept_deletes
    problems = problems + not_kept
    problems = inputs.apply_problems + problems
    if bento is not None and rev is not None and environment is not None and environment.phase == "Ready":
        decision = dataclasses.replace(
            decision, history=_with_environment(decision.history, rev, describe_environment(environment.result)))
    route_condition = None
    if view is not None:
        retry = ("retry: this cluster's HTTPRoute has no rules[].retry (Gateway API's experimental channel): not "
                 "applied" if spec.traffic and spec.traffic.gateway and spec.traffic.gateway.retry
                 and not inputs.retry_served else "")
        route_condition = routing.accepted_condition(view.parents, retry)
        if route_condition.status == "False":
            problems.append(Problem(route_condition.reason, route_condition.message, blocking=False))
    elif rollout_strategy.gateway_mode(spec):
        problems.append(Problem("GatewayAPINotInstalled", "traffic.gateway: this cluster does not serve Gateway API's "
                                f"HTTPRoute ({ROUTE_API_VERSION}); install the Gateway API CRDs. Meanwhile the model is "
                                "served through its Service, as in replicas mode", blocking=False))
    observed = observe(spec, generation, owner, rev or previous.current_revision, problems,
                       build.state if build else None, decision, revisions, inputs.scaling, environment)
    observed.traffic = routing.traffic_status(spec, owner, view, decision.route)
    observed.route_condition = route_condition
    observed.external_url = routing.external_url(spec, view.parents) if view is not None else None
    new = compute_status(observed, previous, stamp)
    _finish_status(actions, body.get("status"), previous, new)
    actions.events += gates.events + repaired
    actions.requeue_after = _sooner(actions.requeue_after, _sooner(gates.requeue_after,
                                                                   _rollout_requeue(spec, decision, inputs)))
    if missing:
        actions.requeue_after = _sooner(actions.requeue_after, None)  # the Secret check schedules itself
    return Pass(actions, spec, rev, problems)


def traffic_view(spec: ModelDeploymentSpec, world: World, inputs: Inputs, previous: ModelDeploymentStatus
                 ) -> Optional[routing.View]:
    """Gateway mode (and the cluster serves HTTPRoute): the route as observed; None in replicas mode."""
    if not rollout_strategy.gateway_mode(spec) or not inputs.routes_served:
        return None
    checked = previous.traffic.mirror_check if previous.traffic is not None else None
    return routing.view(spec, world.owner, world.of(HTTP_ROUTE), inputs.gateways, checked, inputs.mirror_check)


def _with_environment(history: list[HistoryEntry], rev: str, text: str) -> list[HistoryEntry]:
    """History entries of ``rev`` name its Python environment (kubento history)."""
    if not text or all(h.revision != rev or h.environment == text for h in history):
        return history
    return [h.model_copy(update={"environment": text}) if h.revision == rev else h for h in history]


def _finish_status(actions: Actions, stored: Optional[dict[str, Any]], previous: ModelDeploymentStatus,
                   new: ModelDeploymentStatus) -> None:
    """The status to write: a merge patch from what is stored, and the events of its transitions."""
    actions.new_status = new
    actions.status = status_patch(stored, new)
    if actions.status is not None:
        actions.events = transition_events(previous, new)
