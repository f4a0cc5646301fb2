"""kubento.controller.podhttp against real servers on this machine (no
cluster): a pod's answer is untrusted input — no redirect followed, reads
capped, one wall-clock deadline per request."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from contextlib import contextmanager

import pytest

from kubento.controller import podhttp


@contextmanager
def raw_server(handle):
    """A TCP server on 127.0.0.1 calling ``handle(conn)`` for each connection (in a thread)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue

            def one(conn=conn):
                with conn:
                    try:
                        conn.settimeout(30)
                        seen.append(conn.recv(65536))
                        handle(conn)
                    except OSError:
                        pass
            threading.Thread(target=one, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield srv.getsockname()[1], seen
    finally:
        stop.set()
        srv.close()


def answer(status: str, headers: dict, body: bytes = b""):
    def handle(conn):
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Content-Length": len(body), **headers}.items())
        conn.sendall(f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body)
    return handle


def get(port, path="/", *, deadline=2.0, cap=podhttp.ANSWER_MAX, method="GET", body=None):
    async def job(session):
        return await podhttp.request(session, podhttp.pod_url("127.0.0.1", port, path), method=method, body=body,
                                     deadline=deadline, cap=cap)
    return podhttp.run(job)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_the_answer_and_is_never_followed(code):
    with raw_server(answer("200 OK", {}, b"the secret")) as (target, target_seen):
        with raw_server(answer(f"{code} Moved", {"Location": f"http://127.0.0.1:{target}/secret"})) as (port, _):
            got = get(port, "/classify", method="POST", body=b"{}")
    assert target_seen == []
    assert got.status == code and got.final and got.body == ""
    assert got.error == (f"answered a redirect to http://127.0.0.1:{target}/secret: "
                         "kubento does not follow redirects")


def test_an_answer_over_the_cap_stops_the_read():
    def endless(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(16 * 1024):  # up to 1 GiB, unless the client hangs up first
            conn.sendall(chunk)

    with raw_server(endless) as (port, _):
        start = time.monotonic()
        got = get(port, "/metrics", cap=podhttp.METRICS_MAX, deadline=10)
    assert got.final and got.body == ""
    assert got.error == "answered more than 4 MiB: kubento reads at most 4 MiB"
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_pod_that_drips_is_cut_off_at_the_deadline(where):
    def drip(conn):
        if where == "body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(1000):
            conn.sendall(b"x" if where == "body" else b"X-A: b\r\n")
            time.sleep(0.1)

    with raw_server(drip) as (port, _):
        start = time.monotonic()
        got = get(port, deadline=1.0)
        took = time.monotonic() - start
    assert got.status is None and not got.final
    assert got.error == ("no complete answer within 1s" if where == "body" else "no answer within 1s")
    assert 0.9 < took < 1.6


def test_compressed_answers_are_not_expanded():
    bomb = gzip.compress(b"0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    with raw_server(answer("200 OK", {"Content-Encoding": "gzip"}, bomb)) as (port, seen):
        got = get(port, cap=podhttp.METRICS_MAX)
    assert got.status == 200 and len(got.body) < podhttp.METRICS_MAX
    assert b"accept-encoding: identity" in seen[0].lower()


def test_cookies_a_pod_sets_are_not_sent_anywhere():
    with raw_server(answer("200 OK", {"Set-Cookie": "session=abc; Path=/"}, b"{}")) as (port, seen):
        async def twice(session):
            url = podhttp.pod_url("127.0.0.1", port, "/")
            await podhttp.request(session, url, deadline=2, cap=1024)
            return await podhttp.request(session, url, deadline=2, cap=1024)
        podhttp.run(twice)
    assert len(seen) == 2 and b"cookie" not in seen[1].lower()


def test_no_answer_says_why_without_a_traceback():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    got = get(port)
    assert got.status is None and "refused" in got.error.lower() and "Traceback" not in got.error


def test_a_pod_address_is_bracketed_when_it_is_ipv6():
    assert podhttp.pod_url("fd00::5", 3000, "/metrics") == "http://[fd00::5]:3000/metrics"
    assert podhttp.pod_url("10.0.0.5", 3000, "/x?y=1") == "http://10.0.0.5:3000/x?y=1"


def test_requests_of_one_job_share_a_bound():
    from kubento.controller.podio import limited

    running, peak = 0, 0

    async def call():
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return 1

    assert asyncio.run(limited(3, [call for _ in range(10)])) == [1] * 10
    assert peak == 3
