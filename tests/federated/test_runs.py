"""End-to-end runs on the Wisconsin table: EICPP, baselines, faults, checkpoints, Flower."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from medshield.federated import FLConfig, run_federated, train_centralised
from medshield.federated.apps import hospital_train

SMALL = FLConfig(rounds=3, hospitals=2, devices_per_hospital=2, lr=0.05)


def same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_config_flat_round_trip() -> None:
    cfg = SMALL.with_(target_epsilon=2.0, update_clip=1.0, hidden="8,4")
    flat = cfg.to_flat()
    assert FLConfig.from_flat(flat) == cfg
    assert FLConfig.from_flat({"update-clip": 3.0, "unknown": 1}).update_clip == 3.0
    assert FLConfig.from_flat(FLConfig().to_flat()).target_epsilon == math.inf
    with pytest.raises(ValueError, match="update_clip"):
        FLConfig(target_epsilon=1.0)


def test_eicpp_learns_and_counts_traffic() -> None:
    run = run_federated(SMALL, method="eicpp")
    assert [r["round"] for r in run.rounds] == [1.0, 2.0, 3.0]
    assert run.rounds[-1]["accuracy"] > 0.85
    assert all(r["replied"] == 2 and r["failed"] == 0 for r in run.rounds)
    assert run.rounds[0]["bytes"] > 0 and math.isinf(run.epsilon)
    assert {"precision", "recall", "f1"} <= run.rounds[-1].keys()


def test_private_run_spends_its_target_epsilon() -> None:
    cfg = SMALL.with_(update_clip=1.0, target_epsilon=4.0, activation_clip=5.0,
                      activation_noise=0.5)
    run = run_federated(cfg, method="eicpp")
    assert run.noise_multiplier > 1.0
    eps = [r["epsilon"] for r in run.rounds]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(4.0, rel=1e-3)
    assert run.dp_unit == "hospital"


def test_baselines_run_on_the_same_partition() -> None:
    fedavg = run_federated(SMALL, method="fedavg")
    fedma = run_federated(SMALL, method="fedma")
    central = train_centralised(SMALL)
    for run in (fedavg, fedma, central):
        assert len(run.rounds) == 3 and run.rounds[-1]["accuracy"] > 0.8
    assert fedavg.rounds[0]["replied"] == 4  # flat: every device is a client
    dp = run_federated(SMALL.with_(update_clip=1.0, target_epsilon=2.0), method="fedavg")
    assert dp.epsilon == pytest.approx(2.0, rel=1e-3) and dp.dp_unit == "device"


def test_crashed_hospital_mid_round_does_not_lose_the_round() -> None:
    crashing = ClientApp()

    @crashing.train()
    def train(msg: Message, context: Context) -> Message:
        if int(msg.content["config"]["server-round"]) == 2 and \
                int(context.node_config["partition-id"]) == 0:
            raise RuntimeError("hospital 0 lost power in round 2")
        return hospital_train(msg, context)

    run = run_federated(SMALL, method="eicpp", client_app=crashing)
    r2 = run.rounds[1]
    assert r2["replied"] == 1 and r2["failed"] == 1
    assert run.rounds[2]["replied"] == 2
    assert run.rounds[-1]["accuracy"] > 0.85


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    cfg = SMALL.with_(rounds=4, update_clip=2.0, target_epsilon=8.0, activation_clip=5.0,
                      activation_noise=0.3)
    full = run_federated(cfg, method="eicpp")
    first = run_federated(cfg, method="eicpp", checkpoint_dir=tmp_path, stop_after=2)
    assert len(first.rounds) == 2 and (tmp_path / "last.pt").is_file()
    resumed = run_federated(cfg, method="eicpp", checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_from == 2 and len(resumed.rounds) == 4
    assert same_arrays(resumed.arrays, full.arrays)
    assert resumed.epsilon == full.epsilon
    assert [r["accuracy"] for r in resumed.rounds] == [r["accuracy"] for r in full.rounds]
    with pytest.raises(ValueError, match="another run"):
        run_federated(cfg.with_(lr=0.01), method="eicpp", checkpoint_dir=tmp_path, resume=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_flower_simulation_runtime_gives_the_inprocess_result() -> None:
    """The real Flower path (run_simulation with Ray) once, at the smallest size."""
    pytest.importorskip("ray", reason="flwr[simulation] (Ray) is not installed")
    cfg = SMALL.with_(rounds=1)
    ray_run = run_federated(cfg, method="eicpp", backend="flower")
    local = run_federated(cfg, method="eicpp")
    assert ray_run.rounds[0]["replied"] == 2
    assert same_arrays(ray_run.arrays, local.arrays)
