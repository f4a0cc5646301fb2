"""decide(): revisions, Service target, history and the failed revision,
driven through whole rollouts on a toy cluster (no I/O)."""

from __future__ import annotations

from typing import Optional

from hypothesis import given, settings, strategies as st

from dataclasses import replace

from kubento.api.v1alpha1 import Rollout
from kubento.controller.status import parse_status
from kubento.rollout import revisions
from kubento.rollout.analysis import Verdict
from kubento.rollout.revisions import Decision, Seen, epoch, rfc3339


def _stored(model):
    return model.model_dump(by_alias=True, mode="json", exclude_none=True) if model is not None else None


def decide(*, previous: dict, **kwargs) -> Decision:
    """revisions.decide over a status as stored, its rollout and history given back as stored (camelCase)."""
    d = revisions.decide(previous=parse_status(previous), **kwargs)
    return replace(d, rollout=_stored(d.rollout), history=[_stored(h) for h in d.history])


class ToyCluster:
    """Deployments whose pods become ready one tick after they are asked
    for, unless the revision is broken (its pods crash-loop)."""

    def __init__(self, broken=(), slow=()):
        self.desired: dict[str, int] = {}
        self.ready: dict[str, int] = {}
        self.broken, self.slow = set(broken), set(slow)

    def seen(self) -> dict[str, Seen]:
        out = {}
        for rev, n in self.desired.items():
            failure = "crash-looping" if rev in self.broken and n > 0 else ""
            out[rev] = Seen(n, self.ready.get(rev, 0), pods=max(n, self.ready.get(rev, 0)), failure=failure)
        return out

    def apply(self, d: Decision) -> None:
        for rev in d.delete:
            self.desired.pop(rev, None)
            self.ready.pop(rev, None)
        for rev, n in d.replicas.items():
            self.desired[rev] = n
            # Scale-down is immediate; scale-up is ready next tick (never, if broken).
            self.ready[rev] = min(self.ready.get(rev, 0), n)

    def tick(self) -> None:
        for rev, n in self.desired.items():
            if rev not in self.broken and rev not in self.slow:
                self.ready[rev] = n


def drive(cluster: ToyCluster, revision: str, rollout: Rollout, status: dict, replicas: int = 2,
          start: float = 1000.0, steps: int = 60, verdict: Optional[Verdict] = None, **kw):
    """Call decide until the rollout ends; return the last decision, the
    status and the ready pods the Service selected at each pass."""
    selected = []
    d = None
    for i in range(steps):
        d = decide(revision=revision, bento=f"img:{revision}", rollout=rollout, replicas=replicas,
                   previous=status, seen=cluster.seen(), now=start + 5 * i, verdict=verdict, **kw)
        cluster.apply(d)
        status = {"stableRevision": d.stable, "rollout": d.rollout, "failedRevision": d.failed, "history": d.history}
        status = {k: v for k, v in status.items() if v is not None}
        ready = cluster.seen()
        selected.append(sum(s.ready for rev, s in ready.items() if d.selects in (None, rev)))
        cluster.tick()
        if d.rollout is None and i > 0 and (d.plan is None or d.plan.done):
            break
    return d, status, selected


def deployed(rev: str = "v1", replicas: int = 2) -> tuple[ToyCluster, dict]:
    cluster = ToyCluster()
    d, status, _ = drive(cluster, rev, Rollout(), {}, replicas=replicas)
    assert d.stable == rev
    return cluster, status


def test_first_deploy_becomes_stable_once_ready_and_is_recorded():
    cluster = ToyCluster()
    first = decide(revision="v1", bento="img:1", rollout=Rollout(), replicas=2, previous={}, seen={}, now=0.0)
    assert first.replicas == {"v1": 2} and first.stable is None and first.selects == "v1"
    assert [(h["number"], h["revision"], h["outcome"]) for h in first.history] == [(1, "v1", "Progressing")]
    cluster.apply(first)
    cluster.tick()
    status = {"history": first.history}
    second = decide(revision="v1", bento="img:1", rollout=Rollout(), replicas=2, previous=status,
                    seen=cluster.seen(), now=5.0)
    assert second.stable == "v1"
    assert [(h["revision"], h["outcome"]) for h in second.history] == [("v1", "Serving")]


