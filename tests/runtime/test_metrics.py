"""kubento.rollout.analysis against a real BentoML server: ``bentoml serve``
of tests/runtime/flaky_project (``POST /work {"fail": true}`` answers 500,
``{"sleep": s}`` is slow), requests and probes sent, ``/metrics`` read and
judged the way the operator will judge a canary.

Nothing skips: without bentoml next to this interpreter the tests fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from kubento.api.v1alpha1 import Analysis
from kubento.rollout.analysis import Sample, evaluate, histogram_quantile, parse_metrics, since, total
from tests.runtime.conftest import clean_env
from tests.s3server import free_port

PROJECT = Path(__file__).resolve().parent / "flaky_project"


class Server:
    def __init__(self, base: str) -> None:
        self.base = base

    def work(self, fail: bool = False, sleep: float = 0.0) -> int:
        req = urllib.request.Request(f"{self.base}/work", data=json.dumps({"fail": fail, "sleep": sleep}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code

    def get(self, path: str) -> int:
        with urllib.request.urlopen(f"{self.base}{path}", timeout=10) as resp:
            resp.read()
            return resp.status

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as resp:
            return resp.read().decode()

    def sample(self) -> Sample:
        return parse_metrics(self.metrics())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    bentoml = Path(sys.executable).parent / "bentoml"
    assert bentoml.exists(), f"bentoml is not installed next to {sys.executable} (pip install -e '.[test]')"
    d = tmp_path_factory.mktemp("flaky")
    port = free_port("127.0.0.1")
    log_path = d / "serve.log"
    with open(log_path, "w+") as log:
        proc = subprocess.Popen(
            [str(bentoml), "serve", "service:Flaky", "--working-dir", str(PROJECT), "--host", "127.0.0.1",
             "--port", str(port)],
            env=clean_env(BENTOML_HOME=str(d / "home"), PYTHONDONTWRITEBYTECODE="1"),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            s = Server(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, f"bentoml serve exited: {log_path.read_text()[-3000:]}"
                try:
                    s.get("/readyz")
                    break
                except OSError:
                    assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                    time.sleep(0.2)
            yield s
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def probe(server: Server) -> None:
    for path in ("/readyz", "/livez", "/healthz", "/readyz", "/docs.json", "/schema.json", "/metrics"):
        assert server.get(path) == 200, path


def test_failing_run_counts_exact_requests_and_errors_and_fails(server: Server) -> None:
    start = server.sample()  # the readiness polls above are not API requests
    assert start.requests == 0 and start.errors == 0
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: server.work(fail=i % 3 == 0), range(30)))
    probe(server)
    assert sorted(codes) == [200] * 20 + [500] * 10

    text = server.metrics()
    assert 'endpoint="/readyz"' in text  # BentoML does count probes: parse_metrics must leave them out
    window = since(start, parse_metrics(text))
    assert (window.requests, window.errors) == (30, 10)
    assert window.duration_count == 30 and window.buckets[-1] == (float("inf"), 30)

    verdict = evaluate(window, Analysis(max_error_rate=0.05, min_requests=20), baseline=Sample())
    assert (verdict.result, verdict.reason) == ("fail", "ErrorRateTooHigh")
    assert verdict.message.startswith("error rate 33.3% > maxErrorRate 5.0% (10 of 30 requests)"), verdict.message
    # the same window, short of minRequests: no verdict, never a pass
    assert evaluate(window, Analysis(min_requests=31)).result == "inconclusive"


def test_healthy_run_passes_and_a_slow_one_fails_on_latency(server: Server) -> None:
    start = server.sample()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: server.work(), range(25)))
    probe(server)
    assert codes == [200] * 25
    healthy = since(start, server.sample())
    assert (healthy.requests, healthy.errors) == (25, 0)
    verdict = evaluate(healthy, Analysis(max_error_rate=0.05, max_latency_p95="1s", min_requests=20))
    assert (verdict.result, verdict.reason) == ("pass", "AnalysisPassed"), verdict.message
    assert verdict.p95_seconds is not None and verdict.p95_seconds < 1

    start = server.sample()
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda i: server.work(sleep=0.15), range(20)))
    assert codes == [200] * 20
    slow = since(start, server.sample())
    assert slow.requests == 20
    p95 = histogram_quantile(0.95, slow.buckets)
    assert p95 is not None and 0.1 < p95 <= 0.25  # BentoML's (0.1, 0.25] bucket
    verdict = evaluate(slow, Analysis(max_latency_p95="100ms", min_requests=20))
    assert (verdict.result, verdict.reason) == ("fail", "LatencyTooHigh"), verdict.message
    assert "> maxLatencyP95 100ms" in verdict.message

    # two pods' windows add up (the second pod here: the healthy window again)
    both = total([slow, healthy])
    assert (both.requests, both.errors) == (45, 0)
