"""A bento's own Python packages: prepared once into a relocatable directory,
packed, stored beside the bento, unpacked by each model pod.

Preparing one (a build Job after ``bentoml export``, or the environment
Job of an archive) reads the bento's requirements (env/python/requirements.txt:
locked when the bentofile asks for it) and its Python version, and:

- refuses a bento made for another Python version than the runtime image's;
- does nothing when the runtime image already satisfies every requirement
  (bentoml itself is one): such a bento costs nothing extra;
- otherwise resolves the requirements against the runtime image's installed
  packages with the runtime's own pip (``pip install --dry-run --report``:
  packages the runtime has at a fitting version are not installed again),
  downloads exactly the resolved set, installs it from the downloads alone
  into a directory (``pip install --no-index --target --no-deps``), packs it
  as a gzip'd tar and stores it at <store>/envs/<key>.tar.gz with <key>.json
  beside it (written last: its presence means the archive is complete). The
  key hashes the requirements, the runtime's Python (implementation, version,
  platform, libc), the runtime's installed packages and the index settings:
  any model whose bento has the same dependency set finds the environment
  there and reuses it.

These are separate steps (plan, download, install, store: see "the steps"
below), so that the index credentials and the store credentials are never
in a process that runs a package's own code.

``unpack`` (the model pod's init container) fetches the archive, checks its
SHA-256 and unpacks it into KUBENTO_ENV_DIR; the server runs with
``KUBENTO_ENV_DIR/site-packages`` first on PYTHONPATH, so the bento's
packages shadow the runtime's where both have one.

Index settings (the operator sets them; none is a credential):
  KUBENTO_INDEX           JSON {"url", "extraUrls", "onlyBinary"} (all optional)
  KUBENTO_INDEX_CA        path of a CA bundle file for the index (a mounted ConfigMap)
  KUBENTO_INDEX_USERNAME, KUBENTO_INDEX_PASSWORD   basic auth (from a Secret) for the
                          index URL's host: the download step's only; pip gets them in a
                          netrc file of that step's own, never on its command line; never printed
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import sysconfig
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, urlsplit

from kubento.runtime import Failure, work_dir

ENV_DIR_DEFAULT = "/var/lib/kubento/env"
SITE = "site-packages"
MARKER = ".kubento-environment.json"
ARCHIVE_SUFFIX = ".tar.gz"
COMPRESS_LEVEL = 6  # gzip: in the stdlib on both sides (no zstd before Python 3.14); ~3 s to unpack 200 MB
_NOT_FOUND = re.compile(r"No matching distribution found for ([^\s;]+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement ([^\s;]+)")
_PYTHON_VERSION = re.compile(r"^\s*python_version:\s*['\"]?([0-9]+\.[0-9]+)", re.MULTILINE)

# Reasons a failed preparation starts its message with ("Reason: text"); the
# operator turns the first word into the condition's reason.
REASONS = ("PackageNotFound", "PythonVersionMismatch", "EnvironmentFailed", "EnvironmentStoreMissing",
           "BentoFetchFailed")


def env_dir() -> Path:
    return Path(os.environ.get("KUBENTO_ENV_DIR") or ENV_DIR_DEFAULT)


# ----------------------------------------------------------------- reading


def requirement_lines(text: str) -> tuple[list[str], list[str]]:
    """(requirements, ignored option lines) of a requirements.txt: comments
    and blank lines dropped, options (--index-url, --find-links, ...) set
    aside — the package index settings come from the ModelDeployment."""
    reqs, options = [], []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        (options if line.startswith("-") else reqs).append(line)
    return reqs, options


def bento_python(bento_yaml: str) -> Optional[str]:
    """The Python version (major.minor) a bento was built for (bento.yaml's
    image.python_version, or docker.python_version in older bentos)."""
    m = _PYTHON_VERSION.search(bento_yaml or "")
    return m.group(1) if m else None


def runtime_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def check_python(wanted: Optional[str], image: str = "") -> None:
    have = runtime_python()
    if wanted and wanted != have:
        raise Failure(
            f"PythonVersionMismatch: the bento was built for Python {wanted} but the runtime image"
            f"{' ' + image if image else ''} has Python {have}; serve it with a runtime image of Python {wanted} "
            f"(spec.runtimeImage), or build the bento for Python {have}")


# ----------------------------------------------------------------- the key


def runtime_fingerprint() -> str:
    """Hash of the runtime's installed distributions (name==version): an
    environment resolved against one runtime image is not reused on another."""
    from importlib import metadata

    seen = sorted({f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in metadata.distributions()})
    return hashlib.sha256("\n".join(seen).encode()).hexdigest()[:16]


def key_of(requirements: list[str], python: str, platform_tag: str, runtime: str, index: dict[str, Any]) -> str:
    """The environment's key: same inputs, same environment (pure)."""
    wanted = {
        "requirements": sorted({" ".join(r.split()) for r in requirements}),
        "python": python,
        "platform": platform_tag,
        "runtime": runtime,
        "index": {"url": index.get("url") or "", "extraUrls": list(index.get("extraUrls") or []),
                  "onlyBinary": bool(index.get("onlyBinary"))},
    }
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]


