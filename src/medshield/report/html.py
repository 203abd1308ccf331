"""The HTML report: one self-contained file (figures inlined) that opens from disk."""

from __future__ import annotations

import base64
import datetime as _dt
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from medshield.report.figures import render_all
from medshield.results import ResultsFile, read_results

__all__ = ["build_report"]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:.4g}"
    return str(value)


def build_report(results_dir: str | Path, results: ResultsFile | None = None) -> Path:
    """Render ``results_dir/report.html`` (and ``figures/*.png``) from ``results.json``.

    Parameters
    ----------
    results_dir
        A directory holding ``results.json`` (as written by :func:`medshield.results.write_results`).
    results
        The results, if already in memory (otherwise read from the directory).
    """
    out = Path(results_dir)
    res = results if results is not None else read_results(out)
    pngs = render_all(res.figures, out / "figures")
    images = {fid: base64.b64encode(p.read_bytes()).decode("ascii") for fid, p in pngs.items()}
    titles = {f.id: f.title for f in res.figures}

    sections = list(res.sections)
    used_t = {t for s in sections for t in s.tables}
    used_f = {f for s in sections for f in s.figures}
    rest_t = [t for t in res.tables if t not in used_t]
    rest_f = [f.id for f in res.figures if f.id not in used_f]
    if rest_t or rest_f:
        from medshield.results import Section

        sections.append(Section(title="Other results", tables=rest_t, figures=rest_f))

    tables = {}
    for name, rows in res.tables.items():
        cols: list[str] = []
        for row in rows:
            cols.extend(k for k in row if k not in cols)
        tables[name] = {"cols": cols, "rows": [[_fmt(r.get(c)) for c in cols] for r in rows]}

    env = Environment(loader=PackageLoader("medshield.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    html = env.get_template("report.html").render(
        res=res,
        sections=sections,
        tables=tables,
        images=images,
        titles=titles,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    path = out / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
