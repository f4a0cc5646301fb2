"""What a Gateway costs: latency (p50, p99) and throughput of predictions
straight to the pod, through the model's Service (kube-proxy), and through
its HTTPRoute on Envoy Gateway and on Traefik (issue #25, item 9).

    flock /tmp/kubento-e2e.lock .venv/bin/pytest bench/test_gateway.py -s -p no:logging

One model with one replica (every path ends at the same pod) in gateway mode,
its route attached to both data planes' Gateways (e2e/gateway). Same run,
same client (the e2e tier's standard-library one: a new connection per
request, or one http.client keep-alive connection), targets interleaved
round by round so that a busy moment of the machine hits them all alike.
Latency: ROUNDS x PER_ROUND sequential requests per target and client kind.
Throughput: THREADS clients for SECONDS per target and client kind.
Figures, not a pass/fail timing test: it asserts only that nothing failed.
Measured on a 2-core machine shared with other work, where the client, the
data planes and the model share the cores: compare rows, not machines.
"""

from __future__ import annotations

import json
import statistics
import threading
import time

from e2e import traffic
from e2e.conftest import NAMESPACE
from e2e.gateway import GATEWAY_NAMESPACE, wait_serving
from e2e.support import IRIS_ROWS, apply_md, example_spec, settled
from tests.helpers import condition, wait_for

ROUNDS, PER_ROUND = 5, 200
THREADS, SECONDS = 4, 5.0
BODY = json.dumps({"features": IRIS_ROWS[:1]}).encode()
HOST = "bench.routes.kubento.test"


def _one(url: str, headers: dict, conn: traffic.RawConnection | None) -> None:
    if conn is not None:
        status, _, _ = conn.post(BODY, headers)
        if status >= 400:
            raise RuntimeError(f"HTTP {status}")
    else:
        traffic.post_versioned(url, BODY, 10, headers)


def latencies(url: str, headers: dict, keep_alive: bool, n: int) -> list[float]:
    conn = traffic.RawConnection(url, 10) if keep_alive else None
    out = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            _one(url, headers, conn)
            out.append(time.perf_counter() - start)
    finally:
        if conn is not None:
            conn.close()
    return out


def throughput(url: str, headers: dict, keep_alive: bool) -> tuple[float, int]:
    done, failed, stop = [0], [0], threading.Event()
    lock = threading.Lock()

    def loop() -> None:
        conn = traffic.RawConnection(url, 10) if keep_alive else None
        try:
            while not stop.is_set():
                try:
                    _one(url, headers, conn)
                    with lock:
                        done[0] += 1
                except Exception:  # noqa: BLE001 - counted
                    with lock:
                        failed[0] += 1
        finally:
            if conn is not None:
                conn.close()
    threads = [threading.Thread(target=loop) for _ in range(THREADS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(15)
    return done[0] / (time.monotonic() - start), failed[0]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def test_latency_and_throughput_pod_service_gateways(cluster, model, images, envoy_gateway, traefik_gateway):
    spec = example_spec(images)
    spec["traffic"] = {"gateway": {"hostnames": [HOST], "parentRefs": [
        {"name": p.gateway, "namespace": GATEWAY_NAMESPACE, "sectionName": "http"} for p in (envoy_gateway, traefik_gateway)]}}
    name = model("bench-gw", spec)
    obj = wait_for(f"{name}: Ready, its route accepted by both", lambda: (o := settled(cluster, name))
                   and condition(o, "RouteAccepted").get("status") == "True" and o, timeout=300, interval=1)
    pod = cluster.get("pods", "-n", NAMESPACE, "-l", f"serving.kubento.io/model-deployment={name}")["items"][0]
    service = cluster.get("service", name, "-n", NAMESPACE)["spec"]["clusterIP"]
    targets = {
        "pod": (f"http://{pod['status']['podIP']}:3000/classify", {}),
        "Service": (f"http://{service}/classify", {}),
        "Envoy Gateway": (f"{envoy_gateway.url}/classify", {"host": HOST}),
        "Traefik": (f"{traefik_gateway.url}/classify", {"host": HOST}),
    }
    for url, headers in targets.values():
        if headers:
            wait_serving(url, HOST, body=BODY, timeout=90)
        latencies(url, headers, False, 20)  # warm up each path
    samples: dict[tuple[str, bool], list[float]] = {(t, k): [] for t in targets for k in (False, True)}
    for _ in range(ROUNDS):
        for target, (url, headers) in targets.items():
            for keep_alive in (False, True):
                samples[(target, keep_alive)] += latencies(url, headers, keep_alive, PER_ROUND)
    rates = {(t, k): throughput(url, headers, k) for t, (url, headers) in targets.items() for k in (False, True)}

    print(f"\n[bench gateway] one iris pod (replicas 1), {ROUNDS * PER_ROUND} sequential requests per row for latency, "
          f"{THREADS} clients x {SECONDS:.0f}s for throughput; revision {obj['status']['stableRevision']}")
    print(f"{'path':<15} {'client':<16} {'p50 ms':>7} {'p99 ms':>7} {'mean ms':>8} {'req/s':>7} {'failed':>6}")
    for (target, keep_alive), values in samples.items():
        rate, failed = rates[(target, keep_alive)]
        print(f"{target:<15} {'keep-alive' if keep_alive else 'new connections':<16} "
              f"{1000 * percentile(values, 50):>7.2f} {1000 * percentile(values, 99):>7.2f} "
              f"{1000 * statistics.mean(values):>8.2f} {rate:>7.0f} {failed:>6}")
    assert all(failed == 0 for _, failed in rates.values()), rates
