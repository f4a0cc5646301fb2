"""No credential ever appears where kubento writes or prints: the
ModelDeployments' status, the events, the operator's log, ``kubento
history``, nor the children it makes (Secrets are passed by name:
imagePullSecrets, envFrom, secretKeyRef). The operator asks for Secrets by
name and for their metadata only; the audit log shows it never lists,
watches or writes one.

Every kind of Secret a spec can name is used with a value that cannot appear
by chance: the pull Secret, S3 credentials of an archive and of a build's
output, git credentials, and one named while it does not exist yet.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid

from kubernetes import client

from tests.helpers import condition, wait_for, with_ready_reason
from tests.integration.conftest import OPERATOR_USER, RESYNC_SECONDS, audit_events, get_json
from tests.integration.test_reconcile import md_get, settle
from tests.integration.test_rollout import kubento
from tests.integration.test_sources import NOTHING_EXTRA, env_jobs, finish_env_job, finish_job, jobs_of
from tests.specs import VALID_SPEC


class Everything(logging.Handler):
    """Every log record of the in-process operator (all threads), with its
    arguments, extra fields and traceback, as any log format could print it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text + " " + json.dumps(record.__dict__, default=str))


def test_no_credential_appears_in_status_events_logs_history_or_children(controlplane, admin, namespace, md,
                                                                        operator):
    audit_from = os.path.getsize(controlplane.audit_log)
    logs = Everything()
    logging.getLogger().addHandler(logs)
    try:
        check(controlplane, admin, namespace, md, logs, audit_from)
    finally:
        logging.getLogger().removeHandler(logs)


def check(controlplane, admin, namespace, md, logs, audit_from):
    core = client.CoreV1Api(admin)
    tag = uuid.uuid4().hex[:6]
    values: list[str] = []

    def secret(name: str, data: dict[str, str], type_: str = "Opaque") -> str:
        core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "type": type_, "stringData": data})
        for v in data.values():
            values.extend([v, base64.b64encode(v.encode()).decode()])
        return name

    password = f"pull-pw-{uuid.uuid4().hex}"
    auth = base64.b64encode(f"robot:{password}".encode()).decode()
    pull = secret(f"pull-{tag}", {".dockerconfigjson": json.dumps({"auths": {"registry.local": {"auth": auth}}})},
                  "kubernetes.io/dockerconfigjson")
    values += [password, auth]
    s3 = secret(f"s3-{tag}", {"AWS_ACCESS_KEY_ID": f"AKIA{uuid.uuid4().hex[:16].upper()}",
                              "AWS_SECRET_ACCESS_KEY": f"s3-secret-{uuid.uuid4().hex}"})
    out = secret(f"out-{tag}", {"AWS_ACCESS_KEY_ID": f"AKIA{uuid.uuid4().hex[:16].upper()}",
                                "AWS_SECRET_ACCESS_KEY": f"out-secret-{uuid.uuid4().hex}"})
    git = secret(f"git-{tag}", {"username": f"git-user-{uuid.uuid4().hex[:8]}", "password": f"git-pw-{uuid.uuid4().hex}"})

    # An image model with a pull Secret, rolled out twice (two history entries).
    image = md({**VALID_SPEC, "imagePullSecrets": [{"name": pull}]})
    settle(controlplane, admin, namespace, image)
    controlplane.kubectl("patch", "md", image, "-n", namespace, "--type=merge",
                         "-p", json.dumps({"spec": {"bento": {"image": "registry.local/iris:2.0"}}}))
    settle(controlplane, admin, namespace, image)
    # An archive from S3 with credentials.
    archive = md({"bento": {"archive": {"uri": "s3://models/iris.bento", "secretRef": {"name": s3}}},
                  "imagePullSecrets": [{"name": pull}]})
    settle_archive(controlplane, admin, namespace, archive)
    # A build from git with credentials, uploading with others; the build fails.
    build = md({"bento": {"build": {"source": {"git": {"url": "https://git.example/team/iris.git",
                                                        "secretRef": {"name": git}}},
                                     "output": {"uri": "s3://bento-store/built", "secretRef": {"name": out}}}}})
    (job,) = wait_for("a build Job", lambda: jobs_of(controlplane, namespace, build), timeout=60)
    finish_job(admin, namespace, job, ok=False)
    wait_for("BuildFailed", lambda: (condition(md_get(controlplane, namespace, build), "BuildSucceeded") or {})
             .get("status") == "False", timeout=30)
    # A Secret named before it exists: the condition and event name it, and only it.
    late = f"late-{tag}"
    missing = md({"bento": {"archive": {"uri": "s3://models/iris.bento", "secretRef": {"name": late}}}})
    wait_for("SecretNotFound", lambda: with_ready_reason(md_get(controlplane, namespace, missing), "SecretNotFound"))
    secret(late, {"AWS_ACCESS_KEY_ID": f"AKIA{uuid.uuid4().hex[:16].upper()}",
                  "AWS_SECRET_ACCESS_KEY": f"late-secret-{uuid.uuid4().hex}"})
    settle_archive(controlplane, admin, namespace, missing)

    models = [image, archive, build, missing]
    places = {
        "status": json.dumps([md_get(controlplane, namespace, m).get("status") for m in models]),
        "events": controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout,
        "the operator's log": "\n".join(logs.lines),
        "kubento history": "\n".join(kubento(controlplane, "history", m, "-n", namespace).stdout for m in models),
        "children": "\n".join(json.dumps(get_json(controlplane, kind, "-n", namespace, "-l",
                                                  "app.kubernetes.io/managed-by=kubento"))
                              for kind in ("deployments", "services", "jobs", "configmaps")),
    }
    # The places were looked at: what kubento wrote about these models is there.
    assert f"Secret(s) named in the spec do not exist in namespace {namespace}" in places["events"] + places["status"]
    assert late in places["events"] and "BuildFailed" in places["status"] and job in places["kubento history"] + places["status"]
    assert pull in places["children"] and s3 in places["children"] and git in places["children"]
    assert any(m in places["the operator's log"] for m in models), "no log line about these models"
    leaks = [(where, v[:12] + "...") for where, text in places.items() for v in values if v in text]
    assert not leaks, leaks

    # What the operator asked of Secrets: get by name, nothing else.
    secret_calls = [e for e in audit_events(controlplane, audit_from)
                    if e["user"]["username"] == OPERATOR_USER and (e.get("objectRef") or {}).get("resource") == "secrets"]
    assert secret_calls, "the operator checked no Secret"
    assert {e["verb"] for e in secret_calls} == {"get"}, {e["verb"] for e in secret_calls}
    assert {e["objectRef"]["name"] for e in secret_calls} <= {pull, s3, out, git, late}


def settle_archive(controlplane, admin, namespace, name):
    """An archive model settles once its Python environment is looked at: play
    the environment Job (nothing the runtime lacks) whenever one is pending,
    and the Deployment controller, until the model is Ready."""
    def done():
        for job in env_jobs(controlplane, namespace, "s3://models/iris.bento"):
            if not {"succeeded", "failed"} & {k for k, v in (job.get("status") or {}).items() if v}:
                finish_env_job(admin, namespace, job["metadata"]["name"], NOTHING_EXTRA)
        try:
            return settle(controlplane, admin, namespace, name, timeout=1)
        except AssertionError:
            return None
    return wait_for(f"{name} to settle with its environment", done, timeout=3 * RESYNC_SECONDS + 30, interval=0.5)

