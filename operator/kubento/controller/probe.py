"""Prediction checks I/O: send a revision's checks to pods, and the same
inputs to a stable and a new pod. Judging is pure (kubento.predictions).

Each check is one HTTP request on a new connection, straight to the pod's IP
(the Service does not select the pod yet: that is the point). Pods are
checked in parallel; one pod's checks run one after the other, each bounded
by its timeout.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from kubento.api.v1alpha1 import PredictionChecks, duration_seconds
from kubento.predictions.expect import Response, agreement, judge_response, request_body
from kubento.predictions.gate import CheckInputs, PodResult, containers_ready

log = logging.getLogger("kubento.probe")

_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kubento-checks")
MAX_BODY = 1 << 20  # an answer is read up to 1 MiB

# (pod, port, path, method, body, timeout) -> Response: the transport (the CLI's goes through the API server)
Sender = Callable[[dict[str, Any], int, str, str, Optional[bytes], float], Response]


def direct(pod: dict[str, Any], port: int, path: str, method: str, body: Optional[bytes], timeout: float) -> Response:
    """To the pod's IP, as the operator does."""
    return send(f"http://{pod['status']['podIP']}:{port}{path}", method, body, timeout)


def send(url: str, method: str, body: Optional[bytes], timeout: float) -> Response:
    """One request on a new connection; never raises."""
    headers = {"content-type": "application/json", "accept": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read(MAX_BODY).decode("utf-8", "replace")
            return Response(resp.status, text, time.monotonic() - start)
    except urllib.error.HTTPError as exc:
        text = exc.read(MAX_BODY).decode("utf-8", "replace") if exc.fp else ""
        return Response(exc.code, text, time.monotonic() - start)
    except Exception as exc:  # noqa: BLE001 - timeouts, refusals, resets: no answer
        reason = getattr(exc, "reason", None) or exc
        text = "timed out" if "timed out" in str(reason) else str(reason)
        return Response(None, "", time.monotonic() - start, f"{text} after {time.monotonic() - start:.1f}s"
                        if text == "timed out" else text)


def run_checks(pod: dict[str, Any], port: int, checks: PredictionChecks, inputs: CheckInputs, attempt: int,
               sender: Sender = direct) -> PodResult:
    """Every check of a revision on one pod."""
    ready = (containers_ready(pod) or {}).get("lastTransitionTime")
    if inputs.error:
        return PodResult(error=inputs.error, attempt=attempt, ready_since=ready)
    results = []
    for check in checks.checks:
        resp = sender(pod, port, check.path, check.method, inputs.bodies.get(check.name),
                      duration_seconds(check.timeout))
        results.append(judge_response(check, resp))
    return PodResult(tuple(results), attempt, ready_since=ready)


def check_pods(jobs: list[tuple[dict[str, Any], int, PredictionChecks, CheckInputs, int]],
               sender: Sender = direct) -> list[PodResult]:
    """run_checks for each (pod, port, checks, inputs, attempt), in parallel."""
    return list(_pool.map(lambda job: run_checks(*job, sender=sender), jobs))


def compare(stable: dict[str, Any], new: dict[str, Any], stable_port: int, port: int, checks: PredictionChecks,
            inputs: CheckInputs, sender: Sender = direct) -> dict[str, Any]:
    """Send every input line to a stable and a new pod; their agreement."""
    spec = checks.compare_with_stable
    assert spec is not None
    timeout = duration_seconds(spec.timeout)

    def both(line: Any) -> tuple[Any, Response, Response]:
        body = request_body(line)
        return (line, sender(stable, stable_port, spec.path, "POST", body, timeout),
                sender(new, port, spec.path, "POST", body, timeout))

    pairs = list(_pool.map(both, inputs.lines))
    result = agreement(spec, pairs)
    log.info("compared %s with stable pod %s: %s", new["metadata"].get("name"), stable["metadata"].get("name"),
             result["message"])
    return result
