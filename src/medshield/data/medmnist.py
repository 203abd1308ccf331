"""MedMNIST v2 2D datasets from the official ``.npz`` files, with the official splits.

Each file holds ``train_images, train_labels, val_images, val_labels, test_images,
test_labels``; images are ``uint8`` ``(N, H, W)`` (grey) or ``(N, H, W, 3)`` (RGB) and labels
``uint8`` ``(N, 1)`` (``(N, 14)`` multi-hot for ChestMNIST). The loaders read
``<data>/medmnist/<name>.npz`` (or ``<data>/<name>.npz``); MedMNIST+ larger sizes are
``<name>_<size>.npz``. Images become float32 ``(N, C, H, W)`` in ``[0, 1]``.

Reference: J. Yang, R. Shi, D. Wei, Z. Liu, L. Zhao, B. Ke, H. Pfister, B. Ni, "MedMNIST v2 - A
large-scale lightweight benchmark for 2D and 3D biomedical image classification",
Scientific Data 10, 41 (2023). Data: Zenodo record 10519652.
"""

from __future__ import annotations

import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medshield.data.base import ArraySplit, DataError, SplitDataset
from medshield.data.medmnist_info import MEDMNIST_2D, MedMNISTSpec
from medshield.data.registry import (
    Availability,
    DatasetLoader,
    PathLike,
    SourceOption,
    no_data_dir_hint,
    register_dataset,
)

__all__ = [
    "MEDMNIST_2D",
    "MedMNISTSpec",
    "MedMNIST2D",
    "MEDMNIST_LOADERS",
    "ChestMNIST",
    "MedMNISTFile",
    "NPZ_KEYS",
    "read_medmnist_npz",
    "load_medmnist_npz",
]

NPZ_KEYS = (
    "train_images",
    "train_labels",
    "val_images",
    "val_labels",
    "test_images",
    "test_labels",
)
SPLITS = ("train", "val", "test")
ZENODO = "https://zenodo.org/records/10519652"
CITATION = (
    "J. Yang et al., MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical "
    "image classification, Scientific Data 10, 41 (2023)"
)


@dataclass(frozen=True)
class RawSplits:
    """Validated raw arrays of one npz file: ``images[split]`` uint8, ``labels[split]`` int64."""

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]


