"""What goes in and what comes out, measured where requests are seen: in the
model server's own processes.

kubento's model server (``python -m kubento.runtime serve``) starts BentoML's
HTTP workers from kubento.runtime.worker, which installs ``MonitorMiddleware``
around BentoML's ASGI app in each worker (as kubento.runtime.drain installs
its own: the bento is not changed). It is configured by ``KUBENTO_MONITORING``
(JSON the operator writes from spec.monitoring and the reference profile) and
the pod's ``KUBENTO_NAMESPACE``, ``KUBENTO_POD`` and ``KUBENTO_REVISION``.

On the request path it only copies the bodies it needs (up to a cap) as they
pass and hands them, once the answer is sent, to one thread per worker
(``Recorder``) through a bounded queue (full: the request is not recorded,
and ``kubento_monitor_dropped_total`` says so). A request that is neither
sampled nor to the statistics endpoint costs one random draw. The thread:

- **statistics**: every request to ``statistics.endpoint``: each input row's
  features counted in fixed buckets (kubento.runtime.fields), missing ones
  counted apart; each output row of a 2xx answer likewise. Prometheus counters
  in BentoML's own multiprocess registry, so they appear on the pod's
  ``/metrics`` beside BentoML's (``kubento_input_total{feature, bucket}``,
  ``kubento_input_missing_total{feature}``, ``kubento_output_total{bucket}``,
  ``kubento_output_missing_total``, ``kubento_monitor_rows_total{side}``);
  labels are names from the configuration only;
- **payload records** of the sampled requests (``sampleRate``): time, model,
  namespace, revision, pod, request id, endpoint, input, output, status,
  latency; fields dropped or hashed; a body over ``maxBytes`` recorded by its
  size only. Sinks: JSON lines on stdout (one write each, under a lock shared
  by the pod's workers so that long lines never interleave), CloudEvents to
  an HTTP receiver (binary mode, KServe's logger event types), JSON lines
  files rotated by size and age.

Standard library only (prometheus_client, part of BentoML's server, is
imported by ``install`` only).
"""

from __future__ import annotations

import atexit
import bisect
import collections
import datetime
import fcntl
import http.client
import json
import math
import os
import queue
import random
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from kubento.runtime import fields

CONFIG_ENV = "KUBENTO_MONITORING"
QUEUE_MAX = 4096  # requests waiting for the recorder thread, per worker
STATS_BODY_MAX = 1 << 20  # a body larger than this is not parsed for statistics (counted as skipped)
REQUEST_ID_MAX = 128
REQUEST_TYPE = "org.kubeflow.serving.inference.request"  # KServe's logger event types
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
RECORD_KIND = "kubento.payload/v1"
# Not the model's API (as kubento.rollout.analysis.is_infra): probes, metrics, docs.
INFRA_NAMES = frozenset({"livez", "readyz", "healthz", "metrics", "docs.json", "schema.json"})
INFRA_DIRS = frozenset({"static_content", "assets"})

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_infra(path: str) -> bool:
    segments = [s for s in path.split("/") if s]
    return not segments or segments[-1] in INFRA_NAMES or any(s in INFRA_DIRS for s in segments)


# ------------------------------------------------------------ configuration


@dataclass(frozen=True)
class Field:
    name: str
    path: fields.Path
    kind: str  # numeric | categorical
    bounds: tuple[float, ...] = ()
    categories: frozenset[str] = frozenset()

    @classmethod
    def of(cls, wire: dict[str, Any], name: str = "") -> "Field":
        return cls(wire.get("name", name), fields.compile_path(wire.get("path", "$")), wire.get("type", "numeric"),
                   tuple(float(b) for b in wire.get("buckets") or ()), frozenset(wire.get("categories") or ()))

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(fields.numeric_labels(self.bounds)))

    def bucket(self, value: Any) -> Optional[str]:
        """fields.bucket_of, with the labels made once (this runs for every value of every row)."""
        if self.kind == "numeric":
            if value.__class__ is float or value.__class__ is int:
                if value == value and value not in (math.inf, -math.inf):
                    return self.labels[bisect.bisect_left(self.bounds, value)]  # type: ignore[attr-defined]
                return None
        return fields.bucket_of(value, self.kind, self.bounds, self.categories)


