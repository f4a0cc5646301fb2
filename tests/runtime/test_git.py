"""Builds from git through dulwich (the runtime image has no git binary),
against a real smart-HTTP git server (dulwich.web, tests/runtime/gitserver.py)
on localhost: branches, tags, commit ids, credentials, and the failures a
user must be able to act on."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from kubento.runtime import Failure, source
from tests.runtime import gitserver
from tests.runtime.conftest import PROJECT, Pod, sha256

USER, PASSWORD = "kubento", "git-pass-5d1e9c"  # what /private/ wants
BROKEN = b"this is not python\n"


@dataclass(frozen=True)
class GitServer:
    base: str
    first: str  # sub/ = the echo project; no branch or tag points here
    tagged: str  # + sub/README: branch "release", annotated tag "v1"
    head: str  # sub/service.py broken: main (HEAD)

    @property
    def url(self) -> str:
        return f"{self.base}/project.git"

    @property
    def private(self) -> str:
        return f"{self.base}/private/project.git"


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    repo = gitserver.Repository.create(tmp_path_factory.mktemp("git") / "project.git")
    files = gitserver.project_files(PROJECT, "sub")
    first = repo.commit(files, "the echo project")
    tagged = repo.commit({**files, "sub/README": "echo\n"}, "a README")
    repo.branch("release", tagged)
    repo.tag("v1", tagged)
    head = repo.commit({**files, "sub/README": "echo\n", "sub/service.py": BROKEN}, "broken")
    with gitserver.serving({"/project.git": repo.path}, credentials=(USER, PASSWORD)) as base:
        yield GitServer(base, first, tagged, head)


def git_env(url: str, ref: str | None = None, **extra: str) -> dict[str, str]:
    env = {"KUBENTO_GIT_URL": url, "KUBENTO_GIT_PATH": "sub", "KUBENTO_OUTPUT_URI": "pvc://out/x.bento", **extra}
    if ref is not None:
        env["KUBENTO_GIT_REF"] = ref
    return env


def built(pod: Pod, proc) -> dict:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(pod.message())
    assert result["tag"].startswith("echo:")
    assert sha256(pod.pvc / "out" / "x.bento") == result["sha256"]
    return result


def test_build_from_a_private_branch_with_credentials(pod: Pod, git: GitServer) -> None:
    (pod.pvc / "out").mkdir()
    proc = pod.build(**git_env(git.private, "release", GIT_USERNAME=USER, GIT_PASSWORD=PASSWORD))
    built(pod, proc)
    assert f"is commit {git.tagged} (shallow fetch" in proc.stdout, proc.stdout
    assert "checked out 3 file(s)" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr + pod.message()
    # the repository itself is removed; the steps' hand-over files hold no credential
    assert sorted(p.name for p in pod.work.iterdir()) == ["build.json", "checkout", "environment.json", "source.json"]
    assert not any(PASSWORD in p.read_text() for p in pod.work.glob("*.json"))
    assert not (pod.work / "checkout" / ".git").exists()


def test_build_from_a_commit_no_ref_points_to(pod: Pod, git: GitServer) -> None:
    """dulwich's server, like git's by default over protocol v0, refuses a
    want of such a commit: the build fetches all refs and finds it there."""
    (pod.pvc / "out").mkdir()
    proc = pod.build(**git_env(git.url, git.first))
    built(pod, proc)
    assert "fetching all branches and tags" in proc.stdout
    assert f"is commit {git.first} (full fetch" in proc.stdout, proc.stdout


def test_build_from_head_builds_the_broken_commit(pod: Pod, git: GitServer) -> None:
    (pod.pvc / "out").mkdir()
    proc = pod.build(**git_env(git.url))  # no KUBENTO_GIT_REF: HEAD
    assert proc.returncode == 1
    assert f"HEAD is commit {git.head}" in proc.stdout
    assert pod.message().startswith("bentoml build failed"), pod.message()


def test_a_wrong_ref_is_named_with_the_refs_there(pod: Pod, git: GitServer) -> None:
    proc = pod.build(**git_env(git.url, "relaese"))
    assert proc.returncode == 1
    assert pod.message() == f"git: ref relaese not found in {git.url} (branches: main, release; tags: v1)"
    assert pod.message() in proc.stderr
    proc = pod.build(**git_env(git.url, "0123456789abcdef0123456789abcdef01234567"))
    assert proc.returncode == 1
    assert pod.message().startswith(f"git: commit 0123456789abcdef0123456789abcdef01234567 not found in {git.url} "
                                    "(it is on no branch or tag there;"), pod.message()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["no-credentials", "wrong-password", "no-repo", "refused", "refused-git", "ssh"])
def test_failures_name_their_cause(pod: Pod, git: GitServer, case: str) -> None:
    port = _closed_port()
    url, extra, says = {
        "no-credentials": (git.private, {}, "authentication needed (HTTP 401): set git.secretRef"),
        "wrong-password": (git.private, {"GIT_USERNAME": USER, "GIT_PASSWORD": "not-" + PASSWORD},
                           "authentication failed (HTTP 401): check username and password"),
        "no-repo": (f"{git.base}/nothing.git", {}, "repository not found"),
        "refused": (f"http://127.0.0.1:{port}/project.git", {},
                    f"connection refused (endpoint http://127.0.0.1:{port})"),
        "refused-git": (f"git://127.0.0.1:{port}/project.git", {},
                        f"connection refused (endpoint git://127.0.0.1:{port})"),
        "ssh": ("git@example.invalid:team/project.git", {}, "ssh is not supported"),
    }[case]
    proc = pod.build(timeout=60, **git_env(url, "release", **extra))
    assert proc.returncode == 1
    message = pod.message()
    assert message.startswith(f"git: cannot fetch {url}: "), message
    assert says in message, message
    assert "Traceback" not in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr + message


@pytest.mark.parametrize("ref, commit", [("HEAD", "head"), ("main", "head"), ("release", "tagged"),
                                         ("v1", "tagged"), ("refs/tags/v1", "tagged"), ("id", "tagged"),
                                         ("short-id", "first")])
def test_refs_resolve_like_git(git: GitServer, tmp_path: Path, capsys: pytest.CaptureFixture, ref: str,
                               commit: str) -> None:
    """In-process (no build): which commit each kind of ref checks out."""
    want = getattr(git, commit)
    ref = {"id": want, "short-id": want[:10]}.get(ref, ref)
    dest = tmp_path / "work" / "checkout"
    project = source.clone(git.url, ref, "sub", dest)
    out = capsys.readouterr().out
    assert f"{git.url} {ref} is commit {want}" in out, out
    assert project == dest / "sub"
    expected = {"first": {"bentofile.yaml", "service.py"}}.get(commit, {"bentofile.yaml", "service.py", "README"})
    assert {p.name for p in project.iterdir()} == expected
    assert ((project / "service.py").read_bytes() == BROKEN) == (commit == "head")
    assert [p.name for p in dest.parent.iterdir()] == ["checkout"]


def test_credentials_in_the_url_are_used_and_never_shown(git: GitServer, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    url = git.private.replace("http://", f"http://{USER}:{PASSWORD}@")
    source.clone(url, "v1", ".", tmp_path / "checkout")
    out = capsys.readouterr().out
    assert f"http://{USER}:***@" in out and PASSWORD not in out
    with pytest.raises(Failure) as failed:
        source.clone(url.replace(PASSWORD, "wrong"), "v1", ".", tmp_path / "again")
    assert "authentication failed (HTTP 401)" in str(failed.value) and "wrong" not in str(failed.value)


@pytest.mark.parametrize("path", ["nope", "../..", "sub/service.py"])
def test_a_path_that_is_no_directory_of_the_repository(git: GitServer, tmp_path: Path, path: str) -> None:
    with pytest.raises(Failure) as failed:
        source.clone(git.url, "v1", path, tmp_path / "checkout")
    assert str(failed.value) == f"git: {path} is not a directory in {git.url} at v1"
