"""``kubento top [NAME] [-n NS | -A] [-w] [-o json]``: each model's requests/s,
error ratio, p50/p95 latency, ready/desired replicas and canary weight, read
straight from its pods' BentoML ``/metrics`` (through the API server's pod
proxy, as ``kubectl`` reaches pods), like ``kubectl top``: no Prometheus.

Rates need two readings: ``top`` reads every ready pod of the models, waits
``--interval`` and reads them again; ``-w`` goes on, one table per interval.
Only pods read both times count (a counter that went down is a restarted
container: what it counted since). Needs ``get`` on ``pods/proxy`` besides
reading ModelDeployments and pods.

What to show is decided by the pure functions at the top
(tests/unit/test_cli_top.py); the I/O below them stays thin.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from kubento.rollout.analysis import Sample, histogram_quantile, since, total

# (namespace, pod name) -> the pod's counters
Readings = dict[tuple[str, str], Sample]


@dataclass(frozen=True)
class Row:
    namespace: str
    name: str
    pods: int  # ready pods read both times
    requests_per_second: Optional[float]  # None: no pod could be read
    error_ratio: Optional[float]  # None: no request in the interval
    p50_seconds: Optional[float]
    p95_seconds: Optional[float]
    ready_replicas: int
    desired_replicas: int
    canary_weight: Optional[int]  # percent, during a rollout


def row(md: dict[str, Any], pods: list[str], before: Readings, after: Readings, elapsed: float) -> Row:
    """One model's row from two readings ``elapsed`` seconds apart of its pods."""
    from pydantic import ValidationError

    from kubento.api.v1alpha1 import ModelDeploymentSpec
    from kubento.controller.metrics import desired_replicas

    from kubento.cli.rollout import read_status

    meta, status = md["metadata"], read_status(md)
    try:
        spec: Optional[ModelDeploymentSpec] = ModelDeploymentSpec.model_validate(md.get("spec") or {})
    except ValidationError:
        spec = None
    key = [(meta["namespace"], p) for p in pods]
    both = [k for k in key if k in before and k in after]
    window = total(since(before[k], after[k]) for k in both)
    rps = window.requests / elapsed if both and elapsed > 0 else None
    return Row(
        namespace=meta["namespace"],
        name=meta["name"],
        pods=len(both),
        requests_per_second=rps,
        error_ratio=window.error_rate,
        p50_seconds=histogram_quantile(0.5, window.buckets) if window.requests else None,
        p95_seconds=histogram_quantile(0.95, window.buckets) if window.requests else None,
        ready_replicas=int(status.ready_replicas or 0),
        desired_replicas=desired_replicas(spec, status),
        canary_weight=status.canary_weight if status.rollout else None,
    )


def _latency(secs: Optional[float]) -> str:
    if secs is None:
        return "-"
    return f"{secs * 1000:.0f}ms" if secs < 1 else f"{secs:.2f}s"