def read_medmnist_npz(
    path: Path,
    *,
    channels: int | None = None,
    num_classes: int | None = None,
    num_labels: int = 1,
) -> RawSplits:
    """Open and validate an official-format MedMNIST npz.

    Parameters
    ----------
    path
        The ``.npz`` file.
    channels
        Required channels (1 = ``(N, H, W)``, 3 = ``(N, H, W, 3)``); ``None`` accepts either.
    num_classes
        Labels must lie in ``0..num_classes-1`` (``None``: only non-negative is checked).
    num_labels
        Label columns: 1 for single-label sets (``(N, 1)``; ``(N,)`` is accepted too), 14
        for ChestMNIST's multi-hot labels (values 0/1).

    Returns
    -------
    :class:`RawSplits` with images as stored and labels as int64 ``(N,)`` (or ``(N, L)``).

    Raises
    ------
    DataError
        Not a zip/npz, truncated, missing keys, wrong shapes or dtypes, labels out of range.
    """
    fix = f"download the official file again from {ZENODO}"
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a valid .npz (zip) file; it is corrupt or truncated: {fix}")
    images: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path} lacks the keys {missing} (it has {sorted(npz.files)}); an official "
                    f"MedMNIST file has {list(NPZ_KEYS)}: {fix}"
                )
            for split in SPLITS:
                images[split] = npz[f"{split}_images"]
                labels[split] = npz[f"{split}_labels"]
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise DataError(f"{path} could not be read ({type(err).__name__}: {err}): {fix}") from err

    shape0: tuple[int, ...] | None = None
    for split in SPLITS:
        x, y = images[split], labels[split]
        where = f"{path} [{split}_images]"
        if x.dtype != np.uint8:
            raise DataError(f"{where}: dtype {x.dtype}, expected uint8 (official files): {fix}")
        ok_ndim = {1: (3,), 3: (4,), None: (3, 4)}[channels]
        if x.ndim not in ok_ndim or (x.ndim == 4 and x.shape[-1] != 3) or x.shape[1] != x.shape[2]:
            want = {1: "(N, H, H)", 3: "(N, H, H, 3)", None: "(N, H, H) or (N, H, H, 3)"}[channels]
            raise DataError(f"{where}: shape {x.shape}, expected {want}; not a 2D MedMNIST file")
        if shape0 is None:
            shape0 = x.shape[1:]
        elif x.shape[1:] != shape0:
            raise DataError(f"{where}: image shape {x.shape[1:]} differs from train {shape0}")
        lwhere = f"{path} [{split}_labels]"
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{lwhere}: dtype {y.dtype}, expected an integer type (uint8)")
        if num_labels == 1 and y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        want_shape = "(N, 1)" if num_labels == 1 else f"(N, {num_labels})"
        if (num_labels == 1 and y.ndim != 1) or (
            num_labels > 1 and (y.ndim != 2 or y.shape[1] != num_labels)
        ):
            raise DataError(f"{lwhere}: shape {y.shape}, expected {want_shape}")
        if len(y) != len(x):
            raise DataError(f"{path}: {split} has {len(x)} images but {len(y)} labels")
        hi = 2 if num_labels > 1 else num_classes
        if y.size and (int(y.min()) < 0 or (hi is not None and int(y.max()) >= hi)):
            rng = f"0..{hi - 1}" if hi is not None else ">= 0"
            raise DataError(
                f"{lwhere}: labels span {int(y.min())}..{int(y.max())}, outside {rng}; "
                f"the file does not match this dataset: {fix}"
            )
        labels[split] = y.astype(np.int64)
    return RawSplits(images, labels)


