"""A model server started by ``python -m kubento.runtime serve`` drains its
keep-alive connections at SIGTERM (kubento.runtime.drain): real bentoml
serve, real uvicorn workers, a plain http.client keep-alive loop."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from kubento.runtime.drain import Drain, DrainMiddleware, drain_connections
from tests.runtime.conftest import Archive, Pod
from tests.s3server import free_port

BODY = json.dumps({"text": "kubento"}).encode()
HEADERS = {"content-type": "application/json"}


def start_server(pod: Pod, http_base: str, echo_archive: Archive, **env: str) -> tuple[subprocess.Popen, int, Path]:
    return serve_archive(pod, f"{http_base}/echo.bento", **env)


def serve_archive(pod: Pod, uri: str, **env: str) -> tuple[subprocess.Popen, int, Path]:
    """``python -m kubento.runtime fetch`` of ``uri``, then ``serve`` (its output in serve.log), once /readyz answers."""
    fetched = pod.run("fetch", KUBENTO_ARCHIVE_URI=uri)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    port = free_port("127.0.0.1")
    log_path = pod.root / "serve.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "kubento.runtime", "serve", "--host", "127.0.0.1"],
                                  env=pod.env(BENTOML_PORT=str(port), **env), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, f"bentoml serve exited: {log_path.read_text()[-3000:]}"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
            return server, port, log_path
        except OSError:
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)


def stop(server: subprocess.Popen) -> None:
    """End the server and its BentoML workers: SIGTERM, so that BentoML's
    arbiter stops them (they run in process groups of their own: killing the
    arbiter alone would leave them serving), then SIGKILL if it lingers."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def test_a_keep_alive_client_gets_connection_close_instead_of_a_closed_socket(
        pod: Pod, http_base: str, echo_archive: Archive) -> None:
    server, port, log = start_server(pod, http_base, echo_archive)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    answers, failures, closed_by = 0, [], None
    sigterm_at = None
    try:
        # One connection, a request every 20 ms, as bench/test_keepalive.py's raw client.
        while closed_by is None and time.monotonic() - (sigterm_at or time.monotonic()) < 15:
            try:
                conn.request("POST", "/echo", body=BODY, headers=HEADERS)
                resp = conn.getresponse()
                assert resp.read() == b"otnebuk"
                answers += 1
                if resp.getheader("connection", "").lower() == "close":
                    closed_by = answers  # the server said so: this client goes elsewhere now
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                break
            if answers == 20:
                server.send_signal(signal.SIGTERM)  # what the kubelet sends after the preStop pause
                sigterm_at = time.monotonic()
            time.sleep(0.02)
        assert not failures, f"{failures} after {answers} answers; {log.read_text()[-2000:]}"
        assert closed_by is not None and closed_by > 20, (answers, log.read_text()[-2000:])
        conn.close()  # the client left: the worker has no connection left and stops
        server.wait(20)
        assert "drained keep-alive connections" in log.read_text(), log.read_text()[-2000:]
    finally:
        conn.close()
        stop(server)


def test_an_idle_keep_alive_connection_delays_the_stop_by_at_most_the_drain_seconds(
        pod: Pod, http_base: str, echo_archive: Archive) -> None:
    server, port, log = start_server(pod, http_base, echo_archive, KUBENTO_DRAIN_SECONDS="1.5")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/echo", body=BODY, headers=HEADERS)
        assert conn.getresponse().read() == b"otnebuk"  # then idle: never sends again
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        took = time.monotonic() - start
        assert 1.4 < took < 15, took
        assert "1 left to close" in log.read_text(), log.read_text()[-2000:]
    finally:
        conn.close()
        stop(server)


def test_the_middleware_says_connection_close_only_while_draining() -> None:
    import asyncio

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"Connection", b"keep-alive")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(mw: DrainMiddleware, scope_type: str = "http") -> list[dict]:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b""}

        await mw({"type": scope_type}, receive, send)
        return sent

    drain = Drain()
    mw = DrainMiddleware(app, drain)
    before = asyncio.run(call(mw))[0]["headers"]
    assert (b"Connection", b"keep-alive") in before and (b"connection", b"close") not in before
    connections = {object()}
    stopped = threading.Timer(0.2, connections.clear)
    stopped.start()
    took = asyncio.run(drain_connections(connections, 5, drain))
    assert drain.active and took < 2
    after = asyncio.run(call(mw))[0]["headers"]
    assert after == [(b"content-type", b"text/plain"), (b"connection", b"close")]
    # not HTTP: passed through untouched
    assert asyncio.run(call(mw, "lifespan"))[0]["headers"] == [(b"content-type", b"text/plain"),
                                                               (b"Connection", b"keep-alive")]


@pytest.mark.parametrize("value,expected", [("", 2.0), ("0.5", 0.5), ("-3", 0.0), ("soon", 2.0)])
def test_drain_seconds_from_the_environment(monkeypatch, value, expected) -> None:
    from kubento.runtime.drain import drain_seconds

    monkeypatch.setenv("KUBENTO_DRAIN_SECONDS", value)
    assert drain_seconds() == expected


def test_this_bentoml_starts_its_workers_from_a_module_kubento_can_replace() -> None:
    # BentoML 1.4 (e2e/images/constraints.txt): if a new BentoML renames this,
    # serve still works, without the drain (kubento.runtime.serving warns).
    from _bentoml_impl.server import serving

    assert serving._SERVICE_WORKER_SCRIPT == "_bentoml_impl.worker.service"
