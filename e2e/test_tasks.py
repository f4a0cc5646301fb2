"""BentoML task endpoints (``@bentoml.task``) behind the model's Service, on a
real node (#26 item 5): examples/tasks served from an archive (built here with
`bentoml build` + `bentoml export`, fetched by the pods over HTTP from this
machine), tasks submitted, polled and fetched through the Service by
e2e/taskclient.py (keep-alive and new connections).

BentoML keeps a task's status and result in the SQLite file of the server
that ran it: with more than one replica a status or result request reaching
another pod is ``404 task_id not found``. kubento's server
(kubento.runtime.tasks) routes each id to the replica that owns it and keeps
a stopping replica until its tasks are done and fetched.

Figures (submitted, fetched, failed, lost; with 1 and 3 replicas and across a
rolling update) are printed with ``-s``:

    flock /tmp/kubento-e2e.lock .venv/bin/pytest e2e/test_tasks.py -s
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import taskclient
from e2e.conftest import IN_CLUSTER, NAMESPACE
from e2e.support import ROOT, apply_md, md, served_archive, settled
from tests.helpers import wait_for

PROJECT = ROOT / "examples" / "tasks"
TASKS = 200
RETRIES = 20  # of the fetched tasks, BentoML's retry through the Service too (3 replicas)
CLIENT_SOURCE = Path(taskclient.__file__).read_text()
# Failures a keep-alive client may see when the pod under its idle connection
# stops (as in e2e/test_rollout.py): no answer, so no task id either; the
# client knows its submit did not go through. Anything else is a failure.
CONNECTION_CLOSED = ("RemoteDisconnected", "BrokenPipeError", "ConnectionResetError")


@pytest.fixture(scope="module")
def tasks_archive(host_ip, tmp_path_factory) -> dict[str, str]:
    """examples/tasks as a .bento archive served over HTTP on the node's address."""
    with served_archive(PROJECT, "tasks", host_ip, tmp_path_factory.mktemp("tasks")) as archive:
        yield archive


def tasks_spec(archive: dict[str, str], replicas: int) -> dict:
    """examples/tasks/modeldeployment.yaml's spec, the archive from tasks_archive."""
    spec = yaml.safe_load((PROJECT / "modeldeployment.yaml").read_text())["spec"]
    spec["bento"] = {"archive": dict(archive)}
    spec["replicas"] = replicas
    return spec


def service_url(cluster, name: str) -> str:
    return f"http://{cluster.get('service', name, '-n', NAMESPACE)['spec']['clusterIP']}"


def serving(cluster, model, prefix: str, spec: dict) -> tuple[str, str]:
    """A ModelDeployment of ``spec`` once it is settled and every one of its
    replicas answers through its Service: (name, Service URL)."""
    name = model(prefix, spec)
    wait_for(f"{name} to be Ready", lambda: settled(cluster, name), timeout=300, interval=1)
    url = service_url(cluster, name)
    # kube-proxy programs a Service's endpoints a moment after the pods are Ready, one by one: until
    # every replica takes new connections, all tasks could land on one pod and prove nothing
    seen: set[str] = set()

    def every_replica_answers() -> set[str] | None:
        seen.update(served_by(cluster, url, 20))
        return seen if len(seen) >= spec["replicas"] else None

    wait_for(f"all {spec['replicas']} replicas of {name} to answer through its Service", every_replica_answers,
             timeout=120, interval=0.5)
    return name, url


def served_by(cluster, url: str, requests: int) -> list[str]:
    """The pods that answered ``requests`` calls of /upper through ``url``, each on a new connection."""
    if not IN_CLUSTER:
        return taskclient.served_by(url, requests, timeout=5)
    out = cluster.kubectl("exec", "-n", NAMESPACE, cluster.client_pod, "--", "python3", "-c", CLIENT_SOURCE,
                          "served-by", json.dumps({"url": url, "requests": requests, "timeout": 5}))
    return json.loads(out.stdout)


