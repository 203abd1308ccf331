"""Reports: tables and plots made from saved ``results.json`` files."""

from medshield.report.figures import render_all, render_figure
from medshield.report.html import build_report

__all__ = ["build_report", "render_all", "render_figure"]
