"""Writers of tiny synthetic files in the official formats (IDX, MedMNIST npz, PGM, UCI).

Shared by the tests in this directory (imported as ``from data_files import ...``)."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """IDX encoding of ``arr`` (big-endian header, C-order payload)."""
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=dtype).tobytes()


def write_mnist(
    folder: Path, n_train: int = 40, n_test: int = 20, seed: int = 0, compress: bool = True
) -> dict[str, np.ndarray]:
    """Write the four MNIST IDX files (random pixels, balanced labels); return the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        raw = idx_bytes(arr)
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


def medmnist_arrays(
    sizes: tuple[int, int, int] = (12, 4, 6),
    channels: int = 1,
    num_classes: int = 2,
    side: int = 28,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Arrays with the official keys, dtypes and shapes (labels ``(N, 1)`` uint8)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        shape = (n, side, side) if channels == 1 else (n, side, side, 3)
        out[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        out[f"{split}_labels"] = (np.arange(n) % num_classes).astype(np.uint8)[:, None]
    return out


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def pgm_bytes(img: np.ndarray, maxval: int = 255, comment: str | None = None) -> bytes:
    """P5 encoding of a ``(H, W)`` integer image (16-bit big-endian when maxval > 255)."""
    h, w = img.shape
    head = (
        b"P5\n" + (f"# {comment}\n".encode() if comment else b"") + f"{w} {h}\n{maxval}\n".encode()
    )
    dtype = ">u1" if maxval < 256 else ">u2"
    return head + np.ascontiguousarray(img, dtype=dtype).tobytes()


POSTOP_ROWS = [
    # L-CORE, L-SURF, L-O2, L-BP, SURF-STBL, CORE-STBL, BP-STBL, COMFORT, decision
    ("mid", "low", "excellent", "mid", "stable", "stable", "stable", "15", "A"),
    ("mid", "high", "excellent", "high", "stable", "stable", "stable", "10", "S"),
    ("high", "low", "excellent", "high", "stable", "stable", "mod-stable", "10", "A"),
    ("mid", "low", "good", "high", "stable", "unstable", "mod-stable", "15", "A "),
    ("mid", "mid", "excellent", "high", "stable", "stable", "stable", "10", "A"),
    ("high", "low", "good", "mid", "stable", "stable", "unstable", "15", "S"),
    ("mid", "low", "excellent", "high", "stable", "stable", "mod-stable", "05", "S"),
    ("high", "mid", "excellent", "mid", "unstable", "unstable", "stable", "10", "S"),
    ("mid", "high", "good", "mid", "stable", "stable", "stable", "10", "S"),
    ("mid", "low", "excellent", "mid", "unstable", "stable", "mod-stable", "?", "A"),
    ("low", "low", "good", "mid", "stable", "stable", "mod-stable", "07", "I"),
    ("mid", "mid", "good", "low", "stable", "stable", "stable", "10", "A"),
    ("low", "mid", "fair", "high", "mod-stable", "stable", "stable", "10", "I"),
    ("mid", "mid", "poor", "mid", "stable", "stable", "stable", "?", "A"),
    ("high", "high", "excellent", "high", "stable", "stable", "unstable", "15", "A"),
    ("mid", "low", "good", "mid", "stable", "stable", "stable", "10", "A"),
    ("low", "low", "excellent", "mid", "stable", "stable", "stable", "15", "S"),
    ("mid", "mid", "good", "high", "unstable", "stable", "stable", "10", "A"),
    ("mid", "low", "excellent", "low", "stable", "stable", "unstable", "20", "A"),
    ("high", "mid", "good", "mid", "stable", "mod-stable", "stable", "10", "A"),
]  # fmt: skip
POSTOP_HEADER = "L-CORE,L-SURF,L-O2,L-BP,SURF-STBL,CORE-STBL,BP-STBL,COMFORT,decision"


def postop_text(layout: str, rows: list[tuple[str, ...]] | None = None) -> str:
    """The table in the ``"ours"`` (header, 5/7, CRLF), ``"uci"`` or ``"spaces"`` layout."""
    rows = POSTOP_ROWS if rows is None else rows
    if layout == "ours":
        lines = [POSTOP_HEADER] + [
            ",".join(str(int(v)) if v.strip().isdigit() else v for v in r) for r in rows
        ]
        return "\r\n".join(lines) + "\r\n"
    if layout == "uci":
        return "\n".join(",".join(r) for r in rows) + "\n"
    if layout == "spaces":
        return "\n".join(" ".join(v.strip() for v in r) for r in rows) + "\n"
    raise ValueError(layout)


def wearable_trials(n_files: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic trial arrays ``{"S1_Dataset/d1p01M": (n, 9)}`` in the UCI column layout."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_files):
        s = 1 if i < n_files // 2 else 2
        name = f"S{s}_Dataset/d{s}p{i + 1:02d}{'MF'[i % 2]}"
        n = int(rng.integers(5, 15))
        a = np.empty((n, 9))
        a[:, 0] = np.arange(n) * 0.25
        a[:, 1:4] = np.round(rng.normal(size=(n, 3)), 5)
        a[:, 4] = rng.integers(1, 5, n)
        a[:, 5] = np.round(rng.uniform(-70, -40, n), 1)
        a[:, 6] = np.round(rng.uniform(0, 6.28, n), 4)
        a[:, 7] = np.round(rng.uniform(920, 926, n), 2)
        a[:, 8] = rng.integers(1, 5, n)
        out[name] = a
    return out


def trial_text(a: np.ndarray, newline: str = "\n") -> str:
    return newline.join(",".join(f"{v:g}" for v in row) for row in a) + newline


def write_wearable_folders(base: Path, trials: dict[str, np.ndarray]) -> Path:
    for name, a in trials.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(trial_text(a))
    (base / "S1_Dataset" / "README.txt").write_text("Column 1: Time in seconds\n")
    return base


def write_wearable_zip(path: Path, trials: dict[str, np.ndarray], prefix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, a in trials.items():
            zf.writestr(prefix + name, trial_text(a))
            if prefix:  # a macOS repack: resource forks that must be ignored
                zf.writestr(f"__MACOSX/{prefix}._{name.split('/')[-1]}", b"\x00\x05\x16\x07junk")
        zf.writestr(prefix + "S1_Dataset/README.txt", "readme")
    return path
