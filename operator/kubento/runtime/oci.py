"""Bentos in OCI registries: ``oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]``.

A bento is stored as an OCI artifact (the way ORAS, Helm charts and KServe's
model images use registries): a manifest whose config has kubento's media
type and whose one layer is the ``.bento`` archive (``bentoml export``). The
registry protocol (references, token and basic auth, upload sessions,
manifests) is the ORAS Python SDK's (``oras``, pinned); this module adds
what kubento needs around it:

- credentials from Docker config files: the Secrets of the model's
  ``imagePullSecrets`` mounted in the pod (``KUBENTO_OCI_AUTH_DIR``, one
  directory per Secret, key ``.dockerconfigjson`` or ``.dockercfg``), or on a
  laptop ``$DOCKER_CONFIG/config.json`` / ``~/.docker/config.json`` /
  ``$REGISTRY_AUTH_FILE`` (what ``docker login`` and ``podman login`` write);
- a private CA (``KUBENTO_OCI_CA``, added to the public ones), plain HTTP
  only when asked (``KUBENTO_OCI_PLAIN_HTTP``);
- short timeouts and few retries (a wrong reference is a condition within
  seconds), and a message per failure a user can act on: a tag that is not
  there (with the tags that are), a repository that is not there, an
  artifact that is not a bento (a container image, another artifact), an
  answer that asks for credentials, an untrusted certificate;
- the digest: a fetch resolves the tag to the manifest's digest and checks a
  digest given in the reference; the layer is checked against its digest as
  it streams.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from kubento.runtime import Failure

SCHEME = "oci://"
CONFIG_MEDIA_TYPE = "application/vnd.kubento.bento.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.kubento.bento.v1.tar"  # the .bento file as bentoml export wrote it
ANNOTATION_TAG = "io.kubento.bento.tag"
IMAGE_CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json",
                      "application/vnd.docker.container.image.v1+json"}
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
                  *sorted(INDEX_TYPES)]
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 60.0
ATTEMPTS = 3  # connection failures only; 0.5 s, 1 s between them
CHUNK = 1 << 20
UPLOAD_CHUNK = 16 << 20
MANIFEST_MAX = 4 << 20

_REFERENCE = re.compile(
    r"^(?P<registry>[A-Za-z0-9.-]+(?::[0-9]+)?)/(?P<repository>[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$")


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port]
    repository: str
    tag: Optional[str]
    digest: Optional[str]  # sha256:...

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        """What to ask the registry for: the digest when there is one."""
        return self.digest or self.tag or "latest"

    def uri(self, digest: Optional[str] = None) -> str:
        """oci://registry/repository[:tag][@digest] (``digest`` pins it)."""
        digest = digest or self.digest
        return f"{SCHEME}{self.name}" + (f":{self.tag}" if self.tag else "") + (f"@{digest}" if digest else "")

    def __str__(self) -> str:
        return self.uri()


def parse(uri: str) -> Reference:
    """oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST] (the registry host is required)."""
    if not uri.startswith(SCHEME):
        raise Failure(f"invalid URI {uri}: want oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]")
    m = _REFERENCE.match(uri[len(SCHEME):])
    if not m:
        raise Failure(f"invalid URI {uri}: want oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST] "
                      "(a registry host, a lower-case repository path, then a tag and/or a digest)")
    return Reference(m["registry"], m["repository"], m["tag"], m["digest"])


# ------------------------------------------------------------------ settings


def _host(key: str) -> str:
    """A Docker config key (``https://host/v1/``, ``host``) as host[:port]."""
    key = re.sub(r"^[a-z]+://", "", key.strip())
    return key.split("/", 1)[0]


