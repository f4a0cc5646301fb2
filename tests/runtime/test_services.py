"""The environment Job reads the bento's services from its archive
(kubento.runtime.services): a real two-service bento built and exported with
the bentoml CLI, fetched from moto by the real plan/download/install/upload steps."""

from __future__ import annotations

import json
from pathlib import Path

from tests.runtime.conftest import BUCKET, Pod, build_archive
from tests.s3server import S3Server

PROJECT = Path(__file__).parent / "two_services_project"


def test_the_environment_job_says_what_services_the_bento_has(pod: Pod, tmp_path: Path, s3: S3Server) -> None:
    archive = build_archive(PROJECT, tmp_path, "two")
    s3.upload(BUCKET, "two/two.bento", archive.path)
    proc = pod.prepare(KUBENTO_ARCHIVE_URI=f"s3://{BUCKET}/two/two.bento", KUBENTO_ENV_STORE=f"s3://{BUCKET}/env-two",
                       **s3.env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    env = json.loads(pod.message())["environment"]
    assert env["packages"] == 0, env  # bentoml only: the runtime has it
    assert env["services"] == {"entry": "Entry", "services": [
        {"name": "Entry", "dependsOn": ["Model"], "resources": {"cpu": "500m", "memory": "512Mi"}},
        {"name": "Model", "resources": {"cpu": "2", "memory": "1Gi"}, "workers": "2", "timeout": 120,
         "concurrency": 8}]}, env


def test_a_two_service_bento_serves_in_one_pod_through_kubentos_helper(tmp_path: Path) -> None:
    """Today's shape: every service in the pod, the entry calling the model
    service through BentoML's own wiring, both behind kubento's worker
    (drain, task routing)."""
    import urllib.request

    from tests.runtime.test_tasks import Replica, stop
    from tests.s3server import free_port

    archive = build_archive(PROJECT, tmp_path, "two")
    replica = Replica(tmp_path / "pod", archive, "127.0.0.1", free_port("127.0.0.1"))
    try:
        replica.wait_ready()
        req = urllib.request.Request(f"http://127.0.0.1:{replica.port}/run", data=json.dumps({"x": 2}).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read()) == 6  # Model.predict(2 + 1)
    finally:
        stop(replica.server)


class _Creates:
    """A pickle that creates a file when it is loaded (what a crafted body to a dependency could do)."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.path), "w"))


def test_each_service_serves_in_its_own_server_and_the_dependency_answers_only_its_model(tmp_path: Path) -> None:
    """The split shape (kubento.builders.graph): the model service alone,
    guarded by the revision's token; the entry alone, wired to it by
    BENTOML_SERVE_DEPENDS and calling it with the token. A caller without the
    token reaches neither its API nor its pickle endpoint."""
    import http.client
    import pickle
    import urllib.request

    from tests.runtime.test_tasks import Replica, stop
    from tests.s3server import free_port

    archive = build_archive(PROJECT, tmp_path, "two")
    token = "0123456789abcdef0123456789abcdef"
    model_port, entry_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    model = Replica(tmp_path / "model", archive, "127.0.0.1", model_port, BENTOML_SERVE_SERVICE_NAME="Model",
                    KUBENTO_GRAPH_TOKEN=token, BENTO_CLOUD_API_KEY=token)
    entry = Replica(tmp_path / "entry", archive, "127.0.0.1", entry_port, BENTOML_SERVE_SERVICE_NAME="Entry",
                    BENTOML_SERVE_DEPENDS=f"Model=http://127.0.0.1:{model_port}", BENTO_CLOUD_API_KEY=token)
    try:
        model.wait_ready()
        entry.wait_ready()

        def call(port: int, path: str, body: bytes, content_type: str, **headers: str) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("POST", path, body=body, headers={"content-type": content_type, **headers})
                resp = conn.getresponse()
                return resp.status, resp.read()
            finally:
                conn.close()

        status, body = call(entry_port, "/run", json.dumps({"x": 2}).encode(), "application/json")
        assert (status, json.loads(body)) == (200, 6), (status, body, entry.logs(), model.logs())  # across servers
        assert "/predict" in model.log.read_text(), model.logs()  # the model service's own server answered

        status, body = call(model_port, "/predict", json.dumps({"x": 2}).encode(), "application/json")
        assert status == 403 and b"bearer token" in body, (status, body)
        marker = tmp_path / "unpickled"
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {token}"}):
            status, _ = call(model_port, "/predict", pickle.dumps({"x": _Creates(marker)}),
                             "application/vnd.bentoml+pickle", **headers)
            assert status == 403, headers
        assert not marker.exists()
        status, body = call(model_port, "/predict", json.dumps({"x": 2}).encode(), "application/json",
                            authorization=f"Bearer {token}")
        assert (status, json.loads(body)) == (200, 4), body
        # its own envs defaults, not the entry's (which BentoML's server alone would give it)
        status, body = call(model_port, "/greeting", b"{}", "application/json", authorization=f"Bearer {token}")
        assert (status, body.decode()) == (200, "from Model"), body
        with urllib.request.urlopen(f"http://127.0.0.1:{model_port}/readyz", timeout=5) as resp:
            assert resp.status == 200  # the kubelet's probes need no token
    finally:
        stop(entry.server)
        stop(model.server)
