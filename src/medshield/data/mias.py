"""mini-MIAS mammograms: 322 images (1024x1024 8-bit PGM) labelled normal / benign / malignant.

Files: ``<data>/mias/Info.txt`` and ``<data>/mias/mdb001.pgm`` ... (``<data>/all-mias/`` is
accepted too). ``Info.txt`` has one row per abnormality: reference number, background tissue
(F/G/D), class of abnormality (CALC, CIRC, SPIC, MISC, ARCH, ASYM or NORM), severity (B/M;
absent for NORM), and the x, y, radius of the abnormality (sometimes absent). A reference
with several abnormalities appears on several rows; the image label is malignant if any of
its rows is M, else benign if any is B, else normal.

Images are read with a small PGM parser (P5 binary or P2 ASCII, 8 or 16 bit), scaled to
``[0, 1]`` and resized to ``size x size`` (default 28) with bilinear antialiased
interpolation, giving float32 ``(N, 1, size, size)``.

The split is stratified and seeded at the level of *women*: consecutive references
(mdb001/mdb002, mdb003/mdb004, ...) are the left and right breast of the same woman, and
both go to the same split (``group_pairs=True``).

Reference: J. Suckling et al., "The Mammographic Image Analysis Society digital mammogram
database", Excerpta Medica, International Congress Series 1069, pp. 375-378 (1994).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medshield.data.base import ArraySplit, DataError, SplitDataset
from medshield.data.registry import (
    Availability,
    DatasetLoader,
    PathLike,
    SourceOption,
    no_data_dir_hint,
    register_dataset,
)
from medshield.data.splits import stratified_split

__all__ = ["MIAS", "MiasRecord", "read_pgm", "read_mias_info"]

MIAS_URL = "http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz (also Kaggle: orvile/mias-dataset)"
ABNORMALITIES = ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM")
_REF = re.compile(r"^mdb\d{3}$", re.IGNORECASE)


def read_pgm(path: Path) -> np.ndarray:
    """Read a PGM image (P5 binary or P2 ASCII) as float32 ``(H, W)`` in ``[0, 1]``.

    Raises
    ------
    DataError
        Not a PGM, a malformed header, or fewer pixels than the header announces.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    magic = raw[:2]
    if magic not in (b"P5", b"P2"):
        raise DataError(f"{path}: not a PGM file (starts with {raw[:4]!r}, expected P5 or P2)")
    tokens: list[int] = []
    pos = 2
    while len(tokens) < 3:
        while pos < len(raw) and raw[pos : pos + 1].isspace():
            pos += 1
        if raw[pos : pos + 1] == b"#":
            while pos < len(raw) and raw[pos : pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(raw) and not raw[pos : pos + 1].isspace() and raw[pos : pos + 1] != b"#":
            pos += 1
        word = raw[start:pos]
        if not word.isdigit():
            raise DataError(f"{path}: malformed PGM header (expected width, height, maxval)")
        tokens.append(int(word))
    width, height, maxval = tokens
    if width == 0 or height == 0 or not 0 < maxval < 65536:
        raise DataError(f"{path}: invalid PGM header {width}x{height}, maxval {maxval}")
    n = width * height
    if magic == b"P2":
        try:
            values = np.array(raw[pos:].split()[:n], dtype=np.int64)
        except ValueError:
            raise DataError(f"{path}: non-numeric pixel in ASCII PGM") from None
        pixels = values
    else:
        pos += 1  # exactly one whitespace byte after maxval
        dtype = np.dtype("u1") if maxval < 256 else np.dtype(">u2")
        need = n * dtype.itemsize
        if len(raw) - pos < need:
            raise DataError(
                f"{path}: truncated PGM ({len(raw) - pos} pixel bytes, header {width}x{height} "
                f"needs {need}); copy the file again"
            )
        pixels = np.frombuffer(raw, dtype=dtype, count=n, offset=pos)
    if len(pixels) != n:
        raise DataError(f"{path}: {len(pixels)} pixels, header {width}x{height} needs {n}")
    if int(pixels.max(initial=0)) > maxval:
        raise DataError(f"{path}: pixel value above maxval {maxval}")
    return (pixels.astype(np.float32) / maxval).reshape(height, width)


@dataclass(frozen=True)
class MiasRecord:
    """One image: reference, background tissue, abnormality classes, label 0/1/2."""

    ref: str
    tissue: str
    abnormalities: tuple[str, ...]
    label: int


def read_mias_info(path: Path) -> list[MiasRecord]:
    """Parse ``Info.txt`` into one record per image, in order of first appearance.

    Lines that do not start with a reference like ``mdb001`` (headers, notes) are skipped.

    Raises
    ------
    DataError
        Unknown abnormality class, missing or invalid severity, a reference listed both as
        normal and abnormal, or no rows at all.
    """
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    tissue: dict[str, str] = {}
    kinds: dict[str, list[str]] = {}
    sev: dict[str, set[str]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        t = line.split()
        if not t or not _REF.match(t[0]):
            continue
        where = f"{path}, line {lineno}"
        ref = t[0].lower()
        if len(t) < 3:
            raise DataError(
                f"{where}: expected 'ref tissue class [severity x y radius]', got {line!r}"
            )
        cls = t[2].upper()
        if cls not in (*ABNORMALITIES, "NORM"):
            raise DataError(
                f"{where}: abnormality class {t[2]!r} is not one of {[*ABNORMALITIES, 'NORM']}"
            )
        tissue.setdefault(ref, t[1].upper())
        kinds.setdefault(ref, []).append(cls)
        sev.setdefault(ref, set())
        if cls != "NORM":
            if len(t) < 4 or t[3].upper() not in ("B", "M"):
                got = t[3] if len(t) > 3 else "nothing"
                raise DataError(f"{where}: {ref} ({cls}) needs severity B or M, got {got!r}")
            sev[ref].add(t[3].upper())
    if not kinds:
        raise DataError(
            f"{path}: no rows like 'mdb001 G CIRC B 535 425 197'; not the MIAS Info.txt"
        )
    records = []
    for ref, ks in kinds.items():
        if "NORM" in ks and len(set(ks)) > 1:
            raise DataError(
                f"{path}: {ref} is listed both as NORM and as {sorted(set(ks) - {'NORM'})}"
            )
        label = 0 if "NORM" in ks else (2 if "M" in sev[ref] else 1)
        records.append(MiasRecord(ref, tissue[ref], tuple(ks), label))
    return records


@register_dataset
class MIAS(DatasetLoader):
    """mini-MIAS mammograms, 3 classes (normal / benign / malignant), resized.

    Parameters
    ----------
    root
        Data directory (default ``$MEDSHIELD_DATA``).
    seed
        Seed of the stratified split.
    size
        Output side in pixels (28 default; 64, 128 ... work too).
    fractions
        Train/val/test fractions (of women when ``group_pairs``, else of images).
    group_pairs
        Keep both breasts of a woman (mdb2k-1, mdb2k) in the same split.
    """

    name = "mias"
    aliases = ("mini-mias",)
    classes = ("normal", "benign", "malignant")
    modality = "image"
    citation = (
        "J. Suckling et al., The Mammographic Image Analysis Society digital mammogram database, "
        "Excerpta Medica, International Congress Series 1069, 375-378 (1994)"
    )

    def __init__(
        self,
        *,
        root: PathLike | None = None,
        seed: int = 0,
        source: SourceOption = "auto",
        size: int = 28,
        fractions: Sequence[float] = (0.7, 0.1, 0.2),
        group_pairs: bool = True,
    ) -> None:
        super().__init__(root=root, seed=seed, source=source)
        self.size = size
        self.fractions = fractions
        self.group_pairs = group_pairs

    def _folder(self) -> tuple[Path | None, Path | None]:
        """(folder, Info.txt) of the first candidate folder holding an Info.txt."""
        base = self.data_dir()
        if base is None:
            return None, None
        for folder in (base / "mias", base / "all-mias", base / "mias" / "all-mias"):
            for name in ("Info.txt", "info.txt", "INFO.TXT"):
                if (folder / name).is_file():
                    return folder, folder / name
        return base / "mias", None

    def probe(self) -> Availability:
        folder, info = self._folder()
        target = str(folder) if folder else f"<data>/mias/ ({no_data_dir_hint()})"
        hint = f"extract Info.txt and mdb001.pgm ... mdb322.pgm from {MIAS_URL} into {target}"
        if folder is None or info is None:
            return Availability(self.name, "missing", str(folder or "<data>/mias"), hint)
        try:
            refs = [r.ref for r in read_mias_info(info)]
        except DataError as err:
            return Availability(self.name, "missing", str(info), f"{err}; {hint}")
        absent = [r for r in refs if _pgm_path(folder, r) is None]
        if absent:
            return Availability(
                self.name, "missing", str(folder),
                f"{len(absent)} of {len(refs)} images missing (e.g. {absent[0]}.pgm); {hint}",
            )  # fmt: skip
        return Availability(self.name, "full", str(folder))

    def _load(self, av: Availability) -> SplitDataset:
        folder, info = self._folder()
        assert folder is not None and info is not None
        records = read_mias_info(info)
        x = np.empty((len(records), 1, self.size, self.size), dtype=np.float32)
        for i, rec in enumerate(records):
            path = _pgm_path(folder, rec.ref)
            assert path is not None
            x[i, 0] = resize_image(read_pgm(path), self.size)
        y = np.array([r.label for r in records], dtype=np.int64)
        if self.group_pairs:
            woman = np.array([(int(r.ref[3:]) + 1) // 2 for r in records])
        else:
            woman = np.arange(len(records))
        ids, inverse = np.unique(woman, return_inverse=True)
        group_label = np.zeros(len(ids), dtype=np.int64)
        np.maximum.at(group_label, inverse, y)
        parts = stratified_split(group_label, tuple(self.fractions), self.seed)
        idx = [np.flatnonzero(np.isin(inverse, p)) for p in parts]
        refs = np.array([r.ref for r in records])
        notes = (f"resized to {self.size}x{self.size} (bilinear, antialiased)",)
        if self.group_pairs:
            notes += ("split by woman: both breasts (mdb2k-1, mdb2k) in the same split",)
        splits = [ArraySplit(x[i], y[i]) for i in idx]
        return SplitDataset(
            info=self.make_info(
                source="full", origin=str(folder), shape=(1, self.size, self.size), notes=notes
            ),
            train=splits[0],
            val=splits[1],
            test=splits[2],
            extra={
                "refs": {s: refs[i] for s, i in zip(("train", "val", "test"), idx, strict=True)}
            },
        )


def _pgm_path(folder: Path, ref: str) -> Path | None:
    for name in (f"{ref}.pgm", f"{ref.upper()}.pgm", f"{ref}.PGM"):
        if (folder / name).is_file():
            return folder / name
    return None


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """Resize one ``(H, W)`` image to ``(size, size)`` (bilinear; antialiased when shrinking)."""
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    shrink = size < max(img.shape)
    out = F.interpolate(
        t, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )
    return out[0, 0].clamp_(0.0, 1.0).numpy()
