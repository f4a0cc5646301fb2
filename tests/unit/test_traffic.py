"""Gateway mode's decisions (kubento.rollout.traffic and each strategy's
routed steps), step by step and as whole rollouts against a toy cluster and
a toy data plane: the route kubento asks for reaches the data plane a few
ticks later (its status then says so), new pods are ready a tick or more
after they are asked for.

What must hold whatever the timing: the data plane never sends a request
(or a mirrored copy) to a revision whose pods were removed, nor a share to a
revision without a ready pod while the other has some; a canary step holds
exactly its weight on the route with pods_for(weight) candidate pods beside
every stable replica; rollouts end Promoted (the route all on the new
revision, the old one at zero) or RolledBack (all on stable, the candidate
at zero)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import pytest
from hypothesis import given, settings, strategies as st

from kubento.api.traffic import MirrorCheck
from kubento.api.v1alpha1 import ModelDeploymentStatus, Rollout
from kubento.rollout.analysis import Verdict
from kubento.rollout.revisions import Seen, decide
from kubento.rollout.strategy import Observed, Revision, Step, plan
from kubento.rollout.traffic import Route, RouteSeen, hold, pods_for, route, safe

# ---------------------------------------------------------------- the parts


@pytest.mark.parametrize("replicas,percent,pods", [
    (1, 10, 1), (1, 50, 1), (1, 100, 1), (2, 10, 1), (2, 25, 1), (2, 50, 1), (2, 51, 2),
    (4, 10, 1), (4, 25, 1), (4, 26, 2), (4, 50, 2), (10, 33, 4), (3, 0, 0), (0, 50, 0), (5, 100, 5),
])
def test_a_share_of_requests_needs_ceil_of_that_share_of_the_replicas(replicas, percent, pods):
    assert pods_for(replicas, percent) == pods


@given(st.integers(1, 1000), st.integers(1, 100))
def test_pods_for_a_share_carry_at_least_that_share(replicas, percent):
    pods = pods_for(replicas, percent)
    assert 1 <= pods <= replicas
    assert pods * 100 >= percent * replicas  # enough pods for the share, at the stable pods' rate
    assert (pods - 1) * 100 < percent * replicas or pods == 1


def test_a_revision_the_route_still_sends_to_keeps_its_pods():
    seen = RouteSeen({"a": 90, "b": 10}, acked=True, exists=True)
    assert hold({"a": 2, "b": 0}, {"a": 2, "b": 1}, seen) == ({"a": 2, "b": 1}, ["b"])
    # The route sends it nothing, and every Gateway has seen that: it goes.
    assert hold({"a": 2, "b": 0}, {"a": 2, "b": 1}, RouteSeen({"a": 100}, acked=True, exists=True))[1] == []
    # Not acknowledged yet: a Gateway may still route by the version that named it.
    assert hold({"a": 2, "b": 0}, {"a": 2, "b": 1}, RouteSeen({"a": 100}, acked=False, exists=True))[1] == ["b"]
    # Mirrored copies count.
    assert hold({"a": 2, "b": 0}, {"a": 2, "b": 1}, RouteSeen({"a": 100}, ("b", 50), True, True))[1] == ["b"]


@given(st.dictionaries(st.sampled_from("abcd"), st.integers(0, 100), min_size=1),
       st.dictionaries(st.sampled_from("abcd"), st.integers(0, 3)))
def test_safe_weights_sum_to_100_on_revisions_with_ready_pods(weights, ready):
    total = sum(weights.values())
    if total == 0:
        return
    scaled = {k: 100 * w // total for k, w in weights.items()}
    first = sorted(scaled)[0]
    scaled[first] += 100 - sum(scaled.values())
    out = safe(scaled, ready)
    assert all(w > 0 for w in out.values())
    if any(ready.get(k, 0) for k, w in scaled.items() if w > 0):
        assert sum(out.values()) == 100 and all(ready.get(k, 0) > 0 for k in out)
    else:
        assert out == {k: w for k, w in scaled.items() if w > 0}


def test_the_route_names_every_running_revision_and_the_candidate_once_ready():
    r = route({"s": 90, "c": 10}, {"s": 2, "c": 1, "old": 1, "gone": 0}, {"s": 2, "c": 1, "old": 1},
              stable="s", candidate="c")
    assert r == Route(weights=(("s", 90), ("c", 10)), stable="s", candidate="c", revisions=("s", "c", "old"))
    assert set(r.backends) == {"s", "c", "old"}
    waiting = route({"s": 100}, {"s": 2, "c": 1}, {"s": 2, "c": 0}, stable="s", candidate="c", mirror=50, probe=True)
    assert (waiting.candidate, waiting.mirror, waiting.probe) == (None, None, None)  # no ready pod: no rule to it
    shadow = route({"s": 100}, {"s": 2, "c": 1}, {"s": 2, "c": 1}, stable="s", candidate="c", mirror=50)
    assert shadow.mirror == ("c", 50)


# ------------------------------------------------------------ single steps


def routed(**kw) -> Observed:
    base = dict(strategy="Canary", replicas=4, stable=Revision(4, 4), candidate=Revision(0, 0), now=100.0,
                since=100.0, deadline=600.0, steps=(Step(10, 60.0), Step(50, 60.0)), gateway=True)
    base.update(kw)
    return Observed(**base)


def test_a_routed_canary_step_runs_pods_for_its_share_then_moves_the_route():
    o = routed()
    p = plan(o)
    assert (p.stable, p.candidate, p.route, p.reason) == (4, 1, 0, "CanaryStep")
    p = plan(replace(o, candidate=Revision(1, 1)))
    assert (p.stable, p.candidate, p.route, p.step_reached) == (4, 1, 10, None)  # the route takes the weight first
    assert "the route is taking" in p.message
    p = plan(replace(o, candidate=Revision(1, 1), route=10, acked=False))
    assert p.step_reached is None  # not every Gateway has it yet
    p = plan(replace(o, candidate=Revision(1, 1), route=10))
    assert (p.outcome, p.reason, p.weight, p.requested, p.step_reached) == ("Paused", "CanaryPaused", 10, 10, 100.0)
    # Next step: its pods first, the route keeps the step before meanwhile.
    p = plan(replace(o, candidate=Revision(1, 1), route=10, step_reached=100.0, now=161.0))
    assert (p.step, p.candidate, p.route, p.stable) == (1, 2, 10, 4)


@pytest.mark.parametrize("replicas", [1, 2, 4])
@pytest.mark.parametrize("weight", [10, 25, 50])
def test_one_replica_at_ten_percent_is_ten_percent_of_requests(replicas, weight):
    o = routed(replicas=replicas, stable=Revision(replicas, replicas), steps=(Step(weight, 60.0),))
    want = pods_for(replicas, weight)
    p = plan(replace(o, candidate=Revision(want, want), route=weight))
    assert (p.reason, p.stable, p.candidate, p.weight) == ("CanaryPaused", replicas, want, weight)


def test_a_shadow_step_probes_then_mirrors_and_fails_where_the_gateway_cannot():
    o = routed(replicas=2, stable=Revision(2, 2), steps=(Step(0, 30.0, mirror=100), Step(50)))
    p = plan(o)
    assert (p.candidate, p.route, p.mirror) == (2, 0, 0)  # pods for all the mirrored requests
    o = replace(o, candidate=Revision(2, 2))
    p = plan(o)
    assert (p.probe, p.mirror, p.route) == (True, 0, 0) and "checking" in p.message
    p = plan(replace(o, mirror_probed=True))
    assert (p.probe, p.mirror, p.route, p.step_reached) == (False, 100, 0, None)
    p = plan(replace(o, mirror_probed=True, mirror=100))
    assert (p.reason, p.mirror, p.requested) == ("CanaryPaused", 100, 0)
    p = plan(replace(o, mirror_probed=True, mirror_failure="Gateway g/w answers HTTP 500 to a RequestMirror rule"))
    assert (p.reason, p.rollback, p.mirror) == ("MirrorNotSupported", "MirrorNotSupported", 0)
    p = plan(replace(o, mirror_probed=True, mirror_failure="no", auto_rollback=False, mirror=0))
    assert (p.outcome, p.mirror) == ("Failed", 0)


def test_a_routed_rollback_moves_the_route_back_before_anything_else():
    o = routed(candidate=Revision(1, 1, "crash-looping"), route=10, step_reached=100.0)
    p = plan(o)
    assert (p.outcome, p.route, p.candidate, p.stable) == ("Progressing", 0, 1, 4)
    assert "moving the route's requests back" in p.message
    p = plan(replace(o, route=0, acked=False))
    assert p.outcome == "Progressing" and p.candidate == 1
    p = plan(replace(o, route=0))
    assert (p.outcome, p.candidate, p.route) == ("RolledBack", 0, 0)


def test_routed_blue_green_switches_the_route_and_keeps_the_old_pods_until_it_has():
    o = routed(strategy="BlueGreen", replicas=2, stable=Revision(2, 2), steps=())
    assert (plan(o).candidate, plan(o).route) == (2, 0)
    p = plan(replace(o, candidate=Revision(2, 2)))
    assert (p.service, p.route, p.reason) == ("candidate", 100, "Switching")
    o = replace(o, candidate=Revision(2, 2), service="candidate", scale_down_delay=0.0)
    p = plan(replace(o, route=100, acked=False))
    assert (p.stable, p.route) == (2, 100) and "moving every request" in p.message
    assert plan(replace(o, route=100)).stable == 0


def test_blue_green_has_no_preview_service_in_gateway_mode():
    from kubento.api.v1alpha1 import ModelDeploymentSpec
    from kubento.builders.meta import Owner
    from kubento.rollout import strategy

    spec = ModelDeploymentSpec.model_validate({"bento": {"image": "r/iris:1"}, "rollout": {"strategy": "BlueGreen"},
                                               "traffic": {"gateway": {"parentRefs": [{"name": "gw"}]}}})
    assert strategy.of("BlueGreen").children(spec, Owner("iris", "ns", "u"), "abc") == []


# ------------------------------------------------ whole rollouts, timed


@dataclass
class DataPlane:
    """The route as kubento applied it and as the Gateways route by it (a few ticks behind)."""

    applied: Optional[Route] = None
    live: Optional[Route] = None  # what requests follow
    due: int = 0  # ticks until ``applied`` reaches the Gateways

    def seen(self) -> RouteSeen:
        if self.applied is None:
            return RouteSeen()
        return RouteSeen(dict(self.applied.weights), self.applied.mirror, self.live == self.applied, True)

    def sends_to(self) -> set[str]:
        live = self.live
        if live is None:
            return set()
        return {rev for rev, w in live.weights if w > 0} | ({live.mirror[0]} if live.mirror else set())


@dataclass
class World:
    seen: dict[str, Seen]
    status: ModelDeploymentStatus
    plane: DataPlane = field(default_factory=DataPlane)


def simulate(strategy: str, replicas: int, steps: list[dict], *, broken: bool = False, lags: list[int],
             ready_after: list[int], mirrors: Optional[bool] = True, verdict: Optional[str] = None,
             abort_at: Optional[int] = None, revert_at: Optional[int] = None, max_ticks: int = 300):
    rollout = Rollout.model_validate({"strategy": strategy, "steps": steps, "progressDeadlineSeconds": 120,
                                      "scaleDownDelaySeconds": 2, **({"analysis": {}} if verdict else {})})
    w = World({"v1": Seen(replicas, replicas, replicas)},
              ModelDeploymentStatus(stable_revision="v1"))
    w.plane.applied = w.plane.live = Route((("v1", 100),), stable="v1", revisions=("v1",))
    lag_i = ready_i = 0
    starting: dict[str, int] = {}  # revision -> ticks until its new pods are ready
    check = None
    weights_at_steps: list[tuple[int, int, int, int]] = []
    for tick in range(max_ticks):
        now = 1000.0 + tick
        state = w.status.rollout
        abort = abort_at is not None and tick >= abort_at and state is not None
        v = Verdict(verdict, "ErrorRateTooHigh", "error rate 30% > 5%") if verdict and state and state.step_reached else None
        revision = "v1" if revert_at is not None and tick >= revert_at else "v2"
        d = decide(revision=revision, bento="b", rollout=rollout, replicas=replicas, previous=w.status, seen=w.seen,
                   now=now, verdict=v, abort=abort, route=w.plane.seen(), mirror_check=check)
        # The data plane before this pass's writes: nothing it sends to may lose its pods now.
        for rev, n in d.replicas.items():
            if rev in w.plane.sends_to():
                assert n > 0, (tick, rev, d.replicas, w.plane)
        w.status = w.status.model_copy(update={"stable_revision": d.stable, "rollout": d.rollout,
                                               "failed_revision": d.failed, "history": d.history})
        if d.plan is not None and d.plan.reason == "CanaryPaused":
            weights_at_steps.append((d.plan.step, d.plan.requested, dict(w.plane.live.weights).get("v2", 0),
                                     w.seen["v2"].desired))
        # Apply: scale (down at once, up later), the route (reaches the Gateways after a lag).
        for rev, n in d.replicas.items():
            s = w.seen.get(rev, Seen(0, 0, 0))
            ready = min(s.ready, n)
            if n > s.desired:
                starting[rev] = ready_after[ready_i % len(ready_after)]
                ready_i += 1
            w.seen[rev] = Seen(n, ready, max(n, ready))
        if d.route is not None and d.route != w.plane.applied:
            w.plane.applied, w.plane.due = d.route, lags[lag_i % len(lags)]
            lag_i += 1
        # A mirror probe answers once the probe rule is on the Gateways.
        live = w.plane.live
        if live is not None and live.probe and check is None and w.plane.seen().acked:
            check = MirrorCheck(revision="v2", supported="True" if mirrors else "False",
                                message="" if mirrors else "Gateway answers HTTP 500 through a RequestMirror rule")
        if d.rollout is None and tick > 0 and w.plane.seen().acked \
                and all(n == 0 or rev == d.stable for rev, n in d.replicas.items()):
            return d, w, weights_at_steps
        # Time passes: the route reaches the Gateways, pods become ready.
        if w.plane.due <= 0:
            w.plane.live = w.plane.applied
        w.plane.due -= 1
        for rev, s in list(w.seen.items()):
            if rev in starting:
                starting[rev] -= 1
                if starting[rev] > 0:
                    continue
                del starting[rev]
            bad = broken and rev == "v2"
            w.seen[rev] = Seen(s.desired, 0 if bad else s.desired, s.desired,
                               "crash-looping" if bad and s.desired else "")
        # Requests follow the live route: never a share to a revision without a ready pod (while another has).
        live = w.plane.live
        with_pods = [rev for rev, _ in live.weights if w.seen.get(rev, Seen(0, 0)).ready > 0]
        if with_pods and not broken:
            assert all(w.seen.get(rev, Seen(0, 0)).ready > 0 for rev, _ in live.weights), (tick, live, w.seen)
    raise AssertionError(f"no end after {max_ticks} ticks: {w.status}")


STEPS = st.lists(st.integers(1, 99), min_size=1, max_size=3, unique=True).map(
    lambda ws: [{"weight": w, "pause": "1s"} for w in sorted(ws)])
LAGS = st.lists(st.integers(0, 3), min_size=1, max_size=5)
READY = st.lists(st.integers(1, 3), min_size=1, max_size=5)


def final_route(w: World) -> dict[str, int]:
    return dict(w.plane.live.weights)


@settings(max_examples=150, deadline=None)
@given(strategy=st.sampled_from(["RollingUpdate", "Canary", "BlueGreen"]), replicas=st.integers(1, 6), steps=STEPS,
       lags=LAGS, ready=READY)
def test_healthy_routed_rollouts_end_promoted_with_the_route_all_on_the_new_revision(strategy, replicas, steps, lags,
                                                                                      ready):
    d, w, held = simulate(strategy, replicas, steps if strategy == "Canary" else [], lags=lags, ready_after=ready)
    assert d.stable == "v2" and final_route(w) == {"v2": 100}
    assert w.seen["v1"].desired == 0 and w.seen["v2"].desired == replicas
    for step, requested, on_route, pods in held:  # every held step: exactly its weight, pods for that share
        assert on_route == requested and pods == pods_for(replicas, requested), (step, requested, on_route, pods)


@settings(max_examples=150, deadline=None)
@given(strategy=st.sampled_from(["RollingUpdate", "Canary", "BlueGreen"]), replicas=st.integers(1, 6), steps=STEPS,
       lags=LAGS, ready=READY)
def test_broken_routed_rollouts_end_rolled_back_with_the_route_all_on_stable(strategy, replicas, steps, lags, ready):
    d, w, _ = simulate(strategy, replicas, steps if strategy == "Canary" else [], broken=True, lags=lags,
                       ready_after=ready)
    assert d.stable == "v1" and d.failed == "v2" and final_route(w) == {"v1": 100}
    assert w.seen["v2"].desired == 0 and w.seen["v1"].desired == replicas


@settings(max_examples=100, deadline=None)
@given(replicas=st.integers(1, 6), steps=STEPS, lags=LAGS, ready=READY, at=st.integers(0, 30),
       verdict=st.sampled_from([None, "fail"]))
def test_aborted_or_failing_canaries_move_the_route_back_first(replicas, steps, lags, ready, at, verdict):
    d, w, _ = simulate("Canary", replicas, steps, lags=lags, ready_after=ready, abort_at=None if verdict else at,
                       verdict=verdict)
    if d.stable == "v2":  # promoted before the abort came
        assert verdict is None
        return
    assert final_route(w) == {"v1": 100} and w.seen["v2"].desired == 0


@settings(max_examples=60, deadline=None)
@given(replicas=st.integers(1, 6), lags=LAGS, ready=READY, mirrors=st.booleans())
def test_a_shadow_step_mirrors_only_where_the_probe_passed(replicas, lags, ready, mirrors):
    steps = [{"weight": 0, "mirror": 50, "pause": "2s"}, {"weight": 50, "pause": "1s"}]
    d, w, held = simulate("Canary", replicas, steps, lags=lags, ready_after=ready, mirrors=mirrors)
    if mirrors:
        assert d.stable == "v2" and held and held[0][:3] == (0, 0, 0)
        assert held[0][3] == pods_for(replicas, 50)
    else:
        entry = next(h for h in d.history if h.revision == "v2")
        assert d.stable == "v1" and (entry.outcome, entry.reason) == ("RolledBack", "MirrorNotSupported")
        assert final_route(w) == {"v1": 100}


@settings(max_examples=100, deadline=None)
@given(strategy=st.sampled_from(["RollingUpdate", "Canary", "BlueGreen"]), replicas=st.integers(1, 6), steps=STEPS,
       lags=LAGS, ready=READY, at=st.integers(1, 30))
def test_a_spec_reverted_mid_rollout_keeps_the_abandoned_pods_until_the_route_left_them(strategy, replicas, steps,
                                                                                      lags, ready, at):
    """The spec goes back to v1 while v2 rolls out: the rollout is abandoned, and
    v2 keeps its pods until the route (all on v1 again) has reached every Gateway."""
    d, w, _ = simulate(strategy, replicas, steps if strategy == "Canary" else [], lags=lags, ready_after=ready,
                       revert_at=at)
    if d.stable == "v2":
        return  # promoted before the revert: v1 is a new rollout (not simulated here)
    assert final_route(w) == {"v1": 100} and w.seen["v2"].desired == 0
