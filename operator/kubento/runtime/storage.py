"""Getting archives from, and putting them to, s3://, http(s)://, pvc:// and
local paths, with progress lines and failure messages a user can act on.

S3 goes through minio's client (it speaks S3 to AWS and to compatible stores,
and has no botocore, whose python-dateutil pin conflicts with the kubernetes
client's). Credentials and settings come from the standard AWS_* variables,
which the operator fills from the user's Secret; without a key the requests
are anonymous. Timeouts and retries are short on purpose: a wrong URI should
become a condition on the ModelDeployment within seconds, not minutes.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Optional
from urllib.parse import unquote, urlsplit

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from kubento.runtime import Failure, pvc_root

CHUNK = 1 << 20
# connect: 5 s per attempt, 4 attempts with backoff 0.5/1/2 s -> a dead
# endpoint fails in ~25 s at worst (refused connections in ~4 s)
TIMEOUT = urllib3.Timeout(connect=5.0, read=60.0)


def _retries() -> urllib3.Retry:
    return urllib3.Retry(
        total=4, connect=3, read=1, redirect=5, status=2, backoff_factor=0.5,
        status_forcelist=[500, 502, 503, 504], raise_on_status=False, raise_on_redirect=False,
    )


# --------------------------------------------------------------------- URIs


@dataclass(frozen=True)
class Location:
    """A parsed archive location. ``host`` is the bucket (s3), the claim (pvc)
    or the host (http); ``path`` the key, the path in the volume, or the URL
    path; for a plain local path scheme is "file" and ``path`` the path."""

    uri: str
    scheme: str
    host: str
    path: str

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


def parse(uri: str, allow_local: bool = False) -> Location:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise Failure(f"invalid URI {uri}: no host")
        return Location(uri, scheme, parts.netloc, parts.path)
    if scheme in ("s3", "pvc"):
        if not parts.netloc:
            raise Failure(f"invalid URI {uri}: no {'bucket' if scheme == 's3' else 'claim'} name")
        path = unquote(parts.path).lstrip("/")
        if scheme == "pvc" and ".." in path.split("/"):
            raise Failure(f"invalid URI {uri}: '..' is not allowed in a pvc path")
        return Location(uri, scheme, parts.netloc, path)
    if scheme == "oci":
        from kubento.runtime import oci

        ref = oci.parse(uri)
        return Location(uri, "oci", ref.registry, ref.repository)
    if allow_local and (not scheme or scheme == "file" or len(scheme) == 1):  # (a Windows drive letter)
        return Location(uri, "file", "", parts.path if scheme == "file" else uri)
    raise Failure(f"unsupported URI {uri}: use s3://bucket/key, http(s)://host/path, pvc://claim/path "
                  "or oci://registry/repository:tag")


def local_path(loc: Location) -> Path:
    """Where a pvc:// (or local) location is in this container's filesystem."""
    if loc.scheme == "pvc":
        return pvc_root() / loc.host / loc.path
    return Path(loc.path)


# ----------------------------------------------------------------- progress


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


