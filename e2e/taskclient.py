"""A client of a BentoML task endpoint (examples/tasks' ``slow_upper``), as
users write one: submit, poll the status, fetch the result, every request
through the model's Service. Standard library only (http.client).

Some connections are keep-alive (one http.client connection reused), the
others open a new connection per request, so kube-proxy picks a pod for each:
a task's status and result are asked on other connections, hence usually of
other pods, than the one that took it.

Each task ends as one of:
- ``fetched``: its status said ``completed`` and ``/get`` answered its text upper-cased;
- ``failed``: its status said ``failed`` (the message ``/get`` gave is kept);
- ``lost``: anything else: a ``404`` to its status or result (what a client
  sees when its request reaches a pod that does not hold the task; BentoML's
  own client raises NotFound), a wrong result, ``canceled`` (never asked
  for), or no final status within the deadline.

On the local cluster (e2e/cluster) it runs in threads of the test process;
where Service IPs answer only inside the cluster (kind), this file runs as a
script in the client pod (``python3 -c SOURCE run ARGS``, see e2e/test_tasks.py):
it prints ``{"event": "started"}``, submits until its stdin closes (or a
fixed count), then prints ``{"summary": ...}``.
"""

from __future__ import annotations

import heapq
import http.client
import json
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

TASK = "slow_upper"
OWNER_HEADER = "x-kubento-task-owner"  # kubento's server: which replica owns the task (figures only)
FINAL = ("completed", "failed", "canceled")


