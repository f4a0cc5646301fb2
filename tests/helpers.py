"""Polling and status helpers shared by the integration and e2e tiers."""

from __future__ import annotations

import json
import time
from pathlib import Path
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


def with_ready_reason(obj: dict[str, Any] | None, reason: str) -> dict[str, Any] | None:
    """``obj`` if its Ready condition has ``reason`` (for wait_for), else None."""
    return obj if condition(obj, "Ready").get("reason") == reason else None


def get_json(kubectl: Callable[..., Any], *args: str) -> dict[str, Any] | None:
    """`kubectl get ARGS -o json` through ``kubectl`` (a runner returning a
    CompletedProcess); None when the object does not exist."""
    proc = kubectl("get", *args, "-o", "json", check=False)
    if proc.returncode != 0:
        if "NotFound" in proc.stderr:
            return None
        raise AssertionError(proc.stderr)
    return json.loads(proc.stdout)


def tail_logs(log_dir: Path | str | None, lines: int) -> list[str]:
    """The last ``lines`` lines of every component log in ``log_dir``."""
    out: list[str] = []
    if log_dir and Path(log_dir).is_dir():
        for log in sorted(Path(log_dir).glob("*.log")):
            out.append(f"--- {log} (last {lines} lines)")
            out.extend(log.read_text(errors="replace").splitlines()[-lines:])
    return out


def wait_established(kubectl: Callable[..., Any], crd: str, timeout: float = 60) -> None:
    """`kubectl wait --for=condition=Established` fails at once (instead of
    waiting) while a new CRD has no conditions yet: retry until it succeeds."""
    def established() -> bool:
        proc = kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=10s", check=False)
        return proc.returncode == 0
    wait_for(f"CRD {crd} to be Established", established, timeout=timeout, interval=0.5)


def free_port() -> int:
    """A TCP port nothing listens on now (for a server the test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
