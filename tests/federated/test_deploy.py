"""The Deployment Runtime on loopback: SuperLink, SuperNodes, device processes, flwr run.

Starting ~10 processes that each import torch and Flower takes about a minute on an idle
2-core machine (up to three when it is busy). The pieces it builds on are tested quickly
below (the app directory, the TCP device link).
"""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

import pytest

from medshield.federated import FLConfig, run_federated
from medshield.federated.deploy import accept_devices, device_main, free_port, write_app
from medshield.federated.hospital import train_hospital
from medshield.federated.topology import build_federation, build_model, state_to_arrays


def test_app_directory_names_the_installed_apps(tmp_path: Path) -> None:
    cfg = FLConfig(rounds=2, target_epsilon=2.0, update_clip=0.3)
    path = write_app(tmp_path / "app", cfg, out=tmp_path / "out")
    doc = tomllib.loads(path.read_text())
    comp = doc["tool"]["flwr"]["app"]["components"]
    assert comp == {"serverapp": "medshield.federated.apps:server_app",
                    "clientapp": "medshield.federated.apps:client_app"}
    conf = doc["tool"]["flwr"]["app"]["config"]
    assert FLConfig.from_flat(conf) == cfg and conf["method"] == "eicpp"


def test_hospital_with_device_processes_over_tcp_equals_simulation() -> None:
    """Devices as separate TCP peers (threads here) give the simulated round's model."""
    cfg = FLConfig(rounds=1, activation_clip=5.0, activation_noise=0.3)
    fed = build_federation(cfg)
    glob = state_to_arrays(build_model(cfg, fed))
    port = free_port()
    devices = [threading.Thread(target=device_main, args=(cfg,),
                                kwargs={"hospital": 1, "device": d, "port": port,
                                        "idle_timeout": 3.0}, daemon=True)
               for d in range(cfg.devices_per_hospital)]
    for th in devices:
        th.start()
    with accept_devices(port, cfg.devices_per_hospital, timeout=60) as links:
        tcp = train_hospital(cfg, fed, glob, hospital=1, round_=1, links=links)
    sim = train_hospital(cfg, fed, glob, hospital=1, round_=1)
    for k in sim.arrays:
        assert (tcp.arrays[k] == sim.arrays[k]).all(), k
    assert tcp.metrics["bytes"] == sim.metrics["bytes"] > 0
    for th in devices:
        th.join(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_deployed_run_on_loopback_equals_inprocess(tmp_path: Path) -> None:
    from medshield.federated.deploy import launch_local

    cfg = FLConfig(rounds=2)
    res = launch_local(cfg, tmp_path / "deploy", timeout=420)
    local = run_federated(cfg, method="eicpp")
    assert [r["accuracy"] for r in res["rounds"]] == [r["accuracy"] for r in local.rounds]
    assert all(r["replied"] == 2 for r in res["rounds"])
