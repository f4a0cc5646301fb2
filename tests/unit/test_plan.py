"""The pass as a pure function (kubento.controller.plan) over a fake world:
a toy cluster applies what each plan asks for, Deployments become ready one
pass later, and status is stored. No API server: this checks the decisions
(what to apply, scale, delete, create; the status; when to come back); the
integration tier checks the same passes against a real one."""

from __future__ import annotations

import copy
from dataclasses import replace

from hypothesis import given, settings, strategies as st

from kubento.builders.meta import ANNOTATION_APPLIED_HASH
from kubento.builders.revision import controller_revision
from kubento.controller.observation import Inputs, Observation
from kubento.controller.plan import plan
from kubento.controller.plan_children import kept_key
from kubento.controller.world import World
from kubento.controller.status import Problem, to_wire
from tests.crdschema import status_problems
from tests.specs import VALID_SPEC

UID = "uid-1"


def stored_condition(actions, type_):
    """A condition of the status a pass would write, as stored."""
    return next(c for c in to_wire(actions.new_status)["conditions"] if c["type"] == type_)


class Toy:
    """One model and its children; applies plans as an API server and the
    Deployment controller would (pods ready one pass after they are asked for)."""

    def __init__(self, spec: dict, name: str = "iris") -> None:
        self.model = {"metadata": {"name": name, "namespace": "ns", "uid": UID, "generation": 1}, "spec": spec}
        self.children: dict[tuple[str, str], dict] = {}
        self.now = 1000.0
        self.writes = 0
        self.generations: dict = {}  # the operator's memory (controller.memory.ModelMemory.generations)

    def world(self) -> World:
        by_kind = lambda kind: [copy.deepcopy(o) for (k, _), o in sorted(self.children.items()) if k == kind]  # noqa: E731
        return World(copy.deepcopy(self.model), {k: by_kind(k) for k in (
            "Deployment", "Service", "HorizontalPodAutoscaler", "ScaledObject", "Job", "ControllerRevision")})

    def tick(self) -> None:
        """Deployments catch up with their spec."""
        for (kind, _), obj in self.children.items():
            if kind == "Deployment":
                n = obj["spec"]["replicas"]
                obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": n,
                                 "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n,
                                 "conditions": [{"type": "Progressing", "status": "True",
                                                 "reason": "NewReplicaSetAvailable"}]}

    def step(self, inputs: Inputs | None = None):
        inputs = inputs or Inputs(now=self.now)
        inputs = replace(inputs, now=self.now, generations=self.generations)
        actions = plan(Observation.of(self.world(), inputs)).actions
        self.generations.update(actions.remember_generations)  # as the apply layer keeps them
        self.writes += actions.writes
        for m in actions.creates:  # the revisions kept (Jobs are the tests' to create and finish)
            if m["kind"] == "ControllerRevision":
                self.children[(m["kind"], m["metadata"]["name"])] = {
                    **copy.deepcopy(m), "metadata": {**m["metadata"], "uid": f"cr-{m['metadata']['name']}"}}
        for keep in actions.keeps:  # as the apply layer keeps them: from the Deployment as read
            kept = controller_revision(self.world().owner, self.children[("Deployment", keep.deployment)], keep.number)
            self.children[("ControllerRevision", keep.deployment)] = {
                **kept, "metadata": {**kept["metadata"], "uid": f"cr-{keep.deployment}"}}
        for a in actions.applies:
            key = (a.manifest["kind"], a.manifest["metadata"]["name"])
            live = copy.deepcopy(a.manifest)
            old = self.children.get(key)
            live["metadata"]["uid"] = f"child-{key[1]}"
            live["metadata"]["generation"] = (old["metadata"]["generation"] + 1) if old else 1
            if old and "status" in old:
                live["status"] = old["status"]
            self.children[key] = live
            self.generations[key] = live["metadata"]["generation"]  # as the apply layer records it
        for s in actions.scales:
            self.children[("Deployment", s.name)]["spec"]["replicas"] = s.replicas
        for d in actions.deletes:
            self.children.pop((d.kind, d.name), None)
        if actions.status is not None:
            stored = to_wire(actions.new_status)  # as the API server stores it
            # Every status a pass writes fits the CRD it is written to: a key the schema would
            # prune (a misspelling, a field the API lacks) fails here, not silently in a cluster.
            assert status_problems(stored) == [], status_problems(stored)
            self.model["status"] = stored
        self.now += 1
        self.tick()
        return actions


