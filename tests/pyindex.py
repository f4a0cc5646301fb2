"""A private Python package index for the tests: wheels fetched once on the
host with ``pip download`` (cached under ~/.cache/kubento/wheels, keyed by
what was asked), served over HTTP(S) by the test itself as a PEP 503 simple
index, optionally behind basic auth and a private CA. Pods install from it;
nothing in the cluster reaches the public index.

    with pyindex.running(wheels(["scikit-learn==1.6.1"]), host="10.0.0.1", auth=("u", "p"), tls=True) as index:
        index.url        # https://10.0.0.1:PORT/simple
        index.ca_pem     # the private CA (PEM) that signed its certificate
        index.requests   # paths served (to check who installed what)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import http.server
import ipaddress
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

# The runtime image: CPython 3.11 on Debian bookworm (glibc 2.36), x86_64.
PLATFORM_ARGS = ["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_27_x86_64",
                 "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--implementation", "cp",
                 "--abi", "cp311", "--only-binary", ":all:"]


def cache_dir() -> Path:
    return Path(os.environ.get("KUBENTO_CACHE") or Path.home() / ".cache" / "kubento") / "wheels"


def wheels(requirements: list[str]) -> Path:
    """A directory holding wheels for ``requirements`` and their dependencies
    (downloaded once; later calls reuse it)."""
    key = hashlib.sha256("\n".join(sorted(requirements) + PLATFORM_ARGS).encode()).hexdigest()[:16]
    out = cache_dir() / key
    if (out / ".done").is_file():
        return out
    tmp = Path(f"{out}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
                           *PLATFORM_ARGS, "-d", str(tmp), *requirements], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"pip download {requirements} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    (tmp / ".done").write_text("\n".join(requirements) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(filename: str) -> str:
    return _normalize(filename.split("-", 1)[0])


@dataclass
class Index:
    url: str  # .../simple
    ca_pem: Optional[str] = None
    requests: list[str] = field(default_factory=list)

    def downloaded(self) -> list[str]:
        """Files (wheels, sdists) served so far."""
        return [p.rsplit("/", 1)[-1] for p in self.requests if p.startswith("/files/")]


def _handler(root: Path, index: Index, auth: Optional[tuple[str, str]]):
    files = {p.name: p for p in root.iterdir() if p.suffix == ".whl" or p.name.endswith(".tar.gz")}  # wheels, sdists
    digests = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in files.items()}
    projects: dict[str, list[str]] = {}
    for name in sorted(files):
        projects.setdefault(_project(name), []).append(name)
    expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, code: int, body: bytes, ctype: str = "text/html", extra: Optional[dict] = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if expected and self.headers.get("Authorization") != expected:
                self._send(401, b"unauthorized", extra={"WWW-Authenticate": 'Basic realm="kubento-test-index"'})
                return
            path = self.path.split("?", 1)[0]
            index.requests.append(path)
            if path.rstrip("/") == "/simple":
                links = "".join(f'<a href="/simple/{p}/">{p}</a>\n' for p in sorted(projects))
                self._send(200, f"<html><body>{links}</body></html>".encode())
                return
            m = re.fullmatch(r"/simple/([^/]+)/?", path)
            if m:
                names = projects.get(_normalize(m.group(1)))
                if not names:
                    self._send(404, b"not found")
                    return
                links = "".join(f'<a href="/files/{html.escape(n)}#sha256={digests[n]}">{html.escape(n)}</a>\n' for n in names)
                self._send(200, f"<html><body>{links}</body></html>".encode())
                return
            m = re.fullmatch(r"/files/([^/]+)", path)
            if m and m.group(1) in files:
                # as real indexes do: a file never changes (pip's HTTP cache keeps it)
                self._send(200, files[m.group(1)].read_bytes(), "application/octet-stream",
                           {"Cache-Control": "max-age=31536000, immutable"})
                return
            self._send(404, b"not found")

    return Handler


def _certificates(host: str, work: Path) -> tuple[Path, Path, str]:
    """A private CA and a server certificate for ``host`` signed by it (openssl)."""
    def ssl_cmd(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ca_key, ca_crt = work / "ca.key", work / "ca.crt"
    key, csr, crt = work / "server.key", work / "server.csr", work / "server.crt"
    ssl_cmd("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
            "-days", "2", "-subj", "/CN=kubento test CA")
    ssl_cmd("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={host}")
    try:
        ipaddress.ip_address(host)
        san = f"subjectAltName=IP:{host}"
    except ValueError:
        san = f"subjectAltName=DNS:{host}"
    ext = work / "san.ext"
    ext.write_text(san + "\n")
    ssl_cmd("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return crt, key, ca_crt.read_text()


@contextlib.contextmanager
def running(root: Path, host: str = "127.0.0.1", auth: Optional[tuple[str, str]] = None,
            tls: bool = False) -> Iterator[Index]:
    """Serve the wheels in ``root`` as a simple index until the block ends."""
    index = Index(url="")
    server = http.server.ThreadingHTTPServer((host, 0), _handler(root, index, auth))
    work = Path(tempfile.mkdtemp(prefix="kubento-index-"))
    scheme = "http"
    try:
        if tls:
            crt, key, index.ca_pem = _certificates(host, work)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(crt), str(key))
            server.socket = context.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        index.url = f"{scheme}://{host}:{server.server_address[1]}/simple"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield index
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(work, ignore_errors=True)
