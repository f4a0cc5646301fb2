"""A worker's turn (kubento.controller.operator.Operator.work_one) without
a process, kopf or an API server: the pass is a function of the test's."""

from __future__ import annotations

from kubento.controller.config import Config
from kubento.controller.operator import Operator
from kubento.controller.reconcile import Outcome

KEY = ("ns", "iris")


class Passes:
    """Stands for reconcile: returns the outcomes given, records the calls."""

    def __init__(self, *outcomes):
        self.outcomes, self.calls = list(outcomes), []

    def __call__(self, key, services, memory, verify=False):
        self.calls.append((key, verify))
        out = self.outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out


def leading(*outcomes) -> tuple[Operator, Passes]:
    passes = Passes(*outcomes)
    op = Operator(Config(workers=1), run_pass=passes)
    op.started_leading()
    op.queue.add(KEY)
    return op, passes


def test_a_pass_that_wrote_runs_once_more_then_its_timer_holds():
    op, passes = leading(Outcome(writes=2, requeue_after=None), Outcome(writes=0, requeue_after=30.0))
    assert op.work_one(timeout=0.1) and passes.calls == [(KEY, False)]
    assert op.queue.depth() == 1  # once more, on what it wrote
    assert op.work_one(timeout=0.1)
    assert op.queue.depth() == 0 and op.queue.scheduled() == 1  # back in 30 s
    assert not op.work_one(timeout=0.1)  # nothing due


def test_a_failing_pass_backs_off_and_the_worker_lives_on():
    op, passes = leading(RuntimeError("the API server said no"))
    assert op.work_one(timeout=0.1)
    assert op.queue.depth() == 0 and op.queue.scheduled() == 1  # retried after a backoff, not at once
    assert op.progress.passes() == {}  # the liveness probe sees no pass under way


def test_a_deleted_model_is_forgotten():
    op, _ = leading(Outcome(writes=0, requeue_after=None, deleted=True))
    op.memory.get(KEY).write_streak = 3
    op.work_one(timeout=0.1)
    assert len(op.memory) == 0 and op.queue.scheduled() == 0


def test_passes_that_keep_writing_are_slowed_down():
    op, passes = leading(*[Outcome(writes=1, requeue_after=None)] * 12)
    for _ in range(11):
        op.work_one(timeout=0.1)
    assert op.queue.depth() == 0 and op.queue.scheduled() == 1  # the 11th pass in a row that wrote waits


def test_a_standby_runs_no_pass_and_keeps_the_key():
    op, passes = leading(Outcome(writes=0, requeue_after=None))
    op.stopped_leading()
    assert not op.work_one(timeout=0.1) and passes.calls == []
    op.started_leading()
    assert op.work_one(timeout=0.1) and passes.calls == [(KEY, False)]


def test_no_pass_while_a_watch_relists():
    op, passes = leading(Outcome(writes=0, requeue_after=None))
    op.watches.started(("apps", "deployments", None))  # a stream is between an end and its next listing
    assert not op.work_one(timeout=0.1) and passes.calls == []
    op.watches.listed(("apps", "deployments", None))
    assert op.work_one(timeout=0.1) and passes.calls


def test_a_new_leader_verifies_each_model_once_with_election():
    op, passes = leading(Outcome(writes=0, requeue_after=None), Outcome(writes=0, requeue_after=None))
    op.elector = object()  # elected (no Lease needed for the loop)
    op.work_one(timeout=0.1)
    op.queue.add(KEY)
    op.work_one(timeout=0.1)
    assert passes.calls == [(KEY, True), (KEY, False)]


def test_config_from_the_charts_environment_and_arguments():
    env = {"KUBENTO_WORKERS": "4", "KUBENTO_RESYNC_SECONDS": "60", "KUBENTO_PACKAGE_INDEX": '{"url": "https://pypi.example/simple"}',
           "KUBENTO_RUNTIME_IMAGE": "registry.example/runtime:1"}
    config = Config.from_env(env, workers=2)
    assert (config.workers, config.resync_seconds, config.runtime_image) == (2, 60.0, "registry.example/runtime:1")
    assert config.package_index == {"url": "https://pypi.example/simple"}
    assert Config.from_env({"KUBENTO_PACKAGE_INDEX": "not json"}).package_index is None


def test_after_a_status_refused_as_stale_the_next_pass_reads_the_model():
    # The watch should bring the newer version; if it lags or stalls, the pass reads it (once per conflict).
    op, passes = leading(Outcome(writes=0, requeue_after=1.0, conflict=True), Outcome(writes=1, requeue_after=None),
                         Outcome(writes=0, requeue_after=None))
    for _ in range(3):
        op.queue.add(KEY)
        op.work_one(timeout=0.1)
    assert passes.calls == [(KEY, False), (KEY, True), (KEY, False)]
