"""kubento.runtime.monitor in a real model server: ``python -m kubento.runtime
serve`` of tests/runtime/iris_rules_project with two BentoML workers,
KUBENTO_MONITORING as the operator writes it, 1,200 requests from four
client threads. Checked against what the clients sent and got: every
feature and output count on /metrics (summed over the workers by BentoML's
multiprocess registry), the missing counts, and the payload records on
stdout, at a real HTTP receiver (CloudEvents) and in rotated files: the same
requests in each, the sampling rate honoured, dropped fields absent, hashed
ones hashed, large bodies recorded by their size.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from kubento.quality.drift import pod_counts
from kubento.runtime.monitor import RECORD_KIND, REQUEST_TYPE, RESPONSE_TYPE
from tests.cloudevents import Receiver
from tests.runtime.conftest import Archive, Pod, build_archive
from tests.runtime.test_drain import serve_archive, stop

PROJECT = Path(__file__).resolve().parent / "iris_rules_project"
REQUESTS = 1200
RATE = 0.25
BOUNDS = {"sepal_length": [5.0, 6.0, 7.0], "petal_length": [2.5, 4.9]}
CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def rules_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Archive, str]]:
    d = tmp_path_factory.mktemp("rules")
    archive = build_archive(PROJECT, d, "rules")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _files(d))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield archive, f"http://127.0.0.1:{server.server_address[1]}/rules.bento"
    server.shutdown()


def _files(root: Path):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            data = (root / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass
    return Handler


def post(port: int, body: dict) -> tuple[int, object]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/classify", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def bucket(value: float, bounds: list[float]) -> str:
    for b in bounds:
        if value <= b:
            return repr(float(b))
    return "+Inf"


def test_counts_and_payload_records_from_a_real_bentoml_server(pod: Pod, rules_archive, tmp_path: Path) -> None:
    archive, uri = rules_archive
    receiver = Receiver()
    files = tmp_path / "payloads"
    config = {
        "model": "iris",
        "statistics": {
            "endpoint": "/classify", "inputRows": "$.features[*]", "outputRows": "$[*]",
            "inputs": [{"name": n, "path": f"$[{i}]", "type": "numeric", "buckets": BOUNDS[n]}
                       for n, i in (("sepal_length", 0), ("petal_length", 2))],
            "output": {"path": "$", "type": "categorical", "categories": CLASSES[:2]},  # virginica: __other__
        },
        "payloads": {"sampleRate": RATE, "maxBytes": 2048, "drop": ["$.customer.email"], "hash": ["$.customer.id"],
                     "stdout": True, "http": {"url": receiver.url, "timeout": 2.0},
                     "files": {"dir": str(files), "maxBytes": 4096, "maxAge": 3600}},
    }
    server, port, log = serve_archive(pod, uri, WORKERS="2", KUBENTO_MONITORING=json.dumps(config),
                                      KUBENTO_NAMESPACE="ns1", KUBENTO_POD="iris-abc", KUBENTO_REVISION="rev1")
    rng = random.Random(7)
    bodies = []
    for i in range(REQUESTS):
        rows = [[round(rng.uniform(4.3, 7.9), 1), 3.0, round(rng.uniform(1.0, 6.9), 1), 1.0]
                for _ in range(100 if i % 60 == 0 else rng.randint(1, 3))]  # every 60th: a large body
        if i % 10 == 3:
            rows[0][0] = None  # a feature arriving empty: the model answers 400
        bodies.append({"features": rows, "n": i, "customer": {"email": f"user{i % 7}@example.com", "id": f"c{i % 7}"}})
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda b: post(port, b), bodies))

        expected: dict[tuple, float] = {}

        def count(key: tuple, n: float = 1) -> None:
            expected[key] = expected.get(key, 0) + n
        for body, (status, answer) in zip(bodies, answers):
            for row in body["features"]:
                count(("rows", "input"))
                for name, i in (("sepal_length", 0), ("petal_length", 2)):
                    if row[i] is None:
                        count(("miss", name))
                    else:
                        count(("in", name, bucket(row[i], BOUNDS[name])))
            if status == 200:
                for label in answer:
                    count(("rows", "output"))
                    count(("out", label if label in CLASSES[:2] else "__other__"))
        assert sum(1 for s, _ in answers if s == 400) == REQUESTS // 10
        assert sum(1 for s, _ in answers if s == 200) == REQUESTS - REQUESTS // 10

        def metrics() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                return pod_counts(resp.read().decode())
        deadline = time.monotonic() + 30
        while (seen := metrics()).get(("rows", "input")) != expected[("rows", "input")] \
                or min(seen.get(("records", sink, "sent"), 0) for sink in ("stdout", "http", "files")) \
                < seen.get(("sampled",), 0):
            assert time.monotonic() < deadline, f"{seen.get(('rows', 'input'))} rows counted of {expected}"
            time.sleep(0.3)
        counted = {k: v for k, v in seen.items() if k[0] in ("rows", "miss", "in", "out")}
        assert counted == expected

        # Payload records: the same requests at each sink.
        stdout = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"kind":"kubento')]
        filed = [json.loads(line) for f in sorted(files.glob("*.jsonl")) for line in f.read_text().splitlines()]
        sampled = seen[("sampled",)]
        assert len(stdout) == len(filed) == sampled and len(receiver.events) == 2 * sampled
        assert abs(sampled / REQUESTS - RATE) <= 0.04, sampled
        assert seen[("records", "stdout", "sent")] == seen[("records", "http", "sent")] == sampled
        ids = [r["id"] for r in stdout]
        assert len(set(ids)) == len(ids) and set(ids) == {r["id"] for r in filed}
        assert len({f.name for f in files.glob("*.jsonl")}) > 2  # rotated by size, and per worker process
        for r in stdout:
            assert r["kind"] == RECORD_KIND and r["model"] == "iris" and r["endpoint"] == "/classify"
            assert (r["namespace"], r["pod"], r["revision"]) == ("ns1", "iris-abc", "rev1")
            assert r["status"] in (200, 400) and r["latencyMs"] > 0
        whole = [r for r in stdout if r["input"] is not None]
        large = [r for r in stdout if r.get("inputInfo", {}).get("truncated")]
        assert whole and all(r["inputInfo"]["bytes"] > 2048 for r in large)
        assert len(whole) + len(large) == len(stdout)
        hashes: dict[str, set[str]] = {}
        for r in whole:
            sent, (status, answer) = bodies[r["input"]["n"]], answers[r["input"]["n"]]
            assert r["input"]["features"] == sent["features"] and r["status"] == status and r["output"] == answer
            assert "email" not in r["input"]["customer"] and r["input"]["customer"]["id"].startswith("sha256:")
            hashes.setdefault(sent["customer"]["id"], set()).add(r["input"]["customer"]["id"])
        # the same value, the same hash; different values, different hashes
        assert all(len(h) == 1 for h in hashes.values()) and len(set.union(*hashes.values())) == len(hashes)
        text = log.read_text() + "".join(f.read_text() for f in files.glob("*.jsonl")) + \
            "".join(b.decode() for _, b in receiver.events)
        assert "@example.com" not in text

        # CloudEvents as KServe's logger sends them: a request and a response event per record.
        by_id: dict[str, dict[str, dict]] = {}
        for headers, body in receiver.events:
            assert headers["ce-specversion"] == "1.0" and headers["content-type"] == "application/json"
            assert headers["ce-inferenceservicename"] == "iris" and headers["ce-namespace"] == "ns1"
            by_id.setdefault(headers["ce-id"], {})[headers["ce-type"]] = {"headers": headers, "body": json.loads(body)}
        assert set(by_id) == set(ids)
        one = next(r for r in whole if r["status"] == 200)
        pair = by_id[one["id"]]
        assert set(pair) == {REQUEST_TYPE, RESPONSE_TYPE}
        assert pair[REQUEST_TYPE]["body"] == one["input"] and pair[RESPONSE_TYPE]["body"] == one["output"]
        assert pair[RESPONSE_TYPE]["headers"]["ce-httpstatus"] == "200"
        assert pair[REQUEST_TYPE]["headers"]["ce-endpoint"] == "/classify"
    finally:
        stop(server)


def rows(n: int, seed: int, petal_scale: float = 1.0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        petal = rng.choice((1.5, 4.3, 5.6)) + rng.gauss(0, 0.3)
        out.append({"features": [[round(rng.gauss(5.8, 0.8), 1), 3.0, round(petal * petal_scale, 1), 1.2]]})
    return out


def test_a_profile_the_pods_counts_and_the_output_shift_verdict_agree(pod: Pod, rules_archive, tmp_path: Path) -> None:
    """What the operator computes from real pods: the profile's bucket labels
    are the ones the pods count in (scores near 0 for reference-like traffic,
    high for shifted), and the OutputShift verdict on two servers answering
    the same requests (one skewed) fails where the same model passes."""
    from kubento.api.v1alpha1 import Analysis, ModelDeploymentSpec
    from kubento.quality.drift import score, wanted
    from kubento.quality.profile import build_profile, judged_of, revision_monitoring
    from kubento.rollout.analysis import evaluate, parse_metrics

    archive, uri = rules_archive
    spec = ModelDeploymentSpec.model_validate({"bento": {"archive": {"uri": uri}}, "monitoring": {"statistics": {
        "endpoint": "/classify", "inputRows": "$.features[*]", "outputRows": "$[*]",
        "inputs": [{"name": "sepal_length", "path": "$[0]"}, {"name": "petal_length", "path": "$[2]"}],
        "output": {"path": "$", "categories": CLASSES}}}})
    reference = [(body, None) for body in rows(1500, seed=1)]  # no answers: the spec lists the classes
    profile = build_profile(spec.monitoring.statistics, reference)
    told, judged = revision_monitoring(spec.monitoring, "iris", profile)
    judged = judged_of(json.dumps(judged))
    servers = []
    try:
        for i, skew in enumerate(("0", "1")):
            p = Pod(tmp_path / f"pod{i}")
            for d in (p.root, p.home, p.work, p.pvc):
                d.mkdir(parents=True)
            servers.append(serve_archive(p, uri, SKEW=skew, KUBENTO_MONITORING=json.dumps(told)))
        same, shifted = rows(600, seed=2), rows(600, seed=3, petal_scale=1.8)
        for _, port, _ in servers:
            with ThreadPoolExecutor(4) as pool:
                assert {s for s, _ in pool.map(lambda b: post(port, b), same)} == {200}

        def metrics(port: int) -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                return resp.read().decode()
        deadline = time.monotonic() + 30
        while pod_counts(metrics(servers[0][1])).get(("rows", "output")) != 600:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        stable_text = metrics(servers[0][1])
        before = score("r", judged, pod_counts(stable_text, wanted(judged)), min_rows=100)
        assert all(f.drift is not None and f.drift < 0.1 for f in before.inputs), before
        assert before.output.reference is None  # the reference had no answers: nothing to compare with

        labels = set(judged["output"].labels)
        deadline = time.monotonic() + 30
        while pod_counts(metrics(servers[1][1])).get(("rows", "output")) != 600:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        analysis = Analysis.model_validate({"minRequests": 100, "outputShift": {"maxDistance": 0.2}})
        stable = parse_metrics(stable_text, outputs=labels)
        skewed = parse_metrics(metrics(servers[1][1]), outputs=labels)
        verdict = evaluate(skewed, analysis, stable, compare_outputs=True)
        assert (verdict.result, verdict.rollback_reason) == ("fail", "OutputShift"), verdict.message
        assert evaluate(stable, analysis, stable, compare_outputs=True).result == "pass"

        for body in shifted:
            post(servers[0][1], body)
        deadline = time.monotonic() + 30
        while pod_counts(metrics(servers[0][1])).get(("rows", "input")) != 1200:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        after = score("r", judged, pod_counts(metrics(servers[0][1]), wanted(judged)), min_rows=100)
        drift = {f.name: f.drift for f in after.inputs}
        assert drift["petal_length"] > 0.3 and drift["sepal_length"] < 0.1, drift
    finally:
        for server, _, _ in servers:
            stop(server)
