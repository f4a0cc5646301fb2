"""The readiness gate of prediction checks, as pure functions.

A model with ``spec.predictionChecks`` runs its pods with a readiness gate,
the pod condition ``serving.kubento.io/prediction-checks``: the kubelet
reports a pod Ready (and the endpoints controller puts it into the Service)
only once kubento has set that condition True. kubento checks a pod when its
containers are ready (its own probes pass) and writes the verdict on the pod:

- True, ChecksPassed: every check passed (and, for a new revision with
  compareWithStable, its answers agreed with the stable revision's);
- False, PredictionCheckFailed: a wrong answer, a 4xx, or no answer / a 5xx
  on MAX_ATTEMPTS runs in a row; final for that pod (it stays out of the
  Service; a new revision is rolled back);
- False, PredictionMismatch: the new revision disagreed with stable; final;
- False, CheckRetrying / Comparing / CheckInputsMissing / ContainersNotReady:
  not yet, said why.

A pass holds while the containers stay ready: kubento records the
ContainersReady condition's lastTransitionTime as the gate's lastProbeTime,
revokes the gate when the containers stop being ready (a container restart)
and checks again when they are ready again (also when the operator missed
the restart: the times differ).

What each revision is checked against travels with it: the checks are an
annotation of the revision's Deployment (they are part of the revision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import ValidationError

from kubento.api.v1alpha1 import GROUP, Agreement, PredictionChecks
from kubento.predictions.expect import CheckResult, parse_body, parse_lines, request_body, shorten

GATE = f"{GROUP}/prediction-checks"
ANNOTATION_CHECKS = f"{GROUP}/prediction-checks"  # on a revision's Deployment: its checks (JSON)
PASSED = "ChecksPassed"
FAILED = "PredictionCheckFailed"
MISMATCH = "PredictionMismatch"
FINAL = (FAILED, MISMATCH)
MAX_ATTEMPTS = 3  # runs in a row with no answer or a 5xx before a pod fails
RETRY_SECONDS = 2.0
MESSAGE = 400  # characters of a gate condition's message


def gate_condition(pod: dict[str, Any]) -> Optional[dict[str, Any]]:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == GATE), None)


def containers_ready(pod: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The pod's ContainersReady condition, if True (and it has an IP and is not going away)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp") or not (pod.get("status") or {}).get("podIP"):
        return None
    return next((c for c in (pod.get("status") or {}).get("conditions") or []
                 if c.get("type") == "ContainersReady" and c.get("status") == "True"), None)


def pod_state(pod: dict[str, Any]) -> str:
    """passed, failed, due (to be checked now), revoke (a pass that no longer holds) or waiting."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "gone"
    cond, ready = gate_condition(pod), containers_ready(pod)
    if cond is not None and cond.get("status") == "True":
        if ready is None:
            return "revoke"
        return "passed" if cond.get("lastProbeTime") == ready.get("lastTransitionTime") else "due"
    if cond is not None and cond.get("reason") in FINAL:
        return "failed"
    return "due" if ready is not None else "waiting"


@dataclass(frozen=True)
class RevisionChecks:
    """A revision's checks and the port its pods answer on."""

    checks: PredictionChecks
    port: int


def checks_annotation(checks: PredictionChecks, port: int) -> str:
    return json.dumps({"port": port, "predictionChecks": checks.wire()}, sort_keys=True, separators=(",", ":"))


