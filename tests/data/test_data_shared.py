"""The real public files in ``$MEDSHIELD_DATA`` load with their official sizes.

Skipped (with the reason) when ``MEDSHIELD_DATA`` is unset or missing; see
``shared/data/MANIFEST.md`` for the provenance of every file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from medshield.data import available_datasets, load_dataset

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def data_root() -> Path:
    env = os.environ.get("MEDSHIELD_DATA")
    if not env:
        pytest.skip("MEDSHIELD_DATA is not set: the real public data files are not available here")
    path = Path(env)
    if not path.is_dir():
        pytest.skip(f"MEDSHIELD_DATA={env} is not a directory")
    return path


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not in MEDSHIELD_DATA")
    return path


def test_probe_reports_the_shared_files(data_root: Path) -> None:
    status = {a.name: a.status for a in available_datasets(data_root)}
    for name, rel in (
        ("mnist", "mnist"),
        ("breastmnist", "medmnist/breastmnist.npz"),
        ("wearable", "uci/wearable"),
    ):
        if (data_root / rel).exists():
            assert status[name] == "full"


def test_mnist_official_sizes_and_class_counts(data_root: Path) -> None:
    _need(data_root / "mnist" / "train-images-idx3-ubyte.gz")
    ds = load_dataset("mnist", root=data_root, seed=0)
    assert ds.info.source == "full"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (55000, 5000, 10000)
    train_counts = np.bincount(np.concatenate([ds.train.y, ds.val.y]), minlength=10)
    assert train_counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(ds.test.y).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert ds.test.x.shape == (10000, 1, 28, 28) and 0 <= ds.test.x.min() and ds.test.x.max() <= 1


@pytest.mark.parametrize(
    ("name", "sizes", "counts"),
    [
        ("breastmnist", (546, 78, 156), [147, 399]),
        ("pneumoniamnist", (4708, 524, 624), [1214, 3494]),
    ],
)
def test_medmnist_official_splits(
    data_root: Path, name: str, sizes: tuple[int, int, int], counts: list[int]
) -> None:
    _need(data_root / "medmnist" / f"{name}.npz")
    ds = load_dataset(name, root=data_root)
    assert (len(ds.train), len(ds.val), len(ds.test)) == sizes
    assert np.bincount(ds.train.y).tolist() == counts
    assert ds.info.shape == (1, 28, 28) and not ds.info.notes


def test_post_operative_90_rows(data_root: Path) -> None:
    _need(data_root / "uci" / "postoperative" / "post-operative.data")
    ds = load_dataset("post-operative", root=data_root)
    y = np.concatenate([ds.train.y, ds.val.y, ds.test.y])
    assert len(y) == 90
    assert np.bincount(y).tolist() == [2, 24, 64]  # I, S, A as in the .names file
    assert any("COMFORT: 3 missing" in n for n in ds.info.notes)


def test_wearable_75128_rows_from_folders_and_from_the_zip(data_root: Path, tmp_path: Path) -> None:
    base = _need(data_root / "uci" / "wearable")
    ds = load_dataset("wearable", root=data_root)
    y = np.concatenate([ds.train.y, ds.val.y, ds.test.y])
    assert len(y) == 75128 and len(ds.extra["trials"]) == 87
    assert np.bincount(y).tolist() == [16406, 4911, 51520, 2291]
    assert not ds.info.notes[1:]  # no "unexpected size" note
    zip_path = _need(base / "Datasets_Healthy_Older_People.zip")
    (tmp_path / "uci" / "wearable").mkdir(parents=True)
    shutil.copy(zip_path, tmp_path / "uci" / "wearable")
    from_zip = load_dataset("wearable", root=tmp_path)
    assert from_zip.info.origin.endswith(".zip")
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(from_zip.splits()[s].x, ds.splits()[s].x)
