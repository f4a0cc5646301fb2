"""A build's project files, copied into the writable work dir: from a mounted
directory (a ConfigMap or PVC volume) or from git.

The copy matters: a ConfigMap volume is read-only and made of symlinks into
hidden ``..data``/``..<timestamp>`` directories, and a PVC may be shared or
read-only; ``bentoml build`` gets a plain directory of regular files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kubento.runtime import Failure
from kubento.runtime.bento import CommandFailed, run


def copy_tree(src: Path, dest: Path) -> int:
    """Copy ``src`` into ``dest`` dereferencing symlinks and skipping entries
    whose name starts with ``..`` (a ConfigMap volume's internals). Returns
    the number of files copied."""
    if not src.is_dir():
        raise Failure(f"project directory {src} does not exist (or is not a directory)")
    count = 0
    seen: set[str] = set()
    for root, dirs, files in os.walk(src, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".."))
        rel = Path(root).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith("..") or not path.is_file():  # dangling links, sockets...
                continue
            shutil.copyfile(path, dest / rel / name)
            count += 1
    if count == 0:
        raise Failure(f"project directory {src} has no files")
    return count


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# Answers git's credential requests from GIT_USERNAME/GIT_PASSWORD in the
# environment: the password is in neither argv nor a file.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; echo "username=${GIT_USERNAME:-git}"; echo "password=${GIT_PASSWORD}"; }; f'
)


def clone(url: str, ref: str, subpath: str, dest: Path) -> Path:
    """Fetch ``ref`` of ``url`` (shallow when the server allows it) into
    ``dest``; returns the project directory ``dest/subpath``."""
    git = shutil.which("git")
    if not git:
        raise Failure("git is not installed in this image: build from a configMap or pvc source, "
                      "or set runtimeImage to an image that has git (and bentoml)")
    shown = _redact(url)
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="")
    config = ["-c", "credential.helper="]
    if os.environ.get("GIT_PASSWORD"):
        config += ["-c", f"credential.helper={_CREDENTIAL_HELPER}"]
    config += ["-c", "advice.detachedHead=false", "-c", "init.defaultBranch=main"]

    def git_run(*args: str, what: str) -> None:
        rc, tail = run([git, *config, *args], cwd=dest, env=env)
        if rc != 0:
            hint = ""
            if any("could not read Username" in line or "Authentication failed" in line for line in tail):
                hint = " (authentication needed: set git.secretRef to a Secret with username and password)"
            raise CommandFailed(f"git {what} of {shown} failed (exit {rc}){hint}:", tail[-15:])

    dest.mkdir(parents=True, exist_ok=True)
    print(f"git: fetching {shown} at {ref}", flush=True)
    git_run("init", "-q", ".", what="init")
    git_run("remote", "add", "origin", url, what="setup")
    try:
        git_run("fetch", "-q", "--depth", "1", "origin", ref, what=f"fetch ({ref})")
        git_run("checkout", "-q", "--detach", "FETCH_HEAD", what=f"checkout ({ref})")
    except CommandFailed:
        # some servers refuse to send a commit by its id: fetch everything
        print("git: shallow fetch failed; fetching all branches and tags", flush=True)
        git_run("fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*", what="fetch")
        target = ref
        if ref != "HEAD" and run([git, "rev-parse", "-q", "--verify", f"origin/{ref}^{{commit}}"],
                                 cwd=dest, env=env, echo=False)[0] == 0:
            target = f"origin/{ref}"
        elif ref == "HEAD":
            target = "origin/HEAD" if (dest / ".git/refs/remotes/origin/HEAD").exists() else "FETCH_HEAD"
        git_run("checkout", "-q", "--detach", target, what=f"checkout ({ref})")
    rc, tail = run([git, "rev-parse", "HEAD"], cwd=dest, env=env, echo=False)
    print(f"git: {shown} {ref} is commit {tail[-1] if tail else '?'}", flush=True)
    project = (dest / subpath).resolve()
    if not project.is_relative_to(dest.resolve()) or not project.is_dir():
        raise Failure(f"git: {subpath} is not a directory in {shown} at {ref}")
    return project
