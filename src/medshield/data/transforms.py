"""Array transforms for the papers' input settings: channels, size, normalisation.

Each transform is a callable on a float32 ``(N, C, H, W)`` NumPy array returning a new array
(inputs are never modified). :func:`apply_transforms` runs a chain over every split of a
:class:`~medshield.data.base.SplitDataset` and returns a new dataset with ``info.shape``
updated. Typical settings: MNIST/MedMNIST at 28x28 grey (LeNet-style models), or 32x32 RGB
with ImageNet-like normalisation (ResNet/VGG-style models)::

    chain = [ToChannels(3), Resize(32), Normalize((0.5,) * 3, (0.5,) * 3)]
    ds32 = apply_transforms(ds, chain)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from medshield.data.base import ArraySplit, SplitDataset

__all__ = [
    "Transform",
    "ToChannels",
    "Resize",
    "Normalize",
    "Compose",
    "to_channels",
    "resize",
    "normalize",
    "apply_transforms",
    "LUMA_WEIGHTS",
]

#: ITU-R BT.601 luma weights used to turn RGB into grey (as PIL's ``convert("L")``).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class Transform(Protocol):
    """A map ``(N, C, H, W) -> (N, C', H', W')`` on float32 arrays."""

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


def _check_images(x: np.ndarray) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {x.shape}")


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """Convert grey <-> RGB.

    1 -> 3 repeats the channel; 3 -> 1 takes the BT.601 luma ``0.299 R + 0.587 G + 0.114 B``;
    equal counts return a copy.
    """
    _check_images(x)
    c = x.shape[1]
    if c == channels:
        return x.copy()
    if c == 1 and channels == 3:
        return np.repeat(x, 3, axis=1)
    if c == 3 and channels == 1:
        w = np.asarray(LUMA_WEIGHTS, dtype=x.dtype)
        return np.einsum("nchw,c->nhw", x, w)[:, None].astype(x.dtype)
    raise ValueError(f"cannot convert {c} channels to {channels} (supported: 1 <-> 3)")


def resize(
    x: np.ndarray,
    size: int | tuple[int, int],
    *,
    mode: str = "bilinear",
    antialias: bool | None = None,
    batch_size: int = 4096,
) -> np.ndarray:
    """Resize images with :func:`torch.nn.functional.interpolate`.

    Parameters
    ----------
    x
        ``(N, C, H, W)`` float array.
    size
        Output side (square) or ``(H', W')``.
    mode
        ``"bilinear"`` (default), ``"bicubic"``, ``"nearest"`` or ``"area"``.
    antialias
        Low-pass before shrinking (only for bilinear/bicubic). Default: on when shrinking.
    batch_size
        Images per interpolate call (bounds peak memory).
    """
    _check_images(x)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[2:]) == hw:
        return x.copy()
    if antialias is None:
        antialias = hw[0] < x.shape[2] or hw[1] < x.shape[3]
    aa = bool(antialias) and mode in ("bilinear", "bicubic")
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = np.empty((x.shape[0], x.shape[1], *hw), dtype=x.dtype)
    for i in range(0, len(x), batch_size):
        t = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))
        r = F.interpolate(t, size=hw, mode=mode, antialias=aa, **kwargs)  # type: ignore[arg-type]
        out[i : i + batch_size] = r.numpy()
    return out


def normalize(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(x - mean[c]) / std[c]`` per channel; ``mean``/``std`` of length 1 or ``C``."""
    _check_images(x)
    m = np.asarray(mean, dtype=x.dtype).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=x.dtype).reshape(1, -1, 1, 1)
    if m.shape[1] not in (1, x.shape[1]) or s.shape[1] not in (1, x.shape[1]):
        raise ValueError(f"mean/std need 1 or {x.shape[1]} values, got {len(m)}/{len(s)}")
    if np.any(s <= 0):
        raise ValueError(f"std must be positive, got {std}")
    return (x - m) / s


@dataclasses.dataclass(frozen=True)
class ToChannels:
    """Transform wrapper of :func:`to_channels`."""

    channels: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return to_channels(x, self.channels)


@dataclasses.dataclass(frozen=True)
class Resize:
    """Transform wrapper of :func:`resize`."""

    size: int | tuple[int, int]
    mode: str = "bilinear"
    antialias: bool | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return resize(x, self.size, mode=self.mode, antialias=self.antialias)


@dataclasses.dataclass(frozen=True)
class Normalize:
    """Transform wrapper of :func:`normalize` (the output is no longer in ``[0, 1]``)."""

    mean: Sequence[float]
    std: Sequence[float]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return normalize(x, self.mean, self.std)


@dataclasses.dataclass(frozen=True)
class Compose:
    """Apply transforms in order."""

    transforms: Sequence[Transform]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            x = t(x)
        return x


def apply_transforms(ds: SplitDataset, transforms: Sequence[Transform] | Transform) -> SplitDataset:
    """A new :class:`SplitDataset` with ``transforms`` applied to every split's images.

    Labels, ``extra`` and the other metadata are kept; ``info.shape`` is updated and a note
    records the chain (and that values left ``[0, 1]`` after a :class:`Normalize`).
    """
    chain = Compose(list(transforms)) if isinstance(transforms, Sequence) else transforms
    splits = {name: ArraySplit(chain(s.x), s.y.copy()) for name, s in ds.splits().items()}
    ref = next((s for s in splits.values() if len(s)), splits["train"])
    steps = chain.transforms if isinstance(chain, Compose) else [chain]
    note = "transforms: " + ", ".join(map(repr, steps))
    if any(isinstance(t, Normalize) for t in steps):
        note += " (normalised: values are no longer in [0, 1])"
    info = dataclasses.replace(ds.info, shape=tuple(ref.x.shape[1:]), notes=(*ds.info.notes, note))
    return SplitDataset(info, splits["train"], splits["val"], splits["test"], dict(ds.extra))
