"""The bento's Python environment as real processes: a build that prepares
it from a private index (HTTPS with a private CA, basic auth) into S3, an
archive's preparation that finds it there, a model pod's fetch that unpacks
it, and a package that does not exist. Real pip, real moto, a real index
(tests/pyindex.py); this venv's Python stands for the runtime image's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pyindex
from tests.runtime.conftest import BUCKET, Pod
from tests.runtime.test_build import configmap_volume, project_files
from tests.s3server import S3Server

PACKAGE = "threadpoolctl==3.8.0"  # small, pure Python, not in this venv
USER, PASSWORD = "kubento", "index-pw-3c9a71"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    with pyindex.running(pyindex.wheels([PACKAGE]), "127.0.0.1", auth=(USER, PASSWORD), tls=True) as served:
        ca = tmp_path_factory.mktemp("index-ca") / "ca.crt"
        ca.write_text(served.ca_pem)
        served.ca_file = str(ca)
        yield served


def index_env(index, **settings) -> dict[str, str]:
    return {"KUBENTO_INDEX": json.dumps({"url": index.url, **settings}), "KUBENTO_INDEX_CA": index.ca_file,
            "KUBENTO_INDEX_USERNAME": USER, "KUBENTO_INDEX_PASSWORD": PASSWORD}


def with_packages(*packages: str) -> dict[str, str]:
    bentofile = project_files()["bentofile.yaml"].replace(
        "python:\n", "python:\n  packages:\n" + "".join(f"    - {p}\n" for p in packages))
    assert all(p in bentofile for p in packages)
    return project_files(**{"bentofile.yaml": bentofile})


def test_a_build_prepares_the_environment_an_archive_reuses_and_a_pod_unpacks(pod: Pod, tmp_path: Path, s3: S3Server, index):
    # this venv stands for a runtime image without the package
    assert subprocess.run([sys.executable, "-c", "import threadpoolctl"], capture_output=True).returncode != 0

    source = configmap_volume(tmp_path / "source", with_packages(PACKAGE))
    uri = f"s3://{BUCKET}/env-rt/ns-echo-1.bento"
    proc = pod.build(timeout=300, KUBENTO_SOURCE_DIR=str(source), KUBENTO_OUTPUT_URI=uri,
                   KUBENTO_ENV_STORE=f"s3://{BUCKET}/env-rt", **s3.env(), **index_env(index))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    env = json.loads(pod.message())["environment"]
    assert env["packages"] == 1 and env["reused"] is False and env["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert env["uri"] == f"s3://{BUCKET}/env-rt/envs/{env['hash']}.tar.gz"
    assert len(s3.get(BUCKET, f"env-rt/envs/{env['hash']}.tar.gz")) == env["size"]
    assert "threadpoolctl-3.8.0-py3-none-any.whl" in index.downloaded()
    assert PASSWORD not in proc.stdout + proc.stderr + pod.message()

    # The archive of the same bento, prepared as an environment Job would: found in the store.
    again = Pod(tmp_path / "again")
    for d in (again.home, again.work):
        d.mkdir(parents=True)
    served_before = len(index.downloaded())
    proc = again.prepare(KUBENTO_ARCHIVE_URI=uri, KUBENTO_ENV_STORE=f"s3://{BUCKET}/env-rt",
                     **s3.env(), **index_env(index))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reused = json.loads(again.message())["environment"]
    assert reused["hash"] == env["hash"] and reused["reused"] is True
    assert len(index.downloaded()) == served_before  # nothing installed again

    # A model pod: fetch imports the bento and unpacks its environment; the server's Python finds the package.
    fetcher = Pod(tmp_path / "fetcher")
    for d in (fetcher.home, fetcher.work):
        d.mkdir(parents=True)
    env_dir = tmp_path / "fetcher" / "env"
    proc = fetcher.run("fetch", KUBENTO_ARCHIVE_URI=uri, KUBENTO_ENV_URI=env["uri"], KUBENTO_ENV_SHA256=env["sha256"],
                       KUBENTO_ENV_DIR=str(env_dir), **s3.env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = subprocess.run([sys.executable, "-c", "import threadpoolctl; print(threadpoolctl.__version__, threadpoolctl.__file__)"],
                           env={"PYTHONPATH": str(env_dir / "site-packages")}, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("3.8.0 ") and str(env_dir) in found.stdout


def test_a_bento_whose_packages_the_runtime_has_gets_no_environment(pod: Pod, tmp_path: Path, s3: S3Server, index):
    source = configmap_volume(tmp_path / "source", with_packages("pyyaml>=5"))  # in this venv
    proc = pod.build(timeout=300, KUBENTO_SOURCE_DIR=str(source), KUBENTO_OUTPUT_URI=f"s3://{BUCKET}/env-rt/none.bento",
                   KUBENTO_ENV_STORE=f"s3://{BUCKET}/env-rt", **s3.env(), **index_env(index))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    env = json.loads(pod.message())["environment"]
    assert env["packages"] == 0 and "uri" not in env and "hash" not in env


def test_a_package_that_does_not_exist_is_named_with_the_tail_of_pips_log(pod: Pod, tmp_path: Path, s3: S3Server, index):
    source = configmap_volume(tmp_path / "source", with_packages(PACKAGE, "kubento-no-such-package==9.9"))
    proc = pod.build(timeout=300, KUBENTO_SOURCE_DIR=str(source), KUBENTO_OUTPUT_URI=f"s3://{BUCKET}/env-rt/bad.bento",
                   KUBENTO_ENV_STORE=f"s3://{BUCKET}/env-rt", **s3.env(), **index_env(index))
    assert proc.returncode == 1
    message = pod.message()
    assert message.startswith("PackageNotFound: kubento-no-such-package==9.9 is not on https://127.0.0.1:")
    assert "No matching distribution found for kubento-no-such-package==9.9" in message  # pip's own words
    assert PASSWORD not in proc.stdout + proc.stderr + message


def test_a_bento_for_another_python_is_refused(pod: Pod, tmp_path: Path):
    from kubento.runtime import Failure, environment

    with pytest.raises(Failure, match=r"^PythonVersionMismatch: the bento was built for Python 3\.7"):
        environment.plan("numpy\n", "image:\n  python_version: '3.7'\n", "s3://x/y", environment.Index())
