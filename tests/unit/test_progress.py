"""The liveness probe's judgement (kubento.controller.progress): pure."""

from hypothesis import given
from hypothesis import strategies as st

from kubento.controller.progress import Progress, stalled


def test_no_pass_under_way_is_progress():
    assert stalled({}, [], now=1000.0, limit=180) is None


def test_a_pass_over_the_limit_names_the_worker_and_the_model():
    passes = {"kubento-worker-0": (("team-a", "iris"), 100.0), "kubento-worker-1": (("team-b", "fraud"), 950.0)}
    why = stalled(passes, [], now=1000.0, limit=180)
    assert why == "kubento-worker-0 has been in one pass over team-a/iris for 900s (limit 180s)"


def test_several_stuck_workers_are_counted():
    passes = {f"kubento-worker-{i}": (("ns", f"m{i}"), float(i)) for i in range(3)}
    assert stalled(passes, [], now=500.0, limit=10).endswith("(limit 10s) (2 more workers stuck)")


def test_a_dead_worker_thread_fails_the_probe_at_once():
    assert stalled({}, ["kubento-worker-3"], now=0.0, limit=180) == "worker threads stopped: kubento-worker-3"


@given(st.dictionaries(st.text(min_size=1), st.floats(0, 1000)), st.floats(0, 1000), st.floats(1, 500))
def test_stalled_exactly_when_some_pass_is_older_than_the_limit(starts, now, limit):
    passes = {w: (("ns", w), since) for w, since in starts.items()}
    assert (stalled(passes, [], now + 1000, limit) is not None) == any(now + 1000 - s > limit for s in starts.values())


def test_progress_keeps_each_workers_pass_until_it_ends():
    clock = iter([1.0, 2.0, 3.0]).__next__
    p = Progress(clock=clock)
    p.began(("ns", "a"))
    assert list(p.passes().values()) == [(("ns", "a"), 1.0)]
    p.ended()
    assert p.passes() == {}
