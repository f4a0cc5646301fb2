"""``kubento status NAME [-w]`` and ``kubento logs NAME [--revision R] [-f]``.

``status`` is one screen per model, like ``kubectl argo rollouts get rollout``:
phase and why, the bento, each revision that has pods (stable, candidate)
with ready/total pods, the rollout's step and weight (requested and
effective), what the Service selects, the last analysis and prediction-check
verdicts, and the model's last events. ``-w`` redraws it in place on a
terminal (plain text, one screen per change, otherwise).

The ModelDeployment's status is read in one place, :func:`read_view` (the
status is a dict today; a typed status can replace that one function). The
rest are pure functions of the view, the pods and the events
(tests/unit/test_cli_status.py); the I/O at the bottom stays thin.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from kubento.cli.rollout import Refused, _cut, _table, answered, default_namespace

EVENTS_SHOWN = 6


# ------------------------------------------------------------------ the view


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class View:
    """What ``status`` (and ``deploy``'s follow) show of a ModelDeployment."""

    name: str
    namespace: str
    generation: int
    observed_generation: Optional[int]
    phase: str
    conditions: dict[str, Condition]
    bento: str
    spec_rollout: "Rollout"  # spec.rollout (its strategy and steps)
    current_revision: Optional[str]
    stable_revision: Optional[str]
    failed_revision: Optional[str]
    rollout: Optional["RolloutStatus"]  # the rollout under way (None: none)
    canary_weight: Optional[int]
    replicas: Optional[int]
    ready_replicas: Optional[int]
    environment: Optional["EnvironmentStatus"]
    history: list["HistoryEntry"] = field(default_factory=list)
    traffic: Optional["TrafficStatus"] = None
    url: Optional[str] = None

    @property
    def strategy(self) -> str:
        return self.spec_rollout.strategy

    @property
    def steps(self) -> list[Any]:
        return list(self.spec_rollout.steps)

    @property
    def current(self) -> bool:
        """Whether status describes the spec as it is now."""
        return self.observed_generation is not None and self.observed_generation >= self.generation

    @property
    def ready(self) -> bool:
        c = self.conditions.get("Ready")
        return bool(c and c.status == "True")

    @property
    def held(self) -> Optional[str]:
        """Why a healthy rollout waits for `kubento promote` (the rollout's strategy says), or None."""
        from kubento.rollout import strategy

        if self.rollout is None or self.rollout.strategy not in strategy.strategies():
            return None
        return strategy.of(self.rollout.strategy).held(self._rollout_spec(), self.rollout)

    def _rollout_spec(self) -> "Rollout":
        """spec.rollout as the rollout under way was started with (its strategy)."""
        assert self.rollout is not None
        return self.spec_rollout.model_copy(update={"strategy": self.rollout.strategy})


def read_view(md: dict[str, Any]) -> View:
    """The one reader of a ModelDeployment for `status` and `deploy`: its
    status through the API's model (kubento.cli.rollout.read_status)."""
    from pydantic import ValidationError

    from kubento.api.v1alpha1 import Rollout
    from kubento.cli.rollout import read_status

    meta, spec = md.get("metadata") or {}, md.get("spec") or {}
    status = read_status(md)
    try:
        spec_rollout = Rollout.model_validate(spec.get("rollout") or {})
    except ValidationError:
        spec_rollout = Rollout()
    bento = spec.get("bento") or {}
    if bento.get("image"):
        source = bento["image"]
    elif bento.get("archive"):
        source = bento["archive"].get("uri", "")
    elif bento.get("build"):
        source = "build from " + ", ".join(sorted((bento["build"].get("source") or {}).keys()))
    else:
        source = "-"
    pinned = status.environment.archive if status.environment else None
    if pinned and pinned != source and bento.get("archive"):
        source = f"{source} (runs {pinned.rsplit('@', 1)[-1][:19]})"
    conditions = {c.type: Condition(c.type, c.status, c.reason, c.message) for c in status.conditions}
    return View(
        name=meta.get("name", ""), namespace=meta.get("namespace", ""), generation=int(meta.get("generation") or 0),
        observed_generation=status.observed_generation, phase=status.phase or "Pending",
        conditions=conditions, bento=source, spec_rollout=spec_rollout, current_revision=status.current_revision,
        stable_revision=status.stable_revision, failed_revision=status.failed_revision,
        rollout=status.rollout, canary_weight=status.canary_weight,
        replicas=status.replicas, ready_replicas=status.ready_replicas,
        environment=status.environment, history=list(status.history), traffic=status.traffic, url=status.url)


# ------------------------------------------------------------------ rendering


def pods_by_revision(pods: list[dict[str, Any]], label: str) -> dict[str, tuple[int, int]]:
    """revision -> (ready, total) of the pods not being deleted."""
    out: dict[str, tuple[int, int]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        rev = (meta.get("labels") or {}).get(label)
        if not rev:
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or [])
        r, t = out.get(rev, (0, 0))
        out[rev] = (r + int(ready), t + 1)
    return out


def _age(stamp: Optional[str], now: datetime) -> str:
    if not stamp:
        return "-"
    try:
        then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "-"
    secs = max(0, int((now - then).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    return f"{secs // 3600}h"


def step_line(view: View) -> Optional[str]:
    from kubento.rollout import strategy

    r = view.rollout
    if r is None:
        return None
    if r.rollback:
        why = r.rollback_message or r.rollback
        return f"rolling back {r.revision}: {why}; returning to {view.stable_revision}"
    parts = [f"{r.strategy} of {r.revision}"]
    if r.strategy in strategy.strategies():  # what the rollout's strategy says of where it stands
        parts += strategy.of(r.strategy).screen(view._rollout_spec(), r, view.canary_weight)
    return ", ".join(parts)


def service_pods_by_revision(pods: list[dict[str, Any]]) -> dict[str, dict[str, tuple[int, int]]]:
    """revision -> service -> (ready, total): the pods of a revision's other BentoML services."""
    from kubento.builders.graph import LABEL_BENTO_SERVICE, LABEL_GRAPH_REVISION

    out: dict[str, dict[str, tuple[int, int]]] = {}
    for service in {(p.get("metadata") or {}).get("labels", {}).get(LABEL_BENTO_SERVICE) for p in pods} - {None}:
        mine = [p for p in pods if (p.get("metadata") or {}).get("labels", {}).get(LABEL_BENTO_SERVICE) == service]
        for rev, counted in pods_by_revision(mine, LABEL_GRAPH_REVISION).items():
            out.setdefault(rev, {})[service] = counted
    return out


def render(view: View, pods: dict[str, tuple[int, int]], events: list[dict[str, Any]], now: datetime,
           services: Optional[dict[str, dict[str, tuple[int, int]]]] = None) -> str:
    """The status screen."""
    ready = view.conditions.get("Ready")
    why = f" ({ready.reason}: {_cut(ready.message, 100)})" if ready and ready.message and not view.ready else ""
    lines = [f"Name:       {view.name}  (namespace {view.namespace})",
             f"Phase:      {view.phase}{why}",
             f"Bento:      {view.bento}",
             f"Strategy:   {view.strategy}" + (f", steps {', '.join(_step(s) for s in view.steps)}"
                                                if view.steps else "")]
    traffic = traffic_line(view)
    if traffic:
        lines.append(f"Traffic:    {traffic}")
    env = view.environment
    if env is not None and (env.hash or env.job):
        what = f"{env.packages} packages" if env.packages is not None else "preparing"
        lines.append(f"Python env: {what}" + (f" ({env.hash})" if env.hash else ""))
    if env is not None and env.services is not None:
        lines.append(f"Services:   {services_line(env.services)}")
    step = step_line(view)
    if step and view.rollout is not None:
        lines.append(f"Rollout:    {step}")
        service = view.rollout.service
        if service:
            lines.append(f"Service:    selects {'both revisions' if service == 'both' else 'the ' + service + ' revision'}")
        if view.rollout.analysis:
            lines.append(f"Analysis:   {view.rollout.analysis}")
        if view.rollout.agreement and view.rollout.agreement.message:
            lines.append(f"Checks:     {view.rollout.agreement.message}")
    degraded = view.conditions.get("Degraded")
    if degraded and degraded.status == "True" and (not ready or degraded.reason != ready.reason):
        lines.append(f"Degraded:   {degraded.reason}: {_cut(degraded.message, 100)}")
    rows = [["REVISION", "ROLE", "PODS", "OUTCOME"]]
    revisions: list[str] = []
    candidate = view.rollout.revision if view.rollout else None
    for rev in (candidate, view.stable_revision, view.current_revision):
        if rev and rev not in revisions:
            revisions.append(rev)
    revisions += sorted(r for r in pods if r not in revisions)
    outcome = {h.revision: h.outcome for h in view.history}
    for rev in revisions:
        role = ("stable" if rev == view.stable_revision else
                "candidate" if rev == candidate else
                "failed" if rev == view.failed_revision else "old")
        r, t = pods.get(rev, (0, 0))
        others = "".join(f", {svc} {sr}/{st}" for svc, (sr, st) in sorted(((services or {}).get(rev) or {}).items()))
        rows.append([rev, role, f"{r}/{t} ready{others}", outcome.get(rev, "")])
    lines.append("")
    lines.append(_table(rows) if len(rows) > 1 else "No revision yet.")
    shown = sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")[-EVENTS_SHOWN:]
    if shown:
        lines.append("")
        rows = [["AGE", "TYPE", "REASON", "MESSAGE"]]
        for e in shown:
            rows.append([_age((e.get("lastTimestamp") or e.get("eventTime") or "")[:19] + "Z", now),
                         e.get("type", ""), e.get("reason", ""), _cut(e.get("message", ""), 90)])
        lines.append(_table(rows))
    return "\n".join(lines)


def _step(step: Any) -> str:
    return f"mirror {step.mirror}%" if step.mirror else f"{step.weight}%"


def services_line(app: Any) -> str:
    """The bento's BentoML services: "Entry -> Model (cpu 2, gpu 1, timeout 120s); one pod runs them all"."""
    def one(svc: Any) -> str:
        said = []
        r = svc.resources
        if r is not None:
            said += [f"{k} {v}" for k, v in (("cpu", r.cpu), ("memory", r.memory), ("gpu", r.gpu)) if v]
        if svc.timeout:
            said.append(f"timeout {svc.timeout:g}s")
        calls = f" -> {', '.join(svc.depends_on)}" if svc.depends_on else ""
        return svc.name + (f" ({', '.join(said)})" if said else "") + calls
    text = "; ".join(one(s) for s in app.services)
    if app.more:
        text += f"; {app.more} more"
    if app.more:
        text += " [every service runs in each pod]"
    elif len(app.services) > 1:
        text += " [each service in its own Deployment; PODS: the entry's, then the others']"
    return text


def traffic_line(view: View) -> Optional[str]:
    """Gateway mode: the route's split, mirror and acceptance, and the URL (nothing in replicas mode)."""
    t = view.traffic
    if t is None or t.mode != "gateway":
        return None
    split = ", ".join(f"{b.revision} {b.weight}%" for b in t.backends or []) or "no backend yet"
    parts = [f"HTTPRoute {t.route}: {split}"]
    if t.mirror:
        parts.append(f"{t.mirror}% mirrored to {view.rollout.revision if view.rollout else 'the candidate'}")
    route = view.conditions.get("RouteAccepted")
    if route is not None:
        parts.append("accepted" if route.status == "True" else f"{route.reason}: {_cut(route.message, 80)}")
    if route is not None and route.status == "True" and view.url:
        parts.append(view.url)
    return "; ".join(parts)


def one_line(view: View, pods: dict[str, tuple[int, int]]) -> str:
    """deploy's follow: phase, the revision under way and its pods."""
    rev = (view.rollout.revision if view.rollout else None) or view.current_revision
    r, t = pods.get(rev, (0, 0)) if rev else (0, 0)
    parts = [f"{view.phase:<11}", f"revision {rev}: {r}/{t} pods ready" if rev else "no revision yet"]
    step = step_line(view)
    if step and not view.ready:
        parts.append(step)
    ready = view.conditions.get("Ready")
    if ready and not view.ready and ready.reason not in ("RolloutInProgress", "Progressing") and ready.message:
        parts.append(f"{ready.reason}: {_cut(ready.message, 120)}")
    elif view.phase in ("Pending", "PreparingEnvironment") and view.environment is not None and view.environment.job:
        parts.append(f"Python environment (Job {view.environment.job})")
    return "  ".join(parts)


# ------------------------------------------------------------------------ I/O


class Cluster:
    """Reads a model, its pods and its events."""

    def __init__(self) -> None:
        from kubernetes import client

        from kubento.cli.rollout import _apis

        self.custom, self.apps = _apis()
        self.core = client.CoreV1Api(self.apps.api_client)

    def model(self, namespace: str, name: str) -> dict[str, Any]:
        from kubento.cli.rollout import _get

        return _get(self.custom, namespace, name)

    def pods(self, namespace: str, name: str, label: str = "") -> list[dict[str, Any]]:
        """The model's pods (those of its other BentoML services with ``label`` LABEL_SERVICE_OF)."""
        from kubento.builders.meta import LABEL_MODEL

        response = self.core.list_namespaced_pod(namespace, label_selector=f"{label or LABEL_MODEL}={name}",
                                                 _preload_content=False)
        return json.loads(response.data).get("items") or []

    def service_pods(self, namespace: str, name: str) -> dict[str, dict[str, tuple[int, int]]]:
        from kubento.builders.graph import LABEL_SERVICE_OF

        return service_pods_by_revision(self.pods(namespace, name, LABEL_SERVICE_OF))

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        from kubento.api import v1alpha1 as api

        response = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name},involvedObject.kind={api.KIND}",
            _preload_content=False)
        return json.loads(response.data).get("items") or []

    def snapshot(self, namespace: str, name: str) -> tuple[View, dict[str, tuple[int, int]]]:
        from kubento.builders.meta import LABEL_REVISION

        view = read_view(self.model(namespace, name))
        return view, pods_by_revision(self.pods(namespace, name), LABEL_REVISION)


def _status(args: argparse.Namespace) -> int:
    from kubento.builders.meta import LABEL_REVISION

    cluster = Cluster()
    tty = sys.stdout.isatty()
    last = None
    while True:
        view = read_view(cluster.model(args.namespace, args.name))
        pods = pods_by_revision(cluster.pods(args.namespace, args.name), LABEL_REVISION)
        screen = render(view, pods, cluster.events(args.namespace, args.name), datetime.now(timezone.utc),
                        cluster.service_pods(args.namespace, args.name))
        if not args.watch:
            print(screen)
            return 0
        if tty:
            sys.stdout.write("\033[H\033[J" + screen + f"\n\n(every {args.interval:g}s; Ctrl-C to stop)\n")
            sys.stdout.flush()
        else:
            key = re.sub(r"(?m)^\d+[smh](?= )", "", screen)  # a new screen when more than the ages changed
            if key != last:
                print(("\n" if last is not None else "") + screen, flush=True)
            screen = key
        last = screen
        time.sleep(args.interval)


def pick_log_revision(view: View, requested: Optional[str]) -> str:
    rev = requested or (view.rollout.revision if view.rollout else None) or view.current_revision or view.stable_revision
    if not rev:
        raise Refused(f"{view.name} has no revision yet")
    return rev


def _logs(args: argparse.Namespace) -> int:
    import threading

    from kubento.builders.deployment import CONTAINER_NAME
    from kubento.builders.meta import LABEL_REVISION

    cluster = Cluster()
    view = read_view(cluster.model(args.namespace, args.name))
    rev = pick_log_revision(view, args.revision)
    pods = sorted((p for p in cluster.pods(args.namespace, args.name)
                   if (p["metadata"].get("labels") or {}).get(LABEL_REVISION) == rev),
                  key=lambda p: p["metadata"]["name"])
    if not pods:
        raise Refused(f"revision {rev} of {args.name} has no pod (its revisions: `kubento history {args.name}`)")
    prefix = len(pods) > 1

    def stream(pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        kw: dict[str, Any] = {"container": CONTAINER_NAME, "follow": args.follow, "_preload_content": False}
        if args.tail is not None:
            kw["tail_lines"] = args.tail
        response = cluster.core.read_namespaced_pod_log(name, args.namespace, **kw)
        try:
            pending = b""
            for chunk in response.stream(4096):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    print(f"[{name}] {text}" if prefix else text, flush=True)
            if pending:
                text = pending.decode(errors="replace")
                print(f"[{name}] {text}" if prefix else text, flush=True)
        finally:
            response.release_conn()

    if not args.follow or len(pods) == 1:
        for pod in pods:
            stream(pod)
        return 0
    threads = [threading.Thread(target=stream, args=(p,), daemon=True) for p in pods]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    return 0


def run(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        def action() -> int:
            args.namespace = args.namespace or default_namespace()
            try:
                return handler(args)
            except KeyboardInterrupt:
                return 0

        return answered(f"kubento {args.command} {args.name}", args.name, action)

    return command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="one screen of a model: phase, revisions and their pods, the rollout's step, events (-w: live)",
        description="Show a ModelDeployment's phase (and why), its bento, each revision with pods (stable, "
        "candidate) and how many are ready, the rollout under way (strategy, step, requested and effective weight, "
        "what the Service selects, analysis and prediction-check verdicts) and its last events. -w redraws it in "
        "place on a terminal, and prints one screen per change otherwise.")
    p.add_argument("name", metavar="NAME", help="the ModelDeployment")
    p.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    p.add_argument("-w", "--watch", action="store_true", help="keep it up to date (Ctrl-C stops)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between reads with -w (default 2)")
    p.set_defaults(func=run(_status))

    logs = sub.add_parser(
        "logs", help="the model server's log of a revision's pods",
        description="Print the model container's log of each pod of a revision: the one rolling out, else the "
        "current one (--revision R: a REVISION from `kubento history`). Several pods: each line starts with "
        "[pod name].")
    logs.add_argument("name", metavar="NAME", help="the ModelDeployment")
    logs.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
    logs.add_argument("--revision", metavar="R", help="a REVISION from `kubento history`")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each pod")
    logs.set_defaults(func=run(_logs))
