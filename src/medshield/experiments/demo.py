"""``medshield demo``: every system's demo section on embedded data, one report."""

from __future__ import annotations

import time

from rich.console import Console

from medshield.experiments.base import DEMO_SECTIONS, RunOptions
from medshield.report import build_report
from medshield.results import ResultsFile, machine_info, write_results

__all__ = ["run_demo", "DEMO_ORDER"]

#: The order in which sections appear; sections registered later and not listed here follow.
DEMO_ORDER = ["foundation", "robustness", "pgsl", "obfnet", "eicpp", "pehealth"]

#: Optional packages a section may need -> the extra that installs them.
OPTIONAL = {"flwr": "federated", "opacus": "federated", "ray": "federated", "fastapi": "serve",
            "uvicorn": "serve", "httpx": "serve", "onnx": "device", "onnxruntime": "device"}


def run_demo(opts: RunOptions, sections: list[str] | None = None,
             console: Console | None = None) -> ResultsFile:
    """Run the demo sections (all registered ones by default) and write results and report.

    The demo uses embedded data only (``opts.data_root`` is ignored), so it runs offline on a
    fresh machine. Writes ``opts.out/results.json``, ``report.html`` and the tables and figures.
    """
    console = console or Console()
    names = DEMO_SECTIONS.names()
    ordered = [n for n in DEMO_ORDER if n in names] + [n for n in names if n not in DEMO_ORDER]
    if sections is not None:
        ordered = [DEMO_SECTIONS.canonical(s) for s in sections]
    embedded = RunOptions(out=opts.out, mode=opts.mode, data_root=None, device=opts.device,
                          seed=opts.seed, progress=opts.progress, threads=opts.threads)
    res = ResultsFile(system="demo", meta={"machine": machine_info(), "mode": opts.mode,
                                           "seed": opts.seed, "sections": ordered})
    for name in ordered:
        console.rule(f"[bold]demo: {name}")
        t0 = time.perf_counter()
        try:
            part = DEMO_SECTIONS.get(name)(embedded)
        except ModuleNotFoundError as err:
            root = (err.name or "").split(".")[0]
            if root not in OPTIONAL:
                raise
            note = (f"demo section {name!r} skipped: it needs {root!r}; install it with "
                    f"pip install -e '.[{OPTIONAL[root]}]' (or '.[all]')")
            console.print(f"[yellow]{note}")
            res.notes.append(note)
            continue
        res.merge(part, prefix="" if name == "foundation" else f"{name}_")
        res.meta.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 2)
    write_results(res, opts.out)
    build_report(opts.out, res)
    return res
