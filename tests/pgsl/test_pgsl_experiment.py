"""`medshield reproduce pgsl` and the demo section in mode "fast" (seconds, embedded data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medshield.experiments import DEMO_SECTIONS, EXPERIMENTS
from medshield.experiments.base import RunOptions
from medshield.experiments.pgsl import run_pgsl
from medshield.experiments.pgsl_common import SETTINGS, default_epochs, load_images
from medshield.experiments.pgsl_paper import TABLE_I, TABLE_II

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def fast_results(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pgsl")
    with pytest.MonkeyPatch.context() as mp:  # embedded MNIST only, whatever the env says
        mp.delenv("MEDSHIELD_DATA", raising=False)
        return run_pgsl(RunOptions(out=out, mode="fast", data_root=None, progress=False,
                                   threads=1))


def test_reproduce_pgsl_fast_has_every_table_with_paper_beside_ours(fast_results):
    res = fast_results
    assert "pgsl" in EXPERIMENTS.names()
    # MNIST: embedded, or the full files when $MEDSHIELD_DATA has them; the medical column
    # is MIAS, BreastMNIST (with a note saying so) or missing (with a note too)
    assert res.data["mnist"] in ("embedded", "full")
    medical = {k: v for k, v in res.data.items() if k != "mnist"}
    assert list(medical) in (["mias"], ["breastmnist"])
    if medical.get("mias") == "missing":
        assert any("skipped" in n for n in res.notes)
    elif "breastmnist" in medical:
        assert any("BreastMNIST" in n for n in res.notes)
    t1 = {r["method"]: r for r in res.tables["table1_reconstruction_mse"]
          if r["paper dataset"] == "MNIST"}
    for name, (_, mnist) in TABLE_I.items():
        assert t1[name]["paper"] == mnist and t1[name]["ours"] >= 0
    assert {"JSMA + MIA (defence-aware)", "[8] + MIA (defence-aware)"} <= set(t1)
    # Inverting Gradients, beyond the paper: against every model, no paper figure beside it
    # ... and the white-box inversion through the device half the server relays
    for name in ("IG", "JSMA + IG", "[8] + IG", "Ours (IG)", "rMLE (white-box)",
                 "JSMA + rMLE (white-box)", "[8] + rMLE (white-box)"):
        assert t1[name]["paper"] is None and t1[name]["ours"] >= 0
    t2 = {r["method"]: r for r in res.tables["table2_accuracy"] if r["paper dataset"] == "MNIST"}
    for name, (_, mnist) in TABLE_II.items():
        assert t2[name]["paper"] == mnist and 0 <= t2[name]["ours"] <= 100
    # the evasion attacks are also crafted white-box on the split model itself; BIM with the
    # whole network's gradients cannot leave the model more accurate than on clean images
    clean = t2["clean (undefended split model)"]["ours"]
    for name in ("JSMA", "C&W", "BIM", "FGSM"):
        assert 0 <= t2[name]["ours (white-box)"] <= 100
    assert t2["BIM"]["ours (white-box)"] <= clean
    for sweep in res.tables["fig3_mu_sweep"]:
        assert sweep["paper"] == 0.55 and 0.05 <= sweep["ours"] <= 0.95
    frontier = {r["defence"]: r for r in res.tables["privacy_utility_frontier"]}
    assert {"none", "PGSL"} <= set(frontier) and any(d.startswith("NoPeek") for d in frontier)
    for row in frontier.values():  # the strongest of the three attackers is reported
        tried = [row["ssim (paper's attacker)"], row["ssim (defence-aware)"],
                 row["ssim (white-box)"]]
        assert row["ssim (strongest)"] == max(tried)
        assert row["strongest attacker"] in ("paper's", "defence-aware", "white-box")
    assert {f.id for f in res.figures} >= {"mu_sweep", "reconstructions_mnist", "frontier"}
    cost = res.meta["MNIST"]["cost"]
    assert cost["pgsl"]["bytes_per_sample"] > 0 and cost["vanilla"]["bytes_per_sample"] > 0


def test_pgsl_demo_section_fast(tmp_path: Path):
    res = DEMO_SECTIONS.get("pgsl")(RunOptions(out=tmp_path, mode="fast", progress=False))
    rows = {r["defence"]: r for r in res.tables["split_inversion"]}
    assert set(rows) == {"none", f"Laplace noise b={SETTINGS['fast'].noise_scale}", "PGSL"}
    for row in rows.values():
        assert row["bytes per sample"] > 0 and row["rounds (all links)"] > 0
        assert -1 <= row["MIA ssim (defence-aware)"] <= 1
        assert -1 <= row["white-box ssim (server knows the device half)"] <= 1


def test_medical_column_falls_back_to_breastmnist(shared_data: Path):
    opts = RunOptions(out=Path("."), mode="fast", data_root=shared_data, progress=False)
    data = load_images("medical", opts, SETTINGS["fast"])
    assert data is not None
    if (shared_data / "mias").exists():
        assert data.key == "MIAS"
    else:
        assert data.key == "BreastMNIST" and "MIAS" in data.note
    assert data.x_train.shape[1:] == (1, 28, 28) and data.num_classes >= 2
    assert len(data.x_aux) > 0 and float(data.x_train.max()) <= 1.0


def test_small_sets_train_their_own_number_of_epochs():
    quick = SETTINGS["quick"]
    assert default_epochs(quick, quick.n_train) == quick.epochs
    assert default_epochs(quick, quick.n_train // 2) == quick.epochs
    # BreastMNIST's 409 victims: 8 steps an epoch, so many more epochs
    assert default_epochs(quick, 409) == quick.small_set_epochs > quick.epochs
    # never fewer than the dataset-independent number
    fast = SETTINGS["fast"]
    assert default_epochs(fast, 10) == max(fast.epochs, fast.small_set_epochs)
