"""Everything kubento needs from kopf beyond its public API, in one place.

kopf (pinned in pyproject.toml) is used through its public API elsewhere
(``kopf.on.*``, ``kopf.index``, ``kopf.OperatorSettings``). What kubento
relies on and kopf does not promise sits here, each piece with the reason:

- **The listing boundary** (:class:`Watches`, :func:`install`): kopf's
  ``kopf._cogs.clients.watching.continuous_watch`` is wrapped to see where a
  watch's listing ends and when a stream is between two listings.
- **No diff base** (:class:`NoDiffBase`): a ``kopf.DiffBaseStorage`` that
  builds nothing, relying on when kopf calls its methods.
- **Quiet toggles** (:func:`quiet_toggles`): kopf's readiness ToggleSet wakes
  its waiters only when its state changes, not on every toggle made or dropped
  (every waiter on every object: quadratic in the objects of a listing).
- **The shapes checked** (:func:`problems`, :func:`shapes`): ``install``
  refuses a kopf whose internals it cannot wrap; tests/unit/test_kopfadapter.py
  compares :func:`shapes` with the kopf this was written against.

What kubento relies on from kopf's *documented* behaviour is not wrapped
here but is checked against the real kopf and a real API server, with this
adapter, by tests/integration/test_kopf_contract.py: objects of a listing
reach handlers as events of type None; index handlers have seen every
listed object before any other handler runs (kubento's cache is filled by
``kopf.index`` handlers, so no pass works from a half-filled cache); a watch
that merely times out resumes from its resourceVersion (no relist); one
that gets 410 Gone lists again and sends nothing for objects deleted while
it was away.

Upgrading kopf: run tests/unit/test_kopfadapter.py and
tests/integration/test_kopf_contract.py; they fail, rather than production,
when these rules change.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Optional

import kopf

log = logging.getLogger("kubento.watches")

StreamKey = tuple[str, str, Optional[str]]  # (group, plural, namespace or None)
# (group, plural, namespace, uids listed) -> how many models had objects the listing lacks
Listed = Callable[[str, str, Optional[str], set[str]], int]


class KopfChanged(RuntimeError):
    """kopf's internals are not what this adapter was written for."""


# ------------------------------------------------------------ the listing boundary


class Watches:
    """Which of kopf's watch streams are between an end and their next
    complete listing (pure state; :func:`install` feeds it).

    kopf lists a resource, then watches it; when the watch ends for good
    (410 Gone once the API server no longer has the resourceVersion it
    resumes from, e.g. after an API server restart; a listing that failed;
    a 429 it gave up on) it lists again and hands every listed object to the
    handlers as an event of type None. Nothing comes for objects deleted
    while it was away: no DELETED event is ever made for them, so a cache
    fed only by events keeps them for ever. So:

    - from the moment a stream ends until its next listing is complete, the
      stream is *relisting*: passes wait (``fresh``), since the cache may miss
      whatever changed meanwhile;
    - a stream cancelled or failed for good (kopf will not list it again)
      is forgotten: passes must not wait for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._relisting: set[StreamKey] = set()
        self.fresh = threading.Event()  # no stream is between an end and its next complete listing
        self.fresh.set()
        self.relists = 0  # listings after the first of their stream (for metrics and tests)
        self._seen: set[StreamKey] = set()
        self._stale_since: Optional[float] = None  # when passes began to wait (after the first listings)

    def _update(self) -> None:
        """Under the lock: ``fresh`` from the streams relisting."""
        if self._relisting:
            if self.fresh.is_set() and self._seen:
                self._stale_since = time.monotonic()
                log.info("watch of %s ended: passes wait until it has listed again",
                         ", ".join(k[1] for k in sorted(self._relisting, key=str)))
            self.fresh.clear()
        else:
            if not self.fresh.is_set() and self._stale_since is not None:
                log.info("every watch has listed again: passes resume after %.1fs",
                         time.monotonic() - self._stale_since)
                self._stale_since = None
            self.fresh.set()

    def started(self, key: StreamKey) -> None:
        with self._lock:
            self._relisting.add(key)
            self._update()

    def listed(self, key: StreamKey) -> bool:
        """The stream's listing is complete; True if it was a relist."""
        with self._lock:
            self._relisting.discard(key)
            again = key in self._seen
            self._seen.add(key)
            self.relists += again
            self._update()
        return again

    def ended(self, key: StreamKey, *, for_good: bool) -> None:
        """A stream ended: it relists next (stale until then), or, cancelled, it is gone."""
        with self._lock:
            if for_good:
                self._relisting.discard(key)
                self._seen.discard(key)
            else:
                self._relisting.add(key)
            self._update()

    def relisting(self) -> list[StreamKey]:
        with self._lock:
            return sorted(self._relisting, key=str)


