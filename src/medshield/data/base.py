"""Dataset containers shared by every loader.

A loader returns a :class:`SplitDataset`: three :class:`ArraySplit` (train/val/test) of
NumPy arrays plus :class:`DatasetInfo` metadata. Images are ``float32`` in ``[0, 1]`` with
shape ``(N, C, H, W)``; tables are ``float32`` ``(N, F)``; labels are ``int64`` ``(N,)``.
Arrays rather than torch datasets keep loaders cheap and let federated partitioning,
transforms and secret sharing work on the same objects; :meth:`ArraySplit.tensors` and
:meth:`ArraySplit.loader` give torch views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["DataError", "DatasetInfo", "ArraySplit", "SplitDataset", "Source"]

Source = Literal["full", "embedded", "missing"]


class DataError(ValueError):
    """A data file is missing, corrupt or malformed. The message names the file and the fix."""


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a dataset.

    Attributes
    ----------
    name : registry name (``"mnist"``, ``"breastmnist"`` ...)
    classes : class names, index = label
    modality : ``"image"``, ``"table"`` or ``"time-series"``
    citation : whom to cite
    source : ``"full"`` (the complete public dataset from the data directory) or
        ``"embedded"`` (a subset shipped inside a dependency)
    origin : where it was read from (a path, or the package that ships it)
    shape : shape of one sample, e.g. ``(1, 28, 28)`` or ``(30,)``
    notes : caveats a user should know (for example, repaired rows)
    """

    name: str
    classes: tuple[str, ...]
    modality: str
    citation: str
    source: Source
    origin: str
    shape: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class ArraySplit:
    """One split: samples ``x`` and integer labels ``y``."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"split has {len(self.x)} samples but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray | slice) -> ArraySplit:
        return ArraySplit(self.x[index], self.y[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.ascontiguousarray(self.x)), torch.from_numpy(
            np.ascontiguousarray(self.y)
        )

    def loader(
        self, batch_size: int = 64, shuffle: bool = False, seed: int = 0, drop_last: bool = False
    ) -> DataLoader[tuple[torch.Tensor, ...]]:
        """A torch ``DataLoader`` over this split (deterministic shuffling for ``seed``)."""
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(
            TensorDataset(*self.tensors()),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=gen if shuffle else None,
            drop_last=drop_last,
        )


@dataclass
class SplitDataset:
    """Train, validation and test splits with their metadata."""

    info: DatasetInfo
    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    extra: dict[str, object] = field(default_factory=dict)

    def splits(self) -> dict[str, ArraySplit]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def summary(self) -> str:
        sizes = "/".join(str(len(s)) for s in (self.train, self.val, self.test))
        return f"{self.info.name} ({self.info.source}, {sizes} train/val/test, from {self.info.origin})"
