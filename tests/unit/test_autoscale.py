"""kubento's own autoscaler decision (autoscale/decision.py): bounds, no
flapping under constant load, reaction to a load step, panic, rate limits."""

from __future__ import annotations

import math

from hypothesis import given, settings, strategies as st

from kubento.autoscale.decision import Memory, Policy, Rules, decide

TICK = 2.0


def run(policy, loads, replicas=1, ready_delay=2):
    """Feed one load value per tick; pods become ready ``ready_delay`` ticks
    after they are asked for. Returns the replicas decided at each tick."""
    memory, out, asked = Memory(), [], [(0, replicas)]
    for i, load in enumerate(loads):
        ready = next(n for t, n in reversed(asked) if t <= i - ready_delay) if i >= ready_delay else replicas
        d = decide(policy, memory, now=i * TICK, value=load, ready=min(ready, replicas), current=replicas)
        memory, replicas = d.memory, d.replicas
        asked.append((i, replicas))
        out.append(replicas)
    return out


def test_no_data_keeps_the_count():
    d = decide(Policy(target=10, min_replicas=1, max_replicas=5), Memory(), now=0, value=None, ready=2, current=3)
    assert (d.replicas, d.reason) == (3, "NoData")


def test_constant_load_settles_on_load_over_target_and_stays():
    out = run(Policy(target=10, min_replicas=1, max_replicas=20), [45.0] * 120)
    assert out[-1] == 5
    assert len(set(out[60:])) == 1  # no flapping once settled


def test_a_load_step_triggers_panic_within_the_panic_window():
    policy = Policy(target=10, min_replicas=1, max_replicas=20)
    out = run(policy, [5.0] * 40 + [80.0] * 20)
    first_up = next(i for i, n in enumerate(out) if i >= 40 and n > 1)
    assert first_up - 40 <= math.ceil(policy.panic_window / TICK)
    assert max(out) == 8  # 80 in flight / 10 per replica


def test_scale_down_waits_for_the_window_and_stabilisation():
    policy = Policy(target=10, min_replicas=1, max_replicas=20)
    out = run(policy, [80.0] * 40 + [0.0] * 80)
    peak = out[39]
    assert peak == 8
    # The load stopped at tick 40: nothing goes before the panic mode and the
    # 30 s stabilisation are over, and everything is gone after the window.
    assert out[40 + int(30 / TICK) - 1] == peak
    assert out[-1] == 1


def test_rate_limits_cap_each_period():
    policy = Policy(target=1, min_replicas=1, max_replicas=100, up=Rules(0, percent=100, pods=None, period=10))
    d = decide(policy, Memory(), now=0, value=50.0, ready=2, current=2)
    assert (d.replicas, d.reason) == (4, "RateLimited")  # +100% of 2


@settings(max_examples=300, deadline=None)
@given(
    loads=st.lists(st.floats(0, 500, allow_nan=False), min_size=1, max_size=80),
    lo=st.integers(1, 5),
    span=st.integers(0, 20),
    target=st.integers(1, 50),
)
def test_never_outside_min_and_max(loads, lo, span, target):
    policy = Policy(target=target, min_replicas=lo, max_replicas=lo + span)
    assert all(lo <= n <= lo + span for n in run(policy, loads, replicas=lo))


@settings(max_examples=200, deadline=None)
@given(load=st.floats(0, 300, allow_nan=False), target=st.integers(1, 30))
def test_any_constant_load_settles_without_oscillating(load, target):
    policy = Policy(target=target, min_replicas=1, max_replicas=50)
    out = run(policy, [load] * 150)
    assert len(set(out[-40:])) == 1
    assert out[-1] == min(max(math.ceil(load / target - 1e-9), 1), 50)


def test_load_hovering_at_a_multiple_of_the_target_does_not_flap():
    policy = Policy(target=10, min_replicas=1, max_replicas=20)
    loads = [50.0 + (6 if (i // 15) % 2 else -6) for i in range(300)]  # 44..56 in 30 s swings
    out = run(policy, loads)
    changes = sum(1 for a, b in zip(out[60:], out[61:]) if a != b)
    assert changes <= 2, out[60:]


def test_a_restarted_operator_does_not_scale_down_before_its_window_is_full():
    policy = Policy(target=10, min_replicas=1, max_replicas=20)
    d = decide(policy, Memory(), now=1000.0, value=3.0, ready=8, current=8)
    assert d.replicas == 8
    for i in range(1, 30):  # 58 s: the window is not full
        d = decide(policy, d.memory, now=1000.0 + 2 * i, value=3.0, ready=8, current=d.replicas)
        assert d.replicas == 8
    for i in range(30, 60):  # then the 30 s scale-down stabilisation
        d = decide(policy, d.memory, now=1000.0 + 2 * i, value=3.0, ready=8, current=d.replicas)
    assert d.replicas < 8


def test_rps_ignores_a_pod_whose_counter_went_down_and_counts_busy_pods_as_loaded():
    from kubento.controller import autoscaler
    from kubento.controller.memory import AutoscalerMemory
    from kubento.rollout.analysis import Sample

    key = AutoscalerMemory()
    assert autoscaler._value(key, "rps", {"a": Sample(requests=1000), "b": Sample(requests=50)}, 2, 0.0) is None
    # 2 s later: pod a served 100 more; pod b restarted (its counter went down): not a burst.
    value = autoscaler._value(key, "rps", {"a": Sample(requests=1100), "b": Sample(requests=10)}, 2, 2.0)
    assert value == 50.0 * 2  # 50 rps per answering pod, times 2 ready pods
    # Three pods ready, one too busy to answer /metrics: it still carries load.
    value = autoscaler._value(key, "concurrency", {"a": Sample(in_progress=4), "b": Sample(in_progress=2)}, 3, 4.0)
    assert value == 9.0


def test_behavior_with_only_a_stabilisation_window_keeps_the_default_steps():
    from kubento.api.v1alpha1 import Autoscaling
    from kubento.controller.autoscaler import policy

    p = policy(Autoscaling(maxReplicas=10, metric="rps", behavior={"scaleUp": {"stabilizationWindowSeconds": 5}}))
    assert (p.up.stabilization, p.up.percent, p.up.pods) == (5.0, 100.0, 4)
    p = policy(Autoscaling(maxReplicas=10, metric="rps", behavior={"scaleUp": {"pods": 2}}))
    assert (p.up.percent, p.up.pods) == (None, 2)
