"""The participant's random choice of ObfNet: uniform, per sample, OS randomness by default."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import medshield.defenses.obfnet.participant as participant_mod
from medshield.defenses.obfnet import RAW, Participant
from medshield.models import ObfNet1


def _nets(k: int) -> list[torch.nn.Module]:
    return [ObfNet1(seed=i).eval() for i in range(k)]


def test_choice_is_uniform_over_k_when_seeded():
    with pytest.warns(UserWarning, match="predictable"):
        p = Participant(_nets(4), seed=1)
    c = p.choose(4000)
    assert set(np.unique(c)) == {0, 1, 2, 3}
    assert chisquare(np.bincount(c, minlength=4)).pvalue > 1e-3
    with pytest.warns(UserWarning):
        again = Participant(_nets(4), seed=1).choose(4000)
    assert np.array_equal(c, again)


def test_choice_uses_os_randomness_unless_seeded(monkeypatch):
    nets = _nets(5)
    draws = []
    for _ in range(2):  # identical global seeds must not make the choice reproducible
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        draws.append(Participant(nets).choose(200))
    assert not np.array_equal(draws[0], draws[1])
    assert chisquare(np.bincount(Participant(nets).choose(5000), minlength=5)).pvalue > 1e-6
    calls = []
    real = participant_mod.secrets.randbelow

    def spy(n: int) -> int:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(participant_mod.secrets, "randbelow", spy)
    Participant(nets).choose(30)
    assert calls == [5] * 30


def test_voluntary_raw_share():
    with pytest.warns(UserWarning):
        p = Participant(_nets(2), p_raw=0.3, seed=0)
    c = p.choose(5000)
    assert abs((c == RAW).mean() - 0.3) < 0.03
    assert set(np.unique(c)) == {RAW, 0, 1}
    assert (Participant([], p_raw=1.0).choose(10) == RAW).all()
    with pytest.raises(ValueError, match="at least one ObfNet"):
        Participant([])
    with pytest.raises(ValueError, match="p_raw"):
        Participant(_nets(1), p_raw=1.5)


def test_obfuscate_matches_a_per_sample_loop():
    nets = _nets(3)
    with pytest.warns(UserWarning):
        p = Participant(nets, p_raw=0.25, seed=2)
    x = torch.rand(40, 1, 28, 28)
    out, c = p.obfuscate(x)
    assert out.shape == x.shape and c.shape == (40,)
    with torch.no_grad():
        for i in range(40):
            ref = x[i] if c[i] == RAW else nets[c[i]](x[i : i + 1])[0]
            torch.testing.assert_close(out[i], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ObfNet index"):
        p.obfuscate(x[:2], choices=np.array([0, 3]))
