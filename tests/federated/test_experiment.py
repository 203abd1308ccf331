"""``reproduce eicpp`` (fast mode), the demo section and the FL bench's wiring."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from medshield.experiments import BENCHES, DEMO_SECTIONS, EXPERIMENTS, RunOptions
from medshield.experiments.eicpp import convergence
from medshield.results import write_results


def test_convergence_rule() -> None:
    acc = [0.5, 0.8, 0.9, 0.95, 0.96, 0.95, 0.96, 0.96]
    secs = [float(i) for i in range(1, 9)]
    assert convergence(acc, secs) == (4, 4.0)
    assert convergence([], []) == (None, None)


def test_reproduce_fast_has_the_papers_numbers_beside_ours(tmp_path: Path) -> None:
    res = EXPERIMENTS.get("eicpp")(RunOptions(out=tmp_path, mode="fast", progress=False))
    comp = {(r["partition"], r["method"]): r for r in res.tables["fig8_accuracy_comparison"]}
    assert comp[("iid", "eicpp")]["paper accuracy"] == 0.9547
    assert comp[("iid", "fedavg")]["paper accuracy"] == 0.7035
    assert comp[("iid", "centralised")]["ours accuracy"] > 0.8
    sweep = res.tables["fig9_budget_sweep"]
    finite = [r for r in sweep if r["target epsilon"] != "inf"]
    assert finite and all(r["epsilon spent"] == pytest.approx(float(r["target epsilon"]),
                                                              rel=1e-3) for r in finite)
    assert {r["unit"] for r in sweep} == {"hospital", "device"}
    units = [r["unit"] for r in res.tables["privacy_guarantees"]]
    assert "hospital-level" in units[0]
    ids = {f.id for f in res.figures}
    assert {"fig4_accuracy", "fig7_f1", "fig8_comparison_iid", "fig9_budget"} <= ids
    assert res.data["cifar10"] == "missing"
    write_results(res, tmp_path)  # strict JSON: no inf/nan leaks
    text = (tmp_path / "results.json").read_text()
    assert "Infinity" not in text and "NaN" not in text


def test_demo_section_fast(tmp_path: Path) -> None:
    res = DEMO_SECTIONS.get("eicpp")(RunOptions(out=tmp_path, mode="fast", progress=False))
    rows = {r["method"]: r for r in res.tables["eicpp_vs_fedavg"]}
    assert rows["EICPP"]["accuracy"] > 0.8 and rows["FedAvg"]["accuracy"] > 0.8
    private = rows["EICPP, eps=4 (hospital-level)"]
    assert private["epsilon"] == pytest.approx(4.0, rel=1e-3)
    assert rows["EICPP"]["epsilon"] is None and rows["EICPP"]["device-link bytes"] > 0
    assert not math.isnan(rows["FedAvg"]["seconds"])


def test_fl_bench_is_registered() -> None:
    assert "fl" in BENCHES.names()
