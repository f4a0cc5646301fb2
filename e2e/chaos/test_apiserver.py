"""The API server goes away under a churn of 100 ModelDeployments.

- restarted (SIGKILL, then started again), then etcd and the API server
  together: the operator reconnects by itself, never exits (no crash loop)
  and converges;
- unreachable from the operator for 30 s (a relay between them drops
  everything, while users and the Deployment controller still reach it and
  keep changing things): no pass runs on the stale view as if it were fresh,
  nothing that should exist is deleted, and it converges once the relay heals.

Both watch the operator's writes as they happen (e2e/chaos/invariants.py) and
check the end state (e2e/chaos/checks.py). Figures are printed (``-s``).
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
import ssl

from e2e.chaos.churn import Churn
from e2e.chaos.conftest import NAMESPACE, OPERATOR_NAMESPACE
from e2e.chaos.invariants import Invariants
from e2e.chaos.proxy import Relay
from e2e.chaos.test_kills import converge
from tests.controlplane import DeploymentController
from tests.helpers import wait_for

MODELS = int(os.environ.get("KUBENTO_CHAOS_MODELS", "100"))
SEED = int(os.environ.get("KUBENTO_CHAOS_SEED", str(int(time.time()))))
OUTAGE = float(os.environ.get("KUBENTO_CHAOS_OUTAGE", "30"))


def api_ready(cp) -> bool:
    ctx = ssl.create_default_context(cafile=str(cp.dir / "pki" / "ca.crt"))
    try:
        urllib.request.urlopen(f"https://127.0.0.1:{cp.port}/readyz", context=ctx, timeout=2)
    except OSError as exc:  # 401 without a token also means it answers
        return getattr(exc, "code", None) in (200, 401, 403)
    return True


def failed_passes(op) -> float:
    return op.metric("kubento_reconcile_errors_total") or 0.0


def settle(chaos, op, churn, invariants, label: str, since: float) -> list[str]:
    """Converge, then 10 s idle: print the figures; return what is wrong."""
    took, left = converge(chaos, churn)
    took += time.monotonic() - since
    before = failed_passes(op), op.metric("kubento_reconcile_duration_seconds_count") or 0.0
    time.sleep(10)
    after = failed_passes(op), op.metric("kubento_reconcile_duration_seconds_count") or 0.0
    live = len([n for n, s in churn.written.items() if s is not None])
    print(f"[chaos: {label}] {live} models {'converged' if not left else 'NOT converged'} {took:.1f}s after the API server was back; failed requests: "
          f"none sent (no pods in this tier); left wrong: {len(left)}" + "".join(f"\n    {p}" for p in left[:40]))
    print(f"[chaos: {label}] operator: {op.starts} start(s), exits {op.exits or 'none'}; "
          f"then 10s idle: {after[1] - before[1]:.0f} passes, {after[0] - before[0]:.0f} failed; "
          f"stale or wrong writes seen: {len(invariants.violations)} ({invariants.status_writes} status writes watched)"
          + "".join(f"\n    {v}" for v in invariants.violations[:40]))
    problems = list(left) + list(invariants.violations)
    if after[0] != before[0]:
        problems.append(f"{after[0] - before[0]:.0f} failed passes while idle")
    return problems


def test_api_server_and_etcd_restarted_during_a_churn(chaos):
    deployments = DeploymentController(chaos.admin, NAMESPACE, delay=(0.2, 2.0)).start()
    churn = Churn(chaos.admin, NAMESPACE, MODELS, SEED)
    churn.create_all()
    invariants = Invariants(chaos.admin, NAMESPACE).start()
    op = chaos.operator()
    op.start()
    wait_for("the operator to lead", op.leading, timeout=60, interval=0.1)
    churn.start(rate=3.0)
    outages = []
    for components in (("kube-apiserver",), ("kube-apiserver", "etcd")):
        time.sleep(20)
        start = time.monotonic()
        for c in components:
            chaos.cp.stop(c, signal.SIGKILL)
        time.sleep(5)
        chaos.cp.start()
        wait_for("the API server", lambda: api_ready(chaos.cp), timeout=120, interval=0.2)
        back = time.monotonic()
        leads = wait_for("the operator to lead again", op.leading, timeout=90, interval=0.2) and time.monotonic()
        outages.append((" and ".join(components), back - start, leads - back))
        assert op.alive, f"the operator exited (codes {op.exits}):\n{chaos.log_tail()}"
    time.sleep(15)
    churn.stop()
    back = time.monotonic()
    print(f"\n[chaos: API server restarts] seed {SEED}: {churn.summary()}")
    for what, down, lead in outages:
        print(f"[chaos: API server restarts] {what} SIGKILLed and started: away {down:.1f}s; "
              f"the operator led again {lead:.1f}s later")
    problems = settle(chaos, op, churn, invariants, "API server restarts", back)
    deployments.stop()
    invariants.stop()
    assert op.alive and op.starts == 1 and not op.exits, f"the operator exited: {op.exits}"
    assert not problems, problems[:40]


def test_api_server_unreachable_for_30s(chaos):
    relay = Relay(chaos.cp.port)
    kubeconfig = chaos.cp.token_kubeconfig("kubento", OPERATOR_NAMESPACE, chaos.cp.dir / "operator-relay.kubeconfig",
                                           server=relay.url)
    deployments = DeploymentController(chaos.admin, NAMESPACE, delay=(0.2, 2.0)).start()
    churn = Churn(chaos.admin, NAMESPACE, MODELS, SEED)
    churn.create_all()
    invariants = Invariants(chaos.admin, NAMESPACE).start()
    op = chaos.operator(kubeconfig)
    op.start()
    wait_for("the operator to lead", op.leading, timeout=60, interval=0.1)
    churn.start(rate=3.0)
    time.sleep(20)
    relay.cut()
    cut = time.monotonic()
    lost = wait_for("the operator to stop leading", lambda: not op.leading(), timeout=OUTAGE, interval=0.2) \
        and time.monotonic() - cut
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - cut)))
    relay.heal()
    healed = time.monotonic()
    leads = wait_for("the operator to lead again", op.leading, timeout=90, interval=0.2) and time.monotonic() - healed
    time.sleep(15)
    churn.stop()
    print(f"\n[chaos: API server unreachable] seed {SEED}: {churn.summary()}")
    print(f"[chaos: API server unreachable] cut off for {OUTAGE:.0f}s: the operator stopped leading after "
          f"{lost:.1f}s, led again {leads:.1f}s after the relay healed")
    problems = settle(chaos, op, churn, invariants, "API server unreachable", healed)
    deployments.stop()
    invariants.stop()
    relay.close()
    assert op.alive and op.starts == 1 and not op.exits, f"the operator exited: {op.exits}"
    assert not problems, problems[:40]