@dataclass(frozen=True)
class Statistics:
    endpoint: str
    input_rows: Optional[fields.Path]
    inputs: tuple[Field, ...]
    output_rows: Optional[fields.Path]
    output: Optional[Field]


@dataclass(frozen=True)
class Files:
    directory: str
    max_bytes: int
    max_age: float


@dataclass(frozen=True)
class Payloads:
    rate: float
    max_bytes: int
    drop: tuple[fields.Path, ...] = ()
    hashed: tuple[fields.Path, ...] = ()
    endpoints: frozenset[str] = frozenset()  # empty: every API endpoint
    stdout: bool = True
    http_url: Optional[str] = None
    http_timeout: float = 2.0
    files: Optional[Files] = None


@dataclass(frozen=True)
class Config:
    model: str = ""
    namespace: str = ""
    revision: str = ""
    pod: str = ""
    statistics: Optional[Statistics] = None
    payloads: Optional[Payloads] = None

    @classmethod
    def parse(cls, text: str, environ: Optional[dict[str, str]] = None) -> "Config":
        """The configuration from ``KUBENTO_MONITORING``'s JSON (ValueError when it is not one)."""
        env = os.environ if environ is None else environ
        wire = json.loads(text)
        if not isinstance(wire, dict):
            raise ValueError(f"{CONFIG_ENV} is not a JSON object")
        stats = payloads = None
        if wire.get("statistics"):
            s = wire["statistics"]
            stats = Statistics(
                s["endpoint"],
                fields.compile_path(s["inputRows"]) if s.get("inputRows") else None,
                tuple(Field.of(f) for f in s.get("inputs") or ()),
                fields.compile_path(s["outputRows"]) if s.get("outputRows") else None,
                Field.of(s["output"], "output") if s.get("output") else None,
            )
        if wire.get("payloads"):
            p = wire["payloads"]
            files = p.get("files")
            payloads = Payloads(
                float(p.get("sampleRate", 0.0)), int(p.get("maxBytes", 16384)),
                tuple(fields.compile_path(x) for x in p.get("drop") or ()),
                tuple(fields.compile_path(x) for x in p.get("hash") or ()),
                frozenset(p.get("endpoints") or ()), bool(p.get("stdout", True)),
                (p.get("http") or {}).get("url"), float((p.get("http") or {}).get("timeout", 2.0)),
                Files(files["dir"], int(files["maxBytes"]), float(files["maxAge"])) if files else None,
            )
        return cls(wire.get("model", ""), env.get("KUBENTO_NAMESPACE", ""), env.get("KUBENTO_REVISION", ""),
                   env.get("KUBENTO_POD", ""), stats, payloads)


# ------------------------------------------------------------- the request


class Capture:
    """A body as it passes, kept up to ``cap`` bytes (its size counted in full)."""

    __slots__ = ("cap", "data", "size")

    def __init__(self, cap: int) -> None:
        self.cap, self.data, self.size = cap, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if len(self.data) <= self.cap:
            self.data += chunk[: self.cap + 1 - len(self.data)]

    @property
    def whole(self) -> bool:
        return self.size <= self.cap


@dataclass
class Seen:
    """One request as the recorder gets it."""

    path: str
    started: float  # wall clock
    seconds: float
    status: int
    request: Capture
    response: Capture
    stats: bool
    sampled: bool
    request_id: str = ""
    content_type: str = ""
    response_type: str = ""


def _header(scope: Scope, name: bytes) -> str:
    for k, v in scope.get("headers") or ():
        if k.lower() == name:
            return v.decode("latin-1")
    return ""


