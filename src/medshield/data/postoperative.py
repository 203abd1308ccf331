"""UCI Post-Operative Patient: where to send a patient after surgery (90 rows, 8 attributes).

File: ``<data>/uci/postoperative/post-operative.data``. Accepted layouts:

* the UCI original: comma-separated, no header, COMFORT written ``05``/``07``;
* our copy (see ``MANIFEST.md`` section 3): an added header line
  ``L-CORE,...,COMFORT,decision``, COMFORT written ``5``/``7``;
* whitespace-separated copies; CRLF line endings; trailing spaces (``A `` on one row).

Missing values (``?``, three in COMFORT) are imputed after splitting with the *train*
median (numeric) or mode (categorical); :attr:`DatasetInfo.notes` says how many and with
what. Attributes are one-hot encoded by default (``encoding="onehot"``, 22 columns + COMFORT)
or ordinal (``encoding="ordinal"``: low < mid < high, poor < fair < good < excellent,
unstable < mod-stable < stable, coded ``0..k-1`` and divided by ``k-1``). COMFORT
(an integer 0..20) is divided by 20, so every feature lies in ``[0, 1]``.
Labels: 0 = I (intensive care), 1 = S (prepared to go home), 2 = A (general hospital floor).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

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

__all__ = ["PostOperative", "POSTOP_ATTRIBUTES", "read_postoperative"]

UCI_URL = "https://archive.ics.uci.edu/dataset/82/post+operative+patient"

#: Categorical attributes and their values in increasing order.
POSTOP_ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("L-CORE", ("low", "mid", "high")),
    ("L-SURF", ("low", "mid", "high")),
    ("L-O2", ("poor", "fair", "good", "excellent")),
    ("L-BP", ("low", "mid", "high")),
    ("SURF-STBL", ("unstable", "mod-stable", "stable")),
    ("CORE-STBL", ("unstable", "mod-stable", "stable")),
    ("BP-STBL", ("unstable", "mod-stable", "stable")),
)
DECISIONS = ("I", "S", "A")
COLUMNS = (*(a for a, _ in POSTOP_ATTRIBUTES), "COMFORT", "decision")


def read_postoperative(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse the table.

    Returns
    -------
    codes : float ``(N, 8)``; columns 0-6 are category indices into
        :data:`POSTOP_ATTRIBUTES`, column 7 is COMFORT; missing values are NaN.
    labels : int64 ``(N,)`` indices into ``("I", "S", "A")``.

    Raises
    ------
    DataError
        Unreadable file, wrong number of columns, unknown category, bad COMFORT value, missing
        decision, or no data rows.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    rows: list[list[float]] = []
    labels: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = [f.strip() for f in (line.split(",") if "," in line else line.split())]
        if fields[0].upper() == "L-CORE":  # the header line added in some copies
            continue
        where = f"{path}, line {lineno}"
        if len(fields) != len(COLUMNS):
            raise DataError(
                f"{where}: {len(fields)} fields, expected {len(COLUMNS)} ({','.join(COLUMNS)}); "
                f"the file is truncated or not the UCI post-operative table ({UCI_URL})"
            )
        row: list[float] = []
        for (attr, values), raw in zip(POSTOP_ATTRIBUTES, fields[:7], strict=True):
            v = raw.lower()
            if v in ("?", ""):
                row.append(np.nan)
            elif v in values:
                row.append(float(values.index(v)))
            else:
                raise DataError(f"{where}: {attr} value {raw!r} is not one of {list(values)}")
        comfort = fields[7]
        if comfort in ("?", ""):
            row.append(np.nan)
        else:
            try:
                value = int(comfort)  # "05" and "5" both mean 5
            except ValueError:
                raise DataError(f"{where}: COMFORT {comfort!r} is not an integer or '?'") from None
            if not 0 <= value <= 20:
                raise DataError(f"{where}: COMFORT {value} is outside 0..20")
            row.append(float(value))
        decision = fields[8].upper()
        if decision not in DECISIONS:
            raise DataError(
                f"{where}: decision {fields[8]!r} is not one of {list(DECISIONS)} "
                "(a missing label cannot be imputed; fix or drop the row)"
            )
        rows.append(row)
        labels.append(DECISIONS.index(decision))
    if not rows:
        raise DataError(f"{path} has no data rows; expected the 90-row UCI table ({UCI_URL})")
    return np.asarray(rows, dtype=float), np.asarray(labels, dtype=np.int64)


@register_dataset
class PostOperative(DatasetLoader):
    """UCI Post-Operative Patient table (Summers and Woolery, donor Grzymala-Busse, 1993).

    Parameters
    ----------
    root
        Data directory (default ``$MEDSHIELD_DATA``).
    seed
        Seed of the stratified train/val/test split.
    fractions
        Train/val/test fractions (default 70/10/20: 63/9/18 rows).
    encoding
        ``"onehot"`` (23 features) or ``"ordinal"`` (8 features).
    """

    name = "post-operative"
    aliases = ("postoperative", "post-operative-patient")
    classes = ("I (intensive care)", "S (home)", "A (general floor)")
    modality = "table"
    citation = (
        "S. Summers, L. Woolery (donor J. W. Grzymala-Busse), Post-Operative Patient, UCI "
        "Machine Learning Repository dataset 82 (1993)"
    )

    def __init__(
        self,
        *,
        root: PathLike | None = None,
        seed: int = 0,
        source: SourceOption = "auto",
        fractions: Sequence[float] = (0.7, 0.1, 0.2),
        encoding: Literal["onehot", "ordinal"] = "onehot",
    ) -> None:
        super().__init__(root=root, seed=seed, source=source)
        self.fractions = fractions
        self.encoding = encoding

    def probe(self) -> Availability:
        path = self.expected("uci", "postoperative", "post-operative.data")
        target = (
            str(path)
            if path
            else f"<data>/uci/postoperative/post-operative.data ({no_data_dir_hint()})"
        )
        hint = f"download post-operative.data from {UCI_URL} and put it at {target}"
        if path is not None and path.is_file():
            return Availability(self.name, "full", str(path))
        return Availability(self.name, "missing", str(path or "<data>/uci/postoperative"), hint)

    def _load(self, av: Availability) -> SplitDataset:
        if self.encoding not in ("onehot", "ordinal"):
            raise ValueError(f"encoding must be 'onehot' or 'ordinal', got {self.encoding!r}")
        path = Path(av.where)
        codes, y = read_postoperative(path)
        parts = stratified_split(y, tuple(self.fractions), self.seed)
        train = codes[parts[0]]
        notes = []
        fill = np.empty(codes.shape[1])
        for j, col in enumerate(COLUMNS[:-1]):
            seen = train[~np.isnan(train[:, j]), j]
            if len(seen) == 0:
                raise DataError(f"{path}: column {col} has no value in the train split")
            if j == 7:
                fill[j] = float(np.median(seen))
            else:
                vals, counts = np.unique(seen, return_counts=True)
                fill[j] = vals[np.argmax(counts)]  # ties -> the lowest category
            n_missing = int(np.isnan(codes[:, j]).sum())
            if n_missing:
                shown = f"{fill[j]:g}" if j == 7 else POSTOP_ATTRIBUTES[j][1][int(fill[j])]
                kind = "median" if j == 7 else "mode"
                notes.append(
                    f"{col}: {n_missing} missing value(s) '?' imputed with the train {kind} {shown}"
                )
        filled = np.where(np.isnan(codes), fill[None, :], codes)
        x, names = self._encode(filled)
        notes.append(f"{self.encoding} encoding of the 7 categorical attributes; COMFORT / 20")
        splits = [ArraySplit(x[idx], y[idx]) for idx in parts]
        return SplitDataset(
            info=self.make_info(
                source="full", origin=str(path), shape=(x.shape[1],), notes=tuple(notes)
            ),
            train=splits[0],
            val=splits[1],
            test=splits[2],
            extra={"feature_names": names, "imputed": fill},
        )

    def _encode(self, codes: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
        cols: list[np.ndarray] = []
        names: list[str] = []
        for j, (attr, values) in enumerate(POSTOP_ATTRIBUTES):
            c = codes[:, j].astype(int)
            if self.encoding == "onehot":
                cols.append(np.eye(len(values))[c])
                names += [f"{attr}={v}" for v in values]
            else:
                cols.append((c / (len(values) - 1))[:, None])
                names.append(attr)
        cols.append(codes[:, 7:8] / 20.0)
        names.append("COMFORT/20")
        return np.concatenate(cols, axis=1).astype(np.float32), tuple(names)
