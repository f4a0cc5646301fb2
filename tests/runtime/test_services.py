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