def local_key(requirements: list[str], index: dict[str, Any]) -> str:
    libc = "-".join(x for x in platform.libc_ver() if x)
    python = f"{sys.implementation.name}-{runtime_python()}"
    return key_of(requirements, python, f"{sysconfig.get_platform()}-{libc}", runtime_fingerprint(), index)


_SIMPLE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(?:==\s*([A-Za-z0-9.+!_-]+))?$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def unsatisfied(requirements: list[str]) -> list[str]:
    """The requirements the runtime's installed packages do not obviously
    satisfy. Only ``name``, ``name==version`` (what bentoml writes, locked or
    not) and their extras are judged here, with the standard library; any
    other form (ranges, markers, URLs) counts as unsatisfied and pip decides."""
    from importlib import metadata

    installed = {_normal(d.metadata["Name"] or ""): d.version for d in metadata.distributions()}
    out = []
    for line in requirements:
        m = _SIMPLE.match(line.strip())
        have = installed.get(_normal(m.group(1))) if m else None
        if have is None or (m.group(3) and m.group(3) != have) or m.group(2):
            out.append(line)  # extras may pull in more: pip decides
    return out


# ------------------------------------------------------------------- index


@dataclass
class Index:
    url: str = ""
    extra_urls: tuple[str, ...] = ()
    only_binary: bool = False
    ca: str = ""  # path of a CA bundle
    username: str = ""
    password: str = ""

    @classmethod
    def from_env(cls, credentials: bool = False) -> "Index":
        """The index settings (every step may have them: they are no
        secret); with ``credentials``, its user name and password too (the
        download step's, the only one the operator gives them to)."""
        raw = os.environ.get("KUBENTO_INDEX", "").strip()
        try:
            settings = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise Failure(f"EnvironmentFailed: KUBENTO_INDEX is not JSON: {exc}") from exc
        index = cls(url=settings.get("url") or "", extra_urls=tuple(settings.get("extraUrls") or ()),
                    only_binary=bool(settings.get("onlyBinary")), ca=os.environ.get("KUBENTO_INDEX_CA", ""))
        if credentials:
            index.username = os.environ.get("KUBENTO_INDEX_USERNAME", "")
            index.password = os.environ.get("KUBENTO_INDEX_PASSWORD", "")
        return index

    def settings(self) -> dict[str, Any]:
        """What the key depends on (no credentials, no CA: they do not change what is installed)."""
        return {"url": self.url, "extraUrls": list(self.extra_urls), "onlyBinary": self.only_binary}

    def pip_args(self) -> list[str]:
        """pip's index options: never a credential (pip reads those from
        the netrc file of ``netrc_text``, not from its command line, where
        a package's build code could read them in /proc/<pid>/cmdline)."""
        args = []
        if self.url:
            args += ["--index-url", self.url]
        for extra in self.extra_urls:
            args += ["--extra-index-url", extra]
        for plain in sorted({urlsplit(u).netloc.rpartition("@")[2] for u in (self.url, *self.extra_urls)
                             if u and urlsplit(u).scheme == "http"}):
            # An http:// index the user named is meant: pip ignores one unless its host is trusted.
            args += ["--trusted-host", plain]
        if self.ca:
            # pip's default TLS (truststore) refuses index hosts given as IP
            # addresses; with a CA of its own it needs no system store.
            args += ["--cert", self.ca, "--use-deprecated", "legacy-certs"]
        if self.only_binary:
            args += ["--only-binary", ":all:"]
        return args

    def netrc_text(self) -> str:
        """The credentials as a netrc entry for the index URL's host: pip
        sends them to that host only (the index and extra URLs on it), as
        Basic authentication. Empty without credentials or URL."""
        host = urlsplit(self.url).hostname if self.url else None
        if not (self.username or self.password) or not host:
            return ""

        def token(value: str) -> str:  # Python's netrc reads quoted tokens with backslash escapes
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

        return f"machine {host}\nlogin {token(self.username)}\npassword {token(self.password)}\n"

    def secrets(self) -> list[str]:
        """Values never to show in a log line."""
        if not self.password or len(self.password) < 3:  # the user name is not a secret
            return []
        return [self.password, quote(self.password, safe="")]

    def describe(self) -> str:
        return self.url or "the default index (pypi.org)"


