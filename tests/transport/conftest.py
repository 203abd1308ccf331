"""Fixtures shared by the transport tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest


class Background:
    """Run ``fn`` in a thread; ``result()`` returns its value or re-raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._out: list[Any] = []
        self._err: list[BaseException] = []

        def run() -> None:
            try:
                self._out.append(fn())
            except BaseException as exc:  # noqa: BLE001 - re-raised in result()
                self._err.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 10) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background peer did not finish in time"
        if self._err:
            raise self._err[0]
        return self._out[0]


@pytest.fixture
def background() -> type[Background]:
    """The :class:`Background` runner (a fixture, so test modules need no helper import)."""
    return Background
