"""A keyed work queue, as client-go's: what the workers take models from.

- Adding a key that is already waiting does nothing (repeated events merge).
- A key being processed is never handed to a second worker; added meanwhile,
  it is marked dirty and queued again when the first worker is done.
- ``add_after`` brings a key back at a time (a pause's end, a deadline, the
  next autoscaler sample); only the earliest due time per key is kept.
- ``failed`` backs a key off exponentially (capped), ``succeeded`` resets it:
  a model whose passes keep failing is retried, never in a hot loop.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from typing import Callable, Generic, Hashable, Optional, TypeVar

K = TypeVar("K", bound=Hashable)

BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 backoff_base: float = BACKOFF_BASE, backoff_cap: float = BACKOFF_CAP) -> None:
        self._cv = threading.Condition()
        self._clock = clock
        self._ready: deque[K] = deque()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._base, self._cap = backoff_base, backoff_cap
        self._closed = False

    def add(self, key: K) -> None:
        with self._cv:
            self._add(key)

    def _add(self, key: K) -> None:
        self._due.pop(key, None)  # wanted now: an earlier timer is moot
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cv.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cv:
            due = self._clock() + delay
            if key in self._queued or self._due.get(key, float("inf")) <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._cv.notify()

    def failed(self, key: K) -> float:
        """Retry ``key`` after an exponential backoff; returns the delay."""
        with self._cv:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        delay = min(self._cap, self._base * 2 ** n)
        self.add_after(key, delay)
        return delay

    def succeeded(self, key: K) -> None:
        with self._cv:
            self._failures.pop(key, None)

    def forget(self, key: K) -> None:
        """The key is gone (a deleted model): drop its timer and backoff."""
        with self._cv:
            self._failures.pop(key, None)
            self._due.pop(key, None)

    def get(self, timeout: Optional[float] = None) -> Optional[K]:
        """The next key to process (marked active), or None on timeout/close."""
        end = None if timeout is None else self._clock() + timeout
        with self._cv:
            while not self._closed:
                self._promote_due()
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._active.add(key)
                    return key
                wait = None if end is None else end - self._clock()
                if self._heap:
                    until_due = self._heap[0][0] - self._clock()
                    wait = until_due if wait is None else min(wait, until_due)
                if wait is not None and wait <= 0:
                    if end is not None and self._clock() >= end:
                        return None
                    continue
                self._cv.wait(wait)
            return None

    def _promote_due(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:  # else superseded by an earlier time or an add
                del self._due[key]
                self._add(key)

    def done(self, key: K) -> None:
        with self._cv:
            self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add(key)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def depth(self) -> int:
        """Keys waiting to be processed now (not those waiting for a timer)."""
        with self._cv:
            return len(self._ready)

    def scheduled(self) -> int:
        with self._cv:
            return len(self._due)
