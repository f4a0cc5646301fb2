"""BentoML task endpoints (``@bentoml.task``) behind a Service of many replicas.

BentoML keeps a task's status and result in a SQLite file of the server that
ran it ($BENTOML_HOME/task_result.db, emptied at start). Behind a Service a
client's ``GET /<task>/status?task_id=...`` lands on any replica: on another
one it is ``404 task_id not found``.

kubento's model server (kubento.runtime.worker installs ``TaskRouting`` in
every BentoML HTTP worker) fixes that without a shared store:

- **ids carry their owner**: the answer to ``POST /<task>/submit`` (and to
  ``retry``) gets the id ``kt1-<owner ip, hex>-<port>-<BentoML's id>``, the
  address its peers reach this server at (the pod IP from /etc/hosts and
  BENTOML_PORT, or ``KUBENTO_TASK_ADDRESS``).
- **foreign ids are forwarded**: ``status``/``get``/``cancel``/``retry`` of an
  id another replica owns are sent to that replica (directly to the pod, so a
  stopping pod that left the Service still answers) and its answer relayed.
  The address comes from a client, so it is not followed blindly: the same
  port as this server's, an address of the same kind (pod network: a private
  address, never loopback, link-local or public), no redirects, no proxy, a
  deadline and a size limit, one hop, and an answer is relayed only if the
  owner says it is a kubento task server at that address (``OWNER_HEADER``).
- **an owner that is gone** (its pod stopped, nothing answers there) makes the
  task ``failed`` with a message, never ``in_progress`` forever; ``get`` is
  ``410 Gone``.
- **a stopping server lingers**: at SIGTERM it keeps serving (saying
  ``Connection: close``, kubento.runtime.drain) until its tasks in progress
  are done and every completed result has been fetched once, or
  ``KUBENTO_TASK_LINGER_SECONDS`` (default 25: within the pod's default grace
  of 35 s, minus the preStop pause) have passed.

Plain BentoML ids (a server started without kubento's helper) pass through
unchanged. Standard library here; httpx (BentoML's own HTTP client) is imported
by the forwarder only, inside BentoML's worker.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import socket
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Union
from urllib.parse import parse_qsl, urlencode

ADDRESS_ENV = "KUBENTO_TASK_ADDRESS"
LINGER_ENV = "KUBENTO_TASK_LINGER_SECONDS"
LIMIT_ENV = "KUBENTO_TASK_RESULT_LIMIT_BYTES"
DEFAULT_LINGER_SECONDS = 25.0
DEFAULT_RESULT_LIMIT = 64 * 1024 * 1024
ANSWER_LIMIT = 64 * 1024  # a submit/status/retry answer rewritten here: a small JSON object
CONNECT_SECONDS = 3.0  # a pod that is gone does not answer: fail fast, report it
READ_SECONDS = 60.0
LINGER_POLL_SECONDS = 0.2

PREFIX = "kt1"
OWNER_HEADER = "x-kubento-task-owner"  # on every task answer: the address of the server that owns the id
FORWARDED_HEADER = "x-kubento-task-forwarded"  # one hop: a forwarded call is never forwarded again
RELAYED_HEADERS = ("content-type", "content-disposition", "content-encoding", OWNER_HEADER)

IP = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_INNER = re.compile(r"[0-9A-Za-z_]{1,128}")
_PUBLIC = re.compile(rf"{PREFIX}-([0-9a-f]{{8}}|[0-9a-f]{{32}})-([0-9]{{1,5}})-([0-9A-Za-z_]{{1,128}})")
# BentoML's routes of a task endpoint <route>: the call that creates a task, and those that name one
SUBMIT = ("POST", "submit")
NAMED = {("GET", "status"), ("GET", "get"), ("PUT", "cancel"), ("POST", "retry")}


@dataclass(frozen=True)
class Address:
    ip: IP
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"

    def url(self) -> str:
        return f"http://{self}"


def encode(owner: Address, inner: str) -> str:
    """The id a client sees for BentoML's task ``inner`` on ``owner``."""
    return f"{PREFIX}-{owner.ip.packed.hex()}-{owner.port}-{inner}"


def decode(public: str) -> Optional[tuple[Address, str]]:
    """(owner, BentoML's id) of an id ``encode`` made; None for any other string."""
    m = _PUBLIC.fullmatch(public)
    if not m:
        return None
    port = int(m.group(2))
    if not 0 < port < 65536:
        return None
    return Address(ipaddress.ip_address(bytes.fromhex(m.group(1))), port), m.group(3)