@dataclass(frozen=True, eq=False)
class _Subscription:
    watches: Watches
    on_listed: Listed
    settings: Any  # a kopf.OperatorSettings: only that operator's streams; None: any stream


_subscriptions: list[_Subscription] = []
_subscriptions_lock = threading.Lock()


def _subscribers(settings: Any) -> list[_Subscription]:
    """Those of the operator run with ``settings``, else the process-wide ones."""
    with _subscriptions_lock:
        subs = list(_subscriptions)
    return [s for s in subs if s.settings is not None and s.settings is settings] or \
        [s for s in subs if s.settings is None]


def install(watches: Watches, on_listed: Listed, *, settings: Optional[kopf.OperatorSettings] = None,
            ) -> Callable[[], None]:
    """Report each complete listing of kopf's watch streams to ``on_listed``
    (the cache drops what a listing lacks, before passes may run again) and
    keep ``watches`` told which streams relist. With ``settings``, only the
    streams of the kopf operator run with that settings object (e.g. from a
    startup handler); without, every stream not so claimed. Returns the
    function that ends this subscription.

    Relies on kopf's ``infinite_watch`` calling the module-global
    ``continuous_watch`` for each listing-then-watch, which yields
    ``Bookmark.LISTED`` once the listing is over, returns normally when it
    must list again (410 Gone, a listing that failed) and raises
    ``APITooManyRequestsError`` on a 429 after which ``infinite_watch`` lists
    again; anything else it raises ends the stream for good. Raises
    :class:`KopfChanged` if kopf no longer looks like that.
    """
    found = problems()
    if found:
        raise KopfChanged("kopf's watch-stream internals changed (kopf is pinned in pyproject.toml): "
                          + "; ".join(found) + ". kubento's cache cannot see relists with this kopf version; "
                          "see kubento.controller.kopfadapter")
    from kopf._cogs.clients import watching

    if not getattr(watching.continuous_watch, "_kubento", False):
        watching.continuous_watch = _wrap(watching.continuous_watch)
    sub = _Subscription(watches, on_listed, settings)
    with _subscriptions_lock:
        _subscriptions.append(sub)

    def uninstall() -> None:
        with _subscriptions_lock:
            if sub in _subscriptions:
                _subscriptions.remove(sub)
    return uninstall


