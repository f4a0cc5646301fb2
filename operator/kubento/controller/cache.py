"""The operator's view of the cluster, kept from watches.

kopf watches ModelDeployments and every kind of child kubento makes (only
objects labelled managed-by=kubento, filtered by the API server), and the
ConfigMaps a build may read. Each event replaces the object here, stripped
to the fields kubento uses, so memory stays small and a reconcile pass reads
nothing from the API server.

kopf sends no DELETED for objects deleted while a watch was away; after
each complete listing (kubento.controller.kopfadapter) :meth:`Cache.relisted`
drops what the listing did not have.

A write kubento makes (a server-side apply, a scale, a delete, a status
patch) is shown at once as an *overlay*, until the watch delivers any other
version than the one the write replaced (kopf merges events that come close
together, so the write's own version may never be seen on its own), or
OVERLAY_SECONDS pass: a pass that follows its own write never works from
the state before it.

Thread-safe: kopf's handlers write from the event loop, workers read from
their threads; :meth:`Cache.model` copies one model's world under the lock.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from kubento.controller import kinds
from kubento.controller.kinds import CONFIG_MAP, MODEL
from kubento.controller.world import World

Key = tuple[str, str]  # (namespace, name) of a ModelDeployment
OVERLAY_SECONDS = 15.0
TOMBSTONE_SECONDS = 60.0  # a watch event queued before a relist may still arrive for an object it dropped


def config_map_source(model: Optional[dict[str, Any]]) -> Optional[str]:
    """The ConfigMap a model's build reads, if any."""
    build = (((model or {}).get("spec") or {}).get("bento") or {}).get("build") or {}
    return ((build.get("source") or {}).get("configMap") or {}).get("name")


def config_maps_read(model: Optional[dict[str, Any]]) -> set[str]:
    """Every ConfigMap a model reads: its build source, its prediction checks'
    inputs and its reference profile (spec.monitoring.statistics.reference)."""
    out = {config_map_source(model)}
    spec = (model or {}).get("spec") or {}
    checks = spec.get("predictionChecks") or {}
    refs = [(c.get("bodyFrom") or {}) for c in checks.get("checks") or []]
    refs.append((checks.get("compareWithStable") or {}).get("inputs") or {})
    out |= {(r.get("configMapKeyRef") or {}).get("name") for r in refs}
    reference = (((spec.get("monitoring") or {}).get("statistics") or {}).get("reference") or {})
    out.add((reference.get("configMapKeyRef") or {}).get("name"))
    return {name for name in out if name}


def model_of(kind: str, obj: dict[str, Any]) -> Optional[str]:
    """The name of the ModelDeployment an object belongs to (None: not one of ours)."""
    return kinds.of(kind).model_of(obj)


@dataclass
class _Overlay:
    obj: Optional[dict[str, Any]]  # None: deleted by kubento
    replaced: Optional[str]  # the resourceVersion cached when kubento wrote (events of it are stale)
    until: float


