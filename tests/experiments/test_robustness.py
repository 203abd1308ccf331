"""``medshield reproduce robustness`` and the robustness demo section, on tiny data."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from medshield.experiments import DEMO_SECTIONS, EXPERIMENTS, RunOptions
from medshield.experiments import robustness as rob
from medshield.experiments.robustness import RobustnessConfig, config_for, run_robustness
from medshield.experiments.robustness_eval import AttackSuite
from medshield.experiments.robustness_paper import TABLE_III
from medshield.report import build_report
from medshield.results import read_results, write_results

# the synthetic files are deliberately smaller than the official ones
pytestmark = pytest.mark.filterwarnings("ignore:.*split sizes.*differ from the official")

TINY_SUITE = AttackSuite(beyond_eps=(0.01, 8 / 255), pgd_steps=1, cw_steps=2, cw_search=1,
                         batch_size=32)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny(mode: str = "fast", **changes: object) -> RobustnessConfig:
    """A seconds-long grid: the registry's small student CNN stands in for the backbones."""
    base = RobustnessConfig(
        mode=mode, datasets=("breastmnist", "pneumoniamnist"), models=("student-cnn",),
        epochs=1, max_beyond=8, at_epochs=1, pgd_at_steps=1, pgd_at_epochs=1,
        kd_teachers=("student-cnn",), kd_epochs=1, student_options={"width": 4},
        model_options={"width": 4}, suite=TINY_SUITE)
    return dataclasses.replace(base, **changes)


