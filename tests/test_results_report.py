from __future__ import annotations

import json
from pathlib import Path

import pytest

from medshield.report import build_report
from medshield.results import (
    BenchFile,
    BenchRow,
    FigureSpec,
    ResultsFile,
    Section,
    read_results,
    table_to_csv,
    table_to_markdown,
    write_bench,
    write_results,
)


def _results() -> ResultsFile:
    return ResultsFile(
        system="toy",
        data={"mnist": "embedded"},
        tables={"acc": [{"model": "a", "paper": 0.98, "ours": 0.97}, {"model": "b", "ours": 0.5}]},
        figures=[
            FigureSpec(id="curve", kind="line", title="curve", series={"x": [0.1, 0.5, None, 0.9]}),
            FigureSpec(id="bars", kind="bar", title="bars", x=["a", "b"], series={"s": [1.0, 2.0]}),
            FigureSpec(id="trade", kind="scatter", title="trade", x=[0.9, 0.5, None],
                       series={"acc": [0.95, 0.8, 0.7]}, point_labels=["none", "noise", "x"]),
            FigureSpec(id="cm", kind="matrix", title="cm", matrix=[[3, 1], [0, 4]], x=["0", "1"]),
            FigureSpec(id="imgs", kind="images", title="imgs", images=[[[[0.0, 1.0], [1.0, 0.0]]]],
                       row_labels=["raw"]),
        ],
        sections=[Section(title="Toy section", text="words", tables=["acc"], figures=["curve"])],
    )


def test_results_roundtrip_tables_and_report(tmp_path: Path) -> None:
    res = _results()
    write_results(res, tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["system"] == "toy" and doc["data"] == {"mnist": "embedded"}
    assert doc["tables"]["acc"][0] == {"model": "a", "paper": 0.98, "ours": 0.97}
    assert read_results(tmp_path) == res
    assert (tmp_path / "acc.csv").read_text().splitlines()[0] == "model,paper,ours"
    assert "| a | 0.98 | 0.97 |" in (tmp_path / "acc.md").read_text()

    html = build_report(tmp_path).read_text()
    assert "Toy section" in html and "Other results" in html  # unsectioned figures still shown
    assert html.count("data:image/png;base64,") == 5
    assert "<td>0.97</td>" in html
    for fid in ("curve", "bars", "trade", "cm", "imgs"):
        assert (tmp_path / "figures" / f"{fid}.png").stat().st_size > 1000


def test_merge_prefixes_tables_and_figures() -> None:
    whole = ResultsFile(system="demo")
    whole.merge(_results(), prefix="toy_")
    assert list(whole.tables) == ["toy_acc"]
    assert whole.sections[0].tables == ["toy_acc"] and whole.sections[0].figures == ["toy_curve"]
    assert {f.id for f in whole.figures} == {"toy_curve", "toy_bars", "toy_trade", "toy_cm",
                                            "toy_imgs"}


def test_bench_speedup_is_peer_over_ours(tmp_path: Path) -> None:
    row = BenchRow(case="fgsm", measure="time per image", unit="s", ours=2.0, peer=3.0,
                   peer_name="torchattacks")
    assert row.speedup == pytest.approx(1.5)
    write_bench(BenchFile(bench="attacks", machine={"cores": 2}, rows=[row]), tmp_path)
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["rows"][0]["speedup"] == pytest.approx(1.5) and doc["bench"] == "attacks"


def test_table_writers_handle_ragged_rows() -> None:
    rows = [{"a": 1}, {"b": 2.5}]
    assert table_to_csv(rows).splitlines() == ["a,b", "1,", ",2.5"]
    assert "| 1 |  |" in table_to_markdown(rows)


def test_read_results_missing_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="medshield reproduce"):
        read_results(tmp_path)
