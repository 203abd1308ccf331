"""mini-MIAS: PGM reading, Info.txt parsing, labels, resizing and woman-level splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_files import pgm_bytes

from medshield.data import DataError, load_dataset, read_mias_info, read_pgm

INFO = """\
MIAS info (synthetic copy for tests)
REFNUM BG CLASS SEVERITY X Y RADIUS
mdb001 G CIRC B 535 425 197
mdb002 G CIRC B 522 280 69
mdb003 D NORM
mdb004 D NORM
mdb005 F CIRC B 477 133 30
mdb005 F CIRC B 500 168 26
mdb006 F NORM
mdb007 G NORM
mdb008 G NORM
mdb009 F CIRC M 230 180 31
mdb010 F CALC B
mdb010 F CALC M 120 100 8
mdb011 F NORM
mdb012 F SPIC M 470 300 40
"""
LABELS = {1: 1, 2: 1, 3: 0, 4: 0, 5: 1, 6: 0, 7: 0, 8: 0, 9: 2, 10: 2, 11: 0, 12: 2}


def _write(tmp_path: Path, side: int = 32, info: str = INFO) -> dict[str, np.ndarray]:
    folder = tmp_path / "mias"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Info.txt").write_text(info)
    rng = np.random.default_rng(0)
    images = {}
    for i in range(1, 13):
        ref = f"mdb{i:03d}"
        img = rng.integers(0, 256, (side, side))
        images[ref] = img
        (folder / f"{ref}.pgm").write_bytes(
            pgm_bytes(img, comment="written by the test" if i == 3 else None)
        )
    return images


def test_read_pgm_8_and_16_bit_and_ascii(tmp_path: Path) -> None:
    img = np.arange(12).reshape(3, 4) * 20
    (tmp_path / "a.pgm").write_bytes(pgm_bytes(img, comment="a comment"))
    np.testing.assert_allclose(read_pgm(tmp_path / "a.pgm"), img / 255, rtol=1e-6)
    deep = np.arange(6).reshape(2, 3) * 10000
    (tmp_path / "b.pgm").write_bytes(pgm_bytes(deep, maxval=65535))
    np.testing.assert_allclose(read_pgm(tmp_path / "b.pgm"), deep / 65535, rtol=1e-6)
    (tmp_path / "c.pgm").write_text("P2\n# ascii\n3 2\n15\n0 5 10\n15 5 0\n")
    np.testing.assert_allclose(
        read_pgm(tmp_path / "c.pgm"), [[0, 1 / 3, 2 / 3], [1, 1 / 3, 0]], rtol=1e-6
    )


def test_info_parsing_labels_one_per_image(tmp_path: Path) -> None:
    (tmp_path / "Info.txt").write_text(INFO)
    records = read_mias_info(tmp_path / "Info.txt")
    assert [r.ref for r in records] == [f"mdb{i:03d}" for i in range(1, 13)]
    assert {int(r.ref[3:]): r.label for r in records} == LABELS
    assert records[4].abnormalities == ("CIRC", "CIRC")  # mdb005 listed twice


def test_load_resizes_and_keeps_women_together(tmp_path: Path) -> None:
    images = _write(tmp_path)
    ds = load_dataset("mias", root=tmp_path, size=8, seed=0)
    assert ds.info.shape == (1, 8, 8) and ds.info.classes == ("normal", "benign", "malignant")
    assert len(ds.train) + len(ds.val) + len(ds.test) == 12
    woman = {
        s: {(int(r[3:]) + 1) // 2 for r in ds.extra["refs"][s]} for s in ("train", "val", "test")
    }
    assert not (
        woman["train"] & woman["test"]
        or woman["train"] & woman["val"]
        or woman["val"] & woman["test"]
    )
    for s in ("train", "val", "test"):
        split = ds.splits()[s]
        for ref, x, y in zip(ds.extra["refs"][s], split.x, split.y, strict=True):
            assert y == LABELS[int(ref[3:])]
            # reference: torch's antialiased bilinear resize of the [0, 1] image
            t = torch.from_numpy(images[ref] / np.float32(255)).float()[None, None]
            ref_img = F.interpolate(
                t, size=(8, 8), mode="bilinear", antialias=True, align_corners=False
            )
            np.testing.assert_allclose(x[0], ref_img[0, 0].numpy(), atol=1e-6)
    assert load_dataset("mias", root=tmp_path, size=64).train.x.shape[1:] == (1, 64, 64)


def test_missing_data_names_the_files_and_the_source(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"Info.txt and mdb001.pgm .*peipa.essex.ac.uk"):
        load_dataset("mias", root=tmp_path)
    _write(tmp_path)
    (tmp_path / "mias" / "mdb007.pgm").unlink()
    with pytest.raises(DataError, match=r"1 of 12 images missing \(e.g. mdb007.pgm\)"):
        load_dataset("mias", root=tmp_path)


def test_truncated_pgm(tmp_path: Path) -> None:
    _write(tmp_path)
    path = tmp_path / "mias" / "mdb004.pgm"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="mdb004.pgm: truncated PGM"):
        load_dataset("mias", root=tmp_path)


def test_not_a_pgm(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "mias" / "mdb002.pgm").write_bytes(b"\x89PNG\r\n\x1a\n....")
    with pytest.raises(DataError, match="mdb002.pgm: not a PGM file"):
        load_dataset("mias", root=tmp_path)


def test_bad_header(tmp_path: Path) -> None:
    (tmp_path / "x.pgm").write_bytes(b"P5\n32 abc\n255\n" + bytes(32 * 32))
    with pytest.raises(DataError, match="malformed PGM header"):
        read_pgm(tmp_path / "x.pgm")


def test_info_with_unknown_class_or_missing_severity(tmp_path: Path) -> None:
    (tmp_path / "Info.txt").write_text("mdb001 G BLOB B 1 2 3\n")
    with pytest.raises(DataError, match=r"Info.txt, line 1: abnormality class 'BLOB'"):
        read_mias_info(tmp_path / "Info.txt")
    (tmp_path / "Info.txt").write_text("mdb001 G CIRC\n")
    with pytest.raises(DataError, match="needs severity B or M"):
        read_mias_info(tmp_path / "Info.txt")
    (tmp_path / "Info.txt").write_text("mdb001 G NORM\nmdb001 G CIRC B 1 2 3\n")
    with pytest.raises(DataError, match="both as NORM and"):
        read_mias_info(tmp_path / "Info.txt")
    (tmp_path / "Info.txt").write_text("nothing useful\n")
    with pytest.raises(DataError, match="not the MIAS Info.txt"):
        read_mias_info(tmp_path / "Info.txt")
