"""What sampling payloads and counting statistics cost a request
(issue #28): p50/p99 latency of a real model server started as kubento's
pods start it (``python -m kubento.runtime serve`` of
tests/runtime/iris_rules_project, one BentoML worker), with the monitor off,
statistics only, and payload sampling at 0, 0.1 and 1.0 (stdout and
CloudEvents to a receiver on this machine).

    .venv/bin/pytest bench/test_payload_latency.py -s -p no:logging

No cluster: the model pod's own cost, without the network's noise. Two
loads per setting: one keep-alive client in a loop (latency), and four at
once (latency under load, requests/s). Settings run interleaved, twice, to
spread the machine's noise over all of them. Prints a table; the only
assertions are that every request was answered and every sampled record
arrived (figures, not pass/fail timing).
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.cloudevents import Receiver
from tests.runtime.conftest import Pod
from tests.runtime.test_drain import serve_archive, stop
from tests.runtime.test_monitor import rules_archive  # noqa: F401 - a fixture: the rules project's archive over HTTP

REQUESTS = 2000  # per setting and load, after WARMUP
WARMUP = 200
ROUNDS = 2
BODY = json.dumps({"features": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], "customer": {"id": "c1"}}).encode()
STATS = {"endpoint": "/classify", "inputRows": "$.features[*]", "outputRows": "$[*]",
         "inputs": [{"name": f"f{i}", "path": f"$[{i}]", "buckets": [1.0, 2.0, 4.0, 6.0]} for i in range(4)],
         "output": {"path": "$", "type": "categorical", "categories": ["setosa", "versicolor", "virginica"]}}


def settings(sink: str) -> dict[str, dict | None]:
    payloads = {"stdout": True, "http": {"url": sink, "timeout": 2.0}, "hash": ["$.customer.id"]}
    return {
        "monitor off": None,
        "statistics, sampling 0": {"statistics": STATS},
        "statistics, sampling 0.1": {"statistics": STATS, "payloads": {"sampleRate": 0.1, **payloads}},
        "statistics, sampling 1.0": {"statistics": STATS, "payloads": {"sampleRate": 1.0, **payloads}},
        "payloads only, sampling 0": {"payloads": {"sampleRate": 0.0, **payloads}},
    }


def client_loop(port: int, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/classify", body=BODY, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        out.append(time.perf_counter() - t0)
    conn.close()
    return out


def measure(port: int, clients: int) -> tuple[list[float], float]:
    client_loop(port, WARMUP)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda _: client_loop(port, REQUESTS // clients), range(clients)))
    return [x for r in runs for x in r], REQUESTS / (time.perf_counter() - t0)


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=1000)[int(q * 1000) - 1] * 1000


def test_latency_cost_of_sampling(rules_archive, tmp_path: Path) -> None:
    rules_uri = rules_archive[1]
    receiver = Receiver()
    results: dict[str, dict[int, list]] = {}
    for round_ in range(ROUNDS):
        for name, config in settings(receiver.url).items():
            pod = Pod(tmp_path / f"{round_}-{name.replace(' ', '_').replace(',', '')}")
            for d in (pod.root, pod.home, pod.work, pod.pvc):
                d.mkdir(parents=True, exist_ok=True)
            env = {"KUBENTO_MONITORING": json.dumps({"model": "bench", **config})} if config else {}
            before = len(receiver.events)
            server, port, log = serve_archive(pod, rules_uri, **env)
            try:
                for clients in (1, 4):
                    latencies, rps = measure(port, clients)
                    results.setdefault(name, {}).setdefault(clients, []).append((latencies, rps))
                time.sleep(1.0)  # the recorder's queue drains
            finally:
                stop(server)
            sent = WARMUP * 2 + REQUESTS * 2
            if config and config.get("payloads", {}).get("sampleRate") == 1.0:
                assert len(receiver.events) - before >= 2 * sent * 0.99, (len(receiver.events) - before, sent)
            records = sum(1 for line in log.read_text().splitlines() if line.startswith('{"kind":"kubento'))
            if config and config.get("payloads", {}).get("sampleRate") == 0.0:
                assert records == 0
    print("\n\nLatency of POST /classify (2 rows), kubento.runtime serve, 1 BentoML worker, "
          f"{REQUESTS} requests per run, {ROUNDS} runs interleaved:")
    print(f"{'setting':<28} {'1 client p50':>12} {'p99':>8} {'4 clients p50':>14} {'p99':>8} {'req/s':>7}")
    for name, by_clients in results.items():
        one = [x for lat, _ in by_clients[1] for x in lat]
        four = [x for lat, _ in by_clients[4] for x in lat]
        rps = statistics.mean(r for _, r in by_clients[4])
        print(f"{name:<28} {pct(one, 0.5):>10.2f}ms {pct(one, 0.99):>6.2f}ms {pct(four, 0.5):>12.2f}ms "
              f"{pct(four, 0.99):>6.2f}ms {rps:>7.0f}")


def test_request_path_cost_in_process() -> None:
    """The middleware's own cost on the request path, in microseconds per
    request, around an ASGI app that answers at once (no server, no network:
    the part of the cost that noise hides above). The recorder thread does its
    work meanwhile, as in a pod (its CPU is shared with the loop's)."""
    import asyncio

    from kubento.runtime import monitor

    body = BODY

    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'["setosa","virginica"]'})

    async def receive():
        return {"type": "http.request", "body": body}

    async def send(message):
        pass

    config = monitor.Config.parse(json.dumps({"model": "bench", "statistics": STATS,
                                              "payloads": {"sampleRate": 0.1, "stdout": False}}))
    recorder = monitor.Recorder(config, monitor.Counters())
    cases = {
        "no middleware": (app, "/classify", 0.9),
        "another endpoint, not drawn (sampling 0.1)": (monitor.MonitorMiddleware(app, config, recorder), "/other", 0.9),
        "statistics endpoint": (monitor.MonitorMiddleware(app, config, recorder), "/classify", 0.9),
        "statistics endpoint, sampled": (monitor.MonitorMiddleware(app, config, recorder), "/classify", 0.0),
    }
    n = 20000

    async def run(handler, path, draw) -> float:
        if isinstance(handler, monitor.MonitorMiddleware):
            handler.draw = lambda: draw
        scope = {"type": "http", "path": path, "headers": [(b"content-type", b"application/json")]}
        t0 = time.perf_counter()
        for _ in range(n):
            await handler(scope, receive, send)
        return (time.perf_counter() - t0) / n * 1e6

    print("\n\nThe request path in process (microseconds per request, 20,000 requests):")
    base = None
    for name, (handler, path, draw) in cases.items():
        us = asyncio.run(run(handler, path, draw))
        base = us if base is None else base
        print(f"  {name:<45} {us:7.1f} us  (+{us - base:.1f})")
    recorder.close()
