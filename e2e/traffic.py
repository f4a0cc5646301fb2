"""The e2e tests' HTTP clients: one request loop, standard library only
(httpx for the keep-alive client: BentoML's own dependency, in the iris image).

On the local cluster (e2e/cluster) Service and pod IPs answer from this
machine, and the loop runs in threads of the test process. Where they answer
only inside the cluster (kind: KUBENTO_E2E_IN_CLUSTER), this same file runs as
a script in a client pod (``kubectl exec -i``) and reports each result as one
JSON line (``[null, version]`` or ``[reason, null]``); closing its stdin stops
it. support.py holds both ends.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request
from collections import Counter
from typing import Callable

VERSION_HEADER = "x-model-version"  # the iris example names the model version that answered


def post(url: str, body: bytes, timeout: float) -> bytes:
    return post_versioned(url, body, timeout)[0]


def post_versioned(url: str, body: bytes, timeout: float) -> tuple[bytes, str]:
    """POST on a new connection; (body, the answer's model version or '?')."""
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read(), resp.headers.get(VERSION_HEADER, "?")


def client_loop(url: str, body: bytes, expected, timeout: float, pause: float, fail_pause: float,
                stop: threading.Event, report: Callable[[str | None, str | None], None],
                keep_alive: bool = False) -> None:
    """POST ``body`` to ``url`` until ``stop`` is set; report(None, version)
    for each good answer (any answer when ``expected`` is None, else one equal
    to it), report(reason, None) for each failed request. By default each
    request opens a new connection (kube-proxy picks a pod per request);
    ``keep_alive`` sends them on one pooled httpx connection, as BentoML's own
    SyncHTTPClient does: the client that sees a pod stop under it."""
    client = None
    if keep_alive:
        import httpx  # in the venv and in the iris image (a BentoML dependency)

        client = httpx.Client(timeout=timeout)
    try:
        while not stop.is_set():
            try:
                if client is not None:
                    resp = client.post(url, content=body, headers={"content-type": "application/json"})
                    resp.raise_for_status()
                    raw, version = resp.content, resp.headers.get(VERSION_HEADER, "?")
                else:
                    raw, version = post_versioned(url, body, timeout)
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


def shares(url: str, body: bytes, requests: int, timeout: float) -> Counter[str]:
    """Answers per model version of ``requests`` POSTs, each on a new connection."""
    return Counter(post_versioned(url, body, timeout)[1] for _ in range(requests))


def _main(argv: list[str]) -> int:
    mode, args = argv[0], json.loads(argv[1])
    if mode == "get":  # one GET, the body on stdout
        with urllib.request.urlopen(args["url"], timeout=args["timeout"]) as resp:
            sys.stdout.write(resp.read().decode())
        return 0
    if mode == "post":  # one POST, the body on stdout
        sys.stdout.write(post(args["url"], args["body"].encode(), args["timeout"]).decode())
        return 0
    if mode == "shares":  # answers per model version, as JSON
        sys.stdout.write(json.dumps(shares(args["url"], args["body"].encode(), args["requests"], args["timeout"])))
        return 0
    # "loop": args["threads"] client loops; one JSON line per result, until stdin closes
    lock, stop = threading.Lock(), threading.Event()

    def report(failure: str | None, version: str | None) -> None:
        with lock:
            sys.stdout.write(json.dumps([failure, version]) + "\n")
            sys.stdout.flush()

    threads = [threading.Thread(target=client_loop, daemon=True, args=(
        args["url"], args["body"].encode(), args["expected"], args["timeout"], args["pause"], args["fail_pause"],
        stop, report, args.get("keep_alive", False))) for _ in range(args["threads"])]
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
