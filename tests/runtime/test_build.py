"""``python -m kubento.runtime build``: what a build Job runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.runtime.conftest import BUCKET, PROJECT, Pod, sha256
from tests.s3server import S3Server


def configmap_volume(root: Path, files: dict[str, str]) -> Path:
    """A directory laid out like a mounted ConfigMap: each key a symlink into
    ..data, itself a symlink to a hidden timestamped directory."""
    stamp = root / "..2026_01_02_03_04_05.123456789"
    stamp.mkdir(parents=True)
    for name, text in files.items():
        (stamp / name).write_text(text)
        (root / name).symlink_to(f"..data/{name}")
    (root / "..data").symlink_to(stamp.name)
    return root


def project_files(**changes: str) -> dict[str, str]:
    files = {p.name: p.read_text() for p in PROJECT.iterdir() if p.is_file()}
    files.update(changes)
    return files


def build_result(pod: Pod, proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(pod.message())
    assert set(result) == {"tag", "uri", "sha256", "seconds"}
    assert result["tag"].startswith("echo:") and result["seconds"] > 0
    return result


def test_build_configmap_project_to_s3_then_fetch(pod: Pod, tmp_path: Path, s3: S3Server) -> None:
    source = configmap_volume(tmp_path / "source", project_files())
    uri = f"s3://{BUCKET}/built/ns-echo-abc123.bento"
    proc = pod.run("build", KUBENTO_SOURCE_DIR=str(source), KUBENTO_OUTPUT_URI=uri, **s3.env())
    result = build_result(pod, proc)
    assert result["uri"] == uri
    assert "Successfully built" in proc.stdout  # bentoml's own output is in the Job's log
    assert "source: 2 file(s)" in proc.stdout  # the ConfigMap's ..data internals are not copied
    stored = tmp_path / "stored.bento"
    stored.write_bytes(s3.get(BUCKET, "built/ns-echo-abc123.bento"))
    assert sha256(stored) == result["sha256"]
    assert s3.secret_key not in proc.stdout + proc.stderr

    fetcher = Pod(tmp_path / "fetcher")
    for d in (fetcher.home, fetcher.work):
        d.mkdir(parents=True)
    fetched = fetcher.run("fetch", KUBENTO_ARCHIVE_URI=uri, KUBENTO_ARCHIVE_SHA256=result["sha256"], **s3.env())
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert fetcher.tag() == result["tag"]


def test_build_pvc_project_to_pvc(pod: Pod) -> None:
    src = pod.pvc / "projects" / "echo"
    shutil.copytree(PROJECT, src)
    (pod.pvc / "out").mkdir()
    proc = pod.run("build", KUBENTO_SOURCE_DIR=str(src), KUBENTO_OUTPUT_URI="pvc://out/bentos/ns-echo-abc123.bento")
    result = build_result(pod, proc)
    written = pod.pvc / "out" / "bentos" / "ns-echo-abc123.bento"
    assert sha256(written) == result["sha256"]
    assert os.listdir(written.parent) == [written.name], "no temporary file left"
    assert not (pod.work / "bento.bento").exists()


def _failed_build(pod: Pod, tmp_path: Path, files: dict[str, str], s3: S3Server) -> str:
    source = configmap_volume(tmp_path / "source", files)
    proc = pod.run("build", KUBENTO_SOURCE_DIR=str(source), KUBENTO_OUTPUT_URI=f"s3://{BUCKET}/bad/x.bento", **s3.env())
    assert proc.returncode == 1, proc.stdout[-2000:]
    message = pod.message()
    assert len(message.encode()) <= 3500
    assert message in proc.stderr
    assert "bad/x.bento" not in [o.object_name for o in s3.client().list_objects(BUCKET, recursive=True)]
    return message


def test_build_syntax_error(pod: Pod, tmp_path: Path, s3: S3Server) -> None:
    broken = (PROJECT / "service.py").read_text() + "\ndef broken(:\n    pass\n"
    message = _failed_build(pod, tmp_path, project_files(**{"service.py": broken}), s3)
    assert message.startswith("bentoml build failed (exit 1):\n"), message
    assert "SyntaxError" in message and "def broken(:" in message, message


def test_build_missing_module(pod: Pod, tmp_path: Path, s3: S3Server) -> None:
    service = "import nosuchmodule_kubento\n" + (PROJECT / "service.py").read_text()
    message = _failed_build(pod, tmp_path, project_files(**{"service.py": service}), s3)
    assert message.startswith("bentoml build failed (exit 1):\n"), message
    assert "No module named 'nosuchmodule_kubento'" in message, message


def test_build_upload_to_a_missing_bucket(pod: Pod, s3: S3Server) -> None:
    proc = pod.run("build", KUBENTO_SOURCE_DIR=str(PROJECT), KUBENTO_OUTPUT_URI="s3://no-such-bucket/x.bento",
                   **s3.env(region=True))
    assert proc.returncode == 1
    assert pod.message().startswith("upload to s3://no-such-bucket/x.bento failed: NoSuchBucket"), pod.message()


def test_build_upload_with_wrong_credentials(pod: Pod, s3: S3Server) -> None:
    proc = pod.run("build", KUBENTO_SOURCE_DIR=str(PROJECT), KUBENTO_OUTPUT_URI=f"s3://{BUCKET}/x.bento",
                   **s3.env("wrong-key"))
    assert proc.returncode == 1
    assert "check the credentials in the ModelDeployment's build.output.secretRef Secret" in pod.message()


@pytest.fixture
def git_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository with the project under sub/ at tag v1 (and commit), then a
    commit that breaks it (so building HEAD would fail)."""
    git = shutil.which("git")
    assert git, "git is needed for these tests"
    repo = tmp_path / "repo"
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@x")

    def run(*args: str) -> str:
        return subprocess.run([git, *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout

    shutil.copytree(PROJECT, repo / "sub")
    run("init", "-q", "-b", "main")
    run("add", ".")
    run("commit", "-q", "-m", "v1")
    run("tag", "v1")
    commit = run("rev-parse", "HEAD").strip()
    (repo / "sub" / "service.py").write_text("this is not python\n")
    run("commit", "-q", "-am", "broken")
    return repo, commit


@pytest.mark.parametrize("ref", ["v1", "commit"])
def test_build_from_git(pod: Pod, git_repo: tuple[Path, str], ref: str) -> None:
    repo, commit = git_repo
    (pod.pvc / "out").mkdir()
    proc = pod.run("build", KUBENTO_GIT_URL=f"file://{repo}", KUBENTO_GIT_REF=commit if ref == "commit" else ref,
                   KUBENTO_GIT_PATH="sub", KUBENTO_OUTPUT_URI="pvc://out/x.bento")
    build_result(pod, proc)
    assert f"is commit {commit}" in proc.stdout


def test_build_from_git_head_is_the_broken_commit(pod: Pod, git_repo: tuple[Path, str]) -> None:
    repo, _ = git_repo
    (pod.pvc / "out").mkdir()
    proc = pod.run("build", KUBENTO_GIT_URL=f"file://{repo}", KUBENTO_GIT_PATH="sub",
                   KUBENTO_OUTPUT_URI="pvc://out/x.bento")
    assert proc.returncode == 1
    assert pod.message().startswith("bentoml build failed"), pod.message()


def test_build_from_git_without_git(pod: Pod, tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    proc = pod.run("build", KUBENTO_GIT_URL="https://example.invalid/x.git", KUBENTO_OUTPUT_URI="pvc://out/x.bento",
                   PATH=str(empty))
    assert proc.returncode == 1
    assert pod.message().startswith("git is not installed in this image"), pod.message()


def test_build_settings(pod: Pod) -> None:
    assert pod.run("build").returncode == 1
    assert pod.message() == "KUBENTO_OUTPUT_URI is not set"
    assert pod.run("build", KUBENTO_OUTPUT_URI="pvc://out/x.bento").returncode == 1
    assert pod.message() == "no source: set KUBENTO_SOURCE_DIR or KUBENTO_GIT_URL"
    assert pod.run("build", KUBENTO_SOURCE_DIR="/nonexistent", KUBENTO_OUTPUT_URI="http://x/y").returncode == 1
    assert "KUBENTO_OUTPUT_URI must be s3://bucket/key or pvc://claim/path" in pod.message()