class Progress:
    """Progress lines on stdout, at most one every ``every`` seconds."""

    def __init__(self, verb: str, what: str, total: Optional[int], every: float = 5.0, out=None) -> None:
        self.verb, self.what, self.total, self.every = verb, what, total, every
        self.out = out or sys.stdout
        self.done = 0
        self.start = self.last = time.monotonic()
        size = human(total) if total is not None else "unknown size"
        self._print(f"{verb} {what} ({size})")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def rate(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        return f"{self.done / elapsed / 1e6:.1f} MB/s"

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            self._print(f"  {human(self.done)}{pct}, {self.rate()}")

    def finish(self) -> float:
        seconds = time.monotonic() - self.start
        past = {"downloading": "downloaded", "uploading": "uploaded", "copying": "copied", "reading": "read"}
        self._print(f"{past.get(self.verb, self.verb)} {human(self.done)} in {seconds:.1f}s ({self.rate()})")
        return seconds


def sha256_file(path: Path, progress: Optional[Progress] = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if progress:
                progress.update(len(chunk))
    return h.hexdigest()


class _CountingReader:
    """A file wrapper that reports what is read (minio's put_object reads it)."""

    def __init__(self, f: BinaryIO, progress: Progress) -> None:
        self.f, self.progress = f, progress

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.progress.update(len(data))
        return data


# ---------------------------------------------------------------- errors


def _credentials_hint(secret_field: Optional[str]) -> str:
    """What to check; ``secret_field`` names the spec field of the Secret
    (None: the caller's own environment, for the kubento CLI)."""
    where = f"the ModelDeployment's {secret_field} Secret" if secret_field else "your environment"
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        return ("no credentials were given (anonymous request): "
                f"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in {where}")
    return (f"check the credentials in {where} (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; "
            "without AWS_REGION the key also needs s3:GetBucketLocation)")


_S3_HINTS: dict[str, str] = {
    "NoSuchKey": "the object does not exist",
    "NoSuchBucket": "the bucket does not exist",
    "ResourceNotFound": "the object does not exist",
    "PermanentRedirect": "the bucket is in another region: set AWS_REGION in the Secret",
    "AuthorizationHeaderMalformed": "wrong region: set AWS_REGION in the Secret to the bucket's region",
    "IllegalLocationConstraintException": "wrong region: set AWS_REGION in the Secret to the bucket's region",
}
_S3_CREDENTIAL_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
    "InvalidClientTokenId", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem",
}


def describe_network_error(exc: BaseException, endpoint: str) -> str:
    """urllib3's errors (minio raises them too) in a few words, naming the
    endpoint: connection refused, host not found, timed out, TLS."""
    reason = getattr(exc, "reason", None) or exc
    text = f"{type(reason).__name__}: {reason}"
    lowered = text.lower()
    if "connection refused" in lowered:
        what = "connection refused"
    elif isinstance(reason, urllib3.exceptions.NameResolutionError) or "name or service not known" in lowered \
            or "temporary failure in name resolution" in lowered or "nodename nor servname" in lowered:
        what = "host not found"
    elif isinstance(reason, (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError)) \
            or "timed out" in lowered:
        what = "timed out"
    elif isinstance(reason, urllib3.exceptions.SSLError) or "certificate" in lowered:
        what = f"TLS error ({text[:200]})"
    elif "network is unreachable" in lowered or "no route to host" in lowered:
        what = "network unreachable"
    else:
        what = text[:300]
    return f"{what} (endpoint {endpoint})"


def _describe_s3_error(exc: BaseException, endpoint: str, secret_field: Optional[str]) -> str:
    if isinstance(exc, S3Error):
        if exc.code in _S3_CREDENTIAL_CODES:
            return f"{exc.code} — {_credentials_hint(secret_field)}"
        hint = _S3_HINTS.get(exc.code or "")
        return f"{exc.code} — {hint}" if hint else f"{exc.code}: {exc.message}"
    if isinstance(exc, ServerError):
        return f"the S3 server answered HTTP {exc.status_code} (endpoint {endpoint})"
    if isinstance(exc, InvalidResponseError):
        status = getattr(exc, "_code", None)
        if status in (401, 403):
            return f"HTTP {status} (access denied) — {_credentials_hint(secret_field)}"
        if status == 404:
            return "HTTP 404 — the bucket or object does not exist"
        return f"not an S3 answer ({str(exc)[:200]}): is {endpoint} an S3 endpoint?"
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return describe_network_error(exc, endpoint)
    return f"{type(exc).__name__}: {exc}"[:400]


# ------------------------------------------------------------------ S3


def s3_endpoint(endpoint_url: Optional[str] = None) -> tuple[str, bool, str]:
    """(host[:port], secure, URL) from --endpoint-url, AWS_ENDPOINT_URL or AWS."""
    url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if not url:
        return "s3.amazonaws.com", True, "https://s3.amazonaws.com"
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise Failure(f"invalid AWS_ENDPOINT_URL {url}: want http(s)://host[:port]")
    return parts.netloc, parts.scheme == "https", f"{parts.scheme}://{parts.netloc}"


def _pool() -> urllib3.PoolManager:
    ca = os.environ.get("AWS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if not ca:
        try:
            import certifi  # minio's own dependency

            ca = certifi.where()
        except ImportError:  # pragma: no cover
            ca = None
    return urllib3.PoolManager(
        timeout=TIMEOUT, retries=_retries(), maxsize=10, cert_reqs="CERT_REQUIRED", ca_certs=ca,
    )


def s3_client(endpoint_url: Optional[str] = None) -> tuple[Minio, str]:
    """A minio client from the AWS_* environment, and the endpoint's URL."""
    host, secure, url = s3_endpoint(endpoint_url)
    access = os.environ.get("AWS_ACCESS_KEY_ID") or None
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY") or None
    if access and not secret:
        raise Failure("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    client = Minio(host, access_key=access, secret_key=secret if access else None,
                   session_token=(os.environ.get("AWS_SESSION_TOKEN") or None) if access else None,
                   secure=secure, region=region, http_client=_pool())
    return client, url


# ------------------------------------------------------------------ get


@dataclass
class Fetched:
    path: Path  # the local file
    sha256: str
    size: int
    seconds: float
    downloaded: bool  # False: a file in a volume, read in place (do not delete it)
    pinned: Optional[str] = None  # oci://: the URI with the manifest's digest it resolved to


def _write_stream(chunks: Iterable[bytes], dest: Path, progress: Progress, prefix: str) -> str:
    """Write the download, hashing it on the way; a partial file is removed."""
    h = hashlib.sha256()
    try:
        with open(dest, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                h.update(chunk)
                progress.update(len(chunk))
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise Failure(f"{prefix}: cannot write {dest}: {exc.strerror or exc} (is the work volume big enough?)") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return h.hexdigest()


def fetch(uri: str, dest: Path, secret_field: Optional[str] = "archive.secretRef") -> Fetched:
    """Download ``uri`` to ``dest`` (s3, http, oci), or hash a pvc file in place.
    Raises Failure with a message that names the cause."""
    loc = parse(uri)
    prefix = f"cannot fetch {uri}"
    if loc.scheme == "oci":
        from kubento.runtime import oci

        start = time.monotonic()
        made: list[Progress] = []

        def progress(verb: str, total: Optional[int]) -> Progress:
            made.append(Progress(verb, uri, total))
            return made[-1]

        pulled = oci.fetch(uri, dest, _write_stream, progress)
        seconds = made[-1].finish() if made else time.monotonic() - start
        return Fetched(dest, pulled.sha256, pulled.size, seconds, downloaded=True, pinned=pulled.pinned)
    if loc.scheme == "pvc":
        path = local_path(loc)
        if not path.is_file():
            claim_dir = pvc_root() / loc.host
            if not claim_dir.is_dir():
                raise Failure(f"{prefix}: pvc {loc.host} is not mounted at {claim_dir}")
            what = "is a directory, not a file" if path.is_dir() else "does not exist"
            raise Failure(f"pvc path {path} {what}")
        try:
            progress = Progress("reading", str(path), path.stat().st_size)
            digest = sha256_file(path, progress)
        except OSError as exc:
            raise Failure(f"{prefix}: cannot read {path}: {exc.strerror or exc}") from exc
        return Fetched(path, digest, progress.done, progress.finish(), downloaded=False)

    dest.parent.mkdir(parents=True, exist_ok=True)
    if loc.scheme == "s3":
        if not loc.path:
            raise Failure(f"invalid URI {uri}: no object key after the bucket name")
        client, endpoint = s3_client()
        response = None
        try:
            response = client.get_object(loc.host, loc.path)
            size = response.headers.get("content-length")
            progress = Progress("downloading", uri, int(size) if size else None)
            digest = _write_stream(response.stream(CHUNK), dest, progress, prefix)
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise Failure(f"{prefix}: {_describe_s3_error(exc, endpoint, secret_field)}") from exc
        finally:
            if response is not None:
                response.close()
                response.release_conn()
        return Fetched(dest, digest, progress.done, progress.finish(), downloaded=True)

    headers = {"User-Agent": "kubento-runtime"}
    if os.environ.get("HTTP_AUTHORIZATION"):
        headers["Authorization"] = os.environ["HTTP_AUTHORIZATION"]
    endpoint = f"{loc.scheme}://{loc.host}"
    try:
        response = _pool().request("GET", uri, headers=headers, preload_content=False)
    except urllib3.exceptions.HTTPError as exc:
        raise Failure(f"{prefix}: {describe_network_error(exc, endpoint)}") from exc
    try:
        if response.status != 200:
            hint = {401: " — set HTTP_AUTHORIZATION in archive.secretRef's Secret",
                    403: " — check HTTP_AUTHORIZATION in archive.secretRef's Secret",
                    404: " — nothing at this URL"}.get(response.status, "")
            raise Failure(f"{prefix}: HTTP {response.status} {response.reason or ''}".rstrip() + hint)
        size = response.headers.get("content-length")
        progress = Progress("downloading", uri, int(size) if size else None)
        digest = _write_stream(response.stream(CHUNK), dest, progress, prefix)
    except urllib3.exceptions.HTTPError as exc:
        raise Failure(f"{prefix}: {describe_network_error(exc, endpoint)}") from exc
    finally:
        response.release_conn()
    return Fetched(dest, digest, progress.done, progress.finish(), downloaded=True)


# ------------------------------------------------------------------ put


def put(path: Path, uri: str, endpoint_url: Optional[str] = None,
        secret_field: Optional[str] = "build.output.secretRef", sha256: Optional[str] = None) -> str:
    """Upload (s3) or copy (pvc, local path) the file to exactly ``uri``; a
    pvc/local destination appears atomically (temporary file, then rename).
    Returns the URI written. Creates no bucket: it must exist."""
    loc = parse(uri, allow_local=True)
    size = path.stat().st_size
    prefix = f"upload to {uri} failed"
    if loc.scheme == "s3":
        if not loc.path or loc.path.endswith("/"):
            raise Failure(f"{prefix}: no object key (want s3://bucket/key)")
        client, endpoint = s3_client(endpoint_url)
        progress = Progress("uploading", f"{path.name} to {uri}", size)
        try:
            with open(path, "rb") as f:
                client.put_object(
                    loc.host, loc.path, _CountingReader(f, progress), size,
                    content_type="application/octet-stream",
                    metadata={"sha256": sha256} if sha256 else None,
                    part_size=64 << 20,
                )
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                raise Failure(f"{prefix}: NoSuchBucket — bucket {loc.host} does not exist (create it first)") from exc
            raise Failure(f"{prefix}: {_describe_s3_error(exc, endpoint, secret_field)}") from exc
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise Failure(f"{prefix}: {_describe_s3_error(exc, endpoint, secret_field)}") from exc
        progress.finish()
        return uri
    if loc.scheme not in ("pvc", "file"):
        raise Failure(f"{prefix}: cannot upload to {loc.scheme}:// (use s3:// or pvc://)")
    dest = local_path(loc)
    if loc.scheme == "pvc" and not (pvc_root() / loc.host).is_dir():
        raise Failure(f"{prefix}: pvc {loc.host} is not mounted at {pvc_root() / loc.host}")
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    progress = Progress("copying", f"{path.name} to {dest}", size)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as src, open(tmp, "wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                progress.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise Failure(f"{prefix}: {exc.strerror or exc} ({exc.filename or dest})") from exc
    progress.finish()
    return uri