def _auth_entries(path: Path) -> dict[str, str]:
    """host -> base64(user:password) of one Docker config file
    (``{"auths": {...}}``, or the older ``.dockercfg`` shape without it)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise Failure(f"cannot read the registry credentials in {path}: {exc}") from None
    auths = data.get("auths", data) if isinstance(data, dict) else {}
    out = {}
    for key, entry in (auths or {}).items():
        if not isinstance(entry, dict):
            continue
        token = entry.get("auth")
        if not token and entry.get("username") is not None:
            token = base64.b64encode(f"{entry['username']}:{entry.get('password', '')}".encode()).decode()
        if token:
            out[_host(key)] = token
    return out


@dataclass
class Settings:
    """How to reach registries: credentials per host, CA, plain HTTP."""

    auths: dict[str, str]  # host -> base64(user:password)
    sources: list[str]  # where credentials were read from (named in messages)
    ca: Optional[str] = None  # a PEM file added to the public CAs
    plain_http: bool = False
    secret_names: tuple[str, ...] = ()  # in a pod: the imagePullSecrets (named in messages)
    missing: tuple[str, ...] = ()  # of those, the ones not found (no Secret, or no Docker config key in it)

    @classmethod
    def from_env(cls) -> "Settings":
        """In a pod: the mounted pull secrets (KUBENTO_OCI_AUTH_DIR/<secret>/);
        elsewhere: the user's Docker (or podman) config."""
        auths: dict[str, str] = {}
        sources: list[str] = []
        names: list[str] = []
        auth_dir = os.environ.get("KUBENTO_OCI_AUTH_DIR", "").strip()
        missing: list[str] = []
        if auth_dir:
            listed = [n for n in os.environ.get("KUBENTO_OCI_PULL_SECRETS", "").split(",") if n.strip()]
            root = Path(auth_dir)
            if not listed and root.is_dir():  # (without the list: every secret mounted there)
                listed = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            for name in listed:
                names.append(name)
                found = [root / name / key for key in (".dockerconfigjson", ".dockercfg") if (root / name / key).is_file()]
                for path in found:
                    auths.update(_auth_entries(path))
                if found:
                    sources.append(name)
                else:
                    missing.append(name)
        else:
            candidates = [Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"]
            if os.environ.get("REGISTRY_AUTH_FILE"):
                candidates.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
            for path in candidates:
                if path.is_file():
                    auths.update(_auth_entries(path))
                    sources.append(str(path))
        ca = os.environ.get("KUBENTO_OCI_CA", "").strip() or None
        if ca and not Path(ca).is_file():
            raise Failure(f"the registry CA bundle {ca} does not exist")
        plain = os.environ.get("KUBENTO_OCI_PLAIN_HTTP", "").strip().lower() in ("1", "true", "yes")
        return cls(auths, sources, ca, plain, tuple(names), tuple(missing))

    def where(self) -> str:
        """Where credentials come from, for messages."""
        if os.environ.get("KUBENTO_OCI_AUTH_DIR"):
            if not self.secret_names:
                return "the ModelDeployment's imagePullSecrets (it has none)"
            gone = (f"; not found or without a .dockerconfigjson key: {', '.join(self.missing)}"
                    if self.missing else "")
            return f"the ModelDeployment's imagePullSecrets ({', '.join(self.secret_names)}{gone})"
        return "your Docker config (docker login, or $DOCKER_CONFIG / $REGISTRY_AUTH_FILE)"


# ------------------------------------------------------------------ client


def _verify(settings: Settings, scratch: Path) -> Any:
    """requests' ``verify``: True (public CAs, or REQUESTS_CA_BUNDLE), or a
    bundle of the public CAs plus the private one."""
    if not settings.ca:
        return True
    import certifi

    bundle = scratch / "oci-ca-bundle.pem"
    bundle.write_text(Path(certifi.where()).read_text() + "\n" + Path(settings.ca).read_text())
    return str(bundle)


def client(ref: Reference, settings: Settings, scratch: Path) -> Any:
    """An ORAS registry client for ``ref``'s registry, with kubento's
    timeouts, retries and credentials."""
    import oras.auth.token
    import oras.provider
    import requests
    import requests.adapters

    class Adapter(requests.adapters.HTTPAdapter):
        def send(self, request, timeout=None, **kw):  # type: ignore[override]
            return super().send(request, timeout=timeout or (CONNECT_TIMEOUT, READ_TIMEOUT), **kw)

    class Auth(oras.auth.token.TokenAuth):
        """Bearer tokens (most registries) as ORAS does them, and Basic
        challenges (a Distribution registry with htpasswd, Artifactory, ...)."""

        scheme = "Bearer"

        def get_auth_header(self):  # type: ignore[override]
            return {"Authorization": f"{self.scheme} {self.token}"} if self.token else {}

        def authenticate_request(self, original, headers, refresh=False):  # type: ignore[override]
            challenge = original.headers.get("Www-Authenticate") or ""
            if challenge.lower().startswith("basic"):
                token = getattr(self, "_basic_auth", None)
                if not token or (refresh and self.scheme == "Basic"):
                    return headers or {}, False
                # sent with every later request (ORAS reuses a token it holds), not after a 401 each time
                self.scheme, self.token = "Basic", token
                return {**(headers or {}), "Authorization": f"Basic {token}"}, True
            self.scheme = "Bearer"
            return super().authenticate_request(original, headers, refresh)

    undecorated = oras.provider.Registry.do_request.__wrapped__  # without ORAS's 5 slow retries

    class Registry(oras.provider.Registry):
        def do_request(self, url, method="GET", data=None, headers=None, json=None, stream=False):  # type: ignore[override]
            for attempt in range(ATTEMPTS):
                try:
                    return undecorated(self, url, method, data, dict(headers or {}), json, stream)
                except requests.exceptions.SSLError:
                    raise
                except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
                    if attempt == ATTEMPTS - 1 or method not in ("GET", "HEAD"):
                        raise
                    time.sleep(0.5 * 2 ** attempt)
                except ValueError as exc:
                    if "authentication" in str(exc):
                        raise _NoCredentials() from None
                    raise
            raise AssertionError("not reached")  # pragma: no cover

    verify = _verify(settings, scratch)
    registry = Registry(hostname=ref.registry, insecure=settings.plain_http, tls_verify=verify)
    auth = Auth()
    auth.session, auth.prefix, auth._tls_verify = registry.session, registry.prefix, verify
    registry.auth = auth
    registry.session.trust_env = True
    for prefix in ("http://", "https://"):
        registry.session.mount(prefix, Adapter(max_retries=0))
    token = settings.auths.get(ref.registry) or (
        settings.auths.get(ref.registry.replace("localhost", "127.0.0.1")) if "localhost" in ref.registry else None)
    if token:
        auth._basic_auth = token
    return registry


class _NoCredentials(Exception):
    """The registry asked for credentials that were not given."""


# ------------------------------------------------------------------ errors


def _errors(response: Any) -> list[str]:
    """The OCI error codes of an answer (MANIFEST_UNKNOWN, NAME_UNKNOWN, ...)."""
    try:
        body = response.json()
    except ValueError:
        return []
    return [str(e.get("code")) for e in (body.get("errors") or []) if isinstance(e, dict)] if isinstance(body, dict) else []


def _network(exc: BaseException, ref: Reference, settings: Settings) -> str:
    import requests

    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    endpoint = f"{'http' if settings.plain_http else 'https'}://{ref.registry}"
    if isinstance(exc, requests.exceptions.SSLError) or "certificate" in lowered:
        if "wrong version number" in lowered or "record layer failure" in lowered:
            return (f"TLS error talking to {endpoint}: the registry does not speak TLS "
                    "(a plain-HTTP registry: set plainHTTP)")
        hint = ("its certificate is not signed by a CA kubento trusts: give the CA that signs it "
                "(bento.archive.caBundle; kubento push/deploy: --ca-file)")
        return f"TLS error talking to {endpoint}: {hint} ({text[:200]})"
    if "connection refused" in lowered:
        what = "connection refused"
    elif "name or service not known" in lowered or "temporary failure in name resolution" in lowered \
            or "nodename nor servname" in lowered or "failed to resolve" in lowered:
        what = "host not found"
    elif isinstance(exc, requests.exceptions.Timeout) or "timed out" in lowered:
        what = "timed out"
    elif "network is unreachable" in lowered or "no route to host" in lowered:
        what = "network unreachable"
    elif "remotedisconnected" in lowered or "connection aborted" in lowered:
        what = "the connection was closed without an answer (a TLS registry asked in plain HTTP?)"
    else:
        what = text[:300]
    return f"{what} (registry {endpoint})"


def _denied(status: int, ref: Reference, settings: Settings) -> str:
    has = ref.registry in settings.auths
    if not has:
        return (f"HTTP {status}: the registry {ref.registry} asks for credentials and none were given for it: "
                f"add them to {settings.where()}")
    return (f"HTTP {status}: the registry {ref.registry} refused the credentials for it in "
            f"{settings.where()} (wrong user or password, or no pull access to {ref.repository})")


def _request(registry: Any, url: str, ref: Reference, settings: Settings, prefix: str,
             method: str = "GET", headers: Optional[dict[str, str]] = None, stream: bool = False) -> Any:
    import requests

    try:
        return registry.do_request(url, method, headers=headers or {}, stream=stream)
    except _NoCredentials:
        raise Failure(f"{prefix}: {_denied(401, ref, settings)}") from None
    except requests.exceptions.RequestException as exc:
        raise Failure(f"{prefix}: {_network(exc, ref, settings)}") from exc


def _tags(registry: Any, ref: Reference) -> tuple[Optional[list[str]], bool]:
    """(the repository's tags, or None when they cannot be read; whether the
    registry says the repository does not exist)."""
    try:
        response = registry.do_request(f"{registry.prefix}://{ref.registry}/v2/{ref.repository}/tags/list?n=50")
        if response.status_code == 200:
            return list((response.json() or {}).get("tags") or []), False
        return None, response.status_code == 404 and "NAME_UNKNOWN" in _errors(response)
    except Exception:  # noqa: BLE001 - only a hint in a message
        return None, False


# ------------------------------------------------------------------ fetch


@dataclass
class Manifest:
    digest: str  # sha256:... of the manifest's bytes
    body: dict[str, Any]


def resolve(registry: Any, ref: Reference, settings: Settings, prefix: str) -> Manifest:
    """The manifest ``ref`` names, checked against its digest."""
    url = f"{registry.prefix}://{ref.registry}/v2/{ref.repository}/manifests/{ref.ref}"
    response = _request(registry, url, ref, settings, prefix, headers={"Accept": ", ".join(MANIFEST_TYPES)})
    status = response.status_code
    if status in (401, 403):
        raise Failure(f"{prefix}: {_denied(status, ref, settings)}")
    if status == 404:
        tags, missing = _tags(registry, ref)
        if "NAME_UNKNOWN" in _errors(response) or missing:
            raise Failure(f"{prefix}: no repository {ref.repository} in the registry {ref.registry} (NAME_UNKNOWN)")
        if ref.digest:
            raise Failure(f"{prefix}: no manifest {ref.digest} in {ref.name} (MANIFEST_UNKNOWN)")
        there = ("; tags there: " + (", ".join(tags[:20]) + (", ..." if len(tags) > 20 else "") if tags else "none")) \
            if tags is not None else ""
        raise Failure(f"{prefix}: no tag {ref.tag or 'latest'} in {ref.name} (MANIFEST_UNKNOWN){there}")
    if status != 200:
        raise Failure(f"{prefix}: the registry answered HTTP {status} {response.reason or ''}".rstrip()
                      + (f" ({', '.join(_errors(response))})" if _errors(response) else ""))
    body = response.content[:MANIFEST_MAX + 1]
    if len(body) > MANIFEST_MAX:
        raise Failure(f"{prefix}: the manifest is larger than {MANIFEST_MAX} bytes")
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if ref.digest and digest != ref.digest:
        raise Failure(f"{prefix}: the registry sent a manifest whose digest is {digest}, not {ref.digest}")
    try:
        manifest = json.loads(body)
    except ValueError:
        raise Failure(f"{prefix}: the registry's answer is not a manifest (not JSON)") from None
    return Manifest(digest, manifest if isinstance(manifest, dict) else {})


def bento_layer(manifest: Manifest, ref: Reference, prefix: str) -> dict[str, Any]:
    """The .bento layer of a bento artifact; a clear refusal of anything else."""
    body = manifest.body
    media = body.get("mediaType") or ""
    if media in INDEX_TYPES or "manifests" in body:
        raise Failure(f"{prefix}: {ref.name}@{manifest.digest} is an image index (a multi-platform container image), "
                      "not a bento: serve an image with bento.image, push a bento with `kubento push`")
    config = (body.get("config") or {}).get("mediaType") or ""
    artifact = body.get("artifactType") or config
    if config in IMAGE_CONFIG_TYPES:
        raise Failure(f"{prefix}: {ref.name}@{manifest.digest} is a container image, not a bento: serve an image with "
                      "bento.image (e.g. one made by bentoml containerize), push a bento with `kubento push`")
    layers = [layer for layer in body.get("layers") or [] if layer.get("mediaType") == LAYER_MEDIA_TYPE]
    if artifact != CONFIG_MEDIA_TYPE or len(layers) != 1:
        raise Failure(f"{prefix}: {ref.name}@{manifest.digest} is not a bento (artifact type {artifact or 'none'}, "
                      f"want {CONFIG_MEDIA_TYPE} with one {LAYER_MEDIA_TYPE} layer, as `kubento push` writes)")
    layer = layers[0]
    if not re.fullmatch(r"sha256:[a-f0-9]{64}", str(layer.get("digest", ""))):
        raise Failure(f"{prefix}: the bento layer's digest {layer.get('digest')!r} is not a sha256 digest")
    return layer


@dataclass
class Pulled:
    sha256: str  # of the .bento file (hex)
    size: int
    pinned: str  # oci://...@sha256:<manifest digest>
    tag: Optional[str]  # the bento's name:version, from the manifest


def fetch(uri: str, dest: Path, write: Callable[[Iterator[bytes], Path, Any, str], str],
          progress: Callable[[str, Optional[int]], Any]) -> Pulled:
    """Resolve ``uri``, check it is a bento, stream its layer to ``dest``
    through ``write(chunks, dest, progress, prefix) -> sha256 hex`` (the
    storage module's writer: progress lines, partial files removed)."""
    ref = parse(uri)
    prefix = f"cannot fetch {uri}"
    settings = Settings.from_env()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".oci-", dir=dest.parent) as scratch:
        return _fetch(ref, uri, dest, write, progress, settings, prefix, Path(scratch))


