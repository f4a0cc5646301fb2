"""Are the workers making progress? What the liveness probe asks.

kopf's own ``/healthz`` only says its event loop answers; the passes run in
kubento's worker threads, and a worker stuck in one pass (an API request on
a connection that went silent: the client sets no timeout) would leave the
probe green while that worker's share of the models waits forever. Each
worker says when it begins and ends a pass; the probe fails when a pass has
run longer than ``KUBENTO_STALL_SECONDS`` (default 180: a pass makes a few
API requests and never waits for a pod), or a worker thread has died, and
the kubelet restarts the operator.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Hashable, Iterable, Mapping, Optional

STALL_SECONDS = 180.0


class Progress:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._passes: dict[str, tuple[Hashable, float]] = {}  # worker -> (model, since)

    def began(self, key: Hashable) -> None:
        with self._lock:
            self._passes[threading.current_thread().name] = (key, self._clock())

    def ended(self) -> None:
        with self._lock:
            self._passes.pop(threading.current_thread().name, None)

    def passes(self) -> dict[str, tuple[Hashable, float]]:
        with self._lock:
            return dict(self._passes)

    def now(self) -> float:
        return self._clock()


def stalled(passes: Mapping[str, tuple[Hashable, float]], dead: Iterable[str], now: float,
            limit: float) -> Optional[str]:
    """Why the workers are not making progress, or None: the longest pass
    over ``limit`` seconds, or worker threads that are no longer alive."""
    dead = sorted(dead)
    if dead:
        return f"worker threads stopped: {', '.join(dead)}"
    late = [(now - since, worker, key) for worker, (key, since) in passes.items() if now - since > limit]
    if not late:
        return None
    took, worker, key = max(late, key=lambda x: x[0])
    model = "/".join(key) if isinstance(key, tuple) else str(key)
    more = f" ({len(late) - 1} more workers stuck)" if len(late) > 1 else ""
    return f"{worker} has been in one pass over {model} for {took:.0f}s (limit {limit:g}s){more}"
