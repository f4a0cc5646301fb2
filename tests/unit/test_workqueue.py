"""The keyed work queue: merging, one worker per key, timers, backoff."""

from __future__ import annotations

import threading
import time

from hypothesis import given, settings, strategies as st

from kubento.controller.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_repeated_adds_merge_and_a_key_in_work_is_never_handed_out_twice():
    q = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert q.depth() == 2
    assert q.get(0) == "a"
    q.add("a")  # an event while a worker has it: queued again after done, not now
    assert q.get(0) == "b"
    assert q.get(0) is None
    q.done("a")
    assert q.get(0) == "a"
    q.done("a")
    q.done("b")
    assert q.get(0) is None


def test_add_after_keeps_the_earliest_time_and_an_add_wins():
    clock = Clock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 30)
    q.add_after("a", 10)
    q.add_after("a", 20)
    assert q.scheduled() == 1
    clock.t = 9.9
    assert q.get(0) is None
    clock.t = 10.0
    assert q.get(0) == "a"
    q.done("a")
    clock.t = 40
    assert q.get(0) is None  # the later timers were superseded
    q.add_after("b", 5)
    q.add("b")
    assert q.get(0) == "b" and q.scheduled() == 0


def test_failures_back_off_exponentially_up_to_a_cap_and_success_resets():
    clock = Clock()
    q = WorkQueue(clock=clock, backoff_base=1, backoff_cap=8)
    delays = []
    for _ in range(6):
        delays.append(q.failed("a"))
        clock.t += delays[-1]
        assert q.get(0) == "a"
        q.done("a")
    assert delays == [1, 2, 4, 8, 8, 8]
    q.succeeded("a")
    assert q.failed("a") == 1


def test_a_blocked_worker_wakes_for_a_timer():
    q = WorkQueue()
    q.add_after("a", 0.2)
    start = time.monotonic()
    assert q.get(2) == "a"
    assert 0.15 < time.monotonic() - start < 1.5


@settings(max_examples=15, deadline=None)
@given(keys=st.lists(st.sampled_from("abcdef"), min_size=1, max_size=60))
def test_workers_never_process_one_key_at_once_and_every_add_is_served(keys):
    q = WorkQueue()
    busy: set[str] = set()
    guard = threading.Lock()
    seen: list[str] = []
    clash = []

    def worker():
        while (key := q.get(0.2)) is not None:
            with guard:
                if key in busy:
                    clash.append(key)
                busy.add(key)
            time.sleep(0.001)
            with guard:
                busy.discard(key)
                seen.append(key)
            q.done(key)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for k in keys:
        q.add(k)
    for t in threads:
        t.join()
    assert not clash
    assert set(seen) == set(keys)  # every key added was processed at least once after its last add
