"""Failed requests of a keep-alive client while pods are replaced, beside a
client that opens a new connection per request.

    .venv/bin/pytest bench/test_keepalive.py -s -p no:logging

One replica, ROLLOUTS rolling updates in a row (each replaces the only pod
its keep-alive connection is on). Both clients send a prediction every 20 ms
through the Service the whole time. Prints one line per rollout and the
totals; asserts only that every failure of the keep-alive client is a
connection closed before any response (safe to retry), and none of the
other client's.
"""

from __future__ import annotations

import time
import uuid

from e2e.support import TrafficCounter, apply_md, example_spec, settled
from e2e.test_rollout import only_connection_closed
from tests.helpers import wait_for

ROLLOUTS = 10


def test_keep_alive_client_across_pod_replacements(cluster, operator, images):
    name = f"bench-ka-{uuid.uuid4().hex[:5]}"
    spec = example_spec(images)  # replicas 1
    apply_md(cluster, name, spec)
    first = wait_for(f"{name} Ready", lambda: settled(cluster, name), timeout=300, interval=0.5)
    stable = first["status"]["stableRevision"]
    rows = []
    try:
        with TrafficCounter(cluster, name) as fresh, TrafficCounter(cluster, name, keep_alive=True) as kept:
            for i in range(2, ROLLOUTS + 2):
                before = (fresh.failed, kept.failed, kept.ok)
                start = time.monotonic()
                apply_md(cluster, name, {**spec, "env": [{"name": "MODEL_VERSION", "value": str(i)}]})
                obj = wait_for("the rollout", lambda: (o := settled(cluster, name)) and
                               o["status"]["stableRevision"] != stable and o, timeout=300, interval=0.25)
                stable = obj["status"]["stableRevision"]
                time.sleep(6)  # the old pod's preStop pause and shutdown
                rows.append((i - 1, time.monotonic() - start, fresh.failed - before[0], kept.failed - before[1],
                             kept.ok - before[2]))
    finally:
        cluster.kubectl("delete", "md", name, "-n", "kubento-e2e", "--wait=false", check=False)
    print(f"\n[keep-alive] {ROLLOUTS} rolling updates of a 1-replica model, a request every 20 ms per client")
    print("rollout  seconds  failed(new connections)  failed(keep-alive)  ok(keep-alive)")
    for n, secs, f_fresh, f_kept, ok_kept in rows:
        print(f"{n:>7}  {secs:>7.1f}  {f_fresh:>23}  {f_kept:>18}  {ok_kept:>14}")
    print(f"total: {fresh.summary()}; {kept.summary()}")
    assert fresh.failed == 0, fresh.failures
    assert only_connection_closed(kept), kept.failures