# ------------------------------------------------------------------- store


def store_uris(store: str, key: str) -> tuple[str, str]:
    base = store.rstrip("/")
    return f"{base}/envs/{key}{ARCHIVE_SUFFIX}", f"{base}/envs/{key}.json"


def _read_small(uri: str) -> Optional[bytes]:
    """The object at ``uri`` (s3 or pvc), or None when it does not exist."""
    from kubento.runtime import storage

    loc = storage.parse(uri)
    if loc.scheme == "pvc":
        path = storage.local_path(loc)
        return path.read_bytes() if path.is_file() else None
    if loc.scheme != "s3":
        raise Failure(f"EnvironmentStoreMissing: environments are stored on s3:// or pvc://, not {loc.scheme}://")
    from minio.error import S3Error

    client, endpoint = storage.s3_client()
    response = None
    try:
        response = client.get_object(loc.host, loc.path)
        return response.read()
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            return None
        raise Failure(f"EnvironmentFailed: cannot look for the environment at {uri}: {exc.code} {exc.message}") from exc
    finally:
        if response is not None:
            response.close()
            response.release_conn()


def _put_bytes(data: bytes, uri: str) -> None:
    from kubento.runtime import storage

    with tempfile.NamedTemporaryFile(dir=work_dir(), delete=False) as f:
        f.write(data)
    try:
        storage.put(Path(f.name), uri, secret_field=os.environ.get("KUBENTO_SECRET_FIELD") or None)
    finally:
        os.unlink(f.name)


# ------------------------------------------------------------------ the steps
#
# An environment is prepared in four steps, each a container of its own with
# only the credentials it needs (kubento.runtime.__main__ runs them):
#   plan      (store credentials)  what the bento needs; found in the store?
#   download  (index credentials)  pip resolves against the runtime and downloads
#   install   (none)               pip installs from the downloads only, builds sdists
#   store     (store credentials)  pack and upload
# Only the download step holds the index credentials, and pip reads them from
# a netrc file of that step's own (never its command line). pip still runs a
# source distribution's build backend there to read its metadata: with
# onlyBinary (--only-binary :all:) no package code runs in it at all.


