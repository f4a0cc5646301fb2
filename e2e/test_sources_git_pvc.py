"""Build and archive sources beyond ConfigMaps and S3, on a real node:

- git: a repository served by dulwich's smart-HTTP server on the node's
  address; the build Job (runtime image, no git binary) fetches a tag with
  dulwich, builds, stores the archive in S3, and the model serves it.
- PVC: a static hostPath PersistentVolume on this machine (the node), bound
  only to the test's claim; a build writes its archive there
  (output pvc://), pods fetch it from there, and an archive copied into the
  volume by hand serves as bento.archive pvc://.

Fails, never skips, when something is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

import yaml

from e2e.conftest import NAMESPACE, S3_SECRET, put_secret, volume_dir
from e2e.support import IRIS_CLASSES, IRIS_ROWS, ROOT, md, predict, ready
from e2e.test_sources import project_files, put_project
from tests.helpers import condition, wait_for, with_ready_reason
from tests.runtime import gitserver

PROJECT = ROOT / "examples" / "iris-source"
PROJECT_PATH = "examples/iris-source"  # where the project sits in the test repository
BENTO_UID = 1034  # the runtime image's user: the pods write the volume as this uid
STORAGE_CLASS = "kubento-e2e-static"  # no such StorageClass: nothing provisions, only our PV binds
GIT_SECRET = "e2e-git"
GIT_USER, GIT_PASSWORD = "kubento", "e2e-git-pass-8b2f41"  # what the server's /private/ wants


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def job_log(cluster, obj: dict) -> str:
    job = obj["status"]["build"]["job"]
    # every step's (source: git; build: bentoml; upload: the result), in order
    return cluster.kubectl("logs", "-n", NAMESPACE, f"job/{job}", "--all-containers", "--tail=400").stdout


def lines_with(log: str, *starts: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith(starts)]


# ---------------------------------------------------------------------- git


@dataclass(frozen=True)
class GitRepo:
    url: str  # anonymous
    private: str  # the same repository behind HTTP Basic authentication (Secret GIT_SECRET)
    tagged: str  # the commit tag v1 points to (the project as in examples/iris-source)
    head: str  # main: a later commit whose service cannot be built


@pytest.fixture(scope="module")
def git_repo(cluster, operator, host_ip, tmp_path_factory) -> Iterator[GitRepo]:
    """A bare repository with examples/iris-source at tag v1, and a broken
    commit after it on main (so only the tag builds), served over smart HTTP
    on the node's address: /iris.git to anyone, /private/iris.git with the
    credentials in Secret GIT_SECRET."""
    repo = gitserver.Repository.create(tmp_path_factory.mktemp("git") / "iris.git")
    files = gitserver.project_files(PROJECT, PROJECT_PATH)
    tagged = repo.commit(files, "iris-source")
    repo.tag("v1", tagged)
    head = repo.commit({**files, f"{PROJECT_PATH}/service.py": "raise SystemExit('not this commit')\n"}, "broken")
    put_secret(cluster, GIT_SECRET, {"username": GIT_USER, "password": GIT_PASSWORD})
    try:
        with gitserver.serving({"/iris.git": repo.path}, host=host_ip, credentials=(GIT_USER, GIT_PASSWORD)) as base:
            yield GitRepo(f"{base}/iris.git", f"{base}/private/iris.git", tagged, head)
    finally:
        cluster.kubectl("delete", "secret", GIT_SECRET, "-n", NAMESPACE, "--ignore-not-found", check=False)


def git_spec(images, url: str, ref: str, secret: str | None = None) -> dict:
    git = {"url": url, "ref": ref, "path": PROJECT_PATH}
    if secret:
        git["secretRef"] = {"name": secret}
    return {
        "bento": {"build": {"source": {"git": git},
                            "output": {"uri": "s3://built/e2e-git", "secretRef": {"name": S3_SECRET}}}},
        "runtimeImage": images["iris"],
    }


def test_build_from_a_private_git_repository_at_a_tag_serves_correct_predictions(cluster, images, s3, git_repo,
                                                                                 model):
    start = time.monotonic()
    name = model("git", git_spec(images, git_repo.private, "v1", GIT_SECRET))
    obj = wait_for("Ready", lambda: ready(cluster, name), timeout=420, interval=1)
    print(f"git build: apply -> Ready in {time.monotonic() - start:.1f}s")
    assert condition(obj, "BuildSucceeded")["status"] == "True"
    assert obj["status"]["build"]["source"] == f"git {git_repo.private}@v1:{PROJECT_PATH}"
    bucket, key = obj["status"]["build"]["archive"].removeprefix("s3://").split("/", 1)
    assert bucket == "built" and key.startswith("e2e-git/")
    assert s3.get(bucket, key)[:6] == b"\xfd7zXZ\x00"  # an exported bento (xz tar) is in the store

    log = job_log(cluster, obj)
    for line in lines_with(log, "git: ", "build: "):
        print(f"  job log: {line}")
    # dulwich fetched the one tagged commit (not main's broken head), shallow
    assert f"git: {git_repo.private} v1 is commit {git_repo.tagged} (shallow fetch" in log, log[-3000:]
    assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES
    events = cluster.get("events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}")["items"]
    assert GIT_PASSWORD not in log + yaml.safe_dump(obj) + yaml.safe_dump(events)


def test_a_wrong_git_ref_fails_the_build_naming_the_refs_there(cluster, images, s3, git_repo, model):
    start = time.monotonic()
    name = model("git-ref", git_spec(images, git_repo.url, "v2"))
    obj = wait_for("BuildFailed", lambda: with_ready_reason(md(cluster, name), "BuildFailed"), timeout=120, interval=1)
    message = condition(obj, "BuildSucceeded")["message"]
    print(f"wrong ref: BuildFailed after {time.monotonic() - start:.1f}s: {message}")
    assert condition(obj, "BuildSucceeded")["status"] == "False"
    assert f"git: ref v2 not found in {git_repo.url} (branches: main; tags: v1)" in message, message


# ---------------------------------------------------------------------- PVC


@dataclass(frozen=True)
class Claim:
    name: str
    directory: Path  # the volume's hostPath on this machine (the node)


@pytest.fixture(scope="module")
def claim(cluster, operator) -> Iterator[Claim]:
    """A PersistentVolumeClaim bound to a static hostPath PersistentVolume: a
    fresh directory of this machine, writable by the pods' uid (under
    KUBENTO_E2E_VOLUME_DIR: on kind, a directory mounted into the node at the
    same path)."""
    directory = Path(tempfile.mkdtemp(prefix="kubento-e2e-pvc-", dir=volume_dir()))
    os.chown(directory, BENTO_UID, BENTO_UID)
    directory.chmod(0o755)
    name = f"e2e-pvc-{uuid.uuid4().hex[:5]}"
    pv = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"kubento-{NAMESPACE}-{name}", "labels": {"app.kubernetes.io/part-of": "kubento-e2e"}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "hostPath": {"path": str(directory), "type": "Directory"},
            "claimRef": {"namespace": NAMESPACE, "name": name},  # binds to this claim only
        },
    }
    pvc = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "volumeName": pv["metadata"]["name"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [pv, pvc]}))
    try:
        wait_for("the claim bound", lambda: (cluster.get("pvc", name, "-n", NAMESPACE) or {}).get("status", {})
                 .get("phase") == "Bound", timeout=60, interval=0.5)
        yield Claim(name, directory)
    finally:
        # the claim goes once no pod uses it (the ModelDeployments are deleted first); then the volume
        cluster.kubectl("delete", "pvc", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
        cluster.kubectl("delete", "pv", pv["metadata"]["name"], "--ignore-not-found", "--wait=false", check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def config_maps(cluster) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        cluster.kubectl("delete", "configmap", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)


def test_build_to_a_pvc_serves_from_it(cluster, images, claim, config_maps, model):
    project = f"iris-src-{uuid.uuid4().hex[:5]}"
    put_project(cluster, project, project_files())
    config_maps.append(project)
    spec = {
        "bento": {"build": {"source": {"configMap": {"name": project}},
                            "output": {"uri": f"pvc://{claim.name}/bentos"}}},
        "runtimeImage": images["iris"],
    }
    start = time.monotonic()
    name = model("pvc-build", spec)
    obj = wait_for("Ready", lambda: ready(cluster, name), timeout=420, interval=1)
    print(f"pvc build: apply -> Ready in {time.monotonic() - start:.1f}s")
    assert condition(obj, "BuildSucceeded")["status"] == "True"
    archive = obj["status"]["build"]["archive"]
    assert archive.startswith(f"pvc://{claim.name}/bentos/{NAMESPACE}-{name}-"), archive
    written = claim.directory / archive.removeprefix(f"pvc://{claim.name}/")
    assert written.is_file() and written.suffix == ".bento", sorted(claim.directory.rglob("*"))
    assert written.stat().st_uid == BENTO_UID  # written by the build Job's pod
    assert tarfile.is_tarfile(written)
    assert [p.name for p in written.parent.iterdir()] == [written.name], "no temporary file left"
    for line in lines_with(job_log(cluster, obj), "build: "):
        print(f"  job log: {line}")
    # the model server's pods fetched it from the claim (mounted read-only in their init container)
    servers = cluster.get("pods", "-n", NAMESPACE, "-l",
                          f"app.kubernetes.io/instance={name},app.kubernetes.io/component!=bento-builder")["items"]
    volumes = [v for p in servers for v in p["spec"]["volumes"]]
    assert servers and any(v.get("persistentVolumeClaim", {}).get("claimName") == claim.name for v in volumes), volumes
    assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES


def test_archive_from_a_pvc_serves_correct_predictions(cluster, images, claim, iris_bento, model):
    target = claim.directory / "archives" / "iris.bento"
    target.parent.mkdir(exist_ok=True)
    shutil.copy(iris_bento, target)
    spec = {"bento": {"archive": {"uri": f"pvc://{claim.name}/archives/iris.bento", "sha256": sha256(iris_bento)}},
            "runtimeImage": images["iris"]}
    start = time.monotonic()
    name = model("pvc-archive", spec)
    wait_for("Ready", lambda: ready(cluster, name), timeout=300, interval=1)
    print(f"pvc archive: apply -> Ready in {time.monotonic() - start:.1f}s")
    assert wait_for("a prediction", lambda: predict(cluster, name, IRIS_ROWS), timeout=60) == IRIS_CLASSES
