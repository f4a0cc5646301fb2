"""The thin I/O layer: every call kubento makes to the Kubernetes API.

A :class:`Kube` holds one HTTP connection pool to the API server for the
operator that built it (kubento.controller.operator), with the credentials
of kubento.controller.credentials. Requests are plain JSON over urllib3 to
paths found by discovery: the typed Kubernetes client is not imported here
(its 1,000+ modules are half the operator's memory, and its model
(de)serialising costs CPU on every call). The CLI keeps the typed client.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import threading
import time
from typing import Any, Optional
from urllib.parse import quote, urlencode

import urllib3

from kubento.api import v1alpha1 as api
from kubento.controller.credentials import Credentials

FIELD_MANAGER = "kubento"
TIMEOUT = urllib3.Timeout(connect=10.0, read=60.0)  # a request never holds a worker for ever


class ApiError(Exception):
    """The API server answered with an error status (as the typed client's
    ApiException: ``status``, ``reason``, ``body``, ``headers``)."""

    def __init__(self, status: int, reason: str, body: bytes = b"", headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(f"({status}) {reason}")
        self.status, self.reason, self.headers = status, reason, headers or {}
        self.body = body.decode("utf-8", "replace") if isinstance(body, bytes) else body


class NotInstalled(Exception):
    """The API server does not serve this kind (e.g. KEDA's CRDs are missing)."""


# Kinds found missing are looked up again only after REDISCOVER_SECONDS.
REDISCOVER_SECONDS = 10.0
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class Kube:
    def __init__(self, credentials: Credentials, pool_size: int = 10) -> None:
        self.credentials = credentials
        credentials.authorization()  # an exec plugin runs now: its client certificate (if any) is the pool's
        tls: dict[str, Any] = {}
        if credentials.server.startswith("https"):
            tls = {"cert_reqs": "CERT_NONE" if credentials.insecure else "CERT_REQUIRED",
                   "ca_certs": credentials.ca_file, "cert_file": credentials.cert_file,
                   "key_file": credentials.key_file}
            if credentials.insecure:
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.http = urllib3.PoolManager(num_pools=2, maxsize=pool_size, block=False, timeout=TIMEOUT,
                                        retries=urllib3.Retry(total=2, connect=2, read=0, redirect=0, status=0,
                                                              other=0, raise_on_redirect=False), **tls)
        self._groups: dict[str, tuple[dict[str, tuple[str, bool]], float]] = {}  # group/version -> kinds, when read
        self._missing: dict[tuple[str, str], float] = {}  # (apiVersion, kind) -> when found missing
        self._fields: dict[tuple[str, str, tuple[str, ...]], tuple[bool, float]] = {}  # has_field, and when
        self._discovery = threading.Lock()

    # ------------------------------------------------------------ requests

    def request(self, method: str, path: str, body: Any = None, *, query: Optional[dict[str, str]] = None,
                content_type: str = JSON, accept: str = JSON, timeout: Optional[float] = None) -> Any:
        """One request; the answer's JSON (None when empty). ApiError for any
        status ≥ 300 (redirects are not followed)."""
        headers = {"Accept": accept, "User-Agent": "kubento"}
        auth = self.credentials.authorization()
        if auth:
            headers["Authorization"] = auth
        data: Optional[bytes] = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        url = self.credentials.server + path + (f"?{urlencode(query)}" if query else "")
        more: dict[str, Any] = {"timeout": urllib3.Timeout(connect=10.0, read=timeout)} if timeout else {}
        resp = self.http.request(method, url, body=data, headers=headers, redirect=False, preload_content=True, **more)
        if resp.status >= 300:
            if resp.status == 401:
                self.credentials.expire()  # a rotated token: read again next time
            raise ApiError(resp.status, resp.reason or "", resp.data, dict(resp.headers))
        return json.loads(resp.data) if resp.data else None

    def _get_json(self, path: str, accept: str = JSON, query: Optional[dict[str, str]] = None
                  ) -> Optional[dict[str, Any]]:
        """A GET of ``path``; None on 404."""
        try:
            return self.request("GET", path, query=query, accept=accept)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # ----------------------------------------------------------- discovery

    def _kinds(self, api_version: str, refresh: bool) -> dict[str, tuple[str, bool]]:
        """kind -> (plural, namespaced) of one group/version, read once (again when ``refresh``)."""
        known = self._groups.get(api_version)
        if known is not None and not refresh:
            return known[0]
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        listed = self._get_json(prefix) or {}
        kinds = {r["kind"]: (r["name"], bool(r.get("namespaced"))) for r in listed.get("resources") or []
                 if "/" not in r.get("name", "")}
        self._groups[api_version] = (kinds, time.monotonic())
        return kinds

    def _path(self, api_version: str, kind: str, namespace: Optional[str], name: Optional[str] = None) -> str:
        """The URL path of a kind's object (or its collection, without ``name``)."""
        key = (api_version, kind)
        if time.monotonic() - self._missing.get(key, -REDISCOVER_SECONDS) < REDISCOVER_SECONDS:
            raise NotInstalled(f"{kind} ({api_version}) is not served by this cluster")
        with self._discovery:
            kinds = self._kinds(api_version, refresh=False)
            if kind not in kinds:
                kinds = self._kinds(api_version, refresh=True)
        if kind not in kinds:
            self._missing[key] = time.monotonic()
            raise NotInstalled(f"{kind} ({api_version}) is not served by this cluster")
        self._missing.pop(key, None)
        plural, namespaced = kinds[kind]
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced and namespace:
            path += f"/namespaces/{quote(namespace, safe='')}"
        path += f"/{plural}"
        return path + (f"/{quote(name, safe='')}" if name else "")

    def _gone(self, api_version: str, kind: str) -> NotInstalled:
        """A 404 where the kind should be: it is gone (e.g. KEDA uninstalled while discovery was cached)."""
        with self._discovery:
            self._groups.pop(api_version, None)
        self._missing[(api_version, kind)] = time.monotonic()
        return NotInstalled(f"{kind} ({api_version}) is not served by this cluster")

    def served(self, api_version: str, kind: str) -> bool:
        """Whether the API server serves this kind (e.g. KEDA's CRDs are installed)."""
        try:
            self._path(api_version, kind, None)
        except NotInstalled:
            return False
        return True

    def has_field(self, crd: str, version: str, path: tuple[str, ...], recheck: float = 300.0) -> bool:
        """Whether the CRD ``crd`` declares the field at ``path`` (object
        properties, and ``[]`` for a list's items) in ``version``'s schema,
        e.g. an optional Gateway API field of the experimental channel.
        Looked up again after ``recheck`` seconds."""
        key = (crd, version, path)
        known = self._fields.get(key)
        if known is not None and time.monotonic() - known[1] < recheck:
            return known[0]
        obj = self._get_json(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{quote(crd, safe='')}") or {}
        schema = next((v.get("schema", {}).get("openAPIV3Schema", {}) for v in (obj.get("spec") or {}).get("versions") or []
                       if v.get("name") == version), {})
        for part in path:
            schema = (schema.get("items") if part == "[]" else (schema.get("properties") or {}).get(part)) or {}
        self._fields[key] = (bool(schema), time.monotonic())
        return bool(schema)

    # ------------------------------------------------------------- objects

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Optional[dict[str, Any]]:
        return self._get_json(self._path(api_version, kind, namespace, name))

    def get_cached(self, api_version: str, kind: str, namespace: str, name: str) -> Optional[dict[str, Any]]:
        """An object as the API server's watch cache has it (``resourceVersion=0``:
        no etcd read); None on 404. For what does not change any more, e.g.
        an old revision's Deployment."""
        return self._get_json(self._path(api_version, kind, namespace, name), query={"resourceVersion": "0"})

    def metadata(self, api_version: str, kind: str, namespace: str, name: str) -> Optional[dict[str, Any]]:
        """An object's metadata only (whose it is, without its spec), or None when it does not exist."""
        return self._metadata_at(self._path(api_version, kind, namespace, name))

    def _metadata_at(self, path: str) -> Optional[dict[str, Any]]:
        """A GET of ``path`` as PartialObjectMetadata; None on 404."""
        obj = self._get_json(path, PARTIAL_METADATA)
        return None if obj is None else {"metadata": obj.get("metadata") or {}}

    def apply(self, manifest: dict[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply with kubento's field manager, taking ownership of
        the fields it sets (force)."""
        meta = manifest["metadata"]
        path = self._path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
        try:
            return self.request("PATCH", path, apply_body(manifest), content_type=APPLY_PATCH,
                                query={"fieldManager": field_manager, "force": "true"})
        except ApiError as exc:
            if exc.status != 404:
                raise
            # Apply creates missing objects: a 404 means the kind itself is gone.
            raise self._gone(manifest["apiVersion"], manifest["kind"]) from None

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create an object kubento never updates afterwards (a build Job: its
        pod template is immutable). Returns the existing one if it is there."""
        meta = manifest["metadata"]
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        try:
            return self.request("POST", self._path(api_version, kind, meta["namespace"]), manifest,
                                query={"fieldManager": FIELD_MANAGER})
        except ApiError as exc:
            if exc.status != 409:
                raise
            return self.request("GET", self._path(api_version, kind, meta["namespace"], meta["name"]))

    def delete(self, api_version: str, kind: str, namespace: str, name: str,
               propagation: Optional[str] = None) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation} if propagation else None
        try:
            self.request("DELETE", self._path(api_version, kind, namespace, name), body)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> str:
        """Resize a Deployment through its scale subresource: the rest of its
        spec (an older revision's template) is left exactly as it is. Returns
        the Deployment's new resourceVersion."""
        scale = self.request(
            "PATCH", f"/apis/apps/v1/namespaces/{quote(namespace, safe='')}/deployments/{quote(name, safe='')}/scale",
            {"spec": {"replicas": replicas}}, content_type=MERGE_PATCH, query={"fieldManager": FIELD_MANAGER})
        return scale["metadata"]["resourceVersion"]

    def set_pod_condition(self, namespace: str, name: str, condition: dict[str, Any]) -> Optional[dict[str, Any]]:
        """Set one condition of a pod's status (a readiness gate's), leaving the
        kubelet's alone: a strategic merge patch merges conditions by type.
        None if the pod is gone."""
        try:
            return self.request(
                "PATCH", f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/status",
                {"status": {"conditions": [condition]}}, content_type=STRATEGIC_MERGE_PATCH,
                query={"fieldManager": FIELD_MANAGER})
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _model_path(self, namespace: str, name: str) -> str:
        return (f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{quote(namespace, safe='')}/{api.PLURAL}/"
                f"{quote(name, safe='')}")

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any],
                     resource_version: Optional[str] = None) -> dict[str, Any]:
        """A merge patch of the status; with ``resource_version``, only of that
        version of the model (409 Conflict otherwise: the pass saw an older one)."""
        body: dict[str, Any] = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.request("PATCH", self._model_path(namespace, name) + "/status", body, content_type=MERGE_PATCH)

    def get_model(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        return self._get_json(self._model_path(namespace, name))

    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about ``obj`` (what `kubectl describe` shows)."""
        meta = obj["metadata"]
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", f"{api.GROUP}/{api.VERSION}"),
                "kind": obj.get("kind", api.KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": _shorten(message, 1024),
            "source": {"component": "kubento"},
            "reportingComponent": "kubento",
            "reportingInstance": os.environ.get("HOSTNAME", "kubento"),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self.request("POST", f"/api/v1/namespaces/{quote(meta['namespace'], safe='')}/events", event)

    def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether a Secret exists. Asks for its metadata only
        (PartialObjectMetadata): kubento never receives any Secret's data."""
        return self._metadata_at(
            f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets/{quote(name, safe='')}") is not None


# Characters a YAML 1.1 decoder refuses raw (C1 controls, DEL, non-characters)
# or reads as line breaks (NEL, LS, PS); JSON already escapes C0 controls.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def apply_body(manifest: dict[str, Any]) -> bytes:
    """A server-side apply body (application/apply-patch+yaml): JSON that is
    also valid YAML. The client's own json.dumps escapes characters beyond
    U+FFFF as UTF-16 surrogate pairs, which the API server's YAML decoder
    refuses; so those go as raw UTF-8, and what YAML refuses raw is escaped."""
    text = json.dumps(manifest, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


REJECTION_MAX = 1000  # what of a refusal reaches a condition or an event (an admission webhook writes it)


def rejection(exc: Any) -> str:
    """The API server's own message for a refused request (an ApiError, or
    the typed client's ApiException in the CLI), at most REJECTION_MAX characters."""
    try:
        text = json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except ValueError:
        text = str(exc.body or exc.reason)
    return _shorten(text, REJECTION_MAX)


def _shorten(text: str, limit: int) -> str:
    """Keep the start and the end: a build log's last lines say what failed."""
    if len(text) <= limit:
        return text
    head = limit // 4
    return text[:head] + " … " + text[-(limit - head - 3):]
