"""Shared fixtures of the secure-inference tests: seeded randomness and a two-server runner."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from medshield.secure.comm import Peer
from medshield.secure.randomness import RandomSource, SecurityWarning
from medshield.transport import ChannelStats, InProcessChannel

TwoParty = Callable[[Callable[[Peer], Any]], tuple[list[Any], tuple[ChannelStats, ChannelStats]]]


def seeded(seed: int) -> RandomSource:
    """A reproducible source without the (expected) SecurityWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return RandomSource(seed=seed)


@pytest.fixture
def rng() -> RandomSource:
    return seeded(1234)


@pytest.fixture
def make_rng() -> Callable[[int], RandomSource]:
    return seeded


def _run_two(fn: Callable[[Peer], Any]) -> tuple[list[Any], tuple[ChannelStats, ChannelStats]]:
    """Run ``fn(peer)`` as server 0 and server 1 in two threads over an in-process channel."""
    c0, c1 = InProcessChannel.pair(timeout=30.0)
    out: list[Any] = [None, None]
    errors: list[BaseException] = []

    def work(party: int, chan: InProcessChannel) -> None:
        try:
            out[party] = fn(Peer(chan, party, timeout=30.0))
        except BaseException as err:  # re-raised below
            errors.append(err)
            chan.close()

    threads = [threading.Thread(target=work, args=(p, c)) for p, c in ((0, c0), (1, c1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return out, (c0.stats.snapshot(), c1.stats.snapshot())


@pytest.fixture
def two_party() -> TwoParty:
    """``two_party(fn)`` -> ``([result0, result1], (stats0, stats1))``."""
    return _run_two