def revision_checks(deployments: dict[str, dict[str, Any]]) -> dict[str, RevisionChecks]:
    """The checks of each revision that has some (from its Deployment)."""
    out = {}
    for rev, dep in deployments.items():
        text = ((dep.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_CHECKS)
        if not text:
            continue
        try:
            value = json.loads(text)
            out[rev] = RevisionChecks(PredictionChecks.model_validate(value["predictionChecks"]), int(value["port"]))
        except (ValueError, KeyError, TypeError, ValidationError):
            continue  # not ours to judge: the Deployment is re-applied from the spec when it is the spec's
    return out


@dataclass(frozen=True)
class CheckInputs:
    """Request bodies of a revision's checks, resolved from the spec or its ConfigMaps."""

    bodies: dict[str, Optional[bytes]]  # check name -> body (None: GET)
    lines: list[Any]  # compareWithStable's inputs (empty without it)
    error: str = ""  # what is missing or malformed


def resolve(checks: PredictionChecks, config_maps: dict[str, Optional[dict[str, Any]]]) -> CheckInputs:
    """The bodies to send; ``config_maps`` holds the content of those named
    (None: it does not exist)."""
    bodies: dict[str, Optional[bytes]] = {}
    lines: list[Any] = []

    def text(ref: Any, field_: str) -> str:
        content = config_maps.get(ref.name)
        if content is None:
            raise ValueError(f"ConfigMap {ref.name} ({field_}) does not exist")
        data = content.get("data") or {}
        if ref.key not in data:
            raise ValueError(f"ConfigMap {ref.name} has no key {ref.key} ({field_})")
        return data[ref.key]

    try:
        for c in checks.checks:
            if c.body_from is not None:
                where = f"predictionChecks.checks[{c.name}].bodyFrom"
                bodies[c.name] = request_body(parse_body(text(c.body_from.config_map_key_ref, where),
                                                         f"ConfigMap {c.body_from.config_map_key_ref.name} key "
                                                         f"{c.body_from.config_map_key_ref.key}"))
            else:
                bodies[c.name] = None if c.method == "GET" else request_body(c.body)
        cmp = checks.compare_with_stable
        if cmp is not None:
            ref = cmp.inputs.config_map_key_ref
            lines = parse_lines(text(ref, "predictionChecks.compareWithStable.inputs"),
                                f"ConfigMap {ref.name} key {ref.key}", cmp.max_inputs)
    except ValueError as exc:
        return CheckInputs({}, [], str(exc))
    return CheckInputs(bodies, lines)


def compares(rev: str, checks: PredictionChecks, stable: Optional[str], candidate: Optional[str]) -> bool:
    """Whether ``rev``'s pods must agree with the stable revision before they serve."""
    return checks.compare_with_stable is not None and stable is not None and rev == candidate and rev != stable


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class PodResult:
    """One run of a revision's checks on one pod (from the I/O layer)."""

    results: tuple[CheckResult, ...] = ()
    attempt: int = 1  # runs in a row that could not tell (no answer, 5xx), this one included
    error: str = ""  # the checks could not be sent (a ConfigMap input is missing)
    ready_since: Optional[str] = None  # ContainersReady's lastTransitionTime when checked

    @property
    def ok(self) -> bool:
        return not self.error and all(r.ok for r in self.results)

    @property
    def undecided(self) -> bool:
        """Failed only for want of an answer, with tries left."""
        failed = [r for r in self.results if not r.ok]
        return bool(failed) and all(r.retry for r in failed) and self.attempt < MAX_ATTEMPTS

    def failure(self) -> str:
        failed = [r for r in self.results if not r.ok]
        more = f" ({len(failed)} of {len(self.results)} checks failed)" if len(failed) > 1 else ""
        return failed[0].message + more

    def summary(self) -> str:
        n = len(self.results)
        took = max((r.seconds for r in self.results), default=0.0)
        return f"{n} check{'s' if n != 1 else ''} passed" + (f" (slowest {took * 1000:.0f}ms)" if n else "")


@dataclass(frozen=True)
class Due:
    """A pod to check on this pass."""

    revision: str
    pod: dict[str, Any]
    compare: bool  # and compare its revision with stable (if its checks pass)


def due(pods: dict[str, list[dict[str, Any]]], checks: dict[str, RevisionChecks], stable: Optional[str],
        candidate: Optional[str], agreement: Optional[Agreement]) -> list[Due]:
    """Pods whose checks must run now. ``agreement`` is the candidate's
    comparison already recorded in status (then it is not run again)."""
    out = []
    compared = False
    for rev, revision_checks_ in sorted(checks.items()):
        for pod in sorted(pods.get(rev, []), key=lambda p: p["metadata"].get("name", "")):
            if pod_state(pod) != "due":
                continue
            compare = compares(rev, revision_checks_.checks, stable, candidate) and agreement is None and not compared
            compared = compared or compare
            out.append(Due(rev, pod, compare))
    return out


# ------------------------------------------------------------------- gating


@dataclass
class Gates:
    conditions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (pod name, condition) to write
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)  # revision -> (reason, message)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (reason, message): checks that cannot run
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: Optional[float] = None


