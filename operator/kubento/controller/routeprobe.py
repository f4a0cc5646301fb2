"""Whether a model's Gateways mirror requests: a probe through its route, off
the workers (kubento.controller.podio), before a shadow step puts a
RequestMirror filter on the route's traffic.

A Gateway may accept a route with the standard RequestMirror filter in its
status and still not implement it: Traefik 3 says Accepted and then answers
HTTP 500 to every request of the rule (it mirrors only through its own
TraefikService kind). So before a shadow step, the route carries a probe
rule (``x-kubento-probe: mirror`` to stable, mirroring every request to the
candidate; kubento.builders.route), and kubento sends one GET of the model's
``/readyz`` through it to each Gateway that accepted the route (at its
address in status, else at the route's host name), and one through the ``<header>: stable`` rule (no filter) to tell
the filter from the model. The probe rule marks its answers (the answer
header ``x-kubento-probe: mirror``): an answer without the mark came
through another rule (the Gateway has not programmed the probe rule yet; a
200 from the main rule once passed for a working mirror on Traefik) and is
sent again, like a 404. A marked 2xx through the probe rule: the Gateway
mirrors (or at least the filter breaks nothing); a 5xx there and a 2xx
without it: it does not implement the filter, and the shadow step fails
with MirrorNotSupported before the filter touches a real request. A
Gateway kubento cannot reach (no address, a host name that does not
resolve where the operator runs) gives Unknown: the step goes ahead, and
its analysis shows whether mirrored requests arrive.

The Gateways' addresses are set by whoever runs them (not the model's
tenant); the requests go as every request kubento makes (podhttp: no
redirect followed, capped answers, a deadline).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable, Awaitable

import aiohttp

from kubento.api.traffic import MirrorCheck
from kubento.builders.route import PROBE_HEADER, PROBE_VALUE
from kubento.controller import podhttp

ANSWER_CAP = 64 << 10
DEADLINE = 5.0
ATTEMPTS = 20  # a 404 or an unmarked 2xx: the Gateway has not programmed the rule yet: again, 0.5 s apart
PAUSE = 0.5
UNANSWERED = 2  # attempts when nothing answers (an address not reachable from the operator: Unknown)


@dataclass(frozen=True)
class Target:
    gateway: str  # namespace/name
    base: str  # scheme://address:port
    host: str  # the Host header ('' : none)


def _path(prefix: str) -> str:
    return prefix.rstrip("/") + "/readyz"


def verdict(revision: str, results: list[tuple[Target, Any, Any]]) -> MirrorCheck:
    """The check from each Gateway's (probe, control) answers (podhttp Responses)."""
    lines, states = [], []
    for target, probe, control in results:
        said = lambda r: f"HTTP {r.status}" if r.status is not None else (r.error or "no answer")  # noqa: E731
        if probe.status is not None and 200 <= probe.status < 300 and probe.header != PROBE_VALUE:
            states.append("Unknown")
            lines.append(f"Gateway {target.gateway} answered {said(probe)} without the probe rule's mark "
                         f"({PROBE_HEADER}: {PROBE_VALUE}): through another rule (the probe rule not programmed, "
                         "or the Gateway does not apply ResponseHeaderModifier)")
        elif probe.status is not None and 200 <= probe.status < 300:
            states.append("True")
            lines.append(f"Gateway {target.gateway} answered {said(probe)} through a RequestMirror rule")
        elif probe.status is not None and probe.status >= 500 and control.status is not None and \
                200 <= control.status < 300:
            states.append("False")
            lines.append(f"Gateway {target.gateway} answers {said(probe)} to a request through a rule with the "
                         f"RequestMirror filter and {said(control)} to the same request without it: it does not "
                         "implement the filter (its status said Accepted)")
        else:
            states.append("Unknown")
            lines.append(f"Gateway {target.gateway}: {said(probe)} through the RequestMirror rule, {said(control)} "
                         "without it")
    supported = "False" if "False" in states else ("True" if states and all(s == "True" for s in states) else "Unknown")
    return MirrorCheck(revision=revision, supported=supported, message="; ".join(lines)[:1024])


def unprobed(revision: str) -> MirrorCheck:
    return MirrorCheck(revision=revision, supported="Unknown",
                       message="no Gateway that accepted the route has an address in its status, nor the route a "
                       "host name, to probe: not checked; the shadow step's analysis shows whether mirrored "
                       "requests arrive")


def job(revision: str, targets: list[Target], prefix: str, header: str
        ) -> Callable[[aiohttp.ClientSession], Awaitable[MirrorCheck]]:
    """A podio job: probe each target, then judge."""
    path = _path(prefix)

    async def send(session: aiohttp.ClientSession, target: Target, extra: dict[str, str]) -> Any:
        headers = {**({"Host": target.host} if target.host else {}), **extra}
        return await podhttp.request(session, target.base + path, deadline=DEADLINE, cap=ANSWER_CAP, headers=headers,
                                     read_header=PROBE_HEADER)

    async def run(session: aiohttp.ClientSession) -> MirrorCheck:
        results = []
        for target in targets:
            for attempt in range(ATTEMPTS):
                probe = await send(session, target, {PROBE_HEADER: PROBE_VALUE})
                # 404, or a 2xx without the probe rule's mark: the Gateway has not programmed the rule yet;
                # no answer at all: a few times only
                fell_through = probe.status is not None and 200 <= probe.status < 300 and probe.header != PROBE_VALUE
                if probe.status != 404 and not fell_through and (probe.status is not None or attempt >= UNANSWERED):
                    break
                await asyncio.sleep(PAUSE)
            control = await send(session, target, {header: "stable"})
            results.append((target, probe, control))
        return verdict(revision, results)
    return run
