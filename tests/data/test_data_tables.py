"""Breast-cancer (embedded) and UCI post-operative tables: splits, encodings, imputation, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_files import POSTOP_ROWS, postop_text

from medshield.data import DataError, load_dataset, read_postoperative


def test_breast_cancer_split_and_train_standardisation() -> None:
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    ds = load_dataset("breast-cancer", seed=0)
    assert ds.info.source == "embedded" and ds.info.modality == "table"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (398, 57, 114)
    assert ds.train.x.dtype == np.float32 and ds.train.x.shape[1] == 30
    np.testing.assert_allclose(ds.train.x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.train.x.std(0), 1, atol=1e-4)
    mean, std = ds.extra["mean"], ds.extra["std"]
    # val/test were scaled with the *train* statistics: undoing it gives the original rows
    for split in (ds.val, ds.test):
        back = split.x.astype(np.float64) * std + mean
        rel = np.abs(back[:, None, :] - raw.data[None]) / (np.abs(raw.data[None]) + 1e-3)
        assert np.all(rel.max(axis=2).min(axis=1) < 1e-5)
    assert abs(ds.test.y.mean() - raw.target.mean()) < 0.02  # stratified
    same = load_dataset("breast-cancer", seed=0)
    np.testing.assert_array_equal(same.test.x, ds.test.x)
    assert not np.array_equal(load_dataset("breast-cancer", seed=1).test.x, ds.test.x)


def _postop(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "uci" / "postoperative" / "post-operative.data"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def test_postop_layouts_parse_identically(tmp_path: Path) -> None:
    parsed = []
    for layout in ("ours", "uci", "spaces"):
        path = _postop(tmp_path / layout, postop_text(layout))
        parsed.append(read_postoperative(path))
    for codes, labels in parsed[1:]:
        np.testing.assert_array_equal(codes, parsed[0][0])
        np.testing.assert_array_equal(labels, parsed[0][1])
    codes, labels = parsed[0]
    assert codes.shape == (20, 8)
    assert np.isnan(codes[:, 7]).sum() == 2  # the two '?'
    assert codes[6, 7] == 5 and codes[10, 7] == 7  # "05"/"5" and "07"/"7"
    assert labels[3] == 2  # "A " with a trailing space is A
    assert codes[0, 2] == 3  # excellent is the highest L-O2 level


def test_postop_load_imputes_with_train_median_and_encodes(tmp_path: Path) -> None:
    _postop(tmp_path, postop_text("ours"))
    ds = load_dataset("post-operative", root=tmp_path, seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (14, 2, 4)
    assert ds.info.shape == (23,) and ds.train.x.dtype == np.float32
    names = ds.extra["feature_names"]
    assert names[:3] == ("L-CORE=low", "L-CORE=mid", "L-CORE=high") and names[-1] == "COMFORT/20"
    x = np.concatenate([ds.train.x, ds.val.x, ds.test.x])
    assert np.all((x >= 0) & (x <= 1)) and not np.isnan(x).any()
    assert np.all(x[:, :22].sum(1) == 7)  # one level per categorical attribute
    # reference imputation: median COMFORT of the train rows that are not '?'
    codes, _ = read_postoperative(tmp_path / "uci" / "postoperative" / "post-operative.data")
    train_rows = {tuple(r) for r in ds.train.x[:, :22]}
    comfort = [
        c for c, r in zip(codes[:, 7], _onehot(codes), strict=True) if tuple(r) in train_rows
    ]
    assert ds.extra["imputed"][7] == np.nanmedian(comfort)
    assert any("2 missing value(s) '?' imputed with the train median" in n for n in ds.info.notes)
    ordinal = load_dataset("post-operative", root=tmp_path, encoding="ordinal")
    assert ordinal.info.shape == (8,)


def _onehot(codes: np.ndarray) -> np.ndarray:
    from medshield.data.postoperative import POSTOP_ATTRIBUTES

    cols = [np.eye(len(v))[codes[:, j].astype(int)] for j, (_, v) in enumerate(POSTOP_ATTRIBUTES)]
    return np.concatenate(cols, axis=1).astype(np.float32)


def test_postop_missing_column(tmp_path: Path) -> None:
    rows = [r[:8] if i == 4 else r for i, r in enumerate(POSTOP_ROWS)]  # drop decision of one row
    path = _postop(tmp_path, postop_text("uci", rows))
    with pytest.raises(
        DataError, match=r"post-operative.data, line 5: 8 fields, expected 9"
    ) as err:
        load_dataset("post-operative", root=tmp_path)
    assert str(path) in str(err.value)


def test_postop_unknown_category(tmp_path: Path) -> None:
    rows = list(POSTOP_ROWS)
    rows[2] = ("medium", *rows[2][1:])
    _postop(tmp_path, postop_text("uci", rows))
    with pytest.raises(DataError, match=r"line 3: L-CORE value 'medium' is not one of"):
        load_dataset("post-operative", root=tmp_path)


def test_postop_bad_comfort_and_missing_label(tmp_path: Path) -> None:
    rows = list(POSTOP_ROWS)
    rows[0] = (*rows[0][:7], "25", "A")
    _postop(tmp_path, postop_text("uci", rows))
    with pytest.raises(DataError, match="line 1: COMFORT 25 is outside 0..20"):
        load_dataset("post-operative", root=tmp_path)
    rows[0] = (*POSTOP_ROWS[0][:8], "?")
    _postop(tmp_path, postop_text("uci", rows))
    with pytest.raises(DataError, match=r"line 1: decision '\?' is not one of"):
        load_dataset("post-operative", root=tmp_path)


def test_postop_empty_file(tmp_path: Path) -> None:
    _postop(tmp_path, "L-CORE,L-SURF,L-O2,L-BP,SURF-STBL,CORE-STBL,BP-STBL,COMFORT,decision\n")
    with pytest.raises(DataError, match="no data rows"):
        load_dataset("post-operative", root=tmp_path)
