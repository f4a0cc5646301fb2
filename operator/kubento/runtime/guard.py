"""A BentoML service that another service of its bento calls answers only
its own model's calls.

BentoML's services call each other with ``application/vnd.bentoml+pickle``
bodies, and the called service unpickles them: anyone who reaches a
dependency's port can run code in it. Served in one pod, dependencies listen
on a Unix socket; split into one Deployment per service
(kubento.builders.graph) they listen on the pod network. So each dependency's
pods get the revision's token (``KUBENTO_GRAPH_TOKEN``) and refuse, with 403
and before BentoML reads the body, every request that does not carry it as
``Authorization: Bearer <token>``, which BentoML's client sends on every call
to a dependency (``BENTO_CLOUD_API_KEY``, set to the same token on the
callers). The probes' and Prometheus' paths stay open: they run no code of the
bento's. Standard library only (uvicorn is imported by ``install`` only).
"""

from __future__ import annotations

import hmac
import os
from typing import Any, Awaitable, Callable

TOKEN_ENV = "KUBENTO_GRAPH_TOKEN"
OPEN_PATHS = frozenset({"/readyz", "/livez", "/healthz", "/metrics"})

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REFUSAL = (b'{"error":"this BentoML service answers only the other services of its model '
           b'(kubento: the request has no valid bearer token)"}')


class CallerGuard:
    """ASGI middleware: HTTP requests outside OPEN_PATHS need ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    def allowed(self, scope: Scope) -> bool:
        if scope.get("path") in OPEN_PATHS and scope.get("method") in ("GET", "HEAD"):
            return True
        given = [v for k, v in scope.get("headers") or [] if k.lower() == b"authorization"]
        return len(given) == 1 and hmac.compare_digest(given[0], self.expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "websocket" and not self.allowed(scope):
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope.get("type") != "http" or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(REFUSAL)).encode())]})
        await send({"type": "http.response.body", "body": REFUSAL})


def install() -> bool:
    """With ``KUBENTO_GRAPH_TOKEN`` set, every uvicorn.Config of this process
    serves its app behind CallerGuard (outermost when installed first)."""
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        return False
    import uvicorn

    config_init = uvicorn.Config.__init__
    if getattr(config_init, "_kubento_guard", False):
        return True

    def init(self, app, *args, **kwargs):  # type: ignore[no-untyped-def]
        config_init(self, CallerGuard(app, token), *args, **kwargs)

    init._kubento_guard = True  # type: ignore[attr-defined]
    uvicorn.Config.__init__ = init  # type: ignore[method-assign]
    return True
