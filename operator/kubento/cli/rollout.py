"""``kubento history|rollback|promote|abort NAME``: look at and steer a
model's rollouts. Installed as ``kubectl-kubento`` too, so ``kubectl kubento
history NAME`` works the same.

The operator does the work; these commands only read the ModelDeployment's
status and write one patch: an annotation naming the revision to promote or
abort, or (rollback) the spec of an older revision, read back from that
revision's Deployment. What to write is decided by the pure functions at
the top (tests/unit/test_cli_rollout.py); the I/O below them stays thin.
kubento modules and the kubernetes client are imported where used, so
``kubento --help`` and ``kubento build`` do not pay for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from kubento.api.v1alpha1 import HistoryEntry, ModelDeploymentStatus, RolloutStatus


def read_status(md: dict[str, Any]) -> ModelDeploymentStatus:
    """A ModelDeployment's status as the API's model: the one way the CLI reads it."""
    from kubento.controller.status import parse_status

    return parse_status(md.get("status"))

# Spec keys that do not shape pods: a rollback keeps them as they are (and
# the revision's spec snapshot leaves them out).
KEPT_KEYS = frozenset({"replicas", "autoscaling", "rollout"})
# Outcomes of revisions that served: what a rollback goes back to by default.
SERVED = ("Serving", "Superseded")
MESSAGE_WIDTH = 60
SERVICE_TARGETS = {"stable": "the stable revision", "both": "both revisions", "candidate": "the new revision"}


class Refused(Exception):
    """The command cannot do what was asked (exit 1)."""


class NothingToDo(Exception):
    """What was asked is already so (exit 0)."""


# ------------------------------------------------------------------ decisions


def flag_patch(status: ModelDeploymentStatus, which: str) -> dict[str, Any]:
    """The merge patch that asks the operator to promote or abort the
    rollout under way. The annotation names its revision, so the operator
    ignores it once that rollout is over (a leftover never acts on a later one)."""
    from kubento.builders.meta import ANNOTATION_ABORT, ANNOTATION_PROMOTE, rollout_token

    state = status.rollout
    if state is None:
        raise Refused(f"no rollout under way (status.rollout is empty): nothing to {which}")
    if state.rollback:
        # The operator ignores a promote while it returns to stable; an abort would change nothing.
        why = state.rollback_message or state.rollback
        if which == "abort":
            raise NothingToDo(f"revision {state.revision} is already being rolled back: {why}")
        raise Refused(f"revision {state.revision} is being rolled back ({why}); it can no longer be promoted")
    annotation = {"promote": ANNOTATION_PROMOTE, "abort": ANNOTATION_ABORT}[which]
    return {"metadata": {"annotations": {annotation: rollout_token(state)}}}


def _numbers(history: list[HistoryEntry]) -> str:
    return ", ".join(str(h.number) for h in history) or "none"


def rollback_target(status: ModelDeploymentStatus, to_revision: Optional[int] = None,
                    generation: Optional[int] = None) -> HistoryEntry:
    """The history entry ``kubento rollback`` goes back to: number
    ``to_revision``, else the newest revision that served before the stable
    one. ``generation`` (metadata.generation) tells whether status is current."""
    history = status.history
    stable = status.stable_revision
    if to_revision is None:
        entry = next((h for h in reversed(history) if h.revision != stable and h.outcome in SERVED), None)
        if entry is None:
            raise Refused(f"no earlier revision that served to roll back to (history: {_numbers(history)})")
        return entry
    entry = next((h for h in history if h.number == to_revision), None)
    if entry is None:
        raise Refused(f"no revision {to_revision} in status.history (revisions: {_numbers(history)})")
    rev = entry.revision
    current = generation is None or status.observed_generation == generation
    if rev == stable and status.current_revision == stable and status.rollout is None and current:
        raise NothingToDo(f"revision {to_revision} ({rev}) is already the stable revision and the spec's; "
                          "nothing to do")
    if rev == status.failed_revision and rev != stable:
        # The operator keeps its failed revision at zero replicas even when the spec names it again.
        raise Refused(f"revision {to_revision} ({rev}) is status.failedRevision: "
                      "the operator would not roll it out again")
    return entry


def _pointer(key: str) -> str:
    return "/spec/" + key.replace("~", "~0").replace("/", "~1")


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def spec_patch(live_spec: dict[str, Any], snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """JSON patch ops that make the pod-shaping fields of ``live_spec`` equal
    ``snapshot``, whole values at a time. (A merge patch would merge nested
    objects: bento.build would stay next to a restored bento.image.)"""
    ops: list[dict[str, Any]] = []
    for key in sorted((set(live_spec) | set(snapshot)) - KEPT_KEYS):
        old, new = live_spec.get(key), snapshot.get(key)
        # The snapshot spells out empty defaults (env: []); absent means the same.
        if old == new or (_empty(old) and _empty(new)):
            continue
        if key in snapshot:
            ops.append({"op": "add", "path": _pointer(key), "value": new})  # add replaces an existing member
        else:
            ops.append({"op": "remove", "path": _pointer(key)})
    return ops


def patched_spec(live_spec: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """``live_spec`` with the ops of :func:`spec_patch` applied."""
    out = dict(live_spec)
    for op in ops:
        key = op["path"].removeprefix("/spec/").replace("~1", "/").replace("~0", "~")
        if op["op"] == "add":
            out[key] = op["value"]
        else:
            out.pop(key, None)
    return out


def restore_problems(live_spec: dict[str, Any], ops: list[dict[str, Any]]) -> list[str]:
    """What today's admission rules refuse in the spec a rollback would
    make (an old revision's fields under rules tightened since, or beside
    the model's current rollout settings): ``spec.<field>: <why>`` each."""
    from pydantic import ValidationError

    from kubento.api.v1alpha1 import ModelDeploymentSpec

    try:
        ModelDeploymentSpec.model_validate(patched_spec(live_spec, ops))
    except ValidationError as exc:
        return [".".join(["spec", *(str(part) for part in e["loc"])]) + ": " + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()]
    return []


def describe_bento(bento: dict[str, Any]) -> str:
    """``image X`` / ``archive URI`` / ``build ...`` for a spec's bento."""
    if bento.get("image"):
        return f"image {bento['image']}"
    if bento.get("archive"):
        return f"archive {bento['archive'].get('uri')}"
    if bento.get("build"):
        return f"build from {next(iter(bento['build'].get('source') or {}), 'source')}"
    return "no bento"


def _cut(text: str, width: int = MESSAGE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _strategy_parts(name: str, spec: dict[str, Any], state: RolloutStatus) -> list[str]:
    """What the rollout's strategy says about where it stands (e.g. a canary's step)."""
    from pydantic import ValidationError

    from kubento.api.v1alpha1 import Rollout
    from kubento.rollout import strategy

    try:
        rollout = Rollout.model_validate({**(spec.get("rollout") or {}), "strategy": name})
        return strategy.of(name).describe(rollout, state)
    except (KeyError, ValidationError):
        return []  # a strategy this CLI does not know, or a spec it cannot read


def rollout_line(status: ModelDeploymentStatus, spec: dict[str, Any]) -> Optional[str]:
    """One line about the rollout under way, None when there is none."""
    state = status.rollout
    if state is None:
        return None
    strategy = state.strategy
    if state.rollback:
        why = state.rollback_message or ""
        return (f"Rolling back {state.revision} ({strategy}): {state.rollback}"
                f"{': ' + why if why else ''}; returning to {status.stable_revision}")
    parts = [f"Rolling out {state.revision} ({strategy}) since {state.since}"]
    parts += _strategy_parts(strategy, spec, state)
    if status.canary_weight is not None:
        parts.append(f"{status.canary_weight}% of ready pods on it (effective)")
    parts.append(f"Service selects {SERVICE_TARGETS.get(state.service, state.service)}")
    line = ", ".join(parts)
    if state.analysis:
        line += f"; analysis: {state.analysis}"
    if state.agreement:
        line += f"; prediction checks: {state.agreement.message}"
    return line


def history_table(status: ModelDeploymentStatus, spec: dict[str, Any]) -> str:
    """The revisions that ran, like `kubectl rollout history`, oldest first,
    then what is under way."""
    history = status.history
    stable = status.stable_revision
    rolling = status.rollout.revision if status.rollout else None
    lines = []
    if history:
        agreements = any(h.agreement is not None for h in history)  # predictionChecks.compareWithStable
        rows = [["NUMBER", "REVISION", "OUTCOME", "TIME", "BENTO", "ENVIRONMENT"]
                + (["AGREEMENT"] if agreements else []) + ["MESSAGE"]]
        for h in history:
            outcome = h.outcome
            if h.revision == stable:
                outcome += " (stable)"
            elif h.revision == rolling:
                outcome += " (rolling out)"
            message = h.message or h.reason or ""
            agreement = [f"{h.agreement:.0%}" if h.agreement is not None else ""] if agreements else []
            rows.append([str(h.number), h.revision, outcome, h.time, h.bento, h.environment or "-"]
                        + agreement + [_cut(message)])
        lines.append(_table(rows))
    else:
        lines.append("No revisions recorded yet.")
    line = rollout_line(status, spec)
    if line:
        lines.append(line)
    failed = status.failed_revision
    if failed and failed != stable and failed != rolling:
        lines.append(f"Failed revision {failed} is not rolled out again until the spec changes.")
    return "\n".join(lines)


# ------------------------------------------------------------------------ I/O


def default_namespace() -> str:
    """The pod's namespace in a cluster, else the kubeconfig context's, else default."""
    from kubernetes import config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                return f.read().strip() or "default"
        except OSError:
            return "default"
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        _, active = config.list_kube_config_contexts(config_file=path)
    except (config.ConfigException, OSError):
        return "default"  # the client reports the missing credentials itself
    return ((active or {}).get("context") or {}).get("namespace") or "default"


def _apis() -> tuple[Any, Any]:
    """CustomObjectsApi and AppsV1Api, with the operator's credentials logic."""
    from kubernetes import client

    from kubento.cli.kubeconfig import load_configuration

    api = client.ApiClient(load_configuration())
    return client.CustomObjectsApi(api), client.AppsV1Api(api)


def _get(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    from kubento.api import v1alpha1 as api

    try:
        return custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            raise Refused(f"modeldeployment {name} not found in namespace {namespace}") from None
        raise


def _history(args: argparse.Namespace, md: dict[str, Any], custom: Any, apps: Any) -> int:
    from kubento.controller.status import to_wire

    status = read_status(md)
    history = to_wire(status).get("history") or []  # as stored (camelCase)
    if args.output == "json":
        print(json.dumps(history, indent=2))
    elif args.output == "yaml":
        import yaml

        print(yaml.safe_dump(history, sort_keys=False), end="")
    else:
        print(history_table(status, md.get("spec") or {}))
    return 0


def _flag(args: argparse.Namespace, md: dict[str, Any], custom: Any, apps: Any) -> int:
    from kubento.api import v1alpha1 as api

    status = read_status(md)
    patch = flag_patch(status, args.command)
    custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, args.namespace, api.PLURAL, args.name, patch)
    assert status.rollout is not None
    rev = status.rollout.revision
    if args.command == "promote":
        print(f"{args.name}: promoting revision {rev}: the operator skips the remaining steps and analysis "
              "and moves all replicas to it as fast as its pods become ready")
    else:
        print(f"{args.name}: aborting the rollout of {rev}: the operator returns to revision "
              f"{status.stable_revision} and does not retry {rev} until the spec changes")
    return 0


def _rollback(args: argparse.Namespace, md: dict[str, Any], custom: Any, apps: Any) -> int:
    from kubernetes.client.exceptions import ApiException

    from kubento.api import v1alpha1 as api
    from kubento.builders.meta import ANNOTATION_SPEC, LABEL_MODEL, LABEL_REVISION

    status = read_status(md)
    entry = rollback_target(status, args.to_revision, (md.get("metadata") or {}).get("generation"))
    number, rev = entry.number, entry.revision
    selector = f"{LABEL_MODEL}={args.name},{LABEL_REVISION}={rev}"
    # What the revision was: its ControllerRevision keeps its Deployment (even one deleted since),
    # else (a revision from before kubento kept them) its Deployment. Raw JSON: the client's
    # models refuse a whole list over one field they do not expect.
    kept = json.loads(apps.list_namespaced_controller_revision(
        args.namespace, label_selector=selector, _preload_content=False).data).get("items") or []
    found = [k["data"] for k in kept if isinstance(k.get("data"), dict)]
    if not found:
        response = apps.list_namespaced_deployment(args.namespace, label_selector=selector, _preload_content=False)
        found = json.loads(response.data).get("items") or []
    if not found:
        raise Refused(f"revision {number} ({rev}) is no longer kept; raise spec.rollout.revisionHistoryLimit")
    text = ((found[0].get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SPEC)
    if not text:
        raise Refused(f"the Deployment of revision {number} ({rev}) has no {ANNOTATION_SPEC} annotation to restore")
    snapshot = json.loads(text)
    ops = spec_patch(md.get("spec") or {}, snapshot)
    if args.dry_run:
        print(json.dumps(ops, indent=2))
        return 0
    if not ops:
        raise NothingToDo(f"the spec already is that of revision {number} ({rev}); nothing to change")
    problems = restore_problems(md.get("spec") or {}, ops)
    if problems:
        raise Refused(f"revision {number} ({rev}) cannot be restored as it was: today's spec rules refuse it "
                      f"({'; '.join(problems)}); change those fields by hand (`kubectl edit md {args.name}`)")
    # Only over the spec that was read: a concurrent edit of the spec makes the patch fail, not vanish.
    # (The generation, not the resourceVersion: the operator's status writes during a rollout are no edit.)
    guard = [{"op": "test", "path": "/metadata/generation", "value": md["metadata"]["generation"]}]
    try:
        custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, args.namespace, api.PLURAL, args.name,
                                              guard + ops, _content_type="application/json-patch+json")
    except ApiException as exc:
        # A failed test op is a bare 422; tell it from a refused spec by looking again.
        if exc.status == 422 and _get(custom, args.namespace, args.name)["metadata"].get("generation") != \
                md["metadata"]["generation"]:
            raise Refused("the spec changed while kubento read it (someone else edited it); run the command again") from None
        raise
    what = f"{rev}, {describe_bento(snapshot.get('bento') or {})}"
    if rev == status.stable_revision:
        print(f"{args.name}: back to revision {number} ({what}), the stable one: "
              "the operator drops the rollout under way")
    else:
        print(f"{args.name}: rolling back to revision {number} ({what}) — "
              "the operator rolls it out with the model's strategy")
    return 0


def answered(command: str, name: str, action: Callable[[], int]) -> int:
    """Run a CLI command's ``action``; what went wrong becomes one line on
    stderr naming the command (and exit code 1), never a traceback."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException

    from kubento.controller.kube import rejection

    try:
        return action()
    except NothingToDo as exc:
        print(f"{name}: {exc}")
        return 0
    except Refused as exc:
        print(f"{command}: {exc}", file=sys.stderr)
    except ConfigException as exc:
        print(f"{command}: no cluster credentials: {exc}", file=sys.stderr)
    except ApiException as exc:
        print(f"{command}: {rejection(exc)}", file=sys.stderr)
    return 1


def on_a_model(command: str, do: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A ``kubento COMMAND NAME [-n NS]`` entry point: ``do(args)`` in the
    namespace given (or the default one), its failures ``answered``."""
    def run(args: argparse.Namespace) -> int:
        def action() -> int:
            args.namespace = args.namespace or default_namespace()
            return do(args)
        return answered(f"kubento {command} {args.name}", args.name, action)
    return run


def run(args: argparse.Namespace) -> int:
    def action() -> int:
        args.namespace = args.namespace or default_namespace()
        custom, apps = _apis()
        return _HANDLERS[args.command](args, _get(custom, args.namespace, args.name), custom, apps)

    return answered(f"kubento {args.command} {args.name}", args.name, action)


_HANDLERS = {"history": _history, "rollback": _rollback, "promote": _flag, "abort": _flag}


def register(sub: argparse._SubParsersAction) -> None:
    """Add history, rollback, promote and abort to ``kubento``'s subcommands."""

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description)
        p.add_argument("name", metavar="NAME", help="the ModelDeployment")
        p.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's, else default)")
        p.set_defaults(func=run)
        return p

    history = command(
        "history", "list a model's revisions and the rollout under way",
        "List the revisions in status.history (newest last), marking the stable one and the one rolling "
        "out, then the rollout under way: step, canary weight, what the Service selects, last analysis.",
    )
    history.add_argument("-o", "--output", choices=["json", "yaml"], help="print status.history as JSON or YAML")

    rollback = command(
        "rollback", "put an older revision's spec back (the operator rolls it out)",
        "Restore the pod-shaping spec fields (everything but replicas, autoscaling and rollout) of an "
        "older revision, read from its Deployment; the operator then rolls it out with the model's "
        "strategy. Default: the last revision that served before the stable one. A GitOps tool that "
        "owns the ModelDeployment puts its own spec back: roll back in Git instead.",
    )
    rollback.add_argument("--to-revision", type=int, metavar="N", help="a NUMBER from `kubento history`")
    rollback.add_argument("--dry-run", action="store_true", help="print the JSON patch instead of applying it")

    command(
        "promote", "finish the rollout under way now",
        "Skip the remaining canary steps and analysis: the operator moves all replicas to the new "
        "revision, still only as fast as its pods become ready.",
    )
    command(
        "abort", "stop the rollout under way and return to the stable revision",
        "Return to the stable revision; the new one is remembered as failed and not rolled out again "
        "until the spec changes.",
    )