def plan(requirements_text: str, bento_yaml: str, store: str, index: Index, image: str = "") -> dict[str, Any]:
    """What a bento's environment needs: ``{"state": "none"|"found"|"needed",
    ...}``; "found" reads the store (its credentials)."""
    start = time.monotonic()
    python = bento_python(bento_yaml)
    check_python(python, image)
    requirements, options = requirement_lines(requirements_text)
    if options:
        print(f"ignoring the bento's pip options {options}: the index is spec.python.index's", flush=True)
    local = [r for r in requirements if r.startswith((".", "/")) or "wheels/" in r]
    if local:
        raise Failure(f"EnvironmentFailed: local wheels (bentofile python.wheels) are not supported: {local[:3]}")
    extra = unsatisfied(requirements)
    base = {"python": runtime_python(), "requirements": len(requirements)}
    if not extra:
        print(f"the runtime image satisfies all {len(requirements)} requirement(s): no environment needed", flush=True)
        return {"state": "none", "result": {**base, "packages": 0}}
    print(f"not in the runtime image: {' '.join(extra)}", flush=True)
    if not store:
        raise Failure("EnvironmentStoreMissing: the bento needs packages the runtime image lacks "
                      f"({', '.join(extra[:5])}) and there is no store for its environment: serve the archive from "
                      "s3:// or pvc:// (the environment is kept beside it), or (http(s)://, oci://) set "
                      "spec.runtimeImage to an image that has them (FROM the runtime image + pip install)")
    key = local_key(requirements, index.settings())
    uri, meta_uri = store_uris(store, key)
    found = _read_small(meta_uri)
    if found is not None:
        result = json.loads(found)
        print(f"environment {key} is already in the store ({uri}): reusing it", flush=True)
        return {"state": "found", "result": {**result, "reused": True, "seconds": round(time.monotonic() - start, 1)}}
    print(f"environment {key} is not in the store yet: preparing it", flush=True)
    return {"state": "needed", "key": key, "requirements": requirements, "base": base}


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _pip_failure(rc: int, tail: list[str], index: Index, what: str) -> Failure:
    text = "\n".join(tail)
    missing = _NOT_FOUND.findall(text) or _NO_VERSION.findall(text)
    if missing:
        head = (f"PackageNotFound: {missing[-1]} is not on {index.describe()} "
                f"(no matching distribution{' among binary wheels: onlyBinary is set' if index.only_binary else ''}); "
                "pip's log ends:")
    else:
        head = f"EnvironmentFailed: pip could not {what} the bento's requirements (exit {rc}); pip's log ends:"
    from kubento.runtime.bento import CommandFailed

    return CommandFailed(head, tail[-25:])


def _run_pip(args: list[str], index: Index, what: str, netrc: str, cwd: Optional[Path] = None) -> None:
    from kubento.runtime import bento

    # pip gets only the settings given here: no PIP_* from the image, no
    # requests/curl CA variable (they override --cert), and the credentials
    # (if any) from the netrc file named by NETRC (/dev/null: none, not even
    # a ~/.netrc of the image).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and not (index.ca and k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"))}
    rc, tail = bento.run(args, cwd=cwd, env={**env, "PIP_NO_WARN_SCRIPT_LOCATION": "1", "NETRC": netrc},
                         redact=index.secrets())
    if rc != 0:
        raise _pip_failure(rc, tail, index, what)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _build_requirements(sdist: Path) -> list[str]:
    """What building ``sdist`` needs (its pyproject.toml's build-system.requires;
    setuptools without one), plus wheel for setuptools (older ones ask for it)."""
    import tomllib
    import zipfile

    text = None
    try:
        if sdist.suffix == ".zip":
            with zipfile.ZipFile(sdist) as z:
                name = next((n for n in z.namelist() if n.count("/") == 1 and n.endswith("/pyproject.toml")), None)
                text = z.read(name).decode() if name else None
        else:
            with tarfile.open(sdist) as t:
                member = next((m for m in t.getmembers()
                               if m.name.count("/") == 1 and m.name.endswith("/pyproject.toml") and m.isfile()), None)
                f = t.extractfile(member) if member else None
                text = f.read().decode() if f else None
        requires = (tomllib.loads(text).get("build-system") or {}).get("requires") if text else None
    except (OSError, ValueError, tarfile.TarError, zipfile.BadZipFile, tomllib.TOMLDecodeError):
        requires = None
    reqs = list(requires) if isinstance(requires, list) else ["setuptools>=40.8.0"]
    if any(_normal(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]) == "setuptools" for r in reqs):
        reqs.append("wheel")
    return reqs


