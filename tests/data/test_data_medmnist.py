"""MedMNIST npz loaders on tiny synthetic files in the official format, and every bad input."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from data_files import medmnist_arrays, write_npz

from medshield.data import (
    DATASETS,
    MEDMNIST_2D,
    DataError,
    load_dataset,
    load_medmnist_npz,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*differ from the official")


def test_metadata_of_the_registered_sets() -> None:
    assert DATASETS.get("breastmnist").classes == ("malignant", "normal, benign")
    assert DATASETS.get("pneumoniamnist").classes == ("normal", "pneumonia")
    assert len(DATASETS.get("dermamnist").classes) == 7
    assert len(DATASETS.get("bloodmnist").classes) == 8
    assert DATASETS.get("octmnist").classes[-1] == "normal"
    rgb = {n for n, s in MEDMNIST_2D.items() if s.channels == 3}
    assert rgb == {"dermamnist", "bloodmnist", "pathmnist", "retinamnist"}
    assert MEDMNIST_2D["breastmnist"].n_samples == (546, 78, 156)


def test_grey_set_loads_official_splits(tmp_path: Path, make_npz: Callable[..., Path]) -> None:
    path = make_npz("breastmnist")
    raw = np.load(path)
    ds = load_dataset("breastmnist", root=tmp_path)
    assert ds.info.source == "full" and ds.info.origin == str(path)
    assert ds.info.shape == (1, 28, 28) and ds.info.num_classes == 2
    for split in ("train", "val", "test"):
        s = ds.splits()[split]
        assert s.x.dtype == np.float32 and s.y.dtype == np.int64 and s.y.shape == (len(s),)
        np.testing.assert_array_equal(s.x[:, 0], raw[f"{split}_images"] / np.float32(255))
        np.testing.assert_array_equal(s.y, raw[f"{split}_labels"][:, 0])
    assert any("differ from the official" in n for n in ds.info.notes)


def test_rgb_set_is_channels_first(tmp_path: Path, make_npz: Callable[..., Path]) -> None:
    path = make_npz("bloodmnist", channels=3, num_classes=8)
    img = np.load(path)["val_images"]
    ds = load_dataset("bloodmnist", root=tmp_path)
    assert ds.val.x.shape == (4, 3, 28, 28)
    # pixel (i, h, w, c) of the file is (i, c, h, w) of the dataset
    assert ds.val.x[2, 1, 5, 7] == np.float32(img[2, 5, 7, 1]) / 255
    np.testing.assert_array_equal(ds.val.x, img.transpose(0, 3, 1, 2) / np.float32(255))


def test_file_directly_in_the_data_dir_and_larger_sizes(tmp_path: Path) -> None:
    write_npz(tmp_path / "pneumoniamnist.npz", medmnist_arrays())
    assert load_dataset("pneumoniamnist", root=tmp_path).info.origin == str(
        tmp_path / "pneumoniamnist.npz"
    )
    write_npz(tmp_path / "medmnist" / "pneumoniamnist_64.npz", medmnist_arrays(side=64))
    assert load_dataset("pneumoniamnist", root=tmp_path, size=64).info.shape == (1, 64, 64)
    write_npz(tmp_path / "medmnist" / "pneumoniamnist_128.npz", medmnist_arrays())
    with pytest.raises(DataError, match="images are 28x28 but size=128 was requested"):
        load_dataset("pneumoniamnist", root=tmp_path, size=128)


def test_official_sizes_give_no_note(tmp_path: Path) -> None:
    write_npz(tmp_path / "medmnist" / "retinamnist.npz", medmnist_arrays((1080, 120, 400), 3, 5))
    ds = load_dataset("retinamnist", root=tmp_path)
    assert not any("official" in n for n in ds.info.notes)
    assert any("ordinal" in n for n in ds.info.notes)


def test_chestmnist_needs_an_explicit_binary_task(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 14), dtype=np.uint8)
    write_npz(tmp_path / "medmnist" / "chestmnist.npz", arrays)
    with pytest.raises(DataError, match="multi-label.*finding='any'"):
        load_dataset("chestmnist", root=tmp_path)
    anyf = load_dataset("chestmnist", root=tmp_path, finding="any")
    np.testing.assert_array_equal(anyf.train.y, arrays["train_labels"].max(axis=1))
    assert anyf.info.classes == ("no finding", "any finding")
    pneu = load_dataset("chestmnist", root=tmp_path, finding="pneumonia")
    np.testing.assert_array_equal(pneu.test.y, arrays["test_labels"][:, 6])
    np.testing.assert_array_equal(pneu.extra["multilabel"]["val"], arrays["val_labels"])


def test_generic_npz_with_class_names(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "x" / "custom.npz", medmnist_arrays(num_classes=3, channels=3))
    ds = load_medmnist_npz(path, classes=("a", "b", "c"), name="mine")
    assert ds.info.name == "mine" and ds.info.classes == ("a", "b", "c")
    assert ds.train.x.shape == (12, 3, 28, 28)
    with pytest.raises(DataError, match="outside 0..1"):
        load_medmnist_npz(path, classes=("a", "b"))


# -- bad input: one test per problem ------------------------------------------------------


def _expect(
    tmp_path: Path, arrays: dict[str, np.ndarray], pattern: str, name: str = "breastmnist"
) -> None:
    path = write_npz(tmp_path / "medmnist" / f"{name}.npz", arrays)
    with pytest.raises(DataError, match=pattern) as err:
        load_dataset(name, root=tmp_path)
    assert str(path) in str(err.value)


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "medmnist" / "breastmnist.npz"
    path.parent.mkdir()
    path.write_bytes(b"<!DOCTYPE html><html>Too Many Requests</html>")
    with pytest.raises(DataError, match="not a valid .npz .zip. file.*zenodo") as err:
        load_dataset("breastmnist", root=tmp_path)
    assert str(path) in str(err.value)


def test_truncated_npz(tmp_path: Path, make_npz: Callable[..., Path]) -> None:
    path = make_npz("breastmnist")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="breastmnist.npz (is not a valid|could not be read)"):
        load_dataset("breastmnist", root=tmp_path)


def test_corrupt_member_inside_the_zip(tmp_path: Path) -> None:
    path = tmp_path / "medmnist" / "breastmnist.npz"
    path.parent.mkdir()
    arrays = medmnist_arrays()
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in arrays.items():
            zf.writestr(f"{key}.npy", b"\x93NUMPY garbage" if key == "val_images" else _npy(value))
    with pytest.raises(DataError, match="could not be read"):
        load_dataset("breastmnist", root=tmp_path)


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_missing_keys(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    del arrays["val_labels"]
    _expect(tmp_path, arrays, r"lacks the keys \['val_labels'\]")


def test_wrong_image_dtype(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    arrays["train_images"] = arrays["train_images"].astype(np.float32) / 255
    _expect(tmp_path, arrays, r"\[train_images\]: dtype float32, expected uint8")


def test_rgb_file_for_a_grey_set(tmp_path: Path) -> None:
    _expect(
        tmp_path,
        medmnist_arrays(channels=3),
        r"\[train_images\]: shape \(12, 28, 28, 3\), expected \(N, H, H\)",
    )


def test_wrong_image_shape(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    arrays["test_images"] = arrays["test_images"].reshape(6, 28 * 28)
    _expect(tmp_path, arrays, r"\[test_images\]: shape \(6, 784\)")


def test_wrong_label_shape(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    arrays["val_labels"] = np.zeros((4, 3), np.uint8)
    _expect(tmp_path, arrays, r"\[val_labels\]: shape \(4, 3\), expected \(N, 1\)")


def test_float_labels(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    arrays["train_labels"] = arrays["train_labels"].astype(np.float64)
    _expect(tmp_path, arrays, r"\[train_labels\]: dtype float64, expected an integer")


def test_labels_out_of_range(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    arrays["test_labels"][2] = 5
    _expect(tmp_path, arrays, r"\[test_labels\]: labels span 0..5, outside 0..1")


def test_image_and_label_counts_disagree(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    arrays["val_labels"] = arrays["val_labels"][:3]
    _expect(tmp_path, arrays, "val has 4 images but 3 labels")


def test_image_sizes_disagree_between_splits(tmp_path: Path) -> None:
    arrays = medmnist_arrays()
    arrays["test_images"] = np.zeros((6, 32, 32), np.uint8)
    _expect(tmp_path, arrays, r"image shape \(32, 32\) differs from train \(28, 28\)")
