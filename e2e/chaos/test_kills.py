"""SIGKILL the operator 20 times at random moments while 100
ModelDeployments churn (created, spec changed, resized, rolled out, rolled
back, deleted). The operator runs as the chart runs it (leader election on
a Lease, the chart's namespaced RBAC); after each kill it is started again
at once, as the kubelet restarts a container, and waits for the dead
process's Lease to expire before it leads.

Afterwards every model's children and status match its spec, nothing is
orphaned, no spec change was lost and no revision exists twice
(e2e/chaos/checks.py). Figures are printed (``-s``).

KUBENTO_CHAOS_MODELS and KUBENTO_CHAOS_KILLS change the sizes (100, 20).
"""

from __future__ import annotations

import os
import random
import signal
import time

from e2e.chaos.checks import problems
from e2e.chaos.churn import Churn
from e2e.chaos.conftest import NAMESPACE
from e2e.chaos.invariants import Invariants
from tests.controlplane import DeploymentController
from tests.helpers import wait_for

MODELS = int(os.environ.get("KUBENTO_CHAOS_MODELS", "100"))
KILLS = int(os.environ.get("KUBENTO_CHAOS_KILLS", "20"))
VERBOSE = bool(os.environ.get("KUBENTO_CHAOS_VERBOSE"))
SEED = int(os.environ.get("KUBENTO_CHAOS_SEED", str(int(time.time()))))


def converge(chaos, churn, timeout: float = 300) -> tuple[float, list[str]]:
    """Seconds until nothing is left wrong (or the timeout), and what is left."""
    start = time.monotonic()
    left: list[str] = ["not checked yet"]
    shown = 0.0
    while time.monotonic() - start < timeout:
        try:
            left = problems(chaos.admin, NAMESPACE, churn.written)
        except Exception as exc:  # noqa: BLE001 - the API server may still be coming back
            left = [f"could not list: {exc}"]
        if not left:
            break
        if VERBOSE and time.monotonic() - shown > 10:
            shown = time.monotonic()
            print(f"  after {shown - start:.0f}s, {len(left)} wrong, e.g.: " + "; ".join(left[:5]))
        time.sleep(1.0)
    return time.monotonic() - start, left


def test_operator_sigkilled_at_random_moments_while_models_churn(chaos):
    rnd = random.Random(SEED)
    deployments = DeploymentController(chaos.admin, NAMESPACE, delay=(0.2, 2.0)).start()
    churn = Churn(chaos.admin, NAMESPACE, MODELS, SEED)
    churn.create_all()
    invariants = Invariants(chaos.admin, NAMESPACE).start()
    op = chaos.operator()
    churn.start(rate=3.0)
    kills = {"leading": 0, "starting": 0}
    start = time.monotonic()
    for i in range(KILLS):
        op.start()
        if rnd.random() < 0.25:
            time.sleep(rnd.uniform(0.2, 5.0))  # starting, listing, or waiting for the dead one's Lease
        else:
            wait_for("the operator to lead", op.leading, timeout=60, interval=0.1)
            time.sleep(rnd.uniform(0.0, 6.0))
        assert op.alive, f"the operator exited on its own (exit codes {op.exits}):\n{chaos.log_tail()}"
        kills["leading" if op.leading() else "starting"] += 1
        op.kill()
    churn.stop()
    churned = time.monotonic() - start
    restarted = time.monotonic()
    op.start()
    wait_for("the operator to lead", op.leading, timeout=60, interval=0.1)
    leading = time.monotonic() - restarted
    took, left = converge(chaos, churn)
    took += leading
    errors_before = op.metric("kubento_reconcile_errors_total") or 0.0
    passes_before = op.metric("kubento_reconcile_duration_seconds_count") or 0.0
    time.sleep(10)
    errors_after = op.metric("kubento_reconcile_errors_total") or 0.0
    passes_idle = (op.metric("kubento_reconcile_duration_seconds_count") or 0.0) - passes_before
    deployments.stop()
    invariants.stop()
    live = len([n for n, s in churn.written.items() if s is not None])

    print(f"\n[chaos: kills] seed {SEED}: {KILLS} SIGKILLs in {churned:.0f}s ({kills['leading']} while leading, "
          f"{kills['starting']} while starting or waiting for the Lease), {MODELS} names churned: {churn.summary()}")
    print(f"[chaos: kills] after the last kill: leading again in {leading:.1f}s, {live} models {'converged' if not left else 'NOT converged'} in "
          f"{took:.1f}s; failed requests: none sent (no pods in this tier); left wrong: {len(left)}"
          + "".join(f"\n    {p}" for p in left[:40]))
    print(f"[chaos: kills] then 10s idle: {passes_idle:.0f} passes, {errors_after - errors_before:.0f} failed passes; "
          f"stale or wrong writes seen: {len(invariants.violations)} ({invariants.status_writes} status writes watched)"
          + "".join(f"\n    {v}" for v in invariants.violations[:40]))
    assert not left, left[:40]
    assert not invariants.violations, invariants.violations[:40]
    assert all(code == -signal.SIGKILL for code in op.exits), f"exits other than SIGKILL: {op.exits}"
    assert errors_after == errors_before
    assert not churn.errors, churn.errors
