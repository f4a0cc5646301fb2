"""Failed requests of keep-alive clients while pods are replaced, beside a
client that opens a new connection per request.

    .venv/bin/pytest bench/test_keepalive.py -s -p no:logging

One replica, ROLLOUTS rolling updates in a row (each replaces the only pod
the keep-alive connections are on). Three clients send a prediction every
20 ms through the Service the whole time: new connections; one pooled httpx
connection (BentoML's own client); one plain http.client connection, which
never checks whether the server closed it (the client of issue #25, item 6).

Two ways of serving the same iris bento:
- ``image``: the iris image's own ``bentoml serve`` (bento.image; what every
  model ran before kubento's drain): at SIGTERM the server closes idle
  keep-alive connections under their clients;
- ``archive``: kubento's runtime, ``python -m kubento.runtime serve``
  (bento.archive): at SIGTERM it first answers ``Connection: close`` until its
  clients have left (kubento.runtime.drain).

Prints one line per rollout and the totals; asserts that the new-connection
client never fails, that every keep-alive failure is a connection closed
before any response (safe to retry), and that with kubento's runtime the
keep-alive clients lose nothing.
"""

from __future__ import annotations

import time
import uuid

import pytest

from e2e.support import TrafficCounter, apply_md, example_spec, settled
from e2e.test_rollout import only_connection_closed
from e2e.test_sources import archive_spec
from tests.helpers import wait_for

ROLLOUTS = 10
# What a plain http.client loop sees when the server closes the connection as
# its request goes out.
RAW_CONNECTION_CLOSED = ("BrokenPipeError", "RemoteDisconnected", "ConnectionResetError", "ConnectionAbortedError")


@pytest.fixture(params=["image", "archive"])
def source(request, images):
    if request.param == "image":
        return "image", example_spec(images)
    store = request.getfixturevalue("http_store")
    return "archive", {**example_spec(images), **archive_spec(images, f"{store}/iris.bento")}


def test_keep_alive_clients_across_pod_replacements(cluster, operator, images, source):
    kind, spec = source
    name = f"bench-ka-{kind[:3]}-{uuid.uuid4().hex[:5]}"
    apply_md(cluster, name, spec)  # replicas 1
    first = wait_for(f"{name} Ready", lambda: settled(cluster, name), timeout=300, interval=0.5)
    stable = first["status"]["stableRevision"]
    rows = []
    try:
        with TrafficCounter(cluster, name) as fresh, TrafficCounter(cluster, name, keep_alive=True) as kept, \
                TrafficCounter(cluster, name, keep_alive="raw") as raw:
            for i in range(2, ROLLOUTS + 2):
                before = (fresh.failed, kept.failed, raw.failed, raw.ok)
                start = time.monotonic()
                apply_md(cluster, name, {**spec, "env": [{"name": "MODEL_VERSION", "value": str(i)}]})
                obj = wait_for("the rollout", lambda: (o := settled(cluster, name)) and
                               o["status"]["stableRevision"] != stable and o, timeout=300, interval=0.25)
                stable = obj["status"]["stableRevision"]
                time.sleep(6)  # the old pod's preStop pause and shutdown
                rows.append((i - 1, time.monotonic() - start, fresh.failed - before[0], kept.failed - before[1],
                             raw.failed - before[2], raw.ok - before[3]))
    finally:
        cluster.kubectl("delete", "md", name, "-n", "kubento-e2e", "--wait=false", check=False)
    served = "the image's bentoml serve" if kind == "image" else "kubento.runtime serve (drain at stop)"
    print(f"\n[keep-alive] {ROLLOUTS} rolling updates of a 1-replica model served by {served}, "
          "a request every 20 ms per client")
    print("rollout  seconds  failed(new connections)  failed(httpx keep-alive)  failed(http.client keep-alive)"
          "  ok(http.client)")
    for n, secs, f_fresh, f_kept, f_raw, ok_raw in rows:
        print(f"{n:>7}  {secs:>7.1f}  {f_fresh:>23}  {f_kept:>24}  {f_raw:>30}  {ok_raw:>15}")
    print(f"total ({kind}): {fresh.summary()}; {kept.summary()}; {raw.summary()}")
    assert fresh.failed == 0, fresh.failures
    assert only_connection_closed(kept), kept.failures
    assert all(f.startswith(RAW_CONNECTION_CLOSED) for f in raw.failures), raw.failures
    if kind == "archive":  # issue #25 item 6: 0 over 10 rolling updates
        assert kept.failed == 0 and raw.failed == 0, (kept.failures, raw.failures)
