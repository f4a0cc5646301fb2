"""What splitting a bento costs (#26 item 7): latency (p50, p99) and
throughput of examples/two-services served as one server (every service in
one pod: BentoML calls the Scorer over a Unix socket) and split (the Scorer
alone, guarded by kubento's token, the entry calling it over TCP: one
Deployment per service), by kubento's runtime on this machine, same run.

    .venv/bin/pytest bench/test_split.py -s -p no:logging

Both shapes run as kubento's pods run them (`python -m kubento.runtime
serve`, the bento fetched from an archive), on 127.0.0.1: the figures are the
cost of the extra HTTP hop and the token check, not of a network between
nodes (add a pod-to-pod round trip for that). Targets are interleaved round
by round so that a busy moment of the machine hits both alike. Figures, not
a pass/fail timing test: it asserts only that every answer was right.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import threading
import time

from bench.test_gateway import SECONDS, THREADS, percentile
from e2e import traffic
from tests.runtime.conftest import build_archive
from tests.runtime.test_tasks import Replica, stop
from tests.s3server import free_port

PROJECT = Path(__file__).resolve().parent.parent / "examples" / "two-services"
ROUNDS, PER_ROUND = 5, 200
BODY = json.dumps({"text": "1,2,3"}).encode()
TOKEN = "0123456789abcdef0123456789abcdef"


def predict(url: str, conn: traffic.RawConnection | None) -> None:
    """One prediction, checked."""
    if conn is not None:
        status, raw, _ = conn.post(BODY)
        assert status == 200, raw
    else:
        raw = traffic.post(url, BODY, 10)
    assert abs(json.loads(raw)["score"] - 0.17) < 1e-9, raw


def latencies(url: str, keep_alive: bool, n: int) -> list[float]:
    conn = traffic.RawConnection(url, 10) if keep_alive else None
    out = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            predict(url, conn)
            out.append(time.perf_counter() - start)
    finally:
        if conn is not None:
            conn.close()
    return out


def throughput(url: str, keep_alive: bool) -> tuple[float, int]:
    """Predictions per second of THREADS clients for SECONDS, and how many failed."""
    done, failed, stop_at = [0], [0], time.monotonic() + SECONDS
    lock = threading.Lock()

    def loop() -> None:
        conn = traffic.RawConnection(url, 10) if keep_alive else None
        try:
            while time.monotonic() < stop_at:
                try:
                    predict(url, conn)
                    ok = True
                except Exception:  # noqa: BLE001 - counted
                    ok = False
                with lock:
                    done[0] += ok
                    failed[0] += not ok
        finally:
            if conn is not None:
                conn.close()
    threads = [threading.Thread(target=loop) for _ in range(THREADS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 15)
    return done[0] / (time.monotonic() - start), failed[0]


def test_one_server_vs_one_per_service(tmp_path: Path) -> None:
    archive = build_archive(PROJECT, tmp_path, "two")
    one_port, scorer_port, entry_port = (free_port("127.0.0.1") for _ in range(3))
    servers = [
        Replica(tmp_path / "one", archive, "127.0.0.1", one_port),
        Replica(tmp_path / "scorer", archive, "127.0.0.1", scorer_port, BENTOML_SERVE_SERVICE_NAME="Scorer",
                KUBENTO_GRAPH_TOKEN=TOKEN, BENTO_CLOUD_API_KEY=TOKEN),
        Replica(tmp_path / "entry", archive, "127.0.0.1", entry_port, BENTOML_SERVE_SERVICE_NAME="Frontend",
                BENTOML_SERVE_DEPENDS=f"Scorer=http://127.0.0.1:{scorer_port}", BENTO_CLOUD_API_KEY=TOKEN),
    ]
    try:
        for s in servers:
            s.wait_ready()
        targets = {"one server": f"http://127.0.0.1:{one_port}/predict",
                   "split": f"http://127.0.0.1:{entry_port}/predict"}
        for url in targets.values():
            latencies(url, False, 20)  # warm up
        samples: dict[tuple[str, bool], list[float]] = {(t, k): [] for t in targets for k in (False, True)}
        for _ in range(ROUNDS):
            for target, url in targets.items():
                for keep_alive in (False, True):
                    samples[(target, keep_alive)] += latencies(url, keep_alive, PER_ROUND)
        rates = {(t, k): throughput(url, k) for t, url in targets.items() for k in (False, True)}
    finally:
        for s in servers:
            stop(s.server)
    print(f"\n[bench split] examples/two-services, one worker per service, {ROUNDS * PER_ROUND} sequential requests "
          f"per row for latency, {THREADS} clients x {SECONDS:.0f}s for throughput")
    print(f"{'shape':<11} {'client':<16} {'p50 ms':>7} {'p99 ms':>7} {'mean ms':>8} {'req/s':>7} {'failed':>6}")
    for (target, keep_alive), values in samples.items():
        rate, failed = rates[(target, keep_alive)]
        print(f"{target:<11} {'keep-alive' if keep_alive else 'new connections':<16} "
              f"{1000 * percentile(values, 50):>7.2f} {1000 * percentile(values, 99):>7.2f} "
              f"{1000 * statistics.mean(values):>8.2f} {rate:>7.0f} {failed:>6}")
    assert all(failed == 0 for _, failed in rates.values()), rates
