"""Channel conversion, resizing (checked against a slow bilinear reference), normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from medshield.data import (
    ArraySplit,
    DatasetInfo,
    Normalize,
    Resize,
    SplitDataset,
    ToChannels,
    apply_transforms,
    normalize,
    resize,
    to_channels,
)


def _images(n: int = 3, c: int = 1, side: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, side, side), dtype=np.float32)


def _bilinear_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Slow, obvious bilinear upsampling with half-pixel centres (align_corners=False)."""
    h, w = img.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            y = max((i + 0.5) * h / out_h - 0.5, 0.0)
            x = max((j + 0.5) * w / out_w - 0.5, 0.0)
            y0, x0 = min(int(y), h - 1), min(int(x), w - 1)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, x - x0
            out[i, j] = (
                img[y0, x0] * (1 - dy) * (1 - dx)
                + img[y0, x1] * (1 - dy) * dx
                + img[y1, x0] * dy * (1 - dx)
                + img[y1, x1] * dy * dx
            )
    return out


def test_channels() -> None:
    x = _images(c=1)
    rgb = to_channels(x, 3)
    assert rgb.shape == (3, 3, 6, 6) and all(np.array_equal(rgb[:, k], x[:, 0]) for k in range(3))
    y = _images(c=3)
    grey = to_channels(y, 1)
    np.testing.assert_allclose(
        grey[:, 0], 0.299 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2], rtol=1e-6
    )
    same = to_channels(x, 1)
    assert same is not x and np.array_equal(same, x)
    with pytest.raises(ValueError, match="cannot convert 3 channels to 2"):
        to_channels(y, 2)


def test_upsampling_matches_the_slow_reference() -> None:
    x = _images(n=2, c=2, side=5)
    out = resize(x, (9, 7))
    assert out.shape == (2, 2, 9, 7) and out.dtype == np.float32
    for n in range(2):
        for c in range(2):
            np.testing.assert_allclose(out[n, c], _bilinear_reference(x[n, c], 9, 7), atol=1e-5)


def test_downsampling_is_antialiased() -> None:
    stripes = np.zeros((1, 1, 32, 32), np.float32)
    stripes[..., ::2] = 1.0  # highest frequency: a low-pass filter averages it to about 0.5
    out = resize(stripes, 8)
    np.testing.assert_allclose(out[..., 1:-1], 0.5, atol=1e-6)  # borders see a one-sided kernel
    smooth = resize(stripes, 10)[..., 1:-1]
    aliased = resize(stripes, 10, antialias=False)[..., 1:-1]
    assert np.abs(smooth - 0.5).max() < 0.05 < 0.3 < np.abs(aliased - 0.5).max()
    assert np.array_equal(resize(stripes, 32), stripes)


def test_normalize() -> None:
    x = _images(c=3)
    out = normalize(x, (0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    np.testing.assert_allclose(out[:, 1], (x[:, 1] - 0.4) / 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        normalize(x, (0.5,), (0.0,))
    with pytest.raises(ValueError, match="need 1 or 3 values"):
        normalize(x, (0.5, 0.5), (1.0, 1.0))


def test_apply_transforms_to_a_dataset() -> None:
    info = DatasetInfo("toy", ("a", "b"), "image", "none", "embedded", "test", (1, 28, 28))
    splits = [ArraySplit(_images(n, 1, 28, seed=n), np.arange(n) % 2) for n in (4, 2, 3)]
    ds = SplitDataset(info, *splits, extra={"k": 1})
    before = ds.train.x.copy()
    out = apply_transforms(ds, [ToChannels(3), Resize(32), Normalize((0.5,) * 3, (0.5,) * 3)])
    assert out.info.shape == (3, 32, 32) and ds.info.shape == (1, 28, 28)
    assert out.test.x.shape == (3, 3, 32, 32) and out.extra == {"k": 1}
    np.testing.assert_array_equal(out.val.y, ds.val.y)
    np.testing.assert_array_equal(ds.train.x, before)  # input untouched
    assert "no longer in [0, 1]" in out.info.notes[-1]
    expected = (resize(to_channels(ds.train.x, 3), 32) - 0.5) / 0.5
    np.testing.assert_allclose(out.train.x, expected, rtol=1e-6)
