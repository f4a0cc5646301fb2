"""Prediction checks I/O: send a revision's checks to pods, and the same
inputs to a stable and a new pod. Judging is pure (kubento.predictions).

Each check is one HTTP request on a new connection, straight to the pod's IP
(the Service does not select the pod yet: that is the point), through
kubento.controller.podhttp: no redirect followed, the answer read up to
ANSWER_MAX, the check's ``timeout`` a deadline for the whole request. A
model's pods are checked a few at a time; one pod's checks run one after the
other. The operator runs these as jobs off its workers
(kubento.controller.podio); ``kubento check`` runs them through the API
server's pod proxy with another sender.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

import aiohttp

from kubento.api.v1alpha1 import Agreement, PredictionChecks, duration_seconds
from kubento.controller import podhttp
from kubento.controller.podio import limited
from kubento.predictions.expect import Response, Tally, judge_response, request_body
from kubento.predictions.gate import CheckInputs, PodResult, containers_ready

log = logging.getLogger("kubento.probe")

PODS_AT_ONCE = 4  # a model's pods checked in parallel
INPUTS_AT_ONCE = 4  # compareWithStable inputs in flight at once

# (pod, port, path, method, body, timeout) -> Response: the transport (the CLI's goes through the API server)
Sender = Callable[[dict[str, Any], int, str, str, Optional[bytes], float], Awaitable[Response]]


def direct(session: aiohttp.ClientSession) -> Sender:
    """To the pod's IP, as the operator does."""
    async def send(pod: dict[str, Any], port: int, path: str, method: str, body: Optional[bytes],
                   timeout: float) -> Response:
        return await podhttp.request(session, podhttp.pod_url(pod["status"]["podIP"], port, path), method=method,
                                     body=body, deadline=timeout, cap=podhttp.ANSWER_MAX)
    return send


async def run_checks(pod: dict[str, Any], port: int, checks: PredictionChecks, inputs: CheckInputs, attempt: int,
                     sender: Sender) -> PodResult:
    """Every check of a revision on one pod."""
    ready = (containers_ready(pod) or {}).get("lastTransitionTime")
    if inputs.error:
        return PodResult(error=inputs.error, attempt=attempt, ready_since=ready)
    results = []
    for check in checks.checks:
        resp = await sender(pod, port, check.path, check.method, inputs.bodies.get(check.name),
                            duration_seconds(check.timeout))
        results.append(judge_response(check, resp))
    return PodResult(tuple(results), attempt, ready_since=ready)


CheckJob = tuple[dict[str, Any], int, PredictionChecks, CheckInputs, int]  # pod, port, checks, inputs, attempt


async def check_pods(jobs: list[CheckJob], sender: Sender) -> list[PodResult]:
    """run_checks for each (pod, port, checks, inputs, attempt), a few pods at a time."""
    return await limited(PODS_AT_ONCE, [lambda job=job: run_checks(*job, sender=sender) for job in jobs])


async def compare(stable: dict[str, Any], new: dict[str, Any], stable_port: int, port: int, checks: PredictionChecks,
                  inputs: CheckInputs, sender: Sender) -> Agreement:
    """Send every input line to a stable and a new pod; their agreement.
    Answers are judged as they come and dropped (four inputs in flight)."""
    spec = checks.compare_with_stable
    assert spec is not None
    timeout = duration_seconds(spec.timeout)
    tally = Tally(spec)

    async def both(line: Any) -> None:
        body = request_body(line)
        stable_answer = await sender(stable, stable_port, spec.path, "POST", body, timeout)
        new_answer = await sender(new, port, spec.path, "POST", body, timeout)
        tally.add(line, stable_answer, new_answer)

    await limited(INPUTS_AT_ONCE, [lambda line=line: both(line) for line in inputs.lines])
    result = tally.result()
    log.info("compared %s with stable pod %s: %s", new["metadata"].get("name"), stable["metadata"].get("name"),
             result.message)
    return result


@dataclass(frozen=True)
class Comparison:
    """A comparison to run once ``pod`` passed its checks."""

    pod_uid: str
    stable: dict[str, Any]
    stable_port: int


@dataclass(frozen=True)
class Checked:
    """What one checks job found."""

    results: dict[str, PodResult]  # pod uid -> result
    agreement: Optional[Agreement] = None  # the comparison's, when one ran
    compared_uid: Optional[str] = None


def checks_job(jobs: list[CheckJob], comparisons: dict[str, Comparison]):  # noqa: ANN201
    """A podio job: check the pods, then compare the first that passed and has a comparison."""
    async def run(session: aiohttp.ClientSession) -> Checked:
        sender = direct(session)
        results = await check_pods(jobs, sender)
        by_uid = {job[0]["metadata"]["uid"]: (job, r) for job, r in zip(jobs, results)}
        for uid, plan in comparisons.items():
            job, result = by_uid[uid]
            if result.ok:
                pod, port, checks, inputs, _ = job
                agreement = await compare(plan.stable, pod, plan.stable_port, port, checks, inputs, sender)
                return Checked({u: r for u, (_, r) in by_uid.items()}, agreement, uid)
        return Checked({u: r for u, (_, r) in by_uid.items()})
    return run
