"""A real git server for tests: dulwich's smart-HTTP server (dulwich.web, the
protocol git's http-backend speaks) in a thread, over repositories made with
dulwich too (no git binary needed).

    repo = gitserver.Repository.create(tmp / "repo.git")     # bare
    first = repo.commit({"sub/service.py": "..."}, "v1")      # -> commit id
    repo.tag("v1", first); repo.branch("release", first)
    with gitserver.serving({"/project.git": repo.path}, host="127.0.0.1",
                           credentials=("user", "secret")) as base:
        url = f"{base}/project.git"           # anonymous
        private = f"{base}/private/project.git"  # wants Basic user:secret, else 401

The server answers as dulwich does: a want of a commit no ref points to gets
HTTP 500 (git's own server says "not our ref"), so a client must fall back to
fetching the refs.
"""

from __future__ import annotations

import base64
import contextlib
import socketserver
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional
from wsgiref.simple_server import make_server

from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import WSGIRequestHandlerLogger, WSGIServerLogger, make_wsgi_chain

IDENTITY = b"kubento tests <tests@kubento.invalid>"


@dataclass
class Repository:
    """A bare repository that tests add commits to, file by file."""

    path: Path

    @classmethod
    def create(cls, path: Path, branch: str = "main") -> "Repository":
        path.mkdir(parents=True)
        with Repo.init_bare(str(path)) as repo:
            repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/" + branch.encode())
        return cls(path)

    def commit(self, files: dict[str, bytes | str], message: str, branch: Optional[str] = None) -> str:
        """A commit whose tree is exactly ``files`` (path -> content; a path
        ending in ``@`` is a symlink to the content), on ``branch`` (default:
        HEAD's branch), its parent the branch's tip. Returns its id."""
        with Repo(str(self.path)) as repo:
            ref = b"refs/heads/" + branch.encode() if branch else repo.refs.get_symrefs()[b"HEAD"]
            parent = repo.refs[ref] if ref in repo.refs else None
            tree = self._tree(repo, files)
            c = Commit()
            c.tree = tree
            c.parents = [parent] if parent else []
            c.author = c.committer = IDENTITY
            c.author_time = c.commit_time = int(time.time())
            c.author_timezone = c.commit_timezone = 0
            c.message = message.encode() + b"\n"
            repo.object_store.add_object(c)
            repo.refs[ref] = c.id
            return c.id.decode()

    @staticmethod
    def _tree(repo: Repo, files: dict[str, bytes | str]) -> bytes:
        nested: dict = {}
        for path, content in files.items():
            parts = path.split("/")
            node = nested
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = content.encode() if isinstance(content, str) else content

        def write(node: dict) -> bytes:
            tree = Tree()
            for name, value in node.items():
                if isinstance(value, dict):
                    tree.add(name.encode(), stat.S_IFDIR, write(value))
                    continue
                mode = 0o100644
                if name.endswith("@"):
                    name, mode = name[:-1], stat.S_IFLNK
                blob = Blob.from_string(value)
                repo.object_store.add_object(blob)
                tree.add(name.encode(), mode, blob.id)
            repo.object_store.add_object(tree)
            return tree.id

        return write(nested)

    def branch(self, name: str, commit: str) -> None:
        with Repo(str(self.path)) as repo:
            repo.refs[b"refs/heads/" + name.encode()] = commit.encode()

    def tag(self, name: str, commit: str, annotated: bool = True) -> None:
        with Repo(str(self.path)) as repo:
            target = commit.encode()
            if annotated:
                t = Tag()
                t.name = name.encode()
                t.object = (Commit, commit.encode())
                t.tagger = IDENTITY
                t.tag_time = int(time.time())
                t.tag_timezone = 0
                t.message = f"{name}\n".encode()
                repo.object_store.add_object(t)
                target = t.id
            repo.refs[b"refs/tags/" + name.encode()] = target


def project_files(directory: Path, prefix: str = "") -> dict[str, bytes]:
    """A directory's files as ``commit`` wants them, under ``prefix/``."""
    return {(f"{prefix}/" if prefix else "") + str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


class _Server(socketserver.ThreadingMixIn, WSGIServerLogger):
    daemon_threads = True
    allow_reuse_address = True


class _Quiet(WSGIRequestHandlerLogger):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _basic_auth(app, credentials: tuple[str, str], prefix: str = "/private/"):
    """Requests under ``prefix`` want HTTP Basic ``credentials`` (401
    otherwise); the prefix is then dropped."""
    expected = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()

    def wrapped(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(prefix):
            if environ.get("HTTP_AUTHORIZATION") != expected:
                start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="kubento-tests"'),
                                                    ("Content-Type", "text/plain")])
                return [b"authentication required\n"]
            environ = dict(environ, PATH_INFO=path[len(prefix) - 1:])
        return app(environ, start_response)

    return wrapped


@contextlib.contextmanager
def serving(repos: dict[str, Path], host: str = "127.0.0.1", port: int = 0,
            credentials: Optional[tuple[str, str]] = None) -> Iterator[str]:
    """Serve ``repos`` (URL path -> repository) over smart HTTP; yields the
    base URL. With ``credentials``, /private/<path> serves the same
    repositories behind HTTP Basic authentication."""
    opened = {path: Repo(str(repo)) for path, repo in repos.items()}
    app = make_wsgi_chain(DictBackend(opened))
    if credentials:
        app = _basic_auth(app, credentials)
    server = make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="git-http", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        for repo in opened.values():
            repo.close()