def download(requirements: list[str], index: Index, wheelhouse: Path) -> list[str]:
    """Resolve ``requirements`` against the runtime's packages and download
    what it lacks (and what building its source distributions needs) into
    ``wheelhouse``, with the index credentials in a netrc file of this step's
    own, deleted afterwards; returns name==version of what is to be installed."""
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(wheelhouse, ignore_errors=True)
    wheelhouse.mkdir(parents=True)
    # Private to this step (the container's own /tmp, never a shared volume):
    # the netrc and pip's cache, and pip's working directory.
    private = Path(tempfile.mkdtemp(prefix="kubento-download-"))
    try:
        netrc = "/dev/null"
        text = index.netrc_text()
        if text:
            netrc = str(private / "netrc")
            fd = os.open(netrc, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        pip = _pip() + ["--cache-dir", str(private / "cache")]
        reqs = private / "requirements.txt"
        reqs.write_text("\n".join(requirements) + "\n")
        report = private / "pip-report.json"
        print(f"resolving {len(requirements)} requirement(s) against the runtime's packages on {index.describe()}",
              flush=True)
        _run_pip(pip + ["install", "--dry-run", "--quiet", "--report", str(report), *index.pip_args(), "-r", str(reqs)],
                 index, "resolve", netrc, cwd=private)
        resolved = json.loads(report.read_text()).get("install") or []
        pins = sorted({f"{item['metadata']['name']}=={item['metadata']['version']}" for item in resolved})
        if not pins:
            return []
        pinned = private / "pinned.txt"
        pinned.write_text("\n".join(pins) + "\n")
        print(f"downloading {len(pins)} package(s): {' '.join(pins)}", flush=True)
        _run_pip(pip + ["download", "--no-deps", "--quiet", "-d", str(wheelhouse), *index.pip_args(), "-r", str(pinned)],
                 index, "download", netrc, cwd=private)
        sdists = sorted(p for p in wheelhouse.iterdir() if p.suffix != ".whl")
        if sdists:
            build = sorted({r for s in sdists for r in _build_requirements(s)})
            print(f"source distributions {' '.join(s.name for s in sdists)}: downloading what building them needs "
                  f"({' '.join(build)})", flush=True)
            _run_pip(pip + ["download", "--quiet", "-d", str(wheelhouse), *index.pip_args(), *build],
                     index, "download the build requirements of", netrc, cwd=private)
        return pins
    finally:
        shutil.rmtree(private, ignore_errors=True)


def install(pins: list[str], index: Index, wheelhouse: Path, dest: Path) -> None:
    """Install exactly ``pins`` from ``wheelhouse`` alone (no index, no
    credentials: source distributions are built here) into dest/site-packages."""
    work = work_dir()
    print(f"installing {len(pins)} package(s): {' '.join(pins)}", flush=True)
    shutil.rmtree(dest, ignore_errors=True)
    (dest / SITE).mkdir(parents=True)
    pinned = work / "pinned.txt"
    pinned.write_text("\n".join(pins) + "\n")
    offline = Index(only_binary=index.only_binary)
    _run_pip(_pip() + ["--cache-dir", str(work / "pip-cache"), "install", "--no-deps", "--no-warn-conflicts",
                       "--no-index", "--find-links", str(wheelhouse), "--target", str(dest / SITE),
                       *offline.pip_args(), "-r", str(pinned)], index, "install", "/dev/null")


def pack(src: Path, out: Path) -> None:
    with tarfile.open(out, "w:gz", compresslevel=COMPRESS_LEVEL) as tar:
        for child in sorted(src.iterdir()):
            tar.add(child, arcname=child.name)


def store(archive: Path, store_uri: str, key: str, base: dict[str, Any], packages: int, unpacked: int,
          started: float) -> dict[str, Any]:
    """Upload the packed environment and, last, its description (its
    presence means the archive is complete)."""
    from kubento.runtime import storage

    uri, meta_uri = store_uris(store_uri, key)
    digest = storage.sha256_file(archive)
    size = archive.stat().st_size
    storage.put(archive, uri, sha256=digest, secret_field=os.environ.get("KUBENTO_SECRET_FIELD") or None)
    result = {**base, "hash": key, "uri": uri, "sha256": digest, "size": size, "unpacked": unpacked,
              "packages": packages, "seconds": round(time.time() - started, 1)}
    _put_bytes(json.dumps(result, sort_keys=True).encode(), meta_uri)
    print(f"environment {key}: {packages} package(s), {storage.human(size)} at {uri}", flush=True)
    return {**result, "reused": False}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The part of a preparation's result the operator keeps (termination
    messages are capped at 4 KiB: no package list)."""
    keep = ("hash", "uri", "sha256", "size", "unpacked", "packages", "python", "reused", "seconds")
    return {k: result[k] for k in keep if result.get(k) is not None}


# ------------------------------------------------------------------ reading a bento


def read_bento_store(tag: str) -> tuple[str, str]:
    """(requirements.txt, bento.yaml) of a bento in BENTOML_HOME."""
    from kubento.runtime.bento import store_path

    root = store_path(tag)
    reqs = root / "env" / "python" / "requirements.txt"
    return (reqs.read_text() if reqs.is_file() else ""), (root / "bento.yaml").read_text()


def read_bento_archive(path: Path, what: str) -> tuple[str, str]:
    """(requirements.txt, bento.yaml) of an exported archive, read from its
    tar stream (env/ comes before models/: no need to read the models)."""
    import posixpath

    wanted = {"bento.yaml": "", "env/python/requirements.txt": ""}
    found = set()
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                name = posixpath.normpath(member.name)
                if name in wanted and member.isfile():
                    f = tar.extractfile(member)
                    wanted[name] = f.read().decode() if f else ""
                    found.add(name)
                    if len(found) == len(wanted):
                        break
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise Failure(f"{what} is not a readable bento archive: {type(exc).__name__}: {exc}"[:600]) from exc
    if "bento.yaml" not in found:
        raise Failure(f"{what} is not a bento archive: it has no bento.yaml")
    return wanted["env/python/requirements.txt"], wanted["bento.yaml"]


# ------------------------------------------------------------------- unpack


def unpack(uri: str, sha256: Optional[str], dest: Path, secret_field: Optional[str]) -> None:
    """Fetch the environment archive, check it, unpack it into dest."""
    from kubento.runtime import storage

    start = time.monotonic()
    marker = dest / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("uri") == uri:
        print(f"environment {uri} is already unpacked in {dest}", flush=True)
        return
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    got = storage.fetch(uri, work / "env.download", secret_field=secret_field)
    try:
        if sha256 and got.sha256 != sha256:
            raise Failure(f"sha256 mismatch for the environment {uri}: expected {sha256}, got {got.sha256} "
                          "(the object was replaced)")
        dest.mkdir(parents=True, exist_ok=True)
        for child in dest.iterdir():  # a half-unpacked earlier attempt
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        t0 = time.monotonic()
        with tarfile.open(got.path, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # pragma: no cover - Pythons without extraction filters
                for member in tar.getmembers():
                    if member.name.startswith(("/", "..")) or ".." in Path(member.name).parts:
                        raise Failure(f"the environment {uri} has an unsafe path: {member.name}")
                tar.extractall(dest)
        marker.write_text(json.dumps({"uri": uri, "sha256": got.sha256}))
        print(f"environment: {storage.human(got.size)} from {uri} unpacked into {dest} in "
              f"{time.monotonic() - t0:.1f}s ({time.monotonic() - start:.1f}s in all)", flush=True)
    finally:
        if got.downloaded:
            got.path.unlink(missing_ok=True)
