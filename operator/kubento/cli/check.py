"""``kubento check NAME [--revision R]``: run a model's prediction checks now
against the pods of its serving revision (or of revision R) and print a
table: check, pod, expected, got, result, latency. Exit 1 when one fails.

The requests go through the API server's pod proxy (as ``kubectl`` reaches
pods), so it works wherever your kubeconfig does, and needs ``get`` on
``pods/proxy`` besides reading the model, its Deployments, pods and
ConfigMaps. What a revision is checked against is read from its
Deployment: the checks it was rolled out with.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from kubento.api.v1alpha1 import ModelDeploymentStatus

from kubento.cli.rollout import NothingToDo, Refused, _table, on_a_model, read_status


# ------------------------------------------------------------------ decisions


def pick_revision(status: "ModelDeploymentStatus", requested: Optional[str]) -> str:
    """The revision to check: the one asked for, else the serving (stable) one."""
    rev = requested or status.stable_revision or status.current_revision
    if not rev:
        raise Refused("the model has no revision yet (status.stableRevision is empty)")
    return rev


def check_table(rows: list[dict[str, Any]]) -> str:
    """rows: {check, pod, expected, got, ok, seconds}."""
    out = [["CHECK", "POD", "EXPECTED", "GOT", "RESULT", "LATENCY"]]
    for r in rows:
        out.append([r["check"], r["pod"], r["expected"], r["got"], "pass" if r["ok"] else "FAIL",
                    f"{r['seconds'] * 1000:.0f}ms"])
    return _table(out)


# ------------------------------------------------------------------------ I/O


def _proxied(session: Any, send_via: Any, namespace: str) -> Any:
    """A probe sender through the API server's pod proxy (no redirect followed, answers capped)."""
    from kubento.controller import podhttp

    async def send(pod: dict[str, Any], port: int, path: str, method: str, body: Optional[bytes],
                   timeout: float) -> Any:
        return await send_via(session, namespace, pod["metadata"]["name"], port, path, method=method, body=body,
                              deadline=timeout, cap=podhttp.ANSWER_MAX)

    return send


def _raw(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


def _check(args: argparse.Namespace) -> int:
    from kubernetes import client

    from kubento.builders.meta import LABEL_MODEL, LABEL_REVISION
    from kubento.cli.rollout import _apis, _get
    from kubento.controller import podhttp, probe
    from kubento.predictions import gate

    custom, apps = _apis()
    core = client.CoreV1Api(apps.api_client)
    md = _get(custom, args.namespace, args.name)
    rev = pick_revision(read_status(md), args.revision)
    selector = f"{LABEL_MODEL}={args.name},{LABEL_REVISION}={rev}"
    deps = _raw(apps.list_namespaced_deployment(args.namespace, label_selector=selector,
                                                _preload_content=False)).get("items") or []
    if not deps:
        raise Refused(f"no Deployment of revision {rev} (is it in `kubento history {args.name}`?)")
    checks = gate.revision_checks({rev: deps[0]}).get(rev)
    if checks is None:
        raise Refused(f"revision {rev} has no prediction checks (spec.predictionChecks was not set when it rolled out)")
    pods = [p for p in _raw(core.list_namespaced_pod(args.namespace, label_selector=selector,
                                                     _preload_content=False)).get("items") or []
            if (p.get("status") or {}).get("podIP") and not p["metadata"].get("deletionTimestamp")]
    if not pods:
        raise Refused(f"revision {rev} has no running pod to check")
    contents: dict[str, Optional[dict[str, Any]]] = {}
    for cm in sorted(checks.checks.config_maps()):
        try:
            contents[cm] = _raw(core.read_namespaced_config_map(cm, args.namespace, _preload_content=False))
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
            contents[cm] = None
    inputs = gate.resolve(checks.checks, contents)
    if inputs.error:
        raise Refused(inputs.error)
    if not checks.checks.checks:
        raise NothingToDo(f"revision {rev} has only compareWithStable, no checks to run")
    pods.sort(key=lambda p: p["metadata"]["name"])
    jobs = [(p, checks.port, checks.checks, inputs, 1) for p in pods]
    ssl_context, send_via = podhttp.through_api_server(apps.api_client)

    async def check_all(session: Any) -> Any:
        return await probe.check_pods(jobs, sender=_proxied(session, send_via, args.namespace))

    rows = []
    for pod, result in zip(pods, podhttp.run(check_all, ssl_context)):
        for r in result.results:
            rows.append({"check": r.check, "pod": pod["metadata"]["name"], "expected": r.expected, "got": r.got,
                         "ok": r.ok, "seconds": r.seconds})
    print(f"revision {rev}: {len(checks.checks.checks)} checks on {len(pods)} pods")
    print(check_table(rows))
    failed = sum(not r["ok"] for r in rows)
    if failed:
        print(f"{failed} of {len(rows)} failed", file=sys.stderr)
    return 1 if failed else 0


run = on_a_model("check", _check)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="run a model's prediction checks now and print the answers",
        description="Send each prediction check of the serving revision (or --revision R) to every one of its "
        "pods, through the API server's pod proxy, and print check, pod, expected, got, result and latency. "
        "Exit 1 when a check fails. Useful before and after a release.")
    p.add_argument("name", metavar="NAME", help="the ModelDeployment")
    p.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    p.add_argument("--revision", metavar="R", help="a REVISION from `kubento history` (default: the stable one)")
    p.set_defaults(func=run)