def forward_refusal(own: Address, owner: Address) -> Optional[str]:
    """Why a call for a task of ``owner`` is not sent there from ``own``; None: it may be.
    The owner comes from a client's id: only a peer's address is acceptable."""
    if owner.port != own.port:
        return f"its port {owner.port} is not this model's port {own.port}"
    if owner.ip.version != own.ip.version:
        return "its address is not of this pod's IP family"
    if own.ip.is_loopback:  # a server on one machine (development, tests): its peers are too
        return None if owner.ip.is_loopback else "its address is not on this machine"
    bad = (owner.ip.is_loopback or owner.ip.is_link_local or owner.ip.is_multicast
           or owner.ip.is_unspecified or owner.ip.is_reserved or not owner.ip.is_private)
    return "its address is not a pod address" if bad else None


def task_call(method: str, path: str) -> Optional[str]:
    """'submit', 'status', 'get', 'cancel' or 'retry' when ``method path`` may be
    BentoML's route of a task endpoint; None otherwise."""
    head, _, last = path.rstrip("/").rpartition("/")
    if not head:
        return None
    if (method, last) == SUBMIT or (method, last) in NAMED:
        return last
    return None


def own_address() -> Optional[Address]:
    """Where peers reach this server: ``KUBENTO_TASK_ADDRESS`` (host:port), or
    this pod's IP (its hostname in /etc/hosts) and BENTOML_PORT. None when
    neither gives a usable address (then ids are BentoML's own)."""
    told = os.environ.get(ADDRESS_ENV, "").strip()
    try:
        if told:
            host, _, port = told.rpartition(":")
            return Address(ipaddress.ip_address(host.strip("[]")), int(port))
        port = int(os.environ.get("BENTOML_PORT") or 3000)
        for info in socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM):
            ip = ipaddress.ip_address(info[4][0])
            if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
                return Address(ip, port)
    except (ValueError, OSError) as exc:
        print(f"kubento: no address for task ids ({ADDRESS_ENV}={told!r}: {exc}): "
              "task ids are BentoML's own, valid on this replica only", file=sys.stderr, flush=True)
    return None


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return max(0.0, float(raw)) if raw else default
    except ValueError:
        print(f"kubento: {name}={raw!r} is not a number: {default:g}", file=sys.stderr, flush=True)
        return default


def result_store() -> Path:
    """BentoML's task database (BentoMLContainer.result_store_file's rule)."""
    told = os.environ.get("BENTOML_RESULT_STORE")
    if told:
        return Path(told)
    home = os.environ.get("BENTOML_HOME") or str(Path.home() / "bentoml")
    return Path(home) / "task_result.db"


# --- what a stopping server waits for -------------------------------------------------------------
# kubento never writes into BentoML's database: a write from another connection makes BentoML's own
# next write fail at once ("database is locked": its connection holds a read snapshot, and SQLite
# does not wait then), and its task stays in_progress. Fetched results are kept in a file of kubento's.


def fetched_store(store: Path) -> Path:
    return store.with_name("kubento-task-fetched.db")


def mark_fetched(store: Path, inner: str) -> None:
    """Record that a client got task ``inner``'s result (kubento's own database beside BentoML's)."""
    with sqlite3.connect(fetched_store(store), timeout=5) as db:
        db.execute("CREATE TABLE IF NOT EXISTS fetched (task_id TEXT PRIMARY KEY)")
        db.execute("INSERT OR IGNORE INTO fetched (task_id) VALUES (?)", (inner,))


def unfinished(store: Path) -> int:
    """Tasks of this server still running, or completed and never fetched (BentoML's database only read)."""
    if not store.exists():
        return 0
    try:
        db = sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='result'").fetchone():
                return 0
            rows = db.execute("SELECT task_id, status FROM result WHERE status IN ('in_progress', 'completed')")
            running, completed = 0, set()
            for task_id, status in rows:
                if status == "in_progress":
                    running += 1
                else:
                    completed.add(task_id)
        finally:
            db.close()
        if completed and fetched_store(store).exists():
            with sqlite3.connect(fetched_store(store), timeout=5) as mine:
                if mine.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='fetched'").fetchone():
                    completed -= {r[0] for r in mine.execute("SELECT task_id FROM fetched")}
        return running + len(completed)
    except sqlite3.Error as exc:
        print(f"kubento: cannot read the task database {store}: {exc}", file=sys.stderr, flush=True)
        return 0


