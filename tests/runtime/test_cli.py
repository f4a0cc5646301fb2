"""``kubento build`` and ``kubento push``: an ML engineer's way to a .bento
archive in a store, ready for ``bento.archive``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.runtime.conftest import BUCKET, PROJECT, clean_env, sha256
from tests.s3server import S3Server


def kubento(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubento.cli.main", *args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=120)


def test_build_then_push_to_s3_and_to_a_directory(tmp_path: Path, s3: S3Server) -> None:
    home = str(tmp_path / "bentoml-home")
    built = kubento("build", str(PROJECT), cwd=tmp_path, BENTOML_HOME=home)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "Successfully built" in built.stdout  # bentoml's progress is shown
    tag = re.search(r"^tag:\s+(\S+)$", built.stdout, re.M).group(1)
    archive = tmp_path / f"{tag.replace(':', '-')}.bento"  # the default output name
    assert f"path:   {archive.name}" in built.stdout
    digest = sha256(archive)
    assert f"sha256: {digest}" in built.stdout

    env = s3.env()
    endpoint = env.pop("AWS_ENDPOINT_URL")
    pushed = kubento("push", archive.name, f"s3://{BUCKET}/cli/", "--endpoint-url", endpoint, cwd=tmp_path, **env)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    uri = f"s3://{BUCKET}/cli/{archive.name}"
    snippet = (f"  bento:\n    archive:\n      uri: {uri}\n      sha256: {digest}\n"
               "      secretRef: {name: <your-secret>}")
    assert snippet in pushed.stdout, pushed.stdout
    assert s3.get(BUCKET, f"cli/{archive.name}") == archive.read_bytes()
    assert s3.secret_key not in pushed.stdout + pushed.stderr

    (tmp_path / "dir").mkdir()
    copied = kubento("push", str(archive), str(tmp_path / "dir"), cwd=tmp_path)
    assert copied.returncode == 0, copied.stdout + copied.stderr
    assert (tmp_path / "dir" / archive.name).read_bytes() == archive.read_bytes()
    assert f"uri: pvc://<claim>/<path in the volume>/{archive.name}" in copied.stdout


def test_build_output_option_and_errors(tmp_path: Path, s3: S3Server) -> None:
    out = tmp_path / "out" / "echo.bento"
    built = kubento("build", str(PROJECT), "--output", str(out), cwd=tmp_path, BENTOML_HOME=str(tmp_path / "h"))
    assert built.returncode == 0, built.stdout + built.stderr
    assert out.is_file()

    broken = tmp_path / "broken"
    shutil.copytree(PROJECT, broken)
    (broken / "service.py").write_text("def broken(:\n")
    failed = kubento("build", str(broken), cwd=tmp_path, BENTOML_HOME=str(tmp_path / "h"))
    assert failed.returncode == 1
    assert "kubento build: bentoml build failed (exit 1):" in failed.stderr and "SyntaxError" in failed.stderr

    wrong = kubento("push", str(out), f"s3://{BUCKET}/x.bento", cwd=tmp_path, **s3.env("wrong-key"))
    assert wrong.returncode == 1
    assert f"kubento push: upload to s3://{BUCKET}/x.bento failed: " in wrong.stderr
    assert "check the credentials in your environment" in wrong.stderr


def test_build_without_bentoml(tmp_path: Path) -> None:
    """With no bentoml next to the interpreter nor on PATH: a clear hint."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    # the project's packages (kubento, minio) through a .pth, but no bentoml command
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "kubento-test.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages") or
                                                     p.endswith("operator")) + "\n")
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "kubento.cli.main", "build", str(PROJECT)],
                          env=clean_env(PATH=str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "bentoml is not installed" in proc.stderr and "pip install -e '.[build]'" in proc.stderr, proc.stderr
