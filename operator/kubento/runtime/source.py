"""A build's project files, copied into the writable work dir: from a mounted
directory (a ConfigMap or PVC volume) or from git.

The copy matters: a ConfigMap volume is read-only and made of symlinks into
hidden ``..data``/``..<timestamp>`` directories, and a PVC may be shared or
read-only; ``bentoml build`` gets a plain directory of regular files. The copy
never follows a symlink out of the project (it is copied as a link), and a
PVC path with ``..`` is refused.

Git goes through dulwich, a git implementation in Python (the runtime image
has no git binary: Debian's pulls in perl and curl, ~100 MB): http(s) and
git:// URLs, credentials from GIT_USERNAME/GIT_PASSWORD (sent as an
Authorization header to the repository's host only, never printed), a
shallow fetch of the one commit wanted when the server allows it. The
checkout has no ``.git`` directory: the repository is fetched next to it and
removed afterwards, so the bento never includes git's objects.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

import urllib3
from dulwich.client import GitClient, HTTPProxyUnauthorized, HTTPUnauthorized, default_urllib3_manager, \
    get_transport_and_path_from_url
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.index import build_index_from_tree
from dulwich.object_store import iter_tree_contents
from dulwich.objects import S_ISGITLINK, Commit, Tag
from dulwich.repo import Repo

from kubento.runtime import Failure, pvc_root
from kubento.runtime.storage import TIMEOUT, describe_network_error, human


def project_dir(src: Path) -> Path:
    """The project directory to copy, checked: no ``..`` in the path, and a
    directory in a PVC (under KUBENTO_PVC_ROOT/<claim>) resolves inside that
    claim's volume (a symlink on the volume cannot point the build elsewhere)."""
    if ".." in src.parts:
        raise Failure(f"project directory {src}: '..' is not allowed in the path")
    root = pvc_root()
    if src.is_relative_to(root) and len(src.relative_to(root).parts) >= 1:
        claim = root / src.relative_to(root).parts[0]
        real = Path(os.path.realpath(src))
        if not real.is_relative_to(os.path.realpath(claim)):
            raise Failure(f"project directory {src} resolves to {real}, outside the volume of pvc "
                          f"{claim.name}: refused")
    return src


def copy_tree(src: Path, dest: Path) -> int:
    """Copy the project ``src`` into ``dest``, skipping entries whose name
    starts with ``..`` (a ConfigMap volume's internals). A symlink that
    resolves inside the project is copied as what it points to (a ConfigMap
    volume's keys are such links); one that points outside the project is
    copied as a link, never followed. Returns the number of files copied."""
    if not src.is_dir():
        raise Failure(f"project directory {src} does not exist (or is not a directory)")
    top = Path(os.path.realpath(src))
    count = 0
    seen: set[str] = set()

    def inside(path: Path) -> bool:
        return Path(os.path.realpath(path)).is_relative_to(top)

    def keep_link(path: Path, target: Path) -> None:
        os.symlink(os.readlink(path), target)
        print(f"source: {path.relative_to(src)} is a symlink out of the project ({os.readlink(path)}): "
              "copied as a link, not followed", flush=True)

    for root, dirs, files in os.walk(src, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop
            dirs[:] = []
            continue
        seen.add(real)
        rel = Path(root).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        walked = []
        for name in sorted(d for d in dirs if not d.startswith("..")):
            path = Path(root) / name
            if path.is_symlink() and not inside(path):
                keep_link(path, dest / rel / name)
            else:
                walked.append(name)
        dirs[:] = walked
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".."):
                continue
            if path.is_symlink() and not inside(path):
                keep_link(path, dest / rel / name)
                continue
            if not path.is_file():  # dangling links, sockets...
                continue
            shutil.copyfile(path, dest / rel / name)
            count += 1
    if count == 0:
        raise Failure(f"project directory {src} has no files")
    return count


# ---------------------------------------------------------------------- git

