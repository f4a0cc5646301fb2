"""Fuzzing admission against a real API server and the running operator
(issue #12): every spec the API server accepts is one the operator can
apply.

Hypothesis generates specs mixing valid and invalid values in every field
(tests/integration/fuzz.py). Each is created as a user would (strict field
validation, like kubectl). Then either

- the API server refused it, and its message names a field of the spec; or
- it was accepted, the operator's models accept it too (else: InvalidSpec at
  run time), and the running operator reconciles it without ApplyFailed or
  InvalidSpec: the Deployment it builds passes the API server's own pod
  validation.

The operator never crashes: no handler error, no failed pass, its thread
alive. Holes are collected by class and reported together; the test fails
if there is any.

Cost: 1,000 specs by default (KUBENTO_FUZZ_EXAMPLES), derandomized (the
same specs on every run; KUBENTO_FUZZ_SEED picks another set), about 3
minutes on 2 cores. More:
    KUBENTO_FUZZ_EXAMPLES=5000 KUBENTO_FUZZ_SEED=7 .venv/bin/pytest tests/integration/test_fuzz.py -s
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from kubernetes import client
from pydantic import ValidationError

from kubento.api.v1alpha1 import GROUP, PLURAL, VERSION, ModelDeploymentSpec
from kubento.controller import metrics
from tests.integration import fuzz
from tests.specs import model_deployment

EXAMPLES = int(os.environ.get("KUBENTO_FUZZ_EXAMPLES", "1000"))
SEED = int(os.environ.get("KUBENTO_FUZZ_SEED", "12"))
BATCH = 40  # accepted specs reconciled, checked and deleted together
HOLE_REASONS = ("ApplyFailed", "InvalidSpec")


class Errors(logging.Handler):
    """ERROR records (with their tracebacks) of every thread: the operator's."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Fuzz:
    def __init__(self, api: client.CustomObjectsApi, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.apps = client.AppsV1Api(api.api_client)
        self.counts: Counter[str] = Counter()
        self.holes: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        self.pending: list[tuple[str, dict[str, Any]]] = []

    def hole(self, kind: str, detail: str, spec: dict[str, Any]) -> None:
        self.counts["holes"] += 1
        self.holes[kind].append((detail, spec))

    def admit(self, spec: dict[str, Any]) -> None:
        self.counts["specs"] += 1
        name = f"fuzz-{uuid.uuid4().hex[:8]}"
        try:
            created = self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, model_deployment(name, self.namespace, spec),
                field_validation="Strict")
        except client.ApiException as exc:
            if exc.status not in (400, 422):
                raise
            self.counts["refused"] += 1
            message = json.loads(exc.body).get("message", exc.body)
            named = {m for m in re.findall(r"spec\.([A-Za-z]+)", message)}
            if not named & set(spec):
                self.hole("refused without naming a field of the spec", message[:300], spec)
            return
        self.counts["accepted"] += 1
        try:
            ModelDeploymentSpec.model_validate(created["spec"])
        except ValidationError as exc:
            self.hole("accepted by the API server, refused by the operator's models",
                      " ".join(str(exc).split())[:300], spec)
        self.pending.append((name, spec))
        if len(self.pending) >= BATCH:
            self.drain()

    def drain(self) -> None:
        """Wait for the operator to reconcile every pending model, check, delete."""
        deadline = time.monotonic() + 90
        left = dict(self.pending)
        while left and time.monotonic() < deadline:
            for name in list(left):
                obj = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
                st = obj.get("status") or {}
                ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), None)
                if ready is None or st.get("observedGeneration") != obj["metadata"]["generation"]:
                    continue
                spec = left.pop(name)
                self.counts[f"reconciled: {ready['reason']}"] += 1
                if ready["reason"] in HOLE_REASONS:
                    self.hole(f"accepted, then {ready['reason']}", ready["message"][:300], spec)
                elif st.get("currentRevision"):
                    self.compare(name, st["currentRevision"], spec)
            if left:
                time.sleep(0.3)
        for name, spec in left.items():
            self.hole("accepted, never reconciled within 90 s", name, spec)
        for name, _ in self.pending:
            try:
                self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        self.pending = []

    def compare(self, name: str, rev: str, spec: dict[str, Any]) -> None:
        """What reached the pod template is what the spec says (no value
        changed on the way, e.g. by serialization)."""
        try:
            dep = self.apps.read_namespaced_deployment(f"{name}-{rev}", self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:  # not applied (e.g. a pull secret that does not exist)
                return
            raise
        meta = dep.spec.template.metadata
        changed = [k for k, v in (spec.get("podAnnotations") or {}).items() if (meta.annotations or {}).get(k) != v]
        changed += [k for k, v in (spec.get("podLabels") or {}).items() if (meta.labels or {}).get(k) != v]
        server = next(c for c in dep.spec.template.spec.containers if c.name == "bento")
        env = {e.name: e.value for e in server.env or []}
        changed += [e["name"] for e in spec.get("env") or [] if "value" in e and (env.get(e["name"]) or "") != e["value"]]
        if changed:
            self.hole("applied with values changed", ", ".join(changed), spec)

    def report(self) -> str:
        lines = [f"{k}: {v}" for k, v in sorted(self.counts.items())]
        for kind, cases in self.holes.items():
            lines.append(f"HOLE {kind}: {len(cases)}")
            for detail, spec in cases[:5]:
                lines.append(f"    {detail}\n      spec: {json.dumps(spec)[:600]}")
        return "\n".join(lines)


@pytest.fixture
def pull_secret(controlplane, namespace):
    controlplane.kubectl("create", "secret", "generic", fuzz.PULL_SECRET, "-n", namespace, check=False)
    yield
    controlplane.kubectl("delete", "secret", fuzz.PULL_SECRET, "-n", namespace, "--ignore-not-found", check=False)


def test_every_spec_the_api_server_accepts_is_one_the_operator_applies(admin, namespace, operator, pull_secret):
    errors = Errors()
    logging.getLogger().addHandler(errors)
    failed_passes = metrics.RECONCILE_ERRORS._value.get()
    run = Fuzz(client.CustomObjectsApi(admin), namespace)
    start = time.monotonic()

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(spec=st.one_of(fuzz.spec(), fuzz.schema_spec()))
    def admit(spec):
        run.admit(spec)

    try:
        admit()
        run.drain()
    finally:
        logging.getLogger().removeHandler(errors)
    took = time.monotonic() - start
    # sys.stdout belongs to the operator's CliRunner (KopfRunner) while it runs.
    print(f"\n[fuzz] {took:.0f}s, seed {SEED}\n{run.report()}", file=sys.__stdout__, flush=True)

    assert run.counts["specs"] >= EXAMPLES
    assert run.counts["refused"] and run.counts["accepted"], run.report()  # both kinds were generated
    assert operator._thread.is_alive(), "the operator stopped"
    assert metrics.RECONCILE_ERRORS._value.get() == failed_passes, "passes failed"
    tracebacks = [r for r in errors.records if r.exc_info]
    assert not tracebacks, logging.Formatter().formatException(tracebacks[0].exc_info)
    assert not run.holes, run.report()
