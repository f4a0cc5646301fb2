"""The rollout state machine, step by step and as a whole (a toy cluster in
which desired replicas become ready one tick later)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings, strategies as st

from kubento.rollout.canary import canary_split, effective_weight
from kubento.rollout.strategy import Observed, Plan, Revision, Step, plan


def observed(**kw) -> Observed:
    base = dict(strategy="RollingUpdate", replicas=2, stable=Revision(2, 2), candidate=Revision(0, 0),
                now=100.0, since=100.0, deadline=600.0)
    base.update(kw)
    return Observed(**base)


# ----------------------------------------------------------- single steps


def test_rolling_update_surges_one_pod_and_keeps_stable_until_it_is_ready():
    p = plan(observed())
    assert (p.stable, p.candidate, p.service, p.outcome) == (2, 1, "both", "Progressing")
    p = plan(observed(candidate=Revision(1, 1)))
    assert (p.stable, p.candidate) == (1, 2)
    p = plan(observed(stable=Revision(0, 0), candidate=Revision(2, 2)))
    assert (p.outcome, p.service, p.stable, p.candidate) == ("Promoted", "candidate", 0, 2)


def test_one_replica_never_has_zero_ready_pods():
    p = plan(observed(replicas=1, stable=Revision(1, 1)))
    assert (p.stable, p.candidate) == (1, 1)  # surge first
    p = plan(observed(replicas=1, stable=Revision(1, 1), candidate=Revision(1, 0)))
    assert p.stable == 1


def test_canary_weight_is_a_replica_ratio_and_pauses_hold():
    steps = (Step(25, 60.0), Step(50, 60.0))
    o = observed(strategy="Canary", replicas=4, stable=Revision(4, 4), steps=steps)
    p = plan(o)
    assert (p.stable, p.candidate, p.reason) == (4, 1, "CanaryStep")
    p = plan(replace(o, candidate=Revision(1, 1)))
    assert (p.stable, p.candidate) == (3, 1)
    p = plan(replace(o, stable=Revision(3, 3), candidate=Revision(1, 1)))
    assert (p.outcome, p.reason, p.step_reached, p.weight) == ("Paused", "CanaryPaused", 100.0, 25)
    p = plan(replace(o, stable=Revision(3, 3), candidate=Revision(1, 1), step_reached=100.0, now=161.0))
    assert (p.step, p.candidate, p.since) == (1, 2, 161.0)


def test_analysis_gates_every_step_and_no_data_is_never_a_pass():
    o = observed(strategy="Canary", replicas=4, stable=Revision(3, 3), candidate=Revision(1, 1),
                 steps=(Step(25),), analysis=True, step_reached=100.0)
    for verdict in (None, "inconclusive"):
        p = plan(replace(o, verdict=verdict, verdict_message="only 3 of 20 requests"))
        assert (p.outcome, p.reason, p.analyze) == ("Paused", "AnalysisInconclusive", True)
        assert "3 of 20" in p.message
    p = plan(replace(o, verdict="pass"))
    assert p.outcome == "Progressing" and p.candidate == 4
    p = plan(replace(o, verdict="fail", verdict_message="error rate 30% > 5%"))
    assert (p.outcome, p.reason, p.stable, p.candidate) == ("Progressing", "AnalysisFailed", 4, 1)  # stable first
    p = plan(replace(o, stable=Revision(4, 4), verdict="fail", verdict_message="error rate 30% > 5%"))
    assert (p.outcome, p.stable, p.candidate, p.service) == ("RolledBack", 4, 0, "stable")
    p = plan(replace(o, verdict="inconclusive", now=100.0 + 601))
    assert (p.reason, p.outcome) == ("AnalysisInconclusive", "Progressing")  # rolling back: restoring stable


def test_a_crash_looping_candidate_is_rolled_back_or_held_without_auto_rollback():
    o = observed(stable=Revision(1, 1), candidate=Revision(1, 0, "crash-looping: exit 1"))
    p = plan(o)
    # Stable back to full size first; the candidate's unready pod serves nothing and goes at once.
    assert (p.outcome, p.reason, p.stable, p.candidate, p.service) == ("Progressing", "CandidateFailed", 2, 0, "stable")
    p = plan(replace(o, stable=Revision(2, 2)))
    assert (p.outcome, p.candidate) == ("RolledBack", 0)
    p = plan(replace(o, auto_rollback=False))
    assert (p.outcome, p.stable, p.candidate) == ("Failed", 1, 1)


def test_the_deadline_counts_from_the_last_progress():
    o = observed(candidate=Revision(1, 0), since=0.0, now=599.0)
    assert plan(o).outcome == "Progressing"
    p = plan(replace(o, now=601.0))
    assert p.reason == "ProgressDeadlineExceeded" and "600s" in p.message


def test_blue_green_switches_only_when_the_new_revision_is_fully_ready():
    o = observed(strategy="BlueGreen", replicas=2)
    p = plan(o)
    assert (p.stable, p.candidate, p.service, p.preview) == (2, 2, "stable", True)
    p = plan(replace(o, candidate=Revision(2, 1)))
    assert p.service == "stable"
    p = plan(replace(o, candidate=Revision(2, 2)))
    assert (p.service, p.stable) == ("candidate", 2)  # switch first, scale down after
    p = plan(replace(o, candidate=Revision(2, 2), service="candidate"))
    assert (p.service, p.stable, p.reason) == ("candidate", 0, "ScalingDownOld")
    p = plan(replace(o, stable=Revision(0, 0), candidate=Revision(2, 2), service="candidate"))
    assert p.outcome == "Promoted"


def test_blue_green_keeps_the_old_pods_until_every_node_has_switched():
    # A kube-proxy that has not applied the switch yet still sends requests to old pods.
    o = observed(strategy="BlueGreen", replicas=2, stable=Revision(2, 2), candidate=Revision(2, 2),
                 service="candidate", since=100.0, now=110.0, scale_down_delay=30.0)
    p = plan(o)
    assert (p.stable, p.candidate, p.service, p.outcome) == (2, 2, "candidate", "Progressing")
    assert p.reason == "ScalingDownOld" and "20s more" in p.message
    assert plan(replace(o, now=130.5)).stable == 0
    # The new revision failing meanwhile goes straight back: the old pods are still there.
    p = plan(replace(o, candidate=Revision(2, 1, "crash-looping")))
    assert (p.outcome, p.service, p.stable, p.candidate) == ("RolledBack", "stable", 2, 0)


def test_manual_promote_skips_steps_and_abort_goes_back():
    o = observed(strategy="Canary", replicas=4, stable=Revision(3, 3), candidate=Revision(1, 1),
                 steps=(Step(25, 3600.0), Step(50)), step_reached=100.0)
    assert plan(o).reason == "CanaryPaused"
    assert plan(replace(o, promote=True)).candidate == 4
    p = plan(replace(o, abort=True))
    assert (p.stable, p.outcome) == (4, "Progressing")
    assert plan(replace(o, abort=True, stable=Revision(4, 4))).outcome == "Aborted"


def test_a_canary_step_on_one_replica_keeps_the_stable_pod():
    """The bug users saw: a 10 % step with replicas 1 scaled stable to 0 and
    sent every request to the new revision."""
    o = observed(strategy="Canary", replicas=1, stable=Revision(1, 1), steps=(Step(10, 30.0), Step(50, 10.0)))
    p = plan(o)
    assert (p.stable, p.candidate, p.requested) == (1, 1, 10)
    p = plan(replace(o, candidate=Revision(1, 1)))
    assert (p.stable, p.candidate, p.weight, p.reason) == (1, 1, 50, "CanaryPaused")
    assert "10% requested; 1 new + 1 stable pod = 50% with 1 replica" in p.message


@pytest.mark.parametrize("replicas,weight,split,effective", [
    (1, 10, (1, 1), 50), (1, 50, (1, 1), 50),
    (2, 10, (2, 1), 33), (2, 25, (2, 1), 33), (2, 50, (1, 1), 50),
    (4, 10, (4, 1), 20), (4, 25, (3, 1), 25), (4, 50, (2, 2), 50),
    (10, 10, (9, 1), 10), (10, 25, (8, 2), 20), (10, 90, (1, 9), 90),
    (3, 100, (0, 3), 100), (0, 50, (0, 0), 0),
])
def test_canary_split_keeps_stable_and_stays_within_the_weight(replicas, weight, split, effective):
    assert canary_split(replicas, weight) == split
    assert effective_weight(*split) == effective


@given(st.integers(1, 1000), st.integers(1, 99))
def test_canary_split_bounds(replicas, weight):
    stable, candidate = canary_split(replicas, weight)
    assert stable >= max(1, replicas * (100 - weight) / 100 - 1e-9)  # stable keeps its share, never 0
    assert 1 <= candidate <= replicas
    assert stable + candidate <= replicas + 1  # at most one pod of surge
    assert candidate / (stable + candidate) <= max(weight / 100, 1 / (1 + stable)) + 1e-9


@settings(max_examples=300, deadline=None)
@given(replicas=st.integers(1, 20), weight=st.integers(1, 99), data=st.data())
def test_through_a_canary_step_stable_keeps_a_ready_pod_and_the_weight_stays_bounded(replicas, weight, data):
    """Any readiness of the candidate's pods, tick by tick: the stable
    revision never drops below one ready pod, and the ready pods' share on
    the candidate never exceeds the larger of the requested weight and a
    single candidate pod beside the stable ones."""
    stable, candidate = Revision(replicas, replicas), Revision(0, 0)
    o = observed(strategy="Canary", replicas=replicas, stable=stable, candidate=candidate,
                 steps=(Step(weight, 1e9),))
    for tick in range(43):
        p = plan(o)
        stable = Revision(p.stable, min(stable.ready, p.stable))
        candidate = Revision(p.candidate, min(candidate.ready, p.candidate))
        assert stable.ready >= 1
        share = candidate.ready / (stable.ready + candidate.ready)
        assert share <= max(weight / 100, 1 / (1 + stable.ready)) + 1e-9, (p, stable, candidate)
        assert stable.ready + candidate.ready >= replicas  # capacity, as ever
        # New pods become ready in any number; stable's pods come back if it was resized up.
        missing = candidate.desired - candidate.ready
        grown = missing if tick >= 40 else data.draw(st.integers(0, missing))  # at the end: all ready
        candidate = Revision(candidate.desired, candidate.ready + grown)
        stable = Revision(stable.desired, stable.desired)
        o = replace(o, stable=stable, candidate=candidate, step_reached=p.step_reached, now=o.now + 1)
    assert p.reason == "CanaryPaused" and p.step_reached is not None  # the step was reached and holds


# ------------------------------------------------------- whole rollouts


@dataclass
class Cluster:
    """Scaling down takes effect at once; new pods are ready a tick later
    (never, and crash-looping, for a broken candidate)."""

    stable: Revision
    candidate: Revision
    broken: bool

    def apply(self, p: Plan) -> None:
        self.stable = Revision(p.stable, min(self.stable.ready, p.stable))
        self.candidate = Revision(p.candidate, min(self.candidate.ready, p.candidate), self.candidate.failure)

    def tick(self) -> None:
        self.stable = Revision(self.stable.desired, self.stable.desired)
        if self.broken:
            self.candidate = Revision(self.candidate.desired, 0, "crash-looping" if self.candidate.desired else "")
        else:
            self.candidate = Revision(self.candidate.desired, self.candidate.desired)


def serving(cluster: Cluster, service: str) -> int:
    return {"stable": cluster.stable.ready, "candidate": cluster.candidate.ready,
            "both": cluster.stable.ready + cluster.candidate.ready}[service]


def run(strategy, replicas, steps, broken, analysis_verdict, max_ticks=400):
    cluster = Cluster(Revision(replicas, replicas), Revision(0, 0), broken)
    o = Observed(strategy=strategy, replicas=replicas, stable=cluster.stable, candidate=cluster.candidate,
                 now=0.0, since=0.0, deadline=120.0, steps=steps, analysis=analysis_verdict is not None,
                 verdict=analysis_verdict)
    history = []
    for tick in range(max_ticks):
        p = plan(o)
        history.append(p)
        cluster.apply(p)
        # capacity right after applying the plan, before new pods are ready
        assert serving(cluster, p.service) >= replicas, (tick, p, cluster)
        if p.done:
            return p, history
        cluster.tick()
        o = replace(o, stable=cluster.stable, candidate=cluster.candidate, now=o.now + 1,
                    since=p.since if p.since is not None else o.since, step=p.step,
                    step_reached=p.step_reached, service=p.service, rollback=p.rollback,
                    rollback_message=p.rollback_message)
    raise AssertionError(f"no end after {max_ticks} ticks: {history[-3:]}")


STEPS = st.lists(st.integers(1, 99), min_size=0, max_size=4, unique=True).map(
    lambda ws: tuple(Step(w, p) for w, p in zip(sorted(ws), (0.0, 3.0, None, 5.0))))


@settings(max_examples=300, deadline=None)
@given(strategy=st.sampled_from(["RollingUpdate", "Canary", "BlueGreen"]), replicas=st.integers(1, 12), steps=STEPS)
def test_healthy_rollouts_end_promoted_and_never_lose_capacity(strategy, replicas, steps):
    final, history = run(strategy, replicas, steps if strategy == "Canary" else (), broken=False, analysis_verdict=None)
    assert final.outcome == "Promoted"
    assert [p.step for p in history] == sorted(p.step for p in history)  # steps only move forward


@settings(max_examples=300, deadline=None)
@given(strategy=st.sampled_from(["RollingUpdate", "Canary", "BlueGreen"]), replicas=st.integers(1, 12), steps=STEPS)
def test_broken_rollouts_end_rolled_back_with_stable_capacity_intact(strategy, replicas, steps):
    final, history = run(strategy, replicas, steps if strategy == "Canary" else (), broken=True, analysis_verdict=None)
    assert final.outcome == "RolledBack" and final.service == "stable"
    assert (final.stable, final.candidate) == (replicas, 0)


@settings(max_examples=200, deadline=None)
@given(replicas=st.integers(1, 12), steps=STEPS.filter(bool), verdict=st.sampled_from(["fail", "inconclusive"]))
def test_canaries_that_fail_or_lack_analysis_data_are_rolled_back(replicas, steps, verdict):
    final, _ = run("Canary", replicas, steps, broken=False, analysis_verdict=verdict)
    assert final.outcome == "RolledBack" and (final.stable, final.candidate) == (replicas, 0)
    assert final.reason == ("AnalysisFailed" if verdict == "fail" else "AnalysisInconclusive")


def test_a_rollback_whose_stable_revision_cannot_recover_still_ends():
    o = observed(stable=Revision(2, 1), candidate=Revision(2, 1), rollback="CandidateFailed",
                 rollback_message="crash-looping", since=0.0, now=100.0)
    p = plan(o)
    assert (p.outcome, p.stable, p.candidate) == ("Progressing", 2, 1)  # keeps the ready canary pod meanwhile
    p = plan(replace(o, now=601.0))
    assert (p.outcome, p.stable, p.candidate, p.service) == ("RolledBack", 2, 0, "stable")
    assert "1 of 2 replicas ready" in p.message


def test_every_strategy_the_api_offers_is_one_module_of_kubento_rollout():
    import typing

    from kubento.api.v1alpha1 import Rollout
    from kubento.rollout import strategy

    offered = set(typing.get_args(Rollout.model_fields["strategy"].annotation))
    assert set(strategy.strategies()) == offered
    for name, s in strategy.strategies().items():
        assert s.name == name


def test_a_canary_says_its_step_and_wakes_at_the_pause_end():
    from kubento.api.v1alpha1 import Rollout
    from kubento.rollout import strategy

    rollout = Rollout.model_validate({"strategy": "Canary", "steps": [{"weight": 10, "pause": "30s"}, {"weight": 50}]})
    from kubento.api.v1alpha1 import RolloutStatus

    state = RolloutStatus(revision="b", strategy="Canary", since="2026-01-01T00:00:00Z", step=0,
                          step_reached="2026-01-01T00:00:00Z", requested_weight=10)
    canary = strategy.of("Canary")
    assert canary.describe(rollout, state) == ["step 1/2 (weight 10% requested)"]
    reached = 1767225600.0  # 2026-01-01T00:00:00Z
    assert round(canary.wake_after(rollout, state, reached + 10), 2) == 20.05
    assert strategy.of("RollingUpdate").wake_after(rollout, state, reached) is None


def test_blue_green_keeps_a_preview_service_and_the_others_remove_it():
    from kubento.api.v1alpha1 import ModelDeploymentSpec
    from kubento.builders.meta import Owner
    from kubento.rollout import strategy

    spec = ModelDeploymentSpec.model_validate({"bento": {"image": "r/iris:1"}, "rollout": {"strategy": "BlueGreen"}})
    owner = Owner("iris", "ns", "uid-1")
    [preview] = strategy.of("BlueGreen").children(spec, owner, "abc123")
    assert (preview["kind"], preview["metadata"]["name"]) == ("Service", "iris-preview")
    assert strategy.of("BlueGreen").child_names(owner) == [("v1", "Service", "iris-preview")]
    assert strategy.of("Canary").children(spec, owner, "abc123") == []
