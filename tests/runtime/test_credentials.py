"""Credentials never beside untrusted code (#23), as real processes: the
build Job's and the environment Job's manifests run step by step
(tests/runtime/jobs.py: each step gets exactly its container's environment
and mounts), against a private git server, moto and a private index, with a
project whose service.py and a source distribution whose setup.py search
for the credential values (tests/leakprobe.py): the processes they can see
(/proc/*/environ, /proc/*/cmdline: on this machine, every process of the
host), their environment and the pod's files.

What the tests pin down:
- ``bentoml build`` (the project's code) finds no credential;
- pip building a source distribution (the install step) finds none;
- pip preparing a source distribution's *metadata* runs in the download step,
  beside the index credentials — the one step that cannot be separated
  (pip must run the build backend to learn the dependencies): it finds the
  index password there, and nothing else. ``onlyBinary`` is the guard: with it,
  no package code runs at all, and an sdist-only requirement is refused.
"""

from __future__ import annotations

import io
import json
import secrets
import shutil
import tarfile
from pathlib import Path

import pytest

from kubento.api.v1alpha1 import BuildSource, PackageIndex
from kubento.builders import Owner
from kubento.builders.bento import ServedBento
from kubento.builders.build_job import build_job, snapshot_name
from kubento.builders.env_job import env_job
from tests import leakprobe, pyindex
from tests.runtime import gitserver
from tests.runtime.conftest import BUCKET, PROJECT
from tests.runtime.jobs import run_job
from tests.s3server import S3Server

OWNER = Owner(name="leak", namespace="ns", uid="uid-leak")
IMAGE = "kubento.local/bentoml-runtime:test"
WHEEL = "threadpoolctl==3.8.0"  # small, pure Python, not in this venv
SDIST = "kubento_leak_probe"  # a source distribution only: its setup.py probes
GIT_USER, INDEX_USER = "kubento-git", "kubento-index"
GIT_PASSWORD = f"git-pw-{secrets.token_hex(10)}"
INDEX_PASSWORD = f"index-pw-{secrets.token_hex(10)}"

SETUP_PY = '''
import json, os, sys
from setuptools import setup

%(probe)s
_found, _procs, _files = _leak_search()
with open(%(results)r, "a") as f:
    f.write(json.dumps({"tmpdir": os.environ.get("TMPDIR", ""), "argv": sys.argv[1:3], "found": _found,
                        "files": _files}) + "\\n")
setup(name=%(name)r, version="1.0", py_modules=[%(name)r])
'''


def make_sdist(out: Path, probe: str, results: Path) -> Path:
    path = out / f"{SDIST}-1.0.tar.gz"
    files = {"setup.py": SETUP_PY % {"probe": probe, "results": str(results), "name": SDIST},
             f"{SDIST}.py": "VALUE = 1\n"}
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{SDIST}-1.0/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, s3: S3Server):
    """A private git repository whose project's service.py probes, a private
    index (HTTPS, basic auth) with a wheel, setuptools/wheel and the probing
    sdist, and the Secrets a cluster would hold."""
    base = tmp_path_factory.mktemp("leak")
    pods = base / "pods"  # every pod's files: what the probes search
    pods.mkdir()
    results = base / "sdist-probe.jsonl"
    needles = {
        "git password": leakprobe.forms(GIT_PASSWORD, GIT_USER),
        "s3 access key id": leakprobe.forms(s3.access_key),
        "s3 secret key": leakprobe.forms(s3.secret_key),
        "index password": leakprobe.forms(INDEX_PASSWORD, INDEX_USER),
    }
    probe = leakprobe.render(needles, roots=[str(pods)])
    service = probe + leakprobe.FAIL_ON_FINDINGS + (PROJECT / "service.py").read_text()
    repo = gitserver.Repository.create(base / "probe.git")
    bentofile = (PROJECT / "bentofile.yaml").read_text()
    projects = {
        "wheel": bentofile.replace("python:\n", f"python:\n  packages:\n    - {WHEEL}\n"),
        "sdist": bentofile.replace("python:\n", f"python:\n  packages:\n    - {WHEEL}\n    - {SDIST}==1.0\n"),
    }
    files = {f"{name}/{f}": text for name, bentofile_text in projects.items()
             for f, text in (("service.py", service), ("bentofile.yaml", bentofile_text))}
    repo.tag("v1", repo.commit(files, "probes"))
    served = base / "index"
    served.mkdir()
    for wheels in (pyindex.wheels([WHEEL]), pyindex.wheels(["setuptools==80.9.0", "wheel==0.45.1"])):
        for f in wheels.glob("*.whl"):
            shutil.copy(f, served / f.name)
    make_sdist(served, probe, results)
    with gitserver.serving({"/probe.git": repo.path}, credentials=(GIT_USER, GIT_PASSWORD)) as git, \
            pyindex.running(served, "127.0.0.1", auth=(INDEX_USER, INDEX_PASSWORD), tls=True) as index:
        ca = base / "index-ca"
        ca.mkdir()
        (ca / "ca.crt").write_text(index.ca_pem)
        yield {"git": f"{git}/private/probe.git", "index": index, "ca": ca, "pods": pods, "results": results,
               "secrets": {"git": {"username": GIT_USER, "password": GIT_PASSWORD}, "s3": s3.env(),
                           "index": {"username": INDEX_USER, "password": INDEX_PASSWORD}}}


