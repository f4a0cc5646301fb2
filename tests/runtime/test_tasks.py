"""Task endpoints across replicas (kubento.runtime.tasks): real ``bentoml
serve`` processes started by ``python -m kubento.runtime serve``, one per
"pod" (its own BENTOML_HOME), all on the same port on different loopback
addresses (127.0.0.1, .2, .3), as replicas share a port on their pod IPs. A
client reaches a random one, as through a Service."""

from __future__ import annotations

import http.client
import http.server
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.runtime.conftest import Archive, Pod, build_archive
from tests.runtime.test_drain import stop
from tests.s3server import free_port

PROJECT = Path(__file__).parent / "tasks_project"


@pytest.fixture(scope="module")
def tasks_archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    return build_archive(PROJECT, tmp_path_factory.mktemp("tasks-archive"), "tasks")


class Replica:
    def __init__(self, root: Path, archive: Archive, host: str, port: int, **env: str):
        self.pod = Pod(root)
        for d in (self.pod.home, self.pod.work, self.pod.pvc / "claim"):
            d.mkdir(parents=True)
        shutil.copy(archive.path, self.pod.pvc / "claim" / "tasks.bento")
        fetched = self.pod.run("fetch", KUBENTO_ARCHIVE_URI="pvc://claim/tasks.bento")
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        self.host, self.port = host, port
        self.log = root / "serve.log"
        with open(self.log, "w") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "kubento.runtime", "serve", "--host", host],
                env=self.pod.env(BENTOML_PORT=str(port), KUBENTO_TASK_ADDRESS=f"{host}:{port}", **env),
                stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while True:
            assert self.server.poll() is None, f"bentoml serve exited: {self.logs()}"
            try:
                urllib.request.urlopen(f"http://{self.host}:{self.port}/readyz", timeout=2)
                return
            except OSError:
                assert time.monotonic() < deadline, self.logs()
                time.sleep(0.3)

    def logs(self) -> str:
        return self.log.read_text()[-3000:]

    def call(self, method: str, path: str, body: Optional[dict] = None) -> tuple[int, dict | str, dict]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"content-type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read().decode()
            try:
                parsed: dict | str = json.loads(raw)
            except ValueError:
                parsed = raw
            return resp.status, parsed, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def submit(self, text: str, seconds: float = 0.0) -> str:
        status, answer, _ = self.call("POST", "/upper/submit", {"text": text, "seconds": seconds})
        assert status == 200 and isinstance(answer, dict), (status, answer)
        return answer["task_id"]


def q(task_id: str) -> str:
    return urllib.parse.urlencode({"task_id": task_id})


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, tasks_archive: Archive) -> Iterator[list[Replica]]:
    port = free_port("127.0.0.1")
    out = [Replica(tmp_path_factory.mktemp(f"replica{i}"), tasks_archive, f"127.0.0.{i}", port)
           for i in (1, 2, 3)]
    try:
        for r in out:
            r.wait_ready()
        yield out
    finally:
        for r in out:
            stop(r.server)


def wait_completed(via: Replica, task_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, answer, _ = via.call("GET", f"/upper/status?{q(task_id)}")
        assert status == 200 and isinstance(answer, dict), (status, answer)
        if answer["status"] != "in_progress":
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)


def test_a_task_submitted_to_one_replica_is_followed_and_fetched_through_any(replicas: list[Replica]) -> None:
    submitted = {}
    for i in range(30):
        text = f"task {i}"
        submitted[replicas[i % 3].submit(text)] = text
    assert len(submitted) == 30
    fetched = 0
    for n, (task_id, text) in enumerate(submitted.items()):
        via = replicas[(n + 1) % 3]  # never the replica that ran it
        answer = wait_completed(via, task_id)
        assert answer == {**answer, "task_id": task_id, "status": "completed"}, answer
        status, result, headers = via.call("GET", f"/upper/get?{q(task_id)}")
        assert (status, result) == (200, text.upper()), (status, result)
        owner = replicas[n % 3]
        assert headers["x-kubento-task-owner"] == f"{owner.host}:{owner.port}"
        fetched += 1
    print(f"\n30 tasks over 3 replicas, each followed through another one: submitted 30, fetched {fetched}, "
          f"lost {30 - fetched}")
    assert fetched == 30