def test_rolling_update_promotes_with_capacity_kept_and_history():
    cluster, status = deployed()
    d, status, selected = drive(cluster, "v2", Rollout(), status)
    assert d.stable == "v2" and d.rollout is None and d.selects == "v2"
    assert cluster.desired == {"v1": 0, "v2": 2}  # v1 kept at 0 for `kubento rollback`
    assert min(selected) >= 2
    assert [(h["number"], h["revision"], h["outcome"]) for h in status["history"]] == [
        (1, "v1", "Superseded"), (2, "v2", "Serving")]


def test_broken_revision_rolls_back_is_remembered_and_not_retried():
    cluster, status = deployed()
    cluster.broken.add("v2")
    d, status, selected = drive(cluster, "v2", Rollout(), status)
    assert d.plan.outcome == "RolledBack" and d.failed == "v2" and d.stable == "v1"
    assert cluster.desired == {"v1": 2, "v2": 0}
    assert min(selected) >= 2
    entry = status["history"][-1]
    assert (entry["revision"], entry["outcome"], entry["reason"]) == ("v2", "RolledBack", "CandidateFailed")
    # The same spec again: nothing starts, v1 keeps serving.
    again = decide(revision="v2", bento="img:v2", rollout=Rollout(), replicas=2, previous=status,
                   seen=cluster.seen(), now=5000.0)
    assert again.rollout is None and again.replicas["v2"] == 0 and again.selects == "v1"
    # A new spec rolls out normally.
    cluster2 = cluster
    d, status, _ = drive(cluster2, "v3", Rollout(), status, start=6000.0)
    assert d.stable == "v3" and d.failed is None  # the spec moved on: v2 may be tried again later


def test_never_ready_revision_fails_at_the_progress_deadline():
    cluster, status = deployed()
    cluster.slow.add("v2")
    d, status, selected = drive(cluster, "v2", Rollout(progressDeadlineSeconds=30), status)
    assert d.failed == "v2" and status["history"][-1]["reason"] == "ProgressDeadlineExceeded"
    assert min(selected) >= 2


def test_canary_holds_each_step_until_analysis_passes_then_promotes():
    cluster, status = deployed(replicas=4)
    rollout = Rollout(strategy="Canary", steps=[{"weight": 25}, {"weight": 50}],
                      analysis={"minRequests": 10, "interval": "5s"})
    # No verdict (no data): the first step holds and never promotes.
    d, held, _ = drive(cluster, "v2", rollout, status, replicas=4, steps=10)
    assert d.rollout is not None and d.rollout["step"] == 0 and d.analyze == "v2"
    assert cluster.desired == {"v1": 3, "v2": 1}
    assert d.weight == 25
    # Passing verdicts: through both steps to the end.
    d, status, selected = drive(cluster, "v2", rollout, held, replicas=4, start=1100.0,
                                verdict=Verdict("pass", "AnalysisPassed", "ok"))
    assert d.stable == "v2" and cluster.desired["v2"] == 4


def test_canary_failing_analysis_rolls_back():
    cluster, status = deployed(replicas=4)
    rollout = Rollout(strategy="Canary", steps=[{"weight": 25}], analysis={"interval": "5s"})
    d, status, _ = drive(cluster, "v2", rollout, status, replicas=4,
                         verdict=Verdict("fail", "ErrorRateTooHigh", "error rate 30.0% > maxErrorRate 5.0%"))
    assert d.failed == "v2" and cluster.desired == {"v1": 4, "v2": 0}
    assert "error rate 30.0%" in status["history"][-1]["message"]


def test_no_analysis_data_fails_at_the_deadline_never_passes():
    cluster, status = deployed(replicas=4)
    rollout = Rollout(strategy="Canary", steps=[{"weight": 25}], analysis={"interval": "5s"},
                      progressDeadlineSeconds=60)
    d, status, _ = drive(cluster, "v2", rollout, status, replicas=4,
                         verdict=Verdict("inconclusive", "NotEnoughRequests", "0 requests < minRequests 20"))
    assert d.failed == "v2" and status["history"][-1]["reason"] == "AnalysisInconclusive"