def build(world, name: str, project: str, only_binary: bool):
    spec = BuildSource.model_validate({
        "source": {"git": {"url": world["git"], "ref": "v1", "path": project, "secretRef": {"name": "git"}}},
        "output": {"uri": f"s3://{BUCKET}/leak-{name}", "secretRef": {"name": "s3"}},
    })
    index = PackageIndex.model_validate({"url": world["index"].url, "secretRef": {"name": "index"},
                                         "caBundle": {"configMap": "index-ca"}, "onlyBinary": only_binary})
    job = build_job(spec, OWNER, IMAGE, f"{name:0<12}"[:12], "b1", index)
    config_maps = {"index-ca": world["ca"], snapshot_name(job["metadata"]["name"]): world["ca"]}
    return run_job(job, world["pods"] / name, world["secrets"], config_maps), index


def sdist_runs(world) -> list[dict]:
    path = world["results"]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_with_only_binary_no_step_that_runs_foreign_code_finds_a_credential(world, s3):
    before = len(sdist_runs(world))
    run, index = build(world, "wheel", "wheel", only_binary=True)
    assert run.ok, run.output[-5000:]
    probe = [line for line in run.step("build").stdout.splitlines() if line.startswith(leakprobe.MARKER)]
    assert probe and "nothing found" in probe[-1], run.output[-3000:]
    # every credential was used: the private clone, the private index's wheel, the upload
    assert any(f.startswith("threadpoolctl-3.8.0") for f in world["index"].downloaded())
    result = run.result
    assert result["environment"]["packages"] == 1 and result["uri"].startswith(f"s3://{BUCKET}/leak-wheel/")
    assert len(sdist_runs(world)) == before  # no package code ran
    for value in (GIT_PASSWORD, INDEX_PASSWORD, s3.secret_key):
        assert value not in run.output
    # nothing a credential left in any pod file (the netrc is gone with the download step)
    for path in world["pods"].rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 24:
            data = path.read_bytes()
            assert not any(f in data for v, u in ((GIT_PASSWORD, GIT_USER), (INDEX_PASSWORD, INDEX_USER))
                           for f in leakprobe.forms(v, u)), path

    # The environment Job of the archive, from its manifest too: the store has the environment.
    archive = ServedBento(IMAGE, archive_uri=result["uri"], sha256=result["sha256"], secret="s3")
    again = run_job(env_job(archive, OWNER, index, None), world["pods"] / "env-job", world["secrets"],
                    {"index-ca": world["ca"]})
    env = again.result["environment"]
    assert env["hash"] == result["environment"]["hash"] and env["reused"] is True


def test_an_sdists_build_finds_no_credential_and_its_metadata_step_is_the_documented_exception(world):
    before = len(sdist_runs(world))
    run, _ = build(world, "sdist", "sdist", only_binary=False)
    assert run.ok, run.output[-5000:]
    assert "nothing found" in run.step("build").stdout
    runs = sdist_runs(world)[before:]
    by_step = {}
    for r in runs:
        step = Path(r["tmpdir"]).parent.name  # TMPDIR is <pod>/containers/<step>/tmp
        by_step.setdefault(step, []).append(r)
    assert set(by_step) == {"download", "install"}, runs
    # pip builds the sdist (setup.py bdist_wheel) in the install step: no credential in reach
    assert all(r["found"] == [] and r["files"] > 0 for r in by_step["install"]), by_step["install"]
    assert any("bdist_wheel" in r["argv"] for r in by_step["install"]), by_step["install"]
    # pip prepares its metadata in the download step, beside the index credentials (only those):
    # the documented exception that python.index.onlyBinary closes
    found = {f.split(" in ")[0] for r in by_step["download"] for f in r["found"]}
    assert found == {"index password"}, by_step["download"]


def test_only_binary_refuses_a_requirement_that_has_only_a_source_distribution(world):
    before = len(sdist_runs(world))
    run, _ = build(world, "refused", "sdist", only_binary=True)
    assert run.failed is not None and run.failed.name == "download"
    assert run.message.startswith(f"PackageNotFound: {SDIST}==1.0 is not on https://127.0.0.1:"), run.message
    assert "among binary wheels: onlyBinary is set" in run.message
    assert len(sdist_runs(world)) == before  # its setup.py never ran