def test_many_tasks_at_once_all_finish_and_are_fetched(replicas: list[Replica]) -> None:
    """Submits, polls and fetches at the same time, as a busy Service sees them: kubento's record of
    fetched results must never get in the way of BentoML's own writes (a task left in_progress)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> str:
        owner, via = replicas[i % 3], replicas[(i + 1) % 3]
        task_id = owner.submit(f"busy {i}", seconds=0.05)
        answer = wait_completed(via, task_id, timeout=60)
        assert answer["status"] == "completed", answer
        status, result, _ = via.call("GET", f"/upper/get?{q(task_id)}")
        assert status == 200, (status, result)
        return str(result)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(200)))
    assert results == [f"BUSY {i}" for i in range(200)]
    for r in replicas:
        assert "database is locked" not in r.log.read_text(), r.logs()


def test_bentomls_own_client_follows_a_task_through_another_replica(replicas: list[Replica]) -> None:
    import bentoml
    from _bentoml_impl.client.task import Task

    a, b = (bentoml.SyncHTTPClient(f"http://{r.host}:{r.port}") for r in replicas[:2])
    # bentoml 1.4.39's submit() ends with `for f in self._opened_files`, an attribute nothing sets
    # (AttributeError after the task was submitted): set it as its other calls would.
    a._opened_files = []
    try:
        task = a.upper.submit(text="bentoml client", seconds=0.2)
        followed = Task(task.id, task.endpoint, b)  # the same id, asked of another replica
        deadline = time.monotonic() + 30
        while followed.get_status().value == "in_progress":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert followed.get() == "BENTOML CLIENT"
    finally:
        a.close()
        b.close()


def test_cancel_and_retry_reach_the_owner(replicas: list[Replica]) -> None:
    a, b = replicas[0], replicas[1]
    task_id = a.submit("again")
    wait_completed(b, task_id)
    status, answer, _ = b.call("POST", f"/upper/retry?{q(task_id)}")
    assert status == 200 and isinstance(answer, dict), (status, answer)
    retried = answer["task_id"]
    assert retried != task_id and retried.startswith("kt1-7f000001-")  # a new task, on the owner (127.0.0.1)
    wait_completed(replicas[2], retried)
    assert replicas[2].call("GET", f"/upper/get?{q(retried)}")[:2] == (200, "AGAIN")
    # BentoML's own answer to cancel (its local server does not cancel), relayed from the owner
    status, answer, _ = b.call("PUT", f"/upper/cancel?{q(task_id)}")
    assert status == 400 and "not supported" in str(answer), (status, answer)


def test_an_id_naming_an_address_outside_the_peers_is_not_followed(replicas: list[Replica]) -> None:
    a = replicas[0]
    port = a.port
    for forged, why in [(f"kt1-08080808-{port}-{'0' * 32}", "not on this machine"),      # 8.8.8.8
                        (f"kt1-a9fea9fe-{port}-{'0' * 32}", "not on this machine"),      # 169.254.169.254
                        (f"kt1-7f000002-{port + 1}-{'0' * 32}", "not this model's port")]:
        status, answer, _ = a.call("GET", f"/upper/status?{q(forged)}")
        assert status == 404 and why in str(answer), (forged, status, answer)
    # A server at a peer's address and port that is not a kubento task server: its answer is not relayed.
    class Plain(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b'{"status": "completed", "secret": "internal data"}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    plain = http.server.ThreadingHTTPServer(("127.0.0.9", port), Plain)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    try:
        status, answer, _ = a.call("GET", f"/upper/status?{q(f'kt1-7f000009-{port}-' + '0' * 32)}")
        assert status == 502 and "internal data" not in str(answer), (status, answer)
    finally:
        plain.shutdown()
        plain.server_close()
    # BentoML's own ids still work on the replica that has them
    status, answer, _ = a.call("GET", "/upper/status?task_id=" + "f" * 32)
    assert status == 404 and answer == {"error": "task_id not found"}, (status, answer)


def test_a_stopping_replica_answers_until_its_task_is_done_and_fetched(
        tmp_path: Path, tasks_archive: Archive) -> None:
    port = free_port("127.0.0.1")
    stopping = Replica(tmp_path / "stopping", tasks_archive, "127.0.0.4", port)
    other = Replica(tmp_path / "other", tasks_archive, "127.0.0.5", port)
    try:
        stopping.wait_ready()
        other.wait_ready()
        task_id = stopping.submit("in flight", seconds=3)
        stopping.server.send_signal(signal.SIGTERM)  # what the kubelet sends after the preStop pause
        answer = wait_completed(other, task_id)
        assert answer["status"] == "completed", answer
        time.sleep(1)
        assert stopping.server.poll() is None, "stopped before its result was fetched: " + stopping.logs()
        fetched_at = time.monotonic()
        assert other.call("GET", f"/upper/get?{q(task_id)}")[:2] == (200, "IN FLIGHT")
        stopping.server.wait(20)
        assert time.monotonic() - fetched_at < 15
        assert "waited" in stopping.logs() and "0 left" in stopping.logs(), stopping.logs()
    finally:
        stop(stopping.server)
        stop(other.server)


def test_a_task_whose_replica_is_gone_is_failed_never_in_progress(tmp_path: Path, tasks_archive: Archive) -> None:
    port = free_port("127.0.0.1")
    gone = Replica(tmp_path / "gone", tasks_archive, "127.0.0.6", port, KUBENTO_TASK_LINGER_SECONDS="0")
    other = Replica(tmp_path / "other", tasks_archive, "127.0.0.7", port)
    try:
        gone.wait_ready()
        other.wait_ready()
        task_id = gone.submit("lost", seconds=30)
        stop(gone.server)  # no linger: the task dies with it
        status, answer, _ = other.call("GET", f"/upper/status?{q(task_id)}")
        assert status == 200 and isinstance(answer, dict), (status, answer)
        assert answer["status"] == "failed" and "127.0.0.6" in answer["error"], answer
        status, answer, _ = other.call("GET", f"/upper/get?{q(task_id)}")
        assert status == 410 and "submit it again" in str(answer), (status, answer)
    finally:
        stop(gone.server)
        stop(other.server)
