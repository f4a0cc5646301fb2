"""Fixtures shared by the tiers (tests/ and e2e/)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def helm() -> str:
    """Helm, built from its Go module by hack/helm.sh (fails, never skips)."""
    proc = subprocess.run([str(ROOT / "hack" / "helm.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"could not build helm:\n{proc.stderr}", pytrace=False)
    return proc.stdout.strip()
