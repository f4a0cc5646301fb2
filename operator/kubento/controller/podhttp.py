"""HTTP requests to model pods (and through the API server's pod proxy), as
requests to an untrusted peer: what a pod answers is a tenant's input.

- **No redirect is followed.** A 3xx is the answer: it fails the check or
  the scrape with a reason that says so. Following it would let a model make
  the operator fetch any URL it can reach (another tenant's pod, Prometheus,
  a metadata service) and show the answer in the model's status.
- **Every answer is read up to a cap** (``ANSWER_MAX`` for prediction
  checks and comparisons, ``METRICS_MAX`` for ``/metrics``); one byte more
  and the read stops: "answered more than 4 MiB".
- **Every request has a wall-clock deadline** covering connect, headers and
  body (not a timeout per socket read: a pod that drips a byte a second is
  cut off at the deadline like one that says nothing).
- No cookies, no proxies from the environment, no compression (a small
  gzip body must not expand past the cap in one step), a new connection each
  time (the pod's connection state never carries over).

Requests are coroutines on one aiohttp session; kubento.controller.podio
runs them off the reconcile workers.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import Any, Mapping, Optional

import aiohttp
import yarl

from kubento import __version__
from kubento.predictions.expect import Response, shorten

ANSWER_MAX = 1 << 20  # a prediction check's or comparison's answer: 1 MiB
METRICS_MAX = 4 << 20  # a pod's /metrics: 4 MiB (BentoML's for a service with 100 endpoints is ~1.5 MiB)
CONNECTIONS = 32  # requests in flight at once, for the whole operator (bounds memory: 32 x 4 MiB at worst)
LOCATION_SHOWN = 80  # characters of a redirect's target quoted in a reason


def size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n >> 10} KiB"


def session(connections: int = CONNECTIONS, ssl_context: Optional[ssl.SSLContext] = None) -> aiohttp.ClientSession:
    """The session every request to pods goes through (create it inside the running loop)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=connections, ssl=ssl_context or True),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        headers={"User-Agent": f"kubento/{__version__}", "Accept-Encoding": "identity"},
    )


def pod_url(ip: str, port: int, path: str) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}{path}"


async def request(session: aiohttp.ClientSession, url: str, *, method: str = "GET", body: Optional[bytes] = None,
                  deadline: float, cap: int, headers: Optional[Mapping[str, str]] = None,
                  read_header: Optional[str] = None) -> Response:
    """One request; never raises (but for cancellation). ``deadline``: seconds
    for all of it. The answer's body is read up to ``cap`` bytes; the answer
    header ``read_header`` (its first 64 characters) into Response.header."""
    start = time.monotonic()
    sent = dict(headers or {})
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
        sent.setdefault("Accept", "application/json")

    def took() -> float:
        return time.monotonic() - start

    status: Optional[int] = None
    try:
        async with asyncio.timeout(deadline):
            async with session.request(method, yarl.URL(url, encoded=True), data=body, headers=sent,
                                       allow_redirects=False) as resp:
                status = resp.status
                if 300 <= resp.status < 400:
                    where = shorten(resp.headers.get("Location", "") or "nowhere", LOCATION_SHOWN)
                    return Response(resp.status, "", took(),
                                    f"answered a redirect to {where}: kubento does not follow redirects", final=True)
                data = bytearray()
                async for chunk in resp.content.iter_any():
                    data += chunk
                    if len(data) > cap:
                        return Response(resp.status, "", took(),
                                        f"answered more than {size(cap)}: kubento reads at most {size(cap)}", final=True)
                header = shorten(resp.headers.get(read_header, ""), 64) if read_header else ""
                return Response(resp.status, data.decode("utf-8", "replace"), took(), header=header)
    except TimeoutError:
        what = "no complete answer" if status is not None else "no answer"
        return Response(None, "", took(), f"{what} within {deadline:g}s")
    except aiohttp.ClientResponseError as exc:  # a malformed answer (bad status line, headers too long)
        return Response(None, "", took(), f"not an HTTP answer ({shorten(exc.message, 60)})", final=True)
    except (aiohttp.ClientError, OSError) as exc:
        return Response(None, "", took(), _why(exc))


def _why(exc: BaseException) -> str:
    """A connection error in a few words (no traceback, nothing the pod chose beyond a short excerpt)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        return os.strerror(err.errno) if err is not None and err.errno else "the connection failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection closed before an answer"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    return shorten(f"{type(exc).__name__}: {exc}", 80)


def run(job, ssl_context: Optional[ssl.SSLContext] = None):  # noqa: ANN001, ANN201 - for the CLI
    """Run ``job(session)`` to completion in a new event loop (the CLI has none)."""
    async def main():  # noqa: ANN202
        async with session(ssl_context=ssl_context) as s:
            return await job(s)
    return asyncio.run(main())


def through_api_server(api_client) -> tuple[ssl.SSLContext, Any]:  # noqa: ANN001
    """For the CLI: TLS to the API server as the kubernetes client would (its
    CA, client certificate, verification), and a way to a pod through the API
    server's pod proxy with the client's own credentials (token, exec plugin)."""
    import certifi

    cfg = api_client.configuration
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert or certifi.where())
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    async def send(s: aiohttp.ClientSession, namespace: str, pod: str, port: int, path: str, *, method: str = "GET",
                   body: Optional[bytes] = None, deadline: float, cap: int) -> Response:
        _, url, headers, _, _ = api_client.param_serialize(
            method, f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}", auth_settings=["BearerToken"])
        return await request(s, url, method=method, body=body, deadline=deadline, cap=cap, headers=headers)
    return ctx, send