def test_blue_green_switches_the_service_only_when_the_new_revision_is_ready():
    cluster, status = deployed()
    d, status, selected = drive(cluster, "v2", Rollout(strategy="BlueGreen"), status)
    assert d.stable == "v2" and d.selects == "v2"
    assert min(selected) >= 2


def test_abort_and_promote_act_on_the_rollout():
    cluster, status = deployed(replicas=4)
    rollout = Rollout(strategy="Canary", steps=[{"weight": 25, "pause": "1h"}])
    d, held, _ = drive(cluster, "v2", rollout, status, replicas=4, steps=5)
    assert d.rollout["step"] == 0
    d, aborted, _ = drive(cluster, "v2", rollout, held, replicas=4, start=2000.0, abort=True)
    assert d.failed == "v2" and aborted["history"][-1]["outcome"] == "Aborted"
    cluster2, status2 = deployed(replicas=4)
    d, held2, _ = drive(cluster2, "v2", rollout, status2, replicas=4, steps=5)
    d, done, _ = drive(cluster2, "v2", rollout, held2, replicas=4, start=2000.0, promote=True)
    assert d.stable == "v2" and cluster2.desired["v2"] == 4


def test_a_new_spec_mid_rollout_abandons_the_old_candidate_without_losing_capacity():
    cluster, status = deployed(replicas=3)
    cluster.slow.add("v2")
    d, mid, _ = drive(cluster, "v2", Rollout(), status, replicas=3, steps=3)
    assert d.rollout["revision"] == "v2"
    d, status, selected = drive(cluster, "v3", Rollout(), mid, replicas=3, start=2000.0)
    assert d.stable == "v3" and cluster.desired["v2"] == 0
    assert [h["outcome"] for h in status["history"] if h["revision"] == "v2"] == ["Abandoned"]  # never served: not a rollback target
    assert min(selected) >= 3


def test_history_is_bounded_and_deployments_out_of_it_are_deleted():
    cluster, status = deployed()
    for i in range(2, 6):
        d, status, _ = drive(cluster, f"v{i}", Rollout(revisionHistoryLimit=2), status, start=1000.0 * i)
    assert [h["revision"] for h in status["history"]] == ["v3", "v4", "v5"]
    assert set(cluster.desired) == {"v3", "v4", "v5"}
    assert [h["number"] for h in status["history"]] == [3, 4, 5]


def test_rolling_back_to_an_old_revision_gives_it_a_new_number():
    cluster, status = deployed()
    d, status, _ = drive(cluster, "v2", Rollout(), status)
    d, status, _ = drive(cluster, "v1", Rollout(), status, start=3000.0)
    assert d.stable == "v1"
    assert [(h["number"], h["revision"], h["outcome"]) for h in status["history"]] == [
        (2, "v2", "Superseded"), (3, "v1", "Serving")]


def test_while_the_bento_is_unknown_a_rollout_carries_on():
    cluster, status = deployed()
    d, mid, _ = drive(cluster, "v2", Rollout(), status, steps=1)
    d = decide(revision=None, bento="", rollout=Rollout(), replicas=2, previous=mid, seen=cluster.seen(), now=1010.0)
    assert d.rollout["revision"] == "v2"


def test_timestamps_round_trip():
    assert epoch(rfc3339(1234567.0)) == 1234567.0 and epoch(None) is None


@settings(max_examples=200, deadline=None)
@given(
    replicas=st.integers(1, 6),
    strategy=st.sampled_from(["RollingUpdate", "Canary", "BlueGreen"]),
    broken=st.booleans(),
    weights=st.lists(st.integers(1, 100), min_size=1, max_size=3, unique=True).map(sorted),
)
def test_every_rollout_ends_promoted_or_rolled_back_with_capacity_kept(replicas, strategy, broken, weights):
    cluster, status = deployed(replicas=replicas)
    if broken:
        cluster.broken.add("v2")
    rollout = Rollout(strategy=strategy, steps=[{"weight": w} for w in weights] if strategy == "Canary" else [])
    d, status, selected = drive(cluster, "v2", rollout, status, replicas=replicas, steps=200)
    assert d.rollout is None
    if broken:
        assert (d.stable, d.failed) == ("v1", "v2") and cluster.desired == {"v1": replicas, "v2": 0}
    else:
        assert d.stable == "v2" and cluster.desired == {"v1": 0, "v2": replicas}
    assert min(selected) >= replicas


