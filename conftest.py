"""Fixtures shared by the tiers (tests/ and e2e/)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent

# Every manifest a test builds is checked against the Kubernetes client's models
# (kubento.builders.validate; the operator itself leaves that to the API server).
os.environ["KUBENTO_CHECK_MANIFESTS"] = "1"

# Property tests check decisions, not speed: hypothesis' per-example deadline (200 ms) fails them
# on a busy machine (seen with 4 builds sharing 2 cores), so there is none.
settings.register_profile("kubento", deadline=None)
settings.load_profile("kubento")


@pytest.fixture(scope="session")
def helm() -> str:
    """Helm, built from its Go module by hack/helm.sh (fails, never skips)."""
    proc = subprocess.run([str(ROOT / "hack" / "helm.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"could not build helm:\n{proc.stderr}", pytrace=False)
    return proc.stdout.strip()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used a cluster shows the tail of its component logs."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for fixture in ("cluster", "controlplane", "monitoring", "chaos"):
        target = getattr(item, "funcargs", {}).get(fixture)
        if target is not None:
            try:
                report.sections.append((f"{fixture} logs", target.log_tail()))
            except Exception as exc:  # noqa: BLE001 - never hide the test's own failure
                report.sections.append((f"{fixture} logs", f"could not collect: {exc}"))
