"""The dataset registry: names, probes, helpers, source selection and missing-data errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_files import medmnist_arrays, write_npz

import medshield
from medshield.data import (
    DATASETS,
    Availability,
    DataError,
    DatasetLoader,
    available_datasets,
    load_dataset,
)

EXPECTED = {
    "mnist", "breast-cancer", "post-operative", "wearable", "mias", "npz", "chestmnist",
    "breastmnist", "pneumoniamnist", "dermamnist", "octmnist", "bloodmnist", "pathmnist",
    "organamnist", "organcmnist", "organsmnist", "retinamnist", "tissuemnist",
}  # fmt: skip


def test_every_dataset_is_registered_with_metadata() -> None:
    assert set(DATASETS.names()) == EXPECTED
    for name, cls in DATASETS.items():
        assert issubclass(cls, DatasetLoader)
        assert cls.name == name
        assert cls.citation and cls.modality in ("image", "table", "time-series")
        if name != "npz":
            assert len(cls.classes) >= 2


def test_create_through_the_top_level_registry_only_stores_options(tmp_path: Path) -> None:
    loader = medshield.create("dataset", "mnist", root=tmp_path / "nowhere", seed=3)
    assert type(loader).__name__ == "MNIST"
    assert loader.seed == 3 and loader.root == tmp_path / "nowhere"  # no I/O in __init__
    assert "seed=3" in repr(loader)
    assert DATASETS.get("wdbc") is DATASETS.get("breast-cancer")  # alias


def test_available_datasets_on_an_empty_directory(tmp_path: Path) -> None:
    found = {a.name: a for a in available_datasets(tmp_path)}
    assert "npz" not in found  # path-based loader is not listed
    assert set(found) == EXPECTED - {"npz"}
    assert all(isinstance(a, Availability) for a in found.values())
    assert found["breast-cancer"].status == "embedded"
    assert found["mnist"].status == "embedded"
    for name in ("breastmnist", "post-operative", "wearable", "mias"):
        assert found[name].status == "missing"
        assert str(tmp_path) in found[name].hint
    assert "zenodo" in found["breastmnist"].hint.lower()
    assert found["breastmnist"].where == str(tmp_path / "medmnist" / "breastmnist.npz")


def test_probe_is_cheap_file_existence_only(tmp_path: Path) -> None:
    (tmp_path / "medmnist").mkdir()
    (tmp_path / "medmnist" / "breastmnist.npz").write_bytes(b"garbage, never opened by probe")
    assert DATASETS.create("breastmnist", root=tmp_path).probe().status == "full"
    with pytest.raises(DataError, match="not a valid .npz"):
        load_dataset("breastmnist", root=tmp_path)


def test_missing_data_error_names_the_expected_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("breastmnist", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "medmnist" / "breastmnist.npz") in msg
    assert "zenodo.org/records/10519652" in msg and "pip install medmnist" in msg


def test_no_data_dir_hint_mentions_the_environment_variable(no_data_env: None) -> None:
    av = DATASETS.create("post-operative").probe()
    assert av.status == "missing" and "MEDSHIELD_DATA" in av.hint


@pytest.mark.filterwarnings("ignore:.*differ from the official")
def test_source_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="source='full'"):
        load_dataset("breast-cancer", source="full")
    write_npz(tmp_path / "medmnist" / "breastmnist.npz", medmnist_arrays())
    with pytest.raises(DataError, match="source='embedded'"):
        load_dataset("breastmnist", root=tmp_path, source="embedded")
    assert load_dataset("breastmnist", root=tmp_path, source="full").info.source == "full"
    with pytest.raises(ValueError, match="source must be"):
        load_dataset("breastmnist", root=tmp_path, source="cloud")


def test_load_dataset_accepts_an_npz_path(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "anything" / "mystery.npz", medmnist_arrays(num_classes=3))
    ds = load_dataset(str(path))
    assert ds.info.name == "mystery" and ds.info.classes == ("0", "1", "2")
    assert ds.train.x.shape == (12, 1, 28, 28)
    np.testing.assert_array_equal(ds.test.y, np.arange(6) % 3)
