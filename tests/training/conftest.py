"""Fixtures of the training tests: small train/test splits of synthetic blob tasks."""

from __future__ import annotations

import pytest
from training_tasks import blobs

from medshield.data.base import ArraySplit


@pytest.fixture
def binary_task() -> tuple[ArraySplit, ArraySplit]:
    return blobs(320, 2, seed=0), blobs(160, 2, seed=1)


@pytest.fixture
def multiclass_task() -> tuple[ArraySplit, ArraySplit]:
    return blobs(400, 4, seed=2), blobs(200, 4, seed=3)