def request_id(scope: Scope) -> str:
    given = _header(scope, b"x-request-id")
    if given and len(given) <= REQUEST_ID_MAX and given.isprintable():
        return given
    return uuid.uuid4().hex


class MonitorMiddleware:
    """ASGI middleware: copies what the recorder needs of each request it
    monitors and hands it over once the answer is sent."""

    def __init__(self, app: ASGIApp, config: Config, recorder: "Recorder",
                 draw: Callable[[], float] = random.random) -> None:
        self.app, self.recorder, self.draw = app, recorder, draw
        self.endpoint = config.statistics.endpoint if config.statistics else None
        p = config.payloads
        self.rate = p.rate if p else 0.0
        self.endpoints = p.endpoints if p else frozenset()
        self.payload_cap = p.max_bytes if p else 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path") or "/"
        stats = path == self.endpoint
        sampled = (self.rate > 0 and (not self.endpoints or path in self.endpoints) and self.draw() < self.rate
                   and not is_infra(path))
        if not stats and not sampled:
            await self.app(scope, receive, send)
            return
        cap = max(STATS_BODY_MAX if stats else 0, self.payload_cap if sampled else 0)
        seen = Seen(path, time.time(), 0.0, 500, Capture(cap), Capture(cap), stats, sampled,
                    request_id(scope) if sampled else "", _header(scope, b"content-type"))
        start = time.perf_counter()
        done = False

        async def receiving() -> Message:
            message = await receive()
            if message.get("type") == "http.request":
                seen.request.add(message.get("body") or b"")
            return message

        async def sending(message: Message) -> None:
            nonlocal done
            kind = message.get("type")
            if kind == "http.response.start":
                seen.status = int(message.get("status") or 500)
                for k, v in message.get("headers") or ():
                    if k.lower() == b"content-type":
                        seen.response_type = v.decode("latin-1")
            elif kind == "http.response.body":
                seen.response.add(message.get("body") or b"")
            await send(message)
            if kind == "http.response.body" and not message.get("more_body") and not done:
                done = True
                seen.seconds = time.perf_counter() - start
                self.recorder.put(seen)

        try:
            await self.app(scope, receiving, sending)
        finally:
            if not done:  # the app raised, or the client left, before the answer ended
                done = True
                seen.seconds = time.perf_counter() - start
                self.recorder.put(seen)


# ----------------------------------------------------------------- counters


class Counters:
    """The statistics' Prometheus counters (in BentoML's multiprocess
    registry when PROMETHEUS_MULTIPROC_DIR is set), children cached."""

    def __init__(self) -> None:
        import prometheus_client

        c = prometheus_client.Counter
        self.inputs = c("kubento_input", "Input rows' feature values, by bucket (kubento monitoring).",
                        ["feature", "bucket"])
        self.missing = c("kubento_input_missing", "Input rows without the feature (missing, null or not usable).",
                         ["feature"])
        self.outputs = c("kubento_output", "Output rows of 2xx answers, by bucket or class.", ["bucket"])
        self.output_missing = c("kubento_output_missing", "Output rows without a usable answer.", [])
        self.rows = c("kubento_monitor_rows", "Rows counted, by side (input, output).", ["side"])
        self.skipped = c("kubento_monitor_skipped", "Bodies not counted, by why (too_large, not_json).",
                         ["side", "reason"])
        self.dropped = c("kubento_monitor_dropped", "Requests not recorded: the recorder's queue was full.", [])
        self.sampled = c("kubento_payloads_sampled", "Requests sampled for a payload record.", [])
        self.records = c("kubento_payload_records", "Payload records by sink and result (sent, failed).",
                         ["sink", "result"])
        self._children: dict[tuple[Any, ...], Any] = {}

    def inc(self, counter: Any, labels: tuple[str, ...], n: float = 1.0) -> None:
        key = (id(counter), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels) if labels else counter
        child.inc(n)


