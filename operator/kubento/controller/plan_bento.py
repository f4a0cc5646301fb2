"""Which bento a pass serves: the Secrets a spec names, the build of a project
(its Job and source snapshot), an archive or an image as it is served, the
Python environment Job. Pure, like the rest of the plan (kubento.controller.plan)."""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from kubento.api.v1alpha1 import BuildSource, BuildStatus, ModelDeploymentSpec, ModelDeploymentStatus, PackageIndex
from kubento.builders.bento import ServedBento, archive_bento
from kubento.builders.build_job import (
    LABEL_SOURCE_HASH, build_job, job_name, snapshot_name, source_hash, source_snapshot,
)
from kubento.builders.env_job import index_of, index_wire, is_env_job
from kubento.builders.meta import digest
from kubento.controller.build import NO_POD_GRACE, BuildState, build_state, condition as job_condition, usable
from kubento.controller.environment import EnvState, build_environment, plan_environment, with_environment
from kubento.controller.status import Problem
from kubento.controller.kinds import JOB, POD
from kubento.controller.actions import Delete
from kubento.controller.observation import Inputs
from kubento.controller.world import World
from kubento.quality.profile import revision_monitoring
from kubento.rollout.revisions import epoch

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


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
