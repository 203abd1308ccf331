"""Shared fixtures: the real-data directory (skips with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$MEDSHIELD_DATA`` (``../shared/data`` in CI); skips the test when it is not there."""
    env = os.environ.get("MEDSHIELD_DATA")
    if not env:
        pytest.skip("MEDSHIELD_DATA is not set: real public data (../shared/data) is not available here")
    path = Path(env)
    if not path.is_dir():
        pytest.skip(f"MEDSHIELD_DATA={env} is not a directory")
    return path


@pytest.fixture(autouse=True)
def _no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
