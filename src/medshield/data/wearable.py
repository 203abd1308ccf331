"""UCI activity recognition of healthy older people with a batteryless wearable sensor (RFID).

87 trial files (``S1_Dataset/d1p01M`` ... ``S2_Dataset/d2p27F``; 75,128 rows in all), each
without header and with 9 comma-separated columns: time (s), frontal / vertical / lateral
acceleration (g), antenna id (1-4), RSSI, phase, frequency, activity label (1 = sit on bed,
2 = sit on chair, 3 = lying, 4 = ambulating; mapped to 0-3). Read from the extracted folders
``<data>/uci/wearable/S{1,2}_Dataset/`` or, when they are absent, directly from the original
zip ``<data>/uci/wearable/Datasets_Healthy_Older_People.zip`` (macOS repacks with an extra top
folder and ``__MACOSX`` entries are accepted).

Splitting is by *trial file*: all rows of one trial land in the same split, so a model is
tested on trials it never saw. (The file names are anonymised and do not say which
trials belong to the same person, so the trial is the finest grouping available.) The
per-row trial index is in ``extra["trial"][split]`` and the names in ``extra["trials"]`` --
natural clients for federated experiments.

Features (default): the 7 numeric columns (time, 3 accelerations, RSSI, phase, frequency)
standardised with the *train* split's mean/std, plus the antenna id one-hot (4 columns):
11 features. ``include_time=False`` drops the time column.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

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
from medshield.data.splits import group_split, standardize

__all__ = ["Wearable", "parse_wearable_trial", "read_wearable_trials"]

UCI_URL = (
    "https://archive.ics.uci.edu/dataset/427/activity+recognition+with+healthy+older+people+"
    "using+a+batteryless+wearable+sensor"
)
ZIP_NAME = "Datasets_Healthy_Older_People.zip"
TRIAL_RE = re.compile(r"^d[12]p\d{2}[MF]$")
NUMERIC = ("time", "acc_frontal", "acc_vertical", "acc_lateral", "rssi", "phase", "frequency")
EXPECTED_FILES, EXPECTED_ROWS = 87, 75128


def parse_wearable_trial(text: str, where: str) -> np.ndarray:
    """Parse one trial file's text into a float ``(n, 9)`` array (checked).

    Raises
    ------
    DataError
        Non-numeric values, a row without 9 columns, antenna ids outside 1-4 or labels
        outside 1-4; the message names ``where`` and the line.
    """
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split(",")
        if len(fields) != 9:
            raise DataError(
                f"{where}, line {lineno}: {len(fields)} columns, expected 9 (time, 3 "
                "accelerations, antenna id, RSSI, phase, frequency, label); the file is "
                f"truncated or not a trial file of the UCI dataset ({UCI_URL})"
            )
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise DataError(f"{where}, line {lineno}: non-numeric value in {line!r}") from None
    if not rows:
        raise DataError(f"{where}: no data rows")
    arr = np.asarray(rows, dtype=float)
    for col, what in ((4, "antenna id"), (8, "label")):
        bad = ~np.isin(arr[:, col], (1.0, 2.0, 3.0, 4.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: {what} {arr[i, col]:g} in data row {i + 1} is not 1-4")
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: non-finite value (nan/inf)")
    return arr


def _iter_folder(base: Path) -> Iterator[tuple[str, str, str]]:
    for sub in ("S1_Dataset", "S2_Dataset"):
        folder = base / sub
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                if TRIAL_RE.match(f.name):
                    yield f.name, str(f), f.read_bytes().decode("utf-8", errors="replace")


def _iter_zip(path: Path) -> Iterator[tuple[str, str, str]]:
    try:
        with zipfile.ZipFile(path) as zf:
            members = sorted(
                (
                    m
                    for m in zf.namelist()
                    if "__MACOSX" not in m and TRIAL_RE.match(PurePosixPath(m).name)
                ),
                key=lambda m: PurePosixPath(m).name,
            )
            for m in members:
                yield (
                    PurePosixPath(m).name,
                    f"{path}!{m}",
                    zf.read(m).decode("utf-8", errors="replace"),
                )
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(
            f"{path} is not a readable zip file ({err}); download it again from {UCI_URL}"
        ) from err


def read_wearable_trials(base: Path) -> tuple[list[str], list[np.ndarray], str]:
    """All trial files under ``base`` (folders first, else the zip): names, arrays, origin."""
    if (base / "S1_Dataset").is_dir() or (base / "S2_Dataset").is_dir():
        source, origin = _iter_folder(base), str(base)
    else:
        zips = [base / ZIP_NAME] if (base / ZIP_NAME).is_file() else sorted(base.glob("*.zip"))
        if not zips:
            raise DataError(f"no S1_Dataset/, S2_Dataset/ or {ZIP_NAME} in {base}")
        source, origin = _iter_zip(zips[0]), str(zips[0])
    names, arrays = [], []
    for name, where, text in source:
        names.append(name)
        arrays.append(parse_wearable_trial(text, where))
    if not names:
        raise DataError(f"{origin} holds no trial files named like d1p01M; expected the UCI layout")
    return names, arrays, origin


@register_dataset
class Wearable(DatasetLoader):
    """Batteryless wearable sensor activity recognition (Torres, Visvanathan, Ranasinghe, 2016).

    Parameters
    ----------
    root
        Data directory (default ``$MEDSHIELD_DATA``).
    seed
        Seed of the trial-level split.
    fractions
        Target train/val/test fractions of *rows* (whole trials are assigned).
    include_time
        Keep the time-since-start column as a feature.
    """

    name = "wearable"
    aliases = ("uci-wearable", "healthy-older-people")
    classes = ("sit on bed", "sit on chair", "lying", "ambulating")
    modality = "time-series"
    citation = (
        "R. L. Shinmoto Torres, D. C. Ranasinghe, Q. Shi, A. P. Sample, Sensor enabled wearable "
        "RFID technology for mitigating the risk of falls near beds, IEEE RFID 2013; UCI ML "
        "Repository dataset 427 (doi:10.24432/C5GG6B)"
    )

    def __init__(
        self,
        *,
        root: PathLike | None = None,
        seed: int = 0,
        source: SourceOption = "auto",
        fractions: Sequence[float] = (0.7, 0.1, 0.2),
        include_time: bool = True,
    ) -> None:
        super().__init__(root=root, seed=seed, source=source)
        self.fractions = fractions
        self.include_time = include_time

    def probe(self) -> Availability:
        base = self.expected("uci", "wearable")
        target = str(base) if base else f"<data>/uci/wearable/ ({no_data_dir_hint()})"
        hint = f"download {ZIP_NAME} from {UCI_URL} and put it (or its S1_Dataset/ and S2_Dataset/ folders) in {target}"
        if base is not None and base.is_dir():
            if (base / "S1_Dataset").is_dir() or (base / "S2_Dataset").is_dir():
                return Availability(self.name, "full", str(base))
            zips = [base / ZIP_NAME] if (base / ZIP_NAME).is_file() else sorted(base.glob("*.zip"))
            if zips:
                return Availability(self.name, "full", str(zips[0]))
        return Availability(self.name, "missing", str(base or "<data>/uci/wearable"), hint)

    def _load(self, av: Availability) -> SplitDataset:
        base = self.expected("uci", "wearable")
        assert base is not None
        names, arrays, origin = read_wearable_trials(base)
        data = np.concatenate(arrays)
        trial = np.repeat(np.arange(len(names)), [len(a) for a in arrays])
        y = data[:, 8].astype(np.int64) - 1
        parts = group_split(trial, tuple(self.fractions), self.seed)
        keep = [i for i, c in enumerate(NUMERIC) if self.include_time or c != "time"]
        numeric = data[:, [0, 1, 2, 3, 5, 6, 7]][:, keep]
        (ntr, nva, nte), mean, std = standardize(*(numeric[p] for p in parts))
        onehot = np.eye(4, dtype=np.float32)[data[:, 4].astype(int) - 1]
        xs = [
            np.concatenate([n, onehot[p]], axis=1)
            for n, p in zip((ntr, nva, nte), parts, strict=True)
        ]
        feature_names = (*(NUMERIC[i] for i in keep), *(f"antenna={a}" for a in range(1, 5)))
        notes = [
            "split by trial file (no trial in two splits); numeric columns standardised with "
            "train statistics; antenna id one-hot",
        ]
        if len(names) != EXPECTED_FILES or len(data) != EXPECTED_ROWS:
            notes.append(
                f"{len(names)} trial files / {len(data)} rows; the UCI dataset has "
                f"{EXPECTED_FILES} / {EXPECTED_ROWS}"
            )
        splits = [ArraySplit(x, y[p]) for x, p in zip(xs, parts, strict=True)]
        return SplitDataset(
            info=self.make_info(
                source="full", origin=origin, shape=(xs[0].shape[1],), notes=tuple(notes)
            ),
            train=splits[0],
            val=splits[1],
            test=splits[2],
            extra={
                "trials": tuple(names),
                "trial": {
                    s: trial[p] for s, p in zip(("train", "val", "test"), parts, strict=True)
                },
                "feature_names": feature_names,
                "mean": mean,
                "std": std,
            },
        )
