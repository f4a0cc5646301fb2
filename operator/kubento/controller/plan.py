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
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from kubento.api.v1alpha1 import (
    Agreement,
    AutoscalingStatus,
    BuildSource,
    BuildStatus,
    Condition,
    HistoryEntry,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    PackageIndex,
)
from kubento.builders.bento import ServedBento, archive_bento
from kubento.builders.build_job import (
    LABEL_SOURCE_HASH,
    build_job,
    job_name,
    snapshot_name,
    source_hash,
    source_snapshot,
)
from kubento.builders.deployment import OWN_METRICS, deployment, model_replicas, revision
from kubento.builders.env_job import index_of, index_wire, is_env_job
from kubento.builders.hpa import horizontal_pod_autoscaler
from kubento.builders.keda import KEDA_API_VERSION, scaled_object
from kubento.builders.route import ROUTE_API_VERSION
from kubento.builders.meta import (
    ANNOTATION_ABORT,
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_PROMOTE,
    LABEL_REVISION,
    Owner,
    digest,
    rollout_token,
    selector_labels,
    selector_string,
    service_url,
)
from kubento.builders.revision import stored_deployment
from kubento.builders.service import service
from kubento.controller.build import NO_POD_GRACE, BuildState, build_state, condition as job_condition, usable
from kubento.controller.environment import (
    EnvState,
    build_environment,
    describe as describe_environment,
    plan_environment,
    with_environment,
)
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
from kubento.controller import kinds, route as routing
from kubento.controller.kinds import CONTROLLER_REVISION, DEPLOYMENT, HTTP_ROUTE, JOB, POD, SERVICE
from kubento.controller.observation import Inputs, Observation
from kubento.controller.world import LEGACY, Revisions, World, revisions_of
from kubento.predictions import gate
from kubento.quality.profile import revision_monitoring
from kubento.rollout import strategy as rollout_strategy
from kubento.rollout.analysis import seconds
from kubento.rollout.revisions import Decision, Seen, decide, epoch, rfc3339

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
REJECTION_RETRY_SECONDS = 300.0  # a manifest the API server refused is sent again after this, or when it changes

