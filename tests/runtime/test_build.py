"""``python -m kubento.runtime build``: what a build Job runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

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
    proc = pod.build(KUBENTO_SOURCE_DIR=str(source), KUBENTO_OUTPUT_URI=uri, **s3.env())
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
    proc = pod.build(KUBENTO_SOURCE_DIR=str(src), KUBENTO_OUTPUT_URI="pvc://out/bentos/ns-echo-abc123.bento")
    result = build_result(pod, proc)
    written = pod.pvc / "out" / "bentos" / "ns-echo-abc123.bento"
    assert sha256(written) == result["sha256"]
    assert os.listdir(written.parent) == [written.name], "no temporary file left"
    assert not (pod.work / "bento.bento").exists()


def _failed_build(pod: Pod, tmp_path: Path, files: dict[str, str], s3: S3Server) -> str:
    source = configmap_volume(tmp_path / "source", files)
    proc = pod.build(KUBENTO_SOURCE_DIR=str(source), KUBENTO_OUTPUT_URI=f"s3://{BUCKET}/bad/x.bento", **s3.env())
    assert proc.returncode == 1, proc.stdout[-2000:]
    message = pod.message()
    assert len(message.encode()) <= 2048  # what Kubernetes keeps of each of the build pod's six containers
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
    proc = pod.build(KUBENTO_SOURCE_DIR=str(PROJECT), KUBENTO_OUTPUT_URI="s3://no-such-bucket/x.bento",
                   **s3.env(region=True))
    assert proc.returncode == 1
    assert pod.message().startswith("upload to s3://no-such-bucket/x.bento failed: NoSuchBucket"), pod.message()


def test_build_upload_with_wrong_credentials(pod: Pod, s3: S3Server) -> None:
    proc = pod.build(KUBENTO_SOURCE_DIR=str(PROJECT), KUBENTO_OUTPUT_URI=f"s3://{BUCKET}/x.bento",
                   **s3.env("wrong-key"))
    assert proc.returncode == 1
    assert "check the credentials in the ModelDeployment's build.output.secretRef Secret" in pod.message()


def test_build_settings(pod: Pod) -> None:
    assert pod.build().returncode == 1
    assert pod.message() == "no source: set KUBENTO_SOURCE_DIR or KUBENTO_GIT_URL"
    # each step starts from what the one before it left in the work volume
    assert pod.run("build").returncode == 1
    assert "source.json is missing or unreadable" in pod.message() and "did not finish" in pod.message()
    assert pod.build(KUBENTO_SOURCE_DIR=str(PROJECT), KUBENTO_OUTPUT_URI="http://x/y").returncode == 1
    assert "KUBENTO_OUTPUT_URI must be s3://bucket/key or pvc://claim/path" in pod.message()


def test_a_pvc_project_path_with_dot_dot_or_leaving_its_volume_is_refused(pod: Pod, tmp_path: Path) -> None:
    (pod.pvc / "claim" / "projects").mkdir(parents=True)
    proc = pod.run("source", KUBENTO_SOURCE_DIR=str(pod.pvc / "claim" / "projects" / ".." / ".." / "elsewhere"))
    assert proc.returncode == 1
    assert "'..' is not allowed in the path" in pod.message()
    outside = tmp_path / "outside"
    shutil.copytree(PROJECT, outside)
    (pod.pvc / "claim" / "projects" / "echo").symlink_to(outside)  # a link on the volume, out of it
    proc = pod.run("source", KUBENTO_SOURCE_DIR=str(pod.pvc / "claim" / "projects" / "echo"))
    assert proc.returncode == 1
    assert f"resolves to {outside}, outside the volume of pvc claim: refused" in pod.message(), pod.message()


def test_symlinks_out_of_the_project_are_copied_as_links_never_followed(pod: Pod, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("not for the build\n")
    (tmp_path / "secret-dir").mkdir()
    (tmp_path / "secret-dir" / "key").write_text("not for the build either\n")
    project = pod.pvc / "claim" / "echo"
    shutil.copytree(PROJECT, project)
    (project / "secret.txt").symlink_to(secret_file)
    (project / "data").symlink_to(tmp_path / "secret-dir")
    (project / "alias.py").symlink_to("service.py")  # inside the project: copied as the file
    (project / "sub").mkdir()
    (project / "sub" / "up.py").symlink_to("../service.py")
    proc = pod.run("source", KUBENTO_SOURCE_DIR=str(project))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    copied = pod.work / "project"
    for name, target in (("secret.txt", secret_file), ("data", tmp_path / "secret-dir")):
        assert (copied / name).is_symlink() and os.readlink(copied / name) == str(target)
        assert f"source: {name} is a symlink out of the project ({target}): copied as a link, not followed" in proc.stdout
    assert not any("key" in files for _, _, files in os.walk(copied))  # the linked directory was not walked
    for name in ("alias.py", "sub/up.py"):
        assert not (copied / name).is_symlink() and (copied / name).read_text() == (PROJECT / "service.py").read_text()
    assert "source: 4 file(s)" in proc.stdout  # service.py, bentofile.yaml, alias.py, sub/up.py