def _fetch(ref: Reference, uri: str, dest: Path, write: Callable[[Iterator[bytes], Path, Any, str], str],
           progress: Callable[[str, Optional[int]], Any], settings: Settings, prefix: str, scratch: Path) -> Pulled:
    registry = client(ref, settings, scratch)
    manifest = resolve(registry, ref, settings, prefix)
    layer = bento_layer(manifest, ref, prefix)
    pinned = ref.uri(manifest.digest)
    print(f"{ref.uri()} is {pinned}", flush=True)
    url = f"{registry.prefix}://{ref.registry}/v2/{ref.repository}/blobs/{layer['digest']}"
    response = _request(registry, url, ref, settings, prefix, stream=True)
    try:
        if response.status_code in (401, 403):
            raise Failure(f"{prefix}: {_denied(response.status_code, ref, settings)}")
        if response.status_code != 200:
            raise Failure(f"{prefix}: the bento layer {layer['digest']}: HTTP {response.status_code} "
                          f"{response.reason or ''}".rstrip() + (" (BLOB_UNKNOWN: the registry lost it)"
                                                                if "BLOB_UNKNOWN" in _errors(response) else ""))
        size = layer.get("size")
        import requests

        try:
            digest = write(response.iter_content(CHUNK), dest, progress("downloading", int(size) if size else None),
                           prefix)
        except requests.exceptions.RequestException as exc:
            dest.unlink(missing_ok=True)
            raise Failure(f"{prefix}: {_network(exc, ref, settings)}") from exc
    finally:
        response.close()
    if f"sha256:{digest}" != layer["digest"]:
        dest.unlink(missing_ok=True)
        raise Failure(f"{prefix}: the bento layer's content does not match its digest {layer['digest']} "
                      f"(got sha256:{digest})")
    tag = ((manifest.body.get("annotations") or {}).get(ANNOTATION_TAG)) or None
    return Pulled(digest, dest.stat().st_size, pinned, tag)


