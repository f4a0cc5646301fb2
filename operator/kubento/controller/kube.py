"""The thin I/O layer: every call kubento makes to the Kubernetes API.

A :class:`Kube` holds one API client (and the dynamic client's discovery)
for the operator that built it (kubento.controller.operator); the CLI reads
the same kubeconfig with :func:`load_configuration`."""

from __future__ import annotations

import datetime
import json
import os
import re
import threading
import time
from typing import Any, Optional
from urllib.parse import quote

from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from kubento.api import v1alpha1 as api

FIELD_MANAGER = "kubento"


def load_configuration() -> client.Configuration:
    """In-cluster credentials when running in a pod, else the kubeconfig
    (``$KUBECONFIG`` as it is now, or ~/.kube/config; current context). kopf
    logs in with the same credentials (see handlers)."""
    cfg = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)
    else:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        config.load_kube_config(config_file=path, client_configuration=cfg)
    return cfg


class NotInstalled(Exception):
    """The API server does not serve this kind (e.g. KEDA's CRDs are missing)."""


# Kinds found missing are looked up again only after REDISCOVER_SECONDS
# (the client's discovery reloads every group on each miss).
REDISCOVER_SECONDS = 10.0
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


class Kube:
    def __init__(self, configuration: client.Configuration) -> None:
        self.configuration = configuration
        self.api_client = client.ApiClient(configuration)
        self._dynamic: Optional[dynamic.DynamicClient] = None
        self._missing: dict[tuple[str, str], float] = {}  # (apiVersion, kind) -> when found missing
        self._fields: dict[tuple[str, str, tuple[str, ...]], tuple[bool, float]] = {}  # has_field, and when
        self._discovery = threading.RLock()  # the client's discovery cache is not thread-safe (a miss rebuilds it)

    def dynamic_client(self) -> dynamic.DynamicClient:
        with self._discovery:
            if self._dynamic is None:
                self._dynamic = dynamic.DynamicClient(self.api_client)
            return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        if time.monotonic() - self._missing.get(key, -REDISCOVER_SECONDS) < REDISCOVER_SECONDS:
            raise NotInstalled(f"{kind} ({api_version}) is not served by this cluster")
        try:
            with self._discovery:
                resource = self.dynamic_client().resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            self._missing[key] = time.monotonic()
            raise NotInstalled(f"{kind} ({api_version}) is not served by this cluster") from None
        self._missing.pop(key, None)
        return resource

    def served(self, api_version: str, kind: str) -> bool:
        """Whether the API server serves this kind (e.g. KEDA's CRDs are installed)."""
        try:
            self._resource(api_version, kind)
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
        try:
            obj = self._resource("apiextensions.k8s.io/v1", "CustomResourceDefinition").get(name=crd).to_dict()
        except (NotFoundError, NotInstalled):
            obj = {}
        schema = next((v.get("schema", {}).get("openAPIV3Schema", {}) for v in (obj.get("spec") or {}).get("versions") or []
                       if v.get("name") == version), {})
        for part in path:
            schema = (schema.get("items") if part == "[]" else (schema.get("properties") or {}).get(part)) or {}
        self._fields[key] = (bool(schema), time.monotonic())
        return bool(schema)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Optional[dict[str, Any]]:
        try:
            return self._resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def get_cached(self, api_version: str, kind: str, namespace: str, name: str) -> Optional[dict[str, Any]]:
        """An object as the API server's watch cache has it (``resourceVersion=0``:
        no etcd read), as plain JSON (no dynamic-client wrapping); None on 404.
        For what does not change any more, e.g. an old revision's Deployment."""
        path = self._resource(api_version, kind).path(name=name, namespace=namespace)
        return self._get_json(path, "application/json", [("resourceVersion", "0")])

    def metadata(self, api_version: str, kind: str, namespace: str, name: str) -> Optional[dict[str, Any]]:
        """An object's metadata only, or None when it does not exist: whose it
        is, without its spec, and without the dynamic client's 404 path (which
        formats a traceback per miss)."""
        return self._metadata_at(self._resource(api_version, kind).path(name=name, namespace=namespace))

    def _metadata_at(self, path: str) -> Optional[dict[str, Any]]:
        """A GET of ``path`` as PartialObjectMetadata; None on 404."""
        obj = self._get_json(path, PARTIAL_METADATA)
        return None if obj is None else {"metadata": obj.get("metadata") or {}}

    def _get_json(self, path: str, accept: str, query: Optional[list[tuple[str, str]]] = None
                  ) -> Optional[dict[str, Any]]:
        c = self.api_client
        method, url, headers, _, _ = c.param_serialize(
            "GET", path, query_params=query, header_params={"Accept": accept}, auth_settings=["BearerToken"])
        resp = c.call_api(method, url, header_params=headers)
        data = resp.read()
        if resp.status == 404:
            return None
        if resp.status >= 300:
            raise ApiException(status=resp.status, reason=resp.reason, http_resp=resp)
        return json.loads(data)

    def apply(self, manifest: dict[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply with kubento's field manager, taking ownership of
        the fields it sets (``force_conflicts``; a ``force=`` keyword is ignored)."""
        meta = manifest["metadata"]
        try:
            return (
                self._resource(manifest["apiVersion"], manifest["kind"])
                .server_side_apply(
                    body=apply_body(manifest),
                    name=meta["name"],
                    namespace=meta["namespace"],
                    field_manager=field_manager,
                    force_conflicts=True,
                )
                .to_dict()
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            # Apply creates missing objects: a 404 means the kind itself is gone
            # (e.g. KEDA uninstalled while discovery was cached).
            with self._discovery:
                self.dynamic_client().resources.invalidate_cache()
            self._missing[(manifest["apiVersion"], manifest["kind"])] = time.monotonic()
            raise NotInstalled(f"{manifest['kind']} ({manifest['apiVersion']}) is not served by this cluster") from None

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create an object kubento never updates afterwards (a build Job: its
        pod template is immutable). Returns the existing one if it is there."""
        meta = manifest["metadata"]
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        try:
            return resource.create(body=manifest, namespace=meta["namespace"], field_manager=FIELD_MANAGER).to_dict()
        except ApiException as exc:
            if exc.status != 409:
                raise
            return resource.get(name=meta["name"], namespace=meta["namespace"]).to_dict()

    def delete(self, api_version: str, kind: str, namespace: str, name: str,
               propagation: Optional[str] = None) -> None:
        body = {"propagationPolicy": propagation} if propagation else None
        try:
            self._resource(api_version, kind).delete(name=name, namespace=namespace, body=body)
        except NotFoundError:
            pass

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> str:
        """Resize a Deployment through its scale subresource: the rest of its
        spec (an older revision's template) is left exactly as it is. Returns
        the Deployment's new resourceVersion."""
        scale = client.AppsV1Api(self.api_client).patch_namespaced_deployment_scale(
            name, namespace, {"spec": {"replicas": replicas}}, field_manager=FIELD_MANAGER
        )
        return scale.metadata.resource_version

    def set_pod_condition(self, namespace: str, name: str, condition: dict[str, Any]) -> Optional[dict[str, Any]]:
        """Set one condition of a pod's status (a readiness gate's), leaving the
        kubelet's alone: a strategic merge patch merges conditions by type.
        None if the pod is gone."""
        try:
            resp = client.CoreV1Api(self.api_client).patch_namespaced_pod_status(
                name, namespace, {"status": {"conditions": [condition]}}, field_manager=FIELD_MANAGER,
                _content_type="application/strategic-merge-patch+json", _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads(resp.data)  # as the watch delivers it (times as the API server writes them)

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any],
                     resource_version: Optional[str] = None) -> dict[str, Any]:
        """A merge patch of the status; with ``resource_version``, only of that
        version of the model (409 Conflict otherwise: the pass saw an older one)."""
        body: dict[str, Any] = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return client.CustomObjectsApi(self.api_client).patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, namespace, api.PLURAL, name, body
        )

    def get_model(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        try:
            return client.CustomObjectsApi(self.api_client).get_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about ``obj`` (what `kubectl describe` shows)."""
        meta = obj["metadata"]
        stamp = datetime.datetime.now(datetime.timezone.utc)
        event = {
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
        # Not read back into a V1Event model (nothing uses it; the client's deserialising costs CPU per event).
        client.CoreV1Api(self.api_client).create_namespaced_event(meta["namespace"], event,
                                                                  _preload_content=False).data

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


def rejection(exc: ApiException) -> str:
    """The API server's own message for a refused request, at most REJECTION_MAX characters."""
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
