"""A canary takes no more traffic than its step asks for: measured through
the Service, on new connections (kube-proxy picks a pod for each), for 1, 2
and 4 replicas at steps of 10, 25 and 50 %. The iris example answers with an
X-Model-Version header, so every answer names the revision that gave it.

The measured share must be within 10 points of the effective weight status
reports (status.canaryWeight: the share of ready pods), and the effective
weight never above the requested one by more than one candidate pod beside
the stable pods allows. A keep-alive client (one http.client connection)
is measured beside them: kube-proxy picks a pod per connection, so it gets
0 or 100 % whatever the weight (the replicas mode's limit; gateway mode
splits per request: e2e/test_gateway_routes.py). The table is printed with ``-s``.
"""

from __future__ import annotations

import threading
import time

from e2e.conftest import NAMESPACE
from e2e.support import IRIS_ROWS, apply_md, example_spec, md, settled, shares, tally
from kubento.rollout.canary import canary_split, effective_weight
from tests.helpers import condition, wait_for

REPLICAS = (1, 2, 4)
WEIGHTS = (10, 25, 50)
REQUESTS = 400  # per step: a binomial share's standard deviation is at most 2.5 points
PAUSE = "30s"


def _measure(cluster, name: str, replicas: int, rows: list, errors: list) -> None:
    try:
        for step, weight in enumerate(WEIGHTS):
            # Held, and the pods the step removes from stable are gone (until
            # then they still serve: the effective weight is lower).
            settled_weight = effective_weight(*canary_split(replicas, weight))

            def held():
                obj = md(cluster, name)
                st = obj.get("status", {})
                rollout = st.get("rollout") or {}
                if rollout.get("step") == step and condition(obj, "Ready").get("reason") == "CanaryPaused" \
                        and st.get("canaryWeight") == settled_weight:
                    return st
                return None

            status = wait_for(f"{name} to hold step {step + 1}", held, timeout=240, interval=0.3)
            time.sleep(1.5)  # the endpoints of the newly ready pods reach kube-proxy
            counts = shares(cluster, name, REQUESTS)
            ip = cluster.get("service", name, "-n", NAMESPACE)["spec"]["clusterIP"]
            kept = tally(cluster, f"http://{ip}/classify", REQUESTS, keep_alive=True, rows=IRIS_ROWS[:1])
            after = md(cluster, name)["status"]
            assert (after.get("rollout") or {}).get("step") == step, f"{name}: the step ended while measuring"
            rows.append((replicas, weight, status["rollout"].get("requestedWeight"), status.get("canaryWeight"),
                         100 * counts.get("2", 0) / sum(counts.values()), dict(counts), kept))
    except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
        errors.append(exc)


def test_each_canary_step_sends_the_share_status_reports(cluster, model, images):
    rollout = {"strategy": "Canary", "steps": [{"weight": w, "pause": PAUSE} for w in WEIGHTS]}
    specs = {r: {**example_spec(images), "replicas": r, "rollout": rollout} for r in REPLICAS}
    names = {r: model(f"share{r}", spec) for r, spec in specs.items()}
    for r, name in names.items():
        wait_for(f"{name} to be Ready", lambda name=name: settled(cluster, name), timeout=300, interval=1)
    start = time.monotonic()
    for r, name in names.items():
        apply_md(cluster, name, {**specs[r], "env": [{"name": "MODEL_VERSION", "value": "2"}]})
    rows: list = []
    errors: list = []
    threads = [threading.Thread(target=_measure, args=(cluster, names[r], r, rows, errors)) for r in REPLICAS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    for r, name in names.items():
        wait_for(f"{name} to be promoted", lambda name=name: (o := settled(cluster, name))
                 and o["status"]["history"][-1]["outcome"] == "Serving" and o, timeout=240, interval=1)
    took = time.monotonic() - start

    print(f"\n[canary share] {REQUESTS} requests per step on new connections, all three models in {took:.0f}s")
    print("replicas  requested  effective(status)  measured  answers   keep-alive (one connection)")
    for r, w, requested, effective, measured, counts, kept in sorted(rows, key=lambda x: x[:2]):
        print(f"{r:>8}  {requested:>8}%  {effective:>16}%  {measured:>7.1f}%  {counts}   {kept.share('2'):.0f} % {kept}")
    assert not errors, errors
    assert len(rows) == len(REPLICAS) * len(WEIGHTS)
    for r, w, requested, effective, measured, counts, kept in rows:
        assert not kept.failures and kept.connections == 1 and kept.share("2") in (0.0, 100.0), (r, w, kept)
        stable, candidate = canary_split(r, w)
        assert requested == w
        assert effective == effective_weight(stable, candidate), (r, w, effective)  # all the step's pods ready
        assert stable >= 1 and counts.get("1", 0) > 0, (r, w, counts)  # stable keeps serving
        assert abs(measured - effective) <= 10, (r, w, effective, measured)
        assert measured <= max(w, 100 / (1 + stable)) + 10, (r, w, measured)
