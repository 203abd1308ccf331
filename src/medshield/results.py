"""The one convention for result files of every system.

``medshield reproduce SYSTEM --out DIR`` writes ``DIR/results.json``::

    {"system": ..., "data": {dataset: "full"|"embedded"|"missing"},
     "tables": {table_name: [row, ...]}, "notes": [...], "meta": {...}}

where every row that corresponds to a number the paper reports carries both ``"paper"`` and
``"ours"``. ``medshield bench NAME --out DIR`` writes ``DIR/bench.json``::

    {"bench": NAME, "machine": {...},
     "rows": [{"case", "measure", "unit", "ours", "peer", "peer_name", "speedup"}]}

with ``speedup = peer / ours`` for costs (time, bytes), so above 1 means medshield is ahead.
"""

from __future__ import annotations

import csv
import json
import os
import platform
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, model_validator

__all__ = [
    "DataSource",
    "FigureSpec",
    "Section",
    "ResultsFile",
    "BenchRow",
    "BenchFile",
    "machine_info",
    "write_results",
    "read_results",
    "write_bench",
    "table_to_markdown",
    "table_to_csv",
]

DataSource = Literal["full", "embedded", "missing"]


class FigureSpec(BaseModel):
    """Data for one plot, stored in ``results.json`` so figures are drawn from saved results.

    ``kind`` is ``"line"`` (``x`` and named ``series`` of y values), ``"bar"`` (``x`` labels,
    ``series``), ``"scatter"`` (numeric ``x``, named ``series`` of y values, each point named by
    ``point_labels``: a trade-off such as a privacy-utility frontier), ``"matrix"`` (``matrix``
    rows with ``x``/``y`` tick labels) or ``"images"`` (``images``: a list of rows, each a list of
    2-D or CHW arrays in [0, 1], ``row_labels``).
    """

    id: str
    kind: Literal["line", "bar", "scatter", "matrix", "images"]
    title: str
    x: list[Any] = Field(default_factory=list)
    series: dict[str, list[float | None]] = Field(default_factory=dict)
    matrix: list[list[float]] = Field(default_factory=list)
    images: list[list[Any]] = Field(default_factory=list)
    row_labels: list[str] = Field(default_factory=list)
    point_labels: list[str] = Field(default_factory=list)
    xlabel: str = ""
    ylabel: str = ""
    y_labels: list[str] = Field(default_factory=list)
    logx: bool = False


class Section(BaseModel):
    """A titled part of the report: prose, then the named tables and figures."""

    title: str
    text: str = ""
    tables: list[str] = Field(default_factory=list)
    figures: list[str] = Field(default_factory=list)


class ResultsFile(BaseModel):
    """Contents of ``results.json`` (see module docstring)."""

    system: str
    data: dict[str, DataSource] = Field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    figures: list[FigureSpec] = Field(default_factory=list)
    sections: list[Section] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    def merge(self, other: ResultsFile, prefix: str = "") -> None:
        """Fold another system's results into this one (the demo is several systems)."""
        self.data.update(other.data)
        for name, rows in other.tables.items():
            self.tables[prefix + name] = rows
        for fig in other.figures:
            self.figures.append(fig.model_copy(update={"id": prefix + fig.id}))
        for sec in other.sections:
            self.sections.append(
                sec.model_copy(
                    update={
                        "tables": [prefix + t for t in sec.tables],
                        "figures": [prefix + f for f in sec.figures],
                    }
                )
            )
        self.notes.extend(other.notes)
        if other.meta:
            self.meta[prefix + other.system] = other.meta


class BenchRow(BaseModel):
    """One measured cost, ours beside a peer measured in the same process run."""

    case: str
    measure: str
    unit: str
    ours: float
    peer: float | None = None
    peer_name: str | None = None
    speedup: float | None = None
    spread: float | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _speedup(self) -> BenchRow:
        if self.speedup is None and self.peer is not None and self.ours > 0:
            self.speedup = self.peer / self.ours
        return self


class BenchFile(BaseModel):
    """Contents of ``bench.json`` (see module docstring)."""

    bench: str
    machine: dict[str, Any]
    rows: list[BenchRow]


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: cores, threads, torch version, CUDA or not."""
    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
    }


def write_results(results: ResultsFile, out: str | os.PathLike[str]) -> Path:
    """Write ``results.json`` plus one CSV and one Markdown file per table into ``out``."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    path.write_text(json.dumps(results.model_dump(), indent=2, default=_json_default))
    for name, rows in results.tables.items():
        (out_dir / f"{name}.csv").write_text(table_to_csv(rows))
        (out_dir / f"{name}.md").write_text(table_to_markdown(rows, title=name))
    return path


def read_results(path: str | os.PathLike[str]) -> ResultsFile:
    """Load a ``results.json`` (or a directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    try:
        return ResultsFile.model_validate_json(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no results file; run `medshield reproduce` or `medshield demo` first") from None


def write_bench(bench: BenchFile, out: str | os.PathLike[str]) -> Path:
    """Write ``bench.json`` into ``out`` and return its path."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "bench.json"
    path.write_text(json.dumps(bench.model_dump(), indent=2, default=_json_default))
    return path


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    return cols


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_to_markdown(rows: list[dict[str, Any]], title: str | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (columns in first-seen order)."""
    cols = _columns(rows)
    lines = [f"### {title}", ""] if title else []
    if not cols:
        return "\n".join(lines + ["(no rows)", ""])
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def table_to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text of ``rows`` (columns in first-seen order)."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
