"""`medshield split`: PGSL with a server process and device processes over mutual TLS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medshield.cli import app
from medshield.split.deploy import DeployConfig, build_halves, device_shard, tls_contexts

pytestmark = pytest.mark.timeout(180)


def test_pgsl_trains_across_real_processes_over_mutual_tls(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MEDSHIELD_DATA", raising=False)  # embedded digits: the same everywhere
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "split", "local", "--defence", "pgsl", "--devices", "2", "--epochs", "1",
        "--n-train", "256", "--n-test", "64", "--width", "8", "--tls", "--out", str(out),
        "--timeout", "150"])
    assert result.exit_code == 0, result.output + "".join(
        p.read_text() for p in (out / "logs").glob("*.log"))
    assert "mutual TLS" in result.output and "test accuracy per device" in result.output
    assert "device half sealed" in result.output
    summary = json.loads((out / "history.json").read_text())
    assert summary["tls"] is True and summary["config"]["defence"] == "pgsl"
    # the device half passed through the server encrypted: it kept no copy of it
    assert summary["sealed_handoff"] is True and not (out / "device_half.pt").exists()
    key = (out / "devices" / "handoff.key").read_bytes()
    assert len(key) == 32 and key.hex() not in (out / "logs" / "server.log").read_text()
    assert set(summary["eval_accuracy"]) == {"0", "1"}
    assert all(0.0 <= a <= 1.0 for a in summary["eval_accuracy"].values())
    assert summary["samples"] == 256 and summary["bytes_total"] > 256 * 8 * 14 * 14 * 4
    head = torch.load(out / "server_head.pt")
    # PGSL's head: three streams and the fusion convolution were trained by the server
    assert {k.split(".")[1] for k in head if k.startswith("streams.")} == {"a", "f", "r"}
    assert any(k.startswith("fusion.") for k in head)
    logs = "".join(p.read_text() for p in (out / "logs").glob("device*.log"))
    assert logs.count("DONE") == 2


def test_parties_build_the_same_network_and_disjoint_shards(monkeypatch):
    monkeypatch.delenv("MEDSHIELD_DATA", raising=False)
    cfg = DeployConfig(devices=3, n_train=90, n_test=30, width=4, hidden=8)
    shards = [device_shard(cfg, r) for r in range(3)]
    assert [len(s[0]) for s in shards] == [30, 30, 30]
    flat = torch.cat([s[0].flatten(1) for s in shards])
    assert len(torch.unique(flat, dim=0)) == 90  # no image on two devices
    d1, h1 = build_halves(cfg, (1, 28, 28), 10)
    d2, h2 = build_halves(cfg, (1, 28, 28), 10)
    for a, b in ((d1, d2), (h1, h2)):
        torch.testing.assert_close(a.state_dict(), b.state_dict())
    _, plain = build_halves(DeployConfig(defence="none", width=4, hidden=8), (1, 28, 28), 10)
    assert not any(k.startswith("streams.") for k in plain.state_dict())
    with pytest.raises(ValueError, match="rank"):
        device_shard(cfg, 3)


def test_bad_configs_and_tls_options_are_clear_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="defence"):
        DeployConfig(defence="noise")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="devices"):
        DeployConfig(devices=0)
    with pytest.raises(ValueError, match="at least the number of devices"):
        DeployConfig(devices=4, n_test=3)
    path = tmp_path / "run.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        DeployConfig.load(path)
    path.write_text(json.dumps({"defence": "pgsl", "widht": 8}))
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['widht'\]"):
        DeployConfig.load(path)
    with pytest.raises(ValueError, match="no deployment config"):
        DeployConfig.load(tmp_path / "missing.json")
    cfg = DeployConfig(width=4)
    assert DeployConfig.load(cfg.save(tmp_path / "ok.json")) == cfg
    assert tls_contexts(None, None, None, server=True) is None
    with pytest.raises(ValueError, match="all of --ca, --cert and --key"):
        tls_contexts(tmp_path / "ca.pem", None, None, server=False)
    result = CliRunner().invoke(app, ["split", "keygen", "--out", str(tmp_path / "k")])
    assert result.exit_code == 0 and len((tmp_path / "k").read_bytes()) == 32
    result = CliRunner().invoke(app, ["split", "keygen", "--out", str(tmp_path / "k")])
    assert result.exit_code == 1 and "never overwritten" in result.output
    result = CliRunner().invoke(app, ["split", "device", "--config", str(path), "--rank", "0"])
    assert result.exit_code == 1 and "widht" in result.output
    result = CliRunner().invoke(app, ["split", "device", "--config", str(tmp_path / "ok.json"),
                                      "--rank", "0", "--server", "nohost"])
    assert result.exit_code == 1 and "HOST:PORT" in result.output
