"""Runtime tier: ``python -m kubento.runtime`` and ``kubento build/push`` as
real processes, against a real S3-compatible server (moto, tests/s3server.py),
a real HTTP server and the real bentoml CLI of this venv. No cluster.

Nothing here skips: a missing bentoml, moto or dulwich fails the tests.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from kubento.builders.build_job import BUILD_STEPS
from kubento.builders.env_job import ENV_STEPS
from tests import s3server

ROOT = Path(__file__).resolve().parents[2]
PROJECT = Path(__file__).resolve().parent / "echo_project"
BUCKET = "models"
SECRET_TOKEN = "Bearer kubento-test-token-7f3a"  # what the private http path wants


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything the runtime reads, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "KUBENTO_", "BENTOML_", "GIT_")) and k != "HTTP_AUTHORIZATION"}
    env.update(BENTOML_DO_NOT_TRACK="True", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Pod:
    """The directories a pod gives the runtime (emptyDirs, PVC mounts,
    termination message file), under a test's tmp_path."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "bentoml"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def pvc(self) -> Path:
        return self.root / "pvc"

    @property
    def termination(self) -> Path:
        return self.root / "termination-log"

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(BENTOML_HOME=str(self.home), KUBENTO_WORK_DIR=str(self.work),
                         KUBENTO_PVC_ROOT=str(self.pvc), KUBENTO_TERMINATION_LOG=str(self.termination), **extra)

    def run(self, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kubento.runtime", *args], env=self.env(**extra),
                              capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def steps(self, steps: tuple[str, ...], timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
        """Run a Job's steps one after the other, each its own process (as
        its own container), all with this environment (tests/runtime/jobs.py
        runs a Job manifest's steps with exactly each container's); stops at
        the first that fails. Returns the last step run, its output being all
        of the steps'."""
        out, err, proc = [], [], None
        self.termination.unlink(missing_ok=True)
        for step in steps:
            proc = self.run(step, timeout=timeout, **extra)
            out.append(proc.stdout)
            err.append(proc.stderr)
            if proc.returncode != 0:
                break
        assert proc is not None
        return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(out), "".join(err))

    def build(self, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
        """The build Job's steps: source, build, plan, download, install, upload."""
        return self.steps(BUILD_STEPS, timeout, **extra)

    def prepare(self, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
        """The environment Job's steps: plan, download, install, upload."""
        return self.steps(ENV_STEPS, timeout, **extra)

    def message(self) -> str:
        return self.termination.read_text() if self.termination.exists() else ""

    def tag(self) -> str:
        return (self.home / "kubento-bento-tag").read_text().strip()


@pytest.fixture
def pod(tmp_path: Path) -> Pod:
    p = Pod(tmp_path)
    for d in (p.home, p.work, p.pvc):
        d.mkdir()
    return p


@dataclass(frozen=True)
class Archive:
    path: Path
    tag: str
    sha256: str


def build_archive(project: Path, d: Path, name: str) -> Archive:
    """``project`` built and exported with the bentoml CLI into ``d``/``name``.bento."""
    bentoml = Path(sys.executable).parent / "bentoml"
    assert bentoml.exists(), f"bentoml is not installed next to {sys.executable} (pip install -e '.[test]')"
    env = clean_env(BENTOML_HOME=str(d / "home"))
    built = subprocess.run([str(bentoml), "build", "-o", "tag", "."], cwd=project, env=env,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    tag = built.stdout.strip().rsplit("__tag__:", 1)[-1]
    out = d / f"{name}.bento"
    exported = subprocess.run([str(bentoml), "export", tag, str(out)], env=env, capture_output=True, text=True,
                              timeout=120)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    return Archive(out, tag, sha256(out))


@pytest.fixture(scope="session")
def echo_archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """The echo project built and exported once with the bentoml CLI."""
    return build_archive(PROJECT, tmp_path_factory.mktemp("echo-archive"), "echo")


@pytest.fixture(scope="session")
def s3(echo_archive: Archive) -> Iterator[s3server.S3Server]:
    """moto with credentials checked, bucket ``models`` holding echo.bento."""
    with s3server.running(host="127.0.0.1") as server:
        server.create_bucket(BUCKET)
        server.upload(BUCKET, "echo/echo.bento", echo_archive.path)
        yield server


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files of a directory; /private/... wants the Authorization header."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/private/") and self.headers.get("Authorization") != SECRET_TOKEN:
            self.send_error(401, "Unauthorized")
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def http_base(tmp_path_factory: pytest.TempPathFactory, echo_archive: Archive) -> Iterator[str]:
    """A real http.server: /echo.bento, /private/echo.bento, /garbage.bento."""
    root = tmp_path_factory.mktemp("http")
    (root / "private").mkdir()
    shutil.copy(echo_archive.path, root / "echo.bento")
    shutil.copy(echo_archive.path, root / "private" / "echo.bento")
    (root / "garbage.bento").write_bytes(b"this is not a bento archive\n" * 100)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