# ------------------------------------------------------------------ push


def push(path: Path, uri: str, bento_tag: str, sha256: str) -> str:
    """Push the .bento file as a bento artifact to ``uri`` (its tag; default:
    the bento's version); returns the pinned URI (oci://...:tag@sha256:...)."""
    ref = parse(uri)
    if ref.digest:
        raise Failure(f"cannot push to {uri}: give a tag (or none: the bento's version), not a digest")
    if not ref.tag:
        ref = Reference(ref.registry, ref.repository, bento_tag.split(":", 1)[1], None)
    prefix = f"push to {ref.uri()} failed"
    settings = Settings.from_env()
    import requests

    with tempfile.TemporaryDirectory(prefix="kubento-push-") as tmp:
        scratch = Path(tmp)
        registry = client(ref, settings, scratch)
        config = scratch / "config.json"
        config.write_text(json.dumps({"tag": bento_tag, "sha256": sha256}, sort_keys=True))
        # ORAS names a layer after its file: the bento's own name, not the local one
        layer = scratch / f"{bento_tag.replace(':', '-')}.bento"
        os.symlink(path.resolve(), layer)
        try:
            response = registry.push(
                target=f"{ref.name}:{ref.tag}", files=[f"{layer}:{LAYER_MEDIA_TYPE}"],
                manifest_config=f"{config}:{CONFIG_MEDIA_TYPE}", disable_path_validation=True,
                manifest_annotations={ANNOTATION_TAG: bento_tag, "org.opencontainers.image.title": bento_tag},
                do_chunked=True, chunk_size=UPLOAD_CHUNK, quiet=True)
        except _NoCredentials:
            raise Failure(f"{prefix}: {_denied(401, ref, settings)}") from None
        except requests.exceptions.RequestException as exc:
            raise Failure(f"{prefix}: {_network(exc, ref, settings)}") from exc
        except ValueError as exc:  # ORAS: "Issue with <url>: <reason>"
            text = str(exc)
            if "Unauthorized" in text or "Forbidden" in text:
                raise Failure(f"{prefix}: {_denied(401 if 'Unauthorized' in text else 403, ref, settings)}") from None
            raise Failure(f"{prefix}: {text[:300]}") from None
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            digest = resolve(registry, ref, settings, prefix).digest
    return ref.uri(digest)


def pinned(uri: str) -> bool:
    """Whether an oci:// URI names a digest."""
    return "@sha256:" in uri
