"""Experiments are functions that return results objects; the CLI, the report and the
benchmarks only call them.

Three registries:

- ``"experiment"``: ``medshield reproduce SYSTEM`` -> ``fn(options) -> ResultsFile``
- ``"demo-section"``: one part each of ``medshield demo`` -> ``fn(options) -> ResultsFile``
- ``"bench"``: ``medshield bench NAME`` -> ``fn(options) -> BenchFile``
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from medshield.registry import Registry
from medshield.results import BenchFile, ResultsFile

__all__ = [
    "Mode",
    "RunOptions",
    "EXPERIMENTS",
    "DEMO_SECTIONS",
    "BENCHES",
    "PLANNED",
]

Mode = Literal["fast", "quick", "full"]


@dataclass
class RunOptions:
    """What every experiment receives.

    Attributes
    ----------
    out : directory for results, figures and checkpoints
    mode : ``"fast"`` (seconds; used by the test suite), ``"quick"`` (minutes on a CPU),
        ``"full"`` (the paper's settings; hours on a CPU, uses a GPU when present)
    data_root : the data directory (``$MEDSHIELD_DATA``) or ``None`` for embedded data only
    device : where tensors live
    seed : seed of every random choice of the experiment
    progress : show progress bars
    threads : torch intra-op threads (benchmarks fix it; ``None`` leaves torch's default)
    """

    out: Path
    mode: Mode = "quick"
    data_root: Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    progress: bool = True
    threads: int | None = None


ExperimentFn = Callable[[RunOptions], ResultsFile]
BenchFn = Callable[[RunOptions], BenchFile]

EXPERIMENTS: Registry[ExperimentFn] = Registry("experiment")
DEMO_SECTIONS: Registry[ExperimentFn] = Registry("demo-section")
BENCHES: Registry[BenchFn] = Registry("bench")

#: Systems and benchmarks that the mission names but that are not built yet, with the issue
#: that tracks them; the CLI says so instead of failing obscurely.
PLANNED: dict[str, str] = {}
