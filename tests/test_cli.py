"""The command line, end to end (small settings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medshield.cli import app

runner = CliRunner()


def test_demo_fast_writes_report_and_results(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--fast", "--out", str(out), "--no-progress",
                                 "--section", "foundation"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["system"] == "demo"
    assert doc["data"] == {"mnist": "embedded", "breast-cancer": "embedded"}
    rows = doc["tables"]["baseline_accuracy"]
    assert [r["task"] for r in rows] == ["LeNet-5 on MNIST", "MLP on Wisconsin breast cancer"]
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0
    # even a short run must learn something: far above chance (10% digits, ~63% majority class)
    assert rows[0]["accuracy"] > 0.5 and rows[1]["accuracy"] > 0.8
    html = (out / "report.html").read_text()
    assert "LeNet-5 on MNIST" in html and f"{rows[0]['accuracy']:.4g}" in html
    assert html.count("data:image/png;base64,") >= 4
    assert (out / "baseline_accuracy.csv").exists()


def test_datasets_lists_embedded_without_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDSHIELD_DATA", raising=False)
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    assert "mnist" in result.output and "embedded" in result.output and "missing" in result.output


def test_datasets_with_shared_data(shared_data: Path) -> None:
    result = runner.invoke(app, ["datasets", "--data", str(shared_data)], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = {ln.split("│")[1].strip(): ln for ln in result.output.splitlines() if ln.count("│") >= 3}
    for name in ("mnist", "breastmnist", "pneumoniamnist", "post-operative", "wearable"):
        assert "full" in lines[name], lines.get(name)
    for name in ("dermamnist", "octmnist", "bloodmnist", "mias"):
        assert "missing" in lines[name], lines.get(name)


def test_reproduce_planned_and_unknown_systems_fail_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medshield.experiments import PLANNED

    monkeypatch.setitem(PLANNED, "future-system", "issue 99 (a later system)")
    result = runner.invoke(app, ["reproduce", "future-system"])
    assert result.exit_code == 2 and "tracked in issue 99" in " ".join(result.output.split())
    result = runner.invoke(app, ["reproduce", "nonsense"])
    assert result.exit_code == 2 and "unknown system" in result.output


def test_train_then_resume_and_report(tmp_path: Path) -> None:
    out = tmp_path / "train"
    args = ["train", "--dataset", "breast-cancer", "--model", "mlp", "--epochs", "2",
            "--out", str(out), "--no-progress", "--source", "embedded"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists() and (out / "results.json").exists()
    assert list(out.glob("*.pt")), "a checkpoint is written"
    again = runner.invoke(app, [*args[:6], "3", *args[7:], "--resume"])
    assert again.exit_code == 0, again.output
    hist = json.loads((out / "results.json").read_text())["meta"]["history"]
    assert len(hist["train_loss"]) == 3


def test_train_config_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: -3\n")
    result = runner.invoke(app, ["train", "--config", str(bad)])
    assert result.exit_code == 2 and "invalid configuration" in result.output
    result = runner.invoke(app, ["train", "--model", "no-such-net", "--epochs", "1",
                                 "--dataset", "breast-cancer", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown model" in result.output


def test_report_rebuild_and_show(tmp_path: Path) -> None:
    from medshield.results import ResultsFile, write_results

    write_results(ResultsFile(system="toy", tables={"t": [{"a": 1.5}]}), tmp_path)
    assert runner.invoke(app, ["report", str(tmp_path)]).exit_code == 0
    assert (tmp_path / "report.html").exists()
    shown = runner.invoke(app, ["show", str(tmp_path)])
    assert shown.exit_code == 0 and "1.5" in shown.output
    assert runner.invoke(app, ["report", str(tmp_path / "none")]).exit_code == 2


def test_serve_refuses_missing_weights_key_or_half_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from medshield.models import LeNet5

    monkeypatch.delenv("MEDSHIELD_API_KEY", raising=False)
    missing = runner.invoke(app, ["serve", "--model", str(tmp_path / "none.pt")])
    def said(result: object) -> str:
        return " ".join(result.output.split())  # type: ignore[attr-defined]

    assert missing.exit_code == 2 and "no such file" in said(missing)
    weights = tmp_path / "lenet.pt"
    torch.save(LeNet5().state_dict(), weights)
    half = runner.invoke(app, ["serve", "--model", str(weights), "--ssl-certfile", str(weights)])
    assert half.exit_code == 2 and "--ssl-keyfile" in said(half)
    nokey = runner.invoke(app, ["serve", "--model", str(weights), "--port", "0"])
    assert nokey.exit_code == 2 and "MEDSHIELD_API_KEY" in said(nokey)
