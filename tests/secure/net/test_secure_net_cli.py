"""The command line end to end: two real server processes, the centre's process, a sensor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import medshield
from medshield.models import MODELS  # noqa: F401  (registers the models)
from medshield.secure.cli import secure_app

runner = CliRunner()


def _cli(*args: str) -> str:
    res = runner.invoke(secure_app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def _start(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``medshield secure ARGS``; stderr goes to ``log``, stdout to ``log.out``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    with open(log, "wb") as err, open(log.with_suffix(".out"), "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "medshield.secure.cli", *args],
                                stdout=out, stderr=err, env=env)


def _address(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in log.read_text(errors="replace").splitlines():
            if " listening on " in line:
                return line.rsplit(" ", 1)[1]
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"no address in {log}")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in started:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@pytest.mark.timeout(180)
def test_loopback_deployment_with_real_processes(tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    pki, state = tmp_path / "pki", tmp_path / "centre"
    _cli("init-ca", "--dir", str(pki))
    for name in ("centre", "server0", "server1", "sensor-1"):
        _cli("issue", "--dir", str(pki), "--name", name)
    logs = {n: tmp_path / f"{n}.log" for n in ("s0", "s1", "centre")}
    procs.append(_start(logs["s1"], "serve", "--party", "1", "--creds", str(pki),
                        "--listen", "127.0.0.1:0"))
    s1 = _address(logs["s1"], procs[-1])
    procs.append(_start(logs["s0"], "serve", "--party", "0", "--creds", str(pki),
                        "--listen", "127.0.0.1:0", "--peer", s1))
    s0 = _address(logs["s0"], procs[-1])
    procs.append(_start(logs["centre"], "centre", "--creds", str(pki), "--state", str(state),
                        "--listen", "127.0.0.1:0", "--count", "3", "--wait", "120"))
    centre = _address(logs["centre"], procs[-1])
    servers = f"{s0},{s1}"
    out = _cli("deploy-model", "--creds", str(pki), "--servers", servers, "--centre", centre,
               "--state", str(state), "--model", "pehealth-f", "--slots", "3",
               "--batch-size", "2")
    assert "material for 3 requests" in out
    x = np.random.default_rng(0).random((3, 2, 1, 28, 28))
    for i in range(3):
        np.save(tmp_path / f"x{i}.npy", x[i])
        out = _cli("infer", "--creds", str(pki), "--name", "sensor-1", "--servers", servers,
                   "--input", str(tmp_path / f"x{i}.npy"), "--patient", f"patient-{i}",
                   "--rid", f"req-{i}")
        assert f"request req-{i} accepted" in out
    # a replay is refused with a clear error
    res = runner.invoke(secure_app, ["infer", "--creds", str(pki), "--name", "sensor-1",
                                     "--servers", servers, "--input", str(tmp_path / "x0.npy"),
                                     "--patient", "patient-0", "--rid", "req-0"])
    assert res.exit_code == 1 and "replay" in res.output
    assert procs[2].wait(120) == 0, logs["centre"].read_text()
    printed = logs["centre"].with_suffix(".out").read_text()
    lines = [json.loads(s) for s in printed.splitlines()]
    stored = [json.loads(s) for s in (state / "results.jsonl").read_text().splitlines()]
    assert sorted(r["rid"] for r in lines) == sorted(r["rid"] for r in stored) == [
        "req-0", "req-1", "req-2"], (printed, logs["centre"].read_text())
    net = medshield.create("model", "pehealth-f", seed=0).eval()
    for r in lines:
        i = int(r["rid"][-1])
        assert r["status"] == "ok" and r["patient"] == f"patient-{i}"
        with torch.no_grad():
            ref = net(torch.as_tensor(x[i], dtype=torch.float32)).numpy()
        np.testing.assert_allclose(r["output"], ref, atol=0.05)
    # server 1 is killed: the sensor gets a clear error at once and server 0 keeps running
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait(10)
    t0 = time.monotonic()
    res = runner.invoke(secure_app, ["infer", "--creds", str(pki), "--name", "sensor-1",
                                     "--servers", servers, "--input", str(tmp_path / "x1.npy"),
                                     "--patient", "p", "--rid", "after-kill"])
    assert res.exit_code == 1 and "cannot connect" in res.output
    assert time.monotonic() - t0 < 15
    assert procs[0].poll() is None
    for log in logs.values():  # no key material in any party's output
        for path in (log, log.with_suffix(".out")):
            assert "PRIVATE KEY" not in path.read_text()
