"""Experiments: one module per system; each returns a results object."""

from medshield.benchmarks import fl as _fl_bench  # noqa: F401  (registers `bench fl`)
from medshield.benchmarks import secure as _secure_bench  # noqa: F401  (registers `bench secure`)
from medshield.benchmarks import secure_load as _secure_load  # noqa: F401  (`bench secure-load`)
from medshield.benchmarks import split as _split_bench  # noqa: F401  (registers `bench split`)
from medshield.experiments import eicpp as _eicpp  # noqa: F401  (registers)
from medshield.experiments import foundation as _foundation  # noqa: F401  (registers)
from medshield.experiments import obfnet as _obfnet  # noqa: F401  (registers obfnet + its bench)
from medshield.experiments import pehealth as _pehealth  # noqa: F401  (reproduce + demo)
from medshield.experiments import pgsl as _pgsl  # noqa: F401  (registers `reproduce pgsl`)
from medshield.experiments import pgsl_demo as _pgsl_demo  # noqa: F401  (registers demo part)
from medshield.experiments import robustness as _robustness  # noqa: F401  (registers)
from medshield.experiments.base import BENCHES, DEMO_SECTIONS, EXPERIMENTS, PLANNED, RunOptions
from medshield.experiments.demo import run_demo

__all__ = ["BENCHES", "DEMO_SECTIONS", "EXPERIMENTS", "PLANNED", "RunOptions", "run_demo"]
