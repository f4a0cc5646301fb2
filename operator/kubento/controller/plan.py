"""One reconcile pass as a pure function: an observed world in, actions out.

``plan(world, inputs)`` decides everything a pass does for one model: the
bento to serve (building it if needed), which revision Deployments run how
many pods (kubento.rollout.revisions.decide), the Services and the HPA or
ScaledObject, build Jobs to create or delete, the whole status, the events
to post and when to come back. No I/O: the caller observed the world (from
the watch caches, plus the few reads a new spec needs: its Secrets, a new
build source) and applies what comes out (controller.apply).

A plan only asks for writes that change something: a child is applied when
it is missing, its applied-hash differs, someone else changed its spec (its
generation moved) or it must be resized; the status only when it differs.
So a pass over a settled model asks for nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from pydantic import ValidationError

from kubento.api.v1alpha1 import BuildSource, ModelDeploymentSpec, ModelDeploymentStatus, PackageIndex
from kubento.builders.bento import DEFAULT_RUNTIME_IMAGE, ServedBento, archive_bento
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
from kubento.builders.meta import (
    ANNOTATION_ABORT,
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_PROMOTE,
    LABEL_REVISION,
    Owner,
    digest,
    preview_name,
    rollout_token,
    selector_labels,
    selector_string,
    service_url,
)
from kubento.builders.service import preview_service, service
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
from kubento.predictions import gate
from kubento.predictions.gate import PodResult
from kubento.rollout.analysis import Verdict, seconds
from kubento.rollout.revisions import Decision, Seen, decide, epoch, rfc3339

LEGACY = "legacy-"
WATCHED_UNFILTERED = {"Service"}  # the cache sees every one in the watched namespaces
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
REJECTION_RETRY_SECONDS = 300.0  # a manifest the API server refused is sent again after this, or when it changes

# Pod failures that mean a revision will not serve on its own: a rollout
# fails at once instead of waiting for progressDeadlineSeconds.
CANDIDATE_FAILURES = {"CrashLoopBackOff", "OOMKilled", "ImagePullBackOff", "BentoFetchFailed",
                      "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


# ------------------------------------------------------------------ inputs


@dataclass
class Inputs:
    """What the pass knows beyond the cached objects."""

    now: float  # wall clock, seconds (one clock per pass)
    default_runtime_image: str = DEFAULT_RUNTIME_IMAGE
    missing_secrets: frozenset[str] = frozenset()  # Secrets named in the spec that do not exist
    config_map: Optional[dict[str, Any]] = None  # the build source ConfigMap's content (None: missing)
    snapshots: frozenset[str] = frozenset()  # source snapshot ConfigMaps that exist
    verdict: Optional[Verdict] = None  # analysis of the current step, when one is due
    scaling: Optional[dict[str, Any]] = None  # kubento's autoscaler's status.autoscaling
    keda_served: bool = False
    default_index: Optional[dict[str, Any]] = None  # the operator's package index (KUBENTO_PACKAGE_INDEX)
    shared_jobs: list[dict[str, Any]] = field(default_factory=list)  # another model's environment Job this one uses
    shared_pods: list[dict[str, Any]] = field(default_factory=list)  # and its pods
    generations: dict[tuple[str, str], int] = field(default_factory=dict)  # memory: children as last seen
    rejected: dict[str, tuple[str, float]] = field(default_factory=dict)  # memory: applied-hash -> refusal
    apply_problems: list[Problem] = field(default_factory=list)  # the apply layer's answers, on a second plan
    check_results: dict[str, PodResult] = field(default_factory=dict)  # prediction checks run now, by pod uid
    agreement: Optional[dict[str, Any]] = None  # the rollout's candidate compared with stable, now


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


@dataclass
class Actions:
    """What one pass asks the apply layer to do, in this order."""

    creates: list[dict[str, Any]] = field(default_factory=list)  # build Jobs and source snapshots (never updated)
    applies: list[Apply] = field(default_factory=list)
    scales: list[Scale] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    pod_conditions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # prediction-check gates
    status: Optional[dict[str, Any]] = None  # a merge patch of status
    new_status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: Optional[float] = None
    notes: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return (len(self.creates) + len(self.applies) + len(self.scales) + len(self.deletes) + len(self.pod_conditions)
                + (self.status is not None))


def _sooner(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None:
        return b
    return a if b is None else min(a, b)


# --------------------------------------------------------------- the world


@dataclass
class World:
    """One model and its children as observed (kubento.controller.cache.World)."""

    model: dict[str, Any]
    deployments: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    services: list[dict[str, Any]]
    hpas: list[dict[str, Any]]
    scaled_objects: list[dict[str, Any]]
    jobs: list[dict[str, Any]]

    @property
    def owner(self) -> Owner:
        meta = self.model["metadata"]
        return Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])

    def named(self, kind: str, name: str) -> Optional[dict[str, Any]]:
        pool = {"Service": self.services, "HorizontalPodAutoscaler": self.hpas, "ScaledObject": self.scaled_objects,
                "Deployment": self.deployments, "Job": self.jobs}[kind]
        return next((o for o in pool if o["metadata"]["name"] == name), None)


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


def revisions_of(world: World) -> Revisions:
    owner = world.owner
    deployments: dict[str, dict[str, Any]] = {}
    for dep in world.deployments:
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
    model_label = selector_labels(owner)
    for pod in world.pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in model_label.items()):
            continue  # a build pod
        rev = labels.get(LABEL_REVISION) or ""
        if f"{LEGACY}{rev}" in deployments and rev not in deployments:
            rev = f"{LEGACY}{rev}"
        pods.setdefault(rev, []).append(pod)
    return Revisions(deployments, pods)


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
               recorded: Optional[dict[str, Any]], index: Optional[PackageIndex] = None) -> BuildPlan:
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
    ours = [j for j in world.jobs if owner.controls(j) and not is_env_job(j)]
    if recorded and recorded.get("sourceHash") == hash_ and recorded.get("archive"):
        state = BuildState("Succeeded", "BuildSucceeded", f"built {recorded.get('tag') or 'the bento'} from "
                           f"{source} (Job {recorded.get('job', '')})", source=source,
                           source_hash=hash_, job=recorded.get("job", ""), archive=recorded["archive"],
                           sha256=recorded.get("sha256"), tag=recorded.get("tag"))
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
    pods = [p for p in world.pods if ((p.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL) == name]
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


def served_bento(spec: ModelDeploymentSpec, world: World, inputs: Inputs, previous: dict[str, Any]) -> BentoPlan:
    """What the pods should run; for a build source, only once it is built;
    for an archive or a build, with its Python environment once it is ready."""
    if spec.bento.image:
        return BentoPlan(ServedBento(spec.bento.image))
    runtime = runtime_image(spec, inputs.default_runtime_image)
    index = index_of(spec.python, inputs.default_index)
    owner = world.owner
    env_jobs = [j for j in world.jobs if is_env_job(j) and owner.controls(j)]
    archive = spec.bento.archive
    if archive:
        base = archive_bento(archive, runtime, spec.image_pull_secrets)
        jobs = [j for j in world.jobs if is_env_job(j)] + inputs.shared_jobs
        name = environment_job_wanted(spec, inputs)
        job = next((j for j in jobs if j["metadata"]["name"] == name), None)
        env = plan_environment(base, owner, jobs, world.pods + inputs.shared_pods, index, spec.python,
                               previous.get("environment"), _age(job, inputs.now) if job else 0.0)
        return BentoPlan(env.bento, environment=env.state, creates=env.creates,
                         deletes=[Delete("batch/v1", "Job", n, "Background") for n in env.deletes],
                         requeue_after=env.requeue_after)
    assert spec.bento.build is not None
    build = plan_build(spec.bento.build, world, inputs, runtime, previous.get("build"), index)
    env_state = build_environment(build.state, previous.get("environment"))
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
                 generations: dict[tuple[str, str], int]) -> Optional[str]:
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
    key = (manifest["kind"], manifest["metadata"]["name"])
    seen = generations.setdefault(key, meta.get("generation", 0))
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

    def apply(self, manifest: dict[str, Any], live: Optional[dict[str, Any]] = None, lookup: bool = True) -> bool:
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
        why = _needs_apply(live, manifest, self.inputs.generations)
        if why:
            # A child missing from a cache that holds only kubento's own may
            # still exist under someone else: the apply layer reads it first.
            # Services are watched unfiltered: missing from the cache is missing.
            self.applies.append(Apply(manifest, why, read_first=live is None and kind not in WATCHED_UNFILTERED))
        return True

    def delete_if_ours(self, api_version: str, kind: str, name: str) -> None:
        live = self.world.named(kind, name)
        if live is not None and self.owner.controls(live) and not live["metadata"].get("deletionTimestamp"):
            self.deletes.append(Delete(api_version, kind, name))


def plan_children(spec: ModelDeploymentSpec, world: World, inputs: Inputs, bento: Optional[ServedBento],
                  rev: Optional[str], decision: Decision, revisions: Revisions) -> _Children:
    """Make the children look like ``decision``: the spec's revision by
    server-side apply, other revisions resized through their scale
    subresource (their templates stay as they were), then the Services."""
    out = _Children(world, inputs)
    for r, replicas in decision.replicas.items():
        live = revisions.deployments.get(r)
        if r == rev and bento is not None:
            name = live["metadata"]["name"] if live else None
            out.apply(deployment(spec, out.owner, bento, replicas, name=name), live, lookup=False)
        elif live is not None and (live.get("spec") or {}).get("replicas") != replicas:
            out.scales.append(Scale(live["metadata"]["name"], replicas))
    for r in decision.delete:
        live = revisions.deployments[r]
        out.deletes.append(Delete("apps/v1", "Deployment", live["metadata"]["name"]))
    alive = {r for r in revisions.deployments if r not in decision.delete}
    if out.problems and not alive and not any(a.manifest["kind"] == "Deployment" for a in out.applies):
        return out  # nothing to serve: no Service pointing nowhere
    out.apply(service(spec, out.owner, decision.selects))
    if spec.rollout.strategy == "BlueGreen":
        preview = (decision.rollout or {}).get("revision") or decision.stable or rev
        if preview:
            out.apply(preview_service(spec, out.owner, preview))
    else:
        out.delete_if_ours("v1", "Service", preview_name(out.owner))
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


# -------------------------------------------------------- prediction checks


def plan_gates(revisions: Revisions, inputs: Inputs, previous: dict[str, Any], stamp: str, rev: Optional[str]
               ) -> tuple[gate.Gates, dict[str, Seen], Optional[dict[str, Any]]]:
    """The readiness gates of the pods of revisions with prediction checks
    (kubento.predictions.gate), and what the rollout decision sees: a new
    revision whose pod failed its checks or disagreed with stable has
    failed (rolled back with that reason); a new comparison for status.rollout."""
    seen = revisions.seen()
    checks = gate.revision_checks(revisions.deployments)
    if not checks:
        return gate.Gates(), seen, None
    state = previous.get("rollout") or {}
    stable, candidate = previous.get("stableRevision"), state.get("revision")
    new_agreement = inputs.agreement if candidate is not None and candidate == rev else None
    agreement = new_agreement or state.get("agreement")
    gates = gate.plan_gates(revisions.pods, checks, inputs.check_results, stable=stable, candidate=candidate,
                            agreement=agreement, stamp=stamp)
    for r, (reason, message) in gates.failures.items():
        if r == candidate and r != stable and r in seen and not seen[r].failure:
            seen[r] = replace(seen[r], failure=message, failure_reason=reason)
        elif r != candidate:
            gates.problems.append((reason, f"revision {r}: {message}; the pod stays out of the Service"))
    return gates, seen, new_agreement


# ------------------------------------------------------------------- status


def _flag(body: dict[str, Any], annotation: str, rev: Optional[str]) -> bool:
    """`kubento promote|abort` name the rollout they are meant for: a
    leftover annotation never acts on a later one."""
    state = (body.get("status") or {}).get("rollout") or {}
    if rev is None or state.get("revision") != rev:
        return False
    return (body["metadata"].get("annotations") or {}).get(annotation) == rollout_token(state)


def analysis_due(spec: ModelDeploymentSpec, previous: dict[str, Any], rev: Optional[str]) -> Optional[tuple[str, int]]:
    """The window (rollout token, step) whose verdict this pass needs, if any."""
    state = previous.get("rollout") or {}
    if spec.rollout.analysis is None or not state.get("stepReached") or state.get("rollback"):
        return None
    if state.get("revision") != rev:
        return None  # the spec moved on: that rollout's verdict is not the new one's
    return rollout_token(state), state.get("step", 0)


def observe(spec: ModelDeploymentSpec, generation: int, owner: Owner, rev: Optional[str], problems: list[Problem],
            build: Optional[BuildState], decision: Decision, revisions: Revisions,
            scaling: Optional[dict[str, Any]], environment: Optional[EnvState] = None) -> Observed:
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
        environment=environment,
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


def _rollout_requeue(spec: ModelDeploymentSpec, decision: Decision, inputs: Inputs) -> Optional[float]:
    """When a rollout under way needs a pass without any watch event: a
    pause ends, a deadline passes, an analysis interval comes round."""
    state = decision.rollout
    if not state or decision.plan is None or decision.plan.done:
        return None
    now, rollout = inputs.now, spec.rollout
    since = epoch(state.get("since")) or now
    out: Optional[float] = since + rollout.progress_deadline_seconds - now + 0.5
    switched = since + rollout.scale_down_delay_seconds - now  # BlueGreen: the old pods' time left
    if rollout.strategy == "BlueGreen" and state.get("service") == "candidate" and switched > 0:
        out = _sooner(out, switched + 0.05)
    reached = epoch(state.get("stepReached"))
    if reached is not None:
        steps = rollout.steps
        step = state.get("step", 0)
        if spec.rollout.strategy == "Canary" and step < len(steps) and steps[step].pause:
            out = _sooner(out, reached + seconds(steps[step].pause) - now + 0.05)
        out = _sooner(out, reached + rollout.progress_deadline_seconds - now + 0.5)
        if rollout.analysis is not None and not state.get("rollback"):
            out = _sooner(out, seconds(rollout.analysis.interval) / 2)
    return max(0.2, out) if out is not None else None


@dataclass
class Pass:
    """A plan and what it was made from (the apply layer needs both)."""

    actions: Actions
    spec: Optional[ModelDeploymentSpec] = None
    rev: Optional[str] = None
    problems: list[Problem] = field(default_factory=list)


def plan(world: World, inputs: Inputs) -> Pass:
    """Everything one pass over ``world.model`` should do now."""
    body = world.model
    meta = body["metadata"]
    owner = world.owner
    generation = meta.get("generation", 1)
    previous = dict(body.get("status") or {})
    stamp = rfc3339(inputs.now)
    actions = Actions()
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        # Admission should have caught this (e.g. a CRD older than the operator).
        new = dict(previous)
        new.update({"phase": "Failed", "observedGeneration": generation})
        ready = {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": " ".join(str(exc).split())}
        new["conditions"] = merge_conditions(previous.get("conditions", []), [ready], generation, stamp)
        _finish_status(actions, previous, new)
        return Pass(actions)

    problems: list[Problem] = []
    bento, build, environment = None, None, None
    missing = secret_problem(spec, owner.namespace, inputs.missing_secrets)
    if missing:
        problems.append(missing)
    else:
        served = served_bento(spec, world, inputs, previous)
        bento, build, environment = served.bento, served.build, served.environment
        actions.creates += served.creates
        actions.deletes += served.deletes
        actions.requeue_after = _sooner(actions.requeue_after, served.requeue_after)
        if build is not None and build.state.phase != "Succeeded":
            problems.insert(0, Problem(build.state.reason, build.state.summary))
        elif environment is not None and environment.phase in ("Preparing", "Failed"):
            problems.insert(0, Problem(environment.reason, environment.message))
    if spec.bento.build is None:
        # The source is no longer a build: its Jobs go.
        actions.deletes += [Delete("batch/v1", "Job", j["metadata"]["name"], "Background") for j in world.jobs
                            if owner.controls(j) and not is_env_job(j) and not j["metadata"].get("deletionTimestamp")]
    if spec.bento.image:
        # Nor an archive: its environment Jobs go.
        actions.deletes += [Delete("batch/v1", "Job", j["metadata"]["name"], "Background") for j in world.jobs
                            if owner.controls(j) and is_env_job(j) and not j["metadata"].get("deletionTimestamp")]
    rev = revision(spec, bento) if bento else None
    revisions = revisions_of(world)
    candidate = rev if rev != previous.get("stableRevision") else None
    replicas = model_replicas(spec)
    if inputs.scaling is not None:
        replicas = inputs.scaling["desiredReplicas"]
    gates, seen, agreement = plan_gates(revisions, inputs, previous, stamp, rev)
    actions.pod_conditions += gates.conditions
    problems += [Problem(reason, message, blocking=False) for reason, message in gates.problems]
    decision = decide(
        revision=rev,
        bento=bento.describe() if bento else "",
        rollout=spec.rollout,
        replicas=replicas,
        previous=previous,
        seen=seen,
        now=inputs.now,
        verdict=inputs.verdict if analysis_due(spec, previous, rev) else None,
        promote=_flag(body, ANNOTATION_PROMOTE, candidate),
        abort=_flag(body, ANNOTATION_ABORT, candidate),
        agreement=agreement,
    )
    actions.notes += decision.notes
    if decision.replicas or decision.delete:
        children = plan_children(spec, world, inputs, bento, rev, decision, revisions)
        actions.applies += children.applies
        actions.scales += children.scales
        actions.deletes += children.deletes
        problems = children.problems + problems
    problems = inputs.apply_problems + problems
    if bento is not None and rev is not None and environment is not None and environment.phase == "Ready":
        decision = dataclasses.replace(
            decision, history=_with_environment(decision.history, rev, describe_environment(environment.result)))
    observed = observe(spec, generation, owner, rev or previous.get("currentRevision"), problems,
                       build.state if build else None, decision, revisions, inputs.scaling, environment)
    new = compute_status(observed, previous, stamp)
    _finish_status(actions, previous, new)
    actions.events += gates.events
    actions.requeue_after = _sooner(actions.requeue_after, _sooner(gates.requeue_after,
                                                                   _rollout_requeue(spec, decision, inputs)))
    if missing:
        actions.requeue_after = _sooner(actions.requeue_after, None)  # the Secret check schedules itself
    return Pass(actions, spec, rev, problems)


def _with_environment(history: list[dict[str, Any]], rev: str, text: str) -> list[dict[str, Any]]:
    """History entries of ``rev`` name its Python environment (kubento history)."""
    if not text or all(h.get("revision") != rev or h.get("environment") == text for h in history):
        return history
    return [{**h, "environment": text} if h.get("revision") == rev else h for h in history]


def _finish_status(actions: Actions, previous: dict[str, Any], new: dict[str, Any]) -> None:
    actions.new_status = new
    actions.status = status_patch(previous, new)
    if actions.status is not None:
        actions.events = transition_events(previous, new)


def typed_status(status: dict[str, Any]) -> ModelDeploymentStatus:
    """The status as the API's pydantic model (for readers that want types)."""
    return ModelDeploymentStatus.model_validate(status)


def default_runtime_image() -> str:
    return os.environ.get("KUBENTO_RUNTIME_IMAGE") or DEFAULT_RUNTIME_IMAGE


def default_package_index() -> Optional[dict[str, Any]]:
    """The operator's package index (KUBENTO_PACKAGE_INDEX, JSON in the shape
    of spec.python.index; chart value packageIndex), used when the spec sets none."""
    import json

    raw = os.environ.get("KUBENTO_PACKAGE_INDEX", "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
        PackageIndex.model_validate(value)
    except (ValueError, ValidationError):
        import logging

        logging.getLogger("kubento.plan").warning("KUBENTO_PACKAGE_INDEX is not a valid package index: ignored")
        return None
    return value or None
