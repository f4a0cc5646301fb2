"""What kopf does not tell handlers: where a watch's listing ends, and
whether a watch is between two listings.

kopf lists a resource, then watches it; when the watch ends for good (410
Gone after a long disconnect, an API server restart, a connection it cannot
resume) it lists again and hands every listed object to the handlers as an
event of type None. Nothing comes for objects deleted while it was away: no
DELETED event is ever made for them, so a cache fed only by events keeps
them for ever (a Service that is gone still "conflicts"; a deleted model is
retried for ever). kopf marks the end of a listing only for itself
(``Bookmark.LISTED``), so kubento wraps the generator that yields it:

- each complete listing is reported (the resource, the namespace watched —
  None: cluster-wide — and the uids listed), and the cache drops what the
  listing did not have;
- from the moment a watch stream ends until its next listing is complete,
  the stream is *relisting*: passes wait (``fresh``), since the cache may
  miss whatever changed meanwhile.

This wraps ``kopf._cogs.clients.watching.continuous_watch`` (kopf 1.45;
``install`` fails loudly if kopf moved it), the one place both are visible.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, AsyncIterator, Callable, Optional

log = logging.getLogger("kubento.watches")

StreamKey = tuple[str, str, Optional[str]]  # (group, plural, namespace or None)
# (group, plural, namespace, uids listed) -> how many models had objects the listing lacks
Listed = Callable[[str, str, Optional[str], set[str]], int]


class Watches:
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


def install(watches: Watches, on_listed: Listed) -> None:
    """Wrap kopf's continuous_watch once (idempotent)."""
    from kopf._cogs.clients import errors, watching

    original = getattr(watching, "continuous_watch", None)
    if original is None or not hasattr(watching, "Bookmark") or not hasattr(watching.Bookmark, "LISTED"):
        raise RuntimeError("kopf's watching.continuous_watch/Bookmark.LISTED are gone: kubento's cache cannot see "
                           "relists with this kopf version (pinned in pyproject.toml)")
    if getattr(original, "_kubento", False):
        return

    async def continuous_watch(*, resource: Any, namespace: Optional[str], **kwargs: Any) -> AsyncIterator[Any]:
        key: StreamKey = (resource.group, resource.plural, namespace)
        uids: Optional[set[str]] = set()
        watches.started(key)
        ended_for_good = False
        try:
            async for event in original(resource=resource, namespace=namespace, **kwargs):
                if event is watching.Bookmark.LISTED:
                    if uids is not None:
                        # The cache drops what is gone before passes may run again.
                        concerned = on_listed(resource.group, resource.plural, namespace, uids)
                        if watches.listed(key):
                            log.info("relisted %s%s: %d objects; %d models had objects that are gone",
                                     resource.plural, f" in {namespace}" if namespace else "", len(uids), concerned)
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
            watches.ended(key, for_good=ended_for_good)

    continuous_watch._kubento = True  # type: ignore[attr-defined]
    watching.continuous_watch = continuous_watch
