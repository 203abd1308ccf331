"""Reversible down-sampling, conv-sum fusion and the decision fusion of eqs. 9-11."""

from __future__ import annotations

import pytest
import torch

from medshield.defenses.pgsl import (
    PAPER_WEIGHTS,
    ConvSumFusion,
    adaptive_weights,
    downsample,
    fuse_scores,
    pgsl_channels,
    upsample,
)

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(("c", "h", "w"), [(1, 28, 28), (3, 6, 10)])
def test_downsampling_is_exactly_reversible(c, h, w):
    g = torch.Generator().manual_seed(c)
    x = torch.rand(5, c, h, w, generator=g)
    smap = torch.rand(5, 1, h, w, generator=g)
    t = downsample(x, smap)
    assert t.shape == (5, pgsl_channels(c), h // 2, w // 2)
    back, small_map = upsample(t)
    assert torch.equal(back, x)  # bit for bit: values are only moved
    # slow reference of the layout: channel 4c + 2i + j is x[:, c, i::2, j::2]
    for ch in range(c):
        for i in range(2):
            for j in range(2):
                assert torch.equal(t[:, 4 * ch + 2 * i + j], x[:, ch, i::2, j::2])
    ref_map = torch.stack([
        torch.stack([smap[n, 0, 2 * r : 2 * r + 2, 2 * q : 2 * q + 2].max()
                     for q in range(w // 2)]) for n in range(5) for r in range(h // 2)
    ]).view(5, 1, h // 2, w // 2)
    assert torch.equal(small_map, ref_map)


def test_downsampling_rejects_odd_sizes_and_bad_maps():
    with pytest.raises(ValueError, match="even"):
        downsample(torch.rand(1, 1, 5, 6), torch.rand(1, 1, 5, 6))
    with pytest.raises(ValueError, match="saliency map"):
        downsample(torch.rand(1, 1, 4, 4), torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError, match="4C"):
        upsample(torch.rand(1, 6, 2, 2))


def test_conv_sum_fusion_is_eq8():
    torch.manual_seed(0)
    fusion = ConvSumFusion(3)
    fu, fv = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    expected = torch.nn.functional.conv2d(torch.cat([fu, fv], 1), fusion.conv.weight,
                                          fusion.conv.bias, padding=1) + fu
    torch.testing.assert_close(fusion(fu, fv), expected)


def _scores(seed: int, n: int = 6, k: int = 4) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)).softmax(1)


def test_adaptive_weights_follow_eqs_10_and_11():
    s_r, s_f, s_a = _scores(1), _scores(2), _scores(3)
    gamma, rho = adaptive_weights(s_r, s_f, s_a)
    w_g, w_r, w_b = PAPER_WEIGHTS
    assert PAPER_WEIGHTS == (0.5, 0.3, 0.2)
    for i in range(6):  # the equations, one sample at a time
        r_max, f_max, a_max = max(s_r[i].tolist()), max(s_f[i].tolist()), max(s_a[i].tolist())
        den = w_g * r_max + w_r * f_max + w_b * a_max
        assert float(gamma[i]) == pytest.approx(w_g * r_max / den)
        assert float(rho[i]) == pytest.approx(w_r * f_max / den)
        fused = fuse_scores(s_r, s_f, s_a)[i]
        beta = 1 - w_g * r_max / den - w_r * f_max / den
        expected = (w_g * r_max / den) * s_r[i] + (w_r * f_max / den) * s_f[i] + beta * s_a[i]
        torch.testing.assert_close(fused, expected)
    assert torch.allclose(fuse_scores(s_r, s_f, s_a).sum(1), torch.ones(6))


def test_equal_confidence_gives_the_initial_weights_and_batch_reading():
    uniform = torch.full((3, 5), 0.2)
    gamma, rho = adaptive_weights(uniform, uniform, uniform)
    assert torch.allclose(gamma, torch.full((3,), 0.5)) and torch.allclose(rho, torch.full((3,), 0.3))
    s_r, s_f, s_a = _scores(4), _scores(5), _scores(6)
    gamma_b, _ = adaptive_weights(s_r, s_f, s_a, per="batch")
    den = 0.5 * s_r.mean(0).max() + 0.3 * s_f.mean(0).max() + 0.2 * s_a.mean(0).max()
    assert torch.allclose(gamma_b, (0.5 * s_r.mean(0).max() / den).expand(6))
    # a confident stream gains weight
    confident = torch.eye(5)[:3]
    gamma_c, _ = adaptive_weights(confident, uniform, uniform)
    assert bool((gamma_c > 0.5).all())
    with pytest.raises(ValueError, match="non-negative"):
        adaptive_weights(s_r, s_f, s_a, weights=(-1.0, 1.0, 1.0))