def _wrap(original: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    from kopf._cogs.clients import errors, watching

    async def continuous_watch(*, resource: Any, namespace: Optional[str], settings: Any = None,
                               **kwargs: Any) -> AsyncIterator[Any]:
        key: StreamKey = (resource.group, resource.plural, namespace)
        uids: Optional[set[str]] = set()
        for sub in _subscribers(settings):
            sub.watches.started(key)
        ended_for_good = False
        try:
            async for event in original(resource=resource, namespace=namespace, settings=settings, **kwargs):
                if event is watching.Bookmark.LISTED:
                    if uids is not None:
                        for sub in _subscribers(settings):
                            # The cache drops what is gone before passes may run again.
                            concerned = sub.on_listed(resource.group, resource.plural, namespace, uids)
                            if sub.watches.listed(key):
                                log.info("relisted %s%s: %d objects; %d models had objects that are gone",
                                         resource.plural, f" in {namespace}" if namespace else "", len(uids),
                                         concerned)
                    uids = None  # the listing is over: events from here on are the watch's
                elif uids is not None and isinstance(event, dict) and event.get("type") is None:
                    uid = ((event.get("object") or {}).get("metadata") or {}).get("uid")
                    if uid:
                        uids.add(uid)
                yield event
        except BaseException as exc:
            # infinite_watch lists again only after a normal end or a 429 it gave up on;
            # anything else (cancelled, closed, an error kopf does not retry) ends the stream.
            ended_for_good = not isinstance(exc, errors.APITooManyRequestsError)
            raise
        finally:
            for sub in _subscribers(settings):
                sub.watches.ended(key, for_good=ended_for_good)

    continuous_watch._kubento = True  # type: ignore[attr-defined]
    continuous_watch.__wrapped__ = original  # type: ignore[attr-defined]
    return continuous_watch


# ------------------------------------------------------------------ diff base


class NoDiffBase(kopf.DiffBaseStorage):
    """Set as ``settings.persistence.diffbase_storage``.

    kopf keeps a diff base (a deep copy of the object) for change-detecting
    handlers (on.create/update/resume) and builds it on every event; kubento
    registers none, and at 1,000 models that copy was ~12 % of the operator's
    CPU under a burst of creates (py-spy). This storage builds nothing.

    Relies on kopf calling ``build``/``fetch`` (keyword ``body``, and
    ``extra_fields`` for build) on every event and ``store`` only for a
    change it has handled, and on ``fetch``/``store`` being the only abstract
    methods (kopf 1.45's processing; checked by :func:`shapes`)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: kopf.Body) -> Any:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


# ------------------------------------------------------------ quiet toggles


def quiet_toggles() -> None:
    """Make ``kopf._cogs.aiokits.aiotoggles.ToggleSet`` notify its waiters
    only when its state (``is_on()``) changes.

    kopf holds every object's handlers until the index handlers have seen
    every listed object of every kind: each object's worker makes a toggle in
    the ``operator_indexed`` set, drops it once indexed, then waits for the
    whole set to be on. kopf's ``make_toggle``/``drop_toggle`` call
    ``notify_all`` every time, so each of N objects wakes all the others
    waiting: N² wake-ups, each a task step. At start with 3,000 Services in
    the watched namespaces (or a burst that begins before that settles: the
    streams keep making toggles while the set is off) this held every
    handler for minutes and took 90 % of the operator's CPU (py-spy, the
    scale bench at 3,000). A waiter's predicate is the set's state only, so a
    notification that does not change it wakes nobody who could proceed.
    Idempotent; methods of the class, so sets made before apply too.
    """
    from kopf._cogs.aiokits import aiotoggles

    cls = aiotoggles.ToggleSet
    if getattr(cls.drop_toggle, "_kubento", False):
        return

    async def changed(self: Any, change: Callable[[set[Any]], None]) -> None:
        """Change the set's toggles; wake the waiters only if its state changed."""
        async with self._condition:
            before = self.is_on()
            change(self._toggles)
            if self.is_on() != before:
                self._condition.notify_all()

    async def make_toggle(self: Any, val: bool = False, *, name: Optional[str] = None) -> Any:
        toggle = aiotoggles.Toggle(val, name=name, condition=self._condition)
        await changed(self, lambda toggles: toggles.add(toggle))
        return toggle

    async def drop_toggle(self: Any, toggle: Any) -> None:
        await changed(self, lambda toggles: toggles.discard(toggle))

    async def drop_toggles(self: Any, toggles: Any) -> None:
        dropped = list(toggles)
        await changed(self, lambda held: held.difference_update(dropped))

    for fn in (make_toggle, drop_toggle, drop_toggles):
        fn._kubento = True  # type: ignore[attr-defined]
        fn.__wrapped__ = getattr(cls, fn.__name__)  # type: ignore[attr-defined]
        setattr(cls, fn.__name__, fn)


# --------------------------------------------------------------- the shapes