class Conn:
    """One client connection: keep-alive (an http.client connection reused
    until the server closes it or a request fails) or a new connection per
    request. ``opened`` counts the TCP connections made."""

    def __init__(self, url: str, timeout: float, keep_alive: bool):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.base = parts.path.rstrip("/")
        self.timeout, self.keep_alive = timeout, keep_alive
        self.conn: http.client.HTTPConnection | None = None
        self.opened = 0

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        status, data, _ = self.exchange(method, path, body)
        return status, data

    def exchange(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, http.client.HTTPMessage]:
        """(status, body, headers) of one request."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.opened += 1
        headers = {"content-type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, self.base + path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except BaseException:
            self.close()
            raise
        if resp.will_close or not self.keep_alive:
            self.close()
        return resp.status, data, resp.headers

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Task:
    n: int
    text: str
    seconds: float
    task_id: str = ""
    submitted: float = 0.0  # time.monotonic() when the submit was answered
    outcome: str = ""  # "" while open, then fetched | failed | lost
    why: str = ""  # what made it failed or lost
    last: str = ""  # the last answer to its status (or the last error), for the report
    polls: int = 0
    took: float = 0.0  # submit answered -> result fetched
    index: int = -1  # in TaskRun.tasks
    retry_of: str = ""  # the task_id it is BentoML's retry of

    @property
    def expected(self) -> str:
        return self.text.upper()


def reason(exc: BaseException) -> str:
    return type(exc).__name__


class TaskRun:
    """``submitters`` threads submit tasks (a fixed ``count``, or until
    ``stop_submitting``), ``pollers`` threads poll each one every
    ``poll_every`` seconds until it is fetched, failed or lost; even-numbered
    threads keep their connection alive, odd ones open one per request.
    ``rate`` caps the submits per second (all submitters together; 0: as fast
    as answered). Task ``i`` sleeps ``seconds[i % len(seconds)]`` on the server."""

    def __init__(self, url: str, *, seconds: tuple[float, ...] = (0.5,), submitters: int = 2, pollers: int = 6,
                 timeout: float = 10.0, poll_every: float = 0.25, deadline: float = 90.0, rate: float = 0.0,
                 retries: int = 0):
        self.url = url.rstrip("/")
        self.seconds, self.timeout, self.poll_every, self.deadline = tuple(seconds), timeout, poll_every, deadline
        self.submitters, self.pollers, self.rate, self.retries = submitters, pollers, rate, retries
        self.run_id = uuid.uuid4().hex[:6]
        self.tasks: list[Task] = []
        self.answers: Counter[str] = Counter()  # "<endpoint> <HTTP status or exception>"
        self.submit_failures: Counter[str] = Counter()
        self.other_id = 0  # status answers naming another task_id than the one asked about
        self.owners: Counter[str] = Counter()  # tasks per owning replica (OWNER_HEADER of the submit's answer)
        self.connections = 0
        self._lock = threading.Lock()
        self._due: list[tuple[float, int]] = []  # (when, task index) heap
        self._open = 0
        self._count: int | None = None
        self._next = 0
        self._stop_submitting = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = self.submitting_ended = self.ended = 0.0

    # --- the run ------------------------------------------------------------

    def start(self, count: int | None = None) -> None:
        self._count = count
        self.started = time.monotonic()
        self._threads = [threading.Thread(target=self._submitter, args=(i,), daemon=True)
                         for i in range(self.submitters)]
        self._threads += [threading.Thread(target=self._poller, args=(i,), daemon=True)
                          for i in range(self.pollers)]
        for t in self._threads:
            t.start()

    def stop_submitting(self) -> None:
        self._stop_submitting.set()

    def finish(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the submits to end and every task to be settled (each is,
        at the latest, ``deadline`` seconds after its submit); the summary."""
        limit = time.monotonic() + (timeout if timeout is not None else self.deadline + 120)
        for t in self._threads[: self.submitters]:
            t.join(max(0.0, limit - time.monotonic()))
        self.submitting_ended = self.submitting_ended or time.monotonic()
        while time.monotonic() < limit:
            with self._lock:
                if not self._open:
                    break
            time.sleep(0.05)
        self._stop.set()
        for t in self._threads[self.submitters:]:
            t.join(self.timeout + 5)
        self.ended = time.monotonic()
        with self._lock:
            for task in self.tasks:
                if not task.outcome:
                    task.outcome, task.why = "lost", f"still open when the run ended (last: {task.last})"
        return self.summary()

    # --- submit -------------------------------------------------------------

    def _claim(self) -> int | None:
        with self._lock:
            if self._stop_submitting.is_set() or (self._count is not None and self._next >= self._count):
                return None
            n, self._next = self._next, self._next + 1
            return n

    def _submitter(self, index: int) -> None:
        conn = Conn(self.url, self.timeout, keep_alive=index % 2 == 0)
        try:
            while (n := self._claim()) is not None:
                if self.rate:
                    # task n goes out at its slot of the run's schedule, whoever sends it
                    wait = self.started + n / self.rate - time.monotonic()
                    if wait > 0 and self._stop_submitting.wait(wait):
                        return
                self._submit(conn, n)
        finally:
            with self._lock:
                self.connections += conn.opened
                self.submitting_ended = time.monotonic()
            conn.close()

    def _submit(self, conn: Conn, n: int) -> None:
        task = Task(n, f"task {n} of run {self.run_id}: straße, café", self.seconds[n % len(self.seconds)])
        body = json.dumps({"text": task.text, "seconds": task.seconds}).encode()
        self._create(conn, task, "submit", "POST", f"/{TASK}/submit", body)

    def _create(self, conn: Conn, task: Task, call: str, method: str, path: str, body: bytes | None) -> None:
        """Send the call that makes a task (submit, or retry of a fetched one);
        poll the id it answers."""
        try:
            status, data, headers = conn.exchange(method, path, body)
        except Exception as exc:  # noqa: BLE001 - counted: refused, reset, timeout
            self._count_answer(call, reason(exc))
            with self._lock:
                self.submit_failures[f"{call} {reason(exc)}"] += 1
            return
        self._count_answer(call, status)
        try:
            answer = json.loads(data) if status == 200 else None
            task.task_id = answer["task_id"] if isinstance(answer, dict) else ""
        except (ValueError, KeyError):
            task.task_id = ""
        with self._lock:
            if not isinstance(task.task_id, str) or not task.task_id:
                self.submit_failures[f"{call} HTTP {status}: {data[:120]!r}"] += 1
                return
            # kubento's server names the replica that owns the task (not needed by a client: figures only)
            self.owners[headers.get(OWNER_HEADER) or "?"] += 1
            task.submitted, task.index = time.monotonic(), len(self.tasks)
            self.tasks.append(task)
            self._open += 1
            heapq.heappush(self._due, (task.submitted + self.poll_every, task.index))

    # --- poll and fetch -----------------------------------------------------

    def _count_answer(self, endpoint: str, answer: int | str) -> None:
        with self._lock:
            self.answers[f"{endpoint} {answer}"] += 1

    def _take(self) -> Task | None:
        with self._lock:
            if self._due and self._due[0][0] <= time.monotonic():
                return self.tasks[heapq.heappop(self._due)[1]]
        return None

    def _settle(self, task: Task, outcome: str, why: str = "") -> None:
        with self._lock:
            task.outcome, task.why = outcome, why
            task.took = time.monotonic() - task.submitted
            self._open -= 1

    def _poller(self, index: int) -> None:
        conn = Conn(self.url, self.timeout, keep_alive=index % 2 == 0)
        try:
            while not self._stop.is_set():
                task = self._take()
                if task is None:
                    time.sleep(0.01)
                    continue
                self._poll(conn, task)
        finally:
            with self._lock:
                self.connections += conn.opened
            conn.close()

    def _poll(self, conn: Conn, task: Task) -> None:
        if time.monotonic() - task.submitted > self.deadline:
            self._settle(task, "lost", f"no final status {self.deadline:g}s after its submit (last: {task.last})")
            return
        query = "?task_id=" + urllib.parse.quote(task.task_id, safe="")
        task.polls += 1
        try:
            status, data = conn.request("GET", f"/{TASK}/status{query}")
        except Exception as exc:  # noqa: BLE001 - a transient failure: asked again
            self._count_answer("status", reason(exc))
            task.last = reason(exc)
            self._reschedule(task)
            return
        self._count_answer("status", status)
        task.last = f"HTTP {status} {data[:160].decode(errors='replace')}"
        if status == 404:
            self._settle(task, "lost", f"status answered {task.last}")
            return
        if status != 200:
            self._reschedule(task)
            return
        try:
            answer = json.loads(data)
            state = answer["status"]
        except (ValueError, KeyError, TypeError):
            self._reschedule(task)
            return
        if answer.get("task_id") != task.task_id:
            with self._lock:
                self.other_id += 1
        if state not in FINAL:
            self._reschedule(task)
            return
        if state == "canceled":
            self._settle(task, "lost", "canceled (never asked for)")
            return
        try:
            status, data = conn.request("GET", f"/{TASK}/get{query}")
        except Exception as exc:  # noqa: BLE001 - a transient failure: asked again
            self._count_answer("get", reason(exc))
            task.last = f"{state}, then get: {reason(exc)}"
            self._reschedule(task)
            return
        self._count_answer("get", status)
        text = data.decode(errors="replace")
        if state == "failed":
            self._settle(task, "failed", f"HTTP {status} {text[:200]}")
        elif status == 404:
            self._settle(task, "lost", f"completed, then get answered HTTP 404 {text[:160]}")
        elif status != 200:
            task.last = f"completed, then get answered HTTP {status} {text[:160]}"
            self._reschedule(task)
        elif text != task.expected:
            self._settle(task, "lost", f"wrong result {text[:160]!r}, expected {task.expected!r}")
        else:
            if task.n < self.retries and not task.retry_of:
                # BentoML's retry: the same input again, as a new task (whose id the answer gives);
                # sent before this one is settled, so the run never looks finished in between
                again = Task(task.n, task.text, task.seconds, retry_of=task.task_id)
                self._create(conn, again, "retry", "POST", f"/{TASK}/retry{query}", None)
            self._settle(task, "fetched")

    def _reschedule(self, task: Task) -> None:
        with self._lock:
            heapq.heappush(self._due, (time.monotonic() + self.poll_every, task.index))

    # --- figures ------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        with self._lock:
            outcomes = Counter(t.outcome for t in self.tasks)
            took = sorted(t.took for t in self.tasks if t.outcome == "fetched")
            return {
                "submitted": sum(1 for t in self.tasks if not t.retry_of),
                "retried": sum(1 for t in self.tasks if t.retry_of),
                "owners": dict(self.owners),
                "fetched": outcomes["fetched"],
                "failed": outcomes["failed"],
                "lost": outcomes["lost"],
                "submit_failures": dict(self.submit_failures),
                "answers": dict(sorted(self.answers.items())),
                "other_id": self.other_id,
                "connections": self.connections,
                "polls": sum(t.polls for t in self.tasks),
                "seconds": round((self.ended or time.monotonic()) - self.started, 1),
                "submitting_seconds": round((self.submitting_ended or time.monotonic()) - self.started, 1),
                "fetched_after_p50": round(took[len(took) // 2], 2) if took else None,
                "fetched_after_max": round(took[-1], 2) if took else None,
                "lost_examples": [f"{t.task_id}: {t.why}" for t in self.tasks if t.outcome == "lost"][:10],
                "failed_examples": [f"{t.task_id}: {t.why}" for t in self.tasks if t.outcome == "failed"][:10],
            }


def describe(s: dict[str, Any]) -> str:
    """One line of figures from a summary."""
    retried = f" (+{s['retried']} retried)" if s["retried"] else ""
    line = (f"submitted {s['submitted']}{retried}, fetched {s['fetched']}, failed {s['failed']}, lost {s['lost']}"
            f" in {s['seconds']}s (submitting {s['submitting_seconds']}s; submit -> result fetched p50 "
            f"{s['fetched_after_p50']}s, max {s['fetched_after_max']}s; {s['polls']} status polls, "
            f"{s['connections']} connections)")
    if s["submit_failures"]:
        line += f"; submits that failed {s['submit_failures']}"
    if len(s["owners"]) > 1 or "?" not in s["owners"]:
        line += f"; tasks per owning replica {s['owners']}"
    if s["other_id"]:
        line += f"; {s['other_id']} status answers named another task_id"
    return line


def served_by(url: str, requests: int, timeout: float) -> list[str]:
    """Who answered ``requests`` calls of the plain API ``/upper``, each on a
    new connection (examples/tasks' X-Served-By: the pod's name)."""
    seen = set()
    for _ in range(requests):
        conn = Conn(url, timeout, keep_alive=False)
        status, data, headers = conn.exchange("POST", "/upper", json.dumps({"text": "ok"}).encode())
        if status == 200 and data == b"OK":
            seen.add(headers.get("x-served-by") or "?")
    return sorted(seen)


def _main(argv: list[str]) -> int:
    """``run ARGS``: ARGS is JSON {"url", "count" (or null: until stdin closes), and TaskRun's options};
    ``served-by ARGS``: {"url", "requests", "timeout"}, prints served_by's list."""
    if argv[:1] == ["served-by"]:
        args = json.loads(argv[1])
        print(json.dumps(served_by(args["url"], args["requests"], args["timeout"])))
        return 0
    if argv[:1] != ["run"]:
        print("usage: taskclient.py run|served-by JSON", file=sys.stderr)
        return 2
    args = json.loads(argv[1])
    count = args.pop("count", None)
    run = TaskRun(args.pop("url"), **{k: tuple(v) if k == "seconds" else v for k, v in args.items()})
    run.start(count)
    print(json.dumps({"event": "started"}), flush=True)
    if count is None:
        sys.stdin.read()
        run.stop_submitting()
    print(json.dumps({"summary": run.finish()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
