"""Keep-alive clients leave a stopping model server before it closes their
connection.

A pod that stops waits ``PRESTOP_SECONDS`` in its preStop hook (the endpoint
removal reaches kube-proxy, gateways and client pools), then gets SIGTERM.
BentoML's server (uvicorn) then closes every idle keep-alive connection at once:
a client writing its next request on it at that instant fails (BrokenPipeError,
RemoteDisconnected, ConnectionResetError: one per rolling update for a plain
http.client loop sending every 20 ms).

kubento's model server drains first: at SIGTERM each of BentoML's uvicorn
workers keeps its listening socket and connections open and answers every
request with ``Connection: close`` (DrainMiddleware), so each keep-alive client
gets its next answer and then opens a new connection, which the Service (or a
gateway) sends to a ready pod. When no connection is left (or after
``KUBENTO_DRAIN_SECONDS``, default 2: a client idle that long is closed as
before), uvicorn's own shutdown runs (in-flight requests finish, lifespan
shutdown). The pod spec is unchanged (the same preStop sleep, the same
revision), so this needs nothing but the runtime image.

It gets into BentoML's worker processes through ``serve``: BentoML starts each
worker as ``python -m <_SERVICE_WORKER_SCRIPT> ...``; kubento.runtime.serving
points that at kubento.runtime.worker, which installs this around uvicorn
(``install``) and then runs BentoML's own worker. Standard library only here
(uvicorn is imported by ``install`` only).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Awaitable, Callable

DRAIN_SECONDS_ENV = "KUBENTO_DRAIN_SECONDS"
DEFAULT_DRAIN_SECONDS = 2.0
POLL_SECONDS = 0.05

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Drain:
    """Whether this server process is draining (set once, at shutdown)."""

    def __init__(self) -> None:
        self.active = False


DRAIN = Drain()  # this worker process's (one uvicorn server per BentoML worker)


def drain_seconds() -> float:
    raw = os.environ.get(DRAIN_SECONDS_ENV, "").strip()
    if not raw:
        return DEFAULT_DRAIN_SECONDS
    try:
        return max(0.0, float(raw))
    except ValueError:
        print(f"kubento: {DRAIN_SECONDS_ENV}={raw!r} is not a number: {DEFAULT_DRAIN_SECONDS:g}s",
              file=sys.stderr, flush=True)
        return DEFAULT_DRAIN_SECONDS


class DrainMiddleware:
    """ASGI middleware: while draining, every HTTP answer says
    ``Connection: close`` (uvicorn then closes the connection after it)."""

    def __init__(self, app: ASGIApp, drain: Drain = DRAIN):
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def send_maybe_closing(message: Message) -> None:
            # Decided at the answer's start: a request that began before the
            # drain still closes its connection if it is answered during it.
            if message.get("type") == "http.response.start" and self.drain.active:
                headers = [(k, v) for k, v in message.get("headers") or [] if k.lower() != b"connection"]
                headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_maybe_closing)


async def drain_connections(connections: set, seconds: float, drain: Drain = DRAIN,
                            stop: Callable[[], bool] = lambda: False) -> float:
    """Start draining; return once ``connections`` (uvicorn's live ones) is
    empty, ``seconds`` have passed or ``stop()`` (a forced exit) holds. The
    seconds it took."""
    drain.active = True
    loop = asyncio.get_running_loop()
    start = loop.time()
    while connections and loop.time() - start < seconds and not stop():
        await asyncio.sleep(POLL_SECONDS)
    return loop.time() - start


def install(seconds: float | None = None) -> bool:
    """In this process, every uvicorn.Config serves its app through
    DrainMiddleware, and uvicorn.Server.shutdown drains first. False (and a
    warning) when this uvicorn lacks what it relies on: the server then stops
    as before."""
    import uvicorn

    config_init = uvicorn.Config.__init__
    shutdown = getattr(uvicorn.Server, "shutdown", None)
    if getattr(config_init, "_kubento_drain", False):
        return True
    if shutdown is None or not asyncio.iscoroutinefunction(shutdown):
        print("kubento: uvicorn.Server has no async shutdown(): no drain at stop", file=sys.stderr, flush=True)
        return False
    wait = drain_seconds() if seconds is None else seconds

    def init(self, app, *args, **kwargs):  # type: ignore[no-untyped-def]
        config_init(self, DrainMiddleware(app), *args, **kwargs)

    async def draining_shutdown(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        connections = getattr(getattr(self, "server_state", None), "connections", None)
        if isinstance(connections, set) and connections:
            took = await drain_connections(connections, wait, stop=lambda: bool(getattr(self, "force_exit", False)))
            left = len(connections)
            print(f"kubento: drained keep-alive connections in {took:.2f}s (Connection: close); "
                  f"{left} left to close", file=sys.stderr, flush=True)
        else:
            DRAIN.active = True
        await shutdown(self, *args, **kwargs)

    init._kubento_drain = True  # type: ignore[attr-defined]
    uvicorn.Config.__init__ = init  # type: ignore[method-assign]
    uvicorn.Server.shutdown = draining_shutdown  # type: ignore[method-assign]
    return True
