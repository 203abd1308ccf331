"""Image metrics: SSIM against a slow window-by-window reference, known properties, PSNR/MSE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medshield.metrics import gaussian_window, mse, psnr, ssim


def _ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Wang et al. (2004) literally: loop over every 11x11 window inside a (C, H, W) image,
    compute Gaussian-weighted means, variances and covariance, average SSIM over windows and
    channels."""
    win, sigma = 11, 1.5
    half = win // 2
    g = np.exp(-((np.arange(win) - half) ** 2) / (2 * sigma**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - win + 1):
            for j in range(x.shape[2] - win + 1):
                a = x[c, i : i + win, j : j + win]
                b = y[c, i : i + win, j : j + win]
                mu_a, mu_b = (w * a).sum(), (w * b).sum()
                var_a = (w * (a - mu_a) ** 2).sum()
                var_b = (w * (b - mu_b) ** 2).sum()
                cov = (w * (a - mu_a) * (b - mu_b)).sum()
                num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
                den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
                values.append(num / den)
    return float(np.mean(values))


def _pair(
    seed: int, shape: tuple[int, ...], noise: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    y = (x + noise * torch.randn(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_ssim_matches_slow_reference_multichannel() -> None:
    x, y = _pair(0, (2, 3, 16, 17))
    ours = ssim(x, y, reduction="none")
    ref = [_ssim_reference(x[i].numpy(), y[i].numpy()) for i in range(2)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-10)
    assert ssim(x, y).item() == pytest.approx(float(np.mean(ref)), abs=1e-10)


def test_ssim_data_range_255() -> None:
    x, y = _pair(1, (1, 1, 13, 13), noise=0.3)
    ours = ssim(255 * x, 255 * y, data_range=255.0).item()
    assert ours == pytest.approx(
        _ssim_reference(255 * x[0].numpy(), 255 * y[0].numpy(), 255.0), abs=1e-10
    )
    # scale invariance when data_range scales with the data
    assert ours == pytest.approx(ssim(x, y).item(), abs=1e-10)


def test_ssim_matches_skimage() -> None:
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image not installed")
    x, y = _pair(2, (3, 2, 28, 28), noise=0.2)
    ours = ssim(x, y, reduction="none").numpy()
    for i in range(3):
        ref = metrics.structural_similarity(
            x[i].numpy(),
            y[i].numpy(),
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        assert ours[i] == pytest.approx(ref, abs=1e-8)


def test_ssim_properties_mnist_size_float32() -> None:
    x, y = _pair(3, (4, 1, 28, 28), noise=0.05)
    x, y = x.float(), y.float()
    assert torch.allclose(ssim(x, x, reduction="none"), torch.ones(4), atol=1e-6)
    assert torch.allclose(ssim(x, y, reduction="none"), ssim(y, x, reduction="none"), atol=1e-6)
    gen = torch.Generator().manual_seed(4)
    scores = []
    for sigma in [0.0, 0.05, 0.1, 0.2, 0.4]:
        noisy = (x + sigma * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        scores.append(ssim(x, noisy).item())
    assert scores[0] == pytest.approx(1.0, abs=1e-6)
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), scores
    assert -1.0 <= scores[-1] < 0.9
    # single image and 2-D inputs are promoted to a batch
    assert ssim(x[0], y[0]).item() == pytest.approx(ssim(x[:1], y[:1]).item(), abs=1e-6)
    assert ssim(x[0, 0], y[0, 0]).item() == pytest.approx(ssim(x[:1], y[:1]).item(), abs=1e-6)


def test_ssim_gradients_and_uint8() -> None:
    x, y = _pair(5, (2, 1, 12, 12))
    y = y.clone().requires_grad_(True)
    ssim(x, y).backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
    xi = (x * 255).round().to(torch.uint8)
    assert ssim(xi, xi, data_range=255.0).item() == pytest.approx(1.0)


def test_ssim_errors() -> None:
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="win_size"):
        ssim(x, x)
    assert ssim(x, x, win_size=7).item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="odd"):
        gaussian_window(10)


def test_gaussian_window() -> None:
    g = gaussian_window(11, 1.5, dtype=torch.float64)
    assert g.shape == (11,)
    assert g.sum().item() == pytest.approx(1.0)
    assert torch.equal(g, g.flip(0))
    assert g[5] / g[6] == pytest.approx(math.exp(1 / (2 * 1.5**2)))


def test_mse_psnr() -> None:
    x, y = _pair(6, (3, 2, 10, 10))
    per = mse(x, y, reduction="none")
    ref = ((x - y) ** 2).reshape(3, -1).mean(1)
    assert torch.allclose(per, ref)
    p = psnr(x, y, reduction="none")
    assert torch.allclose(p, 10 * torch.log10(1 / ref))
    assert psnr(2 * x, 2 * y, data_range=2.0, reduction="none").allclose(p)
    # identical images: +inf, no NaN; a batch containing one has an infinite mean
    y2 = y.clone()
    y2[1] = x[1]
    p2 = psnr(x, y2, reduction="none")
    assert math.isinf(p2[1].item()) and p2[1] > 0
    assert torch.isfinite(p2[[0, 2]]).all()
    assert math.isinf(psnr(x, x).item())
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, y, data_range=0)
    with pytest.raises(ValueError, match="reduction"):
        mse(x, y, reduction="sum")  # type: ignore[arg-type]
