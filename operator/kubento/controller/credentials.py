"""Where the operator's API server is and who it is there: in a pod, its
ServiceAccount; elsewhere, the kubeconfig's current context.

The typed Kubernetes client's loader is not used: importing it loads the
whole client (1,000+ modules, ~50 MB of the operator's resident memory).
What is read here is what a kubeconfig holds for the operator's use: the
server, its CA (file, data, or insecure-skip-tls-verify), and a bearer token
(inline, tokenFile, or an exec plugin's ExecCredential), client certificate
and key (files or data), or basic auth. Inline data goes to private
temporary files, as the typed client does (the ssl module loads files). Paths
in a kubeconfig are relative to that file. An exec plugin's token is renewed
before it expires; a client certificate it gives is loaded once, at start.
"""

from __future__ import annotations

import atexit
import base64
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0  # a projected ServiceAccount token is rotated in place by the kubelet


class CredentialsError(Exception):
    """No usable credentials (no kubeconfig, an unknown context, an exec plugin that failed)."""


@dataclass
class Credentials:
    server: str
    ca_file: Optional[str] = None
    insecure: bool = False
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = None
    token: Optional[str] = None
    token_file: Optional[str] = None  # read again every TOKEN_REREAD_SECONDS
    exec_plugin: Optional[dict[str, Any]] = None  # the kubeconfig's user.exec
    _fresh_until: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def authorization(self) -> Optional[str]:
        """The Authorization header's value now (a file's or a plugin's token, renewed when due)."""
        if self.token_file or self.exec_plugin:
            with self._lock:
                if time.monotonic() >= self._fresh_until:
                    self._renew()
        if self.token:
            return f"Bearer {self.token}"
        if self.username is not None and self.password is not None:
            return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return None

    def expire(self) -> None:
        """Read the token again at the next request (the API server answered 401)."""
        self._fresh_until = 0.0

    def _renew(self) -> None:
        if self.token_file:
            self.token = Path(self.token_file).read_text().strip()
            self._fresh_until = time.monotonic() + TOKEN_REREAD_SECONDS
            return
        assert self.exec_plugin is not None
        self.token, self.cert_file, self.key_file, self._fresh_until = _run_exec_plugin(self.exec_plugin, self.server)


def load() -> Credentials:
    """In-cluster credentials when running in a pod, else the kubeconfig
    (``$KUBECONFIG``, its first file, or ~/.kube/config; the current context)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (SERVICE_ACCOUNT / "token").exists():
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:
            host = f"[{host}]"
        return Credentials(server=f"https://{host}:{port}", ca_file=str(SERVICE_ACCOUNT / "ca.crt"),
                           token_file=str(SERVICE_ACCOUNT / "token"))
    path = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    return from_kubeconfig(Path(path))


def from_kubeconfig(path: Path, context: Optional[str] = None) -> Credentials:
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise CredentialsError(f"no kubeconfig at {path}: {exc.strerror}") from None
    name = context or config.get("current-context")
    if not name:
        raise CredentialsError(f"{path} sets no current-context")

    def named(section: str, key: str, wanted: Optional[str]) -> dict[str, Any]:
        for item in config.get(section) or []:
            if item.get("name") == wanted:
                return item.get(key) or {}
        raise CredentialsError(f"{path}: no {key} named {wanted!r} (context {name!r})")

    ctx = named("contexts", "context", name)
    cluster = named("clusters", "cluster", ctx.get("cluster"))
    user = named("users", "user", ctx.get("user")) if ctx.get("user") else {}
    base = path.resolve().parent

    def file_of(key: str, where: dict[str, Any]) -> Optional[str]:
        if where.get(f"{key}-data"):
            return _private_file(base64.b64decode(where[f"{key}-data"]))
        if where.get(key):
            return str(base / os.path.expanduser(where[key]))
        return None

    if not cluster.get("server"):
        raise CredentialsError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    if user.get("auth-provider"):
        raise CredentialsError(f"{path}: user {ctx.get('user')!r} uses an auth-provider (removed from kubectl in "
                               "1.26); use an exec plugin or a token")
    return Credentials(
        server=cluster["server"].rstrip("/"),
        ca_file=file_of("certificate-authority", cluster),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert_file=file_of("client-certificate", user),
        key_file=file_of("client-key", user),
        username=user.get("username"),
        password=user.get("password"),
        token=user.get("token"),
        token_file=str(base / user["tokenFile"]) if user.get("tokenFile") and not user.get("token") else None,
        exec_plugin=user.get("exec"),
    )


def _run_exec_plugin(spec: dict[str, Any], server: str) -> tuple[Optional[str], Optional[str], Optional[str], float]:
    """Run a client-go credential plugin (ExecCredential); (token, cert file,
    key file, renew at) — renewed a minute before it expires, or in 5 minutes
    when it does not say."""
    request = {"apiVersion": spec.get("apiVersion", "client.authentication.k8s.io/v1"), "kind": "ExecCredential",
               "spec": {"interactive": False, **({"cluster": {"server": server}} if spec.get("provideClusterInfo") else {})}}
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []},
           "KUBERNETES_EXEC_INFO": json.dumps(request)}
    try:
        proc = subprocess.run([spec["command"], *(spec.get("args") or [])], env=env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CredentialsError(f"the kubeconfig's exec plugin {spec.get('command')!r} did not run: {exc}") from None
    if proc.returncode != 0:
        raise CredentialsError(f"the kubeconfig's exec plugin {spec['command']!r} failed: {proc.stderr.strip()[-500:]}")
    status = (json.loads(proc.stdout) or {}).get("status") or {}
    cert = _private_file(status["clientCertificateData"].encode()) if status.get("clientCertificateData") else None
    key = _private_file(status["clientKeyData"].encode()) if status.get("clientKeyData") else None
    renew_at = time.monotonic() + 300.0
    if status.get("expirationTimestamp"):
        expires = datetime.datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00"))
        left = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        renew_at = time.monotonic() + max(0.0, left - 60.0)
    return status.get("token"), cert, key, renew_at


_DIR: Optional[str] = None


def _private_file(data: bytes) -> str:
    """A file only this user can read, removed at exit."""
    global _DIR
    if _DIR is None:
        _DIR = tempfile.mkdtemp(prefix="kubento-credentials-")
        atexit.register(shutil.rmtree, _DIR, True)
    fd, name = tempfile.mkstemp(dir=_DIR)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return name