def test_the_deadline_is_for_time_without_progress_not_the_whole_rollout():
    cluster, status = deployed(replicas=5)
    cluster.slow.add("v2")  # ready only when the test says so
    rollout = Rollout(progressDeadlineSeconds=30)
    now, d = 2000.0, None
    for i in range(60):  # a pod every 20 s: 100 s in all, each wait under 30 s
        d = decide(revision="v2", bento="img:v2", rollout=rollout, replicas=5, previous=status,
                   seen=cluster.seen(), now=now + 5 * i)
        cluster.apply(d)
        status = {k: v for k, v in {"stableRevision": d.stable, "rollout": d.rollout, "failedRevision": d.failed,
                                    "history": d.history}.items() if v is not None}
        if i % 4 == 3:
            cluster.ready["v2"] = min(cluster.ready.get("v2", 0) + 1, cluster.desired["v2"])
        for rev in cluster.desired:
            if rev != "v2":
                cluster.ready[rev] = cluster.desired[rev]
        if d.rollout is None:
            break
    assert d.stable == "v2" and d.failed is None


def test_a_spec_change_right_after_a_blue_green_switch_keeps_serving():
    cluster, status = deployed(replicas=2)
    # v2 took over and v1 was scaled down, but v2 is not promoted yet...
    cluster.desired.update(v1=0, v2=2)
    cluster.ready.update(v1=0, v2=2)
    status["rollout"] = {"revision": "v2", "number": 2, "strategy": "BlueGreen", "step": 0,
                         "since": rfc3339(900.0), "service": "candidate"}
    # ...when the spec changes again: v2's pods are the only ready ones.
    d = decide(revision="v3", bento="img:v3", rollout=Rollout(strategy="BlueGreen"), replicas=2, previous=status,
               seen=cluster.seen(), now=1000.0)
    assert d.selects is None and d.replicas["v2"] == 2


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=30),
    strategy=st.sampled_from(["RollingUpdate", "Canary", "BlueGreen"]),
    broken=st.booleans(),
)
def test_an_autoscaler_resizing_the_model_mid_rollout_keeps_capacity_and_the_outcome(sizes, strategy, broken):
    """The autoscaler changes the model's replica count at any pass; the
    rollout splits whatever it is. Ready pods behind the Service never drop
    below the smaller of the last two counts, and the rollout still ends."""
    cluster, status = deployed(replicas=sizes[0])
    if broken:
        cluster.broken.add("v2")
    rollout = Rollout(strategy=strategy, steps=[{"weight": 30}, {"weight": 60}] if strategy == "Canary" else [])
    previous, d = sizes[0], None
    for i in range(200):
        replicas = sizes[min(i, len(sizes) - 1)]
        d = decide(revision="v2", bento="img:v2", rollout=rollout, replicas=replicas, previous=status,
                   seen=cluster.seen(), now=1000.0 + 5 * i)
        cluster.apply(d)
        status = {k: v for k, v in {"stableRevision": d.stable, "rollout": d.rollout, "failedRevision": d.failed,
                                    "history": d.history}.items() if v is not None}
        ready = cluster.seen()
        selected = sum(s.ready for rev, s in ready.items() if d.selects in (None, rev))
        # The pods the Service had before this pass, and those ready now (scale-down is immediate here).
        assert selected >= min(previous, replicas) or i == 0, (i, previous, replicas, selected, d)
        previous = replicas
        cluster.tick()
        if d.rollout is None and i >= len(sizes):
            break
    assert d.rollout is None
    final = sizes[-1]
    if broken:
        assert (d.stable, cluster.desired["v1"], cluster.desired["v2"]) == ("v1", final, 0)
    else:
        assert (d.stable, cluster.desired["v2"]) == ("v2", final)