def _to_chw(x: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W)`` / ``(N, H, W, 3)`` -> float32 ``(N, C, H, W)`` in ``[0, 1]``."""
    f = x.astype(np.float32) / 255.0
    return f[:, None] if f.ndim == 3 else np.ascontiguousarray(f.transpose(0, 3, 1, 2))


class _MedMNISTBase(DatasetLoader):
    """Shared options of the MedMNIST loaders."""

    spec: ClassVar[MedMNISTSpec]
    modality = "image"
    citation = CITATION

    def __init__(
        self,
        *,
        root: PathLike | None = None,
        seed: int = 0,
        source: SourceOption = "auto",
        size: int = 28,
    ) -> None:
        super().__init__(root=root, seed=seed, source=source)
        self.size = size

    def _filename(self) -> str:
        return f"{self.name}.npz" if self.size == 28 else f"{self.name}_{self.size}.npz"

    def _paths(self) -> list[Path]:
        base = self.data_dir()
        if base is None:
            return []
        return [base / "medmnist" / self._filename(), base / self._filename()]

    def _hint(self) -> str:
        target = (
            str(self._paths()[0])
            if self._paths()
            else f"<data>/medmnist/{self._filename()} ({no_data_dir_hint()})"
        )
        size = "" if self.size == 28 else f", size={self.size}"
        return (
            f"put {self._filename()} at {target}; get it from {ZENODO} or with `pip install "
            f"medmnist` and medmnist.{self.spec.python_class}(split='train', download=True"
            f"{size}, root=...)"
        )

    def probe(self) -> Availability:
        for path in self._paths():
            if path.is_file():
                return Availability(self.name, "full", str(path))
        where = str(self._paths()[0]) if self._paths() else f"<data>/medmnist/{self._filename()}"
        return Availability(self.name, "missing", where, self._hint())

    def _read(self, av: Availability) -> tuple[Path, RawSplits]:
        path = Path(av.where)
        raw = read_medmnist_npz(
            path,
            channels=self.spec.channels,
            num_classes=None if self.spec.multilabel else len(self.spec.classes),
            num_labels=len(self.spec.classes) if self.spec.multilabel else 1,
        )
        side = raw.images["train"].shape[1]
        if side != self.size:
            raise DataError(
                f"{path}: images are {side}x{side} but size={self.size} was requested; pass "
                f"size={side}, or put the official {self.size}x{self.size} file there"
            )
        return path, raw

    def _size_notes(self, path: Path, raw: RawSplits) -> tuple[str, ...]:
        got = tuple(len(raw.labels[s]) for s in SPLITS)
        if got == self.spec.n_samples:
            return ()
        msg = (
            f"{path}: split sizes {got} differ from the official {self.spec.n_samples}; "
            "this is probably not the official file"
        )
        warnings.warn(msg, stacklevel=4)  # point at the caller of load()
        return (msg,)


class MedMNIST2D(_MedMNISTBase):
    """A single-label MedMNIST v2 2D dataset with its official train/val/test split.

    Parameters
    ----------
    root
        Data directory (default ``$MEDSHIELD_DATA``).
    seed
        Unused (the splits are official); kept for a uniform interface.
    size
        Image side: 28 (MedMNIST v2) or 64/128/224 (MedMNIST+ files ``<name>_<size>.npz``).
    """

    def _load(self, av: Availability) -> SplitDataset:
        path, raw = self._read(av)
        notes = self._size_notes(path, raw)
        if self.spec.task == "ordinal-regression":
            notes += ("ordinal grades treated as independent classes",)
        x = {s: _to_chw(raw.images[s]) for s in SPLITS}
        return SplitDataset(
            info=self.make_info(
                source="full", origin=str(path), shape=x["train"].shape[1:], notes=notes
            ),
            train=ArraySplit(x["train"], raw.labels["train"]),
            val=ArraySplit(x["val"], raw.labels["val"]),
            test=ArraySplit(x["test"], raw.labels["test"]),
        )


@register_dataset
class ChestMNIST(_MedMNISTBase):
    """ChestMNIST (NIH ChestX-ray14): 14 findings per image, turned into a binary task.

    ChestMNIST is multi-label, which a single int64 label per image cannot hold, so a
    binary task must be chosen explicitly with ``finding``: ``"any"`` (no finding vs at
    least one) or one finding's name (that finding vs not). The 14-column multi-hot
    labels are kept in ``dataset.extra["multilabel"][split]``.

    Parameters
    ----------
    finding
        ``None`` (load raises a :class:`DataError` explaining the choice), ``"any"``, or one
        of :attr:`classes`.
    """

    spec = MEDMNIST_2D["chestmnist"]
    name = "chestmnist"
    classes = spec.classes

    def __init__(
        self,
        *,
        root: PathLike | None = None,
        seed: int = 0,
        source: SourceOption = "auto",
        size: int = 28,
        finding: str | None = None,
    ) -> None:
        super().__init__(root=root, seed=seed, source=source, size=size)
        self.finding = finding

    def _load(self, av: Availability) -> SplitDataset:
        options = ("any", *self.spec.classes)
        if self.finding is None or self.finding not in options:
            raise DataError(
                f"chestmnist is multi-label (14 findings per image) but medshield datasets have "
                f"one label per image; got finding={self.finding!r}. Pass finding='any' (no "
                f"finding vs any finding) or one of {list(self.spec.classes)}, e.g. "
                "load_dataset('chestmnist', finding='pneumonia')"
            )
        path, raw = self._read(av)
        if self.finding == "any":
            ys = {s: (raw.labels[s].sum(axis=1) > 0).astype(np.int64) for s in SPLITS}
            classes: tuple[str, ...] = ("no finding", "any finding")
        else:
            col = self.spec.classes.index(self.finding)
            ys = {s: raw.labels[s][:, col].astype(np.int64) for s in SPLITS}
            classes = (f"no {self.finding}", self.finding)
        x = {s: _to_chw(raw.images[s]) for s in SPLITS}
        notes = self._size_notes(path, raw) + (
            f"binary task from the multi-label file: finding={self.finding!r}",
        )
        return SplitDataset(
            info=self.make_info(
                source="full",
                origin=str(path),
                shape=x["train"].shape[1:],
                notes=notes,
                classes=classes,
            ),
            train=ArraySplit(x["train"], ys["train"]),
            val=ArraySplit(x["val"], ys["val"]),
            test=ArraySplit(x["test"], ys["test"]),
            extra={"multilabel": dict(raw.labels)},
        )


def _make_loader(spec: MedMNISTSpec) -> type[MedMNIST2D]:
    doc = (
        f"{spec.python_class} (MedMNIST v2): {len(spec.classes)} classes, "
        f"{spec.channels} channel(s), official split {spec.n_samples}.\n\n"
        f"Source data: {spec.source}.\n\n{MedMNIST2D.__doc__}"
    )
    attrs: dict[str, Any] = {
        "name": spec.name,
        "classes": spec.classes,
        "spec": spec,
        "__doc__": doc,
        "__module__": __name__,
    }
    return register_dataset(type(spec.python_class, (MedMNIST2D,), attrs))  # type: ignore[return-value]


#: The registered single-label loaders, by registry name (``MEDMNIST_LOADERS["breastmnist"]``).
MEDMNIST_LOADERS: dict[str, type[MedMNIST2D]] = {
    name: _make_loader(spec) for name, spec in MEDMNIST_2D.items() if not spec.multilabel
}


@register_dataset
class MedMNISTFile(DatasetLoader):
    """Any official-format MedMNIST 2D ``.npz`` given by path (official splits).

    Parameters
    ----------
    path
        The ``.npz`` file.
    classes
        Class names; default ``"0".."K-1"`` with ``K`` = largest label + 1.
    name
        Name recorded in :class:`~medshield.data.base.DatasetInfo` (default the file stem).
    """

    name = "npz"
    aliases = ("medmnist-file",)
    modality = "image"
    citation = CITATION
    listed = False

    def __init__(
        self,
        *,
        root: PathLike | None = None,
        seed: int = 0,
        source: SourceOption = "auto",
        path: PathLike | None = None,
        classes: tuple[str, ...] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(root=root, seed=seed, source=source)
        self.path = path
        self.class_names = classes
        self.dataset_name = name

    def probe(self) -> Availability:
        if self.path is None:
            return Availability(self.name, "missing", "", "pass path=<file.npz>")
        p = Path(self.path).expanduser()
        if p.is_file():
            return Availability(self.name, "full", str(p))
        return Availability(self.name, "missing", str(p), f"no file at {p}")

    def _load(self, av: Availability) -> SplitDataset:
        path = Path(av.where)
        k = None if self.class_names is None else len(self.class_names)
        raw = read_medmnist_npz(path, num_classes=k)
        classes = self.class_names
        if classes is None:
            top = max(int(raw.labels[s].max(initial=0)) for s in SPLITS)
            classes = tuple(str(c) for c in range(top + 1))
        x = {s: _to_chw(raw.images[s]) for s in SPLITS}
        return SplitDataset(
            info=self.make_info(
                source="full",
                origin=str(path),
                shape=x["train"].shape[1:],
                classes=tuple(classes),
                name=self.dataset_name or path.stem,
            ),
            train=ArraySplit(x["train"], raw.labels["train"]),
            val=ArraySplit(x["val"], raw.labels["val"]),
            test=ArraySplit(x["test"], raw.labels["test"]),
        )


def load_medmnist_npz(
    path: PathLike, *, classes: tuple[str, ...] | None = None, name: str | None = None
) -> SplitDataset:
    """Load any official-format MedMNIST 2D ``.npz`` by path (see :class:`MedMNISTFile`)."""
    return MedMNISTFile(path=path, classes=classes, name=name).load()
