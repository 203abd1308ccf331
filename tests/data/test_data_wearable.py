"""UCI wearable-sensor loader: folders or zip, trial-level split, encodings, bad files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from data_files import trial_text, wearable_trials, write_wearable_folders, write_wearable_zip

from medshield.data import DataError, load_dataset


@pytest.fixture
def trials() -> dict[str, np.ndarray]:
    return wearable_trials(n_files=10, seed=0)


def _base(root: Path) -> Path:
    return root / "uci" / "wearable"


def test_folders_load_with_trials_kept_whole(tmp_path: Path, trials: dict[str, np.ndarray]) -> None:
    write_wearable_folders(_base(tmp_path), trials)
    ds = load_dataset("wearable", root=tmp_path, seed=0)
    total = sum(len(a) for a in trials.values())
    assert len(ds.train) + len(ds.val) + len(ds.test) == total
    assert ds.info.shape == (11,) and ds.info.modality == "time-series"
    assert ds.extra["trials"] == tuple(sorted(n.split("/")[1] for n in trials))
    seen = [set(ds.extra["trial"][s].tolist()) for s in ("train", "val", "test")]
    assert all(seen) and not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert set().union(*seen) == set(range(len(trials)))
    # each split's labels are exactly its trials' labels minus one, in file order
    by_name = {n.split("/")[1]: a for n, a in trials.items()}
    for split in ("train", "val", "test"):
        ids = ds.extra["trial"][split]
        order = [t for i, t in enumerate(ids) if i == 0 or ids[i - 1] != t]
        expected = np.concatenate([by_name[ds.extra["trials"][t]][:, 8] for t in order]) - 1
        np.testing.assert_array_equal(ds.splits()[split].y, expected)
    # numeric columns standardised with train statistics; antenna one-hot
    np.testing.assert_allclose(ds.train.x[:, :7].mean(0), 0, atol=1e-5)
    assert np.all(ds.train.x[:, 7:].sum(1) == 1)
    assert any("trial" in n for n in ds.info.notes)
    again = load_dataset("wearable", root=tmp_path, seed=0)
    np.testing.assert_array_equal(again.test.x, ds.test.x)
    other = load_dataset("wearable", root=tmp_path, seed=5)
    assert not np.array_equal(other.extra["trial"]["test"], ds.extra["trial"]["test"])
    assert load_dataset("wearable", root=tmp_path, include_time=False).info.shape == (10,)


@pytest.mark.parametrize("prefix", ["", "Datasets_Healthy_Older_People/"])
def test_zip_only_gives_the_same_data(
    tmp_path: Path, trials: dict[str, np.ndarray], prefix: str
) -> None:
    write_wearable_folders(_base(tmp_path / "a"), trials)
    write_wearable_zip(_base(tmp_path / "b") / "Datasets_Healthy_Older_People.zip", trials, prefix)
    a = load_dataset("wearable", root=tmp_path / "a", seed=2)
    b = load_dataset("wearable", root=tmp_path / "b", seed=2)
    assert b.info.origin.endswith(".zip")
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(a.splits()[s].x, b.splits()[s].x)
        np.testing.assert_array_equal(a.splits()[s].y, b.splits()[s].y)


def test_crlf_and_trailing_spaces(tmp_path: Path, trials: dict[str, np.ndarray]) -> None:
    write_wearable_folders(_base(tmp_path), trials)
    name, a = next(iter(trials.items()))
    text = trial_text(a, newline=" \r\n")
    (_base(tmp_path) / name).write_bytes(text.encode())
    ds = load_dataset("wearable", root=tmp_path)
    assert len(ds.train) + len(ds.val) + len(ds.test) == sum(len(t) for t in trials.values())


def _corrupt(tmp_path: Path, trials: dict[str, np.ndarray], line: str) -> Path:
    write_wearable_folders(_base(tmp_path), trials)
    name = sorted(trials)[1]
    path = _base(tmp_path) / name
    path.write_text(path.read_text() + line + "\n")
    return path


def test_missing_columns(tmp_path: Path, trials: dict[str, np.ndarray]) -> None:
    path = _corrupt(tmp_path, trials, "0.5,0.1,0.9,0.0,1,-60,2.1,923.75")
    with pytest.raises(DataError, match="8 columns, expected 9") as err:
        load_dataset("wearable", root=tmp_path)
    assert str(path) in str(err.value)


def test_non_numeric_value(tmp_path: Path, trials: dict[str, np.ndarray]) -> None:
    _corrupt(tmp_path, trials, "0.5,0.1,0.9,0.0,1,?,2.1,923.75,1")
    with pytest.raises(DataError, match="non-numeric value"):
        load_dataset("wearable", root=tmp_path)


def test_label_out_of_range(tmp_path: Path, trials: dict[str, np.ndarray]) -> None:
    _corrupt(tmp_path, trials, "0.5,0.1,0.9,0.0,1,-60,2.1,923.75,5")
    with pytest.raises(DataError, match="label 5 in data row .* is not 1-4"):
        load_dataset("wearable", root=tmp_path)


def test_corrupt_zip(tmp_path: Path, trials: dict[str, np.ndarray]) -> None:
    path = write_wearable_zip(_base(tmp_path) / "Datasets_Healthy_Older_People.zip", trials)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="not a readable zip file") as err:
        load_dataset("wearable", root=tmp_path)
    assert str(path) in str(err.value)


def test_zip_without_trial_files(tmp_path: Path) -> None:
    path = _base(tmp_path) / "Datasets_Healthy_Older_People.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("README.txt", "nothing here")
    with pytest.raises(DataError, match="holds no trial files"):
        load_dataset("wearable", root=tmp_path)