def _json(capture: Capture) -> tuple[Any, Optional[str]]:
    """(the body's JSON, None) or (None, why it cannot be read)."""
    if not capture.whole:
        return None, "too_large"
    try:
        return json.loads(bytes(capture.data)), None
    except (ValueError, UnicodeDecodeError):
        return None, "not_json"


def count_rows(body: Any, rows: Optional[fields.Path], columns: tuple[Field, ...]
               ) -> tuple[collections.Counter, collections.Counter, int]:
    """(bucket counts by (name, label), missing counts by name, rows) of one body."""
    found = fields.select(body, rows) if rows is not None else [body]
    buckets: collections.Counter = collections.Counter()
    missing: collections.Counter = collections.Counter()
    for row in found:
        for col in columns:
            values = fields.select(row, col.path)
            label = col.bucket(values[0]) if values else None
            if label is None:
                missing[col.name] += 1
            else:
                buckets[(col.name, label)] += 1
    return buckets, missing, len(found)


# ------------------------------------------------------------------- sinks


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="microseconds") \
        .replace("+00:00", "Z")


class StdoutSink:
    """One JSON line per record, written whole: a line longer than the pipe's
    atomic size is written under a lock file the pod's workers share."""

    name = "stdout"

    def __init__(self, fd: int = 1) -> None:
        self.fd = fd
        self.lock_path = os.path.join(tempfile.gettempdir(), "kubento-stdout.lock")

    def write(self, record: dict[str, Any], events: Any) -> None:
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        if len(line) <= 4096:  # PIPE_BUF: atomic
            os.write(self.fd, line)
            return
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            view = memoryview(line)
            while view:
                view = view[os.write(self.fd, view):]


