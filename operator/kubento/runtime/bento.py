"""bentoml, called through its CLI (the runtime never imports bentoml: its
import costs seconds and the CLI is the interface users know): import, build,
export, and reading a bento's tag from an archive.
"""

from __future__ import annotations

import collections
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Optional

from kubento.runtime import Failure, bentoml_home

TAIL_LINES = 40
_TAG_PART = re.compile(r"^[A-Za-z0-9_.\-]+$")
_BUILT = re.compile(r'Successfully built Bento\(tag="([^"]+)"\)')
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class CommandFailed(Failure):
    """A command exited non-zero: ``str()`` is ``headline`` + the output's tail."""

    def __init__(self, headline: str, tail: list[str]) -> None:
        self.headline, self.tail = headline, tail
        super().__init__("\n".join([headline, *tail]))


def bentoml_command() -> list[str]:
    """The bentoml of this Python's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "bentoml"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("bentoml")
    if found:
        return [found]
    raise Failure(f"bentoml is not installed (no `bentoml` command next to {sys.executable} or on PATH)")


_CREDENTIAL = re.compile(r"^(AWS_|GIT_|HTTP_AUTHORIZATION$|KUBENTO_INDEX_(USERNAME|PASSWORD)$)")
_NOT_SECRET = {"KUBENTO_INDEX_USERNAME"}  # kept from commands, not masked (a user name may be a common word)


def run(argv: list[str], cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None,
        echo: bool = True, redact: Optional[list[str]] = None) -> tuple[int, list[str]]:
    """Run a command, streaming its output (stdout and stderr merged) to our
    stdout as it comes; return the exit code and the output's last lines.
    Credential values (the environment's, and ``redact``) never reach either."""
    full_env = dict(os.environ if env is None else env)
    # The project's code runs inside `bentoml build`: it gets no credentials
    # (the upload is ours), and none of their values can reach the log tail
    # that becomes the condition and the event.
    secrets = [v for k, v in full_env.items()
               if _CREDENTIAL.match(k) and k not in _NOT_SECRET and len(v) >= 4] + list(redact or [])
    secrets.sort(key=len, reverse=True)
    full_env = {k: v for k, v in full_env.items() if not _CREDENTIAL.match(k)}
    # live output, and rich's lines unwrapped (it wraps at 80 columns otherwise)
    full_env.update(PYTHONUNBUFFERED="1", COLUMNS="1000", BENTOML_DO_NOT_TRACK="True")
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1)
    except OSError as exc:
        raise Failure(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            for value in secrets:
                line = line.replace(value, "***")
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
            tail.append(_ANSI.sub("", line.rstrip()))
    return proc.returncode, list(tail)


# ------------------------------------------------------------ archives

_MAGIC = [(b"\xfd7zXZ\x00", ".bento"), (b"\x1f\x8b", ".gz"), (b"BZh", ".bz2"), (b"PK\x03\x04", ".zip")]


def archive_suffix(path: Path, what: str) -> str:
    """The file name suffix that makes ``bentoml import`` (which guesses the
    format from the name) read this file's real format."""
    with open(path, "rb") as f:
        head = f.read(512)
    for magic, suffix in _MAGIC:
        if head.startswith(magic):
            return suffix
    if head[257:262] == b"ustar":
        return ".tar"
    raise Failure(f"{what} is not a bento archive (not the xz/gzip/bzip2/tar/zip data `bentoml export` writes)")


def _top_level(text: str, key: str) -> Optional[str]:
    m = re.search(rf"^{key}:[ \t]*(.*?)[ \t]*$", text, re.MULTILINE)
    return m.group(1).strip("'\"") if m else None


def archive_tag(path: Path, suffix: str, what: str) -> str:
    """name:version from the archive's bento.yaml (read before importing: the
    tag is then known whatever bentoml prints, and a file that is no bento
    archive is refused with a clear message)."""
    text = None
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if posixpath.normpath(name) == "bento.yaml":
                        text = z.read(name).decode()
                        break
        else:
            with tarfile.open(path, mode="r|*") as t:
                for member in t:
                    if posixpath.normpath(member.name) == "bento.yaml" and member.isfile():
                        f = t.extractfile(member)
                        text = f.read().decode() if f else None
                        break
    except Exception as exc:  # tarfile/lzma/zlib/zipfile errors: a damaged or foreign file
        raise Failure(f"{what} is not a readable bento archive: {type(exc).__name__}: {exc}"[:600]) from exc
    if text is None:
        raise Failure(f"{what} is not a bento archive: it has no bento.yaml")
    name, version = _top_level(text, "name"), _top_level(text, "version")
    if not (name and version and _TAG_PART.match(name) and _TAG_PART.match(version)):
        raise Failure(f"{what}: its bento.yaml has no valid name/version")
    return f"{name}:{version}"


def store_path(tag: str) -> Path:
    name, version = tag.split(":", 1)
    return bentoml_home() / "bentos" / name / version


def in_store(tag: str) -> bool:
    return (store_path(tag) / "bento.yaml").is_file()


def import_archive(path: Path, tag: str) -> bool:
    """``bentoml import``; False when the bento is already in the store (a
    restarted pod whose emptyDir survived: bentoml would refuse it)."""
    if in_store(tag):
        print(f"bento {tag} is already in {bentoml_home()}: not importing again", flush=True)
        return False
    rc, tail = run([*bentoml_command(), "import", str(path)])
    if rc != 0:
        last = " | ".join(line for line in tail[-4:] if line.strip())
        raise Failure(f"bentoml import failed (exit {rc}): {last}"[:900])
    if not in_store(tag):
        raise Failure(f"bentoml import succeeded but {tag} is not in {bentoml_home() / 'bentos'}")
    return True


# -------------------------------------------------------------- builds


def _bentos() -> set[str]:
    root = bentoml_home() / "bentos"
    if not root.is_dir():
        return set()
    return {f"{n.name}:{v.name}" for n in root.iterdir() if n.is_dir() for v in n.iterdir() if v.is_dir()}


def build(project: Path) -> str:
    """``bentoml build`` in ``project``; returns the new bento's tag.

    Not ``--output tag``: it switches bentoml to quiet mode, which hides its
    progress and warnings from the build log. The tag comes from the
    "Successfully built" line, checked against the store (or, should that line
    change, from the one bento that appeared in the store)."""
    before = _bentos()
    rc, tail = run([*bentoml_command(), "build", "."], cwd=project)
    if rc != 0:
        raise CommandFailed(f"bentoml build failed (exit {rc}):", tail)
    found = [m.group(1) for line in tail if (m := _BUILT.search(line))]
    if found and in_store(found[-1]):
        return found[-1]
    new = sorted(_bentos() - before)
    if len(new) == 1:
        return new[0]
    raise CommandFailed("bentoml build succeeded but the new bento's tag could not be found:", tail)


def export(tag: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    rc, tail = run([*bentoml_command(), "export", tag, str(out)])
    if rc != 0 or not out.is_file():
        raise CommandFailed(f"bentoml export {tag} failed (exit {rc}):", tail)