def problems() -> list[str]:
    """What :func:`install` needs from kopf and does not find (empty: fine)."""
    try:
        from kopf._cogs.clients import errors, watching
    except ImportError as exc:
        return [f"kopf._cogs.clients.watching/errors cannot be imported ({exc})"]
    found = []
    original = getattr(watching, "continuous_watch", None)
    original = getattr(original, "__wrapped__", original)
    if original is None or not inspect.isasyncgenfunction(original):
        found.append("watching.continuous_watch is gone or no longer an async generator function")
    else:
        params = inspect.signature(original).parameters
        missing = [n for n in ("settings", "resource", "namespace")
                   if n not in params or params[n].kind is not inspect.Parameter.KEYWORD_ONLY]
        if missing:
            found.append(f"watching.continuous_watch takes no keyword {', '.join(missing)}")
    infinite = getattr(getattr(watching, "infinite_watch", None), "__code__", None)
    if infinite is None or "continuous_watch" not in infinite.co_names:
        found.append("watching.infinite_watch no longer calls the module's continuous_watch")
    if not hasattr(getattr(watching, "Bookmark", None), "LISTED"):
        found.append("watching.Bookmark.LISTED is gone")
    if not isinstance(getattr(errors, "APITooManyRequestsError", None), type):
        found.append("errors.APITooManyRequestsError is gone")
    try:
        from kopf._cogs.aiokits import aiotoggles
    except ImportError as exc:
        return found + [f"kopf._cogs.aiokits.aiotoggles cannot be imported ({exc})"]
    toggle_set = getattr(aiotoggles, "ToggleSet", None)
    if not all(callable(getattr(toggle_set, n, None)) for n in ("make_toggle", "drop_toggle", "drop_toggles", "is_on")):
        found.append("aiotoggles.ToggleSet has no make_toggle, drop_toggle, drop_toggles or is_on")
    return found


def shapes() -> dict[str, str]:
    """The shapes of kopf's internals this adapter uses, as text: a test
    compares them with those of the kopf it was written against."""
    from kopf._cogs.aiokits import aiotoggles
    from kopf._cogs.clients import watching
    from kopf._cogs.configs import configuration

    def sig(fn: Any) -> str:
        """Parameter names, kinds and defaults (annotations' text varies with Python's version)."""
        fn = getattr(fn, "__wrapped__", fn)
        params = [p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(fn).parameters.values()]
        text = str(inspect.Signature(params))
        return f"async generator {text}" if inspect.isasyncgenfunction(fn) else text

    base = kopf.DiffBaseStorage
    return {
        "watching.continuous_watch": sig(watching.continuous_watch),
        "watching.infinite_watch": sig(watching.infinite_watch),
        "watching.infinite_watch calls": ", ".join(sorted(
            n for n in watching.infinite_watch.__code__.co_names
            if n in ("continuous_watch", "APITooManyRequestsError", "streaming_block"))),
        "watching.Bookmark": ", ".join(m.name for m in watching.Bookmark),
        "DiffBaseStorage abstract": ", ".join(sorted(base.__abstractmethods__)),
        "DiffBaseStorage.build": sig(base.build),
        "DiffBaseStorage.fetch": sig(base.fetch),
        "DiffBaseStorage.store": sig(base.store),
        "ToggleSet.__init__": sig(aiotoggles.ToggleSet.__init__),
        "ToggleSet.make_toggle": sig(aiotoggles.ToggleSet.make_toggle),
        "ToggleSet.drop_toggle": sig(aiotoggles.ToggleSet.drop_toggle),
        "ToggleSet.drop_toggles": sig(aiotoggles.ToggleSet.drop_toggles),
        "ToggleSet.wait_for": sig(aiotoggles.ToggleSet.wait_for),
        "Toggle.__init__": sig(aiotoggles.Toggle.__init__),
        "PersistenceSettings.diffbase_storage": getattr(
            configuration.PersistenceSettings.__dataclass_fields__["diffbase_storage"].type, "__name__", "?"),
    }
