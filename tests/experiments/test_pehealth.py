"""``reproduce pehealth``, its demo section and ``bench secure`` (fast settings, no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medshield.benchmarks import secure as bench
from medshield.experiments import pehealth, pehealth_paper
from medshield.experiments.base import BENCHES, DEMO_SECTIONS, EXPERIMENTS, RunOptions
from medshield.experiments.pehealth_tables import table_ii


def test_registered() -> None:
    assert EXPERIMENTS.get("pehealth") is pehealth.pehealth_experiment
    assert DEMO_SECTIONS.get("pehealth") is pehealth.pehealth_demo
    assert BENCHES.get("secure") is bench.secure_bench


def test_precision_digits_to_bits() -> None:
    assert [pehealth.digits_to_bits(d) for d in (1, 2, 3, 4, 5)] == [4, 7, 10, 14, 17]
    for d in range(1, 6):  # at least the decimal resolution, at most one bit more
        f = pehealth.digits_to_bits(d)
        assert 2.0**-f <= 10.0**-d < 2.0 ** -(f - 1)


def test_paper_numbers_are_complete() -> None:
    assert set(pehealth_paper.NETWORK_DATA) == set("abcdef")
    for row in pehealth_paper.TABLE_IV.values():
        assert set(row) == set("abcdef")
    assert pehealth_paper.TABLE_I["PE-HEALTH"]["message_MB"] == 0.035
    assert pehealth_paper.TABLE_III["PE-HEALTH"]["runtime_s"] == 1.02


def test_table_ii_sizes_follow_the_encodings() -> None:
    rows = table_ii(batch=32)
    ours = rows[0]
    assert ours["ours upload MB (to both servers)"] == pytest.approx(2 * 32 * 784 * 8 / 1e6)
    assert ours["ours result MB (from both servers)"] == pytest.approx(2 * 32 * 10 * 8 / 1e6)
    assert any(r["approach"] == "paper: PE-HEALTH" and r["paper upload MB"] == 24.5 for r in rows)


def test_secure_size_costs_are_measured() -> None:
    cost = pehealth.secure_size_costs(reps=1)
    assert all(v > 0 for v in cost.values())
    assert cost["fixed_base_exp_ms"] == pytest.approx(cost["mul_ms"] * 2047 / 2, rel=1e-6)


def test_demo_section(tmp_path) -> None:
    res = pehealth.pehealth_demo(RunOptions(out=tmp_path, mode="fast"))
    beaver, elgamal = res.tables["secure_vs_plaintext"]
    assert beaver["backend"] == "beaver-2pc" and beaver["argmax agrees with plaintext"] == 1.0
    assert 0 < beaver["online MB/image (both servers)"] < 0.1
    assert elgamal["backend"] == "elgamal-2pc" and elgamal["conversion error rate"] is not None
    kinds = {r["layer"].split("(")[-1] for r in res.tables["per_layer_ms"]}
    assert {"conv)", "linear)", "relu)"} <= kinds
    assert all(r["beaver-2pc ms/image (d=4)"] >= 0 for r in res.tables["per_layer_ms"])
    assert res.data["mnist"] == "embedded"


def test_bench_ours_over_tcp_matches_plaintext() -> None:
    from medshield.secure.compiler import compile_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    x = np.random.default_rng(0).normal(size=(3, 5))
    compiled = compile_model(net, (5,), frac_bits=bench.FRAC_BITS, ring_bits=bench.RING_BITS)
    out = bench.run_ours(compiled, x, reps=2)
    with torch.no_grad():
        ref = net(torch.from_numpy(x).float()).numpy()
    assert np.abs(out["output"] - ref).max() < 0.01
    assert out["online_bytes_both"] > 0 and out["offline_bytes_both"] > 0 and out["rounds"] > 0


def test_bench_reports_an_unavailable_peer(monkeypatch) -> None:
    monkeypatch.setenv("MEDSHIELD_CRYPTEN_PYTHON", "/nonexistent/python")
    py, _, reason = bench.find_crypten()
    assert py is None and "MEDSHIELD_CRYPTEN_PYTHON" in reason
    net = nn.Sequential(nn.Linear(2, 2)).eval()
    x = np.zeros((1, 2))
    ours = [{"per_image_ms": 1.0, "seconds": 1e-3, "offline_seconds": 1e-3, "channel": "x",
             "online_bytes_both": 10, "offline_bytes_both": 20, "upload_bytes": 4, "rounds": 1,
             "output": np.zeros((1, 2))}]
    rows = bench._rows("case", 1, ours, [], reason, net, x)
    assert rows[0].peer is None and "peer unavailable" in (rows[0].note or "")


@pytest.mark.slow
def test_fast_reproduction_on_embedded_mnist(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MEDSHIELD_DATA", raising=False)
    res = pehealth.pehealth_experiment(RunOptions(out=tmp_path, mode="fast", data_root=None))
    assert res.data["mnist"] == "embedded" and res.data["post-operative"] == "missing"
    fig6 = res.tables["fig6_accuracy"]
    assert {r["net"] for r in fig6} == {"e", "f"}
    assert {r["backend"] for r in fig6} == {"beaver-2pc", "elgamal-2pc"}
    beaver = {r["d"]: r for r in res.tables["fig7_error"] if r["net"] == "f"
              and r["backend"] == "beaver-2pc"}
    assert beaver[2]["ours max |output error|"] < beaver[1]["ours max |output error|"]
    table4 = res.tables["table4_layer_runtime"]
    assert any(r["paper ms"] == 866.0 for r in table4)
    beaver_ms = [v for r in table4 for k, v in r.items() if k.startswith("ours beaver-2pc ms")]
    assert beaver_ms and all(v >= 0 for v in beaver_ms) and sum(beaver_ms) > 0
    assert {"table1_network_e", "table3_network_f", "table2_sensor_centre"} <= set(res.tables)
    assert res.notes and res.figures
