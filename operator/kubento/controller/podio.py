"""Requests to model pods, off the reconcile workers.

A pass never waits for a pod: it starts a job (a model's prediction checks,
a scrape of its pods' ``/metrics``) here and goes on; when the job ends, its
model is put on the work queue and the next pass takes the result. So a
pod that answers slowly, or not at all, costs its own model time and never
another model's: the workers only wait for the API server.

Jobs are coroutines on one event loop in its own thread, sharing one
aiohttp session (kubento.controller.podhttp: no redirects, capped reads,
deadlines). A model has at most one job per purpose in flight (its memory
holds the future), and a job sends at most a few requests at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, Hashable, Optional, TypeVar

import aiohttp

from kubento.controller import podhttp

log = logging.getLogger("kubento.podio")

T = TypeVar("T")
Job = Callable[[aiohttp.ClientSession], Awaitable[T]]


class PodIO:
    def __init__(self, wake: Callable[[Any], None], connections: int = podhttp.CONNECTIONS) -> None:
        self._wake = wake
        self._connections = connections
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._thread: Optional[threading.Thread] = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)

                    async def open_session() -> None:
                        self._session = podhttp.session(self._connections)
                        ready.set()
                    loop.create_task(open_session())
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name="kubento-pod-io", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def submit(self, key: Hashable, job: Job[T]) -> "Future[T]":
        """Run ``job(session)``; when it ends (done, failed or cancelled), wake ``key``."""
        loop = self._ensure()

        async def run() -> T:
            assert self._session is not None
            return await job(self._session)

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        future.add_done_callback(lambda f: self._woken(key, f))
        return future

    def _woken(self, key: Hashable, future: "Future[Any]") -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("a pod job of %s failed: %r", key, future.exception())
        self._wake(key)

    def stop(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return

        async def close() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            if self._session is not None:
                await self._session.close()
            loop.stop()
        asyncio.run_coroutine_threadsafe(close(), loop)
        if self._thread is not None:
            self._thread.join(timeout=5)


def take(jobs: dict[str, "Future[Any]"], purpose: str) -> tuple[bool, Any]:
    """(True, result) if the model's ``purpose`` job is over (and forget it);
    (False, None) while it runs or when there is none. A job that failed
    gives (True, None)."""
    over, result = peek(jobs, purpose)
    if over:
        del jobs[purpose]
    return over, result


def peek(jobs: dict[str, "Future[Any]"], purpose: str) -> tuple[bool, Any]:
    """As take, but the job stays until ``done_with`` (its results must not be
    lost to a pass that fails before it has written them)."""
    future = jobs.get(purpose)
    if future is None or not future.done():
        return False, None
    if future.cancelled() or future.exception() is not None:
        return True, None
    return True, future.result()


def done_with(jobs: dict[str, "Future[Any]"], purpose: str, seen: "Future[Any]") -> None:
    """Forget the job ``seen`` (a pass used its results and wrote them)."""
    if jobs.get(purpose) is seen:
        del jobs[purpose]


def busy(jobs: dict[str, "Future[Any]"], purpose: str) -> bool:
    future = jobs.get(purpose)
    return future is not None and not future.done()


async def limited(limit: int, calls: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Await ``calls`` with at most ``limit`` running at once; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()
    return list(await asyncio.gather(*(one(c) for c in calls)))
