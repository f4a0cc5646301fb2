"""Leader election on a real API server: one leader at a time, a clean
stop hands over within a retry period, a killed leader within the Lease's
duration (short durations here; the operator uses 12 s)."""

from __future__ import annotations

import threading
import time
import uuid

from kubento.controller import credentials
from kubento.controller.kube import Kube
from kubento.controller.leader import LeaderElector
from tests.helpers import wait_for


def electors(controlplane, namespace, lease, **kw):
    made = []
    for identity in ("a", "b"):
        kube = Kube(credentials.from_kubeconfig(controlplane.admin_kubeconfig))
        e = LeaderElector(kube, namespace, lease, identity, lease_seconds=3, renew_deadline=2, retry_seconds=0.2,
                          renew_seconds=0.5, **kw)
        threading.Thread(target=e.run, daemon=True).start()
        made.append(e)
    return made


def leaders(es):
    return [e.identity for e in es if e.leading.is_set()]


def test_one_leader_then_a_clean_handover_within_a_second(controlplane, namespace):
    a, b = electors(controlplane, namespace, f"lease-{uuid.uuid4().hex[:6]}")
    first = wait_for("a leader", lambda: leaders([a, b]), timeout=10)
    assert len(first) == 1
    time.sleep(2)  # renewals keep it: still one, the same
    assert leaders([a, b]) == first
    old, new = (a, b) if first == ["a"] else (b, a)
    start = time.monotonic()
    old.stop(release=True)
    wait_for("the standby to lead", lambda: new.leading.is_set(), timeout=5, interval=0.05)
    assert time.monotonic() - start < 1.0
    assert not old.leading.is_set()
    new.stop()


def test_a_killed_leader_is_replaced_after_the_lease_expires(controlplane, namespace):
    a, b = electors(controlplane, namespace, f"lease-{uuid.uuid4().hex[:6]}")
    first = wait_for("a leader", lambda: leaders([a, b]), timeout=10)
    old, new = (a, b) if first == ["a"] else (b, a)
    start = time.monotonic()
    old.stop(release=False)  # as SIGKILL: no release, no more renewals
    wait_for("the standby to lead", lambda: new.leading.is_set(), timeout=10, interval=0.05)
    took = time.monotonic() - start
    assert 2.5 < took < 4.5, took  # the Lease's 3 s as the standby saw it, plus a retry
    new.stop()
