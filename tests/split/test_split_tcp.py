"""Split learning across two real processes on loopback: a server process and this one."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from _split_fixtures import centralised, device_batches, halves

from medshield.split import SplitDevice, device_tcp

pytestmark = pytest.mark.timeout(90)

HERE = Path(__file__).parent
SRC = HERE.resolve().parents[1] / "src"


def test_two_devices_and_a_server_process_match_centralised_training(tmp_path: Path):
    out = tmp_path / "server.pt"
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_split_server.py"), "2", "2", "adam", "0.01", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"server did not start: {line}{proc.stdout.read()}"
        port = int(line.split()[1])
        dev_half, _ = halves(0)
        reports: dict[int, object] = {}
        errors: list[BaseException] = []

        def run(rank: int) -> None:
            dev = SplitDevice(copy.deepcopy(dev_half), device_batches(rank),
                              eval_data=device_batches(rank, 1), optimizer="adam", lr=0.01,
                              device="cpu")
            try:
                reports[rank] = device_tcp(dev, "127.0.0.1", port, rank=rank, timeout=30,
                                           turn_timeout=60)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        # connect in reverse order: turns must follow the ranks, not the connection order
        threads = [threading.Thread(target=run, args=(r,)) for r in (1, 0)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=80)
        assert not errors, errors
        rest = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0 and "DONE" in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    saved = torch.load(out, weights_only=True)
    ref = centralised(0, 2, epochs=2, optimizer="adam", lr=0.01).state_dict()
    got = {**saved["device"], **saved["server"]}
    for name, value in ref.items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=name)
    hist = saved["history"]
    assert hist["samples"] == 2 * 2 * 15
    for rank in (0, 1):
        srv = hist["channels"][str(rank)]
        dev = reports[rank].channel  # type: ignore[attr-defined]
        assert srv["bytes_sent"] == dev["bytes_received"] > 0
        assert srv["bytes_received"] == dev["bytes_sent"] > 0
        assert reports[rank].eval_samples == 5  # type: ignore[attr-defined]
