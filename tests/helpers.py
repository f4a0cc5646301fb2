"""Polling and status helpers shared by the integration and e2e tiers."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.3) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` and
    the last value (or exception) seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - keep polling, report at the end
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """The status condition of ``type_`` (empty if absent)."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return cond
    return {}
