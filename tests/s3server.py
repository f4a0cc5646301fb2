"""A real S3-compatible server for tests: moto's server mode, run as its own
process from its own virtualenv (moto needs boto3/botocore, whose
python-dateutil pin conflicts with the kubernetes client's, so it cannot live
in the project's .venv).

    with s3server.running() as s3:          # host 0.0.0.0, a free port
        s3.create_bucket("models")
        uri = s3.upload("models", "iris.bento", path)
        env = s3.env()                       # AWS_* for a working key pair
        bad = s3.env(credentials="wrong-key")  # rejected: InvalidAccessKeyId

Credentials are checked for real. moto accepts any key until its IAM
simulation is switched on (``INITIAL_NO_AUTH_ACTION_COUNT``, here set at run
time through ``POST /moto-api/reset-auth``, as moto's own
``set_initial_no_auth_action_count`` does in server mode). So ``start``
first creates, unauthenticated, an IAM user with an inline ``s3:*`` policy and
an access key (plain IAM query requests), then switches the check on: from
then on every request must be signed by that key: an unknown key gets
``InvalidAccessKeyId``, a wrong secret ``SignatureDoesNotMatch``, anonymous
requests ``AccessDenied``. ``auth=False`` keeps moto's accept-anything mode.

The virtualenv is ``${KUBENTO_CACHE:-~/.cache/kubento}/moto-venv``, made on
first use (``pip install 'moto[server]==5.2.5'``, ~45 s) under a file lock so
concurrent test sessions do not race. If it cannot be installed this raises:
tests that need S3 fail, they are never skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

MOTO_VERSION = "5.2.5"
REGION = "us-east-1"
WRONG_ACCESS_KEY = "AKIAKUBENTOWRONGKEY0"
WRONG_SECRET_KEY = "wrong-secret-wrong-secret-wrong-secret00"
# any request with a SigV4 Authorization header naming the "iam" service is
# routed to moto's IAM; the signature is not checked before auth is enabled
_IAM_AUTH = ("AWS4-HMAC-SHA256 Credential=AKIAKUBENTOSETUP0000/20250101/us-east-1/iam/aws4_request, "
             "SignedHeaders=host, Signature=0")


def cache_dir() -> Path:
    return Path(os.environ.get("KUBENTO_CACHE") or Path.home() / ".cache" / "kubento")


def ensure_moto() -> Path:
    """The moto_server executable of the cached venv, installing it first if
    needed. Raises RuntimeError (with pip's output) when that fails."""
    venv = cache_dir() / "moto-venv"
    marker = venv / f".installed-moto-{MOTO_VERSION}"
    server = venv / "bin" / "moto_server"
    if marker.exists() and server.exists():
        return server
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / "moto-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be installing: wait for it
        if marker.exists() and server.exists():
            return server
        shutil.rmtree(venv, ignore_errors=True)
        python = getattr(sys, "_base_executable", None) or sys.executable
        steps = [
            [python, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
             f"moto[server]=={MOTO_VERSION}"],
        ]
        for argv in steps:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise RuntimeError(
                    f"cannot install moto's server for the S3 tests: {' '.join(argv)} exited "
                    f"{proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
        if not server.exists():
            raise RuntimeError(f"moto installed but {server} is missing")
        marker.touch()
    return server


def free_port(host: str = "0.0.0.0") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    """A running moto server. ``endpoint`` is reachable from this machine;
    ``endpoint_for(ip)`` is the same server at another address (e.g. the
    node's bridge IP, for pods)."""

    host: str
    port: int
    process: subprocess.Popen
    log: Path
    auth: bool
    access_key: str = "AKIAKUBENTOTESTING00"
    secret_key: str = "kubento-testing-secret-anything-goes0000"
    wrong_access_key: str = WRONG_ACCESS_KEY
    wrong_secret_key: str = WRONG_SECRET_KEY
    region: str = REGION
    buckets: list[str] = field(default_factory=list)

    @property
    def local_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host

    @property
    def endpoint(self) -> str:
        return self.endpoint_for(self.local_host)

    def endpoint_for(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def env(self, credentials: str = "good", host: Optional[str] = None, region: bool = False) -> dict[str, str]:
        """AWS_* variables for the runtime (and for a Secret's stringData).
        credentials: good, wrong-key (unknown key id), wrong-secret (known
        key id, wrong secret) or none (anonymous)."""
        keys = {
            "good": (self.access_key, self.secret_key),
            "wrong-key": (self.wrong_access_key, self.wrong_secret_key),
            "wrong-secret": (self.access_key, self.wrong_secret_key),
            "none": None,
        }[credentials]
        env = {"AWS_ENDPOINT_URL": self.endpoint_for(host or self.local_host)}
        if keys:
            env.update(AWS_ACCESS_KEY_ID=keys[0], AWS_SECRET_ACCESS_KEY=keys[1])
        if region:
            env["AWS_REGION"] = self.region
        return env

    def client(self):
        from minio import Minio

        return Minio(f"{self.local_host}:{self.port}", access_key=self.access_key, secret_key=self.secret_key,
                     secure=False, region=self.region)

    def create_bucket(self, name: str) -> None:
        client = self.client()
        if not client.bucket_exists(name):
            client.make_bucket(name)
        self.buckets.append(name)

    def upload(self, bucket: str, key: str, path: Path | str) -> str:
        """Upload a file; returns its s3:// URI."""
        self.client().fput_object(bucket, key, str(path))
        return f"s3://{bucket}/{key}"

    def upload_bytes(self, bucket: str, key: str, data: bytes) -> str:
        import io

        self.client().put_object(bucket, key, io.BytesIO(data), len(data))
        return f"s3://{bucket}/{key}"

    def get(self, bucket: str, key: str) -> bytes:
        response = self.client().get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.unlink(missing_ok=True)


def _request(url: str, data: Optional[bytes] = None, headers: Optional[dict] = None, timeout: float = 10) -> bytes:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def _iam(endpoint: str, action: str, **params: str) -> str:
    body = urllib.parse.urlencode({"Action": action, "Version": "2010-05-08", **params}).encode()
    try:
        return _request(endpoint + "/", body, {
            "Authorization": _IAM_AUTH, "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        }).decode()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"moto IAM {action} failed: HTTP {exc.code}: {exc.read()[:500]!r}") from exc


def _enable_auth(server: S3Server) -> None:
    user = "kubento-test"
    _iam(server.endpoint, "CreateUser", UserName=user)
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}]}
    _iam(server.endpoint, "PutUserPolicy", UserName=user, PolicyName="s3-all", PolicyDocument=json.dumps(policy))
    answer = _iam(server.endpoint, "CreateAccessKey", UserName=user)
    key = re.search(r"<AccessKeyId>([^<]+)</AccessKeyId>", answer)
    secret = re.search(r"<SecretAccessKey>([^<]+)</SecretAccessKey>", answer)
    if not (key and secret):
        raise RuntimeError(f"moto CreateAccessKey: unexpected answer {answer[:500]}")
    server.access_key, server.secret_key = key.group(1), secret.group(1)
    # from now on, every request is authenticated and authorized
    _request(server.endpoint + "/moto-api/reset-auth", b"0", {"Content-Type": "text/plain"})


def start(host: str = "0.0.0.0", port: int = 0, auth: bool = True, timeout: float = 60) -> S3Server:
    """Start moto's server on host:port (port 0: a free one, retried if
    another process takes it first) and wait until it answers; with ``auth``,
    set up a key pair and make moto check it."""
    server_bin = ensure_moto()
    for attempt in range(3):
        try:
            server = _start(server_bin, host, port or free_port(host), timeout)
            break
        except _PortTaken:
            if port or attempt == 2:
                raise
    server.auth = auth
    if auth:
        try:
            _enable_auth(server)
        except BaseException:
            server.stop()
            raise
    return server


class _PortTaken(RuntimeError):
    pass


def _start(server_bin: Path, host: str, port: int, timeout: float) -> S3Server:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"kubento-moto-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(MOTO_PORT=str(port), PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        process = subprocess.Popen([str(server_bin), "-H", host, "-p", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
    server = S3Server(host=host, port=port, process=process, log=log, auth=False)
    deadline = time.monotonic() + timeout
    # werkzeug prints "Running on" once it has bound the port: until then an
    # answer could come from another server that has it
    while b"Running on" not in log.read_bytes() or not _answers(server.endpoint):
        if process.poll() is not None:
            output = log.read_text()[-2000:]
            log.unlink(missing_ok=True)
            error = _PortTaken if "Address already in use" in output else RuntimeError
            raise error(f"moto_server exited {process.returncode}: {output}")
        if time.monotonic() > deadline:
            output = log.read_text()[-2000:]
            server.stop()
            raise RuntimeError(f"moto_server did not answer on {server.endpoint} in {timeout}s: {output}")
        time.sleep(0.2)
    return server


def _answers(endpoint: str) -> bool:
    try:
        _request(endpoint + "/moto-api/data.json", timeout=2)
        return True
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running(host: str = "0.0.0.0", port: int = 0, auth: bool = True) -> Iterator[S3Server]:
    server = start(host, port, auth)
    try:
        yield server
    finally:
        server.stop()
