"""Watches what the operator does, as it happens, for passes that act on a
stale view: the API server's own watch (an admin client) is the clock.

- a status written for an older generation than the spec had for more than
  ``after`` seconds: that pass did not know the spec it claims to report on;
- a revision Deployment created for a spec the model had left more than
  ``after`` seconds before (kubento only ever applies the spec's revision);
- a child deleted that should exist: the Deployment of the revision the spec
  named (for more than ``after`` seconds) or the model's Service, while the
  model exists.

``after`` is far above a healthy operator's lag behind the watch (well under
a second on this machine; see test_kills' figures) and far below the outage
the tests make.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

from kubernetes import client
from pydantic import ValidationError

from kubento.api import v1alpha1 as api
from kubento.api.v1alpha1 import ModelDeploymentSpec
from kubento.builders.bento import ServedBento
from kubento.builders.deployment import revision
from kubento.builders.meta import LABEL_REVISION
from tests.controlplane import MANAGED, Watcher


def _revision(spec: dict[str, Any]) -> Optional[str]:
    try:
        parsed = ModelDeploymentSpec.model_validate(spec)
    except ValidationError:
        return None
    return revision(parsed, ServedBento(parsed.bento.image)) if parsed.bento.image else None


class Timeline:
    """One model (one uid): when each generation was first seen, its revision."""

    def __init__(self) -> None:
        self.generations: dict[int, tuple[float, Optional[str]]] = {}
        self.status: Any = None
        self.gone: Optional[float] = None  # deleted (or being deleted) since

    def superseded(self, generation: int) -> Optional[float]:
        """When a later generation than ``generation`` was first seen."""
        later = [t for g, (t, _) in self.generations.items() if g > generation]
        return min(later) if later else None

    def left(self, rev: str, now: float) -> Optional[float]:
        """How long ago the spec stopped naming ``rev`` (None: it names it
        now, or no generation this watch saw named it)."""
        gens = sorted(self.generations.items())
        named = [i for i, (_, (_, r)) in enumerate(gens) if r == rev]
        if not named:
            return None  # a spec this watch never saw (it was away, relisting): the end-state check judges
        last = named[-1]
        if last == len(gens) - 1:
            return None  # the spec names it now
        return now - gens[last + 1][1][0]

    def names_since(self, rev: str, now: float) -> Optional[float]:
        """How long the spec has named ``rev`` without a break (None: it does not now)."""
        gens = sorted(self.generations.items())
        if not gens or gens[-1][1][1] != rev:
            return None
        start = gens[-1][1][0]
        for _, (t, r) in reversed(gens[:-1]):
            if r != rev:
                break
            start = t
        return now - start


class Invariants:
    def __init__(self, admin: client.ApiClient, namespace: str, after: float = 5.0) -> None:
        self.after = after
        self.lock = threading.Lock()
        self.models: dict[str, Timeline] = {}  # uid -> timeline
        self.violations: list[str] = []
        self.status_writes = 0
        custom, apps, core = client.CustomObjectsApi(admin), client.AppsV1Api(admin), client.CoreV1Api(admin)
        self.custom, self.namespace = custom, namespace
        self.watchers = [
            Watcher(lambda **kw: custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL,
                                                                     **kw), self._model),
            Watcher(apps.list_namespaced_deployment, self._deployment, namespace=namespace, label_selector=MANAGED),
            Watcher(core.list_namespaced_service, self._service, namespace=namespace, label_selector=MANAGED),
        ]

    def start(self) -> "Invariants":
        for w in self.watchers:
            w.start()
        for w in self.watchers:
            w.ready.wait(60)
        return self

    def stop(self) -> None:
        for w in self.watchers:
            w.stopped.set()

    def _flag(self, text: str) -> None:
        self.violations.append(f"{time.strftime('%H:%M:%S')} {text}")

    def _model(self, type_: str, md: dict[str, Any]) -> None:
        now = time.monotonic()
        meta, st = md["metadata"], md.get("status") or {}
        with self.lock:
            tl = self.models.setdefault(meta["uid"], Timeline())
            if type_ == "DELETED" or meta.get("deletionTimestamp"):
                tl.gone = tl.gone or now
            gen = meta.get("generation", 1)
            if gen not in tl.generations:
                tl.generations[gen] = (now, _revision(md.get("spec") or {}))
            if type_ == "MODIFIED" and st and st != tl.status:
                # Only the operator writes status: this is one of its passes.
                self.status_writes += 1
                observed = st.get("observedGeneration")
                since = tl.superseded(observed) if observed is not None else None
                if since is not None and now - since > self.after:
                    self._flag(f"{meta['name']}: a pass wrote status for generation {observed} "
                               f"{now - since:.1f}s after generation {meta.get('generation')} was the spec")
            tl.status = st or tl.status

    def _model_lives(self, obj: dict[str, Any]) -> bool:
        """Whether the model that controls ``obj`` still exists, not being
        deleted, asked of the API server: this client's watches of models
        and of children are separate streams, and the garbage collector's
        deletion of a deleted model's child may arrive before the model's."""
        ref = next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        if ref is None:
            return False
        try:
            md = self.custom.get_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL,
                                                          ref["name"], _request_timeout=15)
        except client.ApiException as exc:
            return exc.status != 404
        return md["metadata"]["uid"] == ref["uid"] and not md["metadata"].get("deletionTimestamp")

    def _owner(self, obj: dict[str, Any]) -> Optional[Timeline]:
        uid = next((r["uid"] for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        return self.models.get(uid) if uid else None

    def _deployment(self, type_: str, dep: dict[str, Any]) -> None:
        if type_ not in ("ADDED", "DELETED"):
            return
        now = time.monotonic()
        meta = dep["metadata"]
        rev = (meta.get("labels") or {}).get(LABEL_REVISION, "")
        with self.lock:
            tl = self._owner(dep)
            if tl is None or tl.gone is not None:
                return  # its model is gone: garbage collection
            if type_ == "ADDED":
                left = tl.left(rev, now)
                if left is not None and left > self.after:
                    self._flag(f"Deployment {meta['name']} created {left:.1f}s after the spec left revision {rev}")
            else:
                named = tl.names_since(rev, now)
                if named is not None and named > self.after and self._model_lives(dep):
                    self._flag(f"Deployment {meta['name']} deleted while the spec has named revision {rev} "
                               f"for {named:.1f}s")

    def _service(self, type_: str, svc: dict[str, Any]) -> None:
        if type_ != "DELETED":
            return
        meta = svc["metadata"]
        with self.lock:
            tl = self._owner(svc)
            model = (meta.get("labels") or {}).get("serving.kubento.io/model-deployment")
            if tl is not None and tl.gone is None and meta["name"] == model and self._model_lives(svc):
                self._flag(f"Service {meta['name']} deleted while its model exists")
