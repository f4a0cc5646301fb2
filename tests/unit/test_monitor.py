"""kubento.runtime.monitor's parts around a plain ASGI app (the real BentoML
server is tests/runtime/test_monitor.py): what the request path copies and
skips, what a failing app leaves, the sinks' own rules."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from kubento.runtime import monitor

CONFIG = monitor.Config.parse(json.dumps({
    "model": "iris",
    "statistics": {"endpoint": "/classify", "inputs": [{"name": "a", "path": "$.a", "buckets": [1]}]},
    "payloads": {"sampleRate": 0.5, "maxBytes": 300, "stdout": False},
}), {"KUBENTO_NAMESPACE": "ns", "KUBENTO_POD": "p", "KUBENTO_REVISION": "r"})


class Kept(monitor.Recorder):
    """A recorder that keeps what it is given instead of starting its thread."""

    def put(self, seen):
        self.seen.append(seen)


def kept() -> Kept:
    r = Kept(CONFIG)
    r.seen = []
    return r


async def app(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if body == b"boom":
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body[::-1], "more_body": True})
    await send({"type": "http.response.body", "body": b"!"})


def call(middleware, path, chunks, headers=()):
    sent = []
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return queue.pop(0)

    async def send(message):
        sent.append(message)
    asyncio.run(middleware({"type": "http", "path": path, "headers": list(headers)}, receive, send))
    return sent


def test_a_request_neither_sampled_nor_counted_passes_untouched():
    recorder = kept()
    seen_args = []

    async def spy(scope, receive, send):
        seen_args.append((receive, send))
    m = monitor.MonitorMiddleware(spy, CONFIG, recorder, draw=lambda: 0.9)
    call(m, "/other", [b"x"])
    assert recorder.seen == [] and seen_args[0][0].__name__ == "receive"  # the server's own callables


def test_probes_and_metrics_are_never_sampled_and_the_endpoint_is_always_counted():
    recorder = kept()
    m = monitor.MonitorMiddleware(app, CONFIG, recorder, draw=lambda: 0.0)
    for path in ("/readyz", "/livez", "/metrics", "/docs.json"):
        call(m, path, [b"{}"])
    assert recorder.seen == []
    call(m, "/other", [b"{}"], headers=[(b"x-request-id", b"abc")])
    (seen,) = recorder.seen
    assert seen.sampled and not seen.stats and seen.request_id == "abc" and bytes(seen.response.data) == b"}{!"
    m = monitor.MonitorMiddleware(app, CONFIG, recorder, draw=lambda: 0.99)
    call(m, "/classify", [b'{"a"', b": 1}"])
    seen = recorder.seen[-1]
    assert seen.stats and not seen.sampled and not seen.request_id and bytes(seen.request.data) == b'{"a": 1}'
    assert seen.status == 200 and seen.seconds > 0


def test_bodies_are_kept_up_to_the_cap_and_counted_in_full():
    c = monitor.Capture(4)
    for chunk in (b"abc", b"defgh", b"ij"):
        c.add(chunk)
    assert bytes(c.data) == b"abcde" and c.size == 10 and not c.whole


def test_an_app_that_raises_is_recorded_as_a_500_and_still_raises():
    recorder = kept()
    m = monitor.MonitorMiddleware(app, CONFIG, recorder, draw=lambda: 0.0)
    with pytest.raises(RuntimeError):
        call(m, "/classify", [b"boom"])
    (seen,) = recorder.seen
    assert seen.status == 500 and seen.stats and seen.sampled


def test_a_record_redacts_notes_too_large_bodies_and_makes_kserve_events():
    r = monitor.Recorder(monitor.Config.parse(json.dumps({
        "model": "iris", "payloads": {"sampleRate": 1, "maxBytes": 40, "stdout": False, "drop": ["$.secret"]}})))
    got = []

    class Sink:
        name = "mem"

        def write(self, record, events):
            got.append(record)
    r.sinks = [Sink()]
    small = monitor.Capture(1 << 20)
    small.add(b'{"secret": "s", "x": 1}')
    large = monitor.Capture(1 << 20)
    large.add(b'{"x": "' + b"y" * 100 + b'"}')
    r.handle(monitor.Seen("/p", 0.0, 0.002, 200, small, large, False, True, "id1"))
    (record,) = got
    assert record["input"] == {"x": 1} and record["output"] is None
    assert record["outputInfo"] == {"truncated": True, "bytes": 109} and record["latencyMs"] == 2.0
    request, response = r.cloudevents(record)
    assert request[0]["ce-type"] == monitor.REQUEST_TYPE and response[0]["ce-type"] == monitor.RESPONSE_TYPE
    assert request[0]["ce-id"] == response[0]["ce-id"] == "id1" and json.loads(request[1]) == {"x": 1}
    assert json.loads(response[0]["ce-kubentoinfo"]) == {"truncated": True, "bytes": 109}


def test_a_full_queue_drops_and_counts():
    class Counted:
        dropped = "dropped"
        n = 0

        def inc(self, counter, labels, n=1.0):
            self.n += n
    r = monitor.Recorder(CONFIG, counters=Counted(), queue_max=1)
    r.thread = object()  # as if running, but taking nothing
    seen = monitor.Seen("/classify", 0, 0, 200, monitor.Capture(1), monitor.Capture(1), True, False)
    r.put(seen)
    r.put(seen)
    r.put(seen)
    assert r.counters.n == 2


def test_files_rotate_by_size_and_age(tmp_path):
    now = [1000.0]
    sink = monitor.FileSink(monitor.Files(str(tmp_path / "d"), max_bytes=100, max_age=60), "pod-1", lambda: now[0])
    for i in range(3):
        sink.write({"i": i, "pad": "x" * 40}, None)  # ~55 bytes each: a new file after two
    now[0] += 61
    sink.write({"i": 3}, None)
    sink.close()
    files = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert len(files) == 3 and all(f.startswith(f"pod-1-{os.getpid()}-") for f in files)
    ordered = sorted((tmp_path / "d").iterdir(), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    lines = [json.loads(line) for f in ordered for line in f.read_text().splitlines()]
    assert [r["i"] for r in lines] == [0, 1, 2, 3]


def test_a_long_stdout_line_is_written_whole(tmp_path):
    read, write = os.pipe()
    sink = monitor.StdoutSink(write)
    record = {"input": "z" * 100_000}
    import threading
    out = bytearray()
    reader = threading.Thread(target=lambda: out.extend(_drain(read)))
    reader.start()
    sink.write(record, None)
    os.close(write)
    reader.join(10)
    assert json.loads(out) == record and out.endswith(b"\n")


def _drain(fd):
    data = bytearray()
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    return data


def test_a_bad_configuration_means_no_monitoring(monkeypatch, capsys):
    monkeypatch.setenv(monitor.CONFIG_ENV, "{not json")
    assert monitor.config_from_env() is None
    assert "KUBENTO_MONITORING is not usable" in capsys.readouterr().err
    monkeypatch.delenv(monitor.CONFIG_ENV)
    assert monitor.wrap(app) is app