class Tasks:
    """e2e/taskclient.py's TaskRun against ``url``: in threads here, or in
    the cluster's client pod where Service IPs answer only inside the
    cluster (KUBENTO_E2E_IN_CLUSTER)."""

    def __init__(self, cluster, url: str, **options: Any):
        self.cluster, self.url, self.options = cluster, url, options
        self.local: taskclient.TaskRun | None = None
        self.proc: subprocess.Popen | None = None

    def start(self, count: int | None = None) -> None:
        if not IN_CLUSTER:
            self.local = taskclient.TaskRun(self.url, **self.options)
            self.local.start(count)
            return
        c = self.cluster
        args = {"url": self.url, "count": count, **self.options}
        self.proc = subprocess.Popen(
            [c.kubectl_bin, "kubectl", "--kubeconfig", c.kubeconfig, "exec", "-i", "-n", NAMESPACE, c.client_pod,
             "--", "python3", "-u", "-c", CLIENT_SOURCE, "run", json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if '"started"' not in line:
            raise AssertionError(f"the task client did not start in the client pod: {line}"
                                 f"{self.proc.stderr.read()[-2000:]}")

    def stop_submitting(self) -> None:
        if self.local is not None:
            self.local.stop_submitting()
        elif self.proc is not None:
            self.proc.stdin.close()

    def finish(self, timeout: float) -> dict[str, Any]:
        if self.local is not None:
            return self.local.finish(timeout)
        try:
            out, err = self.proc.communicate(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the task client in the client pod did not end within {timeout + 30:.0f}s")
        for line in out.splitlines():
            if line.startswith('{"summary"'):
                return json.loads(line)["summary"]
        raise AssertionError(f"the task client in the client pod gave no summary: {out[-2000:]}{err[-2000:]}")


def verdict(what: str, s: dict[str, Any]) -> str:
    """The assertion message: the figures and what went wrong."""
    return (f"{what}: {taskclient.describe(s)}\nanswers {s['answers']}\nlost, e.g. {s['lost_examples']}"
            f"\nfailed, e.g. {s['failed_examples']}")


def report(what: str, s: dict[str, Any]) -> None:
    print(f"\n[tasks] {what}: {taskclient.describe(s)}\n[tasks]   answers {s['answers']}")
    for example in s["lost_examples"][:5]:
        print(f"[tasks]   lost: {example}")
    for example in s["failed_examples"][:5]:
        print(f"[tasks]   failed: {example}")


def run_tasks(cluster, url: str, count: int, retries: int = 0) -> dict[str, Any]:
    """``count`` tasks of 0.5 s submitted through ``url`` as fast as they are
    answered (2 clients), each polled every 0.25 s and fetched (6 clients)."""
    tasks = Tasks(cluster, url, seconds=(0.5,), submitters=2, pollers=6, timeout=10, poll_every=0.25,
                  deadline=60, retries=retries)
    tasks.start(count)
    return tasks.finish(timeout=180)


def assert_all_fetched(what: str, s: dict[str, Any], submitted: int, retried: int = 0) -> None:
    message = verdict(what, s)
    assert s["submitted"] == submitted and not s["submit_failures"], message
    assert s["retried"] == retried, message
    assert s["lost"] == 0 and s["failed"] == 0, message
    assert s["fetched"] == submitted + retried, message
    # nothing stops here: every request answered 200 (no 404, no 5xx, no dropped connection)
    assert all(k.split()[1] == "200" for k in s["answers"]), message
    assert s["other_id"] == 0, message


def test_200_tasks_on_one_replica_are_all_fetched(cluster, model, tasks_archive):
    """The baseline: one server holds every task."""
    name, url = serving(cluster, model, "tasks-one", tasks_spec(tasks_archive, 1))
    s = run_tasks(cluster, url, TASKS)
    report("1 replica", s)
    assert_all_fetched("1 replica", s, TASKS)


def test_200_tasks_on_three_replicas_are_all_fetched_through_the_service(cluster, model, tasks_archive):
    """Submits, status polls and fetches each reach any of the 3 pods: every
    task is found, whichever pod took it; so is every retry's new task."""
    name, url = serving(cluster, model, "tasks-three", tasks_spec(tasks_archive, 3))
    s = run_tasks(cluster, url, TASKS, retries=RETRIES)
    report("3 replicas", s)
    assert_all_fetched("3 replicas", s, TASKS, RETRIES)
    if "?" not in s["owners"]:  # kubento's server names the owner: the tasks were spread over the pods
        assert len(s["owners"]) == 3, verdict("3 replicas", s)


class PodWatch:
    """The model's pods during a rollout, every second: when each one was
    first seen terminating and last seen at all, and its server's last log
    lines while it stopped (kubento's linger says what it waits for)."""

    def __init__(self, cluster, name: str):
        self.cluster, self.name = cluster, name
        self.terminating: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
        self.logs: dict[str, str] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                pods = self.cluster.get("pods", "-n", NAMESPACE, "-l",
                                        f"serving.kubento.io/model-deployment={self.name}")["items"]
            except Exception:  # noqa: BLE001 - a missed sample
                continue
            now = time.monotonic() - self.started
            for pod in pods:
                pod_name = pod["metadata"]["name"]
                self.last_seen[pod_name] = now
                if pod["metadata"].get("deletionTimestamp"):
                    self.terminating.setdefault(pod_name, now)
                    out = self.cluster.kubectl("logs", "-n", NAMESPACE, pod_name, "--tail=200", check=False)
                    if out.returncode == 0 and out.stdout:
                        self.logs[pod_name] = out.stdout

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def stopping_seconds(self) -> dict[str, float]:
        """Per stopped pod: from first seen terminating to last seen (±1 s)."""
        return {p: round(self.last_seen[p] - t, 1) for p, t in self.terminating.items()}

    def kubento_lines(self) -> list[str]:
        return [f"{p}: {line}" for p, text in self.logs.items() for line in text.splitlines() if "kubento" in line]


def test_tasks_submitted_across_a_rolling_update_are_all_fetched(cluster, model, tasks_archive):
    """Tasks of 0.5 to 8 s submitted 4 per second for the whole of a rolling
    update of 3 replicas (the old pods stop with tasks in flight, and with
    results not fetched yet), each polled and fetched through the Service:
    every one is fetched."""
    spec = tasks_spec(tasks_archive, 3)
    name, url = serving(cluster, model, "tasks-roll", spec)
    v1 = md(cluster, name)["status"]["stableRevision"]
    tasks = Tasks(cluster, url, seconds=(0.5, 1.0, 3.0, 8.0), submitters=2, pollers=6, timeout=10,
                  poll_every=0.5, deadline=120, rate=4)
    with PodWatch(cluster, name) as pods:
        tasks.start()
        time.sleep(8)  # tasks of every length in flight on every v1 pod
        start = time.monotonic()
        apply_md(cluster, name, {**spec, "env": [{"name": "MODEL_VERSION", "value": "2"}]})
        wait_for("v2 to be promoted", lambda: (o := settled(cluster, name)) and o["status"]["stableRevision"] != v1,
                 timeout=300, interval=0.5)
        promoted = time.monotonic() - start
        wait_for("the v1 pods to be gone", lambda: pods.terminating and all(
            pods.last_seen[p] < time.monotonic() - pods.started - 2 for p in pods.terminating), timeout=120, interval=1)
        gone = time.monotonic() - start
        time.sleep(3)  # and a few more on v2 alone
        tasks.stop_submitting()
        s = tasks.finish(timeout=240)
    report(f"rolling update of 3 replicas (promoted after {promoted:.1f}s, the last v1 pod gone after {gone:.1f}s; "
           f"v1 pods stopping for {pods.stopping_seconds()} s)", s)
    for line in pods.kubento_lines()[-20:]:
        print(f"[tasks]   {line}")
    message = verdict("rolling update", s) + "\nstopping pods' kubento lines:\n" + "\n".join(pods.kubento_lines()[-40:])
    assert s["lost"] == 0 and s["failed"] == 0, message
    assert s["fetched"] == s["submitted"] > 100, message
    # a submit a client got no answer to made no task it knows of; any other failed submit is a failure
    assert all(k.removeprefix("submit ").startswith(CONNECTION_CLOSED) for k in s["submit_failures"]), message
    assert len(pods.terminating) == 3, pods.terminating