class Cache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        # kind -> (namespace, name) -> stripped object, as watched
        self._objects: dict[str, dict[Key, dict[str, Any]]] = {kind.name: {} for kind in kinds.REGISTRY}
        # kind -> model key -> names of its objects of that kind
        self._by_model: dict[str, dict[Key, set[str]]] = {kind.name: {} for kind in kinds.REGISTRY}
        self._overlays: dict[tuple[str, str, str], _Overlay] = {}
        # (kind, namespace, name) -> the resourceVersion of kubento's last write of it: its
        # watch event is an echo, which needs no pass (the pass that wrote runs once more)
        self._written: dict[tuple[str, str, str], str] = {}
        # (namespace, ConfigMap) -> models whose build reads it: only those keep their content
        self._config_readers: dict[Key, set[str]] = {}
        # uid -> when a relist found it gone: late events of the stream before it are ignored
        self._tombstones: dict[str, float] = {}
        self.synced = threading.Event()  # every kind's initial listing is in

    # ---------------------------------------------------------------- writes

    def update(self, kind: str, obj: dict[str, Any]) -> list[Key]:
        """A watch event (added or modified). Returns the models it concerns:
        none when it only echoes kubento's own write; a ConfigMap's readers."""
        stripped = kinds.of(kind).strip(obj)
        meta = stripped["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        model = model_of(kind, stripped)
        with self._lock:
            if meta.get("uid") in self._tombstones:
                return []  # an event from before the relist that found it gone
            if kind == CONFIG_MAP:
                if self._config_readers.get((ns, name)):
                    stripped["content"] = True
                else:
                    stripped = {"metadata": meta}  # no build reads it: its existence is enough
            old = self._objects[kind].get((ns, name))
            self._objects[kind][(ns, name)] = stripped
            self._index(kind, ns, name, old, stripped)
            ov = self._overlays.get((kind, ns, name))
            if ov is not None and ov.replaced != meta.get("resourceVersion"):
                self._overlays.pop((kind, ns, name), None)  # the watch caught up with kubento's write
            echo = self._written.get((kind, ns, name)) == meta.get("resourceVersion")
            readers = sorted(self._config_readers.get((ns, name), ())) if kind == CONFIG_MAP else []
        if kind == CONFIG_MAP:
            return [(ns, m) for m in readers]
        return [(ns, model)] if model and not echo else []

    def delete(self, kind: str, obj: dict[str, Any]) -> list[Key]:
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        with self._lock:
            old = self._objects[kind].pop((ns, name), None)
            self._index(kind, ns, name, old, None)
            self._overlays.pop((kind, ns, name), None)
            self._written.pop((kind, ns, name), None)
            readers = sorted(self._config_readers.get((ns, name), ())) if kind == CONFIG_MAP else []
        if kind == CONFIG_MAP:
            return [(ns, m) for m in readers]
        model = model_of(kind, old or obj)
        return [(ns, model)] if model else []

    def relisted(self, kind: str, namespace: Optional[str], uids: set[str]) -> list[Key]:
        """A complete listing of ``kind`` in ``namespace`` (None: every
        namespace) had these uids: what the cache has beyond them was deleted
        while the watch was away. Returns the models concerned."""
        now = self._clock()
        affected: set[Key] = set()
        with self._lock:
            for uid, when in list(self._tombstones.items()):
                if now - when > TOMBSTONE_SECONDS:
                    del self._tombstones[uid]
            for (ns, name), obj in list(self._objects[kind].items()):
                uid = obj["metadata"].get("uid")
                if (namespace is not None and ns != namespace) or not uid or uid in uids:
                    continue
                del self._objects[kind][(ns, name)]
                self._index(kind, ns, name, obj, None)
                self._overlays.pop((kind, ns, name), None)
                self._written.pop((kind, ns, name), None)
                self._tombstones[uid] = now
                model = model_of(kind, obj)
                if model:
                    affected.add((ns, model))
                # found by name, whoever made it (Cache.model)
                affected |= {(ns, m) for m in kinds.of(kind).models_named(name) if (ns, m) in self._objects[MODEL]}
                if kind == CONFIG_MAP:
                    affected |= {(ns, m) for m in self._config_readers.get((ns, name), ())}
        return sorted(affected)

    def _index(self, kind: str, ns: str, name: str, old: Optional[dict[str, Any]], new: Optional[dict[str, Any]]) -> None:
        if kind == MODEL:
            before_cm, after_cm = config_maps_read(old), config_maps_read(new)
            for cm in before_cm - after_cm:
                self._config_readers.get((ns, cm), set()).discard(name)
            for cm in after_cm:
                self._config_readers.setdefault((ns, cm), set()).add(name)
        before = model_of(kind, old) if old else None
        after = model_of(kind, new) if new else None
        if before and before != after:
            names = self._by_model[kind].get((ns, before))
            if names is not None:
                names.discard(name)
                if not names:
                    del self._by_model[kind][(ns, before)]
        if after:
            self._by_model[kind].setdefault((ns, after), set()).add(name)

    def version(self, kind: str, namespace: str, name: str) -> Optional[str]:
        """The resourceVersion the watch last delivered (None: none seen).
        Taken before a write, it tells :meth:`wrote` whether the watch has
        moved on meanwhile."""
        with self._lock:
            obj = self._objects[kind].get((namespace, name))
            return (obj or {}).get("metadata", {}).get("resourceVersion")

    def wrote(self, kind: str, obj: Optional[dict[str, Any]], namespace: str = "", name: str = "",
              replaced: Optional[str] = None) -> None:
        """kubento wrote ``obj`` (the API server's answer; None: deleted it)
        over the version ``replaced`` (from :meth:`version` before the write).
        If the watch already delivered a later version, there is nothing to
        show: the cache is at least as new as the write."""
        if obj is not None:
            stripped = kinds.of(kind).strip(obj)
            namespace, name = stripped["metadata"].get("namespace", namespace), stripped["metadata"]["name"]
        else:
            stripped = None
        with self._lock:
            if stripped is not None and stripped["metadata"].get("resourceVersion"):
                self._written[(kind, namespace, name)] = stripped["metadata"]["resourceVersion"]
            cached = self._objects[kind].get((namespace, name))
            if (cached or {}).get("metadata", {}).get("resourceVersion") != replaced:
                self._overlays.pop((kind, namespace, name), None)
                return  # the watch moved on while kubento wrote
            if cached is None and stripped is None:
                return  # deleted something the watch never showed: nothing to hide
            self._overlays[(kind, namespace, name)] = _Overlay(stripped, replaced, self._clock() + OVERLAY_SECONDS)
            if stripped is not None:
                model = model_of(kind, stripped)
                if model:
                    self._by_model[kind].setdefault((namespace, model), set()).add(name)

    # ----------------------------------------------------------------- reads

    def _current(self, kind: str, ns: str, name: str, now: float) -> Optional[dict[str, Any]]:
        ov = self._overlays.get((kind, ns, name))
        if ov is not None:
            if now < ov.until:
                return ov.obj
            del self._overlays[(kind, ns, name)]
        return self._objects[kind].get((ns, name))

    def get(self, kind: str, namespace: str, name: str) -> Optional[dict[str, Any]]:
        with self._lock:
            obj = self._current(kind, namespace, name, self._clock())
            return copy.deepcopy(obj) if obj is not None else None

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        with self._lock:
            return self._current(kind, namespace, name, self._clock()) is not None

    def model(self, key: Key) -> World:
        """Copies of one model's objects (deep: a pass may change its copies)."""
        ns, name = key
        now = self._clock()
        with self._lock:
            world = World(copy.deepcopy(self._current(MODEL, ns, name, now)))
            for kind in kinds.CHILDREN:
                # Its objects, and those with the names kubento gives them whoever
                # made them: one without kubento's labels is someone else's (a conflict).
                names = set(self._by_model[kind.name].get(key, ())) | set(kind.names_of(name))
                objs = (self._current(kind.name, ns, n, now) for n in sorted(names))
                world.children[kind.name] = [copy.deepcopy(o) for o in objs if o is not None]
        return world

    def keys(self) -> list[Key]:
        with self._lock:
            return sorted(self._objects[MODEL])

    def models_reading(self, namespace: str, config_map: str) -> list[Key]:
        """ModelDeployments whose build source is this ConfigMap."""
        with self._lock:
            return [(namespace, m) for m in sorted(self._config_readers.get((namespace, config_map), ()))]

    def config_map(self, namespace: str, name: str) -> tuple[bool, Optional[dict[str, Any]]]:
        """(known, content): known is False when the ConfigMap exists but its
        content was not kept (no build read it when it last changed: the
        caller reads it once, then the watch keeps it); content is None when
        it does not exist."""
        with self._lock:
            obj = self._objects[CONFIG_MAP].get((namespace, name))
            if obj is None:
                return True, None
            if not obj.get("content"):
                return False, None
            return True, {"data": dict(obj.get("data") or {}), "binaryData": dict(obj.get("binaryData") or {})}

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {kind: len(objs) for kind, objs in self._objects.items()}