def _condition(status: bool, reason: str, message: str, previous: Optional[dict[str, Any]], stamp: str,
               probe: Optional[str]) -> dict[str, Any]:
    state = "True" if status else "False"
    since = (previous or {}).get("lastTransitionTime") if (previous or {}).get("status") == state else None
    out = {"type": GATE, "status": state, "reason": reason, "message": shorten(message, MESSAGE),
           "lastTransitionTime": since or stamp}
    if probe:
        out["lastProbeTime"] = probe
    return out


def _differs(previous: Optional[dict[str, Any]], new: dict[str, Any]) -> bool:
    keys = ("status", "reason", "message", "lastProbeTime")
    return previous is None or any(previous.get(k) != new.get(k) for k in keys)


def plan_gates(pods: dict[str, list[dict[str, Any]]], checks: dict[str, RevisionChecks],
               results: dict[str, PodResult], *, stable: Optional[str], candidate: Optional[str],
               agreement: Optional[Agreement], stamp: str) -> Gates:
    """What to write on each pod of the revisions that have checks, and
    which revisions failed (a new revision that fails is rolled back).
    ``results`` are this pass's runs by pod uid; ``agreement`` is the
    candidate's comparison with stable (this pass's or recorded in status)."""
    out = Gates()
    for rev, revision_checks_ in sorted(checks.items()):
        for pod in sorted(pods.get(rev, []), key=lambda p: p["metadata"].get("name", "")):
            name, uid = pod["metadata"]["name"], pod["metadata"].get("uid", "")
            cond, state = gate_condition(pod), pod_state(pod)
            new: Optional[dict[str, Any]] = None
            if state == "revoke" or (state == "due" and uid not in results and (cond or {}).get("status") == "True"):
                # Its containers stopped being ready (a restart) since they passed: not until checked again.
                new = _condition(False, "ContainersNotReady",
                                 "its containers restarted or are not ready: checked again once they are ready",
                                 cond, stamp, None)
            elif state == "due" and uid in results:
                new = _decide(results[uid], compares(rev, revision_checks_.checks, stable, candidate), agreement,
                              cond, stamp)
                if new["reason"] in FINAL:
                    out.events.append(("Warning", new["reason"], f"pod {name} (revision {rev}): {new['message']}"))
                elif new["reason"] == "CheckInputsMissing":
                    out.problems.append((new["reason"], f"pods of revision {rev} cannot be checked: {new['message']}"))
                elif new["reason"] == "CheckRetrying":
                    out.requeue_after = RETRY_SECONDS
            if new is not None and _differs(cond, new):
                out.conditions.append((name, new))
            shown = new or cond
            if shown and shown.get("reason") in FINAL:
                out.failures.setdefault(rev, (shown["reason"], f"pod {name}: {shown.get('message', '')}"))
    return out


def _decide(result: PodResult, compare: bool, agreement: Optional[Agreement],
            previous: Optional[dict[str, Any]], stamp: str) -> dict[str, Any]:
    probe = result.ready_since
    if result.error:
        return _condition(False, "CheckInputsMissing", result.error, previous, stamp, None)
    if not result.ok:
        if result.undecided:
            return _condition(False, "CheckRetrying", f"attempt {result.attempt} of {MAX_ATTEMPTS}: {result.failure()}",
                              previous, stamp, None)
        return _condition(False, FAILED, result.failure(), previous, stamp, None)
    if not compare:
        return _condition(True, PASSED, result.summary(), previous, stamp, probe)
    if agreement is None:
        return _condition(False, "Comparing", f"{result.summary()}; waiting to compare with the stable revision",
                          previous, stamp, None)
    if not agreement.passed:
        return _condition(False, MISMATCH, agreement.message, previous, stamp, None)
    return _condition(True, PASSED, f"{result.summary()}; {agreement.message}", previous, stamp, probe)