def table(rows: list[Row], namespaces: bool) -> str:
    """kubectl-style columns; NAMESPACE first when models of several namespaces show."""
    header = ["NAME", "RPS", "ERRORS", "P50", "P95", "READY", "CANARY"]
    lines = [(["NAMESPACE"] if namespaces else []) + header]
    for r in rows:
        lines.append(([r.namespace] if namespaces else []) + [
            r.name,
            "-" if r.requests_per_second is None else f"{r.requests_per_second:.1f}",
            "-" if r.error_ratio is None else f"{r.error_ratio * 100:.1f}%",
            _latency(r.p50_seconds),
            _latency(r.p95_seconds),
            f"{r.ready_replicas}/{r.desired_replicas}",
            "-" if r.canary_weight is None else f"{r.canary_weight}%",
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def as_json(rows: list[Row]) -> list[dict[str, Any]]:
    names = {"requests_per_second": "requestsPerSecond", "error_ratio": "errorRatio", "p50_seconds": "p50Seconds",
             "p95_seconds": "p95Seconds", "ready_replicas": "readyReplicas", "desired_replicas": "desiredReplicas",
             "canary_weight": "canaryWeight"}
    return [{names.get(k, k): v for k, v in asdict(r).items()} for r in rows]


# ------------------------------------------------------------------------ I/O

FETCH_TIMEOUT = 5.0


class Cluster:
    """ModelDeployments, their ready pods, and each pod's /metrics through the API server."""

    def __init__(self) -> None:
        from kubernetes import client

        from kubento.cli.kubeconfig import load_configuration
        from kubento.controller import podhttp

        api = client.ApiClient(load_configuration())
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        self.ssl, self.send = podhttp.through_api_server(api)

    def models(self, namespace: Optional[str], name: Optional[str]) -> list[dict[str, Any]]:
        from kubento.api import v1alpha1 as api

        if name:
            return [self.custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)]
        if namespace:
            found = self.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)
        else:
            found = self.custom.list_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL)
        return sorted(found.get("items") or [], key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"]))

    def ready_pods(self, models: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[str, int]]]:
        """(namespace, model) -> [(pod name, serving port)] of its ready pods."""
        from kubento.builders.meta import LABEL_MODEL, MANAGED_BY

        out: dict[tuple[str, str], list[tuple[str, int]]] = {}
        wanted = {(m["metadata"]["namespace"], m["metadata"]["name"]): int((m.get("spec") or {}).get("port", 3000))
                  for m in models}
        for namespace in sorted({ns for ns, _ in wanted}):
            selector = f"{LABEL_MODEL},app.kubernetes.io/managed-by={MANAGED_BY}"
            response = self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
            for pod in json.loads(response.data).get("items") or []:
                model = (namespace, pod["metadata"]["labels"][LABEL_MODEL])
                ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in (pod.get("status") or {}).get("conditions") or [])
                if model in wanted and ready and not pod["metadata"].get("deletionTimestamp"):
                    out.setdefault(model, []).append((pod["metadata"]["name"], wanted[model]))
        return out

    def read(self, pods: list[tuple[str, str, int]]) -> Readings:
        """Every pod's counters that could be read (a pod that does not answer, answers a
        redirect or more than podhttp.METRICS_MAX adds nothing)."""
        from kubento.controller import podhttp
        from kubento.controller.podio import limited
        from kubento.rollout.analysis import parse_metrics

        async def all_pods(session: Any) -> list[Any]:
            return await limited(8, [lambda pod=pod: self.send(session, pod[0], pod[1], pod[2], "/metrics",
                                                               deadline=FETCH_TIMEOUT, cap=podhttp.METRICS_MAX)
                                     for pod in pods])

        out: Readings = {}
        for (ns, name, _), answer in zip(pods, podhttp.run(all_pods, self.ssl)):
            if answer.status == 200 and not answer.final:
                try:
                    out[(ns, name)] = parse_metrics(answer.body)
                except ValueError:
                    pass  # not a BentoML server
        return out


def watch(cluster: Cluster, namespace: Optional[str], name: Optional[str], interval: float,
          show: Callable[[list[Row]], None], once: bool, clock: Callable[[], float] = time.monotonic) -> None:
    before: Readings = {}
    then = clock()
    first = True
    while True:
        models = cluster.models(namespace, name)
        pods = cluster.ready_pods(models)
        now_pods = [(ns, p, port) for (ns, _), ps in pods.items() for p, port in ps]
        if first:
            before, then, first = cluster.read(now_pods), clock(), False
            time.sleep(interval)
            continue
        after, now = cluster.read(now_pods), clock()
        rows = [row(m, [p for p, _ in pods.get((m["metadata"]["namespace"], m["metadata"]["name"]), [])],
                    before, after, now - then) for m in models]
        show(rows)
        if once:
            return
        before, then = after, now
        time.sleep(max(0.0, interval - (clock() - now)))


def run(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException

    from kubento.cli.rollout import default_namespace
    from kubento.controller.kube import rejection

    if args.name and args.all_namespaces:
        print("kubento top: a NAME needs one namespace (-n), not -A", file=sys.stderr)
        return 2
    namespace = None if args.all_namespaces else (args.namespace or default_namespace())
    several = namespace is None

    def show(rows: list[Row]) -> None:
        if args.output == "json":
            print(json.dumps(as_json(rows), separators=(",", ":") if args.watch else (", ", ": "),
                             indent=None if args.watch else 2), flush=True)
            return
        if args.watch and sys.stdout.isatty():
            print("\x1b[H\x1b[2J", end="")
        elif args.watch:
            print()
        print(table(rows, several) if rows else f"No ModelDeployments in {namespace or 'any namespace'}.", flush=True)

    try:
        watch(Cluster(), namespace, args.name, args.interval, show, once=not args.watch)
    except KeyboardInterrupt:
        return 0
    except ConfigException as exc:
        print(f"kubento top: no cluster credentials: {exc}", file=sys.stderr)
        return 1
    except ApiException as exc:
        print(f"kubento top: {rejection(exc)}", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "top", help="requests/s, errors, latency and replicas of models, from their pods' /metrics",
        description="Read every ready pod's BentoML /metrics twice, --interval apart (through the API "
        "server's pod proxy: no Prometheus needed), and show per model: API requests/s, the share "
        "answered 5xx, p50 and p95 latency, ready/desired replicas and the canary weight.",
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="one ModelDeployment (default: all of the namespace)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="models of every namespace")
    p.add_argument("-w", "--watch", action="store_true", help="go on: a new reading every --interval")
    p.add_argument("-o", "--output", choices=["json"], help="JSON (with -w: one line per reading)")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between readings (default 3)")
    p.set_defaults(func=run)