async def linger(store: Path, seconds: float, stop: Callable[[], bool] = lambda: False) -> tuple[float, int]:
    """Wait until ``unfinished`` is 0, ``seconds`` passed or ``stop()``: (seconds waited, tasks left)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    left = await asyncio.to_thread(unfinished, store)
    while left and loop.time() - start < seconds and not stop():
        await asyncio.sleep(LINGER_POLL_SECONDS)
        left = await asyncio.to_thread(unfinished, store)
    return loop.time() - start, left


# --- the middleware --------------------------------------------------------------------------------

async def _answer(send: Send, status: int, body: dict[str, Any], owner: Optional[Address] = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if owner is not None:
        headers.append((OWNER_HEADER.encode(), str(owner).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _with_task_id(scope: Scope, task_id: str) -> Scope:
    query = [(k, task_id if k == "task_id" else v)
             for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)]
    return {**scope, "query_string": urlencode(query).encode("latin-1")}


def _task_id(scope: Scope) -> Optional[str]:
    for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if k == "task_id":
            return v
    return None


class TaskRouting:
    """ASGI middleware around BentoML's app: see the module's doc."""

    def __init__(self, app: ASGIApp, own: Address, store: Optional[Path] = None,
                 result_limit: Optional[int] = None):
        self.app = app
        self.own = own
        self.store = store or result_store()
        self.result_limit = result_limit if result_limit is not None else int(
            _seconds(LIMIT_ENV, DEFAULT_RESULT_LIMIT))
        self._client: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = task_call(scope.get("method", ""), scope.get("path", "")) if scope.get("type") == "http" else None
        if call is None:
            await self.app(scope, receive, send)
            return
        if call == "submit":
            await self.app(scope, receive, self._owned_answer(send))
            return
        public = _task_id(scope)
        parsed = decode(public) if public else None
        if parsed is None:  # BentoML's own id (or none): as BentoML answers it
            await self.app(scope, receive, send)
            return
        owner, inner = parsed
        if owner == self.own:
            local = _with_task_id(scope, inner)
            if call == "get":
                await self.app(local, receive, self._fetched_answer(send, inner))
            else:
                await self.app(local, receive, self._owned_answer(send))
            return
        headers = dict(scope.get("headers") or [])
        if FORWARDED_HEADER.encode() in headers:
            await _answer(send, 404, {"error": f"task_id not found: {owner} does not own it here ({self.own})"},
                          self.own)
            return
        refusal = forward_refusal(self.own, owner)
        if refusal:
            await _answer(send, 404, {"error": f"task_id not found: it names {owner}, and {refusal}"})
            return
        await self._forward(call, scope, receive, send, owner, public or "")

    def _owned_answer(self, send: Send) -> Send:
        """``send`` with the JSON answer's ``task_id`` made this server's public id, and the owner header."""
        start: Optional[Message] = None
        chunks: list[bytes] = []
        size = 0
        passing = False

        async def rewrite(message: Message) -> None:
            nonlocal start, size, passing
            if message["type"] == "http.response.start":
                start = {**message, "headers": [*message.get("headers", []),
                                                (OWNER_HEADER.encode(), str(self.own).encode())]}
                return
            if message["type"] != "http.response.body" or passing or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > ANSWER_LIMIT:  # not the small JSON of a task answer: as it is
                passing = True
                await send(start)
                await send({"type": "http.response.body", "body": b"".join(chunks),
                            "more_body": message.get("more_body", False)})
                return
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict) and isinstance(data.get("task_id"), str) and _INNER.fullmatch(data["task_id"]):
                data["task_id"] = encode(self.own, data["task_id"])
                body = json.dumps(data).encode()
                start["headers"] = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                start["headers"].append((b"content-length", str(len(body)).encode()))
            await send(start)
            await send({"type": "http.response.body", "body": body})

        return rewrite

    def _fetched_answer(self, send: Send, inner: str) -> Send:
        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (OWNER_HEADER.encode(), str(self.own).encode())]}
                if message.get("status") == 200:
                    try:
                        await asyncio.to_thread(mark_fetched, self.store, inner)
                    except sqlite3.Error as exc:
                        print(f"kubento: cannot record task {inner} as fetched: {exc}", file=sys.stderr, flush=True)
            await send(message)

        return record

    def client(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                follow_redirects=False, trust_env=False,
                timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
        return self._client

    async def _forward(self, call: str, scope: Scope, receive: Receive, send: Send,
                       owner: Address, public: str) -> None:
        import httpx

        body = b""
        while True:  # status/get/cancel/retry carry no body; read what there is, bounded
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if len(body) > ANSWER_LIMIT:
                await _answer(send, 413, {"error": "a task call's body is at most 64 KiB"})
                return
            if not message.get("more_body"):
                break
        headers = {FORWARDED_HEADER: str(self.own)}
        for name, value in scope.get("headers") or []:
            if name.lower() in (b"accept", b"content-type", b"authorization"):
                headers[name.decode("latin-1")] = value.decode("latin-1")
        url = f"{owner.url()}{scope.get('path', '')}?{urlencode({'task_id': public})}"
        started = False
        try:
            async with self.client().stream(scope["method"], url, headers=headers, content=body) as resp:
                if resp.headers.get(OWNER_HEADER) != str(owner):
                    await _answer(send, 502, {"error": f"{owner} is not a kubento task server of this model"})
                    return
                length = resp.headers.get("content-length", "")
                if not length.isdigit() or int(length) > self.result_limit:
                    await _answer(send, 502, {"error": f"the answer of {owner} is larger than "
                                                       f"{self.result_limit} bytes ({LIMIT_ENV}), or of no length"})
                    return
                relayed = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()
                           if k.lower() in RELAYED_HEADERS]
                relayed.append((b"content-length", length.encode()))
                await send({"type": "http.response.start", "status": resp.status_code, "headers": relayed})
                started = True
                sent = 0
                async for chunk in resp.aiter_raw():  # streamed: a large result is not held here
                    sent += len(chunk)
                    if sent > int(length):
                        raise RuntimeError(f"{owner} sent more than the {length} bytes it announced")
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except httpx.HTTPError as exc:
            if started:  # cut in the middle: the client sees a short answer, never a second one
                raise
            if not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                await _answer(send, 504, {"error": f"{owner}, which owns this task, did not answer in time: "
                                                   f"{type(exc).__name__}"})
                return
            # Nothing to connect to: the pod is gone, and its tasks with it.
            gone = (f"the replica that ran this task ({owner}) has stopped or does not answer; "
                    "its result is lost: submit it again")
            if call == "status":
                await _answer(send, 200, {"task_id": public, "status": "failed", "error": gone})
            else:
                await _answer(send, 410, {"error": gone})


def install() -> bool:
    """In this process, every uvicorn.Config serves its app through TaskRouting
    (inside kubento.runtime.drain's middleware when drain was installed first),
    and uvicorn.Server.shutdown lingers for this server's tasks first. False
    (ids stay BentoML's) without an address for this server."""
    own = own_address()
    if own is None:
        return False
    import uvicorn

    from kubento.runtime import drain

    config_init = uvicorn.Config.__init__
    shutdown = getattr(uvicorn.Server, "shutdown", None)
    if getattr(config_init, "_kubento_tasks", False):
        return True
    if shutdown is None or not asyncio.iscoroutinefunction(shutdown):
        print("kubento: uvicorn.Server has no async shutdown(): task ids stay BentoML's", file=sys.stderr, flush=True)
        return False
    wait = _seconds(LINGER_ENV, DEFAULT_LINGER_SECONDS)
    store = result_store()

    def init(self, app, *args, **kwargs):  # type: ignore[no-untyped-def]
        config_init(self, TaskRouting(app, own, store), *args, **kwargs)

    async def lingering_shutdown(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if await asyncio.to_thread(unfinished, store):
            drain.DRAIN.active = True  # keep-alive clients go to a ready replica meanwhile
            took, left = await linger(store, wait, stop=lambda: bool(getattr(self, "force_exit", False)))
            print(f"kubento: waited {took:.1f}s for tasks to finish and be fetched; {left} left",
                  file=sys.stderr, flush=True)
        await shutdown(self, *args, **kwargs)

    init._kubento_tasks = True  # type: ignore[attr-defined]
    uvicorn.Config.__init__ = init  # type: ignore[method-assign]
    uvicorn.Server.shutdown = lingering_shutdown  # type: ignore[method-assign]
    return True
