"""Draw the figures of a results file (PNG) from the data saved in it.

Figures are never recomputed from experiments here: every plot is a rendering of a
:class:`~medshield.results.FigureSpec` that the experiment stored in ``results.json``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from medshield.results import FigureSpec  # noqa: E402

__all__ = ["render_figure", "render_all"]


def _line(spec: FigureSpec, ax: plt.Axes) -> None:
    for name, ys in spec.series.items():
        xs = spec.x if spec.x else list(range(1, len(ys) + 1))
        pts = [(x, y) for x, y in zip(xs, ys, strict=False) if y is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name)
    if spec.logx:
        ax.set_xscale("log")
    if len(spec.series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _bar(spec: FigureSpec, ax: plt.Axes) -> None:
    names = list(spec.series)
    width = 0.8 / max(len(names), 1)
    idx = np.arange(len(spec.x))
    for i, name in enumerate(names):
        vals = [np.nan if v is None else v for v in spec.series[name]]
        ax.bar(idx + i * width, vals, width, label=name)
    ax.set_xticks(idx + width * (len(names) - 1) / 2, [str(x) for x in spec.x], rotation=30, ha="right")
    if len(names) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _scatter(spec: FigureSpec, ax: plt.Axes) -> None:
    for name, ys in spec.series.items():
        pts = [(x, y, lab) for x, y, lab in zip(
            spec.x, ys, spec.point_labels or [""] * len(ys), strict=False)
            if x is not None and y is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=28, label=name, zorder=3)
        for x, y, lab in pts:
            if lab:
                ax.annotate(lab, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if len(spec.series) > 1:
        ax.legend(fontsize=8)
    ax.margins(0.15)
    ax.grid(alpha=0.3)


def _matrix(spec: FigureSpec, ax: plt.Axes) -> None:
    m = np.asarray(spec.matrix, dtype=float)
    im = ax.imshow(m, cmap="Blues")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    if spec.x:
        ax.set_xticks(range(m.shape[1]), [str(v) for v in spec.x], rotation=45, ha="right", fontsize=7)
    if spec.y_labels:
        ax.set_yticks(range(m.shape[0]), spec.y_labels, fontsize=7)
    if m.size <= 144:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=6,
                    color="white" if v > m.max() / 2 else "black")


def _images(spec: FigureSpec) -> plt.Figure:
    rows = spec.images
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.2 * ncols + 1, 1.3 * len(rows) + 0.4),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                img = np.asarray(row[j], dtype=float)
                if img.ndim == 3:
                    img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
                ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
        if i < len(spec.row_labels):
            axes[i][0].set_title(spec.row_labels[i], fontsize=8, loc="left")
    fig.suptitle(spec.title, fontsize=10)
    fig.tight_layout()
    return fig


def render_figure(spec: FigureSpec, path: str | Path) -> Path:
    """Render one figure spec to a PNG file at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if spec.kind == "images":
        fig = _images(spec)
    else:
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        {"line": _line, "bar": _bar, "scatter": _scatter,
         "matrix": _matrix}[spec.kind](spec, ax)
        ax.set_title(spec.title, fontsize=10)
        ax.set_xlabel(spec.xlabel)
        ax.set_ylabel(spec.ylabel)
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_all(specs: list[FigureSpec], out_dir: str | Path) -> dict[str, Path]:
    """Render every spec into ``out_dir/<id>.png``; returns id -> path."""
    out = Path(out_dir)
    return {spec.id: render_figure(spec, out / f"{spec.id}.png") for spec in specs}