def settle(toy: Toy, passes: int = 20, inputs: Inputs | None = None):
    for _ in range(passes):
        actions = toy.step(inputs)
        if actions.writes == 0:
            return actions
    raise AssertionError(f"no settled pass after {passes}: {actions}")


def test_a_new_model_gets_its_deployment_and_service_then_a_settled_pass_asks_for_nothing():
    toy = Toy({**VALID_SPEC, "replicas": 2})
    first = toy.step()
    assert [(a.manifest["kind"], a.why, a.read_first) for a in first.applies] == [
        ("Deployment", "missing", True), ("Service", "missing", False)]
    assert first.status["phase"] == "Pending" and not first.deletes
    assert (first.creates, first.keeps) == ([], [])  # the spec's own revision: the spec makes it again
    last = settle(toy)
    assert not any(k == "ControllerRevision" for k, _ in toy.children)  # a model never changed keeps none
    assert toy.model["status"]["phase"] == "Ready"
    assert (last.applies, last.scales, last.deletes, last.status, last.events) == ([], [], [], None, [])
    assert last.requeue_after is None  # settled: only a watch event (or the resync) brings it back


def test_someone_elses_change_to_a_child_is_reverted_once():
    toy = Toy(VALID_SPEC)
    settle(toy)
    dep = next(o for (k, _), o in toy.children.items() if k == "Deployment")
    dep["metadata"]["generation"] += 1  # edited by someone else: same applied-hash, new generation
    actions = toy.step()
    assert [(a.manifest["kind"], a.why) for a in actions.applies] == [("Deployment", "changed by someone else")]
    assert settle(toy).writes == 0


def test_an_object_someone_else_owns_is_never_taken_over():
    toy = Toy(VALID_SPEC)
    toy.children[("Service", "iris")] = {"metadata": {"name": "iris", "namespace": "ns", "uid": "theirs"},
                                         "spec": {"selector": {"app": "theirs"}}}
    actions = toy.step()
    assert [a.manifest["kind"] for a in actions.applies] == ["Deployment"]
    ready = stored_condition(actions, "Ready")
    assert ready["reason"] == "ChildConflict" and "Service iris" in ready["message"]


