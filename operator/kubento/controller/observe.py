"""The observe step of a pass: everything the plan will know, in one
:class:`Observation`.

Most of it is the model's World, from the watch caches (no request). Beyond
that, only what I/O can tell, and only when it is needed: the Secrets the
spec names (checked when that set changes, and again with backoff while one
is missing), a ConfigMap not seen before (a build source, a check's input),
whether KEDA is served, and the results of requests to the model's pods —
prediction checks of pods whose containers just became ready (and a new
revision's comparison with stable), the pods' /metrics when an analysis
verdict or an autoscaler sample is due. Requests to pods are jobs that run
off the workers (kubento.controller.podio): a pass starts them, and a later
pass, woken by their end, takes their results; a pass never waits for a pod.

The spec is validated here, once per pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from pydantic import ValidationError

from kubento.api.traffic import MirrorCheck
from kubento.api.v1alpha1 import Agreement, ModelDeploymentSpec, ModelDeploymentStatus
from kubento.builders.build_job import snapshot_name
from kubento.builders.deployment import OWN_METRICS
from kubento.builders.env_job import JOB_PREFIX, LABEL_BUILD_OF
from kubento.builders.keda import KEDA_API_VERSION
from kubento.builders.route import ROUTE_API_VERSION
from kubento.builders.meta import LABEL_REVISION, rollout_token, selector_labels
from kubento.controller import analysis, autoscaler, podio, probe, quality, route as routing, routeprobe
from kubento.controller.cache import Cache, Key
from kubento.controller.environment import JOB_NAME_LABEL, recorded_result
from kubento.controller.kinds import CONFIG_MAP, CONTROLLER_REVISION, HTTP_ROUTE, JOB, POD, SCALED_OBJECT
from kubento.controller.kube import REDISCOVER_SECONDS, ApiError, NotInstalled
from kubento.controller.memory import GatewayCheck, ModelMemory, SecretCheck
from kubento.controller.observation import Inputs, Observation
from kubento.controller.plan import analysis_due
from kubento.controller.plan_bento import environment_job_wanted, referenced_secrets
from kubento.controller.world import World, revisions_of
from kubento.predictions import gate
from kubento.quality.profile import parse_profile
from kubento.rollout.analysis import parse_metrics
from kubento.runtime.fields import OTHER

if TYPE_CHECKING:
    from kubento.controller.reconcile import Services

# What a model's jobs of requests to its pods are for (one of each at a time).
CHECKS, ANALYSIS, AUTOSCALER, QUALITY, ROUTE_PROBE = "checks", "analysis", "autoscaler", "quality", "route-probe"
GATEWAY_RECHECK_CAP = 30.0  # a missing Gateway, or a route not accepted: its Gateways are read again at most this often


def soonest(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None:
        return b
    return a if b is None else min(a, b)


class Observer:
    """One pass's reads for the model ``key`` (cache, API server, pod jobs)."""

    def __init__(self, key: Key, services: "Services", memory: ModelMemory, now: float, mono: float,
                 recheck_cap: float) -> None:
        self.key, self.services, self.memory = key, services, memory
        self.cache: Cache = services.cache
        self.now, self.mono, self.recheck_cap = now, mono, recheck_cap

    def observe(self, world: World) -> Observation:
        config = self.services.config
        inputs = Inputs(now=self.now, default_runtime_image=config.runtime_image, default_index=config.package_index,
                        gpus=config.gpus,
                        generations=dict(self.memory.generations), rejected=dict(self.memory.rejected))
        obs = Observation.of(world, inputs)
        spec = obs.spec
        if spec is None:
            return obs
        body, owner = world.model or {}, world.owner
        wake: Optional[float]
        inputs.missing_secrets, wake = self._secrets(spec, owner.namespace)
        build = spec.bento.build
        if build is not None and build.source.config_map is not None:
            inputs.config_map = self.config_map(owner.namespace, build.source.config_map.name)
            inputs.snapshots = frozenset(
                snapshot_name(j["metadata"]["name"]) for j in world.of(JOB)
                if self.cache.exists(CONFIG_MAP, owner.namespace, snapshot_name(j["metadata"]["name"])))
        self._shared_environment_job(spec, world, inputs, obs.status)
        inputs.profile, inputs.profile_problem = self._profile(spec, owner.namespace)
        if world.of(SCALED_OBJECT):
            inputs.keda_served = True  # watched: KEDA is there (and one of ours may have to go)
        elif spec.autoscaling and spec.autoscaling.provider == "keda":
            inputs.keda_served = self.services.kube.served(KEDA_API_VERSION, "ScaledObject")
            if not inputs.keda_served:
                wake = soonest(wake, REDISCOVER_SECONDS)
        previous = obs.status
        wake = soonest(wake, self._autoscaler(spec, world, previous, inputs))
        wake = soonest(wake, self._analysis(spec, world, previous, inputs))
        wake = soonest(wake, self._quality(spec, world, previous))
        wake = soonest(wake, self._gateway_mode(spec, world, previous, inputs))
        inputs.check_results, inputs.agreement, checks_wake = self._prediction_checks(world, previous)
        self._kept_revisions(world, previous, inputs)
        obs.wake_after, obs.checked = soonest(wake, checks_wake), self.memory.checked
        return obs

    # ------------------------------------------------------------ the API server

    def _secrets(self, spec: ModelDeploymentSpec, namespace: str) -> tuple[frozenset[str], Optional[float]]:
        """Missing Secrets of the spec, from memory unless the names changed or
        a missing one is due for another look; and when to look again."""
        memory, now, cap = self.memory, self.mono, self.recheck_cap
        names = frozenset(name for _, name in referenced_secrets(spec))
        check = memory.secrets
        if not names:
            memory.secrets = None
            return frozenset(), None
        wait = min(cap, 2.0 ** (check.attempts - 1)) if check and check.missing else None
        if check is None or check.names != names or (wait is not None and now - check.checked >= wait):
            missing = frozenset(n for n in sorted(names) if not self.services.kube.secret_exists(namespace, n))
            attempts = (check.attempts + 1) if check and check.names == names and missing else (1 if missing else 0)
            check = memory.secrets = SecretCheck(names, missing, now, attempts)
            wait = min(cap, 2.0 ** (check.attempts - 1)) if missing else None
        if not check.missing:
            return frozenset(), None
        return check.missing, max(0.1, check.checked + (wait or cap) - now)

    def config_map(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        known, content = self.cache.config_map(namespace, name)
        if known:
            return content
        # First read by a model: the watch keeps its content from now on.
        live = self.services.kube.get("v1", "ConfigMap", namespace, name)
        if live is None:
            return None
        self.cache.update(CONFIG_MAP, live)
        return {"data": live.get("data") or {}, "binaryData": live.get("binaryData") or {}}

    def _profile(self, spec: ModelDeploymentSpec, namespace: str) -> tuple[Any, Optional[tuple[str, str]]]:
        """The reference profile spec.monitoring.statistics.reference names
        (the watch keeps its ConfigMap: no request once read), or why not."""
        stats = spec.monitoring.statistics if spec.monitoring else None
        ref = stats.reference.config_map_key_ref if stats and stats.reference else None
        if ref is None:
            return None, None
        where = f"ConfigMap {ref.name} key {ref.key} (monitoring.statistics.reference)"
        content = self.config_map(namespace, ref.name)
        text = ((content or {}).get("data") or {}).get(ref.key)
        if content is None or text is None:
            missing = "does not exist" if content is None else "has no such key"
            return None, ("ProfileNotFound", f"{where} {missing}: no drift scores against a reference (make it with "
                          f"kubento profile); counting with the spec's buckets and categories")
        try:
            return parse_profile(text), None
        except ValueError as exc:
            return None, ("ProfileInvalid", f"{where}: {exc}")

    def _shared_environment_job(self, spec: ModelDeploymentSpec, world: World, inputs: Inputs,
                                status: ModelDeploymentStatus) -> None:
        """An archive's environment Job that another model made (same archive,
        runtime image and index): from the cache, with its pods, so this model
        waits for it instead of preparing the same environment twice."""
        name = environment_job_wanted(spec, inputs)
        if name is None or any(j["metadata"]["name"] == name for j in world.of(JOB)):
            return
        if recorded_result(status.environment, name[len(JOB_PREFIX):]) is not None:
            return  # settled: no Job needed
        ns = world.owner.namespace
        job = self.cache.get(JOB, ns, name)
        if job is None:
            return
        inputs.shared_jobs = [job]
        creator = ((job.get("metadata") or {}).get("labels") or {}).get(LABEL_BUILD_OF)
        if creator:
            inputs.shared_pods = [p for p in self.cache.model((ns, creator)).of(POD)
                                  if ((p.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL) == name]

    def _kept_revisions(self, world: World, previous: ModelDeploymentStatus, inputs: Inputs) -> None:
        """Read what a ControllerRevision keeps for a revision that must serve
        but lost its Deployment (stable; the candidate of a rollout under
        way). That never happens to a settled model: it costs no request."""
        owner = world.owner
        kept = {((o.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION): o
                for o in world.of(CONTROLLER_REVISION) if owner.controls(o)}
        deployments = revisions_of(world).deployments
        wanted = {previous.stable_revision, previous.rollout.revision if previous.rollout else None}
        for rev in sorted(r for r in wanted if r and r not in deployments and r in kept):
            live = self.services.kube.get("apps/v1", "ControllerRevision", owner.namespace,
                                          kept[rev]["metadata"]["name"])
            if live is not None and isinstance(live.get("data"), dict):
                inputs.stored_revisions[rev] = live

    # ------------------------------------------------------------ gateway mode

    def _gateway_mode(self, spec: ModelDeploymentSpec, world: World, previous: ModelDeploymentStatus,
                      inputs: Inputs) -> Optional[float]:
        """Whether the cluster serves HTTPRoute (and its retry field, when the
        spec asks for retries), the route's Gateways, and the mirror probe."""
        gateway = routing.gateway_of(spec)
        if gateway is None:
            self.memory.gateways = None
            return None
        kube, owner = self.services.kube, world.owner
        if world.named(HTTP_ROUTE, owner.name) is None:  # watched: a route in the cache means the kind is served
            inputs.routes_served = kube.served(ROUTE_API_VERSION, "HTTPRoute")
            if not inputs.routes_served:
                return REDISCOVER_SECONDS
        if gateway.retry is not None:
            inputs.retry_served = kube.has_field("httproutes.gateway.networking.k8s.io", "v1",
                                                 ("spec", "rules", "[]", "retry"))
        wake = self._gateways(spec, world, inputs)
        return soonest(wake, self._mirror_probe(spec, world, previous, inputs))

    def _gateways(self, spec: ModelDeploymentSpec, world: World, inputs: Inputs) -> Optional[float]:
        """The route's Gateways, read when they change, when the route's status
        changes, and again with backoff while one is missing or the route is not
        accepted; a settled model's are not read again."""
        gateway, owner, memory = routing.gateway_of(spec), world.owner, self.memory
        assert gateway is not None
        keys = frozenset(routing.key(p, owner.namespace) for p in gateway.parent_refs)
        live = world.named(HTTP_ROUTE, owner.name)
        seen = repr(((live or {}).get("status") or {}).get("parents"))
        check = memory.gateways
        wait = min(GATEWAY_RECHECK_CAP, 2.0 ** max(0, (check.attempts if check else 0) - 1))
        if check is None or check.keys != keys or check.seen != seen or (check.attempts and self.mono - check.checked >= wait):
            found: dict[tuple[str, str], Optional[dict[str, Any]]] = {}
            for ns, name in sorted(keys):
                try:
                    obj = self.services.kube.get("gateway.networking.k8s.io/v1", "Gateway", ns, name)
                except NotInstalled:
                    continue  # not known: the route's status tells
                except ApiError as exc:
                    if exc.status != 403:
                        raise
                    continue  # not allowed to read it (the chart grants get): the route's status tells
                found[(ns, name)] = routing.strip_gateway(obj) if obj is not None else None
            view = routing.view(spec, owner, world.of(HTTP_ROUTE), found, None, None)
            troubled = any(v is None for v in found.values()) or any(p.status.accepted != "True" for p in view.parents)
            attempts = (check.attempts + 1 if check and check.keys == keys else 1) if troubled else 0
            check = memory.gateways = GatewayCheck(keys, seen, found, self.mono, attempts)
        inputs.gateways = dict(check.found)
        if not check.attempts:
            return None
        return max(0.1, check.checked + min(GATEWAY_RECHECK_CAP, 2.0 ** (check.attempts - 1)) - self.mono)

    def _mirror_probe(self, spec: ModelDeploymentSpec, world: World, previous: ModelDeploymentStatus,
                      inputs: Inputs) -> Optional[float]:
        """Before a shadow step: once the route's probe rule is on every Gateway,
        a probe through it (kubento.controller.routeprobe), off the workers."""
        memory, owner = self.memory, world.owner
        over, result = podio.take(memory.jobs, ROUTE_PROBE)
        state = previous.rollout
        gateway = routing.gateway_of(spec)
        if state is None or gateway is None:
            return None
        done = previous.traffic.mirror_check if previous.traffic else None
        if done is not None and done.revision == state.revision:
            return None
        if over and isinstance(result, MirrorCheck) and result.revision == state.revision:
            inputs.mirror_check = result
            return None
        v = routing.view(spec, owner, world.of(HTTP_ROUTE), inputs.gateways, None, None)
        if not routing.has_probe(v.live) or not v.seen.acked or podio.busy(memory.jobs, ROUTE_PROBE):
            return None
        targets = []
        for p in v.parents:
            at = routing.address(p, gateway) if p.status.accepted == "True" else None
            if at is not None:
                targets.append(routeprobe.Target(p.status.gateway, at[0], at[1]))
        if not targets:
            inputs.mirror_check = routeprobe.unprobed(state.revision)
            return None
        self._submit(ROUTE_PROBE, routeprobe.job(state.revision, targets, gateway.path_prefix, gateway.revision_header))
        return None

    # ------------------------------------------------------------ the model's pods

    def _submit(self, purpose: str, job: Any) -> None:
        self.memory.jobs[purpose] = self.services.pods.submit(self.key, job)

    def _autoscaler(self, spec: ModelDeploymentSpec, world: World, previous: ModelDeploymentStatus,
                    inputs: Inputs) -> Optional[float]:
        """kubento's own autoscaler (concurrency/rps): its decision, from the last scrape."""
        memory, owner = self.memory, world.owner
        over, scraped = podio.take(memory.jobs, AUTOSCALER)
        scaling = spec.autoscaling
        if not (scaling and scaling.metric in OWN_METRICS and scaling.provider == "kubento"):
            if memory.autoscaler.metric is not None:
                memory.autoscaler = type(memory.autoscaler)()  # turned off: nothing stale if it comes back
            return None
        model_pods = [p for p in world.of(POD)
                      if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                             for k, v in selector_labels(owner).items())]
        scaling = autoscaler.with_bento_target(scaling, previous.environment.services if previous.environment else None)
        inputs.scaling = autoscaler.scale(
            owner.namespace, owner.name, memory.autoscaler, scaling, spec.replicas, model_pods,
            previous.autoscaling, self.now, scraped if over else None,
            lambda: self._submit(AUTOSCALER, analysis.scrape_job({"pods": model_pods}, spec.port, self.now)),
            podio.busy(memory.jobs, AUTOSCALER))
        return autoscaler.SAMPLE_SECONDS

    def _analysis(self, spec: ModelDeploymentSpec, world: World, previous: ModelDeploymentStatus,
                  inputs: Inputs) -> Optional[float]:
        """The verdict of the rollout step's analysis window, when one is due."""
        memory = self.memory
        state = previous.rollout
        due = analysis_due(spec, previous, state.revision if state else None)
        over, scraped = podio.take(memory.jobs, ANALYSIS)
        if due is None or spec.rollout.analysis is None or state is None:
            if memory.windows and state is None:
                memory.windows.clear()
            return None
        revisions = revisions_of(world)
        groups = {"candidate": revisions.pods.get(state.revision, []),
                  "stable": revisions.pods.get(previous.stable_revision or "", [])}
        # analysis.outputShift: both revisions' output counts, by the labels they count in (nothing else)
        counted = [quality.judged(revisions, r) for r in (state.revision, previous.stable_revision)]
        outputs = {label for j in counted if j and j.get("output") for label in j["output"].labels}
        compare = spec.rollout.analysis.output_shift is not None and all(
            j and j.get("output") and set(j["output"].labels) - {OTHER} for j in counted)
        inputs.verdict = analysis.judge(
            memory.windows, due, spec.rollout.analysis, self.now, scraped if over else None,
            lambda: self._submit(ANALYSIS, analysis.scrape_job(
                groups, spec.port, self.now, tag=due, parse=lambda _, text: parse_metrics(text, outputs=outputs))),
            podio.busy(memory.jobs, ANALYSIS), compare_outputs=compare)
        return max(0.2, analysis.next_judgement(memory.windows, due, spec.rollout.analysis, self.now))

    def _quality(self, spec: ModelDeploymentSpec, world: World, previous: ModelDeploymentStatus) -> Optional[float]:
        """Drift scores of the serving revisions, from the last read of their pods (controller.quality)."""
        memory = self.memory
        over, scraped = podio.take(memory.jobs, QUALITY)
        owner = world.owner
        return quality.observe(
            owner.namespace, owner.name, memory.quality, spec.monitoring.statistics if spec.monitoring else None,
            revisions_of(world), previous, previous.current_revision, self.now, scraped if over else None,
            lambda groups, parse: self._submit(QUALITY, analysis.scrape_job(groups, spec.port, self.now,
                                                                             parse=parse)),
            podio.busy(memory.jobs, QUALITY))

    def _prediction_checks(self, world: World, previous: ModelDeploymentStatus
                           ) -> tuple[dict[str, gate.PodResult], Optional[Agreement], Optional[float]]:
        """The results of the model's checks job if it is over, and a new job
        for the pods that are due (their containers just became ready; the
        rollout's new revision compared with stable once one of its pods
        passed). Nothing for a model whose pods are all checked."""
        memory, mono = self.memory, self.mono
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
        state = previous.rollout
        stable, candidate = previous.stable_revision, state.revision if state else None
        wake: Optional[float] = None
        results: dict[str, gate.PodResult] = {}
        agreement: Optional[Agreement] = None
        if over and checked is not None:
            for uid, result in checked.results.items():
                results[uid] = result
                if result.undecided:
                    mem.attempts[uid] = (result.attempt, mono)
                    wake = soonest(wake, gate.RETRY_SECONDS)
                else:
                    mem.attempts.pop(uid, None)
            if checked.agreement is not None and state is not None:
                agreement, token = checked.agreement, rollout_token(state)
                if agreement.compared == 0:
                    tries = mem.comparisons.get(token, 0) + 1
                    mem.comparisons[token] = tries
                    if tries < gate.MAX_ATTEMPTS:
                        agreement = None
                        wake = soonest(wake, gate.RETRY_SECONDS)
                if agreement is not None:
                    mem.comparisons.pop(token, None)
        dues = gate.due(revisions.pods, checks, stable, candidate, (state.agreement if state else None) or agreement)
        live = {p["metadata"].get("uid") for pods_ in revisions.pods.values() for p in pods_}
        for uid in [u for u in mem.attempts if u not in live]:
            del mem.attempts[uid]
        if not dues or podio.busy(memory.jobs, CHECKS):
            return results, agreement, wake
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
                wake = soonest(wake, last + gate.RETRY_SECONDS - mono)
                continue
            rc = checks[d.revision]
            for name in sorted(rc.checks.config_maps() - contents.keys()):
                contents[name] = self.config_map(namespace, name)
            jobs.append((d.pod, rc.port, rc.checks, gate.resolve(rc.checks, contents), runs + 1))
            if d.compare:
                stable_pods = sorted((p for p in revisions.pods.get(stable or "", []) if analysis.is_ready(p)
                                      and not p["metadata"].get("deletionTimestamp")),
                                     key=lambda p: p["metadata"]["name"])
                if stable_pods:
                    port = checks[stable].port if stable is not None and stable in checks else rc.port
                    comparisons[uid] = probe.Comparison(uid, stable_pods[0], port)
                else:
                    wake = soonest(wake, gate.RETRY_SECONDS)  # no stable pod to compare with yet
        if jobs:
            self._submit(CHECKS, probe.checks_job(jobs, comparisons))
        return results, agreement, wake