# Pod failures that mean a revision will not serve on its own: a rollout
# fails at once instead of waiting for progressDeadlineSeconds.
CANDIDATE_FAILURES = {"CrashLoopBackOff", "OOMKilled", "ImagePullBackOff", "BentoFetchFailed",
                      "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class Apply:
    manifest: dict[str, Any]
    why: str
    read_first: bool = False  # not in the cache: check it is not someone else's before taking it over


@dataclass(frozen=True)
class Scale:
    name: str  # a Deployment
    replicas: int


@dataclass(frozen=True)
class Delete:
    api_version: str
    kind: str
    name: str
    propagation: Optional[str] = None


@dataclass(frozen=True)
class Keep:
    """Keep a revision's Deployment as a ControllerRevision: the apply layer
    reads the Deployment (the cache holds only its metadata) and creates it."""

    deployment: str  # the Deployment's name (the ControllerRevision's too)
    number: int  # the revision's number in status.history (0: none)


@dataclass
class Actions:
    """What one pass asks the apply layer to do, in this order."""

    creates: list[dict[str, Any]] = field(default_factory=list)  # build Jobs and source snapshots (never updated)
    applies: list[Apply] = field(default_factory=list)
    scales: list[Scale] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    keeps: list[Keep] = field(default_factory=list)  # revisions to keep as ControllerRevisions (with the applies)
    pod_conditions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # prediction-check gates
    status: Optional[dict[str, Any]] = None  # a merge patch of status (its one serialisation: status.to_wire)
    new_status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: Optional[float] = None
    notes: list[str] = field(default_factory=list)
    # memory to keep: (kind, name) -> a child's generation as first seen (someone else's edit moves it)
    remember_generations: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def writes(self) -> int:
        return (len(self.creates) + len(self.applies) + len(self.keeps) + len(self.scales) + len(self.deletes)
                + len(self.pod_conditions) + (self.status is not None))


def _sooner(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None:
        return b
    return a if b is None else min(a, b)


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
    return out


# ------------------------------------------------------------------ secrets


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


def secret_problem(spec: ModelDeploymentSpec, namespace: str, missing: frozenset[str]) -> Optional[Problem]:
    refs = [(f, n) for f, n in referenced_secrets(spec) if n in missing]
    if not refs:
        return None
    named = ", ".join(f"{name} ({field})" for field, name in refs)
    return Problem(
        "SecretNotFound",
        f"Secret(s) named in the spec do not exist in namespace {namespace}: {named}; the model server was not changed",
    )


# -------------------------------------------------------------------- build


@dataclass
class BuildPlan:
    state: BuildState
    bento: Optional[ServedBento]
    creates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    requeue_after: Optional[float] = None


def runtime_image(spec: ModelDeploymentSpec, default: str) -> str:
    return spec.runtime_image or default


def _age(obj: dict[str, Any], now: float) -> float:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return 0.0
    if isinstance(created, datetime.datetime):
        return now - created.timestamp()
    return now - (epoch(str(created).replace("+00:00", "Z")) or now)


def _served_build(build: BuildSource, runtime: str, state: BuildState) -> ServedBento:
    secret = build.output.secret_ref.name if build.output.secret_ref else None
    return ServedBento(runtime, archive_uri=state.archive, sha256=state.sha256, secret=secret,
                       secret_field="bento.build.output.secretRef")


def _job_finished(job: dict[str, Any]) -> bool:
    return bool(job_condition(job, "Complete") or job_condition(job, "Failed"))


def plan_build(build: BuildSource, world: World, inputs: Inputs, runtime: str,
               recorded: Optional[BuildStatus], index: Optional[PackageIndex] = None) -> BuildPlan:
    """Where the build of the current source stands and what to do about it:
    create its Job (and the immutable copy of a ConfigMap source), replace a
    failed Job whose settings changed, stop superseded builds, delete old
    Jobs once a build succeeded."""
    owner = world.owner
    source = build.source.describe()
    content = None
    if build.source.config_map is not None:
        if inputs.config_map is None:
            return BuildPlan(BuildState("Failed", "SourceNotFound", f"ConfigMap {build.source.config_map.name} "
                                        f"(bento.build.source.configMap) does not exist in namespace {owner.namespace}",
                                        source=source), None)
        content = inputs.config_map
    hash_ = source_hash(build, runtime, content, index_wire(index))
    ours = [j for j in world.of(JOB) if owner.controls(j) and not is_env_job(j)]
    if recorded is not None and recorded.source_hash == hash_ and recorded.archive:
        state = BuildState("Succeeded", "BuildSucceeded", f"built {recorded.tag or 'the bento'} from "
                           f"{source} (Job {recorded.job})", source=source,
                           source_hash=hash_, job=recorded.job, archive=recorded.archive,
                           sha256=recorded.sha256, tag=recorded.tag)
        return BuildPlan(state, _served_build(build, runtime, state))
    name = job_name(owner, hash_)
    job = world.named("Job", name)
    if job is not None and not usable(job, owner, build):
        return BuildPlan(BuildState("Building", "Building", f"restarting the build of {source} with the new settings",
                                    source=source, source_hash=hash_, job=name), None,
                         deletes=[] if job["metadata"].get("deletionTimestamp")
                         else [Delete("batch/v1", "Job", name, "Background")])
    superseded = [Delete("batch/v1", "Job", j["metadata"]["name"], "Background") for j in ours
                  if (j["metadata"].get("labels") or {}).get(LABEL_SOURCE_HASH) != hash_
                  and not _job_finished(j) and not j["metadata"].get("deletionTimestamp")]
    if job is None:
        # The build id makes each build's archive unique: a rebuild never
        # overwrites an archive that pods may still fetch.
        build_id = digest([owner.uid, hash_, inputs.now], 8)
        manifest = build_job(build, owner, runtime, hash_, build_id, index)
        return BuildPlan(BuildState("Building", "Building", f"building {source} (Job {name})", source=source,
                                    source_hash=hash_, job=name), None, creates=[manifest], deletes=superseded)
    if not owner.controls(job):
        return BuildPlan(BuildState("Failed", "ChildConflict",
                                    f"Job {name} exists and is not controlled by this ModelDeployment",
                                    source=source, source_hash=hash_, job=name), None)
    creates = []
    if content is not None and not _job_finished(job) and snapshot_name(name) not in inputs.snapshots:
        creates.append(source_snapshot(job, content))  # the Job's pod mounts this copy (it waits until it exists)
    pods = [p for p in world.of(POD) if ((p.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL) == name]
    age = _age(job, inputs.now)
    state = build_state(build, job, pods, hash_, age)
    plan = BuildPlan(state, None, creates=creates, deletes=superseded)
    if state.phase != "Succeeded":
        if not pods and age <= NO_POD_GRACE:
            plan.requeue_after = NO_POD_GRACE - age + 1  # then say the Job made no pod
        return plan
    plan.deletes = [Delete("batch/v1", "Job", j["metadata"]["name"], "Background") for j in ours
                    if j["metadata"]["name"] != name and not j["metadata"].get("deletionTimestamp")]
    plan.bento = _served_build(build, runtime, state)
    return plan


@dataclass
class BentoPlan:
    """The bento the pods should run (None: not yet), how its build and
    Python environment stand, and the Jobs that takes."""

    bento: Optional[ServedBento]
    build: Optional[BuildPlan] = None
    environment: Optional[EnvState] = None
    creates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    requeue_after: Optional[float] = None


def monitored(bento: ServedBento, spec: ModelDeploymentSpec, model: str, inputs: Inputs) -> ServedBento:
    """The bento with what its pods are told of spec.monitoring (the
    profile's buckets resolved) and what its revision is judged with."""
    assert spec.monitoring is not None
    stats = spec.monitoring.statistics
    ref = stats.reference.config_map_key_ref if stats and stats.reference else None
    told, judged = revision_monitoring(spec.monitoring, model, inputs.profile,
                                       f"{ref.name}/{ref.key}" if ref is not None else "")
    compact = {"sort_keys": True, "separators": (",", ":")}
    return dataclasses.replace(bento, monitoring=json.dumps(told, **compact),
                               judged=json.dumps(judged, **compact) if judged is not None else None)


def environment_job_wanted(spec: ModelDeploymentSpec, inputs: Inputs) -> Optional[str]:
    """The environment Job an archive's pass needs to see, when status does
    not already hold its result (gather looks it up when another model made it)."""
    from kubento.controller.environment import wanted_job

    archive = spec.bento.archive
    if archive is None:
        return None
    runtime = runtime_image(spec, inputs.default_runtime_image)
    bento = archive_bento(archive, runtime, spec.image_pull_secrets)
    return wanted_job(bento, index_of(spec.python, inputs.default_index))


def served_bento(spec: ModelDeploymentSpec, world: World, inputs: Inputs, previous: ModelDeploymentStatus
                 ) -> BentoPlan:
    """What the pods should run; for a build source, only once it is built;
    for an archive or a build, with its Python environment once it is ready."""
    if spec.bento.image:
        return BentoPlan(ServedBento(spec.bento.image))
    runtime = runtime_image(spec, inputs.default_runtime_image)
    index = index_of(spec.python, inputs.default_index)
    owner = world.owner
    env_jobs = [j for j in world.of(JOB) if is_env_job(j) and owner.controls(j)]
    archive = spec.bento.archive
    if archive:
        base = archive_bento(archive, runtime, spec.image_pull_secrets)
        jobs = [j for j in world.of(JOB) if is_env_job(j)] + inputs.shared_jobs
        name = environment_job_wanted(spec, inputs)
        job = next((j for j in jobs if j["metadata"]["name"] == name), None)
        env = plan_environment(base, owner, jobs, world.of(POD) + inputs.shared_pods, index, spec.python,
                               previous.environment, _age(job, inputs.now) if job else 0.0)
        return BentoPlan(env.bento, environment=env.state, creates=env.creates,
                         deletes=[Delete("batch/v1", "Job", n, "Background") for n in env.deletes],
                         requeue_after=env.requeue_after)
    assert spec.bento.build is not None
    build = plan_build(spec.bento.build, world, inputs, runtime, previous.build, index)
    env_state = build_environment(build.state, previous.environment)
    bento = build.bento
    if bento is not None and env_state is not None and env_state.phase == "Ready":
        bento = with_environment(bento, env_state.result)
    # A build prepares its own environment: an archive's Jobs from before go.
    deletes = build.deletes + [Delete("batch/v1", "Job", j["metadata"]["name"], "Background") for j in env_jobs
                               if not j["metadata"].get("deletionTimestamp")]
    return BentoPlan(bento, build=build, environment=env_state, creates=build.creates, deletes=deletes,
                     requeue_after=build.requeue_after)


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
                  view: Optional[routing.View] = None) -> _Children:
    """Make the children look like ``decision``: the spec's revision by
    server-side apply, other revisions resized through their scale
    subresource (their templates stay as they were), a lost revision
    Deployment made again from its ControllerRevision, then the Services."""
    out = _Children(world, inputs)
    for r, replicas in decision.replicas.items():
        live = revisions.deployments.get(r)
        if r == rev and bento is not None:
            name = live["metadata"]["name"] if live else None
            out.apply(deployment(spec, out.owner, bento, replicas, name=name), live, lookup=False)
        elif live is None and r in inputs.stored_revisions:
            manifest = stored_deployment(out.owner, inputs.stored_revisions[r], replicas)
            role = "the stable revision" if r == decision.stable else "the revision rolling out"
            out.repaired.append(("Warning", "RevisionRepaired",
                                 f"Deployment {manifest['metadata']['name']} of {role} {r} was missing: made again "
                                 f"from its ControllerRevision with {replicas} replicas"))
            out.applies.append(Apply(manifest, "missing: made again from its ControllerRevision", read_first=True))
        elif live is not None and (live.get("spec") or {}).get("replicas") != replicas:
            out.scales.append(Scale(live["metadata"]["name"], replicas))
    for r in decision.delete:
        live = revisions.deployments[r]
        out.deletes.append(Delete("apps/v1", "Deployment", live["metadata"]["name"]))
    alive = {r for r in revisions.deployments if r not in decision.delete}
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


def plan_kept_revisions(world: World, rev: Optional[str], decision: Decision, revisions: Revisions
                        ) -> tuple[list[Keep], list[Delete]]:
    """Each revision's Deployment kept as a ControllerRevision once the spec
    has moved on from it (the spec that made it is gone; the spec's own
    revision can always be made again from the spec, so a model never
    changed costs no ControllerRevision); those of revisions no longer kept
    (out of history, their Deployment deleted) go."""
    owner = world.owner
    kept = {((o.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION): o
            for o in world.of(CONTROLLER_REVISION) if owner.controls(o)}
    numbers = {h.revision: h.number for h in decision.history}
    keeps = [Keep(dep["metadata"]["name"], numbers.get(r, 0)) for r, dep in sorted(revisions.deployments.items())
             if r not in kept and r != rev and not r.startswith(LEGACY)
             and not dep["metadata"].get("deletionTimestamp")]
    wanted = set(numbers) | set(decision.replicas) | {decision.stable, rev}
    deletes = [Delete("apps/v1", CONTROLLER_REVISION, o["metadata"]["name"]) for r, o in sorted(kept.items())
               if (r not in wanted or r in decision.delete) and not o["metadata"].get("deletionTimestamp")]
    return keeps, deletes


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
    missing = secret_problem(spec, owner.namespace, inputs.missing_secrets)
    if missing:
        problems.append(missing)
    else:
        served = served_bento(spec, world, inputs, previous)
        bento, build, environment = served.bento, served.build, served.environment
        if bento is not None and spec.monitoring is not None:
            bento = monitored(bento, spec, owner.name, inputs)
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
        children = plan_children(spec, world, inputs, bento, rev, decision, revisions, view)
        actions.applies += children.applies
        actions.scales += children.scales
        actions.deletes += children.deletes
        actions.remember_generations.update(children.remember)
        problems = children.problems + problems
        repaired = children.repaired
    actions.keeps, kept_deletes = plan_kept_revisions(world, rev, decision, revisions)
    actions.deletes += kept_deletes
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