def test_a_refused_manifest_is_not_sent_again_until_it_changes():
    toy = Toy(VALID_SPEC)
    first = toy.step()
    refused = first.applies[0].manifest["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]
    toy.children.clear()
    inputs = Inputs(now=toy.now, rejected={refused: ("the API server rejected Deployment iris-x: bad label", toy.now)})
    again = toy.step(inputs)
    assert again.applies == []  # and no Service pointing at nothing
    ready = stored_condition(again, "Ready")
    assert ready["reason"] == "ApplyFailed" and "bad label" in ready["message"]


def test_a_missing_secret_applies_nothing():
    toy = Toy({**VALID_SPEC, "imagePullSecrets": [{"name": "regcred"}]})
    actions = toy.step(Inputs(now=0, missing_secrets=frozenset({"regcred"})))
    assert actions.applies == [] and actions.status["phase"] == "Failed"
    ready = stored_condition(actions, "Ready")
    assert ready["reason"] == "SecretNotFound" and "regcred (imagePullSecrets)" in ready["message"]
    assert actions.events and actions.events[0][:2] == ("Warning", "SecretNotFound")


def test_apply_problems_from_the_api_server_reach_status():
    toy = Toy(VALID_SPEC)
    actions = toy.step(Inputs(now=0, apply_problems=[Problem("ApplyFailed", "the API server rejected Service iris")]))
    ready = stored_condition(actions, "Ready")
    assert ready["reason"] == "ApplyFailed"


def test_a_canary_pause_brings_the_model_back_when_it_ends():
    spec = {**VALID_SPEC, "replicas": 2, "rollout": {"strategy": "Canary", "steps": [{"weight": 50, "pause": "30s"}]}}
    toy = Toy(spec)
    settle(toy)
    toy.model["spec"] = {**spec, "env": [{"name": "V", "value": "2"}]}
    toy.model["metadata"]["generation"] = 2
    for _ in range(5):
        actions = toy.step()
        if toy.model["status"].get("rollout", {}).get("stepReached"):
            break
    paused = toy.step()
    assert paused.writes == 0
    assert 25 < paused.requeue_after <= 30.1  # the pause's end, not a 2 s tick
    toy.now += paused.requeue_after
    done = settle(toy)
    assert done.writes == 0 and toy.model["status"]["history"][-1]["outcome"] == "Serving"


def test_a_build_source_creates_its_job_and_says_when_no_pod_comes():
    spec = {"bento": {"build": {"source": {"configMap": {"name": "proj"}}, "output": {"uri": "s3://b/p"}}}}
    toy = Toy(spec)
    content = {"data": {"service.py": "x", "bentofile.yaml": "y"}, "binaryData": {}}
    first = toy.step(Inputs(now=0, config_map=content))
    assert [c["kind"] for c in first.creates] == ["Job"] and first.applies == []
    assert first.status["phase"] == "Building"
    job = copy.deepcopy(first.creates[0])
    job["metadata"].update(uid="job-uid", creationTimestamp="2026-01-01T00:00:00Z")
    toy.children[("Job", job["metadata"]["name"])] = job
    from kubento.rollout.revisions import epoch
    created = epoch("2026-01-01T00:00:00Z")
    toy.now = created + 10
    waiting = toy.step(Inputs(now=0, config_map=content))
    assert [c["kind"] for c in waiting.creates] == ["ConfigMap"]  # the immutable copy of the source
    assert 50 < waiting.requeue_after <= 52  # to say, at 60 s, that the Job made no pod
    toy.now = created + 61
    late = toy.step(Inputs(now=0, config_map=content, snapshots=frozenset({f"{job['metadata']['name']}-source"})))
    assert late.creates == []
    build = stored_condition(late, "BuildSucceeded")
    assert build["reason"] == "BuildPodNotCreated"


def test_a_missing_config_map_source_is_named():
    spec = {"bento": {"build": {"source": {"configMap": {"name": "proj"}}, "output": {"uri": "s3://b/p"}}}}
    actions = Toy(spec).step(Inputs(now=0, config_map=None))
    assert actions.creates == [] and actions.applies == []
    ready = stored_condition(actions, "Ready")
    assert ready["reason"] == "SourceNotFound" and "ConfigMap proj" in ready["message"]


SPECS = st.fixed_dictionaries({
    "replicas": st.integers(0, 6),
    "strategy": st.sampled_from(["RollingUpdate", "Canary", "BlueGreen"]),
    "autoscale": st.booleans(),
    "version": st.integers(1, 3),
})


@settings(max_examples=60, deadline=None)
@given(first=SPECS, second=SPECS)
def test_any_spec_and_any_change_settle_to_a_pass_that_writes_nothing(first, second):
    """Level-triggered and idempotent: from any spec, and after any change,
    passes converge, and the settled pass asks for no write and no timer."""
    def spec(p):
        out = {**VALID_SPEC, "replicas": p["replicas"], "rollout": {"strategy": p["strategy"]},
               "env": [{"name": "V", "value": str(p["version"])}]}
        if p["strategy"] == "Canary":
            out["rollout"]["steps"] = [{"weight": 50}]
        if p["autoscale"]:
            out["resources"] = {"requests": {"cpu": "100m"}}
            out["autoscaling"] = {"minReplicas": 1, "maxReplicas": 5}
        return out

    toy = Toy(spec(first))
    assert settle(toy, 40).requeue_after is None
    toy.model["spec"] = spec(second)
    toy.model["metadata"]["generation"] = 2
    last = settle(toy, 60)
    assert last.requeue_after is None
    status = toy.model["status"]
    assert status["stableRevision"] == status["currentRevision"] and not status.get("rollout")
    wanted = min(max(second["replicas"], 1), 5) if second["autoscale"] else second["replicas"]
    serving = [o for (k, _), o in toy.children.items() if k == "Deployment" and o["spec"]["replicas"]]
    assert sum(o["spec"]["replicas"] for o in serving) == wanted
    assert {o["metadata"]["labels"]["serving.kubento.io/revision"] for o in serving} <= {status["stableRevision"]}


def test_the_status_schema_check_finds_what_the_api_server_would_prune():
    assert status_problems({"phase": "Ready", "stableRevison": "abc"}) == [
        "status.stableRevison: pruned (not in the CRD's schema)"]
    assert status_problems({"history": [{"number": "1", "revision": "a", "bento": "b", "time": "t",
                                         "outcome": "Serving"}]}) == ["status.history[0].number: not a integer ('1')"]
    assert status_problems({"phase": "Sleeping"})[0].startswith("status.phase: 'Sleeping' not one of")


def aborted_rollout(spec: dict) -> tuple[Toy, str, str]:
    """A model serving revision 1 whose rollout of revision 2 was aborted (`kubento abort`)."""
    from kubento.builders.meta import ANNOTATION_ABORT

    toy = Toy({**spec, "env": [{"name": "V", "value": "1"}]})
    settle(toy)
    stable = toy.model["status"]["stableRevision"]
    toy.model["spec"] = {**spec, "env": [{"name": "V", "value": "2"}]}
    toy.model["metadata"]["generation"] = 2
    toy.step()
    rollout = toy.model["status"]["rollout"]
    toy.model["metadata"]["annotations"] = {ANNOTATION_ABORT: f"{rollout['revision']}-{rollout['number']}"}
    settle(toy, 30)
    assert toy.model["status"]["stableRevision"] == stable
    return toy, stable, toy.model["status"]["failedRevision"]


def test_a_lost_stable_deployment_is_made_again_from_its_controller_revision_after_an_abort():
    """kubento abort, then someone deletes the stable revision's Deployment:
    it comes back from its ControllerRevision with its replicas, the aborted
    revision gets no pod, and a Warning event says what was repaired."""
    toy, stable, aborted = aborted_rollout({**VALID_SPEC, "replicas": 2})
    assert toy.model["status"]["phase"] == "RolledBack"
    name = f"iris-{stable}"
    kept = toy.children[("ControllerRevision", name)]
    assert kept["data"]["metadata"]["labels"]["serving.kubento.io/revision"] == stable

    del toy.children[("Deployment", name)]  # kubectl delete deployment
    repaired = toy.step(Inputs(now=toy.now, stored_revisions={stable: kept}))
    [made] = [a.manifest for a in repaired.applies if a.manifest["kind"] == "Deployment"]
    assert (made["metadata"]["name"], made["spec"]["replicas"]) == (name, 2)
    assert made["metadata"]["ownerReferences"][0]["uid"] == UID
    assert [e[:2] for e in repaired.events] == [("Warning", "RevisionRepaired")]
    assert stable in repaired.events[0][2] and "ControllerRevision" in repaired.events[0][2]
    settle(toy, 30)
    status = toy.model["status"]
    assert (status["stableRevision"], status["failedRevision"]) == (stable, aborted)
    assert toy.children[("Deployment", f"iris-{aborted}")]["spec"]["replicas"] == 0  # never rolled out again


def test_the_revision_a_spec_change_moves_on_from_is_kept_in_that_pass_and_once():
    toy = Toy(VALID_SPEC)
    settle(toy)
    old = toy.model["status"]["stableRevision"]
    toy.model["spec"] = {**VALID_SPEC, "env": [{"name": "V", "value": "2"}]}
    toy.model["metadata"]["generation"] = 2
    first = toy.step()
    assert [(k.deployment, k.number) for k in first.keeps] == [(f"iris-{old}", 1)]
    assert any(a.manifest["kind"] == "Deployment" and a.manifest["metadata"]["name"] != f"iris-{old}"
               for a in first.applies)  # beside the new revision's Deployment, in the same pass
    assert toy.step().keeps == []  # kept: never asked again


def test_a_rolling_update_says_its_start_and_its_promotion_once_each():
    toy = Toy({**VALID_SPEC, "replicas": 1})
    settle(toy)
    old = toy.model["status"]["stableRevision"]
    toy.model["spec"] = {**VALID_SPEC, "replicas": 1, "env": [{"name": "V", "value": "2"}]}
    toy.model["metadata"]["generation"] = 2
    events = []
    for _ in range(20):
        actions = toy.step()
        events += actions.events
        if actions.writes == 0:
            break
    new = toy.model["status"]["stableRevision"]
    assert [e[:2] for e in events] == [("Normal", "RolloutStarted"), ("Normal", "Promoted")]
    assert events[0][2] == f"rolling out revision {new} (RollingUpdate) replacing {old}"
    assert events[1][2] == f"revision {new} serves all traffic (replaced {old}); 1 of 1 replicas ready"


def test_a_refused_keep_is_asked_again_only_after_a_while_and_degrades_the_model_meanwhile():
    toy = Toy(VALID_SPEC)
    settle(toy)
    old = f"iris-{toy.model['status']['stableRevision']}"
    toy.model["spec"] = {**VALID_SPEC, "env": [{"name": "V", "value": "2"}]}
    toy.model["metadata"]["generation"] = 2
    refusal = f"the API server refused ControllerRevision {old}: forbidden"
    refused = Inputs(now=toy.now, rejected={kept_key(old): (refusal, toy.now)})  # as the apply layer keeps it
    last = settle(toy, 30, refused)
    assert last.keeps == [] and not any(k == "ControllerRevision" for k, _ in toy.children)
    degraded = stored_condition(last, "Degraded") if last.status else next(
        c for c in toy.model["status"]["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == ("True", "RevisionNotKept", refusal)
    assert toy.model["status"]["phase"] == "Degraded"  # serving, but its history is not durable
    toy.now += 300
    assert [k.deployment for k in toy.step(refused).keeps] == [old]  # after REJECTION_RETRY_SECONDS


def test_a_revision_out_of_history_takes_its_controller_revision_with_it():
    spec = {**VALID_SPEC, "rollout": {"revisionHistoryLimit": 1}}
    toy = Toy({**spec, "env": [{"name": "V", "value": "0"}]})
    settle(toy)
    for v in range(1, 4):
        toy.model["spec"] = {**spec, "env": [{"name": "V", "value": str(v)}]}
        toy.model["metadata"]["generation"] = v + 1
        settle(toy, 30)
    kept = sorted(n for k, n in toy.children if k == "ControllerRevision")
    deployments = sorted(n for k, n in toy.children if k == "Deployment")
    current = f"iris-{toy.model['status']['currentRevision']}"
    assert len(deployments) == 2 and current in deployments  # the stable one and one more in history
    assert kept == [n for n in deployments if n != current]  # the one the spec moved on from is kept


def test_an_aborted_revision_is_not_served_when_nothing_keeps_the_stable_one():
    toy, stable, aborted = aborted_rollout(VALID_SPEC)
    for kind in ("Deployment", "ControllerRevision"):  # both gone: nothing can bring it back
        del toy.children[(kind, f"iris-{stable}")]
    for _ in range(5):
        toy.step()
    assert toy.children[("Deployment", f"iris-{aborted}")]["spec"]["replicas"] == 0
    assert toy.model["status"].get("stableRevision") == stable  # still named: a spec change rolls out again
