"""Time from applying a broken revision to all traffic back on the stable
one, with the failed requests a client saw meanwhile (median of 3 per case).

    .venv/bin/pytest bench/test_rollback.py -s -p no:logging [-k canary]

"Back on stable" is phase RolledBack: the stable revision has all its
replicas ready, the Service selects only it, and the broken revision is
scaled to zero. A client sends predictions through the Service the whole
time. Asserts nothing about speed; prints a line per case (median of 3).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter

import pytest

from e2e.conftest import NAMESPACE
from e2e.support import TrafficCounter, apply_md, example_spec, md, settled
from tests.helpers import wait_for

RUNS = 3


def rollback_once(cluster, base: dict, broken: dict) -> tuple[float, float, Counter, int]:
    """(seconds to the RolledBack condition, seconds until the broken pods
    are gone, failed requests by kind, correct predictions) for one broken apply."""
    name = f"bench-rb-{uuid.uuid4().hex[:5]}"
    apply_md(cluster, name, base)
    wait_for(f"{name} Ready", lambda: settled(cluster, name), timeout=300, interval=0.25)
    try:
        with TrafficCounter(cluster, name) as traffic:
            start = time.monotonic()
            apply_md(cluster, name, {**base, **broken})
            obj = wait_for("the rollback", lambda: (o := md(cluster, name))["status"].get("phase") == "RolledBack" and o,
                           timeout=600, interval=0.25)
            back = time.monotonic() - start
            failed_rev = obj["status"]["failedRevision"]
            wait_for("the broken pods to go", lambda: not cluster.get(
                "pods", "-n", NAMESPACE, "-l", f"serving.kubento.io/revision={failed_rev}")["items"], timeout=120, interval=0.25)
            gone = time.monotonic() - start
            time.sleep(1)
        return back, gone, traffic.failures, traffic.ok
    finally:
        cluster.kubectl("delete", "md", name, "-n", NAMESPACE, "--wait=false", check=False)


CASES = {
    "crash at start, RollingUpdate, 1 replica": ({}, {"bento": {"image": "crashing"}}),
    "crash at start, Canary 50%, 2 replicas": (
        {"replicas": 2, "rollout": {"strategy": "Canary", "steps": [{"weight": 50}]}}, {"bento": {"image": "crashing"}}),
    "image missing, RollingUpdate, 1 replica": ({}, {"bento": {"image": "kubento.local/does-not-exist:1"}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_time_to_roll_back_a_broken_revision(cluster, operator, images, case):
    base, broken = CASES[case]
    base = {**example_spec(images), **base}
    image = broken["bento"]["image"]
    broken = {"bento": {"image": images.get(image, image)}}
    runs = []
    for i in range(RUNS):
        back, gone, failures, ok = rollback_once(cluster, base, broken)
        runs.append((back, gone, sum(failures.values()), ok))
        print(f"  {case:42} run {i + 1}: RolledBack {back:5.1f} s, broken pods gone {gone:5.1f} s, "
              f"{sum(failures.values())} failed / {ok} ok requests {dict(failures) if failures else ''}", flush=True)
    backs = [r[0] for r in runs]
    print(f"\n  {'case':42} {'median':>7} {'min':>6} {'max':>6} {'pods gone':>10} {'failed requests':>16}")
    print(f"  {case:42} {statistics.median(backs):7.1f} {min(backs):6.1f} {max(backs):6.1f} "
          f"{statistics.median(r[1] for r in runs):10.1f} {sum(r[2] for r in runs):>7} of {sum(r[2] + r[3] for r in runs)}")
