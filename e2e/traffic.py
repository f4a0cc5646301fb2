"""The e2e tests' HTTP clients: one request loop, standard library only
(httpx for the pooled keep-alive client: BentoML's own dependency, in the iris
image), and a counter of who answered (``tally``: per model version, through a
Service or a Gateway, on new connections or one keep-alive connection).

On the local cluster (e2e/cluster) Service and pod IPs answer from this
machine, and the loop runs in threads of the test process. Where they answer
only inside the cluster (kind: KUBENTO_E2E_IN_CLUSTER), this same file runs as
a script in a client pod (``kubectl exec -i``) and reports each result as one
JSON line (``[null, version]`` or ``[reason, null]``); closing its stdin stops
it. support.py holds both ends.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

VERSION_HEADER = "x-model-version"  # the iris example names the model version that answered


def post(url: str, body: bytes, timeout: float) -> bytes:
    return post_versioned(url, body, timeout)[0]


def post_versioned(url: str, body: bytes, timeout: float, headers: dict[str, str] | None = None) -> tuple[bytes, str]:
    """POST on a new connection; (body, the answer's model version or '?')."""
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json", **(headers or {})},
                                 method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read(), resp.headers.get(VERSION_HEADER, "?")


def post_status(url: str, body: bytes, content_type: str, timeout: float) -> dict:
    """POST ``body``; the answer's status and its first 500 characters, whatever the status."""
    req = urllib.request.Request(url, data=body, headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return {"status": resp.status, "body": resp.read().decode(errors="replace")[:500]}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode(errors="replace")[:500]}


class RawConnection:
    """Python's http.client on one connection, reused request after request:
    the plainest keep-alive client. It opens a new connection only when the
    server said ``Connection: close`` or after a failure; ``opened`` counts them.
    Unlike pooled clients (httpx, urllib3) it never checks whether the server
    closed the idle connection first: a request written to a closing socket
    fails (BrokenPipeError, RemoteDisconnected, ConnectionResetError)."""

    def __init__(self, url: str, timeout: float):
        parts = urllib.parse.urlsplit(url)
        self.path = parts.path or "/"
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        self.opened = 0

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
        """(status, body, model version or '?')"""
        if self.conn.sock is None:
            self.conn.connect()
            self.opened += 1
        try:
            self.conn.request("POST", self.path, body=body,
                              headers={"content-type": "application/json", **(headers or {})})
            resp = self.conn.getresponse()
            data = resp.read()
        except BaseException:
            self.conn.close()  # the next request opens a new connection
            raise
        if resp.will_close:
            self.conn.close()
        return resp.status, data, resp.headers.get(VERSION_HEADER, "?")

    def close(self) -> None:
        self.conn.close()


def client_loop(url: str, body: bytes, expected, timeout: float, pause: float, fail_pause: float,
                stop: threading.Event, report: Callable[[str | None, str | None], None],
                keep_alive: bool | str = False, headers: dict[str, str] | None = None) -> None:
    """POST ``body`` to ``url`` until ``stop`` is set; report(None, version)
    for each good answer (any answer when ``expected`` is None, else one equal
    to it), report(reason, None) for each failed request. By default each
    request opens a new connection (kube-proxy picks a pod per request);
    ``keep_alive`` sends them on one pooled httpx connection, as BentoML's own
    SyncHTTPClient does: the client that sees a pod stop under it;
    ``keep_alive="raw"`` on one http.client connection (RawConnection), which
    does not even check that the server has not closed it meanwhile.
    ``headers`` go with every request (e.g. the Host of a Gateway's route)."""
    client = raw_conn = None
    if keep_alive == "raw":
        raw_conn = RawConnection(url, timeout)
    elif keep_alive:
        import httpx  # in the venv and in the iris image (a BentoML dependency)

        client = httpx.Client(timeout=timeout)
    try:
        while not stop.is_set():
            try:
                if raw_conn is not None:
                    status, raw, version = raw_conn.post(body, headers)
                    if status >= 400:
                        raise urllib.error.HTTPError(url, status, f"HTTP {status}", None, None)  # type: ignore[arg-type]
                elif client is not None:
                    resp = client.post(url, content=body, headers={"content-type": "application/json", **(headers or {})})
                    resp.raise_for_status()
                    raw, version = resp.content, resp.headers.get(VERSION_HEADER, "?")
                else:
                    raw, version = post_versioned(url, body, timeout, headers)
                if expected is None:
                    report(None, version)
                else:
                    answer = json.loads(raw)
                    if answer == expected:
                        report(None, version)
                    else:
                        report(f"wrong answer {answer}", None)
            except Exception as exc:  # noqa: BLE001 - every kind of failure counts
                report(type(exc).__name__ + ": " + str(exc)[:80], None)
                if fail_pause:
                    time.sleep(fail_pause)
            if pause:
                time.sleep(pause)
    finally:
        if client is not None:
            client.close()
        if raw_conn is not None:
            raw_conn.close()


def shares(url: str, body: bytes, requests: int, timeout: float) -> Counter[str]:
    """Answers per model version of ``requests`` POSTs, each on a new connection."""
    return Counter(post_versioned(url, body, timeout)[1] for _ in range(requests))


@dataclass
class Tally:
    """Who answered ``requests`` requests: good answers per model version
    (X-Model-Version; '?' without one), failed requests by reason ("HTTP 500",
    an exception's name), and how many TCP connections the client opened."""

    requests: int = 0
    versions: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    connections: int = 0

    def share(self, version: str) -> float:
        """The percentage of all requests that ``version`` answered."""
        return 100.0 * self.versions[version] / self.requests if self.requests else 0.0

    def to_json(self) -> dict:
        return {"requests": self.requests, "versions": dict(self.versions), "failures": dict(self.failures),
                "connections": self.connections}

    @classmethod
    def from_json(cls, data: dict) -> "Tally":
        return cls(data["requests"], Counter(data["versions"]), Counter(data["failures"]), data["connections"])

    def __str__(self) -> str:
        kinds = ", ".join(f"{v}: {n} ({self.share(v):.1f} %)" for v, n in sorted(self.versions.items()))
        failed = f"; failed {dict(self.failures)}" if self.failures else ""
        return f"{self.requests} requests on {self.connections} connection(s): {kinds or 'no answer'}{failed}"


def tally(url: str, body: bytes, requests: int, timeout: float, keep_alive: bool = False,
          headers: dict[str, str] | None = None) -> Tally:
    """POST ``body`` to ``url`` ``requests`` times and count who answered: each
    on a new connection, or (``keep_alive``) all on one http.client connection
    (RawConnection: a new one only if the server closes it, counted in
    ``connections``). An HTTP error or a failed request is counted, not raised."""
    out = Tally(requests=requests)
    conn = RawConnection(url, timeout) if keep_alive else None
    try:
        for _ in range(requests):
            try:
                if conn is not None:
                    status, _, version = conn.post(body, headers)
                    if status >= 400:
                        out.failures[f"HTTP {status}"] += 1
                        continue
                else:
                    out.connections += 1
                    _, version = post_versioned(url, body, timeout, headers)
                out.versions[version] += 1
            except urllib.error.HTTPError as exc:
                out.failures[f"HTTP {exc.code}"] += 1
            except Exception as exc:  # noqa: BLE001 - every kind of failure counts
                out.failures[type(exc).__name__] += 1
    finally:
        if conn is not None:
            out.connections = conn.opened
            conn.close()
    return out


# The iris dataset's measurements per class (mean, standard deviation of sepal
# length, sepal width, petal length, petal width, cm): reference-like inputs.
IRIS = {"setosa": ((5.01, 0.35), (3.43, 0.38), (1.46, 0.17), (0.25, 0.11)),
        "versicolor": ((5.94, 0.52), (2.77, 0.31), (4.26, 0.47), (1.33, 0.20)),
        "virginica": ((6.59, 0.64), (2.97, 0.32), (5.55, 0.55), (2.03, 0.27))}


def iris_bodies(n: int, seed: int, petal_scale: float = 1.0, missing_every: int = 0) -> list[tuple[dict, str]]:
    """``n`` one-row /classify bodies drawn like the iris dataset (each with
    the class it was drawn from, and a customer whose email a payload log must
    drop): petal length times ``petal_scale``; every ``missing_every``-th
    request with sepal width null (a feature arriving empty)."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        cls = rng.choice(sorted(IRIS))
        row = [round(max(0.1, rng.gauss(m, sd)), 1) for m, sd in IRIS[cls]]
        row[2] = round(row[2] * petal_scale, 1)
        if missing_every and i % missing_every == 0:
            row[1] = None
        out.append(({"features": [row], "customer": {"id": f"c{i % 50}", "email": f"user{i % 50}@example.com"}}, cls))
    return out


def send_bodies(url: str, bodies: list[dict], threads: int, timeout: float, keep_alive: bool = True) -> Counter[str]:
    """POST each body once, from ``threads`` keep-alive connections (or a new
    connection each: every revision behind a Service gets its share); answers
    by HTTP status (or failure)."""
    out: Counter[str] = Counter()
    lock = threading.Lock()
    work = list(bodies)

    def loop() -> None:
        conn = RawConnection(url, timeout)
        try:
            while True:
                with lock:
                    if not work:
                        return
                    body = work.pop()
                try:
                    if keep_alive:
                        result = str(conn.post(json.dumps(body).encode())[0])
                    else:
                        post(url, json.dumps(body).encode(), timeout)
                        result = "200"
                except urllib.error.HTTPError as exc:
                    result = str(exc.code)
                except Exception as exc:  # noqa: BLE001 - counted
                    result = type(exc).__name__
                with lock:
                    out[result] += 1
        finally:
            conn.close()
    runners = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    return out


def counter(metrics: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus counter's samples whose labels include
    ``labels``, in a /metrics text (e.g. BentoML's bentoml_service_request_total
    with endpoint="/classify": the requests a model pod received, mirrored
    ones included)."""
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        found = dict(kv.split("=", 1) for kv in head[len(name):].strip("{}").split(",") if "=" in kv)
        if all(found.get(k, "").strip('"') == v for k, v in labels.items()):
            total += float(value)
    return total


def _main(argv: list[str]) -> int:
    mode, args = argv[0], json.loads(argv[1])
    if mode == "get":  # one GET, the body on stdout
        with urllib.request.urlopen(args["url"], timeout=args["timeout"]) as resp:
            sys.stdout.write(resp.read().decode())
        return 0
    if mode == "post":  # one POST, the body on stdout
        sys.stdout.write(post(args["url"], args["body"].encode(), args["timeout"]).decode())
        return 0
    if mode == "status":  # one POST (body in base64, any content type): {"status", "body"} as JSON
        import base64

        sys.stdout.write(json.dumps(post_status(args["url"], base64.b64decode(args["body"]), args["content_type"],
                                                args["timeout"])))
        return 0
    if mode == "shares":  # answers per model version, as JSON
        sys.stdout.write(json.dumps(shares(args["url"], args["body"].encode(), args["requests"], args["timeout"])))
        return 0
    if mode == "iris":  # iris_bodies sent by send_bodies: answers by status, as JSON
        bodies = [b for b, _ in iris_bodies(args["n"], args["seed"], args.get("petal_scale", 1.0),
                                            args.get("missing_every", 0))]
        sys.stdout.write(json.dumps(send_bodies(args["url"], bodies, args["threads"], args["timeout"],
                                                args.get("keep_alive", True))))
        return 0
    if mode == "tally":  # a Tally, as JSON
        sys.stdout.write(json.dumps(tally(args["url"], args["body"].encode(), args["requests"], args["timeout"],
                                          args.get("keep_alive", False), args.get("headers")).to_json()))
        return 0
    # "loop": args["threads"] client loops; one JSON line per result, until stdin closes
    lock, stop = threading.Lock(), threading.Event()

    def report(failure: str | None, version: str | None) -> None:
        with lock:
            sys.stdout.write(json.dumps([failure, version]) + "\n")
            sys.stdout.flush()

    threads = [threading.Thread(target=client_loop, daemon=True, args=(
        args["url"], args["body"].encode(), args["expected"], args["timeout"], args["pause"], args["fail_pause"],
        stop, report, args.get("keep_alive", False), args.get("headers"))) for _ in range(args["threads"])]
    for t in threads:
        t.start()
    with lock:
        sys.stdout.write(json.dumps({"event": "started"}) + "\n")
        sys.stdout.flush()
    sys.stdin.read()
    stop.set()
    for t in threads:
        t.join(args["timeout"] + 5)
    with lock:
        sys.stdout.write(json.dumps({"event": "stopped"}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