GIT_SCHEMES = ("http", "https", "git")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_SHORT_SHA = re.compile(r"^[0-9a-f]{4,39}$")
_PEELED = b"^{}"
# what talking to a git server raises (dulwich's errors; sockets' for git://)
_GIT_ERRORS = (GitProtocolError, NotGitRepository, HTTPUnauthorized, HTTPProxyUnauthorized, OSError)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _check_url(url: str, shown: str) -> str:
    """The URL's scheme, if it is one this build can fetch from."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("ssh", "git+ssh", "ssh+git") or (not scheme and re.match(r"^[^/\s]+:", url)):
        raise Failure(f"git: cannot fetch {shown}: ssh is not supported (the build has no ssh client or keys); "
                      "use the repository's https:// URL, with git.secretRef for a private one")
    if scheme not in GIT_SCHEMES:
        raise Failure(f"git: cannot fetch {shown}: unsupported URL (use https://, http:// or git://)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as exc:
        raise Failure(f"git: cannot fetch {shown}: invalid URL ({exc})") from exc
    if not parts.hostname:
        raise Failure(f"git: cannot fetch {shown}: no host in the URL")
    return scheme


def _client(url: str, scheme: str) -> tuple[GitClient, str]:
    username = os.environ.get("GIT_USERNAME") or None
    password = os.environ.get("GIT_PASSWORD") or None
    if scheme == "git" or not (username or password):
        username = password = None  # (credentials in the URL itself still count)
    elif username is None:
        username = "git"  # a token alone: most servers take any user name with it
    pool = None
    if scheme in ("http", "https"):
        # dulwich's pool (https_proxy/no_proxy honoured, certificates checked
        # against the system's CAs or SSL_CERT_FILE), with connect/read timeouts
        pool = default_urllib3_manager(None, base_url=url, timeout=TIMEOUT)
        pool.headers["User-agent"] = "git/dulwich (kubento-runtime)"
    # config=None: no ~/.gitconfig, credential helpers or url rewrites of the image
    return get_transport_and_path_from_url(url, config=None, username=username, password=password,
                                           pool_manager=pool)


def _explain(exc: BaseException, shown: str) -> str:
    """What went wrong talking to the git server, in a few words."""
    endpoint = _endpoint(shown)
    authenticated = bool(os.environ.get("GIT_USERNAME") or os.environ.get("GIT_PASSWORD")) or "@" in urlsplit(
        shown).netloc
    if isinstance(exc, HTTPUnauthorized):
        if authenticated:
            return ("authentication failed (HTTP 401): check username and password in the Secret named in "
                    "git.secretRef")
        return ("authentication needed (HTTP 401): set git.secretRef to a Secret with username and password "
                "(or a token as password)")
    if isinstance(exc, HTTPProxyUnauthorized):
        return "the HTTP proxy wants credentials (HTTP 407)"
    if isinstance(exc, NotGitRepository):
        hint = " (or the credentials in git.secretRef cannot see it)" if authenticated else \
            " (a private repository may answer so too: set git.secretRef)"
        return f"repository not found{hint}: check git.url"
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, GitProtocolError) and isinstance(cause, urllib3.exceptions.HTTPError):
        return describe_network_error(cause, endpoint)
    if isinstance(exc, OSError):  # git://: the socket's own errors
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused (endpoint {endpoint})"
        if isinstance(exc, socket.gaierror):
            return f"host not found (endpoint {endpoint})"
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return f"timed out (endpoint {endpoint})"
        return f"{exc.strerror or exc} (endpoint {endpoint})"
    text = " ".join(str(exc).split())
    m = re.search(r"unexpected http resp (\d+)", text)
    if m:
        status = int(m.group(1))
        if status == 403:
            return "access denied (HTTP 403): check the credentials in git.secretRef and their rights on the repository"
        return f"the server answered HTTP {status}"
    if isinstance(exc, HangupException):
        return f"the server hung up{': ' + text if text and 'hung up' not in text else ''}"
    return f"{type(exc).__name__}: {text}"[:400]


def _endpoint(shown: str) -> str:
    parts = urlsplit(shown)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _resolve(refs: dict[bytes, bytes], ref: str) -> Optional[bytes]:
    """The object a ref name points to, in git's order: HEAD, a full ref
    name, refs/<ref>, refs/tags/<ref>, refs/heads/<ref>; or a full commit id
    one of the refs points to."""
    name = ref.encode()
    candidates = [name] if ref == "HEAD" or ref.startswith("refs/") else \
        [b"refs/" + name, b"refs/tags/" + name, b"refs/heads/" + name]
    for candidate in candidates:
        if refs.get(candidate):
            return refs[candidate]
    if _FULL_SHA.match(ref) and name in refs.values():
        return name
    return None


def _names(refs: dict[bytes, bytes], prefix: bytes, limit: int = 15) -> str:
    names = sorted(k[len(prefix):].decode(errors="replace") for k in refs
                   if k.startswith(prefix) and not k.endswith(_PEELED))
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class _Progress:
    """Progress of the fetch (the server's and dulwich's), complete lines
    only (not every \\r step)."""

    def __init__(self) -> None:
        self.buffer = b""

    def __call__(self, data: bytes) -> None:
        self.buffer += data
        while True:
            cut = [i for i in (self.buffer.find(b"\n"), self.buffer.find(b"\r")) if i >= 0]
            if not cut:
                break
            i = min(cut)
            line, sep, self.buffer = self.buffer[:i], self.buffer[i:i + 1], self.buffer[i + 1:]
            if sep == b"\n" and line.strip():
                print(f"git: {line.decode(errors='replace').strip()}", flush=True)


def _fetch(client: GitClient, path: str, repo: Repo, wants: list[bytes], depth: Optional[int]) -> None:
    def determine_wants(refs: object, depth: object = None) -> list[bytes]:
        return [w for w in wants if w not in repo.object_store]

    client.fetch(path, repo, determine_wants=determine_wants, progress=_Progress(), depth=depth)


def _fetch_all(client: GitClient, path: str, repo: Repo, refs: dict[bytes, bytes], ref: str, shown: str) -> bytes:
    """Every branch and tag with their whole history; then ``ref`` (a commit
    id, maybe abbreviated) must be among the objects."""
    wants = sorted({v for k, v in refs.items() if not k.endswith(_PEELED)})
    try:
        _fetch(client, path, repo, wants, depth=None)
    except _GIT_ERRORS as exc:
        raise Failure(f"git: cannot fetch {shown}: {_explain(exc, shown)}") from exc
    target = _resolve(refs, ref)
    if target is not None:
        return target
    found = [s for s in repo.object_store.iter_prefix(ref.encode()) if isinstance(repo[s], (Commit, Tag))]
    if len(found) != 1:
        what = "is ambiguous" if found else "not found"
        raise Failure(f"git: commit {ref} {what} in {shown} (it is on no branch or tag there; "
                      f"branches: {_names(refs, b'refs/heads/')}; tags: {_names(refs, b'refs/tags/')})")
    return found[0]


def _peel(repo: Repo, sha: bytes, what: str) -> Commit:
    obj = repo[sha]
    while isinstance(obj, Tag):
        obj = repo[obj.object[1]]
    if not isinstance(obj, Commit):
        raise Failure(f"git: {what} is a {obj.type_name.decode()}, not a commit")
    return obj


def clone(url: str, ref: str, subpath: str, dest: Path) -> Path:
    """Fetch ``ref`` (a branch, tag, full ref name or commit id; HEAD: the
    default branch) of ``url`` — shallow when the server allows it — and
    check its files out into ``dest``; returns the project directory
    ``dest/subpath``."""
    shown = _redact(url)
    ref = ref.strip() or "HEAD"
    scheme = _check_url(url, shown)
    prefix = f"git: cannot fetch {shown}"
    gitdir = dest.parent / (dest.name + ".git")
    shutil.rmtree(gitdir, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    gitdir.mkdir(parents=True)
    start = time.monotonic()
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT.read_timeout)  # git:// sockets (http has urllib3's timeouts)
    repo = Repo.init_bare(str(gitdir))
    try:
        print(f"git: fetching {shown} at {ref}", flush=True)
        try:
            client, path = _client(url, scheme)
            refs = {k: v for k, v in client.get_refs(path.encode()).refs.items() if v}
        except _GIT_ERRORS as exc:
            raise Failure(f"{prefix}: {_explain(exc, shown)}") from exc
        if not refs:
            raise Failure(f"{prefix}: the repository is empty (no branches or tags)")
        target = _resolve(refs, ref)
        if target is None and not (_FULL_SHA.match(ref) or _SHORT_SHA.match(ref)):
            raise Failure(f"git: ref {ref} not found in {shown} (branches: {_names(refs, b'refs/heads/')}; "
                          f"tags: {_names(refs, b'refs/tags/')})")
        if target is None and _FULL_SHA.match(ref):
            target = ref.encode()  # a commit no ref points to is asked for by its id: most servers allow it
        if target is None:  # an abbreviated commit id
            print(f"git: {ref} is an abbreviated commit id: fetching all branches and tags", flush=True)
            fetched, target = "full", _fetch_all(client, path, repo, refs, ref, shown)
        else:
            fetched = "shallow"
            try:
                _fetch(client, path, repo, [target], depth=1)
            except (GitProtocolError, HangupException) as exc:
                if isinstance(exc.__cause__, urllib3.exceptions.HTTPError):
                    raise Failure(f"{prefix}: {_explain(exc, shown)}") from exc
                # the server does not send a commit by its id, or has no shallow fetches
                print(f"git: shallow fetch of {ref} refused ({_explain(exc, shown)}); "
                      "fetching all branches and tags", flush=True)
                fetched, target = "full", _fetch_all(client, path, repo, refs, ref, shown)
            except _GIT_ERRORS as exc:
                raise Failure(f"{prefix}: {_explain(exc, shown)}") from exc
        if target not in repo.object_store:
            raise Failure(f"git: the server did not send {ref} ({target.decode()}) of {shown}")
        commit = _peel(repo, target, f"{ref} of {shown}")
        seconds = time.monotonic() - start
        print(f"git: {shown} {ref} is commit {commit.id.decode()} ({fetched} fetch, "
              f"{human(_disk_size(gitdir))} in {seconds:.1f}s)", flush=True)
        files = _checkout(repo, commit, dest)
        print(f"git: checked out {files} file(s)", flush=True)
    finally:
        repo.close()
        socket.setdefaulttimeout(old_timeout)
        shutil.rmtree(gitdir, ignore_errors=True)
    project = (dest / subpath).resolve()
    if not project.is_relative_to(dest.resolve()) or not project.is_dir():
        raise Failure(f"git: {subpath} is not a directory in {shown} at {ref}")
    return project


def _checkout(repo: Repo, commit: Commit, dest: Path) -> int:
    """Write the commit's files to ``dest`` (dulwich refuses paths with .git
    or .. in them); submodules stay empty directories."""
    count = 0
    for entry in iter_tree_contents(repo.object_store, commit.tree):
        if entry.mode is not None and S_ISGITLINK(entry.mode):
            print(f"git: {entry.path.decode(errors='replace')} is a submodule: not fetched", flush=True)
        else:
            count += 1
    try:
        build_index_from_tree(str(dest), str(dest.parent / (dest.name + ".git") / "index"), repo.object_store,
                              commit.tree)
    except (OSError, ValueError) as exc:
        raise Failure(f"git: cannot check out commit {commit.id.decode()}: {exc}") from exc
    return count


def _disk_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
