"""Prediction checks in the pass (kubento.controller.plan) over a toy cluster
with pods: the readiness gate keeps a pod out of readyReplicas (and so out of
the Service) until kubento set it; a new revision whose pod answers wrong is
rolled back with PredictionCheckFailed, one that disagrees with stable with
PredictionMismatch; a model without checks is as before."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Callable

from kubento.api.v1alpha1 import Agreement
from kubento.builders.meta import LABEL_MODEL, LABEL_REVISION
from kubento.controller.observation import Inputs
from kubento.controller.world import World
from kubento.predictions import gate
from kubento.predictions.expect import CheckResult
from tests.specs import VALID_SPEC
from tests.unit.test_plan import Toy

CHECKS = {"checks": [{"name": "setosa", "path": "/classify", "body": {"features": [[5.1, 3.5, 1.4, 0.2]]},
                      "expect": [{"jsonPath": "$[0]", "equals": "setosa"}]}]}
COMPARE = {"inputs": {"configMapKeyRef": {"name": "rows", "key": "rows.jsonl"}}, "path": "/classify",
           "minAgreement": 0.95}


class PodToy(Toy):
    """Toy plus pods: each Deployment's pods have ready containers one pass
    after they are asked for; a pod is Ready when its containers are and,
    with a readiness gate, once its gate condition is True (as the kubelet
    computes it); readyReplicas counts Ready pods. ``answers(revision)``
    says whether that revision's pods pass their checks."""

    def __init__(self, spec: dict, answers: Callable[[str], bool] = lambda rev: True) -> None:
        super().__init__(spec)
        self.pods: dict[str, dict] = {}
        self.answers = answers
        self.agreement: Callable[[str], dict | None] = lambda rev: None
        self.checked: list[str] = []  # pods the pass checked, in order

    def world(self) -> World:
        w = super().world()
        w.children["Pod"] = [copy.deepcopy(p) for _, p in sorted(self.pods.items())]
        return w

    def _gated(self, dep: dict) -> bool:
        return bool(dep["spec"]["template"]["spec"].get("readinessGates"))

    def tick(self) -> None:
        for (kind, name), dep in list(self.children.items()):
            if kind != "Deployment":
                continue
            rev = dep["metadata"]["labels"][LABEL_REVISION]
            want = dep["spec"]["replicas"]
            mine = sorted(n for n, p in self.pods.items() if p["metadata"]["labels"][LABEL_REVISION] == rev)
            for n in mine[want:]:
                del self.pods[n]
            for i in range(len(mine), want):
                n = f"{name}-{i}"
                self.pods[n] = {"metadata": {"name": n, "uid": f"uid-{n}", "namespace": "ns",
                                             "labels": {LABEL_MODEL: "iris", LABEL_REVISION: rev}},
                                "status": {"podIP": "10.0.0.9", "conditions": [
                                    {"type": "ContainersReady", "status": "True",
                                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}
            ready = 0
            for n, p in self.pods.items():
                if p["metadata"]["labels"][LABEL_REVISION] != rev:
                    continue
                g = gate.gate_condition(p)
                ok = not self._gated(dep) or (g is not None and g["status"] == "True")
                ready += ok
            dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": want,
                             "readyReplicas": ready, "updatedReplicas": want, "availableReplicas": ready,
                             "conditions": [{"type": "Progressing", "status": "True",
                                             "reason": "NewReplicaSetAvailable"}]}

    def step(self, inputs: Inputs | None = None):
        # What reconcile.gather does: run the checks of the pods that are due.
        w = self.world()
        from kubento.controller.world import revisions_of
        revs = revisions_of(w)
        checks = gate.revision_checks(revs.deployments)
        status = self.model.get("status") or {}
        state = status.get("rollout") or {}
        results, agreement = {}, None
        recorded = state.get("agreement")
        for d in gate.due(revs.pods, checks, status.get("stableRevision"), state.get("revision"),
                          Agreement.model_validate(recorded) if recorded else None):
            ok = self.answers(d.revision)
            self.checked.append(d.pod["metadata"]["name"])
            r = CheckResult("setosa", ok, False, '$[0] = "setosa"', '"setosa"' if ok else '"virginica"', 0.01)
            results[d.pod["metadata"]["uid"]] = gate.PodResult((r,), 1, "", "2026-01-01T00:00:00Z")
            if d.compare and ok and self.agreement(d.revision) is not None:
                agreement = Agreement.model_validate(self.agreement(d.revision))
        inputs = replace(inputs or Inputs(now=self.now), check_results=results, agreement=agreement)
        actions = super().step(inputs)
        for name, cond in actions.pod_conditions:
            if name not in self.pods:
                continue  # scaled away meanwhile (the API server answers 404: nothing to set)
            conds = [c for c in self.pods[name]["status"]["conditions"] if c["type"] != cond["type"]]
            self.pods[name]["status"]["conditions"] = conds + [cond]
        self.tick()
        return actions


def settle(toy: PodToy, passes: int = 30):
    for _ in range(passes):
        actions = toy.step()
        if actions.writes == 0:
            return actions
    raise AssertionError(f"no settled pass after {passes}")


def gated(toy: PodToy) -> list[bool]:
    return [bool(d["spec"]["template"]["spec"].get("readinessGates"))
            for (k, _), d in sorted(toy.children.items()) if k == "Deployment"]


def test_a_model_without_checks_has_no_gate_and_no_pod_write():
    toy = PodToy({**VALID_SPEC, "replicas": 2})
    settle(toy)
    assert gated(toy) == [False] and toy.checked == []
    assert toy.model["status"]["phase"] == "Ready"


def test_pods_serve_only_once_checked_then_the_model_settles_without_writes():
    toy = PodToy({**VALID_SPEC, "replicas": 2, "predictionChecks": CHECKS})
    toy.step()
    toy.step()  # pods exist, containers ready, not checked before this pass: none is ready
    dep = next(d for (k, _), d in toy.children.items() if k == "Deployment")
    assert gated(toy) == [True] and dep["metadata"]["annotations"][gate.ANNOTATION_CHECKS]
    last = settle(toy)
    assert toy.model["status"]["phase"] == "Ready" and sorted(toy.checked) == ["iris-" + dep["metadata"]["labels"][
        LABEL_REVISION] + f"-{i}" for i in range(2)]
    assert last.pod_conditions == [] and last.requeue_after is None
    assert all(gate.gate_condition(p)["reason"] == gate.PASSED for p in toy.pods.values())


def test_a_new_revision_answering_wrong_is_held_out_and_rolled_back_with_the_diff():
    toy = PodToy({**VALID_SPEC, "replicas": 2, "predictionChecks": CHECKS})
    settle(toy)
    v1 = toy.model["status"]["stableRevision"]
    toy.answers = lambda rev: rev == v1
    toy.model["spec"] = {**toy.model["spec"], "bento": {"image": "registry.local/iris:swapped"}}
    toy.model["metadata"]["generation"] = 2
    events = []
    for _ in range(30):
        actions = toy.step()
        events += actions.events
        # Never a wrong pod ready: the Deployment of the new revision counts none.
        for (k, _), d in toy.children.items():
            if k == "Deployment" and d["metadata"]["labels"][LABEL_REVISION] != v1:
                assert d["status"]["readyReplicas"] == 0
        if actions.writes == 0:
            break
    st = toy.model["status"]
    assert st["phase"] == "RolledBack" and st["stableRevision"] == v1 and st["failedRevision"] != v1
    rolled = next(c for c in st["conditions"] if c["type"] == "RolledBack")
    assert rolled["reason"] == "PredictionCheckFailed"
    assert 'check setosa: expected $[0] = "setosa", got "virginica"' in rolled["message"]
    assert st["history"][-1]["reason"] == "PredictionCheckFailed"
    reasons = [(t, r) for t, r, _ in events]
    assert ("Warning", "PredictionCheckFailed") in reasons and ("Warning", "RolledBack") in reasons


def test_a_good_new_revision_is_checked_and_promoted():
    toy = PodToy({**VALID_SPEC, "replicas": 2, "predictionChecks": CHECKS})
    settle(toy)
    v1 = toy.model["status"]["stableRevision"]
    toy.model["spec"] = {**toy.model["spec"], "env": [{"name": "MODEL_VERSION", "value": "2"}]}
    toy.model["metadata"]["generation"] = 2
    settle(toy)
    st = toy.model["status"]
    assert st["phase"] == "Ready" and st["stableRevision"] != v1
    assert len([n for n in toy.checked if st["stableRevision"] in n]) == 2


def test_a_canary_disagreeing_with_stable_is_rolled_back_with_its_agreement():
    spec = {**VALID_SPEC, "replicas": 2, "rollout": {"strategy": "Canary", "steps": [{"weight": 50}]},
            "predictionChecks": {**CHECKS, "compareWithStable": COMPARE}}
    toy = PodToy(spec)
    settle(toy)
    v1 = toy.model["status"]["stableRevision"]
    toy.agreement = lambda rev: {"rate": 0.6, "agreed": 6, "compared": 10, "minAgreement": 0.95, "passed": False,
                                 "message": "agreement 60% (6 of 10 inputs) < minAgreement 95% with the stable revision"}
    toy.model["spec"] = {**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]}
    toy.model["metadata"]["generation"] = 2
    settle(toy)
    st = toy.model["status"]
    assert st["phase"] == "RolledBack" and st["stableRevision"] == v1
    rolled = next(c for c in st["conditions"] if c["type"] == "RolledBack")
    assert rolled["reason"] == "PredictionMismatch" and "agreement 60%" in rolled["message"]
    assert st["history"][-1]["agreement"] == 0.6 and st["history"][-1]["reason"] == "PredictionMismatch"


def test_a_canary_agreeing_with_stable_is_promoted_with_its_agreement_in_history():
    spec = {**VALID_SPEC, "replicas": 2, "rollout": {"strategy": "Canary", "steps": [{"weight": 50}]},
            "predictionChecks": {**CHECKS, "compareWithStable": COMPARE}}
    toy = PodToy(spec)
    settle(toy)
    toy.agreement = lambda rev: {"rate": 1.0, "agreed": 10, "compared": 10, "minAgreement": 0.95, "passed": True,
                                 "message": "agreement 100% (10 of 10 inputs) >= minAgreement 95% with the stable revision"}
    toy.model["spec"] = {**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]}
    toy.model["metadata"]["generation"] = 2
    seen = []
    for _ in range(30):
        actions = toy.step()
        seen.append(((toy.model["status"].get("rollout") or {}).get("agreement") or {}).get("rate"))
        if actions.writes == 0:
            break
    st = toy.model["status"]
    assert st["phase"] == "Ready" and st["history"][-1]["outcome"] == "Serving" and st["history"][-1]["agreement"] == 1.0
    assert 1.0 in seen  # shown in status.rollout while the canary ran


def test_a_stable_pod_failing_its_checks_is_held_out_and_degrades_the_model():
    toy = PodToy({**VALID_SPEC, "replicas": 1, "predictionChecks": CHECKS})
    settle(toy)
    toy.answers = lambda rev: False  # e.g. a scale-up's new pod answers wrong
    toy.model["spec"] = {**toy.model["spec"], "replicas": 2}
    settle(toy)
    st = toy.model["status"]
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "PredictionCheckFailed"
    assert "stays out of the Service" in degraded["message"] and st["readyReplicas"] == 1
