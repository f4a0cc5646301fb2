"""A real OCI registry for the tests: CNCF Distribution, built from its Go
module by hack/registry.sh (cached), started on a free port with storage in
a temporary directory; optionally with htpasswd users (Basic auth) and TLS
from a private CA made here with openssl. Used by the runtime tier
(tests/runtime/test_oci.py) and the e2e tier (the pods pull bentos from it).

Nothing skips: no Go, no openssl or a registry that does not start fails.
"""

from __future__ import annotations

import base64
import contextlib
import crypt
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "ml-engineer", "kubento-registry-pw-3c1e"


def binary() -> str:
    proc = subprocess.run([str(ROOT / "hack" / "registry.sh")], capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise AssertionError(f"hack/registry.sh failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_ca(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key): a private CA and a certificate for ``host`` it signs."""
    def openssl(*args: str) -> None:
        proc = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"openssl {' '.join(args)}: {proc.stderr}")

    directory.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kubento test CA",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", "server.key", "-out", "server.csr")
    san = f"subjectAltName=IP:{host}" if host.replace(".", "").isdigit() else f"subjectAltName=DNS:{host}"
    (directory / "ext.cnf").write_text(san + "\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "ext.cnf", "-out", "server.crt")
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


@dataclass
class Registry:
    host: str  # host:port
    root: Path
    ca: Optional[Path]  # with TLS: the CA that signs its certificate
    auth: bool

    @property
    def plain_http(self) -> bool:
        return self.ca is None

    @property
    def url(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.host}"

    def docker_config(self, path: Path, user: str = USER, password: str = PASSWORD) -> Path:
        """A Docker config file with credentials for this registry (what docker login writes)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        path.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        return path

    def dockerconfigjson(self, user: str = USER, password: str = PASSWORD) -> str:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return json.dumps({"auths": {self.host: {"username": user, "password": password, "auth": token}}})

    def env(self) -> dict[str, str]:
        """kubento's settings for it (the CLI and the runtime read the same variables)."""
        out = {}
        if self.ca:
            out["KUBENTO_OCI_CA"] = str(self.ca)
        if self.plain_http:
            out["KUBENTO_OCI_PLAIN_HTTP"] = "1"
        return out

    def request(self, path: str, method: str = "GET", headers: Optional[dict[str, str]] = None,
                data: Optional[bytes] = None) -> tuple[int, dict[str, str], bytes]:
        """A raw request (tests push a container image or read a manifest with it)."""
        headers = dict(headers or {})
        if self.auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        context = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None
        req = urllib.request.Request(self.url + path, method=method, headers=headers, data=data)
        try:
            with urllib.request.urlopen(req, timeout=30, context=context) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def push_blob(self, repo: str, data: bytes) -> str:
        import hashlib

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, _ = self.request(f"/v2/{repo}/blobs/uploads/", "POST")
        assert status == 202, status
        location = headers["Location"]
        location = location if location.startswith("http") else self.url + location
        sep = "&" if "?" in location else "?"
        status, _, body = self.request(location[len(self.url):] + f"{sep}digest={digest}", "PUT",
                                       {"Content-Type": "application/octet-stream"}, data)
        assert status == 201, (status, body)
        return digest

    def push_manifest(self, repo: str, tag: str, manifest: dict, media_type: str) -> str:
        data = json.dumps(manifest).encode()
        status, headers, body = self.request(f"/v2/{repo}/manifests/{tag}", "PUT", {"Content-Type": media_type}, data)
        assert status == 201, (status, body)
        return headers["Docker-Content-Digest"]

    def push_image(self, repo: str, tag: str) -> str:
        """A (tiny) container image manifest: what a bento is not."""
        config = self.push_blob(repo, b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
        layer = self.push_blob(repo, b"not really a layer")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 79},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 18}]}
        return self.push_manifest(repo, tag, manifest, "application/vnd.oci.image.manifest.v1+json")

    def push_artifact(self, repo: str, tag: str, artifact_type: str = "application/vnd.example.model.v1") -> str:
        """An OCI artifact of another kind (e.g. a Helm chart, a model file pushed with oras)."""
        empty = self.push_blob(repo, b"{}")
        layer = self.push_blob(repo, b"weights")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "artifactType": artifact_type,
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
                    "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": 7}]}
        return self.push_manifest(repo, tag, manifest, "application/vnd.oci.image.manifest.v1+json")


@contextlib.contextmanager
def running(tmp: Path, host: str = "127.0.0.1", auth: bool = False, tls: bool = False) -> Iterator[Registry]:
    """A Distribution registry on ``host``:<free port>."""
    exe = binary()
    port = free_port(host)
    tmp.mkdir(parents=True, exist_ok=True)
    config: dict = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"{host}:{port}"},
    }
    ca = None
    if tls:
        ca, cert, key = make_ca(tmp / "tls", host)
        config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
    if auth:
        # bcrypt at cost 4: Distribution checks it on every request of a Basic-auth client
        hashed = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        (tmp / "htpasswd").write_text(f"{USER}:{hashed}\n")
        config["auth"] = {"htpasswd": {"realm": "kubento-test", "path": str(tmp / "htpasswd")}}
    (tmp / "config.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
    log = open(tmp / "registry.log", "w")
    proc = subprocess.Popen([exe, "serve", str(tmp / "config.yml")], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"})
    registry = Registry(f"{host}:{port}", tmp, ca, auth)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the registry exited: {(tmp / 'registry.log').read_text()[-2000:]}")
            try:
                status, _, _ = registry.request("/v2/")
                if status in (200, 401):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the registry did not answer: {(tmp / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield registry
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(tmp / "data", ignore_errors=True)
