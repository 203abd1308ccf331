"""Fixtures of the data tests (writers of synthetic files live in ``data_files.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from data_files import medmnist_arrays, write_npz


@pytest.fixture
def no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset ``$MEDSHIELD_DATA`` so loaders see only what a test passes as ``root``."""
    monkeypatch.delenv("MEDSHIELD_DATA", raising=False)


@pytest.fixture
def make_npz(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "breastmnist", folder: str = "medmnist", **kw: object) -> Path:
        return write_npz(tmp_path / folder / f"{name}.npz", medmnist_arrays(**kw))  # type: ignore[arg-type]

    return make