def _write_breastmnist(root: Path, seed: int = 0) -> None:
    """A MedMNIST-format npz (official keys, uint8 images, (N, 1) labels), 48/8/24 images."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 48), ("val", 8), ("test", 24)):
        y = rng.integers(0, 2, (n, 1)).astype(np.uint8)
        x = rng.integers(0, 120, (n, 28, 28)).astype(np.uint8) + (y[:, :, None] * 100).astype(np.uint8)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    (root / "medmnist").mkdir(parents=True, exist_ok=True)
    np.savez(root / "medmnist" / "breastmnist.npz", **arrays)


def _opts(tmp_path: Path, data_root: Path | None, mode: str = "fast") -> RunOptions:
    return RunOptions(out=tmp_path / "out", mode=mode, data_root=data_root, progress=False)


def test_experiment_on_synthetic_medmnist(tmp_path: Path) -> None:
    _write_breastmnist(tmp_path / "data")
    res = run_robustness(_opts(tmp_path, tmp_path / "data"), _tiny())
    assert res.system == "robustness"
    assert res.data == {"breastmnist": "full", "pneumoniamnist": "missing",
                        "dermamnist": "missing", "octmnist": "missing"}
    # Table I: the paper's number beside ours in every row; missing data -> ours is None
    t1 = {r["dataset"]: r for r in res.tables["table1_clean_accuracy"]}
    assert {"paper", "ours", "setting"} <= set(t1["BreastMNIST"])
    assert 0.0 <= t1["BreastMNIST"]["ours"] <= 1.0 and t1["PneumoniaMNIST"]["ours"] is None
    assert "data missing" in t1["PneumoniaMNIST"]["setting"]
    assert "from scratch" in t1["BreastMNIST"]["setting"] and "fast mode" in t1["BreastMNIST"]["setting"]
    # Tables II-III: paper_<eps> next to ours_<eps>; the paper's rows for the grid are kept
    t3 = res.tables["table3_defences"]
    defences = {(r["dataset"], r["defence"]) for r in t3}
    assert {("BreastMNIST", "Original"), ("BreastMNIST", "AT"), ("BreastMNIST", "KD")} <= defences
    cols = list(t3[0])
    for label in ("clean", "0.001", "0.005"):
        assert cols.index(f"ours_{label}") == cols.index(f"paper_{label}") + 1
    ours = next(r for r in t3 if r["dataset"] == "BreastMNIST" and r["defence"] == "AT")
    assert all(0.0 <= ours[f"ours_{e:g}"] <= 1.0 for e in (0.001, 0.003, 0.005))
    assert "FGSM-AT eps=0.001" in ours["setting"] and "static" in ours["setting"]
    # beyond the paper: every variant under every attack, and a masking flag with a reason
    variants = {"Original", "AT", "PGD-AT", "KD"}
    acc = res.tables["beyond_robust_accuracy"]
    assert {r["defence"] for r in acc} == variants
    assert {r["attack"] for r in acc} == {"random sign noise", "FGSM", "PGD-1",
                                          "C&W-Linf (margin PGD-1)",
                                          "strongest per example (all attacks, all eps' <= eps)"}
    for ident in {(r["dataset"], r["defence"]) for r in acc}:
        rows = {r["attack"][:5].strip(): r for r in acc if (r["dataset"], r["defence"]) == ident}
        for col in ("eps=0.01", "eps=8/255"):  # the envelope is below every attack
            assert rows["stron"][col] <= min(rows[a][col] for a in ("FGSM", "PGD-1", "C&W-L"))
        assert rows["stron"]["eps=8/255"] <= rows["stron"]["eps=0.01"]
    assert {"eps=0.01", "eps=8/255"} <= set(acc[0])
    mask = res.tables["gradient_masking"]
    ours_mask = [r for r in mask if r["source"] == "ours"]
    assert {r["defence"] for r in ours_mask} == variants
    for r in ours_mask:
        assert isinstance(r["gradient masking"], bool) and r["reasons"]
    assert any(r["source"].startswith("paper") and r["defence"] == "KD" for r in mask)
    assert {r["defence"] for r in res.tables["beyond_cw_l2"]} == variants
    bench = res.tables["medmnist_benchmark"][0]
    assert bench["paper"] is None and bench["MedMNIST v2 benchmark (ResNet-18, 28)"] == 0.863
    assert {"MedMNIST v2 benchmark (ResNet-18, 28)", "paper", "ours"} <= set(bench)
    # figures: the paper's curves beside ours; notes: threat model and the KD finding
    fig = next(f for f in res.figures if f.id == "fgsm_breastmnist")
    assert fig.x[0] == 0.0 and len(fig.x) == 6
    assert any(f.id == "beyond_breastmnist_student-cnn" for f in res.figures)
    assert "white-box" in res.notes[0] and "knows" in res.notes[0]
    assert any("KD student on BreastMNIST" in n for n in res.notes)
    assert any("pneumoniamnist" in n and "zenodo" in n.lower() for n in res.notes)
    # the results file and the report are written
    write_results(res, tmp_path / "out")
    build_report(tmp_path / "out", res)
    assert read_results(tmp_path / "out").tables.keys() == res.tables.keys()
    assert "gradient masking" in (tmp_path / "out" / "report.html").read_text().lower()


def test_missing_data_gives_the_papers_tables_and_how_to_get_the_data(tmp_path: Path) -> None:
    res = EXPERIMENTS.get("robustness")(_opts(tmp_path, tmp_path / "empty"))
    assert set(res.data.values()) == {"missing"}
    t2 = res.tables["table2_fgsm"]
    assert len(t2) == 4  # the fast grid: MobileNetV2 on the four datasets
    row = next(r for r in t2 if r["dataset"] == "PneumoniaMNIST")
    assert row["paper_clean"] == TABLE_III[("pneumoniamnist", "mobilenetv2", "original")][0]
    assert row["ours_clean"] is None and "data missing" in row["setting"]
    assert res.tables["beyond_robust_accuracy"] == [] and res.meta["cells"] == []
    assert sum("data missing" in n for n in res.notes) == 4


def test_full_mode_reuses_finished_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_breastmnist(tmp_path / "data")
    cfg = _tiny("full", datasets=("breastmnist",), pgd_at=False, kd_teachers=())
    opts = _opts(tmp_path, tmp_path / "data", mode="full")
    first = run_robustness(opts, cfg)
    cached = tmp_path / "out" / "cells" / "breastmnist-student-cnn.json"
    assert json.loads(cached.read_text())["signature"] == cfg.signature()

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(rob, "_run_cell", boom)
    second = run_robustness(opts, cfg)
    assert second.tables["table2_fgsm"] == first.tables["table2_fgsm"]
    with pytest.raises(AssertionError, match="recomputed"):  # other settings: not reused
        run_robustness(opts, _tiny("full", datasets=("breastmnist",), pgd_at=False,
                                   kd_teachers=(), epochs=2))


def test_modes_and_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick = config_for("quick")
    assert quick.datasets == ("breastmnist",) and set(quick.models) == {"mobilenetv2", "densenet121"}
    full = config_for("full")
    assert full.epochs == 5 and full.batch_size == 32 and full.at_eps == 0.001
    assert set(full.datasets) == {"breastmnist", "pneumoniamnist", "dermamnist", "octmnist"}
    with pytest.raises(ValueError, match="unknown mode"):
        config_for("slow")
    monkeypatch.delenv(rob.WEIGHTS_ENV, raising=False)
    assert rob.weights_file("densenet121") is None
    (tmp_path / "mobilenet_v2.pth").write_bytes(b"x")
    monkeypatch.setenv(rob.WEIGHTS_ENV, str(tmp_path))
    assert rob.weights_file("mobilenetv2") == tmp_path / "mobilenet_v2.pth"
    assert rob.weights_file("resnet50") is None


def test_shared_breastmnist_one_tiny_model(shared_data: Path, tmp_path: Path) -> None:
    if not (shared_data / "medmnist" / "breastmnist.npz").is_file():
        pytest.skip("breastmnist.npz is not in MEDSHIELD_DATA/medmnist")
    cfg = RobustnessConfig(mode="fast", datasets=("breastmnist",), models=("mobilenetv2",),
                           epochs=1, max_train=64, max_test=32, max_beyond=8, at_epochs=1,
                           pgd_at=False, kd_teachers=(), stem_overrides={"mobilenetv2": False},
                           suite=TINY_SUITE)
    res = run_robustness(_opts(tmp_path, shared_data), cfg)
    assert res.data["breastmnist"] == "full"
    cell = res.meta["cells"][0]
    assert (cell["n_train"], cell["n_test"]) == (64, 32)
    row = res.tables["table1_clean_accuracy"][0]
    assert row["paper"] == pytest.approx(0.7885) and 0.0 <= row["ours"] <= 1.0
    assert "train 64/546; test 32/156" in row["setting"] and "ImageNet stem" in row["setting"]


def test_demo_section_fast(tmp_path: Path) -> None:
    res = DEMO_SECTIONS.get("robustness")(_opts(tmp_path, None))
    assert res.data == {"mnist": "embedded"}
    rows = res.tables["demo_robust_accuracy"]
    assert {r["model"] for r in rows} == {"LeNet-5 undefended", "LeNet-5 FGSM-AT", "LeNet-5 PGD-AT"}
    for r in rows:
        assert r["clean"] > 0.3  # learnt something (chance is 0.1)
        assert r["eps=0.2"] <= r["clean"] + 0.02
    assert len(res.tables["demo_gradient_masking"]) == 3
    assert {f.kind for f in res.figures} == {"line", "images"}
    assert "medshield reproduce robustness" in res.sections[0].text