class HTTPSink:
    """CloudEvents in HTTP binary mode, one POST per event, on a kept-alive
    connection (a new one after any failure); no redirect is followed."""

    name = "http"

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self.conn: Optional[http.client.HTTPConnection] = None

    def _post(self, headers: dict[str, str], body: bytes) -> None:
        if self.conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self.conn = cls(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request("POST", self.path, body=body, headers=headers)
            resp = self.conn.getresponse()
            resp.read(65536)
            if resp.status >= 300:
                raise OSError(f"HTTP {resp.status}")
            if (resp.getheader("connection") or "").lower() == "close":
                self.close()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def write(self, record: dict[str, Any], events: list[tuple[dict[str, str], bytes]]) -> None:
        for headers, body in events:
            self._post(headers, body)


class FileSink:
    """JSON lines in ``directory``, one file per process at a time
    (<pod>-<pid>-<start>-<n>.jsonl), closed past ``max_bytes`` or ``max_age``."""

    name = "files"

    def __init__(self, files: Files, pod: str, clock: Callable[[], float] = time.time) -> None:
        self.files, self.pod, self.clock = files, pod or "pod", clock
        self.handle: Optional[Any] = None
        self.opened = 0.0
        self.written = 0
        self.files_made = 0

    def _rotate(self) -> None:
        if self.handle is not None:
            self.handle.close()
        os.makedirs(self.files.directory, exist_ok=True)
        self.opened = self.clock()
        stamp = datetime.datetime.fromtimestamp(self.opened, datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.files_made += 1
        path = os.path.join(self.files.directory, f"{self.pod}-{os.getpid()}-{stamp}-{self.files_made}.jsonl")
        self.handle = open(path, "ab")
        self.written = 0

    def write(self, record: dict[str, Any], events: Any) -> None:
        if (self.handle is None or self.written >= self.files.max_bytes
                or self.clock() - self.opened >= self.files.max_age):
            self._rotate()
        assert self.handle is not None
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        self.handle.write(line)
        self.handle.flush()
        self.written += len(line)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


# ----------------------------------------------------------------- recorder


@dataclass
class Recorder:
    """The worker's thread that counts and records what the middleware saw."""

    config: Config
    counters: Optional[Counters] = None
    sinks: list[Any] = field(default_factory=list)
    queue_max: int = QUEUE_MAX

    def __post_init__(self) -> None:
        self.queue: queue.Queue = queue.Queue(self.queue_max)
        self.thread: Optional[threading.Thread] = None
        self.lock = threading.Lock()
        p = self.config.payloads
        self.salt = f"{self.config.namespace}/{self.config.model}"
        if p is not None and not self.sinks:
            if p.stdout:
                self.sinks.append(StdoutSink())
            if p.http_url:
                self.sinks.append(HTTPSink(p.http_url, p.http_timeout))
            if p.files is not None:
                self.sinks.append(FileSink(p.files, self.config.pod))

    def put(self, seen: Seen) -> None:
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._run, name="kubento-monitor", daemon=True)
                    self.thread.start()
        try:
            self.queue.put_nowait(seen)
        except queue.Full:
            if self.counters is not None:
                self.counters.inc(self.counters.dropped, ())

    def _run(self) -> None:
        while True:
            seen = self.queue.get()
            if seen is None:
                return
            try:
                self.handle(seen)
            except Exception as exc:  # noqa: BLE001 - never stop counting for one bad request
                print(f"kubento monitor: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def close(self, timeout: float = 2.0) -> None:
        """Let the queue drain (at most ``timeout``), then close the sinks."""
        if self.thread is not None:
            try:
                self.queue.put(None, timeout=timeout)
            except queue.Full:
                pass
            self.thread.join(timeout)
        for sink in self.sinks:
            if hasattr(sink, "close"):
                sink.close()

    def handle(self, seen: Seen) -> None:
        request, why = _json(seen.request) if seen.request.size else (None, "empty")
        response, out_why = (None, None)
        if seen.stats or seen.sampled:
            response, out_why = _json(seen.response) if seen.response.size else (None, "empty")
        if seen.stats and self.config.statistics is not None:
            self.count(request, why, response, out_why, seen.status)
        if seen.sampled:
            self.record(seen, request, why, response, out_why)

    def count(self, request: Any, why: Optional[str], response: Any, out_why: Optional[str], status: int) -> None:
        stats, c = self.config.statistics, self.counters
        assert stats is not None
        if c is None:
            return
        if why is None:
            buckets, missing, rows = count_rows(request, stats.input_rows, stats.inputs)
            for (name, label), n in buckets.items():
                c.inc(c.inputs, (name, label), n)
            for name, n in missing.items():
                c.inc(c.missing, (name,), n)
            c.inc(c.rows, ("input",), rows)
        else:
            c.inc(c.skipped, ("input", why))
        if stats.output is None or not 200 <= status < 300:
            return
        if out_why is None:
            buckets, missing, rows = count_rows(response, stats.output_rows, (stats.output,))
            for (_, label), n in buckets.items():
                c.inc(c.outputs, (label,), n)
            if missing:
                c.inc(c.output_missing, (), sum(missing.values()))
            c.inc(c.rows, ("output",), rows)
        else:
            c.inc(c.skipped, ("output", out_why))

    def _body(self, value: Any, why: Optional[str], capture: Capture) -> tuple[Any, dict[str, Any]]:
        p = self.config.payloads
        assert p is not None
        if why is None:
            return fields.redact(value, p.drop, p.hashed, self.salt), {}
        if why == "empty":
            return None, {}
        if why == "too_large" or capture.size > p.max_bytes:
            return None, {"truncated": True, "bytes": capture.size}
        return None, {"notJSON": True, "bytes": capture.size}

    def record(self, seen: Seen, request: Any, why: Optional[str], response: Any, out_why: Optional[str]) -> None:
        cfg, c = self.config, self.counters
        if c is not None:
            c.inc(c.sampled, ())
        p = cfg.payloads
        assert p is not None
        # The payload cap may be below the statistics' capture: judge it again.
        if why is None and seen.request.size > p.max_bytes:
            why = "too_large"
        if out_why is None and seen.response.size > p.max_bytes:
            out_why = "too_large"
        inp, inp_note = self._body(request, why, seen.request)
        out, out_note = self._body(response, out_why, seen.response)
        record: dict[str, Any] = {
            "kind": RECORD_KIND, "time": rfc3339(seen.started), "model": cfg.model, "namespace": cfg.namespace,
            "revision": cfg.revision, "pod": cfg.pod, "id": seen.request_id, "endpoint": seen.path,
            "status": seen.status, "latencyMs": round(seen.seconds * 1000, 3), "input": inp, "output": out,
        }
        if inp_note:
            record["inputInfo"] = inp_note
        if out_note:
            record["outputInfo"] = out_note
        events = self.cloudevents(record) if any(isinstance(s, HTTPSink) for s in self.sinks) else []
        for sink in self.sinks:
            try:
                sink.write(record, events)
                result = "sent"
            except Exception as exc:  # noqa: BLE001 - a sink's failure is counted, never raised
                result = "failed"
                print(f"kubento monitor: payload record to {sink.name}: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)
            if c is not None:
                c.inc(c.records, (sink.name, result))

    def cloudevents(self, record: dict[str, Any]) -> list[tuple[dict[str, str], bytes]]:
        """The request and response events of a record, as KServe's logger sends them."""
        common = {
            "ce-specversion": "1.0", "ce-id": record["id"], "ce-time": record["time"],
            "ce-source": f"http://{record['pod'] or 'localhost'}/kubento",
            "ce-inferenceservicename": record["model"], "ce-namespace": record["namespace"],
            "ce-component": "predictor", "ce-endpoint": record["endpoint"],
            "ce-modelrevision": record["revision"], "ce-httpstatus": str(record["status"]),
            "ce-latencyms": str(record["latencyMs"]),
        }
        out = []
        for kind, key in ((REQUEST_TYPE, "input"), (RESPONSE_TYPE, "output")):
            info = record.get(f"{key}Info")
            headers = {**common, "ce-type": kind, "Content-Type": "application/json"}
            if info:
                headers["ce-kubentoinfo"] = json.dumps(info, separators=(",", ":"))
            out.append((headers, json.dumps(record[key], separators=(",", ":"), ensure_ascii=False).encode()))
        return out


# ------------------------------------------------------------------ install


def config_from_env() -> Optional[Config]:
    text = os.environ.get(CONFIG_ENV, "").strip()
    if not text:
        return None
    try:
        return Config.parse(text)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"kubento monitor: {CONFIG_ENV} is not usable ({type(exc).__name__}: {exc}): no monitoring",
              file=sys.stderr, flush=True)
        return None


def wrap(app: ASGIApp) -> ASGIApp:
    """``app`` monitored as ``KUBENTO_MONITORING`` says (unchanged without it).
    One recorder per process, made at the first wrap."""
    global _RECORDER
    config = config_from_env()
    if config is None:
        return app
    if _RECORDER is None:
        counters = Counters() if config.statistics or config.payloads else None
        _RECORDER = Recorder(config, counters)
        atexit.register(_RECORDER.close)
    return MonitorMiddleware(app, config, _RECORDER)


_RECORDER: Optional[Recorder] = None


def install() -> bool:
    """In this process, every uvicorn.Config serves its app through
    MonitorMiddleware when ``KUBENTO_MONITORING`` is set (nothing otherwise)."""
    if not os.environ.get(CONFIG_ENV, "").strip():
        return False
    import uvicorn

    config_init = uvicorn.Config.__init__
    if getattr(config_init, "_kubento_monitor", False):
        return True

    def init(self, app, *args, **kwargs):  # type: ignore[no-untyped-def]
        config_init(self, wrap(app), *args, **kwargs)

    init._kubento_monitor = True  # type: ignore[attr-defined]
    uvicorn.Config.__init__ = init  # type: ignore[method-assign]
    return True
